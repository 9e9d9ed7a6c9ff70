//! handoff: receives signed webhooks from the data stack, records them durably, decides
//! which jobs they feed and runs them. Vocabulary: source, event, job, run, action.
//!
//! - [`config`]: `handoff.toml`, secret references, validation with line numbers and hints
//! - [`domain`]: events, statuses, subjects; pure data
//! - [`signature`]: HMAC signing/verification and header decoding; pure
//! - [`sources`]: per-kind authentication and normalisation of deliveries
//! - [`store`]: events, decisions and runs on SQLite or PostgreSQL (group commit, single flight by unique indexes)
//! - [`http`]: the router: `POST /hooks/{source}`, `/healthz`, `/readyz`, `/metrics`
//! - [`scheduler`]: matching, debounce, gates, schedules, retries (pure) and the loop that applies them
//! - [`worker`]: executes a claimed run's actions and records the outcome
//! - [`actions`]: the steps of a run (`command`)
//! - [`outbound`]: outbound HTTP with retries (429/5xx/network), shared by `send` and actions
//! - [`app`]: wires the above into a server
//! - [`cli`]: the subcommands of the `handoff` binary
//! - [`telemetry`]: logs and Prometheus metrics
#![forbid(unsafe_code)]

pub mod actions;
pub mod app;
pub mod cli;
pub mod config;
pub mod domain;
pub mod http;
pub mod outbound;
pub mod scheduler;
pub mod signature;
pub mod sources;
pub mod store;
pub mod telemetry;
pub mod worker;
