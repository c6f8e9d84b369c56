//! Fault plans per statement: which statements of a server a plan applies
//! to, a stall's length, and the plan in force (changed over the control
//! connection).
//!
//! The syntax of `vdisim serve --faults SPEC` and `--set-faults SPEC`:
//!
//! ```text
//! SPEC     := none | PLAN [":" PARAM] ["@" SELECTOR]
//! PARAM    := ms=N                  (server-stall only; 1..=2592000000)
//! SELECTOR := ITEM ("," ITEM)*
//! ITEM     := backup | restore | backup-database | backup-log
//!           | restore-database | restore-log | restore-headeronly
//!           | restore-filelistonly | restore-verifyonly
//!           | #N                    (the N-th statement this server runs, from 1)
//! ```
//!
//! Without a selector the plan applies to every statement; with one, to
//! the statements of the kinds it names and to the ordinals it names (an
//! ordinal counts every BACKUP and RESTORE the server has run, failed ones
//! included: `--status` shows the count so far); the others run clean.
//! `backup` is BACKUP DATABASE and BACKUP LOG, `restore` every RESTORE.
//! Examples: `read-fault@restore`, `server-abort@#3`,
//! `server-stall:ms=5000@backup,#7`.
//!
//! **Stall length.** `server-stall:ms=N` stalls N virtual ms. Without
//! `ms=`, the stall is sized at each statement's start from the set's own
//! serverTimeOut, the one timeout the server knows and the documented
//! trigger of its watchdog (vdi-spec.md §4.5: 2 × serverTimeOut with
//! nothing completing): 3 × serverTimeOut + 1 ms, longer than the watchdog
//! interval (so a client whose own patience is the server's timeout gives
//! up), the same formula as the named plan's "longer than any timeout";
//! with serverTimeOut 0 (no watchdog) 180,001 ms, that formula for the
//! default 60 s. Virtual ms pass `--time-scale` times faster than real ones.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use vdi_model::fault::{Fault, FaultPlan, Trigger};
use vdi_model::statement::{Statement, StatementKind};

/// A stall of this many virtual ms when the set's serverTimeOut is 0 (the
/// named plan's length for a 60 s timeout).
pub const STALL_WITHOUT_TIMEOUT_MS: u64 = 180_001;

/// The statement kinds a selector item names, by its word.
const KIND_WORDS: &[(&str, &[StatementKind])] = &[
    (
        "backup",
        &[StatementKind::BackupDatabase, StatementKind::BackupLog],
    ),
    (
        "restore",
        &[
            StatementKind::RestoreDatabase,
            StatementKind::RestoreLog,
            StatementKind::RestoreHeaderOnly,
            StatementKind::RestoreFilelistOnly,
            StatementKind::RestoreVerifyOnly,
        ],
    ),
    ("backup-database", &[StatementKind::BackupDatabase]),
    ("backup-log", &[StatementKind::BackupLog]),
    ("restore-database", &[StatementKind::RestoreDatabase]),
    ("restore-log", &[StatementKind::RestoreLog]),
    ("restore-headeronly", &[StatementKind::RestoreHeaderOnly]),
    (
        "restore-filelistonly",
        &[StatementKind::RestoreFilelistOnly],
    ),
    ("restore-verifyonly", &[StatementKind::RestoreVerifyOnly]),
];

/// Which statements a plan applies to: every one (empty), or those of the
/// named kinds and ordinals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    /// The items as written, for messages.
    pub items: Vec<String>,
    pub kinds: Vec<StatementKind>,
    /// 1-based statement numbers of the server.
    pub ordinals: BTreeSet<u64>,
}

impl Selector {
    /// Whether the `ordinal`-th statement, of `kind`, is selected.
    pub fn selects(&self, kind: StatementKind, ordinal: u64) -> bool {
        self.items.is_empty() || self.kinds.contains(&kind) || self.ordinals.contains(&ordinal)
    }
}

/// A parsed SPEC before its plan is resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecParts {
    /// `none`, `random`, or a named plan.
    pub plan: String,
    /// `ms=N` of a server stall.
    pub stall_ms: Option<u64>,
    pub select: Selector,
}

/// A SPEC that does not parse: what is wrong, where, and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecError {
    pub spec: String,
    /// 1-based character position of the problem.
    pub at: usize,
    pub what: String,
    pub fix: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fault spec {:?}, at character {}: {}; {}",
            self.spec, self.at, self.what, self.fix
        )
    }
}

impl std::error::Error for SpecError {}

const SYNTAX: &str = "write PLAN[:ms=N][@SELECTOR], e.g. read-fault@restore, server-abort@#3, server-stall:ms=5000@backup";

fn kinds_list() -> String {
    let words: Vec<&str> = KIND_WORDS.iter().map(|(w, _)| *w).collect();
    format!(
        "name {} or #N (the N-th statement the server runs, from 1)",
        words.join(", ")
    )
}

/// Parses a SPEC (see the module docs). The plan name is not checked here
/// (the caller resolves it); everything else is.
pub fn parse_spec(spec: &str) -> Result<SpecParts, SpecError> {
    let err = |at: usize, what: String, fix: String| SpecError {
        spec: spec.to_string(),
        at,
        what,
        fix,
    };
    let text = spec.trim();
    let lead = spec.len() - spec.trim_start().len();
    let pos = |byte: usize| spec[..lead + byte].chars().count() + 1;
    if text.is_empty() {
        return Err(err(1, "empty".into(), SYNTAX.into()));
    }
    let (head, select_text) = match text.split_once('@') {
        Some((h, s)) => (h, Some((h.len() + 1, s))),
        None => (text, None),
    };
    let (plan, param) = match head.split_once(':') {
        Some((p, q)) => (p.trim(), Some((p.len() + 1, q))),
        None => (head.trim(), None),
    };
    if plan.is_empty() {
        return Err(err(1, "no plan name".into(), SYNTAX.into()));
    }
    if plan.contains(char::is_whitespace) || plan.contains(',') {
        return Err(err(
            1,
            format!("{plan:?} is not one plan name"),
            "give one plan; `--faults help` lists them".into(),
        ));
    }
    let stall_ms = match param {
        None => None,
        Some((at, q)) => Some(parse_param(plan, q).map_err(|(what, fix)| err(pos(at), what, fix))?),
    };
    let mut select = Selector::default();
    if let Some((at, s)) = select_text {
        if plan == "none" {
            return Err(err(
                pos(at - 1),
                "`none` applies no fault, so it takes no selector".into(),
                "write `none` alone".into(),
            ));
        }
        let mut off = at;
        for raw in s.split(',') {
            let item = raw.trim();
            let here = pos(off + (raw.len() - raw.trim_start().len()));
            off += raw.len() + 1;
            add_item(&mut select, item).map_err(|(what, fix)| err(here, what, fix))?;
        }
    }
    Ok(SpecParts {
        plan: plan.to_string(),
        stall_ms,
        select,
    })
}

/// `ms=N` after `server-stall:`.
fn parse_param(plan: &str, q: &str) -> Result<u64, (String, String)> {
    if plan != "server-stall" {
        return Err((
            format!("plan {plan} takes no parameters"),
            "only server-stall takes one (server-stall:ms=N); drop the ':' part".into(),
        ));
    }
    let Some(v) = q.trim().strip_prefix("ms=") else {
        return Err((
            format!("unknown parameter {:?}", q.trim()),
            "server-stall takes ms=N (virtual milliseconds), e.g. server-stall:ms=5000".into(),
        ));
    };
    let max = vdi_spec::bounds::VIRTUAL_MS_MAX;
    match v.trim().parse::<u64>() {
        Ok(ms) if (1..=max).contains(&ms) => Ok(ms),
        Ok(ms) => Err((
            format!("a stall of {ms} ms"),
            format!("give 1 to {max} ms (30 days)"),
        )),
        Err(_) => Err((
            format!("{v:?} is not a number of milliseconds"),
            "write ms=N with N a whole number, e.g. ms=5000".into(),
        )),
    }
}

/// One selector item.
fn add_item(select: &mut Selector, item: &str) -> Result<(), (String, String)> {
    if item.is_empty() {
        return Err((
            "an empty selector item".into(),
            format!("{}; separate items with single commas", kinds_list()),
        ));
    }
    if let Some(n) = item.strip_prefix('#') {
        match n.parse::<u64>() {
            Ok(0) => {
                return Err((
                    "statement #0".into(),
                    "statements are numbered from 1 (#1 is the server's first)".into(),
                ));
            }
            Ok(n) => {
                select.ordinals.insert(n);
            }
            Err(_) => {
                return Err((
                    format!("{item:?} is not a statement number"),
                    "write #N with N a whole number from 1, e.g. #3".into(),
                ));
            }
        }
    } else {
        let lower = item.to_ascii_lowercase();
        let Some((_, kinds)) = KIND_WORDS.iter().find(|(w, _)| *w == lower) else {
            return Err((format!("unknown statement kind {item:?}"), kinds_list()));
        };
        for k in kinds.iter() {
            if !select.kinds.contains(k) {
                select.kinds.push(*k);
            }
        }
    }
    select.items.push(item.to_ascii_lowercase());
    Ok(())
}

/// The scope of a server's fault plan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultScope {
    /// The SPEC as given (empty: a plan given as such, every statement).
    pub spec: String,
    /// The statements it applies to (no items: every one).
    pub select: Selector,
    /// Server stalls are sized from each statement's set (no `ms=` given
    /// to `server-stall`).
    pub stall_from_set: bool,
}

impl FaultScope {
    /// The scope of a SPEC's parts: its selector, and a stall sized from
    /// the set when `server-stall` has no `ms=`.
    pub fn of(spec: &str, parts: &SpecParts) -> FaultScope {
        FaultScope {
            spec: spec.trim().to_string(),
            select: parts.select.clone(),
            stall_from_set: parts.plan == "server-stall" && parts.stall_ms.is_none(),
        }
    }
}

/// A plan resolved from SPEC's parts: `ms=N` applied to its stalls.
pub fn apply_params(mut plan: FaultPlan, parts: &SpecParts) -> FaultPlan {
    if let Some(ms) = parts.stall_ms {
        for pf in &mut plan.faults {
            if let Fault::ServerStall { ms: m } = &mut pf.fault {
                *m = ms;
            }
        }
    }
    plan
}

/// The stall a statement's set gets when `server-stall` has no `ms=`:
/// 3 × serverTimeOut + 1 ms, or [`STALL_WITHOUT_TIMEOUT_MS`] when the
/// set has none (see the module docs).
pub fn stall_for(server_timeout_ms: u32) -> u64 {
    if server_timeout_ms == 0 {
        STALL_WITHOUT_TIMEOUT_MS
    } else {
        u64::from(server_timeout_ms) * 3 + 1
    }
}

/// Resolves SPEC: parses it, resolves its plan name with `resolve`
/// (`none`, `random`, a named plan), applies its parameters.
pub fn resolve_spec(
    spec: &str,
    resolve: impl FnOnce(&str) -> Result<FaultPlan, String>,
) -> Result<(FaultPlan, FaultScope), String> {
    let parts = parse_spec(spec).map_err(|e| e.to_string())?;
    let plan = resolve(&parts.plan).map_err(|e| format!("fault spec {spec:?}: {e}"))?;
    let scope = FaultScope::of(spec, &parts);
    Ok((apply_params(plan, &parts), scope))
}

/// One line saying what a plan and scope do, for `--set-faults` and logs.
pub fn describe(
    plan: &FaultPlan,
    scope: &FaultScope,
    server_side: &dyn Fn(&Fault) -> bool,
) -> String {
    if plan.faults.is_empty() {
        return "no faults: every statement runs clean".into();
    }
    let applied: Vec<String> = plan
        .faults
        .iter()
        .filter(|pf| server_side(&pf.fault))
        .map(|pf| match &pf.fault {
            Fault::ServerStall { .. } if scope.stall_from_set => {
                "server-stall (3 x the set's serverTimeOut + 1 ms)".to_string()
            }
            Fault::ServerStall { ms } => format!("server-stall ({ms} ms)"),
            f => f.kind().to_string(),
        })
        .collect();
    let to = if scope.select.items.is_empty() {
        "every statement".to_string()
    } else {
        let mut v: Vec<String> = scope
            .select
            .items
            .iter()
            .filter(|i| !i.starts_with('#'))
            .cloned()
            .collect();
        if !scope.select.ordinals.is_empty() {
            let nums: Vec<String> = scope
                .select
                .ordinals
                .iter()
                .map(|n| format!("#{n}"))
                .collect();
            v.push(format!("statement {}", nums.join(", ")));
        }
        format!("{} (others run clean)", v.join(", "))
    };
    let name = if scope.spec.is_empty() {
        plan.name.clone()
    } else {
        scope.spec.clone()
    };
    if applied.is_empty() {
        return format!("{name}: none of its faults is the server's to apply");
    }
    format!("{name}: {} on {to}", applied.join(", "))
}

// ----- the plan in force on a server ------------------------------------------------------

impl super::Inner {
    /// Whether a statement's host fires `f`: a server-side fault, or a
    /// client-side one when a hook applies those
    /// ([`super::ServeConfig::client_faults`]).
    pub(super) fn applies(&self, f: &Fault) -> bool {
        f.is_server_side() || self.cfg.client_faults.is_some()
    }

    /// The plan in force and its scope.
    pub(super) fn in_force(&self) -> Arc<(FaultPlan, FaultScope)> {
        super::lock(&self.faults).clone()
    }

    /// Replaces the plan in force for the statements that start from now
    /// on; returns what is now in force, described.
    pub(super) fn set_faults(&self, plan: FaultPlan, scope: FaultScope) -> String {
        let d = self.describe_faults(&plan, &scope);
        *super::lock(&self.faults) = Arc::new((plan, scope));
        d
    }

    /// [`describe`] with this server's notion of which faults it applies.
    pub(super) fn describe_faults(&self, plan: &FaultPlan, scope: &FaultScope) -> String {
        describe(plan, scope, &|f| self.applies(f))
    }

    /// The faults the host of the `ordinal`-th statement (1-based) fires:
    /// the plan's faults the server applies when the scope selects the
    /// statement (else none), with a stall sized from the statement's set
    /// when the scope says so.
    pub(super) fn statement_faults(&self, stmt: &Statement, ordinal: u64) -> FaultPlan {
        let in_force = self.in_force();
        let (plan, scope) = &*in_force;
        if !scope.select.selects(stmt.kind, ordinal) {
            return FaultPlan::none();
        }
        let timeout = stmt.devices.first().and_then(|name| {
            super::lock(&self.sets)
                .get(name)
                .map(|e| e.cfg.server_time_out)
        });
        let stall = stall_for(timeout.unwrap_or(60_000));
        FaultPlan {
            name: plan.name.clone(),
            faults: plan
                .faults
                .iter()
                .filter(|pf| self.applies(&pf.fault))
                .cloned()
                .map(|mut pf| {
                    if let Fault::ServerStall { ms } = &mut pf.fault
                        && scope.stall_from_set
                    {
                        *ms = stall;
                    }
                    pf
                })
                .collect(),
        }
    }

    /// Whether set connections must report the commands their client
    /// fetches: a fault the server fires is triggered by a fetch. Decided
    /// when a set connects, under the plan in force then.
    pub(super) fn wants_fetches(&self) -> bool {
        self.in_force()
            .0
            .faults
            .iter()
            .any(|pf| self.applies(&pf.fault) && matches!(pf.trigger, Trigger::OnCommand { .. }))
    }
}

#[cfg(test)]
mod tests;
