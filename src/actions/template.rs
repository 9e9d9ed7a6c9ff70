//! Templates in action settings (minijinja: the Jinja that dbt users already write).
//!
//! Strict: an unknown variable is an error, never an empty string. Every template is
//! compiled and rendered against a sample context when the config is loaded, so a typo
//! (`{{ run.idd }}`, `{{ steps.dbt.run_url }}` with no `dbt` step) fails `handoff check`.

use minijinja::{Environment, UndefinedBehavior};
use serde_json::{Value, json};
use std::sync::OnceLock;

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Bounds loops in hostile or mistaken templates.
        env.set_fuel(Some(100_000));
        env
    })
}

/// Renders `source` with `context`.
pub fn render(source: &str, context: &Value) -> Result<String, String> {
    environment().render_str(source, minijinja::value::Serde(context)).map_err(|e| describe(&e, source))
}

fn describe(err: &minijinja::Error, source: &str) -> String {
    // minijinja says "undefined value"; name the expression, which is what a user fixes.
    if err.kind() == minijinja::ErrorKind::UndefinedError
        && let Some(expression) = err.range().and_then(|r| source.get(r))
    {
        return format!("`{}` is undefined", expression.trim());
    }
    let mut text = err.to_string();
    if let Some(detail) = err.detail()
        && !text.contains(detail)
    {
        text += &format!(": {detail}");
    }
    text
}

/// The outputs each action kind exposes to later steps as `steps.<name>.*`.
pub fn sample_outputs(kind: &str) -> Value {
    match kind {
        "dbt_cloud" => json!({ "run_id": 1, "run_url": "https://cloud.getdbt.com/", "status": "success" }),
        "command" => json!({ "exit_code": 0, "output": "" }),
        "http" => json!({ "status": 200, "body": "", "json": sample_payload(), "state": "" }),
        "slack" => json!({ "status": 200, "body": "", "json": sample_payload() }),
        "teams" => json!({ "status": 200, "body": "" }),
        "pagerduty" => json!({ "status": 202, "dedup_key": "handoff/job", "event_action": "trigger" }),
        "email" => json!({ "to": ["someone@example.com"] }),
        _ => json!({}),
    }
}

/// Stands for `events[i].payload` in a sample context: [`check`] replaces it with [`AnyPayload`].
const SAMPLE_PAYLOAD: &str = "\u{0}handoff sample payload";

fn sample_payload() -> Value {
    Value::from(SAMPLE_PAYLOAD)
}

/// A payload is whatever its sender wrote, so when `check` renders a template every field of it
/// may exist: this answers every attribute and item with itself (and renders empty) rather than
/// failing on `events[0].payload.data.status_humanized`.
#[derive(Debug)]
struct AnyPayload;

impl minijinja::value::Object for AnyPayload {
    fn get_value(self: &std::sync::Arc<Self>, _: &minijinja::Value) -> Option<minijinja::Value> {
        Some(minijinja::Value::from_object(AnyPayload))
    }

    fn render(self: &std::sync::Arc<Self>, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Ok(())
    }
}

/// The sample context as template values, each sample payload an [`AnyPayload`].
fn sample_value(value: &Value) -> minijinja::Value {
    match value {
        Value::String(s) if s == SAMPLE_PAYLOAD => minijinja::Value::from_object(AnyPayload),
        Value::Array(items) => items.iter().map(sample_value).collect::<Vec<_>>().into(),
        Value::Object(map) => {
            map.iter().map(|(k, v)| (k.clone(), sample_value(v))).collect::<std::collections::BTreeMap<_, _>>().into()
        }
        other => minijinja::Value::from(minijinja::value::Serde(other)),
    }
}

/// Renders `source` against a [`sample_context`], as `handoff check` does.
pub fn check(source: &str, context: &Value) -> Result<String, String> {
    environment().render_str(source, sample_value(context)).map_err(|e| describe(&e, source))
}

/// A context with every variable a template may use at this point, for checking at load time.
pub fn sample_context(steps: &serde_json::Map<String, Value>, with_error: bool) -> Value {
    let mut context = json!({
        "job": "job",
        "run": { "id": "run", "reason": "events", "attempt": 1 },
        "events": [{ "id": "event", "source": "source", "subject": "subject", "subject_id": "subject",
                     "subject_name": "subject", "status": "success", "type": "type",
                     "payload": sample_payload() }],
        "event_count": 1,
        "steps": steps,
    });
    if with_error {
        context["error"] = json!("error");
    }
    context
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_example_renders_subjects_joined() {
        let context = json!({ "events": [{ "subject": "orders" }, { "subject": "hubspot" }] });
        let text = render("{{ events | map(attribute='subject') | join(',') }}", &context).unwrap();
        assert_eq!(text, "orders,hubspot");
    }

    #[test]
    fn an_unknown_variable_is_an_error_not_an_empty_string() {
        let err = render("run {{ run.idd }}", &json!({ "run": { "id": "1" } })).unwrap_err();
        assert!(err.contains("undefined"), "{err}");
        assert!(err.contains("`run.idd`"), "names the variable: {err}");
    }

    #[test]
    fn check_accepts_any_field_of_a_payload_but_not_an_unknown_variable() {
        let context = sample_context(&serde_json::Map::new(), false);
        let text = check("{{ events[0].payload.data.message }}{{ events[0].type }}", &context).unwrap();
        assert_eq!(text, "type");
        assert!(check("{{ events[0].payloads }}", &context).is_err());
    }

    #[test]
    fn a_syntax_error_says_so() {
        let err = render("{{ job ", &json!({ "job": "x" })).unwrap_err();
        assert!(err.contains("syntax error"), "{err}");
    }

    #[test]
    fn tojson_quotes_values_for_json_bodies() {
        let text = render(r#"{"text": {{ error | tojson }}}"#, &json!({ "error": "a \"quoted\" error" })).unwrap();
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["text"], "a \"quoted\" error");
    }
}
