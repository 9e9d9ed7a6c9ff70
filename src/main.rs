//! The `handoff` binary: parse the command line, start logging, start the runtime, dispatch.

use clap::Parser;
use handoff::cli::Cli;
use std::process::ExitCode;

/// mimalloc rather than glibc's malloc: under load, allocation and freeing across the runtime's
/// threads took about a tenth of the server's CPU (`perf` profile, bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.is_server() {
        handoff::telemetry::init(cli.log_format());
    }
    let runtime = match runtime(cli.is_server()) {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli.run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// The runtime. The server's store writer is a thread of its own that keeps a core busy under
/// load, so `serve` runs one runtime thread fewer than there are cores (at least one):
/// measured on two cores, one runtime thread beside the writer took 19,300 deliveries/s at
/// 60 µs of CPU each, two took 16,000-18,300/s at 65-74 µs (bench/README.md).
/// `TOKIO_WORKER_THREADS` overrides the count.
fn runtime(server: bool) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if server && std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        builder.worker_threads(cores.saturating_sub(1).max(1));
    }
    builder.build()
}
