//! HMAC-SHA256 signing and verification, and the decoding of signature headers.
//!
//! Pure functions over bytes: no I/O, no config, no HTTP types. Both the receiver
//! (`sources`) and the signing client (`handoff send`) use this module, so they share
//! test vectors. Signatures are always decoded to bytes and compared in constant time;
//! hex is accepted in either case (Fivetran is reported to send uppercase).

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as BASE64, STANDARD_NO_PAD_INDIFFERENT};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// A secret with its HMAC key schedule done once; cloned per message.
#[derive(Clone)]
pub struct Key {
    keyed: HmacSha256,
}

impl Key {
    /// Any byte string is a valid HMAC key (long keys are hashed first).
    pub fn new(secret: &[u8]) -> Self {
        let keyed = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
        Self { keyed }
    }

    /// The MAC of the concatenation of `parts`.
    pub fn sign(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// Whether `tag` is the MAC of the concatenation of `parts`, in constant time.
    pub fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        let mut mac = self.keyed.clone();
        for part in parts {
            mac.update(part);
        }
        mac.verify_slice(tag).is_ok()
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

/// Lowercase hex HMAC-SHA256 of `body`: the dbt Cloud, Elementary and `hmac` scheme.
pub fn sign_hex(key: &Key, body: &[u8]) -> String {
    hex::encode(key.sign(&[body]))
}

/// Decodes a hex signature in either case, ignoring surrounding whitespace.
pub fn decode_hex(value: &str) -> Option<Vec<u8>> {
    hex::decode(value.trim()).ok()
}

/// Compares two byte strings in constant time (for shared tokens, which are not MACs).
pub fn tokens_match(expected: &[u8], given: &[u8]) -> bool {
    expected.ct_eq(given).into()
}

/// Decodes a Standard Webhooks secret: base64, optionally prefixed with `whsec_`, with or
/// without its `=` padding (the reference libraries and Svix accept both, and secrets are often
/// pasted without it).
pub fn decode_standard_webhooks_secret(secret: &str) -> Option<Vec<u8>> {
    let raw = secret.trim();
    let raw = raw.strip_prefix("whsec_").unwrap_or(raw);
    STANDARD_NO_PAD_INDIFFERENT.decode(raw).ok().filter(|key| !key.is_empty())
}

/// The Standard Webhooks signed content is `{id}.{timestamp}.{body}`.
fn standard_webhooks_parts<'a>(id: &'a str, timestamp: &'a str, body: &'a [u8]) -> [&'a [u8]; 5] {
    [id.as_bytes(), b".", timestamp.as_bytes(), b".", body]
}

/// The `webhook-signature` header value for one key: `v1,<base64>`.
pub fn sign_standard_webhooks(key: &Key, id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let mac = key.sign(&standard_webhooks_parts(id, &ts, body));
    format!("v1,{}", BASE64.encode(mac))
}

/// Whether any `v1,` entry of a space-delimited `webhook-signature` header matches.
/// Entries of other versions (`v1a`, future ones) are ignored, as the spec asks.
pub fn verify_standard_webhooks(key: &Key, id: &str, timestamp: &str, body: &[u8], header: &str) -> bool {
    let parts = standard_webhooks_parts(id, timestamp, body);
    header
        .split_whitespace()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|b64| BASE64.decode(b64).ok())
        // An empty or short tag never matches: verify_slice checks the length first.
        .any(|tag| key.verify(&parts, &tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_test_vector_verifies() {
        let key = Key::new(b"It's a Secret to Everybody");
        assert_eq!(
            sign_hex(&key, b"Hello, World!"),
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn elementary_empty_body_vector_verifies() {
        let key = Key::new(b"test-secret");
        assert_eq!(sign_hex(&key, b""), "a41bc6d81d6413576ae0994995e0ad89a416ec97389515c3604f47722122eeeb");
    }

    #[test]
    fn uppercase_hex_decodes_to_the_same_tag() {
        let key = Key::new(b"test-secret");
        let body = br#"{"eventType":"job.run.completed"}"#;
        let upper = "8F68A85FA645955FC76C070E0D56074D4A7C099D2E46A254044CBFE889468430";
        assert!(key.verify(&[body], &decode_hex(upper).unwrap()));
        assert!(key.verify(&[body], &decode_hex(&upper.to_lowercase()).unwrap()));
    }

    #[test]
    fn standard_webhooks_official_vector_verifies() {
        let secret = decode_standard_webhooks_secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let key = Key::new(&secret);
        let body = br#"{"email":"test@example.com","username":"test_user"}"#;
        let id = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
        let sig = sign_standard_webhooks(&key, id, 1649367553, body);
        assert_eq!(sig, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
        let header = format!("v1a,AAAA v1,bm90IGl0 {sig}");
        assert!(verify_standard_webhooks(&key, id, "1649367553", body, &header));
    }

    #[test]
    fn a_standard_webhooks_secret_is_read_with_or_without_its_padding() {
        // 32 bytes: base64 needs one `=`; 31 bytes: two.
        for key in [[7u8; 32].as_slice(), &[0xfe; 31]] {
            let padded = BASE64.encode(key);
            assert!(padded.ends_with('='), "{padded}");
            let unpadded = padded.trim_end_matches('=');
            for secret in [format!("whsec_{padded}"), format!("whsec_{unpadded}"), unpadded.to_string()] {
                assert_eq!(decode_standard_webhooks_secret(&secret).as_deref(), Some(key), "{secret}");
            }
        }
        assert_eq!(decode_standard_webhooks_secret("whsec_"), None);
        assert_eq!(decode_standard_webhooks_secret("whsec_not base64!"), None);
        assert_eq!(decode_standard_webhooks_secret("whsec_A"), None, "one character is no whole byte");
    }

    #[test]
    fn an_empty_standard_webhooks_signature_never_verifies() {
        let key = Key::new(b"k");
        assert!(!verify_standard_webhooks(&key, "id", "1", b"{}", "v1,"));
        assert!(!verify_standard_webhooks(&key, "id", "1", b"{}", "v1"));
        assert!(!verify_standard_webhooks(&key, "id", "1", b"{}", ""));
    }

    #[test]
    fn a_flipped_byte_fails_verification() {
        let key = Key::new(b"s");
        let tag = key.sign(&[b"payload"]);
        assert!(key.verify(&[b"payload"], &tag));
        assert!(!key.verify(&[b"paylaod"], &tag));
        assert!(!key.verify(&[b"payload"], &tag[..31]));
    }
}
