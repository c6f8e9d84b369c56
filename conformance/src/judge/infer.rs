//! Why a failed statement failed, when the harness does not say
//! (`--reason`): what the recording shows, in the model's terms
//! (`vdi_model::outcome::FailReason`). Only two reasons are inferred, each
//! from evidence the recording carries; otherwise the reason stays
//! unknown and the obligations that need it are not judged (no finding on
//! a guess):
//!
//! - `client-abort`: the program called SignalAbort, or closed a set with
//!   a device not yet at VD_E_CLOSE, before any call returned VD_E_ABORT
//!   (clause `abort.client-signal`).
//! - `watchdog`: a call returned VD_E_ABORT while a fetched command had
//!   been left uncompleted for at least 90 % of the set's serverTimeOut
//!   (clause `watchdog.fires`; the 10 % allows for the clocks of the
//!   recording and of the server).

use std::collections::BTreeMap;
use vdi_model::calllog::{Api, CallRecord};
use vdi_model::outcome::FailReason;
use vdi_spec::Hresult;

/// The reason the recording `log` shows for a failed statement, if any.
pub fn reason(log: &[CallRecord]) -> Option<FailReason> {
    let mut calls: Vec<&CallRecord> = log.iter().collect();
    calls.sort_by_key(|c| (c.pid, c.seq));
    let first_abort = calls
        .iter()
        .find(|c| c.code() == Hresult::VD_E_ABORT)
        .copied();
    if client_stopped(&calls, first_abort) {
        return Some(FailReason::ClientAbort);
    }
    let abort = first_abort?;
    let timeout = calls
        .iter()
        .filter(|c| c.pid == abort.pid && c.object == abort.object)
        .find_map(|c| c.config().filter(|_| c.method == Api::GetConfiguration))
        .map(|v| u64::from(v.cfg.server_time_out))
        .filter(|t| *t > 0)?;
    // Commands fetched and not completed when the abort returned.
    let mut open: BTreeMap<u64, u64> = BTreeMap::new();
    for c in calls
        .iter()
        .filter(|c| c.pid == abort.pid && c.seq < abort.seq)
    {
        if let Some(cmd) = c.fetched() {
            open.insert(cmd.id, c.end_ms);
        }
        if c.method == Api::CompleteCommand
            && let Some(cmd) = &c.args.command
        {
            open.remove(&cmd.id);
        }
    }
    open.values()
        .any(|fetched| abort.end_ms.saturating_sub(*fetched) * 10 >= timeout * 9)
        .then_some(FailReason::Watchdog)
}

/// Whether the program stopped the statement itself (SignalAbort, Close
/// with a device still open) before any abort reached it.
fn client_stopped(calls: &[&CallRecord], first_abort: Option<&CallRecord>) -> bool {
    let before = |c: &CallRecord| first_abort.is_none_or(|a| c.pid != a.pid || c.seq < a.seq);
    let mut opened: BTreeMap<(u32, u64, u32), Vec<u16>> = BTreeMap::new();
    let mut closed: BTreeMap<(u32, u64, u32), Vec<u16>> = BTreeMap::new();
    for c in calls {
        let key = (c.pid, c.object, c.incarnation);
        match c.method {
            Api::OpenDevice if c.code() == Hresult::NOERROR => {
                opened.entry(key).or_default().extend(c.device());
            }
            Api::GetCommand if c.code() == Hresult::VD_E_CLOSE => {
                closed.entry(key).or_default().extend(c.args.device);
            }
            Api::SignalAbort if before(c) => return true,
            Api::Close | Api::Destroy if before(c) => {
                let shut = closed.get(&key).cloned().unwrap_or_default();
                if opened
                    .get(&key)
                    .is_some_and(|o| o.iter().any(|d| !shut.contains(d)))
                {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}
