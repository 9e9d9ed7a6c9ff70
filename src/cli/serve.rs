//! `handoff serve`: the server, until SIGTERM or SIGINT.

use super::Failure;
use crate::app::App;
use crate::config::Config;
use crate::store::StoreOptions;

pub async fn run(config: Config) -> Result<(), Failure> {
    let sources = config.sources.len();
    let source_lines: Vec<(String, String, &str)> = config
        .sources
        .values()
        .map(|s| (s.name.clone(), format!("/hooks/{}", s.name), crate::sources::describe_auth(s.kind)))
        .collect();
    let store = config.store_url.clone();
    let app = App::build(config, StoreOptions::default()).await.map_err(|e| Failure::runtime(e.to_string()))?;
    let runtime_threads = tokio::runtime::Handle::current().metrics().num_workers();
    let admin_api = app.admin_addr().map_or_else(|| "off".to_string(), |addr| format!("http://{addr}/api/"));
    let console = app.admin_addr().map_or_else(|| "off".to_string(), |addr| format!("http://{addr}/ui/"));
    tracing::info!(listen = %app.local_addr(), store = %store, sources, admin_api = %admin_api, console = %console, owner = %app.owner(), runtime_threads, "handoff is serving");
    // What a user wires senders to: each source's URL and how its deliveries must prove who sent them.
    for source in source_lines {
        tracing::info!(source = %source.0, url = %format!("http://{}{}", app.local_addr(), source.1), auth = source.2, "source");
    }
    app.run_until_stopped(shutdown_signal()).await.map_err(|e| Failure::runtime(e.to_string()))?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM (Kubernetes, systemd) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler cannot fail on unix");
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down: no new connections, finishing requests in flight");
}
