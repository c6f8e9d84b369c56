//! Small views of a report shared by the renderers: timeline windows, lane
//! order, per-subset totals.

use crate::schema::{CaseResult, CellCoverage, ClauseCoverage, TimelineEvent, Totals};
use std::collections::{BTreeMap, BTreeSet};

/// Verdict counts over some results (not the report's stored totals, which
/// the renderers show as given).
pub(crate) fn totals<'a>(results: impl Iterator<Item = &'a CaseResult>) -> Totals {
    let mut t = Totals::default();
    for r in results {
        t.add(r.verdict);
    }
    t
}

/// A window of `events` around the first event with `seq >= center`
/// (`before` events before it, `after` after it), or the last
/// `before + after + 1` events when there is no center. Returns the window
/// and how many events it leaves out before and after.
pub(crate) fn window(
    events: &[TimelineEvent],
    center: Option<u64>,
    before: usize,
    after: usize,
) -> (&[TimelineEvent], usize, usize) {
    let len = events.len();
    let (start, end) = match center {
        Some(seq) => {
            let i = events.iter().position(|e| e.seq >= seq).unwrap_or(len);
            (
                i.saturating_sub(before),
                i.saturating_add(after).saturating_add(1).min(len),
            )
        }
        None => (
            len.saturating_sub(before.saturating_add(after).saturating_add(1)),
            len,
        ),
    };
    let start = start.min(end);
    (&events[start..end], start, len - end)
}

/// Rank of a lane in the canonical order: `ctl`, `dev0`..`devN` (by number),
/// `client`, `link`, `server`, `sql`, `world`, then anything else by name.
fn lane_rank(who: &str) -> (u8, u64, &str) {
    match who {
        "ctl" => (0, 0, ""),
        "client" => (2, 0, ""),
        "link" => (3, 0, ""),
        "server" => (4, 0, ""),
        "sql" => (5, 0, ""),
        "world" => (6, 0, ""),
        _ => match who.strip_prefix("dev").and_then(|n| {
            // `dev` + a canonical decimal number; `dev01` is not a device lane.
            if n == "0" || (!n.starts_with('0') && !n.is_empty()) {
                n.parse::<u64>().ok()
            } else {
                None
            }
        }) {
            Some(n) => (1, n, ""),
            None => (7, 0, who),
        },
    }
}

/// The lanes of a timeline: each distinct `who`, in canonical order.
pub(crate) fn lanes(events: &[TimelineEvent]) -> Vec<&str> {
    let mut lanes: Vec<&str> = events.iter().map(|e| e.who.as_str()).collect();
    lanes.sort_by(|a, b| lane_rank(a).cmp(&lane_rank(b)));
    lanes.dedup();
    lanes
}

/// At most `max` characters of `s`, with an ellipsis when cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Rows or columns of a cell grid shown at most (a complete report has 7 × 6).
const GRID_AXIS_MAX: usize = 32;

/// The client transition table laid out from the report's cells: methods
/// (rows) and states (columns) in order of first appearance, at most
/// [`GRID_AXIS_MAX`] of each.
pub(crate) struct CellGrid<'a> {
    pub(crate) methods: Vec<&'a str>,
    pub(crate) states: Vec<&'a str>,
    by_key: BTreeMap<(&'a str, &'a str), &'a CellCoverage>,
    /// Cells left out because their row or column is past the cap.
    pub(crate) omitted: usize,
}

impl<'a> CellGrid<'a> {
    pub(crate) fn new(cells: &'a [CellCoverage]) -> CellGrid<'a> {
        let mut methods: Vec<&str> = Vec::new();
        let mut states: Vec<&str> = Vec::new();
        let mut seen_m: BTreeSet<&str> = BTreeSet::new();
        let mut seen_s: BTreeSet<&str> = BTreeSet::new();
        let mut by_key = BTreeMap::new();
        let mut omitted = 0usize;
        for c in cells {
            let (m, s) = (c.method.as_str(), c.state.as_str());
            if !seen_m.contains(m) && methods.len() < GRID_AXIS_MAX {
                seen_m.insert(m);
                methods.push(m);
            }
            if !seen_s.contains(s) && states.len() < GRID_AXIS_MAX {
                seen_s.insert(s);
                states.push(s);
            }
            if seen_m.contains(m) && seen_s.contains(s) {
                // The first cell with this key wins; duplicates are a
                // producer bug and are not double-counted.
                by_key.entry((m, s)).or_insert(c);
            } else {
                omitted += 1;
            }
        }
        CellGrid {
            methods,
            states,
            by_key,
            omitted,
        }
    }

    pub(crate) fn get(&self, method: &str, state: &str) -> Option<&'a CellCoverage> {
        self.by_key.get(&(method, state)).copied()
    }
}

/// Clause coverage by id, for lookups while rendering.
pub(crate) fn clause_index(clauses: &[ClauseCoverage]) -> BTreeMap<&str, &ClauseCoverage> {
    let mut index = BTreeMap::new();
    for c in clauses {
        index.entry(c.id.as_str()).or_insert(c);
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, who: &str) -> TimelineEvent {
        TimelineEvent {
            seq,
            t: seq,
            who: who.to_string(),
            what: String::new(),
            detail: String::new(),
            clause: None,
        }
    }

    #[test]
    fn lanes_in_canonical_order() {
        let events: Vec<TimelineEvent> = [
            "world", "dev10", "sql", "dev2", "ctl", "link", "zzz", "server", "client", "dev0",
            "dev2", "dev01", "aaa",
        ]
        .iter()
        .enumerate()
        .map(|(i, w)| ev(i as u64, w))
        .collect();
        assert_eq!(
            lanes(&events),
            [
                "ctl", "dev0", "dev2", "dev10", "client", "link", "server", "sql", "world", "aaa",
                "dev01", "zzz"
            ]
        );
    }

    #[test]
    fn grids_are_bounded() {
        let cells: Vec<CellCoverage> = (0..100)
            .flat_map(|m| {
                (0..3).map(move |s| CellCoverage {
                    method: format!("m{m}"),
                    state: format!("s{s}"),
                    clause: String::new(),
                    hits: 1,
                })
            })
            .collect();
        let g = CellGrid::new(&cells);
        assert_eq!(g.methods.len(), GRID_AXIS_MAX);
        assert_eq!(g.states.len(), 3);
        assert_eq!(g.omitted, (100 - GRID_AXIS_MAX) * 3);
        assert!(g.get("m0", "s2").is_some());
        assert!(g.get("m99", "s0").is_none());
    }

    #[test]
    fn windows_stay_in_bounds() {
        let events: Vec<TimelineEvent> = (0..10).map(|i| ev(i * 2, "ctl")).collect();
        let (w, b, a) = window(&events, Some(10), 2, 1);
        assert_eq!(w.iter().map(|e| e.seq).collect::<Vec<_>>(), [6, 8, 10, 12]);
        assert_eq!((b, a), (3, 3));
        let (w, b, a) = window(&events, Some(999), 2, 1);
        assert_eq!(w.iter().map(|e| e.seq).collect::<Vec<_>>(), [16, 18]);
        assert_eq!((b, a), (8, 0));
        let (w, b, a) = window(&events, None, 2, 1);
        assert_eq!(w.len(), 4);
        assert_eq!((b, a), (6, 0));
        let (w, b, a) = window(&[], Some(3), 2, 1);
        assert!(w.is_empty());
        assert_eq!((b, a), (0, 0));
        let (w, _, _) = window(&events, Some(0), usize::MAX, usize::MAX);
        assert_eq!(w.len(), 10);
    }
}
