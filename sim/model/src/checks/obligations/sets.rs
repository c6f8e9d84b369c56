//! The sets of a call log, each with what its calls show and the
//! statement it ran, and the words findings describe them with.

use super::context::{Context, ProgramEnd, StatementEnd, end_words};
use crate::calllog::{Api, CallRecord, CommandView};
use crate::outcome::{FailReason, Outcome};
use std::collections::BTreeMap;
use vdi_spec::{Features, Hresult};

/// One device of a set and its calls.
#[derive(Default)]
pub(super) struct Dev<'a> {
    pub(super) opened: Option<&'a CallRecord>,
    pub(super) gets: Vec<&'a CallRecord>,
    pub(super) completes: Vec<&'a CallRecord>,
    /// The first GetCommand that returned VD_E_CLOSE.
    pub(super) ended: Option<&'a CallRecord>,
    /// The first call on the device that returned VD_E_ABORT.
    pub(super) aborted: Option<&'a CallRecord>,
}

/// One set (`pid`, `object`, `incarnation`) and what its calls show.
pub(super) struct SetView<'a> {
    pub(super) name: String,
    pub(super) create: &'a CallRecord,
    pub(super) calls: Vec<&'a CallRecord>,
    pub(super) stmt: Option<&'a StatementEnd>,
    pub(super) requested: Features,
    /// The features GetConfiguration returned.
    pub(super) granted: Option<Features>,
    pub(super) devices: BTreeMap<u16, Dev<'a>>,
    pub(super) closes: Vec<&'a CallRecord>,
    pub(super) destroy: Option<&'a CallRecord>,
    /// The first sign, before the set was closed, that it aborted: a call
    /// that returned VD_E_ABORT, or the program's own SignalAbort.
    pub(super) abort: Option<&'a CallRecord>,
}

impl<'a> SetView<'a> {
    fn new(create: &'a CallRecord) -> SetView<'a> {
        SetView {
            name: create.args.name.clone().unwrap_or_default(),
            create,
            calls: vec![create],
            stmt: None,
            requested: create
                .args
                .config
                .as_ref()
                .map_or(Features::LikePipe, |c| c.features()),
            granted: None,
            devices: BTreeMap::new(),
            closes: Vec::new(),
            destroy: None,
            abort: None,
        }
    }

    fn add(&mut self, r: &'a CallRecord) {
        self.calls.push(r);
        let code = r.code();
        let open = self.closes.is_empty() && self.destroy.is_none();
        if open
            && (code == Hresult::VD_E_ABORT
                || (r.method == Api::SignalAbort && code == Hresult::NOERROR))
        {
            self.abort.get_or_insert(r);
        }
        match r.method {
            Api::GetConfiguration => {
                if let Some(c) = r.config() {
                    self.granted.get_or_insert(c.features());
                }
            }
            Api::OpenDevice if code == Hresult::NOERROR => {
                if let Some(d) = r.device() {
                    self.devices.entry(d).or_default().opened.get_or_insert(r);
                }
            }
            Api::Close => self.closes.push(r),
            Api::Destroy => {
                self.destroy.get_or_insert(r);
            }
            Api::GetCommand | Api::CompleteCommand => {
                let Some(d) = r.args.device else { return };
                let dev = self.devices.entry(d).or_default();
                if r.method == Api::GetCommand {
                    dev.gets.push(r);
                    if code == Hresult::VD_E_CLOSE {
                        dev.ended.get_or_insert(r);
                    }
                } else {
                    dev.completes.push(r);
                }
                if code == Hresult::VD_E_ABORT {
                    dev.aborted.get_or_insert(r);
                }
            }
            _ => {}
        }
    }

    /// The call that released the set: its first Close, or the object's
    /// destruction.
    pub(super) fn release(&self) -> Option<&'a CallRecord> {
        match (self.closes.first(), self.destroy) {
            (Some(c), Some(d)) => Some(if c.seq < d.seq { c } else { d }),
            (c, d) => c.copied().or(d),
        }
    }

    /// The first call after `r` by which the program stopped using the
    /// set (SignalAbort, Close, the object's destruction), if any.
    pub(super) fn stop_after(&self, r: &CallRecord) -> Option<&'a CallRecord> {
        self.calls
            .iter()
            .copied()
            .filter(|c| c.seq > r.seq)
            .find(|c| matches!(c.method, Api::SignalAbort | Api::Close | Api::Destroy))
    }

    /// Whether the set had aborted before `stop` (or at all, when the
    /// program never stopped): stopping then is what `abort.only-close`
    /// asks, not a premature end.
    pub(super) fn aborted_before(&self, stop: Option<&CallRecord>) -> bool {
        self.abort
            .is_some_and(|a| stop.is_none_or(|st| a.seq < st.seq))
    }

    /// "set 'X'".
    pub(super) fn label(&self) -> String {
        format!("set '{}'", self.name)
    }

    /// "device 1 of set 'X'".
    pub(super) fn dev_label(&self, d: u16) -> String {
        format!("device {d} of set '{}'", self.name)
    }

    /// What the statement was, in SQL Server's words.
    pub(super) fn verb(&self) -> &'static str {
        statement_verb(self.stmt, self.granted)
    }

    pub(super) fn killed(cx: &Context) -> bool {
        cx.end == ProgramEnd::Killed
    }
}

/// The sets of `log`, in the order they were created (processes in the
/// order they first appear), each matched to its statement.
pub(super) fn sets_of<'a>(log: &'a [CallRecord], stmts: &'a [StatementEnd]) -> Vec<SetView<'a>> {
    let mut first: BTreeMap<u32, usize> = BTreeMap::new();
    for (i, r) in log.iter().enumerate() {
        first.entry(r.pid).or_insert(i);
    }
    let mut recs: Vec<&CallRecord> = log.iter().collect();
    recs.sort_by_key(|r| (first.get(&r.pid).copied().unwrap_or(0), r.seq));
    let mut sets: Vec<SetView<'a>> = Vec::new();
    let mut index: BTreeMap<(u32, u64, u32), usize> = BTreeMap::new();
    for r in recs {
        let key = (r.pid, r.object, r.incarnation);
        if matches!(r.method, Api::Create | Api::CreateEx)
            && r.code() == Hresult::NOERROR
            && !index.contains_key(&key)
        {
            index.insert(key, sets.len());
            sets.push(SetView::new(r));
        } else if let Some(&i) = index.get(&key) {
            sets[i].add(r);
        }
    }
    let mut taken = vec![false; sets.len()];
    for st in stmts {
        let k = (0..sets.len())
            .find(|&i| !taken[i] && st.set.as_ref().is_none_or(|n| *n == sets[i].name));
        if let Some(i) = k {
            taken[i] = true;
            sets[i].stmt = Some(st);
        }
    }
    sets
}

pub(super) fn statement_verb(
    stmt: Option<&StatementEnd>,
    granted: Option<Features>,
) -> &'static str {
    if let Some(k) = stmt.and_then(|s| s.kind) {
        return k.verb();
    }
    match granted {
        Some(f) if f.contains(Features::WriteMedia) => "BACKUP",
        Some(f) if f.contains(Features::ReadMedia) => "RESTORE",
        _ => "statement",
    }
}

/// Whether the statement was certainly still running at `at_ms` (see the
/// module docs).
pub(super) fn running_at(stmt: Option<&StatementEnd>, at_ms: Option<u64>) -> bool {
    let Some(s) = stmt else { return false };
    if !s.outcome.status.is_final() {
        return true;
    }
    match (s.ended_ms, at_ms) {
        (Some(end), Some(at)) => at < end,
        _ => matches!(
            s.outcome.reason,
            Some(FailReason::ClientAbort | FailReason::Watchdog)
        ),
    }
}

/// What the program did at `stop` (or at its end, when `None`).
pub(super) fn stop_words(stop: Option<&CallRecord>, cx: &Context) -> String {
    match stop {
        Some(c) if c.method == Api::Destroy => {
            format!("destroyed the set object at {} ms", c.start_ms)
        }
        Some(c) => format!("called {} at {} ms", c.method.name(), c.start_ms),
        None => end_words(cx),
    }
}

/// The outcome's error messages (or its last message), for a finding.
pub(super) fn messages(o: &Outcome) -> String {
    let errors: Vec<String> = o
        .messages
        .iter()
        .filter(|m| m.is_error())
        .map(|m| m.to_string())
        .collect();
    if !errors.is_empty() {
        return errors.join("; ");
    }
    match (o.messages.last(), o.reason) {
        (Some(m), _) => m.to_string(),
        (None, Some(r)) => format!("{r:?}"),
        (None, None) => "no messages".to_string(),
    }
}

pub(super) fn command_words(c: &CommandView) -> String {
    format!("{} id {}", c.name, c.id)
}
