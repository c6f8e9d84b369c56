//! A fixed sample report: two backends, every verdict, a divergence and a
//! three-device timeline.
//!
//! Tests pin the renderers' output on it (snapshots), the `render_sample`
//! example writes it to a directory for a look at every format, and vendors
//! can use it to see what a report looks like before running anything.
//!
//! The data is made up but plausible. Its coverage section is deliberately
//! trimmed to a dozen clauses (a real run lists the whole catalog, see
//! [`Coverage::from_hits`]) so that the sample, and the snapshots built on
//! it, do not change whenever the clause catalog grows; the 42 client-table
//! cells are all there.

use crate::schema::{
    BackendInfo, CaseResult, CellCoverage, ClauseCoverage, Coverage, Divergence, RunReport,
    TimelineEvent, ToolInfo, Verdict,
};
use vdi_spec::id;
use vdi_spec::{ClientState, TableMethod};

/// The seed every sample result uses.
pub const SEED: u64 = 7;

/// The sample report.
pub fn report() -> RunReport {
    let tool = ToolInfo {
        name: "vdisim".to_string(),
        version: "0.1.0".to_string(),
        git_commit: Some("49b820a81a235cda68b5d015e8aecb72d0d92e31".to_string()),
        build_profile: "release".to_string(),
        rustc: Some("rustc 1.88.0 (6b00bc388 2025-06-23)".to_string()),
    };
    let backends = vec![
        BackendInfo {
            name: "model".to_string(),
            description: "the reference model itself (sanity check of the catalog)".to_string(),
            library: None,
            profile: "default".to_string(),
            profile_params: serde_json::json!({
                "close-with-open-devices": "vd-e-open",
                "open-device-precedence": "all-open-first",
                "watchdog-factor": 2
            }),
        },
        BackendInfo {
            name: "linux-abi".to_string(),
            description: "a libsqlvdi.so loaded through the Linux C++ ABI".to_string(),
            library: Some("/opt/acme/lib/libsqlvdi.so".to_string()),
            profile: "default".to_string(),
            profile_params: serde_json::json!({
                "close-with-open-devices": "vd-e-open",
                "open-device-precedence": "all-open-first",
                "watchdog-factor": 2
            }),
        },
    ];

    let mut cases = Vec::new();
    for (id, file, summary, clauses) in SCENARIOS {
        for backend in ["model", "linux-abi"] {
            let mut r = CaseResult {
                case: id.to_string(),
                file: file.to_string(),
                summary: summary.to_string(),
                clauses: clauses.iter().map(|c| c.to_string()).collect(),
                backend: backend.to_string(),
                seed: SEED,
                verdict: Verdict::Pass,
                detail: "Every call returned what the model predicts and the statement \
                         outcome matches."
                    .to_string(),
                divergence: None,
                trace_hash: fake_hash(id, backend),
                virtual_ms: 40 + 7 * id.len() as u64,
                steps: 12 + 3 * id.len() as u64,
                repro: repro(id, backend),
                deviation_reason: None,
                timeline: Vec::new(),
            };
            if backend == "linux-abi" {
                linux_abi_outcome(&mut r);
            }
            cases.push(r);
        }
    }

    let mut report = RunReport::new(tool, backends, vec![SEED], cases, coverage());
    report.expected_deviations_file = Some("conformance/acme-deviations.toml".to_string());
    report
}

/// (id, file, summary, clauses) of the sample scenarios.
const SCENARIOS: [(&str, &str, &str, &[&str]); 6] = [
    (
        id::CLOSE_DEVICES_OPEN.as_str(),
        "scenarios/close/devices-open.toml",
        "Close with three devices still open returns VD_E_OPEN and aborts the server side",
        &[
            id::CLOSE_DEVICES_OPEN.as_str(),
            id::TABLE_CLOSE_ACTIVE.as_str(),
        ],
    ),
    (
        id::CREATE_EX_NAMED_INSTANCE.as_str(),
        "scenarios/create-ex/named-instance.toml",
        "CreateEx with the name of an installed named instance creates the set",
        &[
            id::CREATE_EX_NAMED_INSTANCE.as_str(),
            id::TABLE_CREATE_DNE.as_str(),
        ],
    ),
    (
        id::OPEN_DEVICE_ALL_OPEN.as_str(),
        "scenarios/open-device/all-open.toml",
        "OpenDevice once every device of the set is open returns VD_E_OPEN",
        &[
            id::OPEN_DEVICE_ALL_OPEN.as_str(),
            id::TABLE_OPEN_DEVICE_ACTIVE.as_str(),
        ],
    ),
    (
        id::IO_ERROR_CLEAR_ERROR_SUCCESS.as_str(),
        "scenarios/io-error/clear-error-success.toml",
        "After an I/O error the client completes VDC_ClearError and the device is Active again",
        &[id::IO_ERROR_CLEAR_ERROR_SUCCESS.as_str()],
    ),
    (
        id::SIGNAL_ABORT_OK.as_str(),
        "scenarios/signal-abort/ok.toml",
        "SignalAbort in Active returns NOERROR and moves the set to Abort",
        &[
            id::SIGNAL_ABORT_OK.as_str(),
            id::TABLE_SIGNAL_ABORT_ACTIVE.as_str(),
        ],
    ),
    (
        id::TERM_NORMALLY_TERMINATED.as_str(),
        "scenarios/term/normally-terminated.toml",
        "A three-device backup ends with VD_E_CLOSE on every device and the set NormallyTerminated",
        &[
            id::TERM_NORMALLY_TERMINATED.as_str(),
            id::GET_COMMAND_CLOSE.as_str(),
        ],
    ),
];

fn repro(case: &str, backend: &str) -> String {
    let lib = if backend == "linux-abi" {
        " --library /opt/acme/lib/libsqlvdi.so"
    } else {
        ""
    };
    format!("vdisim run --backend {backend}{lib} --profile default --seed {SEED} --case {case}")
}

/// A stable, made-up 16-hex-digit trace hash (FNV-1a 64 of the names).
fn fake_hash(case: &str, backend: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in case.bytes().chain([b'/']).chain(backend.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn linux_abi_outcome(r: &mut CaseResult) {
    match vdi_spec::ClauseId::parse(&r.case) {
        Some(id::CLOSE_DEVICES_OPEN) => {
            r.verdict = Verdict::Violation;
            r.detail = "Close was called while dev0, dev1 and dev2 were still open. The model \
                        returns VD_E_OPEN, signals abort to the server and releases the set; the \
                        library returned NOERROR and sent no abort, so the server kept waiting on \
                        outstanding commands until its watchdog fired 2000 ms later."
                .to_string();
            r.divergence = Some(Divergence {
                seq: 17,
                clause: Some(id::CLOSE_DEVICES_OPEN.to_string()),
                expected: "Close returns VD_E_OPEN (0x8077000D) and the server sees SignalAbort"
                    .to_string(),
                actual: "Close returns NOERROR (0x00000000); no abort reaches the server"
                    .to_string(),
            });
            r.virtual_ms = 2011;
            r.steps = 96;
            r.timeline = violation_timeline();
        }
        Some(id::CREATE_EX_NAMED_INSTANCE) => {
            r.verdict = Verdict::Unimplemented;
            r.detail = "The library exports no CreateEx entry point \
                        (ClientVirtualDeviceSet::CreateEx is missing), so named instances cannot \
                        be tried."
                .to_string();
            r.virtual_ms = 0;
            r.steps = 1;
        }
        Some(id::OPEN_DEVICE_ALL_OPEN) => {
            r.verdict = Verdict::Lenient;
            r.detail =
                "With every device open, OpenDevice(\"vdisim-7_1\") returned VD_E_PROTOCOL; \
                        the profile (open-device-precedence = all-open-first) predicts VD_E_OPEN. \
                        The reference contradicts itself here (the matrix says VD_E_PROTOCOL, the \
                        OpenDevice page VD_E_OPEN), so both are accepted; clients that loop until \
                        VD_E_OPEN will spin on this library."
                    .to_string();
            r.divergence = Some(Divergence {
                seq: 9,
                clause: Some(id::TABLE_OPEN_DEVICE_ACTIVE.to_string()),
                expected: "OpenDevice returns VD_E_OPEN (0x8077000D)".to_string(),
                actual: "OpenDevice returns VD_E_PROTOCOL (0x8077000C)".to_string(),
            });
        }
        Some(id::IO_ERROR_CLEAR_ERROR_SUCCESS) => {
            r.verdict = Verdict::ExpectedDeviation;
            r.detail = "After VDC_ClearError completed with ERROR_SUCCESS the next GetCommand \
                        returned VD_E_ABORT instead of a command: the library aborts the set on \
                        any I/O error, as the deviations file declares."
                .to_string();
            r.divergence = Some(Divergence {
                seq: 23,
                clause: Some(id::IO_ERROR_CLEAR_ERROR_SUCCESS.to_string()),
                expected: "GetCommand returns NOERROR with VDC_Write (device Active again)"
                    .to_string(),
                actual: "GetCommand returns VD_E_ABORT (0x80770004)".to_string(),
            });
            r.deviation_reason = Some(
                "ACME-2291: ClearError recovery is not supported before release 4.2; the set \
                 is aborted on the first I/O error."
                    .to_string(),
            );
        }
        Some(id::SIGNAL_ABORT_OK) => {
            r.verdict = Verdict::UnexpectedPass;
            r.detail = "The deviations file declares this case as failing, but every call \
                        returned what the model predicts. Remove the declaration if the fix is \
                        intended."
                .to_string();
            r.deviation_reason = Some(
                "ACME-1875: SignalAbort returns VD_E_PROTOCOL while a GetCommand is blocked."
                    .to_string(),
            );
        }
        _ => {}
    }
}

fn ev(
    seq: u64,
    t: u64,
    who: &str,
    what: &str,
    detail: &str,
    clause: Option<&str>,
) -> TimelineEvent {
    TimelineEvent {
        seq,
        t,
        who: who.to_string(),
        what: what.to_string(),
        detail: detail.to_string(),
        clause: clause.map(str::to_string),
    }
}

/// The timeline of the sample violation: Close while three devices are
/// still open, the watchdog firing 2 s later.
fn violation_timeline() -> Vec<TimelineEvent> {
    let mut events = timeline_set_up();
    events.extend(timeline_writes());
    events.extend(timeline_close());
    events
}

/// Events 0–8: the set is created, the BACKUP starts, the server
/// configures the set and the client opens its three devices.
fn timeline_set_up() -> Vec<TimelineEvent> {
    vec![
        ev(
            0,
            0,
            "ctl",
            "CreateEx",
            "name=\"vdisim-7\" devices=3 features=0 → NOERROR (0x00000000)",
            Some(id::CREATE_OK.as_str()),
        ),
        ev(
            1,
            0,
            "client",
            "state",
            "DNE → Configurable",
            Some(id::TABLE_CREATE_DNE.as_str()),
        ),
        ev(
            2,
            0,
            "sql",
            "BACKUP",
            "BACKUP DATABASE [db7] TO VIRTUAL_DEVICE = 'vdisim-7', 'vdisim-7_1', 'vdisim-7_2' WITH BUFFERCOUNT = 6, MAXTRANSFERSIZE = 1048576",
            None,
        ),
        ev(
            3,
            1,
            "server",
            "Open",
            "set \"vdisim-7\", serverTimeOut = 1000 ms",
            None,
        ),
        ev(
            4,
            1,
            "link",
            "config",
            "server → client: VDConfig devices=3 blockSize=65536 maxTransferSize=1048576",
            None,
        ),
        ev(
            5,
            1,
            "ctl",
            "GetConfiguration",
            "timeout=INFINITE → NOERROR (0x00000000)",
            Some(id::TABLE_GET_CONFIGURATION_CONFIGURABLE.as_str()),
        ),
        ev(
            6,
            2,
            "ctl",
            "OpenDevice",
            "\"vdisim-7\" → NOERROR (0x00000000), dev0",
            Some(id::OPEN_DEVICE_OK.as_str()),
        ),
        ev(
            7,
            2,
            "ctl",
            "OpenDevice",
            "\"vdisim-7_1\" → NOERROR (0x00000000), dev1",
            Some(id::OPEN_DEVICE_OK.as_str()),
        ),
        ev(
            8,
            2,
            "ctl",
            "OpenDevice",
            "\"vdisim-7_2\" → NOERROR (0x00000000), dev2",
            Some(id::OPEN_DEVICE_OK.as_str()),
        ),
    ]
}

/// Events 9–16: the first writes, and the fault that makes the controller
/// close early.
fn timeline_writes() -> Vec<TimelineEvent> {
    vec![
        ev(
            9,
            3,
            "server",
            "SendCommand",
            "dev0 VDC_Write size=1048576 position=0",
            None,
        ),
        ev(
            10,
            3,
            "dev0",
            "GetCommand",
            "timeout=1000 → NOERROR (0x00000000), VDC_Write size=1048576",
            Some(id::GET_COMMAND_OK.as_str()),
        ),
        ev(
            11,
            3,
            "server",
            "SendCommand",
            "dev1 VDC_Write size=1048576 position=0",
            None,
        ),
        ev(
            12,
            4,
            "dev1",
            "GetCommand",
            "timeout=1000 → NOERROR (0x00000000), VDC_Write size=1048576",
            Some(id::GET_COMMAND_OK.as_str()),
        ),
        ev(
            13,
            5,
            "dev0",
            "CompleteCommand",
            "ERROR_SUCCESS bytes=1048576 → NOERROR (0x00000000)",
            Some(id::COMPLETE_COMMAND_OK.as_str()),
        ),
        ev(
            14,
            5,
            "world",
            "fault",
            "plan close-while-open: the controller calls Close before the devices finish",
            None,
        ),
        ev(
            15,
            6,
            "server",
            "SendCommand",
            "dev2 VDC_Write size=1048576 position=0",
            None,
        ),
        ev(
            16,
            6,
            "dev2",
            "GetCommand",
            "timeout=1000 → NOERROR (0x00000000), VDC_Write size=1048576",
            Some(id::GET_COMMAND_OK.as_str()),
        ),
    ]
}

/// Events 17–21: Close with the devices open, and what follows: a
/// completion on a closed set, the watchdog, the failed BACKUP.
fn timeline_close() -> Vec<TimelineEvent> {
    vec![
        ev(
            17,
            7,
            "ctl",
            "Close",
            "devices open: dev0, dev1, dev2 → NOERROR (0x00000000)",
            Some(id::CLOSE_DEVICES_OPEN.as_str()),
        ),
        ev(
            18,
            7,
            "client",
            "state",
            "Active → DNE (no abort signalled)",
            Some(id::TABLE_CLOSE_ACTIVE.as_str()),
        ),
        ev(
            19,
            9,
            "dev1",
            "CompleteCommand",
            "ERROR_SUCCESS bytes=1048576 → VD_E_INVALID (0x80770006): set already closed",
            Some(id::CLOSE_INVALIDATES_DEVICES.as_str()),
        ),
        ev(
            20,
            2007,
            "server",
            "watchdog",
            "no completion for 2 × serverTimeOut = 2000 ms → abort",
            Some(id::WATCHDOG_FIRES.as_str()),
        ),
        ev(
            21,
            2011,
            "sql",
            "outcome",
            "BACKUP failed: msg 3013 after watchdog abort (expected: failed at t = 7 ms on SignalAbort)",
            Some(id::ABORT_STATEMENT_FAILS.as_str()),
        ),
    ]
}

fn clause(id: &str, summary: &str, basis: &str, cases: u32, hits: u64) -> ClauseCoverage {
    ClauseCoverage {
        id: id.to_string(),
        summary: summary.to_string(),
        basis: basis.to_string(),
        cases,
        hits,
    }
}

/// Hits per client-table cell, row-major ([`TableMethod::ALL`] ×
/// [`ClientState::ALL`]).
const CELL_HITS: [[u64; 6]; 7] = [
    [12, 1, 0, 0, 0, 0],  // Create
    [0, 12, 2, 0, 0, 0],  // GetConfiguration
    [0, 0, 30, 3, 0, 0],  // OpenDevice
    [0, 0, 0, 148, 0, 2], // GetCommand
    [0, 0, 0, 131, 0, 1], // CompleteCommand
    [0, 0, 0, 2, 0, 1],   // SignalAbort
    [1, 0, 0, 2, 9, 3],   // Close
];

/// The sample's coverage: a trimmed clause list and every client-table
/// cell (see the module doc).
fn coverage() -> Coverage {
    let mut clauses = behaviour_clauses();
    clauses.extend(table_clauses());
    Coverage {
        clauses,
        cells: cell_coverage(),
    }
}

/// Coverage of the sample's behaviour clauses (the methods, the watchdog,
/// the set's end).
fn behaviour_clauses() -> Vec<ClauseCoverage> {
    vec![
        clause(
            id::CLOSE_DEVICES_OPEN.as_str(),
            "Close with devices still open returns VD_E_OPEN, internally triggers SignalAbort so the server shuts down cleanly, and still releases the resources (→ DNE).",
            "inferred",
            1,
            2,
        ),
        clause(
            id::CLOSE_ALL_FINISHED.as_str(),
            "Close when no device is still open returns NOERROR, releases every VDI resource of the set and returns the object to DNE.",
            "documented",
            0,
            9,
        ),
        clause(
            id::CLOSE_INVALIDATES_DEVICES.as_str(),
            "Every device interface returned by OpenDevice is invalid after Close; using one must never crash.",
            "inferred",
            0,
            1,
        ),
        clause(
            id::CREATE_OK.as_str(),
            "Create/CreateEx on an object with no set (DNE) creates the named set and returns NOERROR (→ Configurable).",
            "documented",
            0,
            12,
        ),
        clause(
            id::CREATE_EX_NAMED_INSTANCE.as_str(),
            "CreateEx accepts the name of an installed SQL Server instance (no machine\\ prefix).",
            "documented",
            1,
            1,
        ),
        clause(
            id::GET_COMMAND_OK.as_str(),
            "GetCommand in Active returns the next command for this device.",
            "documented",
            0,
            140,
        ),
        clause(
            id::OPEN_DEVICE_ALL_OPEN.as_str(),
            "Once every device of the set is open OpenDevice returns VD_E_OPEN; clients may loop calling OpenDevice until they see it (the matrix says VD_E_PROTOCOL in Active).",
            "inferred",
            1,
            3,
        ),
        clause(
            id::GET_COMMAND_CLOSE.as_str(),
            "After the server closed this device GetCommand returns VD_E_CLOSE, the normal end for that device.",
            "documented",
            1,
            6,
        ),
        clause(
            id::IO_ERROR_CLEAR_ERROR_SUCCESS.as_str(),
            "The client does its cleanup and completes VDC_ClearError with ERROR_SUCCESS; the device is Active again.",
            "documented",
            1,
            0,
        ),
        clause(
            id::SIGNAL_ABORT_OK.as_str(),
            "SignalAbort in Configurable, Initializing, Active or NormallyTerminated returns NOERROR and moves the set to Abort.",
            "documented",
            1,
            2,
        ),
        clause(
            id::TERM_NORMALLY_TERMINATED.as_str(),
            "The set enters NormallyTerminated only when all devices have been closed by the server.",
            "documented",
            1,
            2,
        ),
        clause(
            id::WATCHDOG_FIRES.as_str(),
            "When requests are pending and none completes for 2 × serverTimeOut the server aborts the set automatically.",
            "documented",
            0,
            0,
        ),
    ]
}

/// Coverage of the sample's client-table cell clauses.
fn table_clauses() -> Vec<ClauseCoverage> {
    vec![
        clause(
            id::TABLE_CLOSE_ACTIVE.as_str(),
            "Close in Active: VD_E_OPEN (→ DNE) when devices are open; profile close-with-open-devices.",
            "inferred",
            1,
            2,
        ),
        clause(
            id::TABLE_CREATE_DNE.as_str(),
            "Create in DNE: NOERROR (→ Configurable) when the set is created.",
            "documented",
            1,
            12,
        ),
        clause(
            id::TABLE_OPEN_DEVICE_ACTIVE.as_str(),
            "OpenDevice in Active: VD_E_PROTOCOL (matrix entry) or VD_E_OPEN when every device is already open; profile open-device-precedence.",
            "inferred",
            1,
            3,
        ),
        clause(
            id::TABLE_GET_COMMAND_ACTIVE.as_str(),
            "GetCommand in Active: NOERROR when a command is fetched; VD_E_CLOSE; VD_E_TIMEOUT; VD_E_ABORT (→ Abort).",
            "documented",
            0,
            148,
        ),
        clause(
            id::TABLE_SIGNAL_ABORT_ACTIVE.as_str(),
            "SignalAbort in Active: NOERROR (→ Abort).",
            "documented",
            1,
            2,
        ),
    ]
}

/// Every client-table cell with its hits from [`CELL_HITS`].
fn cell_coverage() -> Vec<CellCoverage> {
    let mut cells = Vec::new();
    for (m, row) in TableMethod::ALL.into_iter().zip(CELL_HITS) {
        for (s, hits) in ClientState::ALL.into_iter().zip(row) {
            cells.push(CellCoverage {
                method: m.name().to_string(),
                state: s.name().to_string(),
                clause: format!("table.{}.{}", m.slug(), s.slug()),
                hits,
            });
        }
    }
    cells
}
