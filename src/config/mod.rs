//! The config file: `handoff.toml` as the user writes it, and the checked settings built from it.
//!
//! `File*` structs are inert serde data (`deny_unknown_fields`, a `///` on every field).
//! [`Config::load`] parses them, resolves every secret reference and validates everything
//! at once, so a bad file is reported in one go, each problem with its line and a hint.
//! [`Config::load_with`]`(path, Secrets::Skip)` checks the same but reads no secret: the read
//! commands need the config's shape and the store, not the production secrets.
//! Nothing here prints or stores a secret value.

mod actions;
pub mod admin;
mod dbt;
mod http_settings;
mod jobs;
mod rate;
pub mod retention;
mod secret;
mod size;
mod template_secrets;
pub mod tls;

pub use rate::Rate;
pub use secret::{SecretError, SecretRef, Secrets};

use crate::domain::{SourceKind, words};
use crate::scheduler::Job;
use crate::signature::{self, Key};
use ipnet::IpNet;
pub use retention::Retention;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// The listen address used when `[server] listen` is absent.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The store used when `[store]` is absent.
pub const DEFAULT_STORE_URL: &str = "sqlite://handoff.db";
/// The body size limit of a source unless it sets `max_body`.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;
/// How far a Standard Webhooks timestamp may be from now, unless `tolerance` is set.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);
/// How long running actions may go on after SIGTERM, unless `shutdown_grace` is set.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// PostgreSQL connections per process, unless `[store] pool` is set.
pub const DEFAULT_POOL: u32 = 16;
/// How long a claimed run stays a replica's without renewal, unless `lease` is set.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// How many runs execute at once, unless `workers` is set.
pub const DEFAULT_WORKERS: usize = 4;
/// How fast a peer's budget of rejected requests refills, unless `reject_rate` is set.
pub const DEFAULT_REJECT_RATE: Rate = Rate { count: 10, per: Duration::from_secs(1) };
/// How many rejected requests a peer may have in a row, unless `reject_burst` is set.
pub const DEFAULT_REJECT_BURST: u32 = 100;
/// Free bytes a SQLite store's filesystem must keep for `/readyz` to be green, unless
/// `[store] min_free_space` is set: room for the WAL between checkpoints and a burst of bodies.
pub const DEFAULT_MIN_FREE_SPACE: u64 = 64 << 20;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    /// The HTTP server.
    #[serde(default)]
    server: FileServer,
    /// Where events are recorded.
    #[serde(default)]
    store: FileStore,
    /// Inbound endpoints, by name: `POST /hooks/{name}`.
    #[serde(default)]
    sources: BTreeMap<String, Spanned<FileSource>>,
    /// Downstream work, by name.
    #[serde(default)]
    jobs: BTreeMap<String, Spanned<jobs::FileJob>>,
    /// The admin API: its tokens and, optionally, its own address.
    admin: Option<Spanned<admin::FileAdmin>>,
    /// Secret references templates use as `{{ secrets.NAME }}`.
    #[serde(default)]
    secrets: BTreeMap<String, Spanned<SecretRef>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServer {
    /// Address and port to listen on, e.g. "0.0.0.0:8080".
    listen: Option<Spanned<String>>,
    /// Peers (CIDR or single address) allowed to name the client in X-Forwarded-For.
    #[serde(default)]
    trusted_proxies: Vec<Spanned<String>>,
    /// On shutdown, how long running actions may go on before they are ended (default "30s").
    shutdown_grace: Option<Spanned<String>>,
    /// Runs of different jobs executed at the same time (default 4).
    workers: Option<Spanned<usize>>,
    /// How long a run stays this replica's without renewal; renewed every third of it. After a
    /// replica dies, another takes its runs over once their lease has ended (default "30s").
    lease: Option<Spanned<String>>,
    /// Time to receive a request's head, from accept or from its first byte (default "10s").
    header_timeout: Option<Spanned<String>>,
    /// Time to receive a whole request body, from the end of its head (default "30s").
    body_timeout: Option<Spanned<String>>,
    /// How long a keep-alive connection may wait for its next request (default "60s").
    idle_timeout: Option<Spanned<String>>,
    /// Connections served at once; more wait in the accept backlog (default 1024).
    max_connections: Option<Spanned<usize>>,
    /// Request body bytes held in memory at once, across all connections (default "64MiB").
    max_body_memory: Option<Spanned<size::ByteSize>>,
    /// How fast a client address's budget of rejected requests refills, e.g. "10/s", or "off"
    /// (default "10/s"). A client that spent its budget is answered 429 until it refills.
    reject_rate: Option<Spanned<String>>,
    /// How many rejected requests a client address may have before it is answered 429 (default 100).
    reject_burst: Option<Spanned<u32>>,
    /// Built-in HTTPS: `{ cert = { file = … }, key = { file = … } }` (off by default).
    tls: Option<Spanned<tls::FileTls>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStore {
    /// `sqlite://path/to/file.db` (relative to the config file's folder) or
    /// `postgres://USER@HOST:PORT/DB?sslmode=require`.
    url: Option<Spanned<String>>,
    /// PostgreSQL: the password, as a secret reference (else the one in the URL, if any).
    password: Option<Spanned<SecretRef>>,
    /// PostgreSQL: most connections this process opens (default 16).
    pool: Option<Spanned<u32>>,
    /// SQLite: below this much free space on the file's filesystem, `/readyz` answers 503
    /// (default "64MiB").
    min_free_space: Option<Spanned<size::ByteSize>>,
    /// How long events, runs and action outputs are kept (`[store.retention]`).
    #[serde(default)]
    retention: FileRetention,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRetention {
    /// Events (with their decisions) received longer ago than this are deleted, unless a
    /// waiting or kept run still needs them (default "90d"; "forever" keeps them).
    events: Option<Spanned<String>>,
    /// Finished runs (with their actions) older than this are deleted (default "180d").
    runs: Option<Spanned<String>>,
    /// Action outputs older than this are cleared, the action kept (default "30d").
    outputs: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSource {
    /// How deliveries are authenticated and read.
    kind: Spanned<SourceKind>,
    /// The signing secret (all kinds but airbyte).
    secret: Option<Spanned<SecretRef>>,
    /// The secret being rotated out; still accepted while set.
    previous_secret: Option<Spanned<SecretRef>>,
    /// The shared URL token (airbyte, which cannot sign).
    token: Option<Spanned<SecretRef>>,
    /// The token being rotated out; still accepted while set.
    previous_token: Option<Spanned<SecretRef>>,
    /// Client addresses allowed to deliver, as CIDR ranges or single addresses.
    allow_ips: Option<Vec<Spanned<String>>>,
    /// Largest accepted body, e.g. "1MiB", "256KiB" or a number of bytes.
    max_body: Option<Spanned<size::ByteSize>>,
    /// How far a Standard Webhooks timestamp may be from now (standard_webhooks only).
    tolerance: Option<Spanned<String>>,
    /// hmac, github: answer a body identical to one recorded within this long as a duplicate,
    /// since these kinds sign the body only and their delivery id header is not signed.
    replay_window: Option<Spanned<String>>,
    /// Most requests to this source, accepted or not, e.g. "50/s"; more are answered 429 (default: no limit).
    rate_limit: Option<Spanned<String>>,
}

/// A current value and, during rotation, the previous one.
#[derive(Debug, Clone)]
pub struct Rotating<T> {
    pub current: T,
    pub previous: Option<T>,
}

/// A shared token; `Debug` never shows it.
#[derive(Clone)]
pub struct Token(pub Vec<u8>);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// How a source's deliveries prove who sent them.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// HMAC keys (all signing kinds; Standard Webhooks keys are already base64-decoded).
    Keys(Box<Rotating<Key>>),
    /// Shared tokens compared in constant time (airbyte).
    Tokens(Rotating<Token>),
}

/// One checked `[sources.NAME]` table.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub kind: SourceKind,
    pub credentials: Credentials,
    /// Where the credentials come from (`env NAME`, `file PATH`): printable, no values.
    pub credentials_from: Vec<String>,
    /// Empty means every address is allowed.
    pub allow_ips: Vec<IpNet>,
    pub max_body: usize,
    pub tolerance: Duration,
    /// hmac, github: a body identical to one recorded within this long is a duplicate.
    pub replay_window: Option<Duration>,
    /// Most requests to this source per period (a burst of `count`); `None` is no limit.
    pub rate_limit: Option<Rate>,
}

impl Source {
    /// Whether `ip` may deliver; an IPv4-mapped IPv6 address is matched as the IPv4 address.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.allow_ips.is_empty() || self.allow_ips.iter().any(|net| net.contains(&ip))
    }
}

/// Where events are recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    Sqlite(PathBuf),
    Postgres(PostgresLocation),
}

/// A PostgreSQL store. The password lives apart from the URL and is never printed.
#[derive(Clone)]
pub struct PostgresLocation {
    /// The URL as written, without its password.
    pub url: String,
    pub password: Option<SecretString>,
    /// Most connections this process opens.
    pub pool: u32,
}

impl PartialEq for PostgresLocation {
    fn eq(&self, other: &Self) -> bool {
        self.url == other.url && self.pool == other.pool
    }
}

impl Eq for PostgresLocation {}

impl fmt::Debug for PostgresLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresLocation").field("url", &self.shown()).field("pool", &self.pool).finish()
    }
}

impl PostgresLocation {
    /// The URL for messages: `postgres://USER:***@HOST/DB` when a password is set.
    pub fn shown(&self) -> String {
        match (&self.password, self.url.split_once("://")) {
            (Some(_), Some((scheme, rest))) => match rest.split_once('@') {
                Some((user, host)) => format!("{scheme}://{user}:***@{host}"),
                None => self.url.clone(),
            },
            _ => self.url.clone(),
        }
    }
}

impl StoreLocation {
    /// Where the store is, safe to print (never a password).
    pub fn shown(&self) -> String {
        match self {
            StoreLocation::Sqlite(path) => format!("sqlite://{}", path.display()),
            StoreLocation::Postgres(pg) => pg.shown(),
        }
    }

    /// Reads `url` (and, for PostgreSQL, `password` and `pool`) as `[store]` or
    /// `handoff store copy` take them; relative SQLite paths are taken from `base`.
    pub fn parse(url: &str, base: &Path) -> Result<StoreLocation, String> {
        store_location(url, base)
    }
}

/// Splits `postgres://user:password@host/db` into the URL without the password and the password.
fn split_password(url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else { return (url.to_string(), None) };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let Some((userinfo, host)) = authority.rsplit_once('@') else { return (url.to_string(), None) };
    match userinfo.split_once(':') {
        Some((user, password)) => {
            let password = percent_decode(password);
            (format!("{scheme}://{user}@{host}{path}"), Some(password))
        }
        None => (url.to_string(), None),
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(byte) = text.get(i + 1..i + 3).and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A checked config file.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub listen: SocketAddr,
    pub trusted_proxies: Vec<IpNet>,
    pub store_url: String,
    pub store: StoreLocation,
    /// SQLite: free bytes on the store's filesystem below which `/readyz` is red.
    pub min_free_space: u64,
    /// How long events, runs and action outputs are kept (`[store.retention]`).
    pub retention: Retention,
    pub sources: BTreeMap<String, Source>,
    pub jobs: BTreeMap<String, Job>,
    pub shutdown_grace: Duration,
    pub workers: usize,
    pub lease: Duration,
    /// Timeouts, the connection cap and the body memory budget of `[server]`.
    pub limits: Limits,
    /// Each client address's budget of rejected requests; `None` when `reject_rate = "off"`.
    pub reject_budget: Option<RejectBudget>,
    /// The admin API; `None` when it is off (no `[admin]` token).
    pub admin: Option<admin::Admin>,
    /// `[server] tls`: built-in HTTPS; `None` serves plain HTTP.
    pub tls: Option<tls::Tls>,
    /// Legal but probably unintended settings, for `handoff check`.
    pub warnings: Vec<String>,
    /// Whether the secrets were read; a config loaded with `Skip` holds random stand-ins.
    pub secrets: Secrets,
    /// `Skip` only: why the store's PostgreSQL password could not be read. Opening the store
    /// needs it, so [`Config::store_to_open`] reports this.
    pub store_password_problem: Option<String>,
}

/// The `[server]` settings that bound connections and request bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Time to receive a request's head: from accept for the first request, from its first
    /// byte for the next ones on a keep-alive connection.
    pub header_timeout: Duration,
    /// Time to receive a whole request body, from the end of its head.
    pub body_timeout: Duration,
    /// How long a keep-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Request body bytes held in memory at once, across all connections.
    pub max_body_memory: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_body_memory: 64 << 20,
        }
    }
}

/// How many rejected requests one client address may have: `burst` in a row, refilled at `rate`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RejectBudget {
    pub rate: Rate,
    pub burst: u32,
}

/// One thing wrong with a config file.
#[derive(Debug, Clone)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: Option<String>,
}

/// Everything wrong with a config file; `Display` prints `file:line:column: message` and a hint per problem.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub path: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}:{}: {}", self.path.display(), p.line, p.column, p.message)?;
            if let Some(hint) = &p.hint {
                write!(f, "\n  hint: {hint}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Collects problems with their positions in the file text.
struct Problems<'a> {
    text: &'a str,
    found: Vec<Problem>,
    /// Keys refused when the file was read (`sources.NAME.secret`), already reported: a check
    /// that finds one of them missing stays quiet.
    refused: Vec<(String, usize)>,
    /// Whether secret references are read or only checked for their form.
    secrets: Secrets,
    /// `[secrets]`, read before the jobs whose templates use them.
    template_secrets: std::sync::Arc<crate::actions::secrets::TemplateSecrets>,
}

impl Problems<'_> {
    /// Parses an optional duration setting; a bad one is reported here and reads as `None`.
    fn duration(&mut self, value: Option<&Spanned<String>>) -> Option<Duration> {
        let v = value?;
        let parsed = parse_duration(v.get_ref());
        if parsed.is_none() {
            self.add(
                Some(v.span()),
                format!("`{}` is not a duration", v.get_ref()),
                Some(r#"write e.g. "90s", "15m" or "2h""#.into()),
            );
        }
        parsed
    }

    /// Parses an optional rate setting; a bad one is reported here and reads as `None`.
    fn rate(&mut self, value: Option<&Spanned<String>>) -> Option<Rate> {
        let v = value?;
        let parsed = Rate::parse(v.get_ref());
        if parsed.is_none() {
            self.add(
                Some(v.span()),
                format!("`{}` is not a rate", v.get_ref()),
                Some(r#"write a count per time, e.g. "10/s", "600/m" or "5/10s""#.into()),
            );
        }
        parsed
    }

    /// Where `key` is written in the table at `table` (a `[header]` with the lines under it, or
    /// an inline table), so that a problem points at the key rather than at the table's
    /// header; the table's own span when the key is not written in it.
    fn key_span(&self, table: &Range<usize>, key: &str) -> Range<usize> {
        let (start, end) = self.region(table);
        let region = &self.text[start..end];
        let mut from = 0;
        while let Some(i) = region[from..].find(key) {
            let at = from + i;
            let before = region[..at].chars().next_back();
            let after = region[at + key.len()..].trim_start_matches([' ', '\t']);
            let bare = before.is_none_or(|c| c.is_whitespace() || c == '{' || c == ',');
            if bare && (after.starts_with('=') || after.starts_with('.')) {
                return start + at..start + at + key.len();
            }
            from = at + key.len();
        }
        table.clone()
    }

    /// The text of the table at `table`: a `[header]` runs to the next header, an inline
    /// table is its span.
    fn region(&self, table: &Range<usize>) -> (usize, usize) {
        let text = self.text;
        let start = table.start.min(text.len());
        let end = if text[start..].starts_with('[') {
            text[table.end.min(text.len())..].find("\n[").map_or(text.len(), |i| table.end + i)
        } else {
            table.end.min(text.len())
        };
        (start, end)
    }

    /// Whether `key` of the table at `table` was refused when the file was read (and so was
    /// reported already).
    fn refused_in(&self, table: &Range<usize>, key: &str) -> bool {
        let (start, end) = self.region(table);
        self.refused.iter().any(|(path, at)| (start..end).contains(at) && path.rsplit('.').next() == Some(key))
    }

    fn add(&mut self, span: Option<Range<usize>>, message: impl Into<String>, hint: Option<String>) {
        let (line, column) = line_and_column(self.text, span.map(|s| s.start).unwrap_or(0));
        self.found.push(Problem { line, column, message: message.into(), hint });
    }
}

/// 1-based line and column of a byte offset.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

impl Config {
    /// Reads, parses and checks a config file, resolving every secret.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, Secrets::Resolve)
    }

    /// Reads, parses and checks a config file; `Skip` checks every secret reference's form
    /// but reads none (then the config must not serve).
    pub fn load_with(path: &Path, secrets: Secrets) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError {
            path: path.to_path_buf(),
            problems: vec![Problem {
                line: 0,
                column: 0,
                message: format!("cannot read the config file: {err}"),
                hint: Some(
                    "pass --config PATH, set HANDOFF_CONFIG, or run from the folder that holds handoff.toml".into(),
                ),
            }],
        })?;
        Config::parse_with(path, &text, secrets)
    }

    /// Parses and checks config text; `path` names the file in messages and anchors relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        Config::parse_with(path, text, Secrets::Resolve)
    }

    /// Like [`Config::parse`], reading secrets or not as `secrets` says.
    pub fn parse_with(path: &Path, text: &str, secrets: Secrets) -> Result<Config, ConfigError> {
        let (parsed, secret_vars) = secret::recording_env_names(|| Config::parse_text(path, text, secrets));
        let mut config = parsed?;
        actions::withhold_from_commands(&mut config.jobs, secret_vars);
        Ok(config)
    }

    /// Where the store is, for a command that opens it: with a config loaded with `Skip`,
    /// a PostgreSQL password that could not be read is an error here, said as such.
    pub fn store_to_open(&self) -> Result<&StoreLocation, String> {
        match &self.store_password_problem {
            Some(problem) => Err(format!("cannot open the store without its password: {problem}")),
            None => Ok(&self.store),
        }
    }

    fn parse_text(path: &Path, text: &str, secrets: Secrets) -> Result<Config, ConfigError> {
        let mut problems =
            Problems { text, found: Vec::new(), refused: Vec::new(), secrets, template_secrets: Default::default() };
        let Some(file) = deserialize_all(&mut problems) else {
            problems.found.sort_by_key(|p| (p.line, p.column));
            return Err(ConfigError { path: path.to_path_buf(), problems: problems.found });
        };
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base = if base.as_os_str().is_empty() { PathBuf::from(".") } else { base };

        let listen = match &file.server.listen {
            None => DEFAULT_LISTEN.parse().expect("default listen address parses"),
            Some(l) => l.get_ref().parse().unwrap_or_else(|_| {
                problems.add(
                    Some(l.span()),
                    format!("`{}` is not an address and port", l.get_ref()),
                    Some(r#"write listen = "127.0.0.1:8080" or "0.0.0.0:8080""#.into()),
                );
                DEFAULT_LISTEN.parse().expect("default listen address parses")
            }),
        };
        let trusted_proxies = parse_networks(&mut problems, &file.server.trusted_proxies);

        let (store, store_password_problem) = build_store(&mut problems, path, &base, &file.store);
        let store_url = store.shown();
        let min_free_space = build_min_free_space(&mut problems, &store, &file.store);
        let retention = build_retention(&mut problems, &file.store.retention);

        let mut sources = BTreeMap::new();
        for (name, table) in &file.sources {
            if let Some(source) = build_source(&mut problems, &base, name, table) {
                sources.insert(name.clone(), source);
            }
        }

        problems.template_secrets = std::sync::Arc::new(template_secrets::build(&mut problems, &base, &file.secrets));
        let source_names: Vec<String> = file.sources.keys().cloned().collect();
        let mut jobs = BTreeMap::new();
        let mut warnings: Vec<String> = sources
            .values()
            .filter(|s| s.kind == SourceKind::Hmac && s.replay_window.is_none())
            .map(|s| {
                format!(
                    "source `{}` (hmac) signs the body only: a captured delivery can be replayed as a new event; \
                     set replay_window (e.g. \"10m\"), or use kind standard_webhooks with `handoff send`",
                    s.name
                )
            })
            .collect();
        for (name, table) in &file.jobs {
            if let Some(job) = jobs::build_job(&mut problems, &base, name, table, &source_names) {
                if !job.debounce.is_zero() && job.max_wait.is_none() {
                    warnings.push(format!(
                        "job `{name}` has debounce {} and no max_wait: a steady trickle of events can postpone it forever",
                        words(job.debounce)
                    ));
                }
                jobs.insert(name.clone(), job);
            }
        }
        let shutdown_grace = problems.duration(file.server.shutdown_grace.as_ref()).unwrap_or(DEFAULT_SHUTDOWN_GRACE);
        let workers = match &file.server.workers {
            None => DEFAULT_WORKERS,
            Some(w) if *w.get_ref() == 0 => {
                problems.add(Some(w.span()), "workers must be at least 1", Some("workers = 4".into()));
                DEFAULT_WORKERS
            }
            Some(w) => *w.get_ref(),
        };

        let lease = match problems.duration(file.server.lease.as_ref()) {
            Some(lease) if lease < Duration::from_secs(1) => {
                let span = file.server.lease.as_ref().map(|l| l.span());
                problems.add(span, "lease must be at least 1s", Some(r#"lease = "30s""#.into()));
                DEFAULT_LEASE
            }
            Some(lease) => lease,
            None => DEFAULT_LEASE,
        };
        let reject_budget = reject_budget(&mut problems, &file.server);

        let limits = build_limits(&mut problems, &file.server, &file.sources);
        let admin = admin::build_admin(&mut problems, &base, file.admin.as_ref(), listen, &mut warnings);
        let tls = tls::build_tls(&mut problems, &base, file.server.tls.as_ref());

        problems.found.sort_by_key(|p| (p.line, p.column));
        if problems.found.is_empty() {
            Ok(Config {
                path: path.to_path_buf(),
                listen,
                trusted_proxies,
                store_url,
                store,
                min_free_space,
                retention,
                sources,
                jobs,
                shutdown_grace,
                workers,
                lease,
                limits,
                reject_budget,
                admin,
                tls,
                warnings,
                secrets,
                store_password_problem,
            })
        } else {
            Err(ConfigError { path: path.to_path_buf(), problems: problems.found })
        }
    }
}

/// `[server] reject_rate` and `reject_burst`: the default budget unless "off".
fn reject_budget(problems: &mut Problems<'_>, server: &FileServer) -> Option<RejectBudget> {
    let burst = match &server.reject_burst {
        None => DEFAULT_REJECT_BURST,
        Some(b) if *b.get_ref() == 0 => {
            let hint = r#"reject_burst = 100, or reject_rate = "off" to answer rejected requests without a budget"#;
            problems.add(Some(b.span()), "reject_burst must be at least 1", Some(hint.into()));
            DEFAULT_REJECT_BURST
        }
        Some(b) => *b.get_ref(),
    };
    let rate = match &server.reject_rate {
        Some(r) if r.get_ref().trim() == "off" => return None,
        None => DEFAULT_REJECT_RATE,
        r => problems.rate(r.as_ref()).unwrap_or(DEFAULT_REJECT_RATE),
    };
    Some(RejectBudget { rate, burst })
}

/// Deserializes the file, reporting every key serde refuses (an unknown key, a value of the
/// wrong type), not only the first: each refused key is reported, taken out of the parsed
/// document and the rest deserialized again, so that the checks after this one still see every
/// other setting and the whole file is reported in one go. `None` when the text is not TOML or
/// a refusal cannot be pinned to a key.
fn deserialize_all(problems: &mut Problems<'_>) -> Option<FileConfig> {
    let (mut root, syntax) = toml::de::DeTable::parse_recoverable(problems.text);
    if !syntax.is_empty() {
        for err in syntax {
            let message = err.message().trim().to_string();
            problems.add(err.span(), message, Some("see docs/configuration.md for the file's shape".into()));
        }
        return None;
    }
    // Each round takes one key out, so a file has at most as many rounds as keys; the bound
    // only guards against a refusal that keeps coming back.
    for _ in 0..256 {
        let err = match FileConfig::deserialize(toml::de::Deserializer::from(root.clone())) {
            Ok(file) => return Some(file),
            Err(err) => err,
        };
        let message = err.message().trim().to_string();
        // Taking out a refused key can leave its table without a required one: that is the
        // same mistake, already reported.
        let follow_up = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
            .is_some_and(|key| problems.refused.iter().any(|(r, _)| r.rsplit('.').next() == Some(key)));
        if !follow_up {
            let hint = parse_hint(&message);
            problems.add(err.span(), message, hint);
        }
        let at = err.span()?.start;
        let path = remove_at(root.get_mut(), at, "")?;
        problems.refused.push((path, at));
    }
    None
}

/// Takes out of `table` the innermost entry whose key or value holds the byte offset `at`;
/// returns its dotted path below `prefix` (`sources.loader.secret`, `jobs.j.actions[0].timout`).
fn remove_at(table: &mut toml::de::DeTable<'_>, at: usize, prefix: &str) -> Option<String> {
    use toml::de::DeValue;
    for (key, value) in table.iter_mut() {
        let path = format!("{prefix}{}", key.get_ref());
        let found = match value.get_mut() {
            DeValue::Table(inner) => remove_at(inner, at, &format!("{path}.")),
            DeValue::Array(items) => items.iter_mut().enumerate().find_map(|(i, item)| match item.get_mut() {
                DeValue::Table(inner) => remove_at(inner, at, &format!("{path}[{i}].")),
                _ => None,
            }),
            _ => None,
        };
        if found.is_some() {
            return found;
        }
    }
    let key = table.iter().find(|(k, v)| k.span().contains(&at) || v.span().contains(&at)).map(|(k, _)| k.clone())?;
    table.remove(&key);
    Some(format!("{prefix}{}", key.get_ref()))
}

/// A hint for the serde/toml messages users meet most.
fn parse_hint(message: &str) -> Option<String> {
    let quoted: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    let closest = quoted.split_first().and_then(|(given, expected)| closest(given, expected));
    if message.starts_with("unknown field") {
        Some(match closest {
            Some(key) => format!("did you mean `{key}`? The accepted keys are listed in docs/configuration.md"),
            None => "remove or rename the key; the accepted keys are listed in docs/configuration.md".into(),
        })
    } else if message.starts_with("unknown variant") {
        Some(match closest {
            Some(kind) => format!("did you mean `{kind}`?"),
            None => "use one of the values listed above".into(),
        })
    } else if message.starts_with(secret::NOT_A_REFERENCE) {
        Some(r#"move the value to an environment variable or a file and write secret = { env = "NAME" } or secret = { file = "/run/secrets/name" }; treat the value as leaked if this file was shared"#.into())
    } else if message.starts_with("missing field") {
        Some("add the key to this table; see docs/configuration.md".into())
    } else if message.contains("expected a string") {
        Some("put the value in double quotes".into())
    } else {
        Some("see docs/configuration.md for the file's shape".into())
    }
}

/// The expected word nearest to `given`, if one is plausibly what was meant.
fn closest<'a>(given: &str, expected: &[&'a str]) -> Option<&'a str> {
    expected
        .iter()
        .map(|word| (edit_distance(given, word), *word))
        .filter(|(d, word)| *d <= 2 || word.starts_with(given) || given.starts_with(word))
        .min_by_key(|(d, _)| *d)
        .map(|(_, word)| word)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// `[server]` timeouts, connection cap and body memory budget; every source's `max_body` must
/// fit in the budget, or its largest deliveries would always be refused.
fn build_limits(
    problems: &mut Problems<'_>,
    server: &FileServer,
    sources: &BTreeMap<String, Spanned<FileSource>>,
) -> Limits {
    let defaults = Limits::default();
    let mut timeout = |key: &str, value: Option<&Spanned<String>>, default: Duration| match problems.duration(value) {
        Some(d) if d.is_zero() => {
            let hint = format!(r#"{key} = "{}""#, words(default));
            problems.add(value.map(|v| v.span()), format!("{key} must be more than 0"), Some(hint));
            default
        }
        Some(d) => d,
        None => default,
    };
    let header_timeout = timeout("header_timeout", server.header_timeout.as_ref(), defaults.header_timeout);
    let body_timeout = timeout("body_timeout", server.body_timeout.as_ref(), defaults.body_timeout);
    let idle_timeout = timeout("idle_timeout", server.idle_timeout.as_ref(), defaults.idle_timeout);
    let max_connections = match &server.max_connections {
        Some(n) if *n.get_ref() == 0 => {
            problems.add(Some(n.span()), "max_connections must be at least 1", Some("max_connections = 1024".into()));
            defaults.max_connections
        }
        Some(n) => *n.get_ref(),
        None => defaults.max_connections,
    };
    let max_body_memory = server.max_body_memory.as_ref().map_or(defaults.max_body_memory, |m| m.get_ref().0);
    for (name, table) in sources {
        let max_body = table.get_ref().max_body.as_ref();
        let bytes = max_body.map_or(DEFAULT_MAX_BODY, |m| m.get_ref().0);
        if bytes > max_body_memory {
            let span = max_body.map(|m| m.span()).or_else(|| server.max_body_memory.as_ref().map(|m| m.span()));
            problems.add(
                span,
                format!(
                    "source `{name}` accepts bodies of {bytes} bytes, more than [server] max_body_memory ({max_body_memory} bytes) holds: its largest deliveries would always be refused"
                ),
                Some("raise [server] max_body_memory or lower this source's max_body".into()),
            );
        }
    }
    Limits { header_timeout, body_timeout, idle_timeout, max_connections, max_body_memory }
}

/// `[store]`: the location, with a PostgreSQL password resolved from its reference. Even when
/// secrets are skipped the password is read, as the read commands open the store; if it cannot
/// be, that is returned apart (`file:line:column: message`), not as a problem of the file.
fn build_store(
    problems: &mut Problems<'_>,
    path: &Path,
    base: &Path,
    file: &FileStore,
) -> (StoreLocation, Option<String>) {
    let mut password_problem = None;
    let default = || store_location(DEFAULT_STORE_URL, base).expect("the default store parses");
    let location = match &file.url {
        None => default(),
        Some(url) => match store_location(url.get_ref(), base) {
            Ok(location) => location,
            Err(hint) => {
                // The URL may hold a password: name the scheme only.
                let scheme = url.get_ref().split_once("://").map_or("", |(s, _)| s);
                problems.add(Some(url.span()), format!("unsupported store url (scheme `{scheme}`)"), Some(hint));
                default()
            }
        },
    };
    match location {
        StoreLocation::Postgres(mut pg) => {
            if let Some(reference) = &file.password {
                match reference.get_ref().resolve(base) {
                    Ok(password) => pg.password = Some(password),
                    Err(SecretError { message, hint }) if problems.secrets == Secrets::Skip => {
                        if let Err(SecretError { message, hint }) = reference.get_ref().check_form() {
                            problems.add(Some(reference.span()), message, Some(hint));
                        } else {
                            let (line, column) = line_and_column(problems.text, reference.span().start);
                            password_problem =
                                Some(format!("{}:{line}:{column}: {message}\n  hint: {hint}", path.display()));
                        }
                    }
                    Err(SecretError { message, hint }) => problems.add(Some(reference.span()), message, Some(hint)),
                }
            }
            if let Some(pool) = &file.pool {
                if *pool.get_ref() == 0 {
                    problems.add(Some(pool.span()), "pool must be at least 1", Some("pool = 16".into()));
                } else {
                    pg.pool = *pool.get_ref();
                }
            }
            (StoreLocation::Postgres(pg), password_problem)
        }
        sqlite => {
            for (key, span) in
                [("password", file.password.as_ref().map(|p| p.span())), ("pool", file.pool.as_ref().map(|p| p.span()))]
            {
                if span.is_some() {
                    problems.add(
                        span,
                        format!("`{key}` applies to a PostgreSQL store only"),
                        Some(format!(r#"remove {key}, or use url = "postgres://USER@HOST:5432/DB""#)),
                    );
                }
            }
            (sqlite, None)
        }
    }
}

/// `[store] min_free_space`: SQLite only; a PostgreSQL server watches its own disk.
fn build_min_free_space(problems: &mut Problems<'_>, store: &StoreLocation, file: &FileStore) -> u64 {
    let Some(size) = &file.min_free_space else { return DEFAULT_MIN_FREE_SPACE };
    if let StoreLocation::Postgres(_) = store {
        problems.add(
            Some(size.span()),
            "`min_free_space` applies to a SQLite store only",
            Some("remove min_free_space: the PostgreSQL server watches its own disk".into()),
        );
    }
    size.get_ref().0 as u64
}

/// `[store.retention]`: each horizon a duration of at least an hour, or "forever".
fn build_retention(problems: &mut Problems<'_>, file: &FileRetention) -> Retention {
    let defaults = Retention::default();
    let mut horizon = |key: &str, value: Option<&Spanned<String>>, default: Option<Duration>| {
        let Some(v) = value else { return default };
        if v.get_ref().trim() == "forever" {
            return None;
        }
        let hint = format!(r#"write e.g. {key} = "{}", or "forever""#, default.map_or("90d".into(), words));
        match parse_duration(v.get_ref()) {
            Some(d) if d >= Duration::from_secs(3600) => Some(d),
            Some(_) => {
                problems.add(Some(v.span()), format!("{key} must be at least 1h"), Some(hint));
                default
            }
            None => {
                problems.add(Some(v.span()), format!("`{}` is not a duration", v.get_ref()), Some(hint));
                default
            }
        }
    };
    Retention {
        events: horizon("events", file.events.as_ref(), defaults.events),
        runs: horizon("runs", file.runs.as_ref(), defaults.runs),
        outputs: horizon("outputs", file.outputs.as_ref(), defaults.outputs),
    }
}

fn store_location(url: &str, base: &Path) -> Result<StoreLocation, String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let (url, password) = split_password(url);
        let rest = url.split_once("://").map_or("", |(_, r)| r);
        let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        if host.is_empty() || host.starts_with('/') || host.starts_with('?') {
            return Err(r#"name the server: url = "postgres://handoff@db.internal:5432/handoff""#.into());
        }
        return Ok(StoreLocation::Postgres(PostgresLocation {
            url,
            password: password.map(SecretString::from),
            pool: DEFAULT_POOL,
        }));
    }
    if let Some(rest) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        if rest.is_empty() {
            return Err(r#"name a file: url = "sqlite://handoff.db""#.into());
        }
        let path = PathBuf::from(rest);
        return Ok(StoreLocation::Sqlite(if path.is_absolute() { path } else { base.join(path) }));
    }
    Err(r#"use url = "sqlite://handoff.db" or url = "postgres://USER@HOST:5432/DB""#.into())
}

fn parse_networks(problems: &mut Problems<'_>, items: &[Spanned<String>]) -> Vec<IpNet> {
    items
        .iter()
        .filter_map(|item| {
            let text = item.get_ref().trim();
            let parsed = text
                .parse::<IpNet>()
                .ok()
                .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
                .map(canonical_network);
            if parsed.is_none() {
                problems.add(
                    Some(item.span()),
                    format!("`{text}` is not an IP address or CIDR range"),
                    Some(r#"write e.g. "203.0.113.0/24", "10.0.0.7" or "2001:db8::/32""#.into()),
                );
            }
            parsed
        })
        .collect()
}

/// An IPv4-mapped range (`::ffff:10.0.0.0/104`) as the IPv4 range it means (`10.0.0.0/8`):
/// addresses are matched in canonical form.
fn canonical_network(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, IpNet::V4),
            None => net,
        },
        other => other,
    }
}

fn build_source(problems: &mut Problems<'_>, base: &Path, name: &str, table: &Spanned<FileSource>) -> Option<Source> {
    let before = problems.found.len();
    let span = Some(table.span());
    let raw = table.get_ref();
    let kind = *raw.kind.get_ref();

    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        problems.add(
            span.clone(),
            format!("source name `{name}` cannot be part of a URL path"),
            Some("use letters, digits, `_` and `-` only".into()),
        );
    }

    // Airbyte cannot sign, so it is the one kind with a token instead of a secret.
    let (wanted, wanted_previous, unwanted, unwanted_previous) = if kind == SourceKind::Airbyte {
        (&raw.token, &raw.previous_token, &raw.secret, &raw.previous_secret)
    } else {
        (&raw.secret, &raw.previous_secret, &raw.token, &raw.previous_token)
    };
    let (key, other) = if kind == SourceKind::Airbyte { ("token", "secret") } else { ("secret", "token") };
    if let Some(extra) = unwanted.as_ref().or(unwanted_previous.as_ref()) {
        let hint = if kind == SourceKind::Airbyte {
            r#"Airbyte cannot sign its webhooks: use token = { env = "AIRBYTE_WEBHOOK_TOKEN" } and add ?token=... to the URL you give Airbyte"#.to_string()
        } else {
            format!(r#"{kind} sources sign their deliveries: use secret = {{ env = "NAME" }}"#)
        };
        problems.add(Some(extra.span()), format!("`{other}` does not apply to kind {kind}"), Some(hint));
    }
    let Some(current_ref) = wanted else {
        if problems.refused.iter().any(|(path, _)| *path == format!("sources.{name}.{key}")) {
            return None;
        }
        problems.add(
            span.clone(),
            format!("source `{name}` has no `{key}`"),
            Some(format!(r#"add {key} = {{ env = "NAME" }} or {key} = {{ file = "/run/secrets/{name}" }}"#)),
        );
        return None;
    };

    let mut resolve = |r: &Spanned<SecretRef>| -> Option<Vec<u8>> {
        match r.get_ref().read(base, problems.secrets) {
            Ok(value) => {
                let from = r.get_ref().describe();
                let bytes = if kind == SourceKind::StandardWebhooks {
                    let decoded = signature::decode_standard_webhooks_secret(value.expose_secret());
                    if decoded.is_none() {
                        problems.add(
                            Some(r.span()),
                            format!("the secret from {from} is not a Standard Webhooks secret"),
                            Some("Standard Webhooks secrets are base64, usually with a `whsec_` prefix".into()),
                        );
                    }
                    decoded?
                } else {
                    value.expose_secret().as_bytes().to_vec()
                };
                if let Some(reason) = weak_secret(&bytes, kind == SourceKind::StandardWebhooks) {
                    problems.add(
                        Some(r.span()),
                        format!("the {key} from {from} {reason}"),
                        Some(weak_secret_hint(kind)),
                    );
                    return None;
                }
                Some(bytes)
            }
            Err(SecretError { message, hint }) => {
                problems.add(Some(r.span()), message, Some(hint));
                None
            }
        }
    };
    let current = resolve(current_ref);
    let previous = wanted_previous.as_ref().map(&mut resolve);
    let mut credentials_from = vec![current_ref.get_ref().describe()];
    if let Some(p) = wanted_previous {
        credentials_from.push(format!("previous: {}", p.get_ref().describe()));
    }

    let allow_ips = parse_networks(problems, raw.allow_ips.as_deref().unwrap_or_default());
    let max_body = raw.max_body.as_ref().map_or(DEFAULT_MAX_BODY, |s| s.get_ref().0);
    if max_body == 0 {
        problems.add(
            raw.max_body.as_ref().map(|s| s.span()),
            "max_body must be more than 0 bytes",
            Some(r#"e.g. max_body = "1MiB""#.into()),
        );
    }
    let tolerance = match &raw.tolerance {
        None => DEFAULT_TOLERANCE,
        Some(t) if kind != SourceKind::StandardWebhooks => {
            problems.add(
                Some(t.span()),
                format!("`tolerance` does not apply to kind {kind}"),
                Some("only standard_webhooks deliveries carry a signed timestamp".into()),
            );
            DEFAULT_TOLERANCE
        }
        Some(t) => problems.duration(Some(t)).unwrap_or(DEFAULT_TOLERANCE),
    };
    let rate_limit = problems.rate(raw.rate_limit.as_ref());

    let replay_window = match &raw.replay_window {
        None => None,
        Some(w) if !matches!(kind, SourceKind::Hmac | SourceKind::Github) => {
            problems.add(
                Some(w.span()),
                format!("`replay_window` does not apply to kind {kind}"),
                Some(match kind {
                    SourceKind::StandardWebhooks => {
                        "standard_webhooks deliveries carry a signed id and timestamp: set `tolerance` instead".into()
                    }
                    _ => format!(
                        "{kind} deliveries carry their identity in the signed body; only hmac and github need it"
                    ),
                }),
            );
            None
        }
        Some(w) => match problems.duration(Some(w)) {
            Some(window) if window < Duration::from_secs(1) => {
                problems.add(
                    Some(w.span()),
                    "replay_window must be at least 1s",
                    Some(r#"e.g. replay_window = "10m""#.into()),
                );
                None
            }
            window => window,
        },
    };

    if problems.found.len() > before {
        return None;
    }
    let (current, previous) = (current?, previous.flatten());
    let credentials = if kind == SourceKind::Airbyte {
        Credentials::Tokens(Rotating { current: Token(current), previous: previous.map(Token) })
    } else {
        Credentials::Keys(Box::new(Rotating { current: Key::new(&current), previous: previous.map(|p| Key::new(&p)) }))
    };
    Some(Source {
        name: name.to_string(),
        kind,
        credentials,
        credentials_from,
        allow_ips,
        max_body,
        tolerance,
        replay_window,
        rate_limit,
    })
}

/// The fewest bytes a source's secret or token may have: below that it can be guessed.
pub const MIN_SECRET_BYTES: usize = 16;

/// Why a source's secret (after its reference was read, and base64-decoded for Standard
/// Webhooks) is too weak to accept, if it is.
pub(super) fn weak_secret(bytes: &[u8], decoded: bool) -> Option<String> {
    let is = if decoded { "decodes to" } else { "is" };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        Some(format!("{is} only whitespace"))
    } else if bytes.len() < MIN_SECRET_BYTES {
        Some(format!("{is} {} bytes; at least {MIN_SECRET_BYTES} are required", bytes.len()))
    } else {
        None
    }
}

fn weak_secret_hint(kind: SourceKind) -> String {
    match kind {
        SourceKind::StandardWebhooks => {
            "use the whsec_ secret your sender generated, or make one: echo \"whsec_$(openssl rand -base64 32)\"".into()
        }
        _ => "use the secret your sender generated, or make a long random one: openssl rand -hex 32".into(),
    }
}

/// Parses "90s", "15m", "1h 30m", "90d", "2w" (jiff's friendly format) into a non-negative
/// duration. A day is 24 hours and a week 7 days; months and years are refused (not uniform).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let span: jiff::Span = text.trim().parse().ok()?;
    let signed = span.to_duration(jiff::SpanRelativeTo::days_are_24_hours()).ok()?;
    Duration::try_from(signed).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/handoff/handoff.toml"), text)
    }

    #[test]
    fn an_empty_file_gives_the_defaults() {
        let config = parse("").unwrap();
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.store, StoreLocation::Sqlite(PathBuf::from("/etc/handoff/handoff.db")));
        assert!(config.sources.is_empty());
    }

    #[test]
    fn an_unknown_key_is_reported_with_its_line() {
        let err = parse("[server]\nlisten = \"127.0.0.1:1\"\nlistn = \"x\"\n").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("/etc/handoff/handoff.toml:3:1: unknown field `listn`"), "{text}");
        assert!(text.contains("hint:"), "{text}");
    }

    #[test]
    fn a_missing_env_var_is_reported_at_the_secret_line_with_a_hint() {
        let text = "[sources.dbt]\nkind = \"dbt_cloud\"\nsecret = { env = \"HANDOFF_TEST_SURELY_UNSET_VAR\" }\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains("handoff.toml:3:"), "{err}");
        assert!(err.contains("environment variable HANDOFF_TEST_SURELY_UNSET_VAR is not set"), "{err}");
        assert!(err.contains("hint: export HANDOFF_TEST_SURELY_UNSET_VAR"), "{err}");
    }

    #[test]
    fn an_airbyte_source_with_a_secret_is_told_to_use_a_token() {
        let text = "[sources.ab]\nkind = \"airbyte\"\nsecret = { env = \"X\" }\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains("`secret` does not apply to kind airbyte"), "{err}");
        assert!(err.contains("has no `token`"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = "[server]\ntrusted_proxies = [\"not-an-ip\"]\n[store]\nurl = \"mysql://x\"\n";
        let err = parse(text).unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        assert_eq!(err.problems[0].line, 2);
        assert_eq!(err.problems[1].line, 4);
    }

    #[test]
    fn every_refused_key_is_reported_and_the_rest_of_the_file_is_still_checked() {
        let text =
            "[sources.s]\nkind = \"hmac\"\nsecret = \"inline-value\"\nsecert = 1\n[server]\nworkers = 0\nlisten = 5\n";
        let err = parse(text).unwrap_err();
        let at: Vec<(usize, usize)> = err.problems.iter().map(|p| (p.line, p.column)).collect();
        assert_eq!(at, [(3, 10), (4, 1), (6, 11), (7, 10)], "{err}");
        assert!(!err.to_string().contains("has no `secret`"), "a refused secret is not also missing: {err}");
        assert!(!err.to_string().contains("inline-value"), "{err}");
    }

    #[test]
    fn a_dbt_cloud_token_written_as_a_value_is_refused_once_not_also_missing() {
        let text = "[sources.s]\nkind = \"hmac\"\nsecret = { env = \"PATH\" }\nreplay_window = \"1m\"\n\
                    [jobs.j]\nafter = [\"s\"]\n[[jobs.j.actions]]\nkind = \"dbt_cloud\"\nbase_url = \"https://x.example\"\n\
                    account_id = 1\njob_id = 2\ntoken = \"dapi-pasted-token\"\n";
        let err = parse(text).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        assert_eq!((err.problems[0].line, err.problems[0].column), (12, 9), "{err}");
        assert!(!err.to_string().contains("dapi-pasted"), "{err}");
    }

    #[test]
    fn an_action_problem_points_at_its_key_not_at_the_actions_header() {
        let text = "[sources.s]\nkind = \"hmac\"\nsecret = { env = \"PATH\" }\nreplay_window = \"1m\"\n\
                    [jobs.j]\nafter = [\"s\"]\n[[jobs.j.actions]]\nkind = \"slack\"\nurl = \"not a url\"\n  text = \"{{ jobb }}\"\n\
                    [[jobs.j.actions]]\nkind = \"http\"\nurl = \"https://x.example\"\nmethod = \"PSOT\"\n";
        let err = parse(text).unwrap_err();
        let at: Vec<(usize, usize)> = err.problems.iter().map(|p| (p.line, p.column)).collect();
        assert_eq!(at, [(9, 1), (10, 3), (14, 1)], "{err}");
        assert!(err.problems[1].message.contains("`jobb` is undefined"), "{err}");
    }

    #[test]
    fn a_bad_time_zone_gets_a_time_zone_hint_and_a_bad_schedule_beside_it_is_reported_too() {
        let text = "[jobs.j]\nschedule = \"often\"\ntimezone = \"Berlin\"\n";
        let err = parse(text).unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        assert_eq!((err.problems[0].line, err.problems[1].line), (2, 3), "{err}");
        assert!(err.problems[1].hint.as_deref().unwrap_or_default().contains("Europe/Berlin"), "{err}");
    }

    #[test]
    fn a_postgres_url_keeps_its_password_apart_and_never_shows_it() {
        let config =
            parse("[store]\nurl = \"postgres://handoff:s3cr%40t@db.internal:5432/handoff?sslmode=require\"\n").unwrap();
        let StoreLocation::Postgres(pg) = &config.store else { panic!("{:?}", config.store) };
        assert_eq!(pg.url, "postgres://handoff@db.internal:5432/handoff?sslmode=require");
        assert_eq!(pg.password.as_ref().map(|p| p.expose_secret().to_string()), Some("s3cr@t".into()));
        assert_eq!(pg.pool, DEFAULT_POOL);
        assert_eq!(config.store_url, "postgres://handoff:***@db.internal:5432/handoff?sslmode=require");
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cr"), "{debug}");
    }

    #[test]
    fn a_postgres_password_comes_from_a_reference_and_the_pool_is_set() {
        let text = "[store]\nurl = \"postgres://handoff@db:5432/h\"\npassword = { env = \"PATH\" }\npool = 4\n";
        let config = parse(text).unwrap();
        let StoreLocation::Postgres(pg) = &config.store else { panic!() };
        assert_eq!(pg.password.as_ref().map(|p| p.expose_secret().to_string()), std::env::var("PATH").ok());
        assert_eq!(pg.pool, 4);
        assert_eq!(config.store_url, "postgres://handoff:***@db:5432/h");
    }

    #[test]
    fn min_free_space_is_a_size_with_a_default_and_applies_to_sqlite_only() {
        assert_eq!(parse("").unwrap().min_free_space, DEFAULT_MIN_FREE_SPACE);
        let config = parse("[store]\nurl = \"sqlite://h.db\"\nmin_free_space = \"1GiB\"\n").unwrap();
        assert_eq!(config.min_free_space, 1 << 30);
        let err = parse("[store]\nmin_free_space = \"lots\"\n").unwrap_err();
        assert_eq!(err.problems[0].line, 2, "{err}");
        let err = parse("[store]\nurl = \"postgres://h@db/h\"\nmin_free_space = \"1GiB\"\n").unwrap_err();
        assert_eq!(err.problems[0].line, 3, "{err}");
        assert!(err.problems[0].message.contains("SQLite store only"), "{err}");
    }

    #[test]
    fn postgres_settings_on_a_sqlite_store_and_a_missing_password_are_reported_with_their_lines() {
        let err = parse("[store]\nurl = \"sqlite://h.db\"\npool = 4\n").unwrap_err();
        assert_eq!(err.problems[0].line, 3);
        assert!(err.problems[0].message.contains("PostgreSQL store only"), "{err}");
        let text = "[store]\nurl = \"postgres://h@db/h\"\npassword = { env = \"HANDOFF_TEST_UNSET_PASSWORD\" }\n";
        let err = parse(text).unwrap_err();
        assert_eq!(err.problems[0].line, 3, "{err}");
        let err = parse("[store]\nurl = \"mysql://root:hunter2@db/x\"\n").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn a_checked_config_never_shows_a_secret_in_its_debug_output() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t"), "airbyte-token-value").unwrap();
        std::fs::write(dir.path().join("s"), "dbt-secret-value").unwrap();
        let text = "[sources.a]\nkind = \"airbyte\"\ntoken = { file = \"t\" }\n[sources.d]\nkind = \"dbt_cloud\"\nsecret = { file = \"s\" }\n";
        let config = Config::parse(&dir.path().join("handoff.toml"), text).unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("airbyte-token-value") && !shown.contains("dbt-secret-value"), "{shown}");
        assert!(!shown.contains("97, 105, 114"), "not as bytes either");
    }

    #[test]
    fn a_misspelt_key_or_kind_gets_a_did_you_mean() {
        let err = parse("[sources.ab]\nkind = \"airbyte\"\ntokn = 1\n").unwrap_err().to_string();
        assert!(err.contains("hint: did you mean `token`?"), "{err}");
        let err = parse("[sources.d]\nkind = \"dbt\"\n").unwrap_err().to_string();
        assert!(err.contains("hint: did you mean `dbt_cloud`?"), "{err}");
    }

    /// Config text in a temp folder holding the secret files `files`.
    fn parse_with_files(files: &[(&str, &str)], text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        for (name, value) in files {
            std::fs::write(dir.path().join(name), value).unwrap();
        }
        Config::parse(&dir.path().join("handoff.toml"), text)
    }

    #[test]
    fn a_source_secret_shorter_than_16_bytes_or_made_of_whitespace_is_refused_at_its_line() {
        let files = [("one", "x\n"), ("spaces", "                    \n"), ("fifteen", "123456789012345\n")];
        for kind in ["dbt_cloud", "fivetran", "hmac", "github"] {
            for (file, reason) in [
                ("one", "is 1 bytes; at least 16 are required"),
                ("spaces", "is only whitespace"),
                ("fifteen", "is 15 bytes; at least 16 are required"),
            ] {
                let text = format!("[sources.s]\nkind = \"{kind}\"\n\nsecret = {{ file = \"{file}\" }}\n");
                let err = parse_with_files(&files, &text).unwrap_err();
                assert_eq!((err.problems.len(), err.problems[0].line), (1, 4), "{kind} {file}: {err}");
                assert!(err.problems[0].message.contains(reason), "{kind} {file}: {err}");
                assert!(err.problems[0].hint.as_deref().unwrap_or_default().contains("openssl rand"), "{err}");
            }
        }
        let text = "[sources.ab]\nkind = \"airbyte\"\ntoken = { file = \"one\" }\n";
        let err = parse_with_files(&files, text).unwrap_err().to_string();
        assert!(err.contains(":3:9: the token from file one is 1 bytes"), "{err}");
        // A Standard Webhooks secret counts the bytes it decodes to: "c2hvcnQ=" is "short".
        let text = "[sources.sw]\nkind = \"standard_webhooks\"\nsecret = { file = \"sw\" }\n";
        let err = parse_with_files(&[("sw", "whsec_c2hvcnQ=\n")], text).unwrap_err().to_string();
        assert!(err.contains("decodes to 5 bytes; at least 16 are required"), "{err}");
        // The rotated-out secret obeys the same rule; 16 bytes are enough.
        let text = "[sources.s]\nkind = \"hmac\"\nsecret = { file = \"ok\" }\nprevious_secret = { file = \"one\" }\n";
        let err = parse_with_files(&[("ok", "0123456789abcdef\n"), ("one", "x")], text).unwrap_err();
        assert_eq!(err.problems[0].line, 4, "{err}");
        let text = "[sources.s]\nkind = \"hmac\"\nsecret = { file = \"ok\" }\n";
        assert!(parse_with_files(&[("ok", "0123456789abcdef\n")], text).is_ok());
    }

    #[test]
    fn a_secret_written_inline_is_refused_without_repeating_it() {
        let cases = [
            ("[sources.s]\nkind = \"hmac\"\nsecret = \"hunter2-inline-secret-value\"\n", 3, 10),
            (
                "[sources.s]\nkind = \"dbt_cloud\"\nsecret = { env = \"PATH\" }\nprevious_secret = 'hunter2-old'\n",
                4,
                19,
            ),
            ("[sources.s]\nkind = \"airbyte\"\ntoken = 4242424242424242\n", 3, 9),
            ("[store]\nurl = \"postgres://h@db/h\"\npassword = \"hunter2-db\"\n", 3, 12),
        ];
        for (text, line, column) in cases {
            let err = parse(text).unwrap_err();
            let shown = err.to_string();
            assert_eq!((err.problems[0].line, err.problems[0].column), (line, column), "{shown}");
            assert!(shown.contains(secret::NOT_A_REFERENCE), "{shown}");
            assert!(shown.contains(r#"hint: move the value to an environment variable or a file"#), "{shown}");
            assert!(!shown.contains("hunter2") && !shown.contains("4242"), "{shown}");
        }
    }

    #[test]
    fn replay_window_applies_to_hmac_and_github_sources_only() {
        let text = "[sources.e]\nkind = \"hmac\"\nsecret = { env = \"PATH\" }\nreplay_window = \"10m\"\n\
                    [sources.g]\nkind = \"github\"\nsecret = { env = \"PATH\" }\nreplay_window = \"1h\"\n\
                    [sources.p]\nkind = \"hmac\"\nsecret = { env = \"PATH\" }\n";
        let config = parse(text).unwrap();
        assert_eq!(config.sources["e"].replay_window, Some(Duration::from_secs(600)));
        assert_eq!(config.sources["g"].replay_window, Some(Duration::from_secs(3600)));
        assert_eq!(config.sources["p"].replay_window, None, "off unless set");
        assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
        assert!(config.warnings[0].starts_with("source `p` (hmac) signs the body only"), "{:?}", config.warnings);

        let text = "[sources.sw]\nkind = \"standard_webhooks\"\nsecret = { env = \"PATH\" }\nreplay_window = \"10m\"\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains(":4:17: `replay_window` does not apply to kind standard_webhooks"), "{err}");
        assert!(err.contains("set `tolerance` instead"), "{err}");
        let text = "[sources.e]\nkind = \"hmac\"\nsecret = { env = \"PATH\" }\nreplay_window = \"0s\"\n";
        assert!(parse(text).unwrap_err().to_string().contains("replay_window must be at least 1s"));
    }

    #[test]
    fn ipv4_mapped_ranges_are_read_as_the_ipv4_ranges_they_mean() {
        let text = "[server]\ntrusted_proxies = [\"::ffff:10.0.0.0/104\", \"::ffff:192.0.2.7\", \"2001:db8::/32\"]\n";
        let shown: Vec<String> = parse(text).unwrap().trusted_proxies.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]);
        let text = "[sources.s]\nkind = \"hmac\"\nsecret = { env = \"PATH\" }\nallow_ips = [\"127.0.0.1\"]\n";
        let source = &parse(text).unwrap().sources["s"];
        assert!(source.allows("::ffff:127.0.0.1".parse().unwrap()), "a [::] listener's view of 127.0.0.1");
        assert!(source.allows("127.0.0.1".parse().unwrap()));
        assert!(!source.allows("::ffff:127.0.0.2".parse().unwrap()));
        assert!(!source.allows("::1".parse().unwrap()));
    }

    #[test]
    fn connection_limits_default_to_what_real_senders_never_hit_and_can_be_set() {
        assert_eq!(parse("").unwrap().limits, Limits::default());
        let text = "[server]\nheader_timeout = \"2s\"\nbody_timeout = \"5s\"\nidle_timeout = \"1m\"\nmax_connections = 50\nmax_body_memory = \"8MiB\"\n";
        let limits = parse(text).unwrap().limits;
        assert_eq!(
            limits,
            Limits {
                header_timeout: Duration::from_secs(2),
                body_timeout: Duration::from_secs(5),
                idle_timeout: Duration::from_secs(60),
                max_connections: 50,
                max_body_memory: 8 << 20,
            }
        );
    }

    #[test]
    fn a_zero_timeout_or_a_source_larger_than_the_body_memory_is_reported_with_its_line() {
        let err = parse("[server]\nbody_timeout = \"0s\"\nmax_connections = 0\n").unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        assert!(err.problems[0].message.contains("body_timeout must be more than 0"), "{err}");
        assert_eq!(err.problems[1].line, 3, "{err}");
        let text =
            "[server]\nmax_body_memory = \"512KiB\"\n[sources.d]\nkind = \"dbt_cloud\"\nsecret = { env = \"PATH\" }\n";
        let err = parse(text).unwrap_err();
        assert_eq!(err.problems[0].line, 2, "{err}");
        assert!(err.to_string().contains("source `d` accepts bodies of 1048576 bytes"), "{err}");
    }

    #[test]
    fn rejection_budget_and_source_rate_limits_have_defaults_and_bad_ones_name_their_line() {
        let config = parse("").unwrap();
        assert_eq!(config.reject_budget, Some(RejectBudget { rate: DEFAULT_REJECT_RATE, burst: DEFAULT_REJECT_BURST }));
        let config = parse("[server]\nreject_rate = \"off\"\n").unwrap();
        assert_eq!(config.reject_budget, None);
        let text = "[server]\nreject_rate = \"600/m\"\nreject_burst = 20\n[sources.h]\nkind = \"hmac\"\nsecret = { env = \"PATH\" }\nrate_limit = \"50/s\"\n";
        let config = parse(text).unwrap();
        let budget = config.reject_budget.unwrap();
        assert_eq!((budget.rate.count, budget.rate.per, budget.burst), (600, Duration::from_secs(60), 20));
        assert_eq!(config.sources["h"].rate_limit, Some(Rate { count: 50, per: Duration::from_secs(1) }));

        let text = "[server]\nreject_rate = \"lots\"\nreject_burst = 0\n[sources.h]\nkind = \"hmac\"\nsecret = { env = \"PATH\" }\nrate_limit = \"fast\"\n";
        let err = parse(text).unwrap_err();
        let lines: Vec<usize> = err.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [2, 3, 7], "{err}");
        let text = err.to_string();
        assert!(text.contains("handoff.toml:7:14: `fast` is not a rate"), "{text}");
        assert!(text.contains(r#"hint: write a count per time, e.g. "10/s""#), "{text}");
    }

    #[test]
    fn durations_read_like_the_rest_of_the_data_stack() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Some(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h 30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("90d"), Some(Duration::from_secs(90 * 86_400)));
        assert_eq!(parse_duration("2w"), Some(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse_duration("1y"), None, "a year is not a fixed length");
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("-5m"), None);
    }

    #[test]
    fn retention_has_defaults_takes_days_and_forever_and_reports_bad_keys_with_their_line() {
        let day = Duration::from_secs(86_400);
        let retention = parse("").unwrap().retention;
        assert_eq!(
            (retention.events, retention.runs, retention.outputs),
            (Some(90 * day), Some(180 * day), Some(30 * day))
        );
        let text = "[store.retention]\nevents = \"7d\"\nruns = \"forever\"\noutputs = \"2w\"\n";
        let retention = parse(text).unwrap().retention;
        assert_eq!((retention.events, retention.runs, retention.outputs), (Some(7 * day), None, Some(14 * day)));
        let err = parse("[store.retention]\nevents = \"7d\"\nevent = \"1d\"\n").unwrap_err();
        let shown = err.to_string();
        assert!(shown.contains("handoff.toml:3:1: unknown field `event`"), "{shown}");
        assert!(shown.contains("did you mean `events`?"), "{shown}");
        let err = parse("[store.retention]\nruns = \"6 months\"\noutputs = \"10m\"\n").unwrap_err();
        let lines: Vec<usize> = err.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [2, 3], "{err}");
        assert!(err.to_string().contains("outputs must be at least 1h"), "{err}");
    }
}
