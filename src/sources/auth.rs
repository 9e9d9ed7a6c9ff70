//! Authentication shared by every kind: hex HMAC headers, Standard Webhooks, URL tokens.
//!
//! The current secret is tried first, then the previous one; the slot that matched is
//! recorded with the event. Reasons returned here go to the caller and to the log, so
//! they say which header is missing or wrong, never what it should have been.

use super::Delivery;
use crate::config::{Credentials, Rotating, Source, Token};
use crate::domain::SecretSlot;
use crate::domain::SourceKind;
use crate::signature::{self, Key};

/// The header and prefix of each kind that sends a hex HMAC of the raw body.
fn hex_scheme(kind: SourceKind) -> Option<(&'static str, &'static str, &'static str)> {
    match kind {
        // (header as looked up, header as shown to people, prefix before the hex)
        SourceKind::DbtCloud | SourceKind::Hmac => Some(("authorization", "Authorization", "")),
        SourceKind::Fivetran => Some(("x-fivetran-signature-256", "X-Fivetran-Signature-256", "")),
        SourceKind::Github => Some(("x-hub-signature-256", "X-Hub-Signature-256", "sha256=")),
        SourceKind::Airbyte | SourceKind::StandardWebhooks => None,
    }
}

pub(super) fn describe(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::DbtCloud | SourceKind::Hmac => "Authorization: hex HMAC-SHA256 of the raw body",
        SourceKind::Fivetran => "X-Fivetran-Signature-256: hex HMAC-SHA256 of the raw body",
        SourceKind::Github => "X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>",
        SourceKind::StandardWebhooks => {
            "webhook-id, webhook-timestamp, webhook-signature (v1, HMAC-SHA256 of id.timestamp.body)"
        }
        SourceKind::Airbyte => "token in ?token= or Authorization: Bearer <token>",
    }
}

fn first_match<T>(rotating: &Rotating<T>, matches: impl Fn(&T) -> bool) -> Option<SecretSlot> {
    if matches(&rotating.current) {
        Some(SecretSlot::Current)
    } else if rotating.previous.as_ref().is_some_and(matches) {
        Some(SecretSlot::Previous)
    } else {
        None
    }
}

pub(super) fn authenticate(source: &Source, delivery: &Delivery<'_>) -> Result<SecretSlot, String> {
    match &source.credentials {
        Credentials::Tokens(tokens) => authenticate_token(tokens, delivery),
        Credentials::Keys(keys) => match hex_scheme(source.kind) {
            Some((header, shown, prefix)) => authenticate_hex(keys, delivery, header, shown, prefix),
            None => authenticate_standard_webhooks(keys, delivery, source.tolerance),
        },
    }
}

fn authenticate_hex(
    keys: &Rotating<Key>,
    delivery: &Delivery<'_>,
    header: &str,
    shown: &str,
    prefix: &str,
) -> Result<SecretSlot, String> {
    let value = delivery.header(header).ok_or_else(|| format!("missing {shown} header"))?;
    let hex = if prefix.is_empty() {
        value
    } else {
        value.strip_prefix(prefix).ok_or_else(|| format!("{shown} does not start with {prefix}"))?
    };
    let tag = signature::decode_hex(hex).ok_or_else(|| format!("{shown} is not a hex signature"))?;
    first_match(keys, |key| key.verify(&[delivery.body], &tag)).ok_or_else(|| "signature does not match".to_string())
}

/// The delivery id of a Standard Webhooks (or Svix-branded) delivery.
pub(super) fn standard_webhooks_id<'a>(delivery: &Delivery<'a>) -> Option<&'a str> {
    let headers = delivery.headers;
    ["webhook-id", "svix-id"]
        .into_iter()
        .find_map(|name| headers.get(name).and_then(|v| v.to_str().ok()))
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn authenticate_standard_webhooks(
    keys: &Rotating<Key>,
    delivery: &Delivery<'_>,
    tolerance: std::time::Duration,
) -> Result<SecretSlot, String> {
    // Svix sends the same scheme under its own header names.
    let pick = |a: &str, b: &str| delivery.header(a).or_else(|| delivery.header(b));
    let id = standard_webhooks_id(delivery).ok_or("missing webhook-id header")?;
    let timestamp = pick("webhook-timestamp", "svix-timestamp").ok_or("missing webhook-timestamp header")?;
    let signature = pick("webhook-signature", "svix-signature").ok_or("missing webhook-signature header")?;
    let seconds: i64 = timestamp.parse().map_err(|_| "webhook-timestamp is not a number of seconds")?;
    let age = delivery.now.as_second().saturating_sub(seconds);
    if age.unsigned_abs() > tolerance.as_secs() {
        return Err(if age > 0 {
            "webhook-timestamp is too old (replayed or delayed delivery)".to_string()
        } else {
            "webhook-timestamp is in the future (check the sender's clock)".to_string()
        });
    }
    first_match(keys, |key| signature::verify_standard_webhooks(key, id, timestamp, delivery.body, signature))
        .ok_or_else(|| "signature does not match".to_string())
}

fn authenticate_token(tokens: &Rotating<Token>, delivery: &Delivery<'_>) -> Result<SecretSlot, String> {
    let from_query = delivery
        .query
        .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "token").map(|(_, v)| v.into_owned()));
    let from_header = || {
        delivery
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(|t| t.trim().to_string())
    };
    let given = from_query.or_else(from_header).ok_or("missing token (?token= or Authorization: Bearer)")?;
    first_match(tokens, |t| signature::tokens_match(&t.0, given.as_bytes()))
        .ok_or_else(|| "token does not match".to_string())
}
