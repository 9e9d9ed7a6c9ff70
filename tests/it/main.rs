//! Integration tests: one binary, real HTTP on loopback, real SQLite files, a real PostgreSQL
//! server (see `pg.rs`), the real CLI.

mod abuse;
mod actions;
mod admin;
mod audit;
mod bi_fake;
mod cancel;
mod cli;
mod commands;
mod conformance;
mod connections;
mod console;
mod crash;
mod dashboards;
mod dbt;
mod deploy;
mod examples;
mod first_hour;
mod helpers;
mod jobs;
// The Lambda receiver: `cargo test --features lambda --test it lambda::`.
#[cfg(feature = "lambda")]
mod lambda;
mod lifecycle;
mod logs;
mod no_secrets;
mod notifications;
mod operate;
mod pg;
mod providers;
mod rejections;
mod reload;
mod replay;
mod replicas;
mod retention;
mod roles;
mod schedules;
mod senders_doc;
mod store_copy;
mod store_faults;
mod tls;
