//! The web console over real HTTP on loopback: off without `[admin]`, login and its cookie,
//! CSRF on every verb, read tokens without buttons, escaping, and every page for a populated
//! store. The real-browser suite is tests/browser (its own step in .ci/run).

use crate::helpers::*;
use crate::jobs::{deliver_done, wait_for_runs};
use handoff::domain::RunState;
use handoff::store::StoreOptions;

pub const OPS_TOKEN: &str = "ops-token-4f1c2a9e7b3d5f60";
pub const VIEWER_TOKEN: &str = "viewer-token-8e2b6d1f0a4c9e37";

/// Source `orchestrator` (hmac) feeding job `load`, and `[admin]` with an operate token `ops`
/// and a read token `viewer`; `admin_lines` adds to `[admin]`.
pub fn console_config(dir: &std::path::Path, admin_lines: &str) -> String {
    std::fs::write(dir.join("ops_token"), format!("{OPS_TOKEN}\n")).unwrap();
    std::fs::write(dir.join("viewer_token"), VIEWER_TOKEN).unwrap();
    format!(
        "[sources.orchestrator]\nkind = \"hmac\"\nsecret = {{ file = \"hmac\" }}\n\
         [jobs.load]\nafter = [\"orchestrator\"]\n[[jobs.load.actions]]\nkind = \"command\"\nprogram = \"echo\"\nargs = [\"loaded\"]\n\
         [admin]\n{admin_lines}tokens = [\n\
           {{ name = \"ops\", role = \"operate\", token = {{ file = \"ops_token\" }} }},\n\
           {{ name = \"viewer\", role = \"read\", token = {{ file = \"viewer_token\" }} }},\n]\n"
    )
}

async fn console_app() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    let config = console_config(dir.path(), "");
    TestApp::spawn_in(dir, &config, StoreOptions::default()).await
}

/// A browser without a browser: keeps the session cookie, follows no redirect by itself.
pub(crate) struct Visitor {
    client: reqwest::Client,
    base: String,
    cookie: Option<String>,
}

pub(crate) struct Page {
    status: u16,
    location: Option<String>,
    set_cookie: Option<String>,
    body: String,
}

impl Visitor {
    pub(crate) fn new(app: &TestApp) -> Visitor {
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Visitor { client, base: format!("http://{}", app.addr), cookie: None }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Page {
        let request = match &self.cookie {
            Some(c) => request.header("cookie", c),
            None => request,
        };
        let response = request.send().await.unwrap();
        let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_string());
        let (location, set_cookie) = (header("location"), header("set-cookie"));
        Page { status: response.status().as_u16(), location, set_cookie, body: response.text().await.unwrap() }
    }

    async fn get(&self, path: &str) -> Page {
        self.send(self.client.get(format!("{}{path}", self.base))).await
    }

    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(request).await
    }

    /// Logs in with `token`; keeps the cookie.
    pub(crate) async fn login(&mut self, token: &str) -> Page {
        let page = self.post("/ui/login", &[("token", token), ("next", "/ui/")]).await;
        if let Some(set) = &page.set_cookie {
            self.cookie = Some(set.split(';').next().unwrap().to_string());
        }
        page
    }

    /// This session's CSRF token, read from a page's logout form.
    async fn csrf(&self) -> String {
        let page = self.get("/ui/").await;
        let at = page.body.find("name=\"csrf\" value=\"").expect("a page with a session has a CSRF field");
        page.body[at + 19..].split('"').next().unwrap().to_string()
    }

    /// `GET path` as a logged-in visitor: 200, and the page.
    pub(crate) async fn page(&self, path: &str) -> String {
        let page = self.get(path).await;
        assert_eq!(page.status, 200, "GET {path}:\n{}", page.body);
        page.body
    }
}

#[tokio::test]
async fn the_console_is_off_when_the_admin_api_is_off() {
    let app = TestApp::spawn().await;
    let page = Visitor::new(&app).get("/ui/").await;
    assert_eq!(page.status, 404);
    assert_eq!(Visitor::new(&app).get("/ui/login").await.status, 404);
}

#[tokio::test]
async fn a_page_fetched_without_a_session_redirects_to_the_login_page_and_back_after() {
    let app = console_app().await;
    let mut visitor = Visitor::new(&app);
    let page = visitor.get("/ui/events?source=orchestrator").await;
    assert_eq!(page.status, 303);
    assert_eq!(page.location.as_deref(), Some("/ui/login?next=%2Fui%2Fevents%3Fsource%3Dorchestrator"));
    let login = visitor.page("/ui/login?next=%2Fui%2Fevents%3Fsource%3Dorchestrator").await;
    assert!(login.contains("value=\"&#x2f;ui&#x2f;events?source=orchestrator\""), "{login}");
    // A `next` off the console is not followed.
    let page = visitor.post("/ui/login", &[("token", OPS_TOKEN), ("next", "//evil.example/")]).await;
    assert_eq!(page.location.as_deref(), Some("/ui/"));
    // A verb without a session is refused, not performed.
    visitor.cookie = None;
    assert_eq!(visitor.post("/ui/jobs/load/run", &[]).await.status, 403);
}

#[tokio::test]
async fn logging_in_gives_an_http_only_strict_cookie_that_expires_and_a_wrong_token_gets_none() {
    let app = console_app().await;
    let mut visitor = Visitor::new(&app);
    let refused = visitor.login("not-a-token").await;
    assert_eq!(refused.status, 401);
    assert!(refused.set_cookie.is_none());
    assert!(refused.body.contains("not one of the configured admin tokens"), "{}", refused.body);

    let page = visitor.login(OPS_TOKEN).await;
    assert_eq!(page.status, 303);
    assert_eq!(page.location.as_deref(), Some("/ui/"));
    let cookie = page.set_cookie.unwrap();
    for part in ["handoff_session=", "HttpOnly", "SameSite=Strict", "Max-Age=43200", "Path=/ui"] {
        assert!(cookie.contains(part), "{cookie} has {part}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP from an untrusted peer: no Secure flag: {cookie}");
    assert!(!cookie.contains(OPS_TOKEN));
    let overview = visitor.page("/ui/").await;
    assert!(overview.contains("ops (operate)"), "{overview}");

    // Logging out ends the session: the same cookie no longer opens a page.
    let csrf = visitor.csrf().await;
    assert_eq!(visitor.post("/ui/logout", &[("csrf", &csrf)]).await.status, 303);
    assert_eq!(visitor.get("/ui/").await.status, 303);
}

#[tokio::test]
async fn a_verb_needs_the_sessions_csrf_token_and_is_recorded_as_the_tokens_name() {
    let app = console_app().await;
    let mut visitor = Visitor::new(&app);
    visitor.login(OPS_TOKEN).await;
    let refused = visitor.post("/ui/jobs/load/pause", &[("reason", "no csrf")]).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let refused = visitor.post("/ui/jobs/load/pause", &[("csrf", "forged"), ("reason", "no csrf")]).await;
    assert_eq!(refused.status, 403);
    assert!(!visitor.page("/ui/jobs/load").await.contains("Paused since"));

    let csrf = visitor.csrf().await;
    let done = visitor.post("/ui/jobs/load/pause", &[("csrf", &csrf), ("reason", "warehouse upgrade")]).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location.as_deref(), Some("/ui/jobs/load?notice=paused"));
    let page = visitor.page("/ui/jobs/load?notice=paused").await;
    assert!(page.contains("by token:ops: warehouse upgrade"), "{page}");
    assert!(page.contains(">Resume</button>"));

    // Another session's CSRF token does not do.
    let mut other = Visitor::new(&app);
    other.login(OPS_TOKEN).await;
    assert_eq!(other.post("/ui/jobs/load/resume", &[("csrf", &csrf)]).await.status, 403);
    assert_eq!(visitor.post("/ui/jobs/load/resume", &[("csrf", &csrf)]).await.status, 303);
    assert!(!visitor.page("/ui/jobs/load").await.contains("Paused since"));

    // Run now: a manual run by token:ops, shown on its page.
    let done = visitor.post("/ui/jobs/load/run", &[("csrf", &csrf)]).await;
    assert_eq!(done.status, 303);
    let runs = wait_for_runs(&app, "the manual run", |r| r.len() == 1 && r[0].state == RunState::Succeeded).await;
    assert_eq!(runs[0].requested_by.as_deref(), Some("token:ops"));
    let page = visitor.page(&format!("/ui/runs/{}", runs[0].id)).await;
    assert!(page.contains("manual by token:ops") && page.contains("loaded"), "{page}");
}

#[tokio::test]
async fn a_read_token_sees_no_buttons_and_its_verbs_are_refused() {
    let app = console_app().await;
    let id = deliver_done(&app, "orchestrator", "orders", "success").await;
    let runs = wait_for_runs(&app, "the run", |r| r.len() == 1 && r[0].state == RunState::Succeeded).await;
    let mut visitor = Visitor::new(&app);
    visitor.login(VIEWER_TOKEN).await;
    for path in ["/ui/jobs/load".to_string(), format!("/ui/events/{id}"), format!("/ui/runs/{}", runs[0].id)] {
        let page = visitor.page(&path).await;
        // Log out is the one button a read token gets.
        assert_eq!(page.matches("<button").count(), 1, "{path} shows a button:\n{page}");
    }
    let csrf = visitor.csrf().await;
    for path in
        ["/ui/jobs/load/run".to_string(), format!("/ui/events/{id}/replay"), format!("/ui/runs/{}/rerun", runs[0].id)]
    {
        let page = visitor.post(&path, &[("csrf", &csrf)]).await;
        assert_eq!(page.status, 403, "POST {path}: {}", page.body);
        assert!(page.body.contains("read role"), "{}", page.body);
    }
    assert_eq!(crate::jobs::runs(&app).await.len(), 1, "no verb ran");
}

#[tokio::test]
async fn an_event_subject_with_a_script_tag_renders_as_text() {
    let app = console_app().await;
    let id = deliver_done(&app, "orchestrator", "<script>alert(1)</script>", "success").await;
    let mut visitor = Visitor::new(&app);
    visitor.login(OPS_TOKEN).await;
    for path in ["/ui/events".to_string(), format!("/ui/events/{id}")] {
        let page = visitor.page(&path).await;
        assert!(page.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"), "{path} shows it as text:\n{page}");
        assert!(!page.contains("<script>alert(1)"), "{path} does not run it");
    }
}

#[tokio::test]
async fn every_page_renders_for_a_populated_store_and_none_shows_a_token_secret_or_signature() {
    let app = console_app().await;
    let mut ids = Vec::new();
    for subject in ["orders", "customers"] {
        ids.push(deliver_done(&app, "orchestrator", subject, "success").await);
        let n = ids.len();
        wait_for_runs(&app, "the runs", |r| r.len() == n && r.iter().all(|r| r.state == RunState::Succeeded)).await;
    }
    ids.push(deliver_done(&app, "orchestrator", "orders", "failure").await);
    // A bad signature, twice, and a repeated delivery.
    let body = br#"{"subject":"orders"}"#;
    for _ in 0..2 {
        let (status, _) = app.deliver("orchestrator", body, &[("authorization", "00ff".repeat(16))]).await;
        assert_eq!(status, 401);
    }
    let signature = hex_sig(HMAC_SECRET, br#"{"subject":"x","id":"same-1"}"#);
    for _ in 0..2 {
        app.deliver("orchestrator", br#"{"subject":"x","id":"same-1"}"#, &[("authorization", signature.clone())]).await;
    }
    let runs = crate::jobs::runs(&app).await;
    let mut visitor = Visitor::new(&app);
    visitor.login(OPS_TOKEN).await;

    // Rejections reach the store within a second (folded in memory first).
    let started = std::time::Instant::now();
    let overview = loop {
        let overview = visitor.page("/ui/").await;
        if overview.contains("/ui/deliveries?source=orchestrator\">2<") {
            break overview;
        }
        assert!(started.elapsed().as_secs() < 10, "2 rejections in 24 h:\n{overview}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(overview.contains("data-job=\"load\"") && overview.contains("succeeded"), "{overview}");
    let events = visitor.page("/ui/events").await;
    assert!(events.contains("fed load"), "{events}");
    assert!(events.contains("ignored by job load: status failure"), "{events}");
    let filtered = visitor.page("/ui/events?status=failure&source=orchestrator&since=1h").await;
    assert!(filtered.contains(&ids[2]) && !filtered.contains(&ids[0]), "{filtered}");
    let older = visitor.page(&format!("/ui/events?before={}", ids[1])).await;
    assert!(older.contains(&ids[0]) && !older.contains(&ids[2]), "{older}");
    let event = visitor.page(&format!("/ui/events/{}", ids[0])).await;
    assert!(event.contains(&format!("consumed by <a href=\"/ui/runs/{}\"", runs.last().unwrap().id)), "{event}");
    assert!(event.contains("&quot;subject&quot;: &quot;orders&quot;"), "pretty-printed body:\n{event}");
    assert!(event.contains("127.0.0.1") && event.contains("current"), "peer and secret slot:\n{event}");
    let run = visitor.page(&format!("/ui/runs/{}", runs[0].id)).await;
    assert!(run.contains("loaded") && run.contains("command"), "{run}");
    let deliveries = visitor.page("/ui/deliveries").await;
    assert!(
        deliveries.contains("<td class=\"num\">2</td><td>orchestrator</td><td>127.0.0.1</td><td>401</td>"),
        "{deliveries}"
    );
    let mut pages = vec![overview, events, filtered, older, event, run, deliveries];
    pages.push(visitor.page("/ui/runs").await);
    pages.push(visitor.page("/ui/runs?job=load&state=succeeded").await);
    pages.push(visitor.page("/ui/jobs/load").await);
    pages.push(visitor.page("/ui/assets/console.css").await);
    pages.push(visitor.page("/ui/assets/console.js").await);
    for page in &pages {
        for secret in [OPS_TOKEN, VIEWER_TOKEN, HMAC_SECRET, &signature] {
            assert!(!page.contains(secret), "a page shows a secret:\n{page}");
        }
        assert!(!page.to_lowercase().contains("authorization"), "a page shows an auth header:\n{page}");
    }
    // Mistakes are pages that say so, not 500s.
    assert_eq!(visitor.get("/ui/runs/no-such-run").await.status, 404);
    assert_eq!(visitor.get("/ui/jobs/nope").await.status, 404);
    assert_eq!(visitor.get("/ui/events?status=great").await.status, 400);
    assert_eq!(visitor.get("/ui/events?since=yesterday-ish").await.status, 400);
    assert_eq!(visitor.get("/ui/nothing/here").await.status, 404);
}

#[tokio::test]
async fn the_console_moves_with_the_admin_api_to_its_own_address() {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    let config = console_config(dir.path(), "listen = \"127.0.0.1:0\"\n");
    let app = TestApp::spawn_in(dir, &config, StoreOptions::default()).await;
    let admin = app.admin_addr.unwrap();
    assert_ne!(admin, app.addr);
    assert_eq!(Visitor::new(&app).get("/ui/").await.status, 404, "not on the main listener");
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let answer = client.get(format!("http://{admin}/ui/")).send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 303);
}

#[tokio::test]
async fn check_and_the_serve_start_line_say_where_the_console_is() {
    use crate::cli::{handoff, run, text};
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    let config_path = dir.path().join("handoff.toml");
    std::fs::write(&config_path, console_config(dir.path(), "listen = \"127.0.0.1:9192\"\n")).unwrap();
    let stdout = run(handoff(&["check", "--config", text(&config_path)])).await.ok().to_string();
    assert!(stdout.contains("console: on at http://127.0.0.1:9192/ui/"), "{stdout}");

    let server = ServerProcess::start(dir.path(), &console_config(dir.path(), "")).await;
    let base = server.base.clone();
    let (status, log) = server.terminate();
    assert!(status.success(), "{log}");
    assert!(log.contains(&format!("console={base}/ui/")), "the start line says where:\n{log}");
    assert!(!log.contains(OPS_TOKEN), "{log}");
}
