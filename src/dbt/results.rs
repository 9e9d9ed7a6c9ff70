//! dbt's `run_results.json`: what each node did (status, time, failures, rows), and the
//! summary of a run that templates, `handoff runs --id`, the admin API and the console show
//! ("3 models built, 1 test failed: not_null_orders_id"). Only the fields handoff reads are
//! parsed, each optional, so other dbt versions' files read the same.

use super::DbtError;
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::Path;

/// What a dbt command that exits 0 with failed tests does to the step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnTestFailure {
    /// The step fails (and with it the run, unless `continue_on_error`).
    Fail,
    /// The step succeeds; the failures stay in its results.
    Warn,
}

/// One node of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeResult {
    pub unique_id: String,
    /// `success`, `error`, `skipped` (models, seeds, snapshots); `pass`, `fail`, `warn`,
    /// `error` (tests).
    pub status: String,
    pub execution_time: f64,
    pub failures: Option<u64>,
    pub message: Option<String>,
    pub rows_affected: Option<u64>,
}

impl NodeResult {
    /// `model`, `test`, `seed`, `snapshot`, ...: the first part of the unique id.
    pub fn resource_type(&self) -> &str {
        self.unique_id.split('.').next().unwrap_or_default()
    }

    /// The node's name: the third part of `model.project.name` and `test.project.name.hash`.
    pub fn name(&self) -> &str {
        self.unique_id.split('.').nth(2).unwrap_or(&self.unique_id)
    }
}

/// A whole `run_results.json`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DbtResults {
    pub nodes: Vec<NodeResult>,
}

#[derive(Deserialize)]
struct RawResults {
    #[serde(default)]
    results: Vec<RawNode>,
}

#[derive(Deserialize)]
struct RawNode {
    unique_id: String,
    #[serde(default)]
    status: Value,
    #[serde(default)]
    execution_time: Option<f64>,
    #[serde(default)]
    failures: Option<u64>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    adapter_response: Option<Value>,
}

/// How many of the slowest nodes the summary names.
const SLOWEST: usize = 3;

impl DbtResults {
    pub fn parse(text: &str, path: &str) -> Result<DbtResults, DbtError> {
        let raw: RawResults = serde_json::from_str(text).map_err(|source| DbtError::Parse {
            path: path.to_string(),
            artifact: "run_results.json",
            source,
        })?;
        let nodes = raw
            .results
            .into_iter()
            .map(|n| NodeResult {
                status: n.status.as_str().map(str::to_string).unwrap_or_else(|| n.status.to_string()),
                unique_id: n.unique_id,
                execution_time: n.execution_time.unwrap_or_default(),
                failures: n.failures,
                message: n.message,
                rows_affected: n.adapter_response.as_ref().and_then(|r| r.get("rows_affected")).and_then(Value::as_u64),
            })
            .collect();
        Ok(DbtResults { nodes })
    }

    pub fn read(path: &Path) -> Result<DbtResults, DbtError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| DbtError::Read { path: shown.clone(), source })?;
        DbtResults::parse(&text, &shown)
    }

    fn names(&self, kind: &str, statuses: &[&str]) -> Vec<&str> {
        self.nodes
            .iter()
            .filter(|n| n.resource_type() == kind && statuses.contains(&n.status.as_str()))
            .map(NodeResult::name)
            .collect()
    }

    fn count(&self, kind: &str, statuses: &[&str]) -> usize {
        self.names(kind, statuses).len()
    }

    /// The tests that failed or errored, and the other nodes that errored.
    pub fn failed(&self) -> Vec<&str> {
        self.nodes.iter().filter(|n| matches!(n.status.as_str(), "fail" | "error")).map(NodeResult::name).collect()
    }

    /// The summary in one sentence, e.g. "3 models built, 1 test failed: not_null_orders_id".
    pub fn sentence(&self) -> String {
        let mut parts = Vec::new();
        let mut say = |n: usize, one: &str, many: &str, names: Option<Vec<&str>>| {
            if n == 0 {
                return;
            }
            let mut text = format!("{n} {}", if n == 1 { one } else { many });
            if let Some(names) = names {
                text += &format!(": {}", names.join(", "));
            }
            parts.push(text);
        };
        say(self.count("model", &["success"]), "model built", "models built", None);
        say(self.count("seed", &["success"]), "seed loaded", "seeds loaded", None);
        say(self.count("snapshot", &["success"]), "snapshot taken", "snapshots taken", None);
        say(self.count("test", &["pass"]), "test passed", "tests passed", None);
        let failed = self.names("test", &["fail", "error"]);
        say(failed.len(), "test failed", "tests failed", Some(failed.clone()));
        let warned = self.names("test", &["warn"]);
        say(warned.len(), "test warned", "tests warned", Some(warned.clone()));
        let errored: Vec<&str> = self
            .nodes
            .iter()
            .filter(|n| n.resource_type() != "test" && n.status == "error")
            .map(NodeResult::name)
            .collect();
        say(errored.len(), "node errored", "nodes errored", Some(errored.clone()));
        let skipped = self.nodes.iter().filter(|n| n.status == "skipped").count();
        say(skipped, "node skipped", "nodes skipped", None);
        if parts.is_empty() { "dbt ran no nodes".into() } else { parts.join(", ") }
    }

    /// What templates see as `steps.NAME.dbt` and the run record keeps.
    pub fn to_json(&self) -> Value {
        let mut slowest: Vec<&NodeResult> = self.nodes.iter().collect();
        slowest.sort_by(|a, b| b.execution_time.total_cmp(&a.execution_time));
        json!({
            "summary": self.sentence(),
            "models": self.count("model", &["success"]),
            "seeds": self.count("seed", &["success"]),
            "snapshots": self.count("snapshot", &["success"]),
            "tests_passed": self.count("test", &["pass"]),
            "tests_failed": self.count("test", &["fail", "error"]),
            "tests_warned": self.count("test", &["warn"]),
            "errors": self.nodes.iter().filter(|n| n.status == "error").count(),
            "skipped": self.nodes.iter().filter(|n| n.status == "skipped").count(),
            "failed": self.failed(),
            "warned": self.names("test", &["warn"]),
            "slowest": slowest.iter().take(SLOWEST).map(|n| json!({
                "name": n.name(), "seconds": round(n.execution_time),
            })).collect::<Vec<_>>(),
            "nodes": self.nodes.iter().map(|n| json!({
                "unique_id": n.unique_id,
                "status": n.status,
                "execution_time": round(n.execution_time),
                "failures": n.failures,
                "message": n.message,
                "rows_affected": n.rows_affected,
            })).collect::<Vec<_>>(),
        })
    }

    /// What templates see as `steps.NAME.dbt` when `handoff check` renders them.
    pub fn sample() -> Value {
        let node = NodeResult {
            unique_id: "model.project.orders".into(),
            status: "success".into(),
            execution_time: 1.0,
            failures: None,
            message: None,
            rows_affected: None,
        };
        DbtResults { nodes: vec![node] }.to_json()
    }

    /// Why the step fails under `on_test_failure = "fail"`, if it does.
    pub fn failure(&self) -> Option<String> {
        let failed = self.failed();
        (!failed.is_empty()).then(|| format!("dbt: {}", self.sentence()))
    }
}

/// What a step that ran dbt did, read from `path` once the command has ended: `None` when the
/// file was not written since `since` (dbt did not get as far, or wrote elsewhere: an older
/// file belongs to another run and is never reported as this one's).
pub fn read_after(path: &Path, since: std::time::SystemTime) -> Option<Result<DbtResults, DbtError>> {
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok()?;
    (modified >= since).then(|| DbtResults::read(path))
}

/// Applies a command's dbt results to its outcome: `steps.NAME.dbt`, and under
/// `on_test_failure = "fail"` a failed step when dbt exited 0 with failed tests.
pub fn apply(outcome: &mut crate::actions::StepOutcome, command: &super::DbtCommand, since: std::time::SystemTime) {
    let results = match read_after(&command.results, since) {
        None => {
            outcome.outputs["dbt"] = Value::Null;
            return;
        }
        Some(Err(err)) => {
            tracing::warn!(error = %err, "cannot read dbt's results");
            outcome.output += &format!("\nhandoff: {err}");
            outcome.outputs["dbt"] = Value::Null;
            return;
        }
        Some(Ok(results)) => results,
    };
    outcome.outputs["dbt"] = results.to_json();
    if outcome.ok
        && command.on_test_failure == OnTestFailure::Fail
        && let Some(error) = results.failure()
    {
        outcome.ok = false;
        outcome.error = Some(error);
    }
}

/// A step's recorded dbt results (as [`DbtResults::to_json`] made them) in lines, for
/// `handoff runs --id`: the summary, the slowest nodes, and each failed or warned node with
/// dbt's message. A `dbt_select` step's record has no summary: its output says it all.
pub fn describe(recorded: &Value) -> Vec<String> {
    let Some(summary) = recorded["summary"].as_str() else { return Vec::new() };
    let mut lines = vec![format!("dbt:   {summary}")];
    if let Some(slowest) = recorded["slowest"].as_array().filter(|s| !s.is_empty()) {
        let named: Vec<String> =
            slowest.iter().map(|n| format!("{} {} s", n["name"].as_str().unwrap_or("?"), n["seconds"])).collect();
        lines.push(format!("slowest: {}", named.join(", ")));
    }
    for node in recorded["nodes"].as_array().into_iter().flatten() {
        let status = node["status"].as_str().unwrap_or_default();
        if matches!(status, "fail" | "error" | "warn") {
            let message = node["message"].as_str().unwrap_or_default();
            lines.push(
                format!("{status}: {} {message}", node["unique_id"].as_str().unwrap_or("?")).trim_end().to_string(),
            );
        }
    }
    lines
}

/// Milliseconds are enough, and keep the record short.
fn round(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results() -> DbtResults {
        let text = r#"{"metadata": {}, "results": [
          {"unique_id": "model.shop.stg_orders", "status": "success", "execution_time": 0.25,
           "failures": null, "message": "OK", "adapter_response": {"_message": "OK", "rows_affected": 3}},
          {"unique_id": "model.shop.orders", "status": "success", "execution_time": 1.5, "message": "OK"},
          {"unique_id": "model.shop.revenue", "status": "success", "execution_time": 0.1},
          {"unique_id": "test.shop.not_null_orders_id.abc123", "status": "fail", "failures": 2,
           "message": "Got 2 results, configured to fail if != 0", "execution_time": 0.05},
          {"unique_id": "test.shop.unique_orders_id.def456", "status": "pass", "failures": 0},
          {"unique_id": "test.shop.not_null_contacts_email.0a1", "status": "warn", "failures": 1},
          {"unique_id": "model.shop.customers", "status": "skipped"}
        ]}"#;
        DbtResults::parse(text, "run_results.json").unwrap()
    }

    #[test]
    fn the_summary_counts_models_and_tests_and_names_the_failed_ones() {
        assert_eq!(
            results().sentence(),
            "3 models built, 1 test passed, 1 test failed: not_null_orders_id, \
             1 test warned: not_null_contacts_email, 1 node skipped"
        );
    }

    #[test]
    fn each_node_keeps_status_time_failures_and_rows_affected() {
        let json = results().to_json();
        let first = &json["nodes"][0];
        assert_eq!(first["unique_id"], "model.shop.stg_orders");
        assert_eq!(first["rows_affected"], 3);
        assert_eq!(json["nodes"][3]["failures"], 2);
        assert_eq!(json["slowest"][0]["name"], "orders");
        assert_eq!(json["tests_failed"], 1);
        assert_eq!(json["tests_warned"], 1);
        assert_eq!(json["models"], 3);
    }

    #[test]
    fn failed_tests_fail_the_step_and_warnings_do_not() {
        assert!(results().failure().unwrap().starts_with("dbt: 3 models built"));
        let mut only_warned = results();
        only_warned.nodes.retain(|n| n.status != "fail");
        assert_eq!(only_warned.failure(), None);
    }

    #[test]
    fn a_file_that_is_not_run_results_says_so() {
        let err = DbtResults::parse(r#"{"results": 5}"#, "target/run_results.json").unwrap_err();
        assert!(err.to_string().starts_with("target/run_results.json is not a dbt run_results.json"), "{err}");
    }
}
