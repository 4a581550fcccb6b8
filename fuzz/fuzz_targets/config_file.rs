//! Parses arbitrary text as a `pike.toml`. Parsing may refuse it (with an
//! error that names what is wrong) but never panic, whatever the keys,
//! types, sizes and numbers.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pike_server::config::Config;

fuzz_target!(|text: &str| {
    if let Err(e) = Config::parse(text, Path::new("fuzz.toml")) {
        assert!(!e.to_string().is_empty());
    }
});
