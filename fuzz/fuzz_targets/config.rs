//! The config loader on arbitrary text: an error with a line and a message, or a config; never
//! a panic. Secret references name environment variables that exist and files that do not.
#![no_main]

use handoff::config::Config;
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::LazyLock;

static ONCE: LazyLock<()> = LazyLock::new(|| {
    // SAFETY: set once, before any other thread of this process reads the environment.
    unsafe {
        std::env::set_var("FUZZ_SECRET", "fuzz-secret-0123456789abcdef");
        std::env::set_var("FUZZ_WHSEC", "whsec_ZnV6ei1zdGFuZGFyZC13ZWJob29rcy1rZXktMDAwMQ==");
    }
});

fuzz_target!(|data: &[u8]| {
    LazyLock::force(&ONCE);
    let Ok(text) = std::str::from_utf8(data) else { return };
    // A folder that does not exist: relative `file` references find nothing there.
    match Config::parse(Path::new("/nonexistent-handoff-fuzz/handoff.toml"), text) {
        Ok(_) => {}
        Err(err) => {
            assert!(!err.problems.is_empty(), "an error names at least one problem");
            let _ = err.to_string();
        }
    }
});
