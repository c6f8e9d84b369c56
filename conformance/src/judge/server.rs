//! The server-visible rules: what the recorded library (and the server
//! behind it) answered, replayed through the client transition table
//! (`vdi_spec::tables::client_cell`) set by set, plus the rules on which
//! commands may reach a device (none after an abort, none after the
//! device's VD_E_CLOSE, VDC_Complete only when requested and negotiated).
//!
//! An answer the model does not allow is a *model deviation*: either the
//! recorded server broke a clause, or the model is wrong about it. Where
//! a profile parameter decides the cell (`vdisim list --profile`), the
//! recording's choice is reported with the value it supports, and is a
//! deviation when it is not the default profile's.

use std::collections::{BTreeMap, BTreeSet};
use vdi_model::calllog::{Api, CallRecord};
use vdi_model::checks::codes;
use vdi_spec::profile::{AfterDeviceClosed, CloseWithOpenDevices, OpenDevicePrecedence};
use vdi_spec::{ClientState, CommandCode, Features, Hresult, Profile, TableMethod, id};

/// What the recorded server side did that the model does not predict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerFinding {
    /// The clause (a table cell or a named rule).
    pub clause: String,
    /// What happened, in words.
    pub what: String,
    /// The call, by its `seq`.
    pub at: u64,
    /// The profile parameter and the value the recording supports, when a
    /// parameter decides the cell.
    pub profile: Option<(&'static str, String)>,
    /// Whether the default profile already makes this choice (an
    /// observation, not a deviation).
    pub agrees: bool,
}

/// One set being replayed.
struct Replay {
    state: ClientState,
    /// The state before the last change, and the `seq` of that change.
    prev: ClientState,
    since: u64,
    granted: Option<Features>,
    /// The features Create asked for.
    requested: Features,
    /// deviceCount, from GetConfiguration.
    devices: Option<u32>,
    opened: BTreeSet<u16>,
    closed: BTreeSet<u16>,
}

impl Replay {
    fn go(&mut self, to: ClientState, seq: u64) {
        if to != self.state {
            self.prev = self.state;
            self.state = to;
            self.since = seq;
        }
    }
}

fn table_method(m: Api) -> Option<TableMethod> {
    Some(match m {
        Api::Create | Api::CreateEx => TableMethod::Create,
        Api::GetConfiguration => TableMethod::GetConfiguration,
        Api::OpenDevice => TableMethod::OpenDevice,
        Api::GetCommand => TableMethod::GetCommand,
        Api::CompleteCommand => TableMethod::CompleteCommand,
        Api::SignalAbort => TableMethod::SignalAbort,
        Api::Close => TableMethod::Close,
        _ => return None,
    })
}

fn kebab<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The server-side findings of `log` (the recording's call log) against
/// profile `p`.
pub fn check(log: &[CallRecord], p: &Profile) -> Vec<ServerFinding> {
    let mut sets: BTreeMap<(u32, u64, u32), Vec<&CallRecord>> = BTreeMap::new();
    for r in log {
        if r.incarnation > 0 {
            sets.entry((r.pid, r.object, r.incarnation))
                .or_default()
                .push(r);
        }
    }
    let mut out = Vec::new();
    for calls in sets.values_mut() {
        calls.sort_by_key(|r| r.seq);
        replay(calls, p, &mut out);
    }
    out
}

fn replay(calls: &[&CallRecord], p: &Profile, out: &mut Vec<ServerFinding>) {
    let mut s = Replay {
        state: ClientState::Dne,
        prev: ClientState::Dne,
        since: 0,
        granted: None,
        requested: Features::LikePipe,
        devices: None,
        opened: BTreeSet::new(),
        closed: BTreeSet::new(),
    };
    for r in calls {
        let Some(m) = table_method(r.method) else {
            continue;
        };
        if s.state == ClientState::Dne && m != TableMethod::Create {
            // After Close: the program's misuse, graded as its obligation
            // (close.exactly-once); the code is the profile's
            // use-after-close code, not a table cell.
            continue;
        }
        rules(&mut s, r, p, out);
        let code = r.code();
        // §4.2.1: for OpenDevice the set is Initializing until every
        // device is open.
        let some_unopened = s.devices.is_none_or(|n| (s.opened.len() as u32) < n);
        let st = if m == TableMethod::OpenDevice && s.state == ClientState::Active && some_unopened
        {
            ClientState::Initializing
        } else {
            s.state
        };
        let cell = vdi_spec::tables::client_cell(m, st);
        let allowed = cell.allows(code)
            || (r.after < s.since && vdi_spec::tables::client_cell(m, s.prev).allows(code));
        if !allowed && !codes::documented(p, m, st, code, cell.clause) {
            out.push(ServerFinding {
                clause: cell.clause.to_string(),
                what: format!(
                    "{} in state {} returned {}, which the client transition table does not allow there (it allows {})",
                    r.method.name(),
                    st.name(),
                    r.ret.name,
                    cell.outcomes
                        .iter()
                        .map(|o| o.code.name().unwrap_or("?"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                at: r.seq,
                profile: None,
                agrees: false,
            });
            continue;
        }
        advance(&mut s, r, m, code);
    }
}

/// The state after `r` returned `code` (the table's next state).
fn advance(s: &mut Replay, r: &CallRecord, m: TableMethod, code: Hresult) {
    use ClientState as C;
    if code == Hresult::VD_E_ABORT {
        s.go(C::Abort, r.seq);
        return;
    }
    match (m, code) {
        (TableMethod::Create, Hresult::NOERROR) => {
            if let Some(c) = &r.args.config {
                s.requested = c.features();
            }
            s.go(C::Configurable, r.seq)
        }
        (TableMethod::GetConfiguration, Hresult::NOERROR) => {
            if let Some(c) = r.config() {
                s.granted = Some(c.features());
                s.devices = Some(c.cfg.device_count);
            }
            if s.state == C::Configurable {
                s.go(C::Initializing, r.seq);
            }
        }
        (TableMethod::OpenDevice, Hresult::NOERROR) => {
            if let Some(d) = r.device() {
                s.opened.insert(d);
            }
            s.go(C::Active, r.seq);
        }
        (TableMethod::GetCommand, Hresult::VD_E_CLOSE) => {
            if let Some(d) = r.args.device {
                s.closed.insert(d);
            }
            if s.state == C::Active && s.opened.iter().all(|d| s.closed.contains(d)) {
                s.go(C::NormallyTerminated, r.seq);
            }
        }
        (TableMethod::SignalAbort, Hresult::NOERROR) => s.go(C::Abort, r.seq),
        (TableMethod::Close, Hresult::NOERROR | Hresult::VD_E_OPEN) => s.go(C::Dne, r.seq),
        _ => {}
    }
}

/// The rules beyond the table's codes, and the profile choices the
/// recording shows.
fn rules(s: &mut Replay, r: &CallRecord, p: &Profile, out: &mut Vec<ServerFinding>) {
    let code = r.code();
    let choice =
        |clause: &str, param: &'static str, value: String, default: String, what: String| {
            ServerFinding {
                clause: clause.to_string(),
                agrees: value == default,
                what,
                at: r.seq,
                profile: Some((param, value)),
            }
        };
    match r.method {
        Api::GetCommand => {
            let dev = r.args.device.unwrap_or(0);
            if let Some(cmd) = r.fetched() {
                command_rules(s, r, cmd, dev, out);
            } else if s.closed.contains(&dev) && s.state == ClientState::Active {
                let v = match code {
                    Hresult::VD_E_CLOSE => Some(AfterDeviceClosed::Close),
                    Hresult::VD_E_PROTOCOL => Some(AfterDeviceClosed::Protocol),
                    _ => None,
                };
                if let Some(v) = v {
                    out.push(choice(
                        id::GET_COMMAND_AFTER_DEVICE_CLOSED.as_str(),
                        "get-command-after-device-closed",
                        kebab(&v),
                        kebab(&p.get_command_after_device_closed),
                        format!(
                            "GetCommand on device {dev} after its VD_E_CLOSE, while other devices were open, returned {}",
                            r.ret.name
                        ),
                    ));
                }
            }
        }
        Api::Close if s.state == ClientState::Active => {
            let open = s.opened.iter().any(|d| !s.closed.contains(d));
            let v = match code {
                Hresult::VD_E_OPEN => Some(CloseWithOpenDevices::VdEOpen),
                Hresult::NOERROR if open => Some(CloseWithOpenDevices::Noerror),
                _ => None,
            };
            if let Some(v) = v {
                out.push(choice(
                    vdi_spec::tables::client_cell(TableMethod::Close, ClientState::Active)
                        .clause
                        .as_str(),
                    "close-with-open-devices",
                    kebab(&v),
                    kebab(&p.close_with_open_devices),
                    format!(
                        "Close with a device not yet at VD_E_CLOSE returned {}",
                        r.ret.name
                    ),
                ));
            }
        }
        Api::OpenDevice
            if s.state == ClientState::Active
                && s.devices.is_some_and(|n| s.opened.len() as u32 >= n) =>
        {
            let v = match code {
                Hresult::VD_E_OPEN => Some(OpenDevicePrecedence::AllOpenFirst),
                Hresult::VD_E_PROTOCOL => Some(OpenDevicePrecedence::ThisDeviceFirst),
                _ => None,
            };
            if let Some(v) = v {
                out.push(choice(
                    vdi_spec::tables::client_cell(TableMethod::OpenDevice, ClientState::Active)
                        .clause
                        .as_str(),
                    "open-device-precedence",
                    kebab(&v),
                    kebab(&p.open_device_precedence),
                    format!("OpenDevice of an opened device returned {}", r.ret.name),
                ));
            }
        }
        _ => {}
    }
}

/// What may reach device `dev` (none after an abort, none after its
/// VD_E_CLOSE, VDC_Complete only when requested and negotiated): `cmd`,
/// fetched by `r`.
fn command_rules(
    s: &Replay,
    r: &CallRecord,
    cmd: &vdi_model::calllog::CommandView,
    dev: u16,
    out: &mut Vec<ServerFinding>,
) {
    if s.state == ClientState::Abort && r.after >= s.since {
        out.push(plain(
                id::ABORT_NO_COMMANDS_AFTER.as_str(),
                format!(
                    "device {dev} fetched {} after the set aborted: no command reaches the client after an abort",
                    cmd.name
                ),
                r.seq,
            ));
    } else if s.closed.contains(&dev) {
        out.push(plain(
                id::GET_COMMAND_AFTER_DEVICE_CLOSED.as_str(),
                format!(
                    "device {dev} fetched {} after its GetCommand had returned VD_E_CLOSE: no profile value allows a command there (VD_E_CLOSE or VD_E_PROTOCOL)",
                    cmd.name
                ),
                r.seq,
            ));
    } else if cmd.command_code() == Some(CommandCode::Complete)
        && !s.requested.contains(Features::RequestComplete)
    {
        out.push(plain(
                id::COMPLETE_NEVER_UNREQUESTED.as_str(),
                format!(
                    "device {dev} fetched VDC_Complete although Create did not request VDF_RequestComplete: the server never sends VDC_Complete to a client that did not ask for it"
                ),
                r.seq,
            ));
    } else if cmd.command_code() == Some(CommandCode::Complete)
        && s.granted
            .is_some_and(|g| !g.contains(Features::CompleteEnabled))
    {
        out.push(plain(
                id::COMPLETE_NEGOTIATION.as_str(),
                format!(
                    "device {dev} fetched VDC_Complete although GetConfiguration granted no VDF_CompleteEnabled: the server sends VDC_Complete only when it was negotiated"
                ),
                r.seq,
            ));
    }
}

fn plain(clause: &str, what: String, at: u64) -> ServerFinding {
    ServerFinding {
        clause: clause.to_string(),
        what,
        at,
        profile: None,
        agrees: false,
    }
}
