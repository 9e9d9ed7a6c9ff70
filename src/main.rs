//! The `handoff` binary: parse the command line, start logging, dispatch.

use clap::Parser;
use handoff::cli::Cli;
use std::process::ExitCode;

/// mimalloc rather than glibc's malloc: under load, allocation and freeing across the runtime's
/// threads took about a tenth of the server's CPU (`perf` profile, bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.is_server() {
        handoff::telemetry::init(cli.log_format());
    }
    match cli.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}
