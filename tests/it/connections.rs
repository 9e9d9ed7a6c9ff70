//! Clients that hold connections: slow or silent heads, trickling bodies, idle keep-alive,
//! more connections than the cap, many large bodies at once, and SIGTERM while one hangs.
//! Each runs the real server process with short `[server]` timeouts.

use crate::helpers::*;
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LOADER: &str = "[sources.loader]\nkind = \"hmac\"\nsecret = { file = \"hmac\" }\n";

/// The server process with `server_lines`, its log read as it is written so logging never
/// blocks it.
async fn start(dir: &Path, server_lines: &str) -> (ServerProcess, Arc<Mutex<String>>) {
    write_secrets(dir);
    let mut server = ServerProcess::start_with(dir, server_lines, LOADER).await;
    let mut stderr = server.child.as_mut().unwrap().stderr.take().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    (server, log)
}

async fn connect(server: &ServerProcess) -> TcpStream {
    TcpStream::connect(("127.0.0.1", server.port())).await.unwrap()
}

/// Reads until the server closes the connection; returns what it sent, or `None` if it was
/// still open after `bound`.
async fn read_until_closed(stream: &mut (impl AsyncReadExt + Unpin), bound: Duration) -> Option<String> {
    let deadline = tokio::time::Instant::now() + bound;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&seen).into_owned()),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads one answer's head and its `Content-Length` body.
async fn read_answer(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed before a whole answer: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if seen.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

async fn metrics(server: &ServerProcess) -> String {
    reqwest::get(format!("{}/metrics", server.base)).await.unwrap().text().await.unwrap()
}

#[tokio::test]
async fn slowloris_connections_are_closed_after_the_header_timeout_while_signed_deliveries_keep_being_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _log) = start(dir.path(), "header_timeout = \"1s\"\n").await;
    let opened = Instant::now();
    let mut silent = connect(&server).await;
    let (mut trickle_read, mut trickle_write) = connect(&server).await.into_split();
    let trickling = tokio::spawn(async move {
        for byte in b"POST /hooks/loader HTTP/1.1\r\nHost: x\r\n" {
            if trickle_write.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    for _ in 0..4 {
        assert_eq!(server.deliver_to_loader().await, 202);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let bound = Duration::from_secs(3);
    let silent_end = read_until_closed(&mut silent, bound.saturating_sub(opened.elapsed())).await;
    assert_eq!(
        silent_end.as_deref(),
        Some(""),
        "a connection that sends nothing is closed within 3x the header timeout"
    );
    let trickle_end = read_until_closed(&mut trickle_read, bound.saturating_sub(opened.elapsed())).await;
    assert!(trickle_end.is_some(), "a head sent a byte at a time is closed within 3x the header timeout");
    trickling.abort();
    assert_eq!(server.deliver_to_loader().await, 202);
    let metrics = metrics(&server).await;
    assert!(metrics.contains("handoff_connections_timed_out_total{timeout=\"header\"} 2"), "{metrics}");
}

#[tokio::test]
async fn a_body_that_trickles_is_answered_408_and_its_connection_closed_after_the_body_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _log) = start(dir.path(), "body_timeout = \"1s\"\n").await;
    let (mut reader, mut writer) = connect(&server).await.into_split();
    let sent = Instant::now();
    writer
        .write_all(b"POST /hooks/loader HTTP/1.1\r\nHost: x\r\nAuthorization: 00\r\nContent-Length: 100\r\n\r\n")
        .await
        .unwrap();
    let trickling = tokio::spawn(async move {
        for _ in 0..100 {
            if writer.write_all(b"x").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let answer = read_until_closed(&mut reader, Duration::from_secs(3)).await;
    let answer = answer.expect("answered and closed within 3x the body timeout");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive within 1s"), "{answer}");
    assert!(sent.elapsed() >= Duration::from_secs(1), "not before the body timeout");
    trickling.abort();
    let metrics = metrics(&server).await;
    assert!(metrics.contains("outcome=\"body_timeout\""), "{metrics}");
    assert!(metrics.contains("handoff_connections_timed_out_total{timeout=\"body\"} 1"), "{metrics}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_outlives_the_header_timeout_and_is_closed_after_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _log) = start(dir.path(), "header_timeout = \"1s\"\nidle_timeout = \"3s\"\n").await;
    let mut stream = connect(&server).await;
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let answer = read_answer(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answered = Instant::now();

    assert_eq!(read_until_closed(&mut stream, Duration::from_millis(1500)).await, None, "still open after 1.5s");
    // Reusable: a second request on the same connection is answered.
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert!(read_answer(&mut stream).await.starts_with("HTTP/1.1 200"));
    let closed = read_until_closed(&mut stream, Duration::from_secs(9)).await;
    assert_eq!(closed.as_deref(), Some(""), "closed within 3x the idle timeout");
    assert!(answered.elapsed() >= Duration::from_secs(3), "not before the idle timeout");
    let metrics = metrics(&server).await;
    assert!(metrics.contains("handoff_connections_timed_out_total{timeout=\"idle\"} 1"), "{metrics}");
}

#[tokio::test]
async fn beyond_max_connections_a_connection_waits_and_a_delivery_gets_through_once_the_timeouts_free_a_slot() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _log) = start(dir.path(), "max_connections = 3\nheader_timeout = \"2s\"\n").await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(connect(&server).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut fourth = connect(&server).await;
    let asked = Instant::now();
    fourth.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(500), fourth.read(&mut buf)).await;
    assert!(early.is_err(), "a connection beyond the cap is not served while the cap is full");
    assert_eq!(server.deliver_to_loader().await, 202, "the delivery waits for a slot, then is accepted");
    assert!(read_answer(&mut fourth).await.starts_with("HTTP/1.1 200"));
    assert!(asked.elapsed() < Duration::from_secs(12), "served within a few header timeouts");
    let metrics = metrics(&server).await;
    assert!(metrics.contains("handoff_connections_timed_out_total{timeout=\"header\"} 3"), "{metrics}");
}

/// The server's resident memory, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn many_large_bodies_at_once_stay_within_max_body_memory_and_the_rest_are_told_to_retry() {
    const CONNECTIONS: usize = 300;
    const BODY: usize = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let (server, _log) = start(dir.path(), "max_body_memory = \"8MiB\"\n").await;
    let pid = server.child.as_ref().unwrap().id();
    let before = rss_kib(pid);

    let all_in_place = Arc::new(tokio::sync::Barrier::new(CONNECTIONS + 1));
    let release = Arc::new(tokio::sync::Notify::new());
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut stream = connect(&server).await;
        let (all_in_place, release) = (all_in_place.clone(), release.clone());
        clients.push(tokio::spawn(async move {
            let head = format!(
                "POST /hooks/loader HTTP/1.1\r\nHost: x\r\nAuthorization: 00\r\nContent-Length: {BODY}\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).await.unwrap();
            let mut buf = [0u8; 4096];
            // Refused at once, or held: then send all but the last byte and keep it open.
            let answer = match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
                Ok(Ok(n)) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Ok(Err(err)) => Some(format!("error: {err}")),
                Err(_) => {
                    let chunk = vec![b'x'; 64 << 10];
                    let mut left = BODY - 1;
                    while left > 0 {
                        let n = left.min(chunk.len());
                        if stream.write_all(&chunk[..n]).await.is_err() {
                            break;
                        }
                        left -= n;
                    }
                    None
                }
            };
            all_in_place.wait().await;
            release.notified().await;
            answer
        }));
    }
    all_in_place.wait().await;
    // Bodies held by the server have had time to arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grown_mib = rss_kib(pid).saturating_sub(before) / 1024;
    release.notify_waiters();
    let mut refused = 0;
    for client in clients {
        if let Some(answer) = client.await.unwrap() {
            assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
            assert!(answer.to_ascii_lowercase().contains("retry-after: 5"), "{answer}");
            refused += 1;
        }
    }
    assert!(grown_mib < 100, "the server grew by {grown_mib} MiB for {CONNECTIONS} bodies of 1 MiB");
    assert!(refused >= CONNECTIONS - 8, "only 8 bodies of 1 MiB fit in 8 MiB; {refused} were refused");
    assert_eq!(server.deliver_to_loader().await, 202, "the budget is given back");
    let metrics = metrics(&server).await;
    assert!(metrics.contains(&format!("outcome=\"busy\"}} {refused}")), "{metrics}");
}

#[tokio::test]
async fn sigterm_with_a_half_sent_request_open_exits_promptly_and_answers_the_request_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    // Default timeouts: the stop must not wait for the 10s header timeout.
    let (mut server, log) = start(dir.path(), "").await;
    let mut half_sent = connect(&server).await;
    half_sent.write_all(b"POST /hooks/loa").await.unwrap();
    let body = br#"{"subject":"orders"}"#;
    let mut in_flight = connect(&server).await;
    let head = format!(
        "POST /hooks/loader HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Length: {}\r\n\r\n",
        hex_sig(HMAC_SECRET, body),
        body.len()
    );
    in_flight.write_all(head.as_bytes()).await.unwrap();
    in_flight.write_all(&body[..5]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let pid = nix::unistd::Pid::from_raw(server.child.as_ref().unwrap().id() as i32);
    let stopped = Instant::now();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    in_flight.write_all(&body[5..]).await.unwrap();
    let answer = read_answer(&mut in_flight).await;
    assert!(answer.starts_with("HTTP/1.1 202"), "a request in flight at SIGTERM is answered: {answer}");

    let status = loop {
        if let Some(status) = server.child.as_mut().unwrap().try_wait().unwrap() {
            break status;
        }
        let log = log.lock().unwrap().clone();
        assert!(stopped.elapsed() < Duration::from_secs(5), "still running 5s after SIGTERM:\n{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
    assert_eq!(read_until_closed(&mut half_sent, Duration::from_secs(1)).await.as_deref(), Some(""));
}
