//! What the deployment files rely on: `handoff health`, the container image's HEALTHCHECK
//! (packaging/container/Dockerfile), which must answer without curl in the image.

use crate::cli::cli;
use crate::helpers::*;

#[tokio::test]
async fn handoff_health_exits_0_while_the_server_is_ready_and_1_with_the_reason_when_it_is_not() {
    let app = TestApp::spawn().await;
    let ready = cli(&["health", &app.url("/readyz")]).await;
    assert!(ready.ok().contains("200"), "{}", ready.stdout);

    let db = app.dir.path().join("handoff.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let not_ready = cli(&["health", &app.url("/readyz")]).await;
    let stderr = not_ready.failed(1);
    assert!(stderr.contains("503") && stderr.contains(&db.display().to_string()), "{stderr}");
    // The process still answers: liveness stays green, so a full or lost disk is no restart loop.
    cli(&["health", &app.url("/healthz")]).await.ok();
    app.stop().await;
}

#[tokio::test]
async fn handoff_health_exits_1_when_nothing_answers() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = cli(&["health", &format!("http://127.0.0.1:{port}/readyz"), "--timeout", "2s"]).await;
    assert!(out.failed(1).contains("no answer"), "{}", out.stderr);
}
