//! Integration tests: one binary, real HTTP on loopback, real SQLite files, the real CLI.

mod cli;
mod crash;
mod helpers;
mod logs;
mod providers;
mod rejections;
