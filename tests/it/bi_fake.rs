//! A local stand-in for the seven BI tools' APIs, table-driven: each tool's token endpoint (if
//! any), how it authenticates a call, its refresh endpoint and its status endpoint, with the
//! answers their documentation shows (docs/dashboards.md links them). A test scripts the
//! refresh (how many polls it runs, then success, failure with the tool's message, or stuck)
//! and can expire the current token.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// The credentials the fake accepts, and the ones the recipes' tests hand to handoff.
pub const CLIENT_SECRET: &str = "client-secret-9f8e7d6c5b4a";
pub const STATIC_TOKEN: &str = "static-api-token-1a2b3c4d5e";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Tableau,
    PowerBi,
    Looker,
    Metabase,
    Sigma,
    Hex,
    Mode,
}

/// How the refresh ends after its running polls.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    Success,
    Failure(String),
    /// Never ends.
    Stuck,
}

#[derive(Debug)]
struct Script {
    /// Polls answered "running" before the ending.
    running: u32,
    ending: Ending,
    /// The token the fake accepts now; `None` until a token exchange.
    token: Option<String>,
    exchanges: u32,
    refreshes: u32,
    /// Every request's method, path and headers, for the test to inspect.
    seen: Vec<(String, HeaderMap)>,
}

#[derive(Clone)]
pub struct BiFake {
    pub tool: Tool,
    pub base: String,
    script: Arc<Mutex<Script>>,
}

impl BiFake {
    pub async fn start(tool: Tool) -> BiFake {
        let script =
            Script { running: 0, ending: Ending::Success, token: None, exchanges: 0, refreshes: 0, seen: Vec::new() };
        let mut fake = BiFake { tool, base: String::new(), script: Arc::new(Mutex::new(script)) };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        fake.base = format!("http://{}", listener.local_addr().unwrap());
        let router = Router::new().fallback(answer).with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        fake
    }

    /// The next refresh runs for `running` polls, then ends so.
    pub fn script(&self, running: u32, ending: Ending) {
        let mut s = self.script.lock().unwrap();
        s.running = running;
        s.ending = ending;
    }

    /// The current token stops being accepted (it expired early or was revoked).
    pub fn expire_token(&self) {
        self.script.lock().unwrap().token = Some("expired".into());
    }

    pub fn exchanges(&self) -> u32 {
        self.script.lock().unwrap().exchanges
    }

    pub fn refreshes(&self) -> u32 {
        self.script.lock().unwrap().refreshes
    }

    /// Every token the fake handed out so far (they must appear nowhere handoff writes).
    pub fn tokens(&self) -> Vec<String> {
        let s = self.script.lock().unwrap();
        (1..=s.exchanges).map(|n| token(self.tool, n)).collect()
    }
}

fn token(tool: Tool, n: u32) -> String {
    format!("{tool:?}-session-token-{n}-8d7c6b5a").to_lowercase()
}

fn json_answer(status: u16, body: Value) -> Response {
    (StatusCode::from_u16(status).unwrap(), [("content-type", "application/json")], body.to_string()).into_response()
}

/// Reads a form body into pairs.
fn form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

async fn answer(State(fake): State<BiFake>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
    let mut s = fake.script.lock().unwrap();
    s.seen.push((format!("{method} {path}"), headers.clone()));
    let tool = fake.tool;

    // Token exchanges.
    let exchange = match (tool, method.as_str(), path.as_str()) {
        (Tool::PowerBi, "POST", "/72f988bf-tenant/oauth2/v2.0/token") | (Tool::Sigma, "POST", "/v2/auth/token") => {
            let pairs = form(&body);
            let has = |k: &str, v: &str| pairs.iter().any(|(a, b)| a == k && b == v);
            Some(has("grant_type", "client_credentials") && has("client_secret", CLIENT_SECRET))
        }
        (Tool::Looker, "POST", "/api/4.0/login") => {
            Some(form(&body).iter().any(|(k, v)| k == "client_secret" && v == CLIENT_SECRET))
        }
        (Tool::Tableau, "POST", "/api/3.22/auth/signin") => {
            let sent: Value = serde_json::from_slice(&body).unwrap_or_default();
            Some(sent["credentials"]["personalAccessTokenSecret"] == CLIENT_SECRET)
        }
        _ => None,
    };
    if let Some(good) = exchange {
        if !good {
            return match tool {
                Tool::Tableau => json_answer(401, json!({ "error": { "code": "401001", "summary": "Signin Error" } })),
                Tool::Looker => json_answer(404, json!({ "message": "Not found" })),
                _ => json_answer(
                    401,
                    json!({ "error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided." }),
                ),
            };
        }
        s.exchanges += 1;
        let t = token(tool, s.exchanges);
        s.token = Some(t.clone());
        return match tool {
            Tool::Tableau => json_answer(
                200,
                json!({ "credentials": { "token": t, "site": { "id": "a1b2c3d4-site", "contentUrl": "acme" }, "user": { "id": "u1" } } }),
            ),
            Tool::Looker => json_answer(200, json!({ "access_token": t, "token_type": "Bearer", "expires_in": 3600 })),
            _ => json_answer(200, json!({ "token_type": "Bearer", "expires_in": 3599, "access_token": t })),
        };
    }

    // Every other call is authenticated as the tool does it.
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let current = s.token.clone().unwrap_or_default();
    let authorised = match tool {
        Tool::Tableau => header("x-tableau-auth") == current,
        Tool::PowerBi | Tool::Sigma => header("authorization") == format!("Bearer {current}"),
        Tool::Looker => header("authorization") == format!("token {current}"),
        Tool::Metabase => header("x-api-key") == STATIC_TOKEN,
        Tool::Hex => header("authorization") == format!("Bearer {STATIC_TOKEN}"),
        Tool::Mode => {
            use base64::Engine;
            let pair = format!("4f9e2b7c1d8a:{CLIENT_SECRET}");
            header("authorization") == format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
        }
    };
    if !authorised {
        return json_answer(401, json!({ "error": "Unauthorized: the token is missing, invalid or expired" }));
    }

    // The refresh.
    let trigger = match (tool, path.as_str()) {
        (Tool::Tableau, "/api/3.22/sites/a1b2c3d4-site/datasources/e5f6a7b8-sales/refresh") => Some(json_answer(
            202,
            json!({ "job": { "id": "job-77", "mode": "Asynchronous", "type": "RefreshExtract" } }),
        )),
        (Tool::PowerBi, "/v1.0/myorg/groups/f089354e-workspace/datasets/cfafbeb1-sales/refreshes") => Some(
            (
                StatusCode::ACCEPTED,
                [
                    ("location", "/v1.0/myorg/groups/f089354e-workspace/datasets/cfafbeb1-sales/refreshes/r-1"),
                    ("requestid", "r-1"),
                ],
                "",
            )
                .into_response(),
        ),
        (Tool::Looker, "/api/4.0/scheduled_plans/42/run_once") => match &s.ending {
            Ending::Failure(message) => Some(json_answer(
                422,
                json!({ "message": message, "documentation_url": "https://cloud.google.com/looker/docs/r/err/4.0/422/post/scheduled_plans/:scheduled_plan_id/run_once" }),
            )),
            _ => Some(json_answer(200, json!({ "id": 42, "name": "Daily sales", "enabled": true }))),
        },
        (Tool::Metabase, "/api/cache/invalidate?dashboard=12") => match &s.ending {
            Ending::Failure(message) => Some((StatusCode::FORBIDDEN, message.clone()).into_response()),
            _ => Some(json_answer(200, json!({ "count": 3, "message": "Invalidated cache for 3 question(s)." }))),
        },
        (Tool::Sigma, "/v2/workbooks/2c7d-workbook/materializations") => {
            Some(json_answer(200, json!({ "materializationId": "mat-5", "sheetId": "Jx9-orders" })))
        }
        (Tool::Hex, "/api/v1/project/5a8591dd-project/run") => Some(json_answer(
            200,
            json!({ "projectId": "5a8591dd-project", "runId": "run-9", "runUrl": "https://app.hex.tech/app/run-9",
                    "runStatusUrl": "https://app.hex.tech/api/v1/project/5a8591dd-project/run/run-9" }),
        )),
        (Tool::Mode, "/api/acme/reports/8c2f4e1a9b3d/runs") => Some(json_answer(
            202,
            json!({ "token": "run-3", "state": "enqueued", "_links": { "self": { "href": "/api/acme/reports/8c2f4e1a9b3d/runs/run-3" } } }),
        )),
        _ => None,
    };
    if let Some(response) = trigger {
        if method == Method::POST {
            s.refreshes += 1;
            return response;
        }
        return (StatusCode::METHOD_NOT_ALLOWED, "").into_response();
    }

    // Its status.
    let status_path = match tool {
        Tool::Tableau => "/api/3.22/sites/a1b2c3d4-site/jobs/job-77",
        Tool::PowerBi => "/v1.0/myorg/groups/f089354e-workspace/datasets/cfafbeb1-sales/refreshes?$top=1",
        Tool::Sigma => "/v2/workbooks/2c7d-workbook/materializations/mat-5",
        Tool::Hex => "/api/v1/project/5a8591dd-project/run/run-9",
        Tool::Mode => "/api/acme/reports/8c2f4e1a9b3d/runs/run-3",
        Tool::Looker | Tool::Metabase => "",
    };
    if path != status_path || method != Method::GET {
        return json_answer(404, json!({ "error": format!("no such endpoint: {method} {path}") }));
    }
    let phase = if s.running > 0 || s.ending == Ending::Stuck {
        s.running = s.running.saturating_sub(1);
        None
    } else {
        Some(s.ending.clone())
    };
    let body = match (tool, phase) {
        (Tool::Tableau, None) => json!({ "job": { "id": "job-77", "progress": "40" } }),
        (Tool::Tableau, Some(Ending::Failure(m))) => {
            json!({ "job": { "id": "job-77", "progress": "100", "finishCode": "1",
            "statusNotes": { "statusNote": [{ "type": "ErrorInfo", "text": m }] } } })
        }
        (Tool::Tableau, Some(_)) => json!({ "job": { "id": "job-77", "progress": "100", "finishCode": "0" } }),
        (Tool::PowerBi, None) => {
            json!({ "value": [{ "requestId": "r-1", "refreshType": "ViaApi", "status": "Unknown" }] })
        }
        (Tool::PowerBi, Some(Ending::Failure(m))) => json!({ "value": [{ "requestId": "r-1", "refreshType": "ViaApi",
            "status": "Failed", "serviceExceptionJson": m }] }),
        (Tool::PowerBi, Some(_)) => {
            json!({ "value": [{ "requestId": "r-1", "refreshType": "ViaApi", "status": "Completed" }] })
        }
        (Tool::Sigma, None) => json!({ "materializationId": "mat-5", "status": "building" }),
        (Tool::Sigma, Some(Ending::Failure(m))) => {
            json!({ "materializationId": "mat-5", "status": "failed", "error": m })
        }
        (Tool::Sigma, Some(_)) => json!({ "materializationId": "mat-5", "status": "ready" }),
        (Tool::Hex, None) => json!({ "runId": "run-9", "status": "RUNNING" }),
        (Tool::Hex, Some(Ending::Failure(_))) => json!({ "runId": "run-9", "status": "ERRORED" }),
        (Tool::Hex, Some(_)) => json!({ "runId": "run-9", "status": "COMPLETED" }),
        (Tool::Mode, None) => json!({ "token": "run-3", "state": "running" }),
        (Tool::Mode, Some(Ending::Failure(_))) => json!({ "token": "run-3", "state": "failed" }),
        (Tool::Mode, Some(_)) => json!({ "token": "run-3", "state": "succeeded" }),
        (Tool::Looker | Tool::Metabase, _) => unreachable!("no status endpoint"),
    };
    json_answer(200, body)
}
