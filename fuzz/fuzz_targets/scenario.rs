//! Property: reading a scenario file (`Scenario::parse`, TOML plus the
//! checks a case file gets) never panics on any UTF-8 text: bad input is an
//! `Err` with a message, never a crash of `vdisim run` / `vdisim replay`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use vdi_conformance::scenario::Scenario;

fuzz_target!(|text: &str| {
    let _ = Scenario::parse(text, Path::new("fuzz.toml"));
});
