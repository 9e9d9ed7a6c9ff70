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
pub const FIVETRAN_SECRET: &str = "fivetran-secret-current";
pub const AIRBYTE_TOKEN: &str = "airbyte-token-7f3a9c";
pub const HMAC_SECRET: &str = "hmac-secret-current";
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
    /// Where the admin API answers (`/api/...`), when `[admin]` is on.
    pub admin_addr: Option<SocketAddr>,
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
        let admin_addr = app.admin_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(async move {
            app.run_until_stopped(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        TestApp { addr, admin_addr, dir, client: reqwest::Client::new(), stop: Some(stop), done: Some(done) }
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

    /// All recorded events, newest first, bodies included, read from the SQLite file directly.
    pub async fn events(&self) -> Vec<Event> {
        let config = Config::load(&self.config_path()).unwrap();
        let store = Store::open_existing(&config.store).await.unwrap();
        let mut events = Vec::new();
        // A listing leaves bodies in the store; each event is read whole.
        for listed in store.events(&EventFilter::default()).await.unwrap() {
            events.push(store.event(&listed.id).await.unwrap().expect("a listed event exists"));
        }
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

/// The real `handoff serve` binary as a child process, on a free port, in `dir`.
pub struct ServerProcess {
    pub child: Option<std::process::Child>,
    pub base: String,
    pub dir: PathBuf,
}

impl ServerProcess {
    /// Writes `config_text` (with `listen` on a free port prepended) and starts the server.
    pub async fn start(dir: &Path, config_text: &str) -> ServerProcess {
        ServerProcess::start_with(dir, "", config_text).await
    }

    /// Like `start`, with more `[server]` settings (`server_lines`, e.g. `lease = "2s"\n`).
    pub async fn start_with(dir: &Path, server_lines: &str, config_text: &str) -> ServerProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = format!("[server]\nlisten = \"127.0.0.1:{port}\"\n{server_lines}{config_text}");
        std::fs::write(dir.join("handoff.toml"), config).unwrap();
        ServerProcess::restart(dir, port).await
    }

    /// Like `start`, with these variables added to the server's environment.
    pub async fn start_with_env(dir: &Path, config_text: &str, env: &[(&str, &str)]) -> ServerProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = format!("[server]\nlisten = \"127.0.0.1:{port}\"\n{config_text}");
        std::fs::write(dir.join("handoff.toml"), config).unwrap();
        ServerProcess::spawn(dir, port, env).await
    }

    /// Starts the server again on the config already in `dir`.
    pub async fn restart(dir: &Path, port: u16) -> ServerProcess {
        ServerProcess::spawn(dir, port, &[]).await
    }

    /// Starts the server again on the config already in `dir`, with these `serve` arguments
    /// (e.g. `--role worker`).
    pub async fn restart_with_args(dir: &Path, port: u16, args: &[&str]) -> ServerProcess {
        ServerProcess::launch(dir, port, &[], args).await
    }

    async fn spawn(dir: &Path, port: u16, env: &[(&str, &str)]) -> ServerProcess {
        ServerProcess::launch(dir, port, env, &[]).await
    }

    async fn launch(dir: &Path, port: u16, env: &[(&str, &str)], args: &[&str]) -> ServerProcess {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_handoff"))
            .args(["serve", "--config"])
            .arg(dir.join("handoff.toml"))
            .args(args)
            .envs(env.iter().copied())
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let server =
            ServerProcess { child: Some(child), base: format!("http://127.0.0.1:{port}"), dir: dir.to_path_buf() };
        let client = reqwest::Client::new();
        let started = std::time::Instant::now();
        while client.get(format!("{}/healthz", server.base)).send().await.is_err() {
            assert!(started.elapsed() < std::time::Duration::from_secs(20), "server did not start");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        server
    }

    /// Sends SIGHUP: the server reloads its config file.
    pub fn hangup(&self) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    }

    /// This server's `handoff_config_reloads_total{result}` (0 before the first).
    pub async fn reloads(&self, result: &str) -> u64 {
        let metrics = reqwest::get(format!("{}/metrics", self.base)).await.unwrap().text().await.unwrap();
        let line = format!("handoff_config_reloads_total{{result=\"{result}\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(&line)).map_or(0, |n| n.trim().parse().unwrap())
    }

    /// Sends SIGHUP and waits until the server counted one more reload with `result`.
    pub async fn reload_and_wait(&self, result: &str) {
        let before = self.reloads(result).await;
        self.hangup();
        let started = std::time::Instant::now();
        while self.reloads(result).await == before {
            assert!(started.elapsed() < std::time::Duration::from_secs(20), "no {result} reload counted");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    pub fn port(&self) -> u16 {
        self.base.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// Sends SIGTERM and waits; returns the exit status and everything it logged.
    pub fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let child = self.child.take().unwrap();
        let ok = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        assert!(ok.success());
        let output = child.wait_with_output().unwrap();
        (output.status, String::from_utf8_lossy(&output.stderr).into_owned())
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// A signed delivery of `{"subject":"orders"}` to the `loader` source (hmac, [`HMAC_SECRET`]),
    /// on a connection of its own; returns the status.
    pub async fn deliver_to_loader(&self) -> u16 {
        let body = br#"{"subject":"orders"}"#;
        let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(20)).build().unwrap();
        let response = client
            .post(format!("{}/hooks/loader", self.base))
            .header("authorization", hex_sig(HMAC_SECRET, body))
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        response.status().as_u16()
    }

    /// Runs the CLI with this server's config.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_handoff"))
            .args(args)
            .arg("--config")
            .arg(self.dir.join("handoff.toml"))
            .output()
            .unwrap()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The runs in the store of the config in `dir`, newest first.
pub async fn runs_in(dir: &Path) -> Vec<handoff::domain::Run> {
    let config = Config::load(&dir.join("handoff.toml")).unwrap();
    let store = Store::open_existing(&config.store).await.unwrap();
    let runs = store.runs(&handoff::store::RunFilter::default()).await.unwrap();
    store.close().await;
    runs
}

/// Polls the runs in `dir` until `done` holds (at most 30 s).
pub async fn wait_until(
    dir: &Path,
    what: &str,
    done: impl Fn(&[handoff::domain::Run]) -> bool,
) -> Vec<handoff::domain::Run> {
    let started = std::time::Instant::now();
    loop {
        let runs = runs_in(dir).await;
        if done(&runs) {
            return runs;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "timed out waiting for {what}: {runs:#?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
