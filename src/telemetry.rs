//! Logs and metrics: the tracing subscriber, and the Prometheus registry the server exposes.
//!
//! Metric and label names use the project's words (`source`, `outcome`). Labels never carry
//! a caller-chosen value other than a configured source name, so cardinality stays bounded.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
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
pub struct RunLabels {
    pub job: String,
    pub state: String,
}

/// The server's metrics; one per app, so tests in one process do not share counts.
pub struct Metrics {
    registry: Mutex<Registry>,
    deliveries: Family<DeliveryLabels, Counter>,
    commit_seconds: Histogram,
    runs: Family<RunLabels, Counter>,
    matched: Counter,
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
        Self { registry: Mutex::new(registry), deliveries, commit_seconds, runs, matched }
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

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("writing to a String cannot fail");
        out
    }
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
