//! Property: the randomized world the input describes holds the oracle of
//! randomized runs, exactly as `conformance/tests/randomized.rs` asserts
//! it: `random::check` finds nothing broken (every call returns a
//! documented code, no command after an abort, reference devices end
//! VD_E_CLOSE / VD_E_ABORT, the run ends by itself, success only with every
//! byte delivered). Structure-aware: `random::from_bytes` decodes the input
//! with `arbitrary` into the whole case — devices, operation, options,
//! timeouts, data size, Flushes, read sizes, flaws, up to three planned
//! faults with their triggers, the scheduler seed — so libFuzzer's coverage
//! guidance steers each of them. A crash prints the case and the scenario
//! file that replays it (`vdisim replay <file>`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vdi_conformance::random;
use vdi_model::trace::Trace;

fuzz_target!(|bytes: &[u8]| {
    let case = random::from_bytes(bytes);
    let result = random::run(&case, Trace::off());
    let broken = random::check(&case, &result);
    if !broken.is_empty() {
        let id = format!("fuzz-{:016x}", case.seed);
        panic!(
            "invariant broken: {broken:?}\ncase: {case:?}\n\
             scenario file (save as {id}.toml; replay: vdisim replay {id}.toml):\n{}",
            random::to_scenario(&case, &id, &broken)
        );
    }
});
