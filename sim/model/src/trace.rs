//! The canonical trace: one JSON object per line, and its hash.
//!
//! Columns, in order (every line has them all except `clause`):
//!
//! | key | meaning |
//! |---|---|
//! | `seq` | event number, from 0 |
//! | `t` | virtual time in milliseconds |
//! | `who` | `ctl` (the client's controller thread), `dev<N>` (device thread N), `client` (the client half itself), `server`, `sql` (the statement), `link` (a message delivery), `world` (faults, time) |
//! | `what` | the API method, message or event name |
//! | `detail` | arguments and result, human-readable, canonical |
//! | `clause` | the clause id that decides this behaviour, when one does |
//!
//! The trace hash is FNV-1a 64 over the exact bytes of the JSONL file (each
//! line followed by `\n`), printed as 16 lowercase hex digits. Anyone can
//! recompute it from a trace file.

use serde::Serialize;
use vdi_spec::ClauseId;

/// One trace line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    pub seq: u64,
    pub t: u64,
    pub who: String,
    pub what: String,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clause: Option<ClauseId>,
}

impl Event {
    /// The event as one line of JSON: the columns in order, `clause` only
    /// when there is one, strings escaped as JSON requires (`"`, `\\` and
    /// control characters; everything else as is). This is the exact text
    /// the trace hash covers.
    pub fn to_json(&self) -> String {
        let mut s =
            String::with_capacity(64 + self.who.len() + self.what.len() + self.detail.len());
        s.push_str("{\"seq\":");
        push_u64(&mut s, self.seq);
        s.push_str(",\"t\":");
        push_u64(&mut s, self.t);
        s.push_str(",\"who\":");
        json_string(&mut s, &self.who);
        s.push_str(",\"what\":");
        json_string(&mut s, &self.what);
        s.push_str(",\"detail\":");
        json_string(&mut s, &self.detail);
        if let Some(c) = self.clause {
            s.push_str(",\"clause\":");
            json_string(&mut s, c.as_str());
        }
        s.push('}');
        s
    }
}

/// Appends `n` in decimal.
fn push_u64(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // The digits are ASCII, so this never fails.
    out.push_str(std::str::from_utf8(&buf[i..]).unwrap_or("0"));
}

/// Appends `text` as a JSON string literal: runs of bytes that need no
/// escape are copied whole (every escaped byte is ASCII, so the runs end
/// on character boundaries).
fn json_string(out: &mut String, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Bytes JSON requires escaped: control characters, `"` and `\`.
    const NEEDS: [bool; 256] = {
        let mut t = [false; 256];
        let mut i = 0;
        while i < 0x20 {
            t[i] = true;
            i += 1;
        }
        t[b'"' as usize] = true;
        t[b'\\' as usize] = true;
        t
    };
    out.push('"');
    let mut start = 0;
    for (i, &b) in text.as_bytes().iter().enumerate() {
        if !NEEDS[usize::from(b)] {
            continue;
        }
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => {
                out.push_str(&text[start..i]);
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 15)]));
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.push_str(&text[start..i]);
        out.push_str(esc);
        start = i + 1;
    }
    out.push_str(&text[start..]);
    out.push('"');
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

/// FNV-1a 64 of `bytes`, continuing from `h`.
pub fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// The trace hash of a JSONL text (as written to a file).
pub fn hash_text(text: &str) -> u64 {
    fnv1a(FNV_OFFSET, text.as_bytes())
}

/// A trace being recorded. When off, nothing is built or hashed; call sites
/// check [`Trace::on`] before formatting.
#[derive(Debug)]
pub struct Trace {
    on: bool,
    keep: bool,
    seq: u64,
    hash: u64,
    lines: Vec<String>,
    events: Vec<Event>,
    /// Upper bound on recorded events; past it recording stops and
    /// [`Trace::truncated`] says so (the hash still covers every event).
    pub max_kept: usize,
    truncated: bool,
    hits: std::collections::BTreeMap<&'static str, u64>,
}

impl Trace {
    /// A trace that records and hashes every event.
    pub fn recording() -> Trace {
        Trace {
            on: true,
            keep: true,
            seq: 0,
            hash: FNV_OFFSET,
            lines: Vec::new(),
            events: Vec::new(),
            max_kept: 2_000_000,
            truncated: false,
            hits: std::collections::BTreeMap::new(),
        }
    }
    /// A trace that hashes every event but keeps none.
    pub fn hashing() -> Trace {
        Trace {
            keep: false,
            ..Trace::recording()
        }
    }
    /// A trace that does nothing.
    pub fn off() -> Trace {
        Trace {
            on: false,
            keep: false,
            ..Trace::recording()
        }
    }

    #[inline]
    pub fn on(&self) -> bool {
        self.on
    }

    /// Records one event.
    pub fn emit(
        &mut self,
        t: u64,
        who: impl Into<String>,
        what: impl Into<String>,
        detail: impl Into<String>,
        clause: Option<ClauseId>,
    ) {
        if !self.on {
            return;
        }
        if let Some(c) = clause {
            *self.hits.entry(c.as_str()).or_default() += 1;
        }
        let ev = Event {
            seq: self.seq,
            t,
            who: who.into(),
            what: what.into(),
            detail: detail.into(),
            clause,
        };
        self.seq += 1;
        let line = ev.to_json();
        self.hash = fnv1a(self.hash, line.as_bytes());
        self.hash = fnv1a(self.hash, b"\n");
        if self.keep {
            if self.events.len() < self.max_kept {
                self.lines.push(line);
                self.events.push(ev);
            } else {
                self.truncated = true;
            }
        }
    }

    /// How often each clause id was cited by an event.
    pub fn clause_hits(&self) -> &std::collections::BTreeMap<&'static str, u64> {
        &self.hits
    }

    /// The hash of every event so far (see the module docs).
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// The hash as 16 hex digits.
    pub fn hash_hex(&self) -> String {
        format!("{:016x}", self.hash)
    }

    pub fn events(&self) -> &[Event] {
        &self.events
    }

    pub fn len(&self) -> u64 {
        self.seq
    }

    pub fn is_empty(&self) -> bool {
        self.seq == 0
    }

    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// The JSONL text (each line followed by `\n`).
    pub fn to_jsonl(&self) -> String {
        let mut s = String::with_capacity(self.lines.iter().map(|l| l.len() + 1).sum());
        for l in &self.lines {
            s.push_str(l);
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vdi_spec::id;

    #[test]
    fn hash_matches_file_text() {
        let mut t = Trace::recording();
        t.emit(
            0,
            "ctl",
            "Create",
            "name=\"a\" -> NOERROR (0x00000000)",
            Some(id::CREATE_OK),
        );
        t.emit(5, "server", "Open", "a", None);
        let text = t.to_jsonl();
        assert_eq!(hash_text(&text), t.hash());
        assert_eq!(text.lines().count(), 2);
        assert!(text.starts_with("{\"seq\":0,\"t\":0,\"who\":\"ctl\",\"what\":\"Create\""));
        let mut h = Trace::hashing();
        h.emit(
            0,
            "ctl",
            "Create",
            "name=\"a\" -> NOERROR (0x00000000)",
            Some(id::CREATE_OK),
        );
        h.emit(5, "server", "Open", "a", None);
        assert_eq!(h.hash(), t.hash());
        assert!(h.events().is_empty());
    }

    proptest::proptest! {
        /// The line is exactly what serde_json writes for the event, so
        /// traces keep their bytes (and hashes) whoever writes them.
        #[test]
        fn json_line_is_serde_json(
            who in "\\PC{0,12}",
            what in proptest::string::string_regex("[\\x00-\\x7f]{0,16}").unwrap(),
            detail in proptest::prelude::any::<String>(),
            seq in proptest::prelude::any::<u64>(),
            t in proptest::prelude::any::<u64>(),
            with_clause in proptest::prelude::any::<bool>(),
        ) {
            let ev = Event {
                seq,
                t,
                who,
                what,
                detail,
                clause: with_clause.then_some(id::CLOSE_DEVICES_OPEN),
            };
            proptest::prop_assert_eq!(ev.to_json(), serde_json::to_string(&ev).unwrap());
        }
    }
}
