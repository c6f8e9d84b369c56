//! Property: the randomized world drawn from any seed (the first 8 bytes of
//! the input, little-endian) holds the oracle of randomized runs, exactly as
//! `conformance/tests/randomized.rs` asserts it: `random::check` finds
//! nothing broken (every call returns a documented code, no command after an
//! abort, reference devices end VD_E_CLOSE / VD_E_ABORT, the run ends by
//! itself, success only with every byte delivered). A crash prints the seed
//! and the scenario file that replays it (`vdisim replay <file>`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vdi_conformance::random;
use vdi_model::trace::Trace;

fuzz_target!(|bytes: &[u8]| {
    let mut seed = [0u8; 8];
    let n = bytes.len().min(8);
    seed[..n].copy_from_slice(&bytes[..n]);
    let seed = u64::from_le_bytes(seed);
    let case = random::from_seed(seed);
    let result = random::run(&case, Trace::hashing());
    let broken = random::check(&case, &result);
    if !broken.is_empty() {
        let id = format!("random-{seed}");
        panic!(
            "seed {seed}: invariant broken: {broken:?}\n\
             scenario file (save as {id}.toml; replay: vdisim replay {id}.toml):\n{}",
            random::to_scenario(&case, &id, &broken)
        );
    }
});
