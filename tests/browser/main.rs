//! The web console in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`) driven over WebDriver by fantoccini, against the real `handoff serve`
//! binary, with deliveries sent over HTTP. Screenshots of the overview, a run page and an event
//! page at 1280 px and 375 px go to `<target>/screenshots/` (test artifacts).
//!
//! Not part of plain `cargo test`: `.ci/run` runs it as its own step, `cargo test --test browser`.

#[allow(dead_code)]
#[path = "../it/helpers.rs"]
mod helpers;

use fantoccini::{Client, ClientBuilder, Locator};
use handoff::domain::RunState;
use helpers::{HMAC_SECRET, ServerProcess, hex_sig, runs_in, wait_until, write_secrets};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const OPS_TOKEN: &str = "ops-token-4f1c2a9e7b3d5f60";
const VIEWER_TOKEN: &str = "viewer-token-8e2b6d1f0a4c9e37";

/// Sources `loader`, `other`, `nightly` (hmac); job `transform` waits for `all` of loader and
/// other; job `slow` (`sleep 30`) is fed by nightly; an operate token `ops`, a read token `viewer`.
fn config(dir: &std::path::Path) -> String {
    write_secrets(dir);
    std::fs::write(dir.join("ops_token"), OPS_TOKEN).unwrap();
    std::fs::write(dir.join("viewer_token"), VIEWER_TOKEN).unwrap();
    let source = |name: &str| format!("[sources.{name}]\nkind = \"hmac\"\nsecret = {{ file = \"hmac\" }}\n");
    format!(
        "{}{}{}\
         [jobs.transform]\nafter = [\"loader\", \"other\"]\nwait_for = \"all\"\n\
         [[jobs.transform.actions]]\nkind = \"command\"\nprogram = \"echo\"\nargs = [\"transformed\"]\n\
         [jobs.slow]\nafter = [\"nightly\"]\n[[jobs.slow.actions]]\nkind = \"command\"\nprogram = \"sleep\"\nargs = [\"30\"]\n\
         [admin]\ntokens = [\n\
           {{ name = \"ops\", role = \"operate\", token = {{ file = \"ops_token\" }} }},\n\
           {{ name = \"viewer\", role = \"read\", token = {{ file = \"viewer_token\" }} }},\n]\n",
        source("loader"),
        source("other"),
        source("nightly"),
    )
}

/// A server, a chromedriver and a headless Chromium session; all ended when dropped.
struct Rig {
    server: ServerProcess,
    _dir: tempfile::TempDir,
    driver: Child,
    browser: Client,
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Rig {
    async fn start() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let text = config(dir.path());
        let server = ServerProcess::start(dir.path(), &text).await;
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is installed (apt-get install chromium chromium-driver)");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,900", "--hide-scrollbars"],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let started = Instant::now();
        let browser = loop {
            match ClientBuilder::new(connector.clone())
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => break client,
                Err(err) if started.elapsed() < Duration::from_secs(20) => {
                    let _ = err;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => panic!("no WebDriver session: {err}"),
            }
        };
        Rig { server, _dir: dir, driver, browser }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.base)
    }

    /// A signed `{"subject": …}` delivery to `source`; its event id.
    async fn deliver(&self, source: &str, subject: &str) -> String {
        let body = serde_json::json!({ "subject": subject }).to_string();
        let answer = reqwest::Client::new()
            .post(self.url(&format!("/hooks/{source}")))
            .header("authorization", hex_sig(HMAC_SECRET, body.as_bytes()))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 202);
        let answer: serde_json::Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
        answer["event_id"].as_str().unwrap().to_string()
    }

    async fn login(&self, token: &str) {
        self.browser.goto(&self.url("/ui/")).await.unwrap();
        let url = self.browser.current_url().await.unwrap();
        assert_eq!(url.path(), "/ui/login", "a page without a session sends the browser to log in");
        let form = self.browser.form(Locator::Css("form[action='/ui/login']")).await.unwrap();
        form.set_by_name("token", token).await.unwrap();
        form.submit().await.unwrap();
        self.until("the overview after logging in", |html| html.contains("Log out")).await;
    }

    /// Waits (at most 30 s) until the page's HTML satisfies `done`, without reloading it:
    /// the page refreshes itself.
    async fn until(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let html = self.browser.source().await.unwrap();
            if done(&html) {
                return html;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "timed out waiting for {what}:\n{html}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn text(&self, css: &str) -> String {
        self.browser.find(Locator::Css(css)).await.unwrap().text().await.unwrap()
    }

    async fn click(&self, css: &str) {
        self.browser.find(Locator::Css(css)).await.unwrap().click().await.unwrap();
    }

    /// Screenshots of the current page at 1280 px and 375 px wide, as `<name>-1280.png` and
    /// `<name>-375.png`.
    async fn screenshots(&self, name: &str) {
        let folder = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("screenshots");
        std::fs::create_dir_all(&folder).unwrap();
        for width in [1280u32, 375] {
            self.browser.set_window_size(width, 900).await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            let inner = self.browser.execute("return window.innerWidth", vec![]).await.unwrap();
            assert!(inner.as_u64().unwrap() <= u64::from(width), "the window is {inner} px wide, not {width}");
            let scroll = self.browser.execute("return document.documentElement.scrollWidth", vec![]).await.unwrap();
            assert!(
                scroll.as_u64().unwrap() <= inner.as_u64().unwrap() + 1,
                "{name} at {width} px scrolls sideways ({scroll} > {inner})"
            );
            let png = self.browser.screenshot().await.unwrap();
            std::fs::write(folder.join(format!("{name}-{width}.png")), png).unwrap();
        }
        self.browser.set_window_size(1280, 900).await.unwrap();
    }

    fn dir(&self) -> &std::path::Path {
        &self.server.dir
    }
}

#[tokio::test]
async fn an_operator_sees_a_job_wait_for_its_second_upstream_then_run_and_succeed_and_replays_an_event() {
    let rig = Rig::start().await;
    let first = rig.deliver("loader", "orders").await;
    rig.login(OPS_TOKEN).await;
    let card = "article[data-job='transform']";
    rig.until("transform waiting", |html| html.contains("s-waiting")).await;
    assert_eq!(rig.text(&format!("{card} .state")).await, "waiting");
    let upstreams = rig.text(&format!("{card} .upstreams")).await;
    assert!(upstreams.contains("✓ loader: delivered 1 event"), "{upstreams}");
    assert!(upstreams.contains("… other: not delivered since the last run"), "{upstreams}");
    rig.screenshots("overview").await;

    // The second upstream delivers: the overview (never reloaded) shows the run succeed.
    rig.deliver("other", "customers").await;
    rig.until("the run to succeed on the overview", |html| {
        html.contains("data-job=\"transform\"") && html.contains("class=\"state s-succeeded\">succeeded")
    })
    .await;
    let runs = runs_in(rig.dir()).await;
    assert_eq!(runs.len(), 1);
    rig.click(&format!("{card} dd a[href^='/ui/runs/']")).await;
    rig.until("the run page", |html| html.contains("transformed")).await;
    assert_eq!(rig.browser.current_url().await.unwrap().path(), format!("/ui/runs/{}", runs[0].id));
    rig.screenshots("run").await;

    // The event page, then a replay into transform alone.
    rig.browser.goto(&rig.url("/ui/events")).await.unwrap();
    rig.click(&format!("a[href='/ui/events/{first}']")).await;
    rig.until("the event page", |html| html.contains("What it fed")).await;
    assert!(rig.text(".chain").await.contains(&format!("consumed by run {}", runs[0].id)));
    rig.screenshots("event").await;
    let form = rig.browser.form(Locator::Css("form[action$='/replay']")).await.unwrap();
    rig.browser.find(Locator::Css("select[name='job']")).await.unwrap().select_by_value("transform").await.unwrap();
    form.submit().await.unwrap();
    rig.until("the replay's notice", |html| html.contains("replayed into transform")).await;
    let replayed = rig.text(".chain").await;
    assert!(replayed.contains("replayed by token:ops"), "{replayed}");
}

#[tokio::test]
async fn an_operator_cancels_a_running_sleep_from_its_run_page() {
    let rig = Rig::start().await;
    rig.deliver("nightly", "backfill").await;
    let runs = wait_until(rig.dir(), "slow running", |r| r.len() == 1 && r[0].state == RunState::Running).await;
    rig.login(OPS_TOKEN).await;
    rig.browser.goto(&rig.url(&format!("/ui/runs/{}", runs[0].id))).await.unwrap();
    rig.click("form[action$='/cancel'] button").await;
    rig.until("the run cancelled", |html| html.contains("class=\"state s-cancelled\">cancelled")).await;
    assert!(rig.text("main").await.contains("cancelled by token:ops") || rig.text("main").await.contains("token:ops"));
    let runs = runs_in(rig.dir()).await;
    assert_eq!(runs[0].state, RunState::Cancelled);
}

#[tokio::test]
async fn an_operator_pauses_and_resumes_a_job() {
    let rig = Rig::start().await;
    rig.login(OPS_TOKEN).await;
    rig.browser.goto(&rig.url("/ui/jobs/transform")).await.unwrap();
    let form = rig.browser.form(Locator::Css("form[action$='/pause']")).await.unwrap();
    form.set_by_name("reason", "warehouse upgrade").await.unwrap();
    form.submit().await.unwrap();
    rig.until("paused", |html| html.contains("Paused since")).await;
    assert_eq!(rig.text("h1 .state").await, "paused");
    assert!(rig.text("main").await.contains("by token:ops: warehouse upgrade"));
    rig.click("form[action$='/resume'] button").await;
    rig.until("resumed", |html| html.contains("notice=resumed") || html.contains(">resumed<")).await;
    assert!(!rig.text("main").await.contains("Paused since"));
    assert_eq!(rig.text("form[action$='/run'] button").await, "Run now");
}

#[tokio::test]
async fn a_read_only_token_sees_no_buttons() {
    let rig = Rig::start().await;
    let event = rig.deliver("nightly", "backfill").await;
    let runs = wait_until(rig.dir(), "slow running", |r| r.len() == 1 && r[0].state == RunState::Running).await;
    rig.login(VIEWER_TOKEN).await;
    for path in ["/ui/jobs/slow".to_string(), format!("/ui/runs/{}", runs[0].id), format!("/ui/events/{event}")] {
        rig.browser.goto(&rig.url(&path)).await.unwrap();
        let buttons = rig.browser.find_all(Locator::Css("main button")).await.unwrap();
        assert!(buttons.is_empty(), "{path} shows {} buttons to a read token", buttons.len());
        assert!(rig.text("header").await.contains("viewer (read)"));
    }
}

#[tokio::test]
async fn an_event_subject_with_a_script_tag_renders_as_text() {
    let rig = Rig::start().await;
    let event = rig.deliver("loader", "<script>alert(1)</script>").await;
    rig.login(OPS_TOKEN).await;
    for path in ["/ui/events".to_string(), format!("/ui/events/{event}")] {
        rig.browser.goto(&rig.url(&path)).await.unwrap();
        assert_eq!(rig.text(".subject").await, "<script>alert(1)</script>");
        assert!(rig.browser.get_alert_text().await.is_err(), "no alert opened on {path}");
    }
}
