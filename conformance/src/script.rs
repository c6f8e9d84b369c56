//! Runs a scenario's script against any [`Backend`], step by step, and
//! grades each step against its expectation (an explicit code, a set of
//! codes, a graded code with lenient alternatives, or the model's own
//! prediction for that step).

use crate::backend::{Backend, BackendError, CaseSetup, Ticket};
use crate::scenario::{Do, Expect, Scenario, Step, TimeoutSpec, parse_hresult, parse_win32};
use serde::Serialize;
use std::collections::BTreeMap;
use vdi_model::call::{Call, Reply, Value};
use vdi_model::client::DeviceHandle;
use vdi_model::content::Content;
use vdi_model::msg::Timeout;
use vdi_model::msg::{BufId, Cmd};
use vdi_model::statement::{BackupRecord, Statement, StatementKind};
use vdi_sim::world::RunResult;
use vdi_spec::{CommandCode, Features, Hresult, VdConfig, Win32};

/// How one step compared with its expectation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Grade {
    Pass,
    Lenient,
    Mismatch,
    Unimplemented,
}

/// One step's result.
#[derive(Clone, Debug, Serialize)]
pub struct StepOutcome {
    pub index: usize,
    pub thread: String,
    pub action: String,
    pub code: Option<Hresult>,
    pub expected: String,
    pub grade: Grade,
    pub clause: Option<String>,
    pub note: String,
}

/// A script run.
pub struct ScriptRun {
    pub steps: Vec<StepOutcome>,
    pub result: Option<RunResult>,
    pub error: Option<BackendError>,
}

#[derive(Default)]
struct State {
    handles: BTreeMap<u16, DeviceHandle>,
    saved_handles: BTreeMap<String, DeviceHandle>,
    last_cmd: BTreeMap<u16, Cmd>,
    saved_cmds: BTreeMap<String, Cmd>,
    media: Vec<Content>,
    buffer_handle: Option<u32>,
    tickets: BTreeMap<String, (Ticket, usize)>,
}

fn timeout_of(s: &Step) -> Timeout {
    match &s.timeout {
        None => Timeout::Ms(10_000),
        Some(TimeoutSpec::Ms(v)) if *v < 0 => Timeout::Infinite,
        Some(TimeoutSpec::Ms(v)) => Timeout::from_dword(*v as u32),
        Some(TimeoutSpec::Word(_)) => Timeout::Infinite,
    }
}

fn config_of(sc: &Scenario, s: &Step) -> VdConfig {
    let mut c = VdConfig::client(u32::from(sc.devices()), Features::LikePipe);
    if let Some(k) = &s.config {
        let set = |v: Option<u32>, f: &mut u32| {
            if let Some(v) = v {
                *f = v;
            }
        };
        set(k.device_count, &mut c.device_count);
        set(k.features, &mut c.features);
        set(k.prefix_zone_size, &mut c.prefix_zone_size);
        set(k.alignment, &mut c.alignment);
        set(
            k.soft_file_mark_block_size,
            &mut c.soft_file_mark_block_size,
        );
        set(k.eom_warning_size, &mut c.eom_warning_size);
        set(k.server_time_out, &mut c.server_time_out);
    }
    c
}

/// The statement a scenario's `[server]` describes at `seed`.
pub fn statement(sc: &Scenario, seed: u64) -> Statement {
    Statement {
        kind: sc.server.statement,
        database: sc.server.database.clone(),
        devices: sc.device_names(),
        options: sc.options(),
        plan: sc.plan(seed),
    }
}

/// The backups a case seeds (restores without a backup in the case).
pub fn seeded_backups(sc: &Scenario) -> Vec<BackupRecord> {
    if !sc.seeds_backup() {
        return Vec::new();
    }
    vec![BackupRecord::plan(
        &sc.server.database,
        StatementKind::BackupDatabase,
        1,
        usize::from(sc.devices()),
        sc.server.data_bytes,
        &sc.options(),
    )]
}

fn name_of(sc: &Scenario, s: &Step) -> String {
    let set = sc.set_name();
    let mut n = s
        .name
        .clone()
        .unwrap_or_else(|| "{set}".into())
        .replace("{set}", &set);
    for (i, d) in sc.device_names().iter().enumerate() {
        n = n.replace(&format!("{{dev{i}}}"), d);
    }
    n
}

/// The media the script's client stores to and reads from: the backend's
/// client process when it models one, else the script's own.
fn media<'a>(b: &'a mut dyn Backend, st: &'a mut State) -> &'a mut Vec<Content> {
    match b.client_process() {
        Some(p) => &mut p.media,
        None => &mut st.media,
    }
}

/// The reference client's completion of `c` (what `drain` does): Writes
/// append to the device's media; Reads are served from the media at the
/// command's position (the stream offset the server asks for), so a
/// rejected or out-of-order completion cannot shift later data.
fn reference_completion(
    c: &Cmd,
    media: &mut Vec<Content>,
    bytes: Option<u64>,
) -> (Win32, u64, Content) {
    let d = c.dev as usize;
    if media.len() <= d {
        media.resize(d + 1, Content::Empty);
    }
    match c.code {
        CommandCode::Write => {
            // Stores what it says it wrote (never more than the buffer holds).
            let reported = bytes.unwrap_or(u64::from(c.size));
            media[d].append(&c.data.slice(0, reported.min(u64::from(c.size))));
            (Win32::ERROR_SUCCESS, reported, Content::Empty)
        }
        CommandCode::Read => {
            // The data is what the media holds (up to the size asked, or up
            // to an explicit short count); `bytes` is what the client reports.
            let want = bytes.unwrap_or(u64::from(c.size)).min(u64::from(c.size));
            let data = media[d].slice(c.position, want);
            let reported = bytes.unwrap_or(data.len());
            let code = if data.len() < u64::from(c.size) && bytes.is_none() {
                Win32::ERROR_HANDLE_EOF
            } else {
                Win32::ERROR_SUCCESS
            };
            (code, reported, data)
        }
        CommandCode::Flush | CommandCode::ClearError | CommandCode::Complete => {
            (Win32::ERROR_SUCCESS, 0, Content::Empty)
        }
        _ => (Win32::ERROR_NOT_SUPPORTED, 0, Content::Empty),
    }
}

fn grade(e: &Expect, actual: Option<Hresult>, predicted: Option<Hresult>) -> (Grade, String) {
    let Some(a) = actual else {
        return (Grade::Unimplemented, "a result".into());
    };
    let names = |v: &[String]| v.join(" or ");
    match e {
        Expect::One(s) if s == "any" => (Grade::Pass, "any".into()),
        Expect::One(s) if s == "model" => match predicted {
            Some(p) if p == a => (Grade::Pass, format!("{p} (model)")),
            Some(p) => (Grade::Mismatch, format!("{p} (model)")),
            None => (Grade::Pass, "model (no prediction)".into()),
        },
        Expect::One(s) => {
            let want = parse_hresult(s);
            (
                if want == Some(a) {
                    Grade::Pass
                } else {
                    Grade::Mismatch
                },
                want.map_or(s.clone(), |w| w.to_string()),
            )
        }
        Expect::AnyOf(v) => {
            let ok = v.iter().any(|s| parse_hresult(s) == Some(a));
            (if ok { Grade::Pass } else { Grade::Mismatch }, names(v))
        }
        Expect::Graded { code, lenient } => {
            if parse_hresult(code) == Some(a) {
                (Grade::Pass, code.clone())
            } else if lenient.iter().any(|s| parse_hresult(s) == Some(a)) {
                (
                    Grade::Lenient,
                    format!("{code} (lenient: {})", names(lenient)),
                )
            } else {
                (
                    Grade::Mismatch,
                    format!("{code} (lenient: {})", names(lenient)),
                )
            }
        }
    }
}

/// Runs `sc` at `setup.seed` against `b`. `predicted` holds the model's
/// code for each step (for `expect = "model"`).
pub fn run(
    b: &mut dyn Backend,
    sc: &Scenario,
    setup: &CaseSetup,
    predicted: &[Option<Hresult>],
) -> ScriptRun {
    let mut out = ScriptRun {
        steps: Vec::new(),
        result: None,
        error: None,
    };
    if let Err(e) = b.reset(setup) {
        out.error = Some(e);
        return out;
    }
    let mut st = State::default();
    if let Some(rec) = setup.seed_backups.last() {
        st.media = rec.media();
    }
    for (i, step) in sc.steps.iter().enumerate() {
        let thread = step.thread.clone().unwrap_or_else(|| "ctl".into());
        let action = step.action.unwrap_or(Do::Close);
        let r = run_step(b, sc, setup, step, &thread, &mut st, i);
        let (code, note, unimpl) = match r {
            Ok(Some((code, note))) => (Some(code), note, false),
            Ok(None) => continue,
            Err(BackendError::Unsupported(m)) => (None, m, true),
            Err(e) => {
                let m = e.to_string();
                out.error = Some(e);
                (None, m, false)
            }
        };
        let (mut g, expected) = grade(&step.expect, code, predicted.get(i).copied().flatten());
        if unimpl {
            g = Grade::Unimplemented;
        } else if code.is_none() {
            g = Grade::Mismatch;
        }
        out.steps.push(StepOutcome {
            index: i + 1,
            thread,
            action: format!("{action:?}"),
            code,
            expected,
            grade: g,
            clause: step.clause.clone(),
            note,
        });
        if out.error.is_some() || unimpl {
            break;
        }
    }
    match b.finish() {
        Ok(r) => out.result = Some(r),
        Err(e) => {
            if out.error.is_none() {
                out.error = Some(e);
            }
        }
    }
    out
}

fn handle(st: &State, s: &Step) -> Result<DeviceHandle, BackendError> {
    if let Some(n) = &s.handle {
        return st
            .saved_handles
            .get(n)
            .copied()
            .ok_or_else(|| BackendError::Failed(format!("no saved handle '{n}'")));
    }
    let d = s.device.unwrap_or(0);
    st.handles
        .get(&d)
        .copied()
        .ok_or_else(|| BackendError::Failed(format!("device {d} was never opened in this script")))
}

fn run_step(
    b: &mut dyn Backend,
    sc: &Scenario,
    setup: &CaseSetup,
    s: &Step,
    thread: &str,
    st: &mut State,
    index: usize,
) -> Result<Option<(Hresult, String)>, BackendError> {
    let action = s.action.unwrap_or(Do::Close);
    if let Some(done) = control_step(b, sc, setup, s, thread, st, index)? {
        return Ok(done);
    }
    let call = call_of(b, sc, s, st, index, action)?;
    if let Some(label) = &s.async_label {
        let t = b.start(thread, call)?;
        st.tickets.insert(label.clone(), (t, index));
        return Ok(None);
    }
    let r = b.call(thread, call)?;
    Ok(Some(absorb(r, s, st)))
}

/// A step that is not one API call (open-all, drain, statements, sleep,
/// events, await): `Some(result)` when `s` is one and has run.
#[allow(clippy::type_complexity)]
fn control_step(
    b: &mut dyn Backend,
    sc: &Scenario,
    setup: &CaseSetup,
    s: &Step,
    thread: &str,
    st: &mut State,
    index: usize,
) -> Result<Option<Option<(Hresult, String)>>, BackendError> {
    Ok(Some(match s.action.unwrap_or(Do::Close) {
        Do::OpenAll => {
            let mut last = Hresult::NOERROR;
            for (k, n) in sc.device_names().iter().enumerate() {
                let r = b.call(thread, Call::OpenDevice { name: n.clone() })?;
                if let Value::Device(h) = r.value {
                    st.handles.insert(k as u16, h);
                }
                last = r.code;
                if r.code != Hresult::NOERROR {
                    break;
                }
            }
            Some((last, String::new()))
        }
        Do::Drain => {
            if let Some(label) = &s.async_label {
                let h = handle(st, s)?;
                let t = b.start_drain(thread, h, timeout_of(s))?;
                st.tickets.insert(label.clone(), (t, index));
                None
            } else {
                Some(drain(b, s, thread, st)?)
            }
        }
        Do::StartStatement => {
            if sc.server.statement.is_backup() {
                *media(b, st) = vec![Content::Empty; usize::from(sc.devices())];
            } else if b.client_process().is_none() {
                // The script keeps the media: planned truncations act on it
                // when the restore starts (a modelled client process has
                // them applied by its backend).
                truncate_media(&mut st.media, &setup.faults);
            }
            b.start_statement(&statement(sc, setup.seed))?;
            Some((Hresult::NOERROR, String::new()))
        }
        Do::WaitStatement => {
            let t = s.ms.map_or(Timeout::Infinite, Timeout::Ms);
            let o = b.wait_statement(t)?;
            let note = o.map_or("no outcome yet".to_string(), |o| format!("{:?}", o.status));
            Some((Hresult::NOERROR, note))
        }
        Do::Sleep => {
            b.sleep(s.ms.unwrap_or(0))?;
            None
        }
        Do::Event => {
            let f = s.fault.clone().ok_or_else(|| {
                BackendError::Failed(format!("step {}: event without fault", index + 1))
            })?;
            b.event(f)?;
            None
        }
        Do::Await => {
            let label = s.label.clone().unwrap_or_default();
            let (t, _) = st
                .tickets
                .remove(&label)
                .ok_or_else(|| BackendError::Failed(format!("no async step labelled '{label}'")))?;
            let r = b.join(t)?;
            Some(absorb(r, s, st))
        }
        _ => return Ok(None),
    }))
}

/// The API call step `s` makes.
fn call_of(
    b: &mut dyn Backend,
    sc: &Scenario,
    s: &Step,
    st: &mut State,
    index: usize,
    action: Do,
) -> Result<Call, BackendError> {
    Ok(match action {
        Do::Create => Call::Create {
            name: name_of(sc, s),
            cfg: config_of(sc, s),
        },
        Do::CreateEx => Call::CreateEx {
            instance: s.instance.clone(),
            name: name_of(sc, s),
            cfg: config_of(sc, s),
        },
        Do::GetConfiguration => Call::GetConfiguration {
            timeout: timeout_of(s),
        },
        Do::OpenDevice => Call::OpenDevice {
            name: name_of(sc, s),
        },
        Do::Close => Call::Close,
        Do::SignalAbort => Call::SignalAbort,
        Do::OpenInSecondary => Call::OpenInSecondary {
            secondary: s.secondary.unwrap_or(1),
            name: name_of(sc, s),
        },
        Do::GetBufferHandle => {
            let buf = match s.buffer.as_deref() {
                Some("bogus") => Some(BufId(0xBAD0)),
                _ => st
                    .last_cmd
                    .get(&s.device.unwrap_or(0))
                    .and_then(|c| c.buffer),
            };
            Call::GetBufferHandle { buf }
        }
        Do::MapBufferHandle => {
            let h = match s.map.as_deref() {
                Some("saved") | None => st.buffer_handle.unwrap_or(0),
                Some(v) => v.parse().unwrap_or(0),
            };
            Call::MapBufferHandle { handle: h }
        }
        Do::GetCommand => Call::GetCommand {
            dev: handle(st, s)?,
            timeout: timeout_of(s),
        },
        Do::CompleteCommand => completion_of(b, s, st, index)?,
        other => {
            return Err(BackendError::Failed(format!(
                "step {}: {other:?} is not an API call",
                index + 1
            )));
        }
    })
}

/// The CompleteCommand step `s` makes: the command it names, completed
/// as the reference client would unless the step says otherwise.
fn completion_of(
    b: &mut dyn Backend,
    s: &Step,
    st: &mut State,
    index: usize,
) -> Result<Call, BackendError> {
    let h = handle(st, s)?;
    let d = s.device.unwrap_or(h.index);
    let mut cmd = match s.cmd.as_deref() {
        Some(n) if n.starts_with("saved:") => st.saved_cmds.get(&n[6..]).cloned(),
        Some("foreign") => st
            .last_cmd
            .iter()
            .find(|(k, _)| **k != d)
            .map(|(_, c)| c.clone()),
        _ => st.last_cmd.get(&d).cloned(),
    }
    .ok_or_else(|| {
        BackendError::Failed(format!(
            "step {}: no command to complete on device {d}",
            index + 1
        ))
    })?;
    let (rc, bytes, data) = reference_completion(&cmd, media(b, st), s.bytes);
    let code = s.code.as_deref().and_then(parse_win32).unwrap_or(rc);
    if s.tamper == Some(true) {
        cmd.size = cmd.size.wrapping_add(1);
    }
    Ok(Call::CompleteCommand {
        dev: h,
        position: cmd.position,
        cmd,
        code,
        bytes,
        data,
    })
}

/// Applies the plan's media truncations (those a restore's start fires,
/// as the model's trigger matcher says) to `media`.
fn truncate_media(media: &mut [Content], plan: &vdi_model::fault::FaultPlan) {
    use vdi_model::fault::{Fault, FaultSchedule};
    let mut schedule = FaultSchedule::new(plan);
    for i in schedule.restore_starts() {
        if let Fault::TruncateMedia { dev, bytes } = schedule.fire(i)
            && let Some(m) = media.get_mut(usize::from(dev))
        {
            *m = m.slice(0, bytes);
        }
    }
}

fn absorb(r: Reply, s: &Step, st: &mut State) -> (Hresult, String) {
    let note = match &r.value {
        Value::Device(h) => {
            st.handles.insert(s.device.unwrap_or(h.index), *h);
            if let Some(n) = &s.save_handle {
                st.saved_handles.insert(n.clone(), *h);
            }
            format!("device {}", h.index)
        }
        Value::Command(c) => {
            st.last_cmd.insert(c.dev, c.clone());
            if let Some(n) = &s.save_cmd {
                st.saved_cmds.insert(n.clone(), c.clone());
            }
            format!("{} size={}", c.code.name(), c.size)
        }
        Value::Handle(h) => {
            st.buffer_handle = Some(*h);
            format!("handle {h}")
        }
        Value::Config(c) => format!("features={}", Features(c.features)),
        _ => String::new(),
    };
    if let Some(n) = &s.save_handle
        && !st.saved_handles.contains_key(n)
        && let Ok(h) = handle(st, s)
    {
        st.saved_handles.insert(n.clone(), h);
    }
    (r.code, note)
}

fn drain(
    b: &mut dyn Backend,
    s: &Step,
    thread: &str,
    st: &mut State,
) -> Result<(Hresult, String), BackendError> {
    let h = handle(st, s)?;
    let limit = s.count.unwrap_or(u64::MAX);
    let timeout = timeout_of(s);
    let mut n = 0u64;
    let mut timeouts = 0u64;
    loop {
        if n >= limit {
            return Ok((Hresult::NOERROR, format!("{n} commands")));
        }
        let r = b.call(thread, Call::GetCommand { dev: h, timeout })?;
        match r.value {
            Value::Command(c) => {
                n += 1;
                st.last_cmd.insert(c.dev, c.clone());
                let (code, bytes, data) = reference_completion(&c, media(b, st), None);
                let cr = b.call(
                    thread,
                    Call::CompleteCommand {
                        dev: h,
                        position: c.position,
                        cmd: c,
                        code,
                        bytes,
                        data,
                    },
                )?;
                if cr.code != Hresult::NOERROR {
                    return Ok((cr.code, format!("CompleteCommand after {n} commands")));
                }
            }
            _ if r.code == Hresult::VD_E_TIMEOUT => {
                timeouts += 1;
                if timeouts > 10_000 {
                    return Ok((
                        r.code,
                        format!("{n} commands, gave up after {timeouts} timeouts"),
                    ));
                }
            }
            _ => return Ok((r.code, format!("{n} commands, {timeouts} timeouts"))),
        }
    }
}
