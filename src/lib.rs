//! handoff: receives signed webhooks from the data stack, records them durably, decides
//! which jobs they feed and runs them. Vocabulary: source, event, job, run, action.
//!
//! - [`config`]: `handoff.toml`, secret references, validation with line numbers and hints
//! - [`domain`]: events, runs, statuses and the run-state rules; pure
//! - [`signature`]: HMAC signing/verification and header decoding; pure
//! - [`sources`]: per-kind authentication and normalisation of deliveries
//! - [`store`]: events, decisions and runs behind one API and a row API for deciding; SQLite and
//!   PostgreSQL, each with its own SQL; `store copy`; retention (`prune`)
//! - [`http`]: the router: `POST /hooks/{source}`, `/healthz`, `/readyz`, `/metrics`, the admin API `/api/`,
//!   the web console `/ui/`
//! - [`scheduler`]: the policy: jobs, matching, debounce, gates, schedules (pure), the decision step
//!   (`tick`) over the store's row API, and the loop that runs it
//! - [`worker`]: executes a claimed run's actions and records the outcome
//! - [`dbt`]: dbt artifacts: the manifest's sources (selection from lineage) and run_results.json
//! - [`actions`]: the steps of a run: `command`, `http`, `slack`, `dbt_cloud`, and their settings
//! - [`operate`]: the operator's verbs (run, rerun, replay, cancel, pause, resume), for the CLI and the admin API
//! - [`redact`]: every secret value the process knows, and the pass that removes them from stored or logged text
//! - [`outbound`]: outbound HTTP with retries (429/5xx/network), shared by `send` and actions
//! - [`app`]: wires the above into a server
//! - [`role`]: `serve --role all|receiver|worker`, which half of the server a process runs
//! - [`reload`]: SIGHUP re-reads the config and swaps sources, secrets, jobs and certificates
//! - [`swap`]: the handle a reloaded value sits behind, loaded by its readers at each use
//! - [`cli`]: the subcommands of the `handoff` binary
//! - [`telemetry`]: logs and Prometheus metrics
//! - `lambda` (feature `lambda`): the receiving half as an AWS Lambda function
//! - [`views`]: the JSON shapes the read commands and the admin API share
#![forbid(unsafe_code)]

pub mod actions;
pub mod app;
pub mod cli;
pub mod config;
pub mod dbt;
pub mod domain;
pub mod http;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod operate;
pub mod outbound;
pub mod redact;
pub mod reload;
pub mod role;
pub mod scheduler;
pub mod signature;
pub mod sources;
pub mod store;
pub mod swap;
pub mod telemetry;
pub mod views;
pub mod worker;
