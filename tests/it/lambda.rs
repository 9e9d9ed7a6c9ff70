//! The Lambda receiver (feature `lambda`): the handler invoked with API Gateway v2 and function
//! URL events (fixtures under `fixtures/lambda/`, in the shapes AWS documents) against a real
//! PostgreSQL database, without the Lambda runtime loop. Run with
//! `cargo test --features lambda --test it lambda::`.

use crate::helpers::*;
use crate::pg::TestDb;
use base64::Engine;
use handoff::config::Config;
use handoff::domain::Event;
use handoff::lambda::{LambdaError, Receiver};
use handoff::store::{EventFilter, Store};
use serde_json::Value;
use std::path::Path;

const SOURCES: &str = "[sources.loader]\nkind = \"hmac\"\nsecret = { file = \"hmac\" }\n";

const BODY: &[u8] =
    br#"{"id":"sync-1","subject":{"id":"orders-id","name":"orders"},"status":"success","type":"sync.finished"}"#;

/// A config on `store_url` with the `loader` source, written into `dir` beside its secret.
fn config_in(dir: &Path, store_url: &str) -> Config {
    write_secrets(dir);
    let path = dir.join("handoff.toml");
    std::fs::write(&path, format!("[store]\nurl = \"{store_url}\"\n\n{SOURCES}")).unwrap();
    Config::load(&path).unwrap()
}

async fn receiver_on(db: &TestDb) -> (Receiver, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::build(config_in(dir.path(), &db.url)).await.unwrap();
    (receiver, dir)
}

/// The fixture `name` carrying `body` with `authorization: signature`, as Lambda would hand it over.
fn event(name: &str, body: &[u8], signature: &str) -> lambda_http::Request {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures/lambda").join(name);
    let mut event: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    event["body"] = if event["isBase64Encoded"] == true {
        base64::engine::general_purpose::STANDARD.encode(body).into()
    } else {
        String::from_utf8(body.to_vec()).unwrap().into()
    };
    event["headers"]["authorization"] = signature.into();
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

/// Invokes the handler; the status and the JSON answer.
async fn invoke(receiver: &Receiver, request: lambda_http::Request) -> (u16, Value) {
    let response = receiver.handle(request).await;
    let status = response.status().as_u16();
    let body = match response.into_body() {
        lambda_http::Body::Text(text) => serde_json::from_str(&text).unwrap(),
        lambda_http::Body::Empty => Value::Null,
        other => panic!("a JSON answer was expected, got {other:?}"),
    };
    (status, body)
}

async fn events_in(db: &TestDb) -> Vec<Event> {
    let store: Store = db.open().await;
    let mut events = Vec::new();
    for listed in store.events(&EventFilter::default()).await.unwrap() {
        events.push(store.event(&listed.id).await.unwrap().unwrap());
    }
    store.close().await;
    events
}

/// One signed delivery through `fixture` into a database of its own: the answer and the events.
async fn accepted_through(fixture: &str) -> (Value, Vec<Event>) {
    let db = TestDb::create().await;
    let (receiver, _dir) = receiver_on(&db).await;
    let (status, answer) = invoke(&receiver, event(fixture, BODY, &hex_sig(HMAC_SECRET, BODY))).await;
    assert_eq!(status, 202, "{fixture}: {answer}");
    (answer, events_in(&db).await)
}

#[tokio::test]
async fn a_signed_delivery_through_api_gateway_is_answered_202_and_recorded_in_postgresql() {
    let (answer, events) = accepted_through("apigw-v2.json").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].id.to_string(), event_id(&answer));
    assert_eq!(events[0].source, "loader");
    // The sender as API Gateway saw it, where `serve` records the peer.
    assert_eq!(events[0].peer.as_deref(), Some("198.51.100.23"));
}

#[tokio::test]
async fn a_function_url_delivery_with_a_base64_body_is_verified_on_the_decoded_bytes() {
    let (answer, events) = accepted_through("function-url.json").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].body.as_deref(), Some(BODY), "{answer}");
    assert_eq!(events[0].peer.as_deref(), Some("203.0.113.77"));
}

#[tokio::test]
async fn a_bad_signature_is_answered_401_and_nothing_is_recorded() {
    let db = TestDb::create().await;
    let (receiver, _dir) = receiver_on(&db).await;
    for fixture in ["apigw-v2.json", "function-url.json"] {
        let (status, answer) = invoke(&receiver, event(fixture, BODY, &hex_sig("a-guess", BODY))).await;
        assert_eq!(status, 401, "{fixture}: {answer}");
        assert!(answer.get("event_id").is_none(), "{answer}");
    }
    assert!(events_in(&db).await.is_empty());
}

#[tokio::test]
async fn a_retried_delivery_gets_the_answer_serve_gives_a_duplicate() {
    let db = TestDb::create().await;
    let (receiver, _dir) = receiver_on(&db).await;
    let signature = hex_sig(HMAC_SECRET, BODY);
    let (first, answer) = invoke(&receiver, event("apigw-v2.json", BODY, &signature)).await;
    assert_eq!(first, 202, "{answer}");
    let id = event_id(&answer);

    let from_lambda = invoke(&receiver, event("function-url.json", BODY, &signature)).await;
    let app = TestApp::spawn_on_postgres(&db, SOURCES).await;
    let from_serve = app.deliver("loader", BODY, &[("authorization", signature.clone())]).await;
    assert_eq!(from_lambda, from_serve);
    assert_eq!(from_lambda.0, 200);
    assert_eq!(event_id(&from_lambda.1), id);
    app.stop().await;
    assert_eq!(events_in(&db).await.len(), 1);
}

#[tokio::test]
async fn the_lambda_receiver_refuses_a_sqlite_store_and_says_to_use_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path(), "sqlite://handoff.db");
    let Err(err) = Receiver::build(config).await else { panic!("SQLite must be refused") };
    assert!(matches!(err, LambdaError::Sqlite));
    assert!(err.to_string().contains("PostgreSQL"), "{err}");
    assert!(!dir.path().join("handoff.db").exists(), "no SQLite file is created");
}
