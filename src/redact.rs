//! The redaction pass: every secret value this process has read (secret references, the
//! `[secrets]` table) or been handed at run time (an OAuth2 access token, a session token from a
//! login) is remembered here, and text that is about to be stored or logged is passed through
//! [`redact`], which replaces each of them with `***`.
//!
//! This is the safety net under the rule that a secret never reaches the store, a log line or an
//! error: an API that echoes a request back, a URL with a token in its query, an error quoting a
//! header: whatever path a value takes, the text is cleaned where it leaves. Process-wide on
//! purpose: a secret stays a secret for every config this process loaded.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

/// Values shorter than this are not redacted: replacing every `ab` in every output would make
/// outputs unreadable, and a secret that short guards nothing.
const SHORTEST: usize = 6;
/// Run-time tokens kept at most; the oldest go first (long expired by then).
const MOST_TOKENS: usize = 4096;

#[derive(Default)]
struct Known {
    /// Longest first, so a secret that contains another is replaced whole.
    values: Arc<Vec<String>>,
    set: BTreeSet<String>,
    tokens: std::collections::VecDeque<String>,
}

fn known() -> &'static RwLock<Known> {
    static KNOWN: std::sync::OnceLock<RwLock<Known>> = std::sync::OnceLock::new();
    KNOWN.get_or_init(Default::default)
}

/// Remembers a secret value read from a reference.
pub fn remember(value: &str) {
    add(value, false);
}

/// Remembers a value received at run time (an access or session token).
pub fn remember_token(value: &str) {
    add(value, true);
}

fn add(value: &str, token: bool) {
    if value.len() < SHORTEST {
        return;
    }
    let mut known = known().write().unwrap_or_else(|e| e.into_inner());
    if !known.set.insert(value.to_string()) {
        return;
    }
    if token {
        known.tokens.push_back(value.to_string());
        if known.tokens.len() > MOST_TOKENS
            && let Some(old) = known.tokens.pop_front()
        {
            known.set.remove(&old);
        }
    }
    let mut values: Vec<String> = known.set.iter().cloned().collect();
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    known.values = Arc::new(values);
}

/// `text` with every remembered secret replaced by `***`.
pub fn redact(text: &str) -> String {
    let values = known().read().unwrap_or_else(|e| e.into_inner()).values.clone();
    let mut text = text.to_string();
    for value in values.iter() {
        if text.contains(value.as_str()) {
            text = text.replace(value.as_str(), "***");
        }
    }
    text
}

/// Every string inside `value`, redacted.
pub fn redact_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => {
            let clean = redact(s);
            if clean != *s {
                *s = clean;
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_json),
        serde_json::Value::Object(map) => map.values_mut().for_each(redact_json),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_secret_is_replaced_wherever_it_appears_and_short_values_are_left_alone() {
        remember("s3cr3t-value-redact-test");
        remember_token("tok-redact-test-123456");
        remember("abc");
        let text = redact("url?key=s3cr3t-value-redact-test&t=tok-redact-test-123456 abc");
        assert_eq!(text, "url?key=***&t=*** abc");
        let mut json = serde_json::json!({ "a": ["x s3cr3t-value-redact-test"], "b": 1 });
        redact_json(&mut json);
        assert_eq!(json, serde_json::json!({ "a": ["x ***"], "b": 1 }));
    }
}
