//! The signature header parsers and decoders: no panic on any input, and what is signed verifies.
#![no_main]

use arbitrary::Arbitrary;
use handoff::signature::{self, Key};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    secret: &'a [u8],
    id: &'a str,
    timestamp: &'a str,
    header: &'a str,
    body: &'a [u8],
    seconds: i64,
}

fuzz_target!(|input: Input<'_>| {
    let _ = signature::decode_hex(input.header);
    let _ = signature::decode_standard_webhooks_secret(input.header);
    if input.secret.is_empty() {
        return;
    }
    let key = Key::new(input.secret);
    let _ = signature::verify_standard_webhooks(&key, input.id, input.timestamp, input.body, input.header);

    // What is signed verifies, and a header that carries other entries around it still does.
    let signed = signature::sign_standard_webhooks(&key, input.id, input.seconds, input.body);
    let seconds = input.seconds.to_string();
    assert!(signature::verify_standard_webhooks(&key, input.id, &seconds, input.body, &signed));
    let surrounded = format!("v1a,xyz {signed} {}", input.header.replace(char::is_whitespace, ""));
    assert!(signature::verify_standard_webhooks(&key, input.id, &seconds, input.body, &surrounded));

    let hex = signature::sign_hex(&key, input.body);
    let tag = signature::decode_hex(&hex.to_uppercase()).expect("hex decodes in either case");
    assert!(key.verify(&[input.body], &tag));
});
