//! The server's T-SQL sessions by session id (`@@SPID`), for `KILL`.
//!
//! Every TDS connection and every control connection gets a session id
//! (51 and up, as SQL Server's user sessions; the TDS packets carry it,
//! `SELECT @@SPID` answers it) and is registered here while it lives, with
//! its attention switch and a way to close its connection.
//!
//! `KILL <spid>` (from any session) ends that session as SQL Server does:
//!
//! - its running BACKUP or RESTORE is aborted by the server — the set is
//!   aborted, the client sees VD_E_ABORT, outstanding commands complete
//!   with ERROR_OPERATION_ABORTED (clause `abort.server-signal`) — and the
//!   statement fails with Msg 3204 and 3013 (clause
//!   `abort.statement-fails`); no later statement of its batch runs; never
//!   a success, and no backup is recorded;
//! - the killed batch's answer ends with Msg 596 (class 21, state 1,
//!   "Cannot continue the execution because the session is in the kill
//!   state."), what SQL Server sends a killed session, and the connection
//!   is then closed (a class-20-or-above error ends the connection in
//!   SQL Server); an idle session's connection is closed at once;
//! - KILL of the session itself is Msg 6104 ("Cannot use KILL to kill
//!   your own process.", class 16, state 1); of an id below 51 (SQL
//!   Server's system sessions) Msg 6107 ("Only user processes can be
//!   killed.", class 14, state 1); of an id no session has, Msg 6106
//!   ("Process ID n is not an active process ID.", class 16, state 2).
//!   A KILL that succeeds sends no message.
//!
//! At most one entry per live connection: the registry is bounded by the
//! server's `max_connections`.

use super::catalog::Attention;
use super::lock;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use vdi_model::outcome::SqlMessage;

/// The first user session id, as SQL Server numbers them.
pub(crate) const FIRST_USER_SPID: u32 = 51;

/// Closes an idle session's connection.
pub(crate) type Closer = Box<dyn Fn() + Send + Sync>;

struct Entry {
    attention: Arc<Attention>,
    close: Closer,
}

/// The live sessions by id.
#[derive(Default)]
pub(crate) struct Sessions {
    map: Mutex<BTreeMap<u32, Entry>>,
}

/// A registered session: unregistered when dropped.
pub(crate) struct Registered<'a> {
    sessions: &'a Sessions,
    spid: u32,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        lock(&self.sessions.map).remove(&self.spid);
    }
}

impl Sessions {
    /// Registers session `spid` (its attention switch knows its id).
    pub(crate) fn register(
        &self,
        spid: u32,
        attention: Arc<Attention>,
        close: Closer,
    ) -> Registered<'_> {
        lock(&self.map).insert(spid, Entry { attention, close });
        Registered {
            sessions: self,
            spid,
        }
    }

    /// The attention switch of session `spid`, if it is registered.
    pub(crate) fn attention(&self, spid: u32) -> Option<Arc<Attention>> {
        lock(&self.map).get(&spid).map(|e| e.attention.clone())
    }

    /// `KILL victim` from session `killer`: its messages (none when it
    /// succeeds).
    pub(crate) fn kill(&self, killer: u32, victim: u32) -> Vec<SqlMessage> {
        if victim == killer {
            return vec![SqlMessage::error(
                6104,
                "Cannot use KILL to kill your own process.",
            )];
        }
        if victim < FIRST_USER_SPID {
            let mut m = SqlMessage::error(6107, "Only user processes can be killed.");
            m.level = 14;
            return vec![m];
        }
        let g = lock(&self.map);
        let Some(e) = g.get(&victim) else {
            return vec![SqlMessage {
                number: 6106,
                level: 16,
                state: 2,
                text: format!("Process ID {victim} is not an active process ID."),
            }];
        };
        if !e.attention.kill() {
            // Idle: nothing to answer, the connection ends now.
            (e.close)();
        }
        Vec::new()
    }
}
