//! The clauses the stand-in's client half cites when its sets are
//! connected to a `vdisim serve` (no harness case), read through its
//! `vdisim_client_tally` export: with statements over TDS, the run's clause
//! hits are the driver's own and these — the same ones the Linux stand-in's
//! forwarded harness reports to the `sqlserver` backend. A library without
//! the export (SQL Server's `sqlvdi.dll`) reports none, and cases decided
//! by clause hits stay *unimplemented* there.

use super::abi;
use crate::backend::BackendError;
use libloading::Library;
use std::collections::BTreeMap;
use std::ffi::c_char;
use vdi_sim::world::RunResult;

type TallyFn = unsafe extern "C" fn(*mut c_char, usize, *mut usize) -> i32;

/// Largest tally accepted (bytes of JSON): a few hundred clause ids.
const MAX_TALLY: usize = 1 << 20;

/// The library's `vdisim_client_tally`.
#[derive(Clone, Copy)]
pub struct ClientTally {
    f: TallyFn,
}

impl ClientTally {
    /// The export of `lib`, if it has it.
    pub fn load(lib: &'static Library) -> Option<ClientTally> {
        // SAFETY: the type is that of the stand-in's export
        // (sim/standin/src/harness.rs).
        let f: Option<TallyFn> = unsafe { abi::symbol(lib, "vdisim_client_tally") };
        f.map(|f| ClientTally { f })
    }

    /// The counts since the last take (clause id → citations), cleared.
    pub fn take(&self) -> Result<BTreeMap<String, u64>, BackendError> {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let mut needed = 0usize;
            // SAFETY: `buf` holds `buf.len()` writable bytes and `needed` is
            // writable for the call.
            let rc = unsafe { (self.f)(buf.as_mut_ptr().cast(), buf.len(), &mut needed) };
            match rc {
                0 => break,
                -4 if needed > buf.len() && needed <= MAX_TALLY => buf.resize(needed, 0),
                rc => {
                    return Err(BackendError::Failed(format!(
                        "vdisim_client_tally: error {rc} (needed {needed} bytes, at most {MAX_TALLY} accepted)"
                    )));
                }
            }
        }
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        serde_json::from_slice(&buf[..end])
            .map_err(|e| BackendError::Failed(format!("vdisim_client_tally JSON: {e}")))
    }
}

/// Adds `counts` (clause ids the spec catalog knows) to the run's hits.
pub fn merge(r: &mut RunResult, counts: &BTreeMap<String, u64>) {
    for (k, v) in counts {
        if let Some(c) = vdi_spec::clauses::clause(k) {
            *r.clauses.entry(c.id).or_default() += v;
        }
    }
}
