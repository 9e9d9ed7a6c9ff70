//! Integration tests: one binary, real HTTP on loopback, real SQLite files, the real CLI.

mod actions;
mod cli;
mod conformance;
mod crash;
mod examples;
mod helpers;
mod jobs;
mod lifecycle;
mod logs;
mod providers;
mod rejections;
mod schedules;
mod store_copy;
