//! A session's RPC messages (one or several requests, OUTPUT parameters)
//! and transaction-manager requests.

use super::*;

fn string_at(r: &rpc::Rpc, i: usize) -> Option<String> {
    match r.params.get(i).map(|p| &p.value) {
        Some(Value::Str(s)) => Some(s.clone()),
        _ => None,
    }
}

/// The OUTPUT parameters from `from` on, with their ordinals.
fn outputs(r: &rpc::Rpc, from: usize) -> Vec<(u16, rpc::Param)> {
    r.params
        .iter()
        .enumerate()
        .skip(from)
        .filter(|(_, p)| p.output)
        .map(|(k, p)| (u16::try_from(k).unwrap_or(u16::MAX), p.clone()))
        .collect()
}

/// Transaction-manager request types (MS-TDS 2.2.6.9).
mod tm {
    pub const GET_DTC_ADDRESS: u16 = 0;
    pub const PROPAGATE_XACT: u16 = 1;
    pub const BEGIN_XACT: u16 = 5;
    pub const PROMOTE_XACT: u16 = 6;
    pub const COMMIT_XACT: u16 = 7;
    pub const ROLLBACK_XACT: u16 = 8;
    pub const SAVE_XACT: u16 = 9;
}

/// The deepest transaction nesting a session may reach (SQL Server's
/// `@@TRANCOUNT` limit is 2^31; vdisim keeps it small).
pub(crate) const TRAN_DEPTH_MAX: u32 = 1024;

impl Session {
    /// An RPC message: each request's step, in order. A message that does
    /// not parse is one error answer (Msg 50002, saying why).
    pub(super) fn rpc_message(&mut self, payload: &[u8]) -> Vec<Step> {
        let rpcs = match rpc::parse_all(payload) {
            Ok(r) => r,
            Err(e) => return vec![self.rpc_refused(&e.to_string())],
        };
        rpcs.into_iter()
            .map(|r| match self.rpc(r) {
                Ok(step) => step,
                Err(why) => self.rpc_refused(&why),
            })
            .collect()
    }

    fn rpc_refused(&self, why: &str) -> Step {
        let mut o = Vec::new();
        let text = format!("vdisim serve cannot run this RPC request: {why}");
        self.error(&mut o, crate::tsql::MSG_NOT_SERVED, 1, 16, &text, 1);
        token::done(&mut o, id::DONEPROC, done::ERROR, 0xE0, 0);
        Step::Answer(o)
    }

    /// An RPC request: the statement it runs, or its answer; `Err` says why
    /// it cannot be run.
    fn rpc(&mut self, r: rpc::Rpc) -> Result<Step, String> {
        let statement = |i: usize| {
            string_at(&r, i).ok_or_else(|| format!("parameter {} is not the statement text", i + 1))
        };
        let values = |from: usize| r.params.get(from..).unwrap_or(&[]).to_vec();
        let handle_name = r.params.first().map(|p| p.name.clone()).unwrap_or_default();
        match r.proc() {
            Some(proc_id::SP_EXECUTESQL) => {
                let decls = string_at(&r, 1).unwrap_or_default();
                let end = End::Rpc {
                    handle: None,
                    outputs: outputs(&r, 2),
                };
                Ok(self.run(&statement(0)?, &decls, &values(2), end))
            }
            Some(p @ (proc_id::SP_PREPEXEC | proc_id::SP_PREPARE)) => {
                let decls = string_at(&r, 1).unwrap_or_default();
                let stmt = statement(2)?;
                let h = self.prepare(decls.clone(), stmt.clone())?;
                if p == proc_id::SP_PREPARE {
                    let mut o = Vec::new();
                    token::return_status(&mut o, 0);
                    token::return_value_int(&mut o, 0, &handle_name, h);
                    token::done(&mut o, id::DONEPROC, done::FINAL, 0xE0, 0);
                    return Ok(Step::Answer(o));
                }
                let end = End::Rpc {
                    handle: Some((handle_name, h)),
                    outputs: outputs(&r, 3),
                };
                Ok(self.run(&stmt, &decls, &values(3), end))
            }
            Some(proc_id::SP_EXECUTE) => {
                let h = self.handle(&r)?;
                let (decls, stmt) =
                    self.prepared.get(&h).cloned().ok_or_else(|| {
                        format!("Could not find prepared statement with handle {h}.")
                    })?;
                let end = End::Rpc {
                    handle: None,
                    outputs: outputs(&r, 1),
                };
                Ok(self.run(&stmt, &decls, &values(1), end))
            }
            Some(proc_id::SP_UNPREPARE) => {
                let h = self.handle(&r)?;
                self.prepared.remove(&h);
                let mut o = Vec::new();
                token::return_status(&mut o, 0);
                token::done(&mut o, id::DONEPROC, done::FINAL, 0xE0, 0);
                Ok(Step::Answer(o))
            }
            _ => {
                let name = if r.name.is_empty() {
                    format!("procedure id {}", r.id.unwrap_or(0))
                } else {
                    r.name.clone()
                };
                let mut o = Vec::new();
                let text = format!("Could not find stored procedure '{name}'.");
                self.error(&mut o, 2812, 62, 16, &text, 1);
                token::done(&mut o, id::DONEPROC, done::ERROR, 0xE0, 0);
                Ok(Step::Answer(o))
            }
        }
    }

    /// A parameterized statement's step: a served query (its parameters
    /// written in: a product's `… FROM msdb.dbo.backupset WHERE
    /// database_name = @P1`) answered with its result set inside the RPC;
    /// anything else run as a batch that DECLAREs the parameters.
    fn run(&self, stmt: &str, decls: &str, values: &[rpc::Param], end: End) -> Step {
        let inlined = rpc::inline_values(stmt, decls, values);
        let Some(answer) = self.query(&inlined, false) else {
            return Step::Statement(rpc::with_values(stmt, decls, values), end);
        };
        let mut o = Vec::new();
        let (status, rows) = match answer {
            Ok(rs) => {
                super::super::query::encode_rows(&mut o, &rs);
                (done::COUNT, rs.rows.len() as u64)
            }
            Err((number, text)) => {
                self.error(&mut o, number, 1, 16, &text, 1);
                (done::ERROR, 0)
            }
        };
        token::done(&mut o, id::DONEINPROC, status | done::MORE, 0xC1, rows);
        rpc_tail(&mut o, status & done::ERROR, &end);
        Step::Answer(o)
    }

    fn handle(&self, r: &rpc::Rpc) -> Result<i32, String> {
        match r.params.first().map(|p| &p.value) {
            Some(Value::Int(h)) => i32::try_from(*h).map_err(|_| format!("handle {h}")),
            _ => Err("parameter 1 is not a statement handle".into()),
        }
    }

    fn prepare(&mut self, decls: String, stmt: String) -> Result<i32, String> {
        if self.prepared.len() >= PREPARED_MAX {
            return Err(format!(
                "this session keeps {PREPARED_MAX} prepared statements; unprepare some"
            ));
        }
        let h = self.next_handle;
        self.next_handle = self.next_handle.checked_add(1).unwrap_or(1);
        self.prepared.insert(h, (decls, stmt));
        Ok(h)
    }

    /// A transaction-manager request (after ALL_HEADERS), answered as SQL
    /// Server answers it: BEGIN with ENVCHANGE 8 (the new transaction's
    /// descriptor), COMMIT with ENVCHANGE 9 and ROLLBACK with ENVCHANGE 10
    /// (the old descriptor; ENVCHANGE 8 again when the request begins the
    /// next one), then DONE. A nested BEGIN and an inner COMMIT only count
    /// (`@@TRANCOUNT`); COMMIT or ROLLBACK without a transaction is Msg
    /// 3902 or 3903; distributed transactions (DTC) are not served. vdisim
    /// has no data to isolate: a transaction changes nothing else (a BACKUP
    /// inside one runs as outside: SQL Server's Msg 3021 is not modelled).
    pub(super) fn transaction(&mut self, payload: &[u8], o: &mut Vec<u8>) {
        match self.tm_request(payload, o) {
            Ok(()) => token::done(o, id::DONE, done::FINAL, 0, 0),
            Err((number, text)) => {
                self.error(o, number, 1, 16, &text, 1);
                token::done(o, id::DONE, done::ERROR, 0, 0);
            }
        }
    }

    fn tm_request(&mut self, payload: &[u8], o: &mut Vec<u8>) -> Result<(), (u32, String)> {
        let not_served = |what: &str| {
            (
                crate::tsql::MSG_NOT_SERVED,
                format!("vdisim serve does not serve {what}"),
            )
        };
        let Some(t) = payload.get(..2) else {
            return Err(not_served("a transaction-manager request without a type"));
        };
        match u16::from_le_bytes([t[0], t[1]]) {
            tm::BEGIN_XACT => self.begin(o),
            ty @ (tm::COMMIT_XACT | tm::ROLLBACK_XACT) => {
                let commit = ty == tm::COMMIT_XACT;
                // Name (B_VARCHAR), then flags: 0x01 begins the next one.
                let name_len = usize::from(payload.get(2).copied().unwrap_or(0)) * 2;
                let flags = payload.get(3 + name_len).copied().unwrap_or(0);
                self.end_tran(commit, o)?;
                if flags & 0x01 != 0 {
                    self.begin(o)?;
                }
                Ok(())
            }
            tm::SAVE_XACT if self.tran.is_some() => Ok(()),
            tm::SAVE_XACT => Err((
                628,
                "Cannot issue SAVE TRANSACTION when there is no active transaction.".into(),
            )),
            tm::GET_DTC_ADDRESS | tm::PROPAGATE_XACT | tm::PROMOTE_XACT => {
                Err(not_served("distributed transactions (MS DTC)"))
            }
            other => Err(not_served(&format!(
                "transaction-manager request type {other}"
            ))),
        }
    }

    fn begin(&mut self, o: &mut Vec<u8>) -> Result<(), (u32, String)> {
        match &mut self.tran {
            Some((_, depth)) if *depth >= TRAN_DEPTH_MAX => {
                return Err((
                    crate::tsql::MSG_NOT_SERVED,
                    format!("vdisim serve nests transactions at most {TRAN_DEPTH_MAX} deep"),
                ));
            }
            Some((_, depth)) => *depth += 1,
            None => {
                self.trans_begun = self.trans_begun.wrapping_add(1);
                let descriptor = (u64::from(self.spid) << 32) | u64::from(self.trans_begun);
                token::env_change_bytes(o, env::BEGIN_TRAN, &descriptor.to_le_bytes(), &[]);
                self.tran = Some((descriptor, 1));
            }
        }
        Ok(())
    }

    fn end_tran(&mut self, commit: bool, o: &mut Vec<u8>) -> Result<(), (u32, String)> {
        match (&mut self.tran, commit) {
            (None, true) => Err((
                3902,
                "The COMMIT TRANSACTION request has no corresponding BEGIN TRANSACTION.".into(),
            )),
            (None, false) => Err((
                3903,
                "The ROLLBACK TRANSACTION request has no corresponding BEGIN TRANSACTION.".into(),
            )),
            (Some((_, depth)), true) if *depth > 1 => {
                *depth -= 1;
                Ok(())
            }
            (Some((descriptor, _)), _) => {
                let kind = if commit {
                    env::COMMIT_TRAN
                } else {
                    env::ROLLBACK_TRAN
                };
                token::env_change_bytes(o, kind, &[], &descriptor.to_le_bytes());
                self.tran = None;
                Ok(())
            }
        }
    }
}
