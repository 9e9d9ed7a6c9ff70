//! The `[secrets]` table as templates see it: `{{ secrets.NAME }}`.
//!
//! The values are resolved when the config is loaded and exist only in memory. They enter a
//! run's template context under `secrets` and nowhere else: the context is never stored, the
//! default `http` body leaves them out, and every stored or logged text passes through
//! [`crate::redact`], which knows each value.

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The key templates read secrets under.
pub const KEY: &str = "secrets";

/// Resolved `[secrets]`, by name.
#[derive(Debug, Clone, Default)]
pub struct TemplateSecrets(BTreeMap<String, SecretString>);

impl TemplateSecrets {
    pub fn new(values: BTreeMap<String, SecretString>) -> TemplateSecrets {
        TemplateSecrets(values)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// The values, for a run's template context.
    pub fn context(&self) -> Value {
        Value::Object(self.0.iter().map(|(k, v)| (k.clone(), Value::from(v.expose_secret()))).collect())
    }

    /// Stand-ins for `handoff check`, which renders every template against a sample run: each
    /// name is known, no value is.
    pub fn sample(&self) -> Value {
        Value::Object(self.0.keys().map(|k| (k.clone(), Value::from("secret"))).collect::<Map<_, _>>())
    }
}

/// The context without its secrets: what a default `http` body sends.
pub fn without(context: &Value) -> Value {
    let mut public = context.clone();
    if let Some(map) = public.as_object_mut() {
        map.remove(KEY);
    }
    public
}
