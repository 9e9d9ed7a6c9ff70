//! `TestApp`: a real server on 127.0.0.1:0 with a real SQLite file in a temp folder.

use handoff::app::App;
use handoff::config::Config;
use handoff::domain::Event;
use handoff::signature::{self, Key};
use handoff::store::{EventFilter, Store, StoreOptions};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Secrets every test app knows, by file name under its temp folder.
pub const DBT_SECRET: &str = "dbt-secret-current";
pub const DBT_OLD_SECRET: &str = "dbt-secret-previous";
pub const FIVETRAN_SECRET: &str = "my_secret";
pub const AIRBYTE_TOKEN: &str = "airbyte-token-7f3a9c";
pub const HMAC_SECRET: &str = "test-secret";
pub const GITHUB_SECRET: &str = "It's a Secret to Everybody";
pub const SW_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// The config every test app starts from: one source of each kind.
pub fn standard_sources() -> String {
    r#"
[sources.dbt]
kind = "dbt_cloud"
secret = { file = "dbt" }
previous_secret = { file = "dbt_old" }

[sources.fivetran]
kind = "fivetran"
secret = { file = "fivetran" }

[sources.airbyte]
kind = "airbyte"
token = { file = "airbyte" }

[sources.orchestrator]
kind = "hmac"
secret = { file = "hmac" }

[sources.sw]
kind = "standard_webhooks"
secret = { file = "sw" }

[sources.gh]
kind = "github"
secret = { file = "github" }
"#
    .to_string()
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
}

/// Writes the shared secret files into `dir`.
pub fn write_secrets(dir: &Path) {
    for (name, value) in [
        ("dbt", DBT_SECRET),
        ("dbt_old", DBT_OLD_SECRET),
        ("fivetran", FIVETRAN_SECRET),
        ("airbyte", AIRBYTE_TOKEN),
        ("hmac", HMAC_SECRET),
        ("github", GITHUB_SECRET),
        ("sw", SW_SECRET),
    ] {
        // A trailing newline, as `echo` writes it: it must not become part of the secret.
        std::fs::write(dir.join(name), format!("{value}\n")).unwrap();
    }
}

impl TestApp {
    /// A server with one source of each kind.
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(&standard_sources(), StoreOptions::default()).await
    }

    /// A server on this config text (secret files from `write_secrets` are in its folder).
    pub async fn spawn_with(config_text: &str, options: StoreOptions) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        write_secrets(dir.path());
        TestApp::spawn_in(dir, config_text, options).await
    }

    pub async fn spawn_in(dir: tempfile::TempDir, config_text: &str, options: StoreOptions) -> TestApp {
        let path = dir.path().join("handoff.toml");
        std::fs::write(&path, config_text).unwrap();
        let config = Config::load(&path).unwrap_or_else(|e| panic!("test config is invalid:\n{e}"));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let app = App::build_with_listener(config, listener, options).await.unwrap();
        let addr = app.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(async move {
            app.run_until_stopped(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        TestApp { addr, dir, client: reqwest::Client::new(), stop: Some(stop), done: Some(done) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("handoff.toml")
    }

    /// POSTs `body` with `headers` to `/hooks/{source}`; returns the status and the JSON answer.
    pub async fn deliver(&self, path: &str, body: &[u8], headers: &[(&str, String)]) -> (u16, serde_json::Value) {
        let mut request = self.client.post(self.url(&format!("/hooks/{path}"))).body(body.to_vec());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        (status, json)
    }

    /// All recorded events, newest first, read from the SQLite file directly.
    pub async fn events(&self) -> Vec<Event> {
        let config = Config::load(&self.config_path()).unwrap();
        let store = Store::open_existing(&config.store).await.unwrap();
        let events = store.events(&EventFilter::default()).await.unwrap();
        store.close().await;
        events
    }

    pub async fn metrics(&self) -> String {
        self.client.get(self.url("/metrics")).send().await.unwrap().text().await.unwrap()
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            done.await.unwrap();
        }
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }
}

/// `Authorization: <lowercase hex>` as dbt Cloud and the `hmac` kind send it.
pub fn hex_sig(secret: &str, body: &[u8]) -> String {
    signature::sign_hex(&Key::new(secret.as_bytes()), body)
}

/// The id of an accepted delivery's answer.
pub fn event_id(answer: &serde_json::Value) -> String {
    answer["event_id"].as_str().unwrap_or_else(|| panic!("no event_id in {answer}")).to_string()
}
