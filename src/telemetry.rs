//! Logs and metrics: the tracing subscriber, and the Prometheus registry the server exposes.
//!
//! Metric and label names use the project's words (`source`, `outcome`). Labels never carry
//! a caller-chosen value other than a configured source name, so cardinality stays bounded.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Mutex;

/// The source label used for deliveries to a name that is not configured.
pub const UNKNOWN_SOURCE: &str = "_unknown";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub source: String,
    pub outcome: String,
}

/// Why a write to the store failed: `disk_full`, `io_error`, `locked` (another process held
/// the write lock past the busy timeout), `file_lost` (the SQLite file was deleted or
/// replaced), `unreachable` (no connection), `other`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreFailureLabels {
    pub kind: &'static str,
}

/// Store write failures by kind; the store counts them, the server's registry shows them.
pub type StoreFailures = Family<StoreFailureLabels, Counter>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TimeoutLabels {
    /// `header`, `body` or `idle`.
    pub timeout: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    pub job: String,
    pub state: String,
}

/// How a config reload ended: `ok` or `refused` (the file failed `handoff check`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub result: &'static str,
}

/// The server's metrics; one per app, so tests in one process do not share counts.
pub struct Metrics {
    registry: Mutex<Registry>,
    deliveries: Family<DeliveryLabels, Counter>,
    commit_seconds: Histogram,
    runs: Family<RunLabels, Counter>,
    matched: Counter,
    connections_open: Gauge,
    timed_out: Family<TimeoutLabels, Counter>,
    reloads: Family<ReloadLabels, Counter>,
}

/// An open connection, counted in `connections_open` until dropped.
pub struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        // 0.5 ms .. ~4 s: an fsync on a good disk is ~1 ms, a struggling one is seconds.
        let commit_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        let mut registry = Registry::with_prefix("handoff");
        registry.register(
            "deliveries",
            "Deliveries to POST /hooks/{source}, by source and outcome",
            deliveries.clone(),
        );
        registry.register(
            "commit_seconds",
            "Time from handing a delivery to the store until its commit (or duplicate check) returned",
            commit_seconds.clone(),
        );
        let runs = Family::<RunLabels, Counter>::default();
        registry.register(
            "runs",
            "Run attempts that ended, by job and the run's state after them (queued = will retry)",
            runs.clone(),
        );
        let matched = Counter::default();
        registry.register("events_matched", "Events matched to jobs", matched.clone());
        let connections_open = Gauge::default();
        registry.register("connections_open", "HTTP connections open now", connections_open.clone());
        let timed_out = Family::<TimeoutLabels, Counter>::default();
        registry.register(
            "connections_timed_out",
            "Connections closed because a request head or body was late (header, body) or they sat idle (idle)",
            timed_out.clone(),
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Config reloads (SIGHUP), by result: ok, or refused because the file failed `handoff check`",
            reloads.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            deliveries,
            commit_seconds,
            runs,
            matched,
            connections_open,
            timed_out,
            reloads,
        }
    }
}

impl Metrics {
    pub fn delivery(&self, source: &str, outcome: &str) {
        self.deliveries
            .get_or_create(&DeliveryLabels { source: source.to_string(), outcome: outcome.to_string() })
            .inc();
    }

    pub fn run_ended(&self, job: &str, state: &str) {
        self.runs.get_or_create(&RunLabels { job: job.to_string(), state: state.to_string() }).inc();
    }

    pub fn config_reloaded(&self, result: &'static str) {
        self.reloads.get_or_create(&ReloadLabels { result }).inc();
    }

    pub fn matched(&self, events: u64) {
        self.matched.inc_by(events);
    }

    /// Shows the store's write failures (counted by the store itself).
    pub fn show_store_failures(&self, failures: StoreFailures) {
        let mut registry = self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        registry.register(
            "store_write_failures",
            "Deliveries the store failed to commit, by kind of failure (each answered 503, not recorded)",
            failures,
        );
    }

    pub fn commit_latency(&self, seconds: f64) {
        self.commit_seconds.observe(seconds);
    }

    pub fn connection_opened(&self) -> OpenConnection {
        self.connections_open.inc();
        OpenConnection(self.connections_open.clone())
    }

    pub fn connection_timed_out(&self, timeout: &str) {
        self.timed_out.get_or_create(&TimeoutLabels { timeout: timeout.to_string() }).inc();
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("writing to a String cannot fail");
        out
    }
}

/// How many characters of a caller-chosen string [`shown`] keeps.
pub const SHOWN_CHARS: usize = 128;

/// A string taken from a request, made safe to write to a log or an error answer: at most
/// [`SHOWN_CHARS`] characters (then `…(N bytes)` with the original length), and every control
/// character, line or paragraph separator and bidi override rendered visibly (`\n`, `\u{1b}`),
/// so a caller can neither start a forged log line nor colour or reorder a terminal.
pub fn shown(text: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(text.len().min(SHOWN_CHARS + 24));
    let mut chars = text.chars();
    for c in chars.by_ref().take(SHOWN_CHARS) {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control()
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') =>
            {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    if chars.next().is_some() {
        let _ = write!(out, "…({} bytes)", text.len());
    }
    out
}

/// Log format for `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global subscriber: `RUST_LOG` filters (default `info`), logs to stderr.
pub fn init(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal; files and log shippers get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// What a panic said, from its payload (`panic!` with a literal or a formatted message).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shown_string_cannot_start_a_line_or_send_an_escape_sequence() {
        assert_eq!(shown("dbt"), "dbt");
        assert_eq!(shown("x\n2026-01-01 INFO event recorded"), "x\\n2026-01-01 INFO event recorded");
        assert_eq!(shown("\u{1b}[31mred\r\t\u{7f}"), "\\u{1b}[31mred\\r\\t\\u{7f}");
        assert_eq!(shown("a\\nb"), "a\\\\nb", "a literal backslash-n stays distinguishable from a newline");
        assert_eq!(shown("\u{2028}\u{202e}é"), "\\u{2028}\\u{202e}é");
        assert!(!shown("\u{85}\u{0}").chars().any(char::is_control));
    }

    #[test]
    fn a_long_string_is_cut_with_its_original_length() {
        let long = "é".repeat(30_000);
        let cut = shown(&long);
        assert_eq!(cut, format!("{}…(60000 bytes)", "é".repeat(SHOWN_CHARS)));
        let exact = "a".repeat(SHOWN_CHARS);
        assert_eq!(shown(&exact), exact, "exactly the limit is not cut");
        let escaped = shown(&"\n".repeat(1000));
        assert!(escaped.len() < 2 * SHOWN_CHARS + 24, "{}", escaped.len());
    }
}
