//! `handoff serve`: the server, until SIGTERM or SIGINT; SIGHUP reloads the config.

use super::Failure;
use crate::app::App;
use crate::config::Config;
use crate::role::ServeRole;
use crate::store::StoreOptions;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Which half of the server to run: `all` (default), `receiver` (POST /hooks only: verify
    /// and record, no scheduler, no actions) or `worker` (scheduler and actions, no /hooks).
    /// `receiver` and `worker` need a PostgreSQL store.
    #[arg(long, value_enum, default_value_t = ServeRole::All)]
    pub role: ServeRole,
}

pub async fn run(config: Config, args: &ServeArgs) -> Result<(), Failure> {
    args.role.check(&config.store).map_err(Failure::usage)?;
    let sources = config.sources.len();
    let scheme = if config.tls.is_some() { "https" } else { "http" };
    let source_lines: Vec<(String, String, &str)> = config
        .sources
        .values()
        .map(|s| (s.name.clone(), format!("/hooks/{}", s.name), crate::sources::describe_auth(s.kind)))
        .collect();
    let store = config.store_url.clone();
    let app = App::build(config, StoreOptions::default()).await.map_err(|e| Failure::runtime(e.to_string()))?;
    let app = app.with_role(args.role);
    let runtime_threads = tokio::runtime::Handle::current().metrics().num_workers();
    let admin_api = app.admin_addr().map_or_else(|| "off".to_string(), |addr| format!("{scheme}://{addr}/api/"));
    let console = app.admin_addr().map_or_else(|| "off".to_string(), |addr| format!("{scheme}://{addr}/ui/"));
    tracing::info!(listen = %app.local_addr(), role = %args.role, store = %store, sources, admin_api = %admin_api, console = %console, owner = %app.owner(), runtime_threads, "handoff is serving");
    // What a user wires senders to: each source's URL and how its deliveries must prove who sent them.
    if args.role.receives() {
        for source in source_lines {
            tracing::info!(source = %source.0, url = %format!("{scheme}://{}{}", app.local_addr(), source.1), auth = source.2, "source");
        }
    }
    let reloading = tokio::spawn(reload_on_hangup(app.reloader()));
    let served = app.run_until_stopped(shutdown_signal()).await;
    reloading.abort();
    served.map_err(|e| Failure::runtime(e.to_string()))?;
    tracing::info!("stopped");
    Ok(())
}

/// SIGHUP (`systemctl reload`, `kill -HUP`): read the config file again and apply it. One
/// reload at a time; signals that arrive during one fold into the next.
async fn reload_on_hangup(reloader: std::sync::Arc<crate::reload::Reloader>) {
    #[cfg(unix)]
    {
        let Ok(mut hangup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            tracing::error!("cannot install a SIGHUP handler: reload by restarting");
            return;
        };
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the config");
            let reloader = reloader.clone();
            // Reading secret files and checking certificates is blocking file work.
            let _ = tokio::task::spawn_blocking(move || reloader.reload()).await;
        }
    }
    #[cfg(not(unix))]
    let _ = reloader;
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
