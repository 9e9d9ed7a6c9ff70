//! Every source kind's authentication and normalisation, on arbitrary headers, query and body.
//!
//! Half the inputs are signed correctly by the harness, so the normalisers see arbitrary bodies
//! too; for those, the property is that authentication passes (the answer is an event or a 400,
//! never a 401). No input may panic.
#![no_main]

use arbitrary::Arbitrary;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use handoff::config::{Config, Source};
use handoff::signature::{self, Key};
use handoff::sources::{self, Delivery, Rejection};
use jiff::Timestamp;
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

const SECRET: &str = "fuzz-secret-0123456789abcdef";
const PREVIOUS: &str = "fuzz-previous-0123456789abcdef";
/// base64 of "fuzz-standard-webhooks-key-0001"
const WHSEC: &str = "whsec_ZnV6ei1zdGFuZGFyZC13ZWJob29rcy1rZXktMDAwMQ==";
const WHSEC_PREVIOUS: &str = "whsec_ZnV6ei1zdGFuZGFyZC13ZWJob29rcy1rZXktMDAwMg==";

const CONFIG: &str = r#"
[sources.dbt_cloud]
kind = "dbt_cloud"
secret = { env = "FUZZ_SECRET" }
previous_secret = { env = "FUZZ_PREVIOUS" }

[sources.fivetran]
kind = "fivetran"
secret = { env = "FUZZ_SECRET" }

[sources.airbyte]
kind = "airbyte"
token = { env = "FUZZ_SECRET" }
previous_token = { env = "FUZZ_PREVIOUS" }

[sources.hmac]
kind = "hmac"
secret = { env = "FUZZ_SECRET" }

[sources.standard_webhooks]
kind = "standard_webhooks"
secret = { env = "FUZZ_WHSEC" }
previous_secret = { env = "FUZZ_WHSEC_PREVIOUS" }

[sources.github]
kind = "github"
secret = { env = "FUZZ_SECRET" }
"#;

static SOURCES: LazyLock<Vec<Source>> = LazyLock::new(|| {
    // SAFETY: set once, before any other thread of this process reads the environment.
    unsafe {
        std::env::set_var("FUZZ_SECRET", SECRET);
        std::env::set_var("FUZZ_PREVIOUS", PREVIOUS);
        std::env::set_var("FUZZ_WHSEC", WHSEC);
        std::env::set_var("FUZZ_WHSEC_PREVIOUS", WHSEC_PREVIOUS);
    }
    let config = Config::parse(std::path::Path::new("/fuzz/handoff.toml"), CONFIG)
        .unwrap_or_else(|err| panic!("the harness's config is valid: {err}"));
    config.sources.into_values().collect()
});

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    source: u8,
    /// Let the harness sign the delivery correctly (with the current or previous secret).
    sign: Option<bool>,
    headers: Vec<(&'a str, &'a [u8])>,
    query: Option<&'a str>,
    body: &'a [u8],
    /// The Standard Webhooks id when the harness signs.
    id: &'a str,
    /// Clock skew of a harness-signed Standard Webhooks delivery, within the tolerance.
    skew: i8,
}

fn key(secret: &str, kind: &str) -> Key {
    if kind == "standard_webhooks" {
        Key::new(&signature::decode_standard_webhooks_secret(secret).expect("the harness's secret is base64"))
    } else {
        Key::new(secret.as_bytes())
    }
}

fuzz_target!(|input: Input<'_>| {
    let sources = &*SOURCES;
    let source = &sources[usize::from(input.source) % sources.len()];
    let now = Timestamp::from_second(1_800_000_000).expect("a valid time");

    let mut headers = HeaderMap::new();
    for (name, value) in &input.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(value)) {
            headers.append(name, value);
        }
    }
    let mut query = input.query.map(str::to_string);
    let mut signed = false;
    if let Some(previous) = input.sign {
        let kind = source.name.as_str();
        let secret = match (kind, previous) {
            ("standard_webhooks", false) => WHSEC,
            ("standard_webhooks", true) => WHSEC_PREVIOUS,
            (_, false) => SECRET,
            (_, true) => PREVIOUS,
        };
        // Only dbt_cloud, airbyte and standard_webhooks have a previous secret here.
        let has_previous = matches!(kind, "dbt_cloud" | "airbyte" | "standard_webhooks");
        let key = key(secret, kind);
        let hex = signature::sign_hex(&key, input.body);
        let set = |headers: &mut HeaderMap, name: &'static str, value: String| {
            headers.insert(name, HeaderValue::from_str(&value).expect("ASCII"));
        };
        signed = !previous || has_previous;
        match kind {
            "dbt_cloud" | "hmac" => set(&mut headers, "authorization", hex),
            "fivetran" => set(&mut headers, "x-fivetran-signature-256", hex),
            "github" => set(&mut headers, "x-hub-signature-256", format!("sha256={hex}")),
            "airbyte" => query = Some(format!("token={secret}")),
            "standard_webhooks" => {
                let id = input.id.trim();
                // Header values a sender can send as text: visible ASCII (and inner spaces).
                if id.is_empty() || !id.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
                    signed = false;
                } else {
                    headers.remove("svix-id");
                    let timestamp = now.as_second() + i64::from(input.skew);
                    set(&mut headers, "webhook-id", id.to_string());
                    set(&mut headers, "webhook-timestamp", timestamp.to_string());
                    set(
                        &mut headers,
                        "webhook-signature",
                        signature::sign_standard_webhooks(&key, id, timestamp, input.body),
                    );
                }
            }
            other => unreachable!("a kind the harness does not know: {other}"),
        }
    }

    let delivery = Delivery { headers: &headers, query: query.as_deref(), body: input.body, now };
    let result = sources::receive(source, &delivery);
    if signed && let Err(Rejection::Unauthenticated(reason)) = &result {
        panic!("a correctly signed {} delivery was refused: {reason}", source.name);
    }
});
