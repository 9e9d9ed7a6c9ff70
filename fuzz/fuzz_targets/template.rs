//! The template renderer on arbitrary templates, with the context actions see. Rendering is
//! bounded by fuel, so no template may loop forever or panic.
#![no_main]

use handoff::actions::template;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else { return };
    let steps = serde_json::Map::from_iter([("build".to_string(), template::sample_outputs("command"))]);
    let context = template::sample_context(&steps, true);
    let _ = template::render(source, &context);
});
