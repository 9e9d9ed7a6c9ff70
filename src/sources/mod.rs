//! Source kinds: authenticate a delivery on its raw bytes, then normalise its body into an event.
//!
//! One file per kind reads that provider's body (research/providers.md has the wire formats);
//! `auth` holds the authentication every kind shares. Nothing here does I/O or parses JSON
//! before authentication has succeeded.

mod airbyte;
mod auth;
mod dbt_cloud;
mod fivetran;
mod generic;
mod github;
mod json;

use crate::config::Source;
use crate::domain::SourceKind;
use crate::domain::{Normalised, SecretSlot};
use axum::http::HeaderMap;
use jiff::Timestamp;

/// One delivery as it arrived: the exact bytes, headers and query string.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
    pub body: &'a [u8],
    pub now: Timestamp,
}

impl Delivery<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
    }
}

/// Why a delivery is not an event. Reasons name what is wrong, never a secret or the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Authentication failed (401).
    Unauthenticated(String),
    /// Authenticated, but the body is not what this kind sends (400).
    BadBody(String),
}

/// An authenticated and normalised delivery.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub secret: SecretSlot,
    pub normalised: Normalised,
    /// How long its dedupe key holds (`replay_window`); `None`: forever.
    pub dedupe_window: Option<std::time::Duration>,
}

/// Authenticates a delivery for `source`, then reads its body.
pub fn receive(source: &Source, delivery: &Delivery<'_>) -> Result<Accepted, Rejection> {
    let secret = auth::authenticate(source, delivery).map_err(Rejection::Unauthenticated)?;
    let normalised = match source.kind {
        SourceKind::DbtCloud => dbt_cloud::normalise(delivery),
        SourceKind::Fivetran => fivetran::normalise(delivery),
        SourceKind::Airbyte => airbyte::normalise(delivery),
        SourceKind::Hmac => generic::normalise(delivery, delivery.header("idempotency-key")),
        SourceKind::StandardWebhooks => generic::normalise(delivery, auth::standard_webhooks_id(delivery)),
        SourceKind::Github => github::normalise(delivery),
    }
    .map_err(Rejection::BadBody)?;
    let mut normalised = normalised;
    // hmac and github sign the body only: their delivery id header (Idempotency-Key,
    // X-GitHub-Delivery) is not signed, so whoever captured a delivery can replay it under a
    // new id. With a replay window the identity is the signed body itself, for that long.
    if source.replay_window.is_some() {
        normalised.dedupe_key = Some(body_key(delivery.body));
    }
    Ok(Accepted { secret, normalised, dedupe_window: source.replay_window })
}

/// The dedupe key of a body under `replay_window`: its SHA-256.
fn body_key(body: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("body-sha256:{}", hex::encode(Sha256::digest(body)))
}

/// How a kind authenticates, in words, for `handoff check`.
pub fn describe_auth(kind: SourceKind) -> &'static str {
    auth::describe(kind)
}

/// Deliveries for the kinds' unit tests.
#[cfg(test)]
mod testing {
    use super::Delivery;
    use axum::http::{HeaderMap, HeaderName, HeaderValue};
    use jiff::Timestamp;

    /// Runs a kind's `normalise` on `body` delivered with `headers`.
    pub(super) fn deliver<T>(headers: &[(&str, &str)], body: &str, normalise: impl FnOnce(&Delivery<'_>) -> T) -> T {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(name.parse::<HeaderName>().unwrap(), HeaderValue::from_str(value).unwrap());
        }
        normalise(&Delivery { headers: &map, query: None, body: body.as_bytes(), now: Timestamp::UNIX_EPOCH })
    }

    /// An RFC 3339 time, for expected values.
    pub(super) fn at(text: &str) -> Option<Timestamp> {
        Some(text.parse().unwrap())
    }

    /// `Some(text.to_string())`, for expected values.
    pub(super) fn some(text: &str) -> Option<String> {
        Some(text.to_string())
    }
}
