//! Notifications through a real `handoff serve`: PagerDuty (Events API v2), Microsoft Teams
//! (a Workflows webhook) and email (a local SMTP server with STARTTLS and AUTH), each against
//! a local fake speaking the documented format. No secret (routing key, webhook URL, SMTP
//! password) reaches the store file or the server's log.

use crate::helpers::*;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use handoff::domain::{Run, RunState};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PD_ROUTING_KEY: &str = "R0ut1ngK3y-pd-0123456789abcdef";
const SMTP_PASSWORD: &str = "smtp-password-7c1e";

/// The source every test delivers to, and the start of each config.
const LOADER: &str = "[sources.loader]\nkind = \"hmac\"\nsecret = { file = \"hmac\" }\n";

/// What a fake chat or events endpoint received, and its answers in turn (the last repeats).
#[derive(Clone, Default)]
struct Fake {
    bodies: Arc<Mutex<Vec<Value>>>,
    script: Arc<Mutex<Vec<u16>>>,
}

impl Fake {
    fn received(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }

    async fn wait_for(&self, count: usize, what: &str) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let bodies = self.received();
            if bodies.len() >= count {
                return bodies;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "timed out waiting for {what}: {bodies:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// PagerDuty's Events API v2 as documented: 202 with `{status, message, dedup_key}`; 429 when
/// rate limited.
async fn pagerduty_enqueue(State(fake): State<Fake>, body: String) -> Response {
    let event: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    fake.bodies.lock().unwrap().push(event.clone());
    let status = {
        let mut script = fake.script.lock().unwrap();
        if script.len() > 1 { script.remove(0) } else { script[0] }
    };
    if status == 429 {
        return (StatusCode::TOO_MANY_REQUESTS, Json(json!({ "status": "throttle event" }))).into_response();
    }
    let answer = json!({ "status": "success", "message": "Event processed", "dedup_key": event["dedup_key"] });
    (StatusCode::from_u16(status).unwrap(), Json(answer)).into_response()
}

/// A Teams Workflows webhook: answers 202 with no body.
async fn teams_webhook(State(fake): State<Fake>, body: String) -> StatusCode {
    fake.bodies.lock().unwrap().push(serde_json::from_str(&body).unwrap_or(Value::Null));
    StatusCode::ACCEPTED
}

async fn serve_fake(path: &str, router: Router<Fake>, script: Vec<u16>) -> (String, Fake) {
    let fake = Fake { script: Arc::new(Mutex::new(script)), ..Fake::default() };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}{path}", listener.local_addr().unwrap());
    let router = router.with_state(fake.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (url, fake)
}

/// A temp folder with the test secrets and these files.
fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    dir
}

/// Every byte the store keeps (the database and its write-ahead log) and the server's log
/// hold none of `secrets`.
fn assert_nowhere(dir: &Path, log: &str, secrets: &[&str]) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.file_name().unwrap().to_string_lossy().starts_with("handoff.db") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        for secret in secrets {
            assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret} is in {}", path.display());
        }
    }
    for secret in secrets {
        assert!(!log.contains(secret), "{secret} is in the log:\n{log}");
    }
}

/// The `loader` source and a job `orders` fed by it, tried once, whose step `build` runs
/// `script` with `sh -c` in the config's folder.
fn job_building(script: &str) -> String {
    format!(
        r#"{LOADER}
[jobs.orders]
after = ["loader"]
retry = {{ attempts = 1 }}
[[jobs.orders.actions]]
kind = "command"
name = "build"
program = "sh"
args = ["-c", "{script}"]
working_dir = "."
"#
    )
}

fn finished(runs: &[Run], count: usize) -> bool {
    runs.len() >= count && runs.iter().all(|r| matches!(r.state, RunState::Succeeded | RunState::Failed))
}

#[tokio::test]
async fn a_failing_job_triggers_a_pagerduty_incident_and_its_next_success_resolves_it() {
    let (pd, fake) =
        serve_fake("/v2/enqueue", Router::new().route("/v2/enqueue", post(pagerduty_enqueue)), vec![429, 202]).await;
    let dir = folder(&[("pd_key", PD_ROUTING_KEY), ("outcome", "1")]);
    let config = format!(
        r#"{}
[jobs.orders.on_failure]
kind = "pagerduty"
url = "{pd}"
routing_key = {{ file = "pd_key" }}
summary = "{{{{ job }}}} failed: {{{{ error }}}}"
severity = "critical"
component = "dbt"
links = [{{ href = "https://handoff.example/runs/{{{{ run.id }}}}", text = "the run" }}]
"#,
        job_building("echo building; exit $(cat outcome)")
    );
    let server = ServerProcess::start(dir.path(), &config).await;

    assert_eq!(server.deliver_to_loader().await, 202);
    let runs = wait_until(dir.path(), "the failed run", |r| finished(r, 1)).await;
    assert_eq!(runs[0].state, RunState::Failed);
    // The 429 is retried: two requests, the second accepted.
    let events = fake.wait_for(2, "the trigger").await;
    let trigger = &events[1];
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["routing_key"], PD_ROUTING_KEY);
    assert_eq!(trigger["dedup_key"], "handoff/orders");
    assert_eq!(trigger["payload"]["severity"], "critical");
    assert_eq!(trigger["payload"]["component"], "dbt");
    assert_eq!(trigger["payload"]["custom_details"]["run_id"], runs[0].id.0.as_str());
    let summary = trigger["payload"]["summary"].as_str().unwrap();
    assert!(summary.starts_with("orders failed: action build failed"), "{summary}");
    assert_eq!(trigger["links"][0]["href"], format!("https://handoff.example/runs/{}", runs[0].id.0));

    std::fs::write(dir.path().join("outcome"), "0").unwrap();
    assert_eq!(server.deliver_to_loader().await, 202);
    let events = fake.wait_for(3, "the resolve").await;
    assert_eq!(
        events[2],
        json!({ "event_action": "resolve", "dedup_key": "handoff/orders", "routing_key": PD_ROUTING_KEY })
    );
    let runs = wait_until(dir.path(), "the resolve step", |r| {
        finished(r, 2) && r[0].actions.iter().any(|a| a.kind == "pagerduty")
    })
    .await;
    assert_eq!(runs[0].state, RunState::Succeeded);
    let resolve = runs[0].actions.iter().find(|a| a.kind == "pagerduty").unwrap();
    assert!(resolve.output.as_deref().unwrap().contains("resolve"), "{resolve:?}");

    // A success after a success has no incident to resolve.
    assert_eq!(server.deliver_to_loader().await, 202);
    let runs = wait_until(dir.path(), "the third run", |r| finished(r, 3)).await;
    assert_eq!(runs[0].state, RunState::Succeeded);
    let (_, log) = server.terminate();
    assert_eq!(fake.received().len(), 3, "only the first success after the failure resolves");
    assert_nowhere(dir.path(), &log, &[PD_ROUTING_KEY]);
}

#[tokio::test]
async fn a_teams_card_with_the_run_arrives_at_the_workflows_webhook() {
    let (teams, fake) =
        serve_fake("/workflows/abc", Router::new().route("/workflows/abc", post(teams_webhook)), vec![202]).await;
    let dir = folder(&[("teams_url", &teams)]);
    let config = format!(
        r#"{LOADER}
[jobs.orders]
after = ["loader"]
[[jobs.orders.actions]]
kind = "command"
program = "true"
[[jobs.orders.actions]]
kind = "teams"
url = {{ file = "teams_url" }}
card = '''{{"type": "AdaptiveCard", "version": "1.4", "body": [
  {{"type": "TextBlock", "text": {{{{ (job ~ " ran for " ~ events[0].subject) | tojson }}}}, "weight": "Bolder"}},
  {{"type": "FactSet", "facts": [{{"title": "run", "value": {{{{ run.id | tojson }}}}}}]}}]}}'''
[jobs.orders.on_success]
kind = "teams"
url = {{ file = "teams_url" }}
text = "{{{{ job }}}} succeeded"
"#
    );
    let server = ServerProcess::start(dir.path(), &config).await;
    assert_eq!(server.deliver_to_loader().await, 202);
    let messages = fake.wait_for(2, "the card and the on_success text").await;
    let runs = wait_until(dir.path(), "the run", |r| finished(r, 1)).await;
    assert_eq!(runs[0].state, RunState::Succeeded);
    for message in &messages {
        assert_eq!(message["type"], "message");
        assert_eq!(message["attachments"][0]["contentType"], "application/vnd.microsoft.card.adaptive");
        assert_eq!(message["attachments"][0]["content"]["type"], "AdaptiveCard");
    }
    let card = &messages[0]["attachments"][0]["content"];
    assert_eq!(card["body"][0]["text"], "orders ran for orders");
    assert_eq!(card["body"][1]["facts"][0]["value"], runs[0].id.0.as_str());
    assert_eq!(messages[1]["attachments"][0]["content"]["body"][0]["text"], "orders succeeded");
    let (_, log) = server.terminate();
    assert_nowhere(dir.path(), &log, &[&teams]);
}

#[tokio::test]
async fn an_email_with_the_runs_details_arrives_over_starttls_with_auth() {
    let smtp = smtp::FakeSmtp::start("handoff", SMTP_PASSWORD).await;
    let dir = folder(&[("smtp_password", SMTP_PASSWORD), ("relay-ca.pem", &smtp.ca_pem)]);
    let config = format!(
        r#"{}
[jobs.orders.on_failure]
kind = "email"
smtp = {{ host = "127.0.0.1", port = {port}, user = "handoff", password = {{ file = "smtp_password" }}, ca_cert = "relay-ca.pem" }}
from = "handoff <handoff@example.com>"
to = ["data-team@example.com", "Ops <ops@example.com>"]
subject = "{{{{ job }}}} failed (run {{{{ run.id }}}})"
text = "Job {{{{ job }}}} failed on attempt {{{{ run.attempt }}}}.\nError: {{{{ error }}}}\nEvents: {{{{ events | map(attribute='subject') | join(', ') }}}}"
"#,
        job_building("echo compiling; exit 3"),
        port = smtp.port
    );
    let server = ServerProcess::start(dir.path(), &config).await;
    assert_eq!(server.deliver_to_loader().await, 202);
    let runs = wait_until(dir.path(), "the failed run and its email step", |r| {
        finished(r, 1) && r[0].actions.iter().any(|a| a.kind == "email")
    })
    .await;
    let run = &runs[0];
    let step = run.actions.iter().find(|a| a.kind == "email").unwrap();
    assert_eq!(step.error, None, "{step:?}");
    let mail = smtp.messages().pop().expect("one message arrived");
    assert!(mail.tls, "the message was sent after STARTTLS");
    assert_eq!(mail.auth, Some(("handoff".to_string(), SMTP_PASSWORD.to_string())));
    assert_eq!(mail.from, "handoff@example.com");
    assert_eq!(mail.to, vec!["data-team@example.com".to_string(), "ops@example.com".to_string()]);
    let data = mail.data.replace("\r\n", "\n");
    assert!(data.contains(&format!("Subject: orders failed (run {})", run.id.0)), "{data}");
    assert!(data.contains("Job orders failed on attempt 1."), "{data}");
    assert!(data.contains("Error: action build failed: "), "{data}");
    assert!(data.contains("Events: orders"), "{data}");
    let (_, log) = server.terminate();
    assert_nowhere(dir.path(), &log, &[SMTP_PASSWORD]);
}

#[test]
fn check_names_a_bad_email_address_and_an_unknown_pagerduty_severity() {
    let dir = folder(&[("pd_key", PD_ROUTING_KEY)]);
    let config = format!(
        r#"{LOADER}
[jobs.orders]
after = ["loader"]
[[jobs.orders.actions]]
kind = "email"
smtp = {{ host = "smtp.example.com" }}
from = "handoff at example dot com"
to = "data-team@example.com"
subject = "x"
text = "y"
[jobs.orders.on_failure]
kind = "pagerduty"
routing_key = {{ file = "pd_key" }}
summary = "{{{{ job }}}} failed"
severity = "sev1"
"#
    );
    std::fs::write(dir.path().join("handoff.toml"), config).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["check", "--config"])
        .arg(dir.path().join("handoff.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("from: `handoff at example dot com` is not an email address"), "{stderr}");
    assert!(stderr.contains("`sev1` is not a PagerDuty severity"), "{stderr}");
    assert!(stderr.contains("critical, error, warning, info"), "{stderr}");
    assert!(!stderr.contains(PD_ROUTING_KEY));
}

/// A small SMTP server: STARTTLS with a self-signed certificate, AUTH PLAIN and LOGIN only
/// once the connection is encrypted, one recorded message per DATA.
mod smtp {
    use base64::Engine;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

    #[derive(Debug, Clone, Default)]
    pub struct Mail {
        pub tls: bool,
        pub auth: Option<(String, String)>,
        pub from: String,
        pub to: Vec<String>,
        pub data: String,
    }

    pub struct FakeSmtp {
        pub port: u16,
        /// The certificate the server presents, which a client must trust.
        pub ca_pem: String,
        mails: Arc<Mutex<Vec<Mail>>>,
    }

    trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
    impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

    impl FakeSmtp {
        pub async fn start(user: &str, password: &str) -> FakeSmtp {
            let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
            let ca_pem = certified.cert.pem();
            let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let config = rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![certified.cert.der().clone()], key)
                .unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let mails = Arc::new(Mutex::new(Vec::new()));
            let (kept, credentials) = (mails.clone(), (user.to_string(), password.to_string()));
            tokio::spawn(async move {
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    let (acceptor, mails, credentials) = (acceptor.clone(), kept.clone(), credentials.clone());
                    tokio::spawn(async move { session(Box::new(stream), acceptor, mails, credentials).await });
                }
            });
            FakeSmtp { port, ca_pem, mails }
        }

        pub fn messages(&self) -> Vec<Mail> {
            self.mails.lock().unwrap().clone()
        }
    }

    async fn session(
        stream: Box<dyn Io>,
        acceptor: tokio_rustls::TlsAcceptor,
        mails: Arc<Mutex<Vec<Mail>>>,
        credentials: (String, String),
    ) {
        let mut reader = BufReader::new(stream);
        let mut mail = Mail::default();
        reader.get_mut().write_all(b"220 fake ESMTP ready\r\n").await.unwrap();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let command = line.trim_end().to_string();
            let verb = command.split(' ').next().unwrap_or("").to_ascii_uppercase();
            let answer: String = match verb.as_str() {
                "EHLO" if mail.tls => "250-fake\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n".into(),
                "EHLO" => "250-fake\r\n250-STARTTLS\r\n250 8BITMIME\r\n".into(),
                "STARTTLS" if !mail.tls => {
                    reader.get_mut().write_all(b"220 go ahead\r\n").await.unwrap();
                    let plain = reader.into_inner();
                    let encrypted = acceptor.accept(plain).await.unwrap();
                    reader = BufReader::new(Box::new(encrypted));
                    mail = Mail { tls: true, ..Mail::default() };
                    continue;
                }
                "AUTH" if !mail.tls => "530 must issue STARTTLS first\r\n".into(),
                "AUTH" => {
                    let parts: Vec<&str> = command.split(' ').collect();
                    let given = match parts.get(1).map(|m| m.to_ascii_uppercase()).as_deref() {
                        Some("PLAIN") => {
                            let encoded = match parts.get(2) {
                                Some(initial) => initial.to_string(),
                                None => ask(&mut reader, "334 \r\n").await,
                            };
                            let decoded = decode(&encoded);
                            let mut fields = decoded.split('\0').skip(1);
                            (fields.next().unwrap_or("").to_string(), fields.next().unwrap_or("").to_string())
                        }
                        _ => {
                            let user = decode(&ask(&mut reader, "334 VXNlcm5hbWU6\r\n").await);
                            (user, decode(&ask(&mut reader, "334 UGFzc3dvcmQ6\r\n").await))
                        }
                    };
                    if given == credentials {
                        mail.auth = Some(given);
                        "235 authenticated\r\n".into()
                    } else {
                        "535 authentication failed\r\n".into()
                    }
                }
                "MAIL" => {
                    mail.from = address(&command);
                    "250 ok\r\n".into()
                }
                "RCPT" => {
                    mail.to.push(address(&command));
                    "250 ok\r\n".into()
                }
                "DATA" => {
                    reader.get_mut().write_all(b"354 end with .\r\n").await.unwrap();
                    let mut data = String::new();
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).await.unwrap_or(0) == 0 || line == ".\r\n" {
                            break;
                        }
                        data.push_str(&line);
                    }
                    mail.data = data;
                    mails.lock().unwrap().push(mail.clone());
                    "250 queued as 1\r\n".into()
                }
                "RSET" | "NOOP" => "250 ok\r\n".into(),
                "QUIT" => {
                    let _ = reader.get_mut().write_all(b"221 bye\r\n").await;
                    return;
                }
                _ => "502 not implemented\r\n".into(),
            };
            if reader.get_mut().write_all(answer.as_bytes()).await.is_err() {
                return;
            }
        }
    }

    async fn ask(reader: &mut BufReader<Box<dyn Io>>, prompt: &str) -> String {
        reader.get_mut().write_all(prompt.as_bytes()).await.unwrap();
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        line.trim_end().to_string()
    }

    fn decode(text: &str) -> String {
        String::from_utf8_lossy(&base64::engine::general_purpose::STANDARD.decode(text.trim()).unwrap_or_default())
            .into_owned()
    }

    fn address(command: &str) -> String {
        let start = command.find('<').map_or(0, |i| i + 1);
        let end = command.rfind('>').unwrap_or(command.len());
        command[start..end].to_string()
    }
}
