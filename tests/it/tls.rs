//! Built-in TLS (`[server] tls`): a self-signed certificate made with `openssl` in the test,
//! real HTTPS on loopback. Signed deliveries are accepted over it, plain HTTP to the port
//! fails, `check` refuses a broken pair, and SIGHUP puts new certificate files in service.

use crate::helpers::{HMAC_SECRET, ServerProcess, hex_sig, write_secrets};
use std::path::Path;
use std::time::{Duration, Instant};

/// A self-signed certificate for 127.0.0.1 and localhost: writes `cert.pem` and `key.pem`
/// into `dir` and returns the certificate's PEM.
fn self_signed(dir: &Path, name: &str) -> Vec<u8> {
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
        .args(["-subj", &format!("/CN={name}"), "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        // webpki refuses a CA certificate as the server's own, which `req -x509` makes by default.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .output()
        .expect("openssl makes the test certificate");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::read(dir.join("cert.pem")).unwrap()
}

/// A client that trusts only this certificate.
fn trusting(cert: &[u8]) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert).unwrap()])
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

const CONFIG: &str = "tls = { cert = { file = \"cert.pem\" }, key = { file = \"key.pem\" } }\n\n\
                      [sources.loader]\nkind = \"hmac\"\nsecret = { file = \"hmac\" }\n";

/// `handoff serve` with TLS on a free port, once it answers over HTTPS.
async fn start(dir: &Path, cert: &[u8]) -> ServerProcess {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(dir.join("handoff.toml"), format!("[server]\nlisten = \"127.0.0.1:{port}\"\n{CONFIG}")).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["serve", "--config"])
        .arg(dir.join("handoff.toml"))
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let server =
        ServerProcess { child: Some(child), base: format!("https://127.0.0.1:{port}"), dir: dir.to_path_buf() };
    let (client, started) = (trusting(cert), Instant::now());
    while client.get(format!("{}/healthz", server.base)).send().await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "the server did not start serving HTTPS");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server
}

async fn deliver(client: &reqwest::Client, base: &str) -> reqwest::Result<u16> {
    let body = br#"{"subject":"orders"}"#;
    let response = client
        .post(format!("{base}/hooks/loader"))
        .header("authorization", hex_sig(HMAC_SECRET, body))
        .body(body.to_vec())
        .send()
        .await?;
    Ok(response.status().as_u16())
}

#[tokio::test]
async fn a_signed_delivery_over_built_in_tls_is_accepted_and_plain_http_to_the_tls_port_fails() {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    let cert = self_signed(dir.path(), "first");
    let server = start(dir.path(), &cert).await;
    assert_eq!(deliver(&trusting(&cert), &server.base).await.unwrap(), 202);
    let plain = server.base.replace("https://", "http://");
    assert!(deliver(&reqwest::Client::new(), &plain).await.is_err(), "plain HTTP must not be served on the TLS port");

    let (_, log) = server.terminate();
    assert!(log.contains("url=https://127.0.0.1:"), "the source URL says https:\n{log}");
    assert!(!log.contains("PRIVATE KEY"), "{log}");
}

#[tokio::test]
async fn after_the_certificate_files_are_replaced_and_sighup_new_connections_see_the_new_certificate() {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    let first = self_signed(dir.path(), "first");
    let server = start(dir.path(), &first).await;
    let old_client = trusting(&first);
    assert_eq!(deliver(&old_client, &server.base).await.unwrap(), 202);

    let second = self_signed(dir.path(), "second");
    server.hangup();
    let (new_client, started) = (trusting(&second), Instant::now());
    while deliver(&new_client, &server.base).await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "the new certificate was never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A client that trusts only the old certificate cannot open a new connection any more.
    assert!(deliver(&trusting(&first), &server.base).await.is_err());
}

#[tokio::test]
async fn check_refuses_a_key_that_does_not_belong_to_the_certificate_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    let other = tempfile::tempdir().unwrap();
    self_signed(other.path(), "other");
    self_signed(dir.path(), "mine");
    std::fs::copy(other.path().join("key.pem"), dir.path().join("key.pem")).unwrap();
    std::fs::write(dir.path().join("handoff.toml"), format!("[server]\n{CONFIG}")).unwrap();
    let check = |dir: &Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_handoff"))
            .args(["check", "--config"])
            .arg(dir.join("handoff.toml"))
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, stderr) = check(dir.path());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("handoff.toml:2:"), "{stderr}");
    assert!(
        stderr.contains("the key from file key.pem does not go with the certificate from file cert.pem"),
        "{stderr}"
    );
    assert!(!stderr.contains("PRIVATE KEY"), "{stderr}");

    std::fs::write(dir.path().join("cert.pem"), "not a certificate\n").unwrap();
    let (code, stderr) = check(dir.path());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("the certificate from file cert.pem holds no PEM certificate"), "{stderr}");
}
