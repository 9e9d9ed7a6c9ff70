//! The `handoff` binary: parse the command line, start logging, dispatch.

use clap::Parser;
use handoff::cli::Cli;
use std::process::ExitCode;

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
