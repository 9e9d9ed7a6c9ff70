//! Scheduling: pure logic (when a job is due, when its schedule ticks, how long to wait
//! before a retry, which jobs an event feeds) and, in `service`, the loop that applies it.
//!
//! Everything but `service` is pure: no I/O, and `now` is always passed in, so the rules are
//! tested without a database or a clock.

pub mod gate;
pub mod job;
pub mod matcher;
pub mod schedule;
pub mod service;
pub mod tick;
pub mod timing;

pub use job::{Job, Retry, Upstream, WaitFor};
