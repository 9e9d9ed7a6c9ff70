//! Small readers over `serde_json::Value` shared by the kinds.

use jiff::Timestamp;
use serde_json::{Map, Value};

/// Parses a body as a JSON object, or says what it is instead.
pub(super) fn object(body: &[u8], what: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(format!("body is JSON but not an object; {what} sends an object")),
        Err(err) => Err(format!("body is not JSON ({err}); {what} sends a JSON object")),
    }
}

/// A string field, or a number written as a string (providers mix the two for ids).
pub(super) fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Follows a path of object keys.
pub(super) fn at<'a>(map: &'a Map<String, Value>, path: &[&str]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    rest.iter().try_fold(map.get(*first)?, |v, key| v.get(key))
}

/// An RFC 3339 time, or `None` when absent or unreadable (providers are not failed for it).
pub(super) fn time(value: Option<&Value>) -> Option<Timestamp> {
    value?.as_str()?.parse().ok()
}
