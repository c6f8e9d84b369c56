//! Tests of the server half, driven directly: the test plays a (usually
//! perfect) client, taking each `ToClient::Command` and answering it. Each
//! test names the clause it checks.

use super::*;
use crate::statement::{ExtraCommand, Family, ServerPlan};
use vdi_spec::TransferOptions;
use vdi_spec::id;
use vdi_spec::profile::ErrorTermination;

// ----------------------------------------------------------------------
// harness
// ----------------------------------------------------------------------

/// The client's media: what each device's stream holds, and read cursors.
#[derive(Default)]
struct Client {
    media: Vec<Content>,
    read_pos: Vec<u64>,
}

fn done(cmd: &Cmd, code: Win32, bytes: u64) -> Completion {
    Completion {
        id: cmd.id,
        dev: cmd.dev,
        code,
        bytes,
        position: 0,
        data: Content::Empty,
        auto: false,
    }
}

impl Client {
    fn grow(&mut self, d: usize) {
        if self.media.len() <= d {
            self.media.resize(d + 1, Content::Empty);
            self.read_pos.resize(d + 1, 0);
        }
    }

    /// A perfect pipe-like client.
    fn answer(&mut self, cmd: &Cmd) -> Completion {
        let d = usize::from(cmd.dev);
        self.grow(d);
        match cmd.code {
            CommandCode::Write => {
                self.media[d].append(&cmd.data);
                done(cmd, Win32::ERROR_SUCCESS, u64::from(cmd.size))
            }
            CommandCode::Read => {
                let data = self.media[d].slice(self.read_pos[d], u64::from(cmd.size));
                let n = data.len();
                self.read_pos[d] += n;
                let code = if n < u64::from(cmd.size) {
                    Win32::ERROR_HANDLE_EOF
                } else {
                    Win32::ERROR_SUCCESS
                };
                Completion {
                    data,
                    ..done(cmd, code, n)
                }
            }
            CommandCode::Flush | CommandCode::Complete | CommandCode::ClearError => {
                done(cmd, Win32::ERROR_SUCCESS, 0)
            }
            _ => done(cmd, Win32::ERROR_NOT_SUPPORTED, 0),
        }
    }
}

enum Reply {
    Perfect,
    With(Completion),
    /// Keep the command unanswered (in `H::held`).
    #[allow(dead_code)]
    Hold,
}

struct H {
    s: ServerHalf,
    tr: Trace,
    now: u64,
    pending: VecDeque<Cmd>,
    held: Vec<Cmd>,
    all: Vec<Cmd>,
    closes: Vec<DevIx>,
    aborts: usize,
    cfg: Option<VdConfig>,
    cmds_after_abort: usize,
    client: Client,
    max_bufs_in_flight: usize,
    dev_names: Vec<String>,
}

/// The default profile but `error-termination = clear-error-then-abort`.
fn clear_then_abort() -> Profile {
    Profile {
        error_termination: ErrorTermination::ClearErrorThenAbort,
        ..Profile::default()
    }
}

fn set_cfg(devices: u32, features: Features) -> VdConfig {
    VdConfig::client(devices, features)
}

impl H {
    fn new(p: Profile) -> H {
        H {
            s: ServerHalf::new(Arc::new(p)),
            tr: Trace::recording(),
            now: 0,
            pending: VecDeque::new(),
            held: Vec::new(),
            all: Vec::new(),
            closes: Vec::new(),
            aborts: 0,
            cfg: None,
            cmds_after_abort: 0,
            client: Client::default(),
            max_bufs_in_flight: 0,
            dev_names: Vec::new(),
        }
    }

    fn default() -> H {
        H::new(Profile::default())
    }

    /// A server under `error-termination = clear-error-then-abort`, for the
    /// tests of the ClearError path (the default is drain-then-close).
    fn clearing() -> H {
        H::new(clear_then_abort())
    }

    fn absorb(&mut self, out: Vec<ToClient>) {
        for m in out {
            match m {
                ToClient::Configured { cfg, devices } => {
                    assert!(self.cfg.is_none(), "Configured twice");
                    assert_eq!(
                        devices.len() as u32,
                        cfg.device_count.min(devices.len() as u32)
                    );
                    self.cfg = Some(cfg);
                    self.dev_names = devices;
                }
                ToClient::Command(c) => {
                    if self.aborts > 0 {
                        self.cmds_after_abort += 1;
                    }
                    assert!(
                        !self.closes.contains(&c.dev),
                        "command after CloseDevice on dev {}",
                        c.dev
                    );
                    self.all.push(c.clone());
                    self.pending.push_back(c);
                }
                ToClient::CloseDevice { dev } => {
                    assert!(!self.closes.contains(&dev), "CloseDevice twice");
                    self.closes.push(dev);
                }
                ToClient::Abort => self.aborts += 1,
                ToClient::Died => panic!("the server never sends Died"),
            }
        }
        let mut bufs: Vec<u32> = self
            .pending
            .iter()
            .chain(self.held.iter())
            .filter_map(|c| c.buffer.map(|b| b.0))
            .collect();
        let n = bufs.len();
        bufs.sort_unstable();
        bufs.dedup();
        assert_eq!(bufs.len(), n, "a buffer is in two in-flight commands");
        self.max_bufs_in_flight = self.max_bufs_in_flight.max(n);
    }

    fn start(&mut self, stmt: Statement, cfg: VdConfig) {
        let set = SetInfo {
            name: stmt.devices[0].clone(),
            cfg,
        };
        self.start_with(stmt, Some(set));
    }

    fn start_with(&mut self, stmt: Statement, set: Option<SetInfo>) {
        self.cfg = None;
        self.closes.clear();
        self.aborts = 0;
        self.all.clear();
        self.pending.clear();
        self.held.clear();
        let mut out = Vec::new();
        self.s.start(self.now, stmt, set, &mut out, &mut self.tr);
        self.absorb(out);
    }

    fn send(&mut self, m: ToServer) {
        self.now += 1;
        let mut out = Vec::new();
        self.s.on_message(self.now, m, &mut out, &mut self.tr);
        self.absorb(out);
    }

    fn complete(&mut self, c: Completion) {
        self.send(ToServer::Completed(c));
    }

    /// Answers pending commands in arrival order until none are left.
    fn run(&mut self, mut f: impl FnMut(&mut Client, &Cmd) -> Reply) {
        let mut steps = 0u64;
        while let Some(cmd) = self.pending.pop_front() {
            steps += 1;
            assert!(steps < 2_000_000, "runaway");
            match f(&mut self.client, &cmd) {
                Reply::Perfect => {
                    let c = self.client.answer(&cmd);
                    self.complete(c);
                }
                Reply::With(c) => self.complete(c),
                Reply::Hold => self.held.push(cmd),
            }
        }
    }

    fn perfect(&mut self) {
        self.run(|_, _| Reply::Perfect);
    }

    fn tick(&mut self, t: u64) {
        self.now = t;
        let mut out = Vec::new();
        self.s.on_time(t, &mut out, &mut self.tr);
        self.absorb(out);
    }

    fn outcome(&self) -> &Outcome {
        self.s.outcome()
    }

    fn codes(&self) -> Vec<CommandCode> {
        self.all.iter().map(|c| c.code).collect()
    }

    fn has_clause(&self, clause: vdi_spec::ClauseId) -> bool {
        self.tr.events().iter().any(|e| e.clause == Some(clause))
    }

    fn numbers(&self) -> Vec<u32> {
        self.outcome().messages.iter().map(|m| m.number).collect()
    }

    fn text(&self) -> String {
        self.outcome()
            .messages
            .iter()
            .map(|m| m.text.clone())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn opts(block: u32, mts: u32, count: Option<u32>) -> TransferOptions {
    TransferOptions {
        block_size: block,
        max_transfer_size: mts,
        buffer_count: count,
    }
}

fn names(n: usize) -> Vec<String> {
    (0..n)
        .map(|k| {
            if k == 0 {
                "set1".to_string()
            } else {
                format!("dev{}", k + 1)
            }
        })
        .collect()
}

fn backup(n: usize, data: u64) -> Statement {
    Statement {
        kind: StatementKind::BackupDatabase,
        database: "sales".into(),
        devices: names(n),
        options: opts(512, 65536, None),
        plan: ServerPlan {
            data_bytes: data,
            ..ServerPlan::default()
        },
    }
}

fn restore(kind: StatementKind, n: usize) -> Statement {
    Statement {
        kind,
        database: "sales".into(),
        devices: names(n),
        options: opts(512, 65536, None),
        plan: ServerPlan::default(),
    }
}

/// Runs a perfect backup over `n` devices and returns the harness (with the
/// client's media in place, ready for a restore).
fn backed_up(p: Profile, n: usize, data: u64) -> H {
    let mut h = H::new(p);
    h.start(backup(n, data), set_cfg(n as u32, Features::LikePipe));
    h.perfect();
    assert!(h.outcome().succeeded(), "{:?}", h.outcome());
    h
}

/// Starts a restore on `h` whose client reads back what it stored.
fn restore_again(h: &mut H, stmt: Statement) {
    h.client.read_pos = vec![0; h.client.media.len()];
    let n = stmt.devices.len() as u32;
    h.start(stmt, set_cfg(n, Features::LikePipe));
}

// ----------------------------------------------------------------------
// BACKUP
// ----------------------------------------------------------------------

/// Clause `term.backup-sequence`: Write* → Flush → CloseDevice; the family
/// is byte-exact and the backup is recorded in msdb.
#[test]
fn term_backup_sequence_one_device() {
    let mut h = H::default();
    h.start(backup(1, 300_000), set_cfg(1, Features::LikePipe));
    h.perfect();
    let o = h.outcome().clone();
    assert_eq!(o.status, Status::Succeeded);
    let rec = &h.s.history()[0];
    assert_eq!(rec.number, 1);
    assert_eq!(rec.total_bytes(), 300_032); // rounded up to BLOCKSIZE
    let fam = rec.families[0];
    assert_eq!(h.client.media[0], rec.family_media(0));
    assert_eq!(o.bytes, fam.media_len());
    // The first write is the media header (clause `media.header`).
    assert_eq!(h.all[0].size, crate::media::HEADER_BYTES as u32);
    assert_eq!(
        h.all[0].data.as_header().map(|x| (x.family, x.families)),
        Some((1, 1))
    );
    let codes = h.codes();
    let (last, writes) = codes.split_last().unwrap();
    assert_eq!(*last, CommandCode::Flush);
    assert!(writes.iter().all(|c| *c == CommandCode::Write));
    assert!(h.all.iter().all(|c| c.size <= 65536 && c.size % 512 == 0));
    assert_eq!(h.closes, vec![0]);
    assert_eq!(h.s.state(), ServerState::NormallyTerminated);
    assert!(h.s.is_idle());
    assert!(h.has_clause(id::TERM_BACKUP_SEQUENCE));
}

/// Clause `stripe.distribution`: three devices receive the families of
/// `BackupRecord::plan`, byte for byte.
#[test]
fn stripe_distribution_three_devices() {
    let mut h = H::default();
    h.start(backup(3, 5 * 65536 + 1000), set_cfg(3, Features::LikePipe));
    h.perfect();
    assert!(h.outcome().succeeded());
    let rec = h.s.history()[0].clone();
    let plan = BackupRecord::plan(
        "sales",
        StatementKind::BackupDatabase,
        1,
        3,
        5 * 65536 + 1000,
        &opts(512, 65536, None),
    );
    assert_eq!(rec.families, plan.families);
    for k in 0..rec.families.len() {
        assert_eq!(h.client.media[k], rec.family_media(k), "family {k}");
    }
    let devs = h.s.devices();
    assert_eq!(devs.len(), 3);
    assert_eq!(devs[1].name, "dev2");
    assert_eq!(h.dev_names, vec!["set1", "dev2", "dev3"]);
    assert!(devs.iter().all(|d| d.state == DevState::Closed));
    assert_eq!(devs[0].commands.get("VDC_Flush"), Some(&1));
    assert_eq!(devs.iter().map(|d| d.bytes).sum::<u64>(), rec.media_bytes());
    assert_eq!(h.closes.len(), 3);
    assert!(h.has_clause(id::STRIPE_DISTRIBUTION));
}

/// Clause `stripe.shared-buffers`: BUFFERCOUNT buffers are shared by every
/// device: never more in flight, never one buffer in two commands.
#[test]
fn stripe_shared_buffers() {
    let mut h = H::default();
    let mut st = backup(3, 40 * 65536);
    st.options.buffer_count = Some(2);
    h.start(st, set_cfg(3, Features::LikePipe));
    // Hold everything the server sends at first: it must stop at 2 buffers.
    let first: Vec<Cmd> = h.pending.drain(..).collect();
    assert_eq!(first.len(), 2);
    for c in first {
        h.pending.push_back(c);
    }
    h.perfect();
    assert!(h.outcome().succeeded());
    assert!(h.max_bufs_in_flight <= 2);
    let used: std::collections::BTreeSet<u32> =
        h.all.iter().filter_map(|c| c.buffer.map(|b| b.0)).collect();
    assert!(used.iter().all(|b| *b < 2), "{used:?}");
    // Every device got data, so buffers were shared round-robin.
    assert!(h.s.devices().iter().all(|d| d.bytes > 0));
    assert!(h.has_clause(id::STRIPE_SHARED_BUFFERS));
}

/// Clause `complete-command.returns-buffer`: completing a Write returns its
/// buffer; with one buffer every Write reuses buffer 0.
#[test]
fn complete_command_returns_buffer() {
    let mut h = H::default();
    let mut st = backup(1, 10 * 65536);
    st.options.buffer_count = Some(1);
    h.start(st, set_cfg(1, Features::LikePipe));
    assert_eq!(h.pending.len(), 1);
    h.perfect();
    assert!(h.outcome().succeeded());
    assert!(
        h.all
            .iter()
            .filter(|c| c.code == CommandCode::Write)
            .all(|c| c.buffer == Some(BufId(0)))
    );
    assert_eq!(h.max_bufs_in_flight, 1);
    assert!(h.has_clause(id::COMPLETE_COMMAND_RETURNS_BUFFER));
}

/// Clause `get-configuration.server-outputs`: blockSize, maxIODepth = 4,
/// maxTransferSize, bufferAreaSize = buffers × (maxTransferSize + prefix).
#[test]
fn get_configuration_server_outputs() {
    let mut h = H::default();
    let mut st = backup(2, 65536);
    st.options = opts(4096, 262_144, Some(6));
    let mut cfg = set_cfg(2, Features::LikePipe);
    cfg.prefix_zone_size = 512;
    cfg.server_time_out = 60_000;
    h.start(st, cfg);
    let got = h.cfg.unwrap();
    assert_eq!(got.block_size, 4096);
    assert_eq!(got.max_io_depth, 4);
    assert_eq!(got.max_transfer_size, 262_144);
    assert_eq!(got.buffer_area_size, 6 * (262_144 + 512));
    assert_eq!(
        got.server_time_out, 60_000,
        "client inputs are returned unchanged"
    );
    assert_eq!(got.prefix_zone_size, 512);
    // Default BUFFERCOUNT: profile default per device × devices.
    let mut h = H::default();
    h.start(backup(2, 65536), set_cfg(2, Features::LikePipe));
    assert_eq!(h.cfg.unwrap().buffer_area_size, 8 * 65536);
    // Saturates instead of overflowing.
    let mut h = H::default();
    let mut st = backup(1, 65536);
    st.options = opts(512, 4 << 20, Some(100_000));
    h.start(st, set_cfg(1, Features::LikePipe));
    assert_eq!(h.cfg.unwrap().buffer_area_size, u32::MAX);
    assert!(h.has_clause(id::GET_CONFIGURATION_SERVER_OUTPUTS));
}

/// Clause `get-configuration.features-returned`: client bits |
/// VDF_WriteMedia for BACKUP, | VDF_ReadMedia for RESTORE.
#[test]
fn get_configuration_features_returned() {
    let mut h = H::default();
    h.start(backup(1, 65536), set_cfg(1, Features::Removable));
    assert_eq!(h.cfg.unwrap().features, 0x1_0001);
    h.perfect();
    restore_again(&mut h, restore(StatementKind::RestoreDatabase, 1));
    assert_eq!(h.cfg.unwrap().features, Features::ReadMedia.0);
    h.perfect();
    assert!(h.outcome().succeeded());
    assert!(h.has_clause(id::GET_CONFIGURATION_FEATURES_RETURNED));
}

/// Clause `complete.negotiation`: VDF_RequestComplete on a supporting server
/// returns VDF_CompleteEnabled, and VDC_Complete follows the final Flush on
/// every device, before CloseDevice.
#[test]
fn complete_negotiation() {
    let mut h = H::default();
    h.start(backup(2, 4 * 65536), set_cfg(2, Features::RequestComplete));
    let f = Features(h.cfg.unwrap().features);
    assert!(f.contains(Features::CompleteEnabled));
    assert!(f.contains(Features::RequestComplete.union(Features::WriteMedia)));
    h.perfect();
    assert!(h.outcome().succeeded());
    let codes = h.codes();
    let n = codes.len();
    assert_eq!(
        &codes[n - 2..],
        &[CommandCode::Complete, CommandCode::Complete]
    );
    assert_eq!(
        &codes[n - 4..n - 2],
        &[CommandCode::Flush, CommandCode::Flush]
    );
    assert!(h.has_clause(id::COMPLETE_NEGOTIATION));
}

/// Clause `complete.never-unrequested`: without VDF_RequestComplete, or on a
/// server without support, VDC_Complete is never sent — not even as a probe.
#[test]
fn complete_never_unrequested() {
    let mut h = H::default();
    let mut st = backup(1, 65536);
    st.plan.extra_commands = vec![ExtraCommand {
        dev: 0,
        after_data_commands: 0,
        code: CommandCode::Complete,
    }];
    h.start(st, set_cfg(1, Features::LikePipe));
    assert!(!Features(h.cfg.unwrap().features).contains(Features::CompleteEnabled));
    h.perfect();
    assert!(h.outcome().succeeded());
    assert!(!h.codes().contains(&CommandCode::Complete));
    assert!(h.has_clause(id::COMPLETE_NEVER_UNREQUESTED));

    let p = Profile {
        server_supports_complete: false,
        ..Profile::default()
    };
    let mut h = H::new(p);
    h.start(backup(1, 65536), set_cfg(1, Features::RequestComplete));
    assert!(!Features(h.cfg.unwrap().features).contains(Features::CompleteEnabled));
    h.perfect();
    assert!(h.outcome().succeeded());
    assert!(!h.codes().contains(&CommandCode::Complete));
}

/// Clause `flush.several`: mid-stream Flushes, evenly spaced, each sent with
/// nothing outstanding on its device and nothing sent until it completes.
#[test]
fn flush_several() {
    let mut h = H::default();
    let mut st = backup(2, 32 * 65536);
    st.plan.mid_flushes = 3;
    h.start(st, set_cfg(2, Features::LikePipe));
    // Check the barrier as we go: when a Flush arrives, no other command of
    // its device is pending; while it is pending, nothing else arrives on it.
    let mut steps = 0;
    while let Some(cmd) = h.pending.pop_front() {
        steps += 1;
        assert!(steps < 10_000);
        if cmd.code == CommandCode::Flush {
            assert!(
                !h.pending.iter().any(|c| c.dev == cmd.dev),
                "Flush with commands outstanding on dev {}",
                cmd.dev
            );
        }
        let c = h.client.answer(&cmd);
        h.complete(c);
    }
    assert!(h.outcome().succeeded());
    for d in 0..2u16 {
        let seq: Vec<_> = h.all.iter().filter(|c| c.dev == d).collect();
        let flushes: Vec<usize> = seq
            .iter()
            .enumerate()
            .filter(|(_, c)| c.code == CommandCode::Flush)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(flushes.len(), 4, "3 mid + 1 final on dev {d}");
        // The header, then evenly spaced: 16 data writes per device,
        // flushes after 4, 8, 12 of them.
        assert_eq!(flushes, vec![5, 10, 15, 20]);
    }
    assert_eq!(h.client.media[0], h.s.history()[0].family_media(0));
    assert!(h.has_clause(id::FLUSH_SEVERAL));
}

/// Clause `command.pipe-only`: a pipe-like client only ever receives Read,
/// Write, Flush, ClearError (and Complete when negotiated).
#[test]
fn command_pipe_only() {
    let mut h = H::default();
    h.start(backup(2, 6 * 65536), set_cfg(2, Features::RequestComplete));
    h.perfect();
    let f = h.s.returned_features();
    assert!(
        h.all.iter().all(|c| c.code.sendable_to(f)),
        "{:?}",
        h.codes()
    );
    restore_again(&mut h, restore(StatementKind::RestoreDatabase, 2));
    h.perfect();
    assert!(h.outcome().succeeded());
    assert!(h.all.iter().all(|c| c.code == CommandCode::Read));
    assert!(h.has_clause(id::COMMAND_PIPE_ONLY));
}

/// Clause `term.close-device`: a successful statement closes every device.
#[test]
fn term_close_device() {
    let h = backed_up(Profile::default(), 4, 3 * 65536);
    let mut c = h.closes.clone();
    c.sort_unstable();
    assert_eq!(c, vec![0, 1, 2, 3]);
    assert!(h.has_clause(id::TERM_CLOSE_DEVICE));
}

/// Clause `server.outcome-messages`: 4035 and 3014 with pages, seconds and
/// MB/s; a failure ends with 3013.
#[test]
fn server_outcome_messages() {
    let mut h = H::default();
    h.start(backup(1, 1 << 20), set_cfg(1, Features::LikePipe));
    h.perfect();
    let m = &h.outcome().messages;
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].number, 4035);
    assert_eq!(
        m[0].text,
        "Processed 128 pages for database 'sales', file 'sales' on file 1."
    );
    assert_eq!(m[1].number, 3014);
    assert!(
        m[1].text
            .starts_with("BACKUP DATABASE successfully processed 128 pages in 0.0"),
        "{}",
        m[1].text
    );
    assert!(!m[1].is_error());
    h.start_with(backup(1, 1), None);
    assert_eq!(h.numbers(), vec![3201, 3013]);
    assert_eq!(
        h.outcome().messages[1].text,
        "BACKUP DATABASE is terminating abnormally."
    );
    assert!(h.has_clause(id::SERVER_OUTCOME_MESSAGES));
}

// ----------------------------------------------------------------------
// RESTORE
// ----------------------------------------------------------------------

/// Clause `restore.read-sizes`: Seeded sizes are multiples of BLOCKSIZE
/// within BLOCKSIZE..=MAXTRANSFERSIZE, vary, and are a pure function of the
/// seed; the restore verifies.
#[test]
fn restore_read_sizes_seeded() {
    let sizes_of = |seed: u64| {
        let mut h = backed_up(Profile::default(), 2, 3_000_000);
        let mut st = restore(StatementKind::RestoreDatabase, 2);
        st.options = opts(512, 262_144, None);
        st.plan.read_sizes = ReadSizes::Seeded(seed);
        restore_again(&mut h, st);
        h.perfect();
        assert!(h.outcome().succeeded(), "{:?}", h.outcome());
        assert_eq!(h.outcome().bytes, h.s.history()[0].media_bytes());
        assert!(h.has_clause(id::RESTORE_READ_SIZES));
        h.all.iter().map(|c| c.size).collect::<Vec<u32>>()
    };
    let a = sizes_of(7);
    assert!(
        a.iter().all(|s| *s >= 512 && *s <= 262_144 && s % 512 == 0),
        "{a:?}"
    );
    let distinct: std::collections::BTreeSet<_> = a.iter().collect();
    assert!(distinct.len() > 5, "{a:?}");
    assert_eq!(a, sizes_of(7));
    assert_ne!(a, sizes_of(8));
    for ix in 0..1000 {
        let s = read_size(&ReadSizes::Seeded(3), 4096, 1 << 20, 1, ix);
        assert!((4096..=1 << 20).contains(&s) && s.is_multiple_of(4096));
    }
    assert_eq!(read_size(&ReadSizes::Fixed(1000), 512, 65536, 0, 0), 512);
    assert_eq!(
        read_size(&ReadSizes::Fixed(1 << 30), 512, 65536, 0, 0),
        65536
    );
    assert_eq!(
        read_size(&ReadSizes::Cycle(vec![]), 512, 65536, 0, 0),
        65536
    );
    assert_eq!(
        read_size(&ReadSizes::Cycle(vec![1024, 3000]), 512, 65536, 0, 3),
        2560
    );
}

/// Clause `restore.byte-identical`: completions are verified in issue order
/// even when they arrive out of order; wrong bytes fail with Msg 3241.
#[test]
fn restore_byte_identical() {
    // Out of order: answer each batch newest first.
    let mut h = backed_up(Profile::default(), 1, 20 * 65536);
    let mut st = restore(StatementKind::RestoreDatabase, 1);
    st.plan.read_sizes = ReadSizes::Fixed(32768);
    restore_again(&mut h, st);
    let mut steps = 0;
    while !h.pending.is_empty() {
        steps += 1;
        assert!(steps < 10_000);
        let batch: Vec<Cmd> = h.pending.drain(..).collect();
        let answers: Vec<Completion> = batch.iter().map(|c| h.client.answer(c)).collect();
        for a in answers.into_iter().rev() {
            h.complete(a);
        }
    }
    assert!(h.outcome().succeeded(), "{:?}", h.outcome());
    assert_eq!(h.numbers(), vec![4035, 3014]);

    // Wrong bytes.
    let mut h = backed_up(Profile::default(), 1, 4 * 65536);
    restore_again(&mut h, restore(StatementKind::RestoreDatabase, 1));
    let mut n = 0;
    h.run(|cl, cmd| {
        n += 1;
        let mut c = cl.answer(cmd);
        if n == 2 {
            c.data = Content::One(Extent::Garbage { len: c.bytes });
        }
        Reply::With(c)
    });
    assert_eq!(h.outcome().reason, Some(FailReason::BadMedia));
    assert_eq!(h.numbers(), vec![3241, 3013]);
    assert!(
        h.text()
            .contains("The media family on device 'set1' is incorrectly formed.")
    );
    assert!(h.has_clause(id::RESTORE_BYTE_IDENTICAL));

    // The same damage in a backup taken WITH CHECKSUM names the page.
    let mut h = H::default();
    let mut st = backup(1, 4 * 65536);
    st.plan.media.checksum = true;
    h.start(st, set_cfg(1, Features::LikePipe));
    h.perfect();
    restore_again(&mut h, restore(StatementKind::RestoreDatabase, 1));
    let mut n = 0;
    h.run(|cl, cmd| {
        n += 1;
        let mut c = cl.answer(cmd);
        if n == 3 {
            c.data = Content::One(Extent::Garbage { len: c.bytes });
        }
        Reply::With(c)
    });
    assert_eq!(h.numbers(), vec![3183, 3013]);
    assert!(
        h.text()
            .contains("error on page (1:8) in database \"sales\""),
        "{}",
        h.text()
    );
}

/// Clause `restore.truncated`: EOF before the family's end fails the
/// restore with Msg 3203 "38(Reached the end of the file.)".
#[test]
fn restore_truncated() {
    let mut h = backed_up(clear_then_abort(), 1, 8 * 65536);
    let cut = h.client.media[0].slice(0, 5 * 65536 + 512);
    h.client.media[0] = cut;
    restore_again(&mut h, restore(StatementKind::RestoreDatabase, 1));
    h.perfect();
    assert_eq!(h.outcome().reason, Some(FailReason::BadMedia));
    assert_eq!(h.numbers(), vec![3203, 3013]);
    assert_eq!(
        h.outcome().messages[0].text,
        "Read on \"set1\" failed: 38(Reached the end of the file.)"
    );
    assert!(h.aborts == 1, "the set is aborted");
    assert!(h.has_clause(id::RESTORE_TRUNCATED));
}

/// Clause `restore.eof`: with `restore-overread` the last read asks for a
/// full size and the client's ERROR_HANDLE_EOF (or ERROR_NO_DATA_DETECTED)
/// with the short count ends the family normally; with
/// `eof-enters-io-error` the server clears the error first.
#[test]
fn restore_eof() {
    for (overread, via_io_error, code) in [
        (true, false, Win32::ERROR_HANDLE_EOF),
        (true, false, Win32::ERROR_NO_DATA_DETECTED),
        (true, true, Win32::ERROR_HANDLE_EOF),
        (false, false, Win32::ERROR_HANDLE_EOF),
    ] {
        let p = Profile {
            restore_overread: overread,
            eof_enters_io_error: via_io_error,
            ..Profile::default()
        };
        let mut h = backed_up(p, 1, 3 * 65536 + 4096);
        restore_again(&mut h, restore(StatementKind::RestoreDatabase, 1));
        h.run(|cl, cmd| {
            let mut c = cl.answer(cmd);
            if c.code == Win32::ERROR_HANDLE_EOF {
                c.code = code;
            }
            Reply::With(c)
        });
        assert!(
            h.outcome().succeeded(),
            "{overread} {via_io_error}: {:?}",
            h.outcome()
        );
        let reads: Vec<u32> = h
            .all
            .iter()
            .filter(|c| c.code == CommandCode::Read)
            .map(|c| c.size)
            .collect();
        let last = *reads.last().unwrap();
        if overread {
            assert_eq!(last, 65536, "over-read asks a full size");
        } else {
            assert_eq!(last, 4096, "clipped to what remains");
        }
        assert_eq!(h.codes().contains(&CommandCode::ClearError), via_io_error);
        assert!(!overread || h.has_clause(id::RESTORE_EOF));
    }
}

/// Clause `restore.early-close`: HEADERONLY reads metadata from device 0
/// only, then closes every device; success without Msg 3014.
#[test]
fn restore_early_close() {
    let mut h = backed_up(Profile::default(), 2, 20 * 65536);
    let mut st = restore(StatementKind::RestoreHeaderOnly, 2);
    st.plan.metadata_bytes = 100_000;
    restore_again(&mut h, st);
    h.perfect();
    assert!(h.outcome().succeeded(), "{:?}", h.outcome());
    assert!(h.outcome().messages.is_empty());
    assert!(
        h.all
            .iter()
            .all(|c| c.dev == 0 && c.code == CommandCode::Read)
    );
    assert_eq!(h.outcome().bytes, 100_352); // rounded up to BLOCKSIZE
    let mut c = h.closes.clone();
    c.sort_unstable();
    assert_eq!(c, vec![0, 1]);
    assert!(h.has_clause(id::RESTORE_EARLY_CLOSE));
    // FILELISTONLY with no metadata reads the media header alone.
    let mut st = restore(StatementKind::RestoreFilelistOnly, 2);
    st.plan.metadata_bytes = 0;
    restore_again(&mut h, st);
    h.perfect();
    assert_eq!(h.all.len(), 1);
    assert_eq!(h.outcome().bytes, crate::media::HEADER_BYTES);
    assert!(h.outcome().succeeded());
    assert_eq!(h.closes.len(), 2);
}

/// VERIFYONLY reads everything and reports Msg 3262; a RESTORE reads the
/// media headers first and refuses media that are not all of one backup
/// set, or not a backup at all (clause `media.header`).
#[test]
fn restore_verifyonly_and_media_checks() {
    let mut h = backed_up(Profile::default(), 2, 5 * 65536);
    restore_again(&mut h, restore(StatementKind::RestoreVerifyOnly, 2));
    h.perfect();
    assert!(h.outcome().succeeded());
    assert_eq!(h.numbers(), vec![3262]);
    assert_eq!(h.outcome().media.as_deref(), h.s.history().last());

    // One device for a two-family media set: Msg 3132, after the header.
    restore_again(&mut h, restore(StatementKind::RestoreDatabase, 1));
    h.perfect();
    assert_eq!(h.outcome().reason, Some(FailReason::BadMedia));
    assert_eq!(h.numbers(), vec![3132, 3013]);

    // The families in the other device order restore.
    h.client.media.reverse();
    restore_again(&mut h, restore(StatementKind::RestoreDatabase, 2));
    h.perfect();
    assert!(h.outcome().succeeded(), "{:?}", h.outcome());
    // The same family twice: Msg 3227.
    h.client.media[1] = h.client.media[0].clone();
    restore_again(&mut h, restore(StatementKind::RestoreDatabase, 2));
    h.perfect();
    assert_eq!(h.numbers(), vec![3227, 3013]);

    // An empty device: Msg 3254.
    h.client.media = vec![Content::Empty, Content::Empty];
    restore_again(&mut h, restore(StatementKind::RestoreDatabase, 2));
    h.perfect();
    assert_eq!(h.outcome().reason, Some(FailReason::NoBackup));
    assert_eq!(h.numbers(), vec![3254, 3013]);

    let mut h = backed_up(Profile::default(), 1, 5 * 65536);
    let mut st = restore(StatementKind::RestoreDatabase, 1);
    st.options.block_size = 4096;
    restore_again(&mut h, st);
    h.perfect();
    assert_eq!(h.outcome().reason, Some(FailReason::BadMedia));
    // A database backup is no log backup: Msg 3135.
    restore_again(&mut h, restore(StatementKind::RestoreLog, 1));
    h.perfect();
    assert_eq!(h.numbers(), vec![3135, 3013]);

    // Media from another server: the headers say what they hold, this
    // server's history has nothing.
    let mut h = H::default();
    let mut rec = BackupRecord {
        database: "sales".into(),
        kind: StatementKind::BackupLog,
        number: 9,
        block_size: 512,
        max_transfer_size: 65536,
        families: vec![Family {
            origin: 77,
            len: 3 * 65536,
        }],
        meta: Default::default(),
    };
    rec.meta.backup_type = crate::media::BackupType::Log;
    h.client.media = rec.media();
    restore_again(&mut h, restore(StatementKind::RestoreLog, 1));
    h.perfect();
    assert!(h.outcome().succeeded());
    assert!(
        h.outcome().messages[1]
            .text
            .starts_with("RESTORE LOG successfully processed 24 pages"),
        "{:?}",
        h.outcome().messages
    );
    assert_eq!(h.outcome().media.as_deref(), Some(&rec));
}

// ----------------------------------------------------------------------
// errors
// ----------------------------------------------------------------------

/// Answers the `n`th Write with `code`, everything else perfectly.
fn fail_nth_write(h: &mut H, n: usize, code: Win32) {
    let mut k = 0;
    h.run(|_, cmd| {
        if cmd.code == CommandCode::Write {
            k += 1;
            if k == n {
                return Reply::With(done(cmd, code, 0));
            }
        }
        Reply::Perfect
    });
}

/// Clause `io-error.disk-full`: ERROR_DISK_FULL on a Write: IO-ERROR,
/// VDC_ClearError, then SignalAbort; Msg 3202 + 3013.
#[test]
fn io_error_disk_full() {
    let mut h = H::clearing();
    h.start(backup(1, 20 * 65536), set_cfg(1, Features::LikePipe));
    fail_nth_write(&mut h, 3, Win32::ERROR_DISK_FULL);
    let o = h.outcome();
    assert_eq!(o.reason, Some(FailReason::DeviceError));
    assert_eq!(h.numbers(), vec![3202, 3013]);
    assert_eq!(
        o.messages[0].text,
        "Write on \"set1\" failed: 112(There is not enough space on the disk.)"
    );
    assert!(h.codes().contains(&CommandCode::ClearError));
    assert_eq!(h.aborts, 1);
    assert_eq!(h.cmds_after_abort, 0);
    assert!(h.s.history().is_empty(), "a failed backup is not recorded");
    assert_eq!(h.s.devices()[0].errors, vec![Win32::ERROR_DISK_FULL]);
    assert_eq!(h.s.state(), ServerState::AbnormallyTerminated);
    assert!(h.has_clause(id::IO_ERROR_DISK_FULL));
    // ERROR_EOM_OVERFLOW likewise.
    let mut h = H::default();
    h.start(backup(1, 20 * 65536), set_cfg(1, Features::LikePipe));
    fail_nth_write(&mut h, 1, Win32::ERROR_EOM_OVERFLOW);
    assert_eq!(h.outcome().reason, Some(FailReason::DeviceError));
}

/// Clause `io-error.end-of-media`: ERROR_END_OF_MEDIA is a device error
/// (media continuation is not modelled).
#[test]
fn io_error_end_of_media() {
    let mut h = H::default();
    h.start(backup(1, 20 * 65536), set_cfg(1, Features::LikePipe));
    fail_nth_write(&mut h, 2, Win32::ERROR_END_OF_MEDIA);
    assert_eq!(h.outcome().reason, Some(FailReason::DeviceError));
    assert!(
        h.text()
            .contains("1100(The physical end of the tape has been reached.)")
    );
    assert!(h.has_clause(id::IO_ERROR_END_OF_MEDIA));
}

/// Clause `io-error.enter`: an error completion puts the device in IO-ERROR (see below).
#[test]
fn io_error_enter() {
    check_io_error_enter_and_reject_new();
}

/// Clause `io-error.reject-new`: in IO-ERROR only VDC_ClearError is sent (see below).
#[test]
fn io_error_reject_new() {
    check_io_error_enter_and_reject_new();
}

/// Clauses `io-error.enter` and `io-error.reject-new`: after an error
/// completion nothing but VDC_ClearError is sent on the device;
/// auto-completions (ERROR_IO_DEVICE, auto) of queued commands count as not
/// done and free their buffers.
fn check_io_error_enter_and_reject_new() {
    let mut h = H::clearing();
    h.start(backup(1, 20 * 65536), set_cfg(1, Features::LikePipe));
    assert_eq!(h.pending.len(), 4);
    let cmds: Vec<Cmd> = h.pending.drain(..).collect();
    h.complete(done(&cmds[0], Win32::ERROR_WRITE_FAULT, 0));
    // Only ClearError arrived.
    assert_eq!(h.pending.len(), 1);
    assert_eq!(h.pending[0].code, CommandCode::ClearError);
    assert_eq!(h.s.devices()[0].state, DevState::IoError);
    // The client half auto-completes the commands it had queued.
    for c in &cmds[1..] {
        let mut a = done(c, Win32::ERROR_IO_DEVICE, 0);
        a.auto = true;
        h.complete(a);
    }
    assert_eq!(h.pending.len(), 1, "still nothing new");
    assert_eq!(h.s.outstanding(), 1);
    let clear = h.pending.pop_front().unwrap();
    h.complete(done(&clear, Win32::ERROR_SUCCESS, 0));
    assert_eq!(h.aborts, 1);
    assert_eq!(h.outcome().reason, Some(FailReason::DeviceError));
    assert!(
        h.text()
            .contains("29(The system cannot write to the specified device.)")
    );
    assert_eq!(h.s.devices()[0].errors, vec![Win32::ERROR_WRITE_FAULT]);
    assert!(h.has_clause(id::IO_ERROR_ENTER));
    assert!(h.has_clause(id::IO_ERROR_REJECT_NEW));
}

/// Clause `io-error.clear-error-after-outstanding` (see below).
#[test]
fn io_error_clear_error_after_outstanding() {
    check_clear_error();
}

/// Clause `io-error.clear-error-success` (see below).
#[test]
fn io_error_clear_error_success() {
    check_clear_error();
}

/// Clauses `io-error.clear-error-after-outstanding` and
/// `io-error.clear-error-success`: ClearError goes out at once (the client
/// holds it behind the device's earlier commands); its success triggers the
/// abort of the default termination.
fn check_clear_error() {
    let mut h = H::clearing();
    h.start(backup(1, 20 * 65536), set_cfg(1, Features::LikePipe));
    let cmds: Vec<Cmd> = h.pending.drain(..).collect();
    h.complete(done(&cmds[1], Win32::ERROR_WRITE_FAULT, 0));
    let clear = h.pending.pop_front().unwrap();
    assert_eq!(clear.code, CommandCode::ClearError);
    // Earlier outstanding commands are completed by the client first.
    for c in [&cmds[0], &cmds[2], &cmds[3]] {
        let a = h.client.answer(c);
        h.complete(a);
    }
    assert_eq!(h.aborts, 0, "no abort before ClearError completes");
    assert!(!h.s.is_idle());
    h.complete(done(&clear, Win32::ERROR_SUCCESS, 0));
    assert_eq!(h.aborts, 1);
    assert!(h.s.is_idle());
    assert!(h.has_clause(id::IO_ERROR_CLEAR_ERROR_AFTER_OUTSTANDING));
    assert!(h.has_clause(id::IO_ERROR_CLEAR_ERROR_SUCCESS));
}

/// Clause `io-error.close-or-abort`: the four error terminations.
#[test]
fn io_error_close_or_abort() {
    // Abort: SignalAbort at once, no ClearError.
    let mut h = H::new(Profile {
        error_termination: ErrorTermination::Abort,
        ..Profile::default()
    });
    h.start(backup(1, 20 * 65536), set_cfg(1, Features::LikePipe));
    fail_nth_write(&mut h, 2, Win32::ERROR_WRITE_FAULT);
    assert_eq!(h.aborts, 1);
    assert!(!h.codes().contains(&CommandCode::ClearError));
    assert_eq!(h.outcome().reason, Some(FailReason::DeviceError));
    assert!(h.closes.is_empty());

    // ClearErrorThenClose: ClearError, then CloseDevice everywhere; failed.
    let mut h = H::new(Profile {
        error_termination: ErrorTermination::ClearErrorThenClose,
        ..Profile::default()
    });
    h.start(backup(2, 20 * 65536), set_cfg(2, Features::LikePipe));
    fail_nth_write(&mut h, 3, Win32::ERROR_WRITE_FAULT);
    assert_eq!(h.aborts, 0);
    assert!(h.codes().contains(&CommandCode::ClearError));
    assert_eq!(h.closes.len(), 2);
    assert_eq!(h.outcome().status, Status::Failed);
    assert_eq!(h.s.state(), ServerState::NormallyTerminated);
    assert!(h.s.devices().iter().all(|d| d.state == DevState::Closed));
    assert!(h.has_clause(id::IO_ERROR_CLOSE_OR_ABORT));

    // DrainThenClose (the default): no ClearError, no SignalAbort; once
    // nothing is outstanding every device is closed; the statement fails
    // with its messages.
    let mut h = H::default();
    assert_eq!(
        h.s.profile().error_termination,
        ErrorTermination::DrainThenClose
    );
    h.start(backup(2, 20 * 65536), set_cfg(2, Features::LikePipe));
    fail_nth_write(&mut h, 3, Win32::ERROR_WRITE_FAULT);
    assert_eq!(h.aborts, 0);
    assert!(!h.codes().contains(&CommandCode::ClearError));
    assert_eq!(h.closes.len(), 2);
    assert_eq!(h.s.outstanding(), 0);
    assert_eq!(h.outcome().status, Status::Failed);
    assert_eq!(h.outcome().reason, Some(FailReason::DeviceError));
    let numbers: Vec<u32> = h.outcome().messages.iter().map(|m| m.number).collect();
    assert_eq!(numbers, vec![3202, 3013]);
    assert_eq!(h.s.state(), ServerState::NormallyTerminated);
    assert!(h.has_clause(id::IO_ERROR_CLOSE_OR_ABORT));
}

/// Clause `term.outcome-decides`: devices can all close normally while the
/// statement fails (the client must read the outcome).
#[test]
fn term_outcome_decides() {
    let mut h = H::new(Profile {
        error_termination: ErrorTermination::ClearErrorThenClose,
        ..Profile::default()
    });
    h.start(backup(1, 8 * 65536), set_cfg(1, Features::LikePipe));
    // A short transfer (no IO-ERROR): drain, then close.
    let mut first = true;
    h.run(|cl, cmd| {
        let mut c = cl.answer(cmd);
        if cmd.code == CommandCode::Write && first {
            first = false;
            c.bytes = 1024;
        }
        Reply::With(c)
    });
    assert_eq!(h.outcome().reason, Some(FailReason::ShortTransfer));
    assert_eq!(h.closes, vec![0]);
    assert_eq!(h.aborts, 0);
    assert!(!h.codes().contains(&CommandCode::ClearError));
    assert!(h.has_clause(id::TERM_OUTCOME_DECIDES));
}

/// Clause `io-error.one-device-fails`: with three devices, one failing
/// device aborts the whole set (the others see VD_E_ABORT).
#[test]
fn io_error_one_device_fails() {
    let mut h = H::clearing();
    h.start(backup(3, 30 * 65536), set_cfg(3, Features::LikePipe));
    h.run(|_, cmd| {
        if cmd.dev == 1 && cmd.code == CommandCode::Write && cmd.position >= 65536 {
            return Reply::With(done(cmd, Win32::ERROR_WRITE_FAULT, 0));
        }
        Reply::Perfect
    });
    assert_eq!(h.aborts, 1);
    assert_eq!(h.outcome().reason, Some(FailReason::DeviceError));
    assert!(h.text().contains("Write on \"dev2\" failed"));
    let devs = h.s.devices();
    assert!(devs.iter().all(|d| d.state == DevState::Aborted));
    assert!(!devs[1].errors.is_empty());
    assert!(devs[0].errors.is_empty());
    assert!(h.has_clause(id::IO_ERROR_ONE_DEVICE_FAILS));
}

/// Clause `flush.final-veto`: an error on the final Flush vetoes the backup.
#[test]
fn flush_final_veto() {
    let mut h = H::default();
    h.start(backup(1, 4 * 65536), set_cfg(1, Features::LikePipe));
    h.run(|_, cmd| {
        if cmd.code == CommandCode::Flush {
            return Reply::With(done(cmd, Win32::ERROR_BAD_ENVIRONMENT, 0));
        }
        Reply::Perfect
    });
    assert_eq!(h.outcome().reason, Some(FailReason::Vetoed));
    assert!(h.s.history().is_empty());
    assert_eq!(h.numbers(), vec![3202, 3013]);
    assert!(h.has_clause(id::FLUSH_FINAL_VETO));
    // A mid-stream Flush failing is a plain device error.
    let mut h = H::default();
    let mut st = backup(1, 4 * 65536);
    st.plan.mid_flushes = 1;
    h.start(st, set_cfg(1, Features::LikePipe));
    h.run(|_, cmd| {
        if cmd.code == CommandCode::Flush {
            return Reply::With(done(cmd, Win32::ERROR_WRITE_FAULT, 0));
        }
        Reply::Perfect
    });
    assert_eq!(h.outcome().reason, Some(FailReason::DeviceError));
}

/// Clause `complete.veto`: an error on VDC_Complete vetoes the backup.
#[test]
fn complete_veto() {
    let mut h = H::default();
    h.start(backup(2, 4 * 65536), set_cfg(2, Features::RequestComplete));
    h.run(|_, cmd| {
        if cmd.code == CommandCode::Complete && cmd.dev == 1 {
            return Reply::With(done(cmd, Win32::ERROR_BAD_ENVIRONMENT, 0));
        }
        Reply::Perfect
    });
    assert_eq!(h.outcome().reason, Some(FailReason::Vetoed));
    assert!(h.s.history().is_empty());
    assert!(h.has_clause(id::COMPLETE_VETO));
}

/// Clause `command.short-transfer`, policy `fail`: ERROR_SUCCESS with fewer
/// bytes fails the statement (writes and reads).
#[test]
fn command_short_transfer_fail() {
    let mut h = H::clearing();
    h.start(backup(1, 8 * 65536), set_cfg(1, Features::LikePipe));
    let mut first = true;
    h.run(|cl, cmd| {
        let mut c = cl.answer(cmd);
        if cmd.code == CommandCode::Write && first {
            first = false;
            c.bytes = 512;
        }
        Reply::With(c)
    });
    assert_eq!(h.outcome().reason, Some(FailReason::ShortTransfer));
    assert_eq!(h.aborts, 1);
    assert!(h.text().contains("Only 512 of 65536 bytes"));

    let mut h = backed_up(Profile::default(), 1, 8 * 65536);
    restore_again(&mut h, restore(StatementKind::RestoreDatabase, 1));
    let mut n = 0;
    h.run(|cl, cmd| {
        n += 1;
        if n == 2 {
            // Read only half, report success.
            let half = Cmd {
                size: cmd.size / 2,
                ..cmd.clone()
            };
            return Reply::With(Completion {
                id: cmd.id,
                ..cl.answer(&half)
            });
        }
        Reply::Perfect
    });
    assert_eq!(h.outcome().reason, Some(FailReason::ShortTransfer));
    assert!(h.has_clause(id::COMMAND_SHORT_TRANSFER));
}

/// Clause `command.short-transfer`, policy `reissue`: the remainder of a
/// short Write is written again when that keeps the pipe in order (here:
/// one write in flight at a time); a short Read lowers the request cursor so
/// more is read; both streams stay byte-exact. A short write with later
/// writes already sent cannot be reissued in order: the statement fails.
#[test]
fn command_short_transfer_reissue() {
    let p = Profile {
        short_transfer: ShortTransfer::Reissue,
        ..Profile::default()
    };
    // Later writes already sent: no in-order reissue is possible.
    let mut h = H::new(p.clone());
    h.start(backup(1, 8 * 65536), set_cfg(1, Features::LikePipe));
    let mut n = 0;
    h.run(|cl, cmd| {
        if cmd.code == CommandCode::Write {
            n += 1;
            if n == 1 {
                cl.grow(0);
                cl.media[0].append(&cmd.data.slice(0, u64::from(cmd.size / 2)));
                return Reply::With(done(cmd, Win32::ERROR_SUCCESS, u64::from(cmd.size / 2)));
            }
        }
        Reply::Perfect
    });
    assert_eq!(
        h.outcome().reason,
        Some(FailReason::ShortTransfer),
        "{:?}",
        h.outcome()
    );

    let p = Profile {
        queue_depth_per_device: 1,
        ..p
    };
    let mut h = H::new(p.clone());
    h.start(backup(1, 8 * 65536), set_cfg(1, Features::LikePipe));
    let mut n = 0;
    // A client that accepts half of every third write and appends it.
    h.run(|cl, cmd| {
        if cmd.code == CommandCode::Write {
            n += 1;
            if n % 3 == 0 {
                let keep = u64::from(cmd.size / 2);
                cl.grow(0);
                cl.media[0].append(&cmd.data.slice(0, keep));
                return Reply::With(done(cmd, Win32::ERROR_SUCCESS, keep));
            }
        }
        Reply::Perfect
    });
    assert!(h.outcome().succeeded(), "{:?}", h.outcome());
    let reissued: Vec<&Cmd> = h
        .all
        .iter()
        .filter(|c| c.code == CommandCode::Write && c.size == 32768)
        .collect();
    assert!(!reissued.is_empty());
    assert_eq!(h.outcome().bytes, 9 * 65536);

    // Reads: every read comes back half full; the restore still verifies.
    let mut h = backed_up(p.clone(), 1, 8 * 65536);
    restore_again(&mut h, restore(StatementKind::RestoreDatabase, 1));
    h.run(|cl, cmd| {
        let half = Cmd {
            size: (cmd.size / 2).max(512),
            ..cmd.clone()
        };
        let mut c = cl.answer(&half);
        c.id = cmd.id;
        Reply::With(c)
    });
    assert!(h.outcome().succeeded(), "{:?}", h.outcome());
    assert_eq!(h.outcome().bytes, 9 * 65536, "the header and the data");
    assert!(h.all.len() > 9);

    // Zero progress forever is bounded.
    let mut h = H::new(p);
    h.start(backup(1, 65536), set_cfg(1, Features::LikePipe));
    h.run(|_, cmd| {
        if cmd.code == CommandCode::Write {
            return Reply::With(done(cmd, Win32::ERROR_SUCCESS, 0));
        }
        Reply::Perfect
    });
    assert_eq!(h.outcome().reason, Some(FailReason::ShortTransfer));
    assert!(h.has_clause(id::COMMAND_SHORT_TRANSFER));
}

/// Clause `command.not-supported`: a probe answered ERROR_NOT_SUPPORTED (or
/// ERROR_SUCCESS) changes nothing; a required command answered so is a
/// device error.
#[test]
fn command_not_supported() {
    let mut h = H::default();
    let mut st = backup(2, 6 * 65536);
    st.plan.extra_commands = vec![
        ExtraCommand {
            dev: 0,
            after_data_commands: 1,
            code: CommandCode::Rewind,
        },
        ExtraCommand {
            dev: 1,
            after_data_commands: 99,
            code: CommandCode::GetError,
        },
        ExtraCommand {
            dev: 0,
            after_data_commands: 2,
            code: CommandCode::FileInfoBegin,
        },
        ExtraCommand {
            dev: 7,
            after_data_commands: 0,
            code: CommandCode::Discard,
        },
    ];
    h.start(st, set_cfg(2, Features::LikePipe));
    h.run(|_, cmd| {
        if cmd.code == CommandCode::FileInfoBegin {
            return Reply::With(done(cmd, Win32::ERROR_SUCCESS, 0));
        }
        Reply::Perfect
    });
    assert!(h.outcome().succeeded(), "{:?}", h.outcome());
    let codes = h.codes();
    assert!(codes.contains(&CommandCode::Rewind));
    assert!(
        codes.contains(&CommandCode::GetError),
        "untriggered probes go out at the end of the stream"
    );
    assert!(codes.contains(&CommandCode::FileInfoBegin));
    assert!(!codes.contains(&CommandCode::Discard));
    assert_eq!(h.client.media[0], h.s.history()[0].family_media(0));
    assert!(h.has_clause(id::COMMAND_NOT_SUPPORTED));

    let mut h = H::default();
    h.start(backup(1, 4 * 65536), set_cfg(1, Features::LikePipe));
    fail_nth_write(&mut h, 1, Win32::ERROR_NOT_SUPPORTED);
    assert_eq!(h.outcome().reason, Some(FailReason::DeviceError));
}

/// Mimics the client half entering IO-ERROR: every pending command of
/// `dev` except ClearError is auto-completed with ERROR_IO_DEVICE.
fn auto_complete_pending(h: &mut H, dev: DevIx) {
    let (mine, rest): (Vec<Cmd>, Vec<Cmd>) = h
        .pending
        .drain(..)
        .partition(|c| c.dev == dev && c.code != CommandCode::ClearError);
    h.pending.extend(rest);
    for c in mine {
        let mut a = done(&c, Win32::ERROR_IO_DEVICE, 0);
        a.auto = true;
        h.complete(a);
    }
}

/// Clause `io-error.not-supported`: with `not-supported-enters-io-error` a
/// probe answered ERROR_NOT_SUPPORTED puts the device into IO-ERROR; the
/// server clears it, sends again what the client half auto-completed, and
/// the backup still succeeds byte for byte.
#[test]
fn io_error_not_supported() {
    let mut h = H::new(Profile {
        not_supported_enters_io_error: true,
        ..Profile::default()
    });
    let mut st = backup(1, 12 * 65536);
    st.plan.extra_commands = vec![ExtraCommand {
        dev: 0,
        after_data_commands: 2,
        code: CommandCode::GetError,
    }];
    h.start(st, set_cfg(1, Features::LikePipe));
    let mut steps = 0;
    while let Some(cmd) = h.pending.pop_front() {
        steps += 1;
        assert!(steps < 1000);
        let a = h.client.answer(&cmd);
        let enters = a.code == Win32::ERROR_NOT_SUPPORTED;
        h.complete(a);
        if enters {
            assert_eq!(h.s.devices()[0].state, DevState::IoError);
            auto_complete_pending(&mut h, cmd.dev);
        }
    }
    assert!(h.outcome().succeeded(), "{:?}", h.outcome());
    assert!(h.codes().contains(&CommandCode::ClearError));
    assert_eq!(h.client.media[0], h.s.history()[0].family_media(0));
    assert!(h.has_clause(id::IO_ERROR_NOT_SUPPORTED));

    // Without the profile key the probe is simply not performed.
    let mut h = H::default();
    let mut st = backup(1, 4 * 65536);
    st.plan.extra_commands = vec![ExtraCommand {
        dev: 0,
        after_data_commands: 1,
        code: CommandCode::GetError,
    }];
    h.start(st, set_cfg(1, Features::LikePipe));
    h.perfect();
    assert!(h.outcome().succeeded());
    assert!(!h.codes().contains(&CommandCode::ClearError));
}

/// Clause `io-error.eof`: with `eof-enters-io-error` the EOF of the last
/// read puts the device into IO-ERROR and VDC_ClearError follows before the
/// restore ends; a truncated stream still fails, after the ClearError.
#[test]
fn io_error_eof() {
    let p = Profile {
        eof_enters_io_error: true,
        restore_overread: true,
        ..clear_then_abort()
    };
    let mut h = backed_up(p.clone(), 1, 5 * 65536 + 1024);
    restore_again(&mut h, restore(StatementKind::RestoreDatabase, 1));
    h.perfect();
    assert!(h.outcome().succeeded(), "{:?}", h.outcome());
    assert_eq!(h.codes().last(), Some(&CommandCode::ClearError));
    assert!(h.has_clause(id::IO_ERROR_EOF));

    let mut h = backed_up(p, 1, 8 * 65536);
    let cut = h.client.media[0].slice(0, 2 * 65536);
    h.client.media[0] = cut;
    restore_again(&mut h, restore(StatementKind::RestoreDatabase, 1));
    while let Some(cmd) = h.pending.pop_front() {
        let a = h.client.answer(&cmd);
        let enters = a.code == Win32::ERROR_HANDLE_EOF;
        h.complete(a);
        if enters {
            auto_complete_pending(&mut h, cmd.dev);
        }
    }
    assert_eq!(h.outcome().reason, Some(FailReason::BadMedia));
    assert!(h.codes().contains(&CommandCode::ClearError));
    assert_eq!(h.aborts, 1);
}

// ----------------------------------------------------------------------
// open, configuration
// ----------------------------------------------------------------------

/// Clause `server.open-missing-set`: no set under the first device name:
/// Msg 3201 + 3013, nothing sent to any client.
#[test]
fn server_open_missing_set() {
    let mut h = H::default();
    h.start_with(backup(1, 65536), None);
    let o = h.outcome();
    assert_eq!(o.status, Status::Failed);
    assert_eq!(o.reason, Some(FailReason::OpenFailed));
    assert_eq!(
        o.messages[0].text,
        "Cannot open backup device 'set1'. Operating system error 0x80070002(The system cannot find the file specified.)."
    );
    assert_eq!(h.numbers(), vec![3201, 3013]);
    assert!(h.cfg.is_none() && h.all.is_empty() && h.aborts == 0);
    assert!(h.s.is_idle());
    assert_eq!(h.s.state(), ServerState::Dne);
    assert!(h.has_clause(id::SERVER_OPEN_MISSING_SET));
}

/// Invalid WITH options fail before the set is opened.
#[test]
fn bad_options_fail_before_open() {
    let mut h = H::default();
    let mut st = backup(1, 65536);
    st.options.block_size = 1000;
    h.start(st, set_cfg(1, Features::LikePipe));
    assert_eq!(h.outcome().reason, Some(FailReason::BadOptions));
    assert!(h.cfg.is_none() && h.aborts == 0);
    assert!(h.text().contains("BLOCKSIZE = 1000"));
}

/// Clause `stripe.device-count-mismatch`: VIRTUAL_DEVICE clauses ≠
/// deviceCount fails and aborts the set (the client is not left waiting);
/// a tolerant profile uses the devices both sides know.
#[test]
fn stripe_device_count_mismatch() {
    let mut h = H::default();
    h.start(backup(1, 65536), set_cfg(2, Features::LikePipe));
    assert_eq!(h.outcome().reason, Some(FailReason::DeviceCountMismatch));
    assert_eq!(h.aborts, 1);
    assert!(h.cfg.is_none());
    assert_eq!(h.numbers(), vec![18210, 3013]);
    assert!(h.has_clause(id::STRIPE_DEVICE_COUNT_MISMATCH));

    let mut h = H::new(Profile {
        device_count_mismatch_fails: false,
        ..Profile::default()
    });
    h.start(backup(3, 4 * 65536), set_cfg(2, Features::LikePipe));
    h.perfect();
    assert!(h.outcome().succeeded());
    assert_eq!(h.s.devices().len(), 2);
    assert_eq!(h.s.history()[0].families.len(), 2);
}

// ----------------------------------------------------------------------
// abort
// ----------------------------------------------------------------------

/// Clauses `abort.client-signal` and `signal-abort.effects`: a client
/// SignalAbort mid-stream completes everything outstanding with 995 on the
/// server side; the statement fails with 18210 (995) and 3013; nothing is
/// sent back; later completions are ignored.
#[test]
fn abort_client_signal() {
    let mut h = H::default();
    h.start(backup(2, 20 * 65536), set_cfg(2, Features::LikePipe));
    let held: Vec<Cmd> = h.pending.drain(..).collect();
    assert!(!held.is_empty());
    h.send(ToServer::Abort);
    let o = h.outcome().clone();
    assert_eq!(o.reason, Some(FailReason::ClientAbort));
    assert_eq!(o.messages.last().unwrap().number, 3013);
    assert!(o.messages.iter().any(|m| m.number == 18210));
    assert!(o.messages[0].text.contains("BackupMedium::ReportIoError: write failure on backup device 'set1'. Operating system error 995(The I/O operation has been aborted"));
    assert_eq!(h.aborts, 0, "the client already knows");
    assert_eq!(h.s.outstanding(), 0);
    let aborted =
        h.tr.events()
            .iter()
            .filter(|e| {
                e.clause == Some(id::SIGNAL_ABORT_EFFECTS)
                    && e.detail.contains("ERROR_OPERATION_ABORTED (995)")
            })
            .count();
    assert_eq!(aborted, held.len());
    // Completions after the abort are ignored.
    for c in &held {
        let a = h.client.answer(c);
        h.complete(a);
    }
    assert!(h.all.len() == held.len() && h.pending.is_empty());
    assert_eq!(h.outcome(), &o);
    assert!(h.has_clause(id::ABORT_CLIENT_SIGNAL));
    assert!(h.has_clause(id::SIGNAL_ABORT_EFFECTS));
    assert!(h.has_clause(id::ABORT_STATEMENT_FAILS));
}

/// Clause `signal-abort.effects`: a server SignalAbort completes every
/// outstanding command with ERROR_OPERATION_ABORTED server-side, frees every
/// buffer, and ignores completions reported later.
#[test]
fn signal_abort_effects() {
    let mut h = H::default();
    h.start(backup(3, 30 * 65536), set_cfg(3, Features::LikePipe));
    let held: Vec<Cmd> = h.pending.drain(..).collect();
    assert_eq!(held.len(), 12);
    let mut out = Vec::new();
    h.s.signal_abort(7, &mut out, &mut h.tr);
    h.absorb(out);
    assert_eq!(h.s.outstanding(), 0);
    let n =
        h.tr.events()
            .iter()
            .filter(|e| {
                e.clause == Some(id::SIGNAL_ABORT_EFFECTS) && e.detail.contains("(995) server-side")
            })
            .count();
    assert_eq!(n, 12);
    assert!(h.s.devices().iter().all(|d| d.state == DevState::Aborted));
    for c in &held {
        let a = h.client.answer(c);
        h.complete(a);
    }
    let ignored =
        h.tr.events()
            .iter()
            .filter(|e| e.what == "CompletionIgnored")
            .count();
    assert_eq!(ignored, 12);
    assert!(h.pending.is_empty());
}

/// Clause `abort.client-death` (and Close with devices open): same
/// server-side effects as a client abort.
#[test]
fn abort_client_death() {
    for m in [ToServer::Died, ToServer::Closed] {
        let mut h = H::default();
        let mut st = backup(1, 20 * 65536);
        st.plan.mid_flushes = 1;
        h.start(st, set_cfg(1, Features::LikePipe));
        // Run until the mid Flush is outstanding.
        while let Some(c) = h.pending.pop_front() {
            if c.code == CommandCode::Flush {
                break;
            }
            let a = h.client.answer(&c);
            h.complete(a);
        }
        h.send(m.clone());
        assert_eq!(h.outcome().reason, Some(FailReason::ClientAbort));
        assert!(
            h.text().contains("BackupVirtualDeviceFile::RequestDurableMedia: Flush failure on backup device 'set1'. Operating system error 995"),
            "{}",
            h.text()
        );
        assert!(h.s.devices()[0].state == DevState::Aborted);
    }
    let mut h = H::default();
    h.start(backup(1, 65536), set_cfg(1, Features::LikePipe));
    h.send(ToServer::Died);
    assert!(h.has_clause(id::ABORT_CLIENT_DEATH));
    // A Closed after a finished statement is the normal end: ignored.
    let mut h = backed_up(Profile::default(), 1, 65536);
    let before = h.outcome().clone();
    h.send(ToServer::Closed);
    h.send(ToServer::Abort);
    assert_eq!(h.outcome(), &before);
}

/// Clause `abort.client-signal` during a RESTORE: the 18210 line names the
/// outstanding read.
#[test]
fn abort_client_signal_during_restore() {
    let mut h = backed_up(Profile::default(), 1, 4 * 65536);
    restore_again(&mut h, restore(StatementKind::RestoreDatabase, 1));
    h.pending.clear();
    h.send(ToServer::Abort);
    assert_eq!(h.outcome().reason, Some(FailReason::ClientAbort));
    assert!(
        h.text().contains("BackupMedium::ReportIoError: read failure on backup device 'set1'. Operating system error 995"),
        "{}",
        h.text()
    );
    assert_eq!(
        h.outcome().messages.last().unwrap().text,
        "RESTORE DATABASE is terminating abnormally."
    );
}

/// Clause `abort.attention`: an attention aborts the running statement as
/// KILL does (one ToClient::Abort, Msg 3204 and 3013, reason Cancelled, no
/// backup recorded); a second attention, or one with nothing running, is
/// only acknowledged.
#[test]
fn abort_attention() {
    let mut h = H::default();
    h.start(backup(2, 20 * 65536), set_cfg(2, Features::LikePipe));
    let held: Vec<Cmd> = h.pending.drain(..).collect();
    assert!(!held.is_empty());
    h.now += 5;
    let mut out = Vec::new();
    h.s.attention(h.now, &mut out, &mut h.tr);
    h.s.attention(h.now, &mut out, &mut h.tr);
    h.absorb(out);
    assert_eq!(h.aborts, 1);
    assert_eq!(h.outcome().reason, Some(FailReason::Cancelled));
    assert_eq!(h.numbers(), vec![3204, 3013]);
    assert!(
        h.s.history().is_empty(),
        "a cancelled backup is not recorded"
    );
    assert!(h.has_clause(id::ABORT_ATTENTION));
    let jsonl = h.tr.to_jsonl();
    assert_eq!(jsonl.matches("\"Attention\"").count(), 1, "{jsonl}");
    assert!(jsonl.contains("AttentionIgnored"), "{jsonl}");
}

/// Clause `abort.disconnect`: the statement's connection ends without an
/// attention; the profile decides whether the statement runs to its end or
/// is cancelled.
#[test]
fn abort_disconnect_follows_the_profile() {
    for (rule, cancelled) in [
        (vdi_spec::profile::Disconnect::RunToEnd, false),
        (vdi_spec::profile::Disconnect::Abort, true),
    ] {
        let mut h = H::new(Profile {
            disconnect_without_attention: rule,
            ..Profile::default()
        });
        h.start(backup(1, 4 * 65536), set_cfg(1, Features::LikePipe));
        let mut out = Vec::new();
        h.s.disconnected(h.now, &mut out, &mut h.tr);
        h.absorb(out);
        assert!(h.has_clause(id::ABORT_DISCONNECT), "{rule:?}");
        if cancelled {
            assert_eq!(h.outcome().reason, Some(FailReason::Cancelled));
            assert_eq!(h.aborts, 1);
        } else {
            assert_eq!(h.aborts, 0);
            h.perfect();
            assert!(h.outcome().succeeded(), "{:?}", h.outcome());
        }
    }
}

/// Clause `abort.server-signal` (see below).
#[test]
fn abort_server_signal() {
    check_server_abort();
}

/// Clause `abort.no-commands-after` (see below).
#[test]
fn abort_no_commands_after() {
    check_server_abort();
}

/// Clauses `abort.server-signal` and `abort.no-commands-after`: server
/// SignalAbort sends ToClient::Abort exactly once and nothing after it.
fn check_server_abort() {
    let mut h = H::default();
    h.start(backup(2, 20 * 65536), set_cfg(2, Features::LikePipe));
    let held: Vec<Cmd> = h.pending.drain(..).collect();
    h.now += 5;
    let mut out = Vec::new();
    h.s.signal_abort(h.now, &mut out, &mut h.tr);
    h.s.signal_abort(h.now, &mut out, &mut h.tr);
    h.absorb(out);
    assert_eq!(h.aborts, 1);
    assert_eq!(h.outcome().reason, Some(FailReason::ServerAbort));
    assert_eq!(h.numbers(), vec![3204, 3013]);
    for c in &held {
        let a = h.client.answer(c);
        h.complete(a);
    }
    h.send(ToServer::Abort);
    let mut out = Vec::new();
    h.s.close_device_early(h.now, 0, &mut out, &mut h.tr);
    h.s.on_time(h.now + 1_000_000, &mut out, &mut h.tr);
    h.absorb(out);
    assert_eq!(h.cmds_after_abort, 0);
    assert_eq!(h.aborts, 1);
    assert!(h.closes.is_empty());
    assert_eq!(h.s.state(), ServerState::AbnormallyTerminated);
    assert!(h.has_clause(id::ABORT_SERVER_SIGNAL));
    assert!(h.has_clause(id::ABORT_NO_COMMANDS_AFTER));
}

/// Clause `abort.server-death`: the server dies: Failed/ServerDied, nothing
/// emitted, every later input ignored.
#[test]
fn abort_server_death() {
    let mut h = H::default();
    h.start(backup(1, 20 * 65536), set_cfg(1, Features::LikePipe));
    let held: Vec<Cmd> = h.pending.drain(..).collect();
    h.s.die(h.now, &mut h.tr);
    h.s.die(h.now, &mut h.tr);
    assert_eq!(h.outcome().reason, Some(FailReason::ServerDied));
    assert_eq!(h.numbers(), vec![10054], "the connection's transport error");
    for c in &held {
        let a = h.client.answer(c);
        h.complete(a);
    }
    h.send(ToServer::Abort);
    assert!(h.pending.is_empty() && h.aborts == 0);
    assert_eq!(h.s.next_deadline(), None);
    assert!(h.s.is_dead());
    h.start(backup(1, 65536), set_cfg(1, Features::LikePipe));
    assert_eq!(h.outcome().reason, Some(FailReason::ServerDied));
    assert!(h.cfg.is_none());
    assert!(h.has_clause(id::ABORT_SERVER_DEATH));
}

/// Clause `abort.statement-fails`: every abort path ends the statement as
/// failed, with Msg 3013 last.
#[test]
fn abort_statement_fails() {
    let mut h = H::default();
    h.start(backup(1, 20 * 65536), set_cfg(1, Features::LikePipe));
    h.send(ToServer::Abort);
    assert_eq!(h.outcome().status, Status::Failed);
    assert_eq!(h.outcome().messages.last().unwrap().number, 3013);
    assert!(h.outcome().ended_ms.is_some());
    assert!(h.has_clause(id::ABORT_STATEMENT_FAILS));
}

// ----------------------------------------------------------------------
// watchdog
// ----------------------------------------------------------------------

fn watchdog_backup(sto: u32) -> H {
    let mut h = H::default();
    let mut cfg = set_cfg(1, Features::LikePipe);
    cfg.server_time_out = sto;
    h.now = 100;
    h.start(backup(1, 20 * 65536), cfg);
    h
}

/// Clause `watchdog.fires`: nothing completing for 2 × serverTimeOut with
/// commands outstanding aborts the set (outstanding commands end with 995).
#[test]
fn watchdog_fires() {
    let mut h = watchdog_backup(1000);
    assert_eq!(h.s.next_deadline(), Some(2100));
    h.tick(2099);
    assert_eq!(h.aborts, 0);
    h.tick(2100);
    assert_eq!(h.aborts, 1);
    assert_eq!(h.outcome().reason, Some(FailReason::Watchdog));
    assert!(h.text().contains("995"));
    assert_eq!(h.s.next_deadline(), None);
    assert!(h.has_clause(id::WATCHDOG_FIRES));
    assert!(h.has_clause(id::SIGNAL_ABORT_EFFECTS));
}

/// Clause `watchdog.disabled`: serverTimeOut 0 arms no deadline.
#[test]
fn watchdog_disabled() {
    let mut h = watchdog_backup(0);
    assert!(h.s.outstanding() > 0);
    assert_eq!(h.s.next_deadline(), None);
    h.tick(u64::MAX / 2);
    assert_eq!(h.aborts, 0);
    assert!(!h.s.is_idle());
    assert!(h.has_clause(id::WATCHDOG_DISABLED));
}

/// Clause `watchdog.reset-on-completion`: every completion restarts the
/// interval; with nothing outstanding there is no deadline.
#[test]
fn watchdog_reset_on_completion() {
    let mut h = watchdog_backup(1000);
    let c = h.pending.pop_front().unwrap();
    h.now = 1500;
    let a = h.client.answer(&c);
    h.complete(a); // now = 1501
    assert_eq!(h.s.next_deadline(), Some(3501));
    h.tick(3000);
    assert_eq!(h.aborts, 0);
    // Finish everything: no deadline afterwards.
    h.perfect();
    assert!(h.outcome().succeeded());
    assert_eq!(h.s.next_deadline(), None);
    assert!(h.has_clause(id::WATCHDOG_RESET_ON_COMPLETION));
}

// ----------------------------------------------------------------------
// robustness
// ----------------------------------------------------------------------

/// Early CloseDevice on a backup device: the statement fails but every
/// device is closed normally; on a HEADERONLY idle device nothing changes.
#[test]
fn close_device_early_fault() {
    let mut h = H::default();
    h.start(backup(2, 20 * 65536), set_cfg(2, Features::LikePipe));
    let mut out = Vec::new();
    h.s.close_device_early(h.now, 1, &mut out, &mut h.tr);
    h.absorb(out);
    assert_eq!(h.closes, vec![1]);
    h.run(|_, cmd| {
        assert!(cmd.code == CommandCode::Write);
        Reply::Perfect
    });
    assert_eq!(h.outcome().reason, Some(FailReason::DeviceError));
    assert!(h.text().contains("6(The handle is invalid.)"));
    assert_eq!(h.closes.len(), 2);
    assert_eq!(h.aborts, 0);

    let mut h = backed_up(Profile::default(), 2, 4 * 65536);
    restore_again(&mut h, restore(StatementKind::RestoreHeaderOnly, 2));
    let mut out = Vec::new();
    h.s.close_device_early(h.now, 1, &mut out, &mut h.tr);
    h.absorb(out);
    h.perfect();
    assert!(h.outcome().succeeded());
}

/// Unknown ids, duplicates, messages in any state, starts while running:
/// ignored and traced, never a panic.
#[test]
fn stray_inputs_are_ignored() {
    let mut h = H::default();
    // Before any statement.
    h.send(ToServer::Abort);
    h.send(ToServer::Closed);
    h.send(ToServer::Died);
    h.complete(Completion {
        id: CmdId(5),
        dev: 40,
        code: Win32::ERROR_SUCCESS,
        bytes: 1,
        position: 0,
        data: Content::Empty,
        auto: false,
    });
    assert_eq!(h.outcome().status, Status::NotStarted);
    let mut out = Vec::new();
    h.s.signal_abort(0, &mut out, &mut h.tr);
    h.s.close_device_early(0, 3, &mut out, &mut h.tr);
    h.s.on_time(99, &mut out, &mut h.tr);
    assert!(out.is_empty());

    h.start(backup(1, 8 * 65536), set_cfg(1, Features::LikePipe));
    let saved: Vec<Cmd> = h.pending.drain(..).collect();
    // Start while running: ignored.
    h.start_with(backup(1, 65536), None);
    assert_eq!(h.outcome().status, Status::Running);
    h.pending.extend(saved.iter().skip(1).cloned());
    let first = saved[0].clone();
    let a = h.client.answer(&first);
    h.complete(a.clone());
    h.complete(a); // duplicate
    h.complete(Completion {
        id: CmdId(9999),
        ..done(&first, Win32::ERROR_SUCCESS, 0)
    });
    // Wrong device index in a completion still finds the command.
    let next = h.pending.pop_front().unwrap();
    let mut a = h.client.answer(&next);
    a.dev = 5;
    h.complete(a);
    assert_eq!(h.s.outstanding() as usize, h.pending.len());
    assert!(h.has_clause(id::STRIPE_DISTRIBUTION));
    assert!(h.tr.events().iter().any(|e| e.what == "CompletionIgnored"));
}

/// A deterministic storm of arbitrary messages never panics and keeps the
/// invariants: no command after ToClient::Abort, at most one Abort.
#[test]
fn fuzz_arbitrary_messages() {
    let codes = [
        Win32::ERROR_SUCCESS,
        Win32::ERROR_SUCCESS,
        Win32::ERROR_SUCCESS,
        Win32::ERROR_HANDLE_EOF,
        Win32::ERROR_NOT_SUPPORTED,
        Win32::ERROR_DISK_FULL,
        Win32::ERROR_IO_DEVICE,
        Win32::ERROR_OPERATION_ABORTED,
        Win32(4242),
    ];
    for seed in 0..300u64 {
        let r = |k: u64| splitmix(seed.wrapping_mul(1000) ^ k);
        let p = Profile {
            short_transfer: if r(1) % 2 == 0 {
                ShortTransfer::Fail
            } else {
                ShortTransfer::Reissue
            },
            error_termination: [
                ErrorTermination::Abort,
                ErrorTermination::ClearErrorThenAbort,
                ErrorTermination::ClearErrorThenClose,
                ErrorTermination::DrainThenClose,
            ][(r(2) % 4) as usize],
            eof_enters_io_error: r(3) % 2 == 0,
            restore_overread: r(4) % 2 == 0,
            ..Profile::default()
        };
        let n = 1 + (r(5) % 3) as usize;
        let mut h = backed_up(p, n, 1 + r(6) % (6 * 65536));
        let kind = [
            StatementKind::BackupDatabase,
            StatementKind::RestoreDatabase,
            StatementKind::RestoreVerifyOnly,
            StatementKind::RestoreHeaderOnly,
        ][(r(7) % 4) as usize];
        let mut st = restore(kind, n);
        st.plan.data_bytes = r(8) % (4 * 65536);
        st.plan.mid_flushes = (r(9) % 3) as u32;
        st.plan.read_sizes = ReadSizes::Seeded(r(10));
        let mut cfg = set_cfg(n as u32, Features::RequestComplete);
        cfg.server_time_out = (r(11) % 2) as u32 * 50;
        h.client.read_pos = vec![0; h.client.media.len()];
        h.start(st, cfg);
        let mut k = 100u64;
        while let Some(cmd) = h.pending.pop_front() {
            k += 1;
            let x = r(k);
            match x % 10 {
                0 => {
                    let mut c = done(
                        &cmd,
                        codes[(x >> 8) as usize % codes.len()],
                        (x >> 16) % 70_000,
                    );
                    c.auto = x & 0x1000 != 0;
                    h.complete(c);
                }
                1 => h.tick(h.now + (x >> 8) % 200),
                2 if x & 0x100 != 0 => h.send(ToServer::Abort),
                3 if x & 0x300 == 0 => {
                    let mut out = Vec::new();
                    h.s.close_device_early(h.now, (x >> 12) as u16 % 4, &mut out, &mut h.tr);
                    h.absorb(out);
                }
                4 => {
                    let a = h.client.answer(&cmd);
                    h.complete(a.clone());
                    h.complete(a);
                }
                _ => {
                    let a = h.client.answer(&cmd);
                    h.complete(a);
                }
            }
            assert!(k < 100_000);
        }
        assert!(h.aborts <= 1);
        assert_eq!(h.cmds_after_abort, 0, "seed {seed}");
        if h.s.is_idle() {
            assert!(h.outcome().status.is_final());
            assert_eq!(h.s.outstanding(), 0);
        }
    }
}

/// Tracing off formats nothing and changes nothing: same outcome and same
/// commands as with tracing on; the trace hash is reproducible.
#[test]
fn trace_off_same_behaviour() {
    let run = |tr: Trace| {
        let mut h = H::default();
        h.tr = tr;
        let mut st = backup(3, 50 * 65536 + 77);
        st.plan.mid_flushes = 2;
        h.start(st, set_cfg(3, Features::RequestComplete));
        h.perfect();
        (h.outcome().clone(), h.all.clone(), h.tr.len(), h.tr.hash())
    };
    let (o1, c1, n1, h1) = run(Trace::recording());
    let (o2, c2, n2, _) = run(Trace::off());
    let (_, _, _, h3) = run(Trace::hashing());
    assert_eq!(h1, h3, "same run, same trace hash");
    assert_eq!(o1, o2);
    assert_eq!(c1, c2);
    assert!(n1 > 0);
    assert_eq!(n2, 0);
}

/// Clause `tape.set-position`: under `tape-restore-positioning = address`
/// the block address a tape client reports is checked: after the header's
/// filemark it must be the data set's (65536 / 512 + 1 = 129), and a
/// VDC_SetPosition must report the address it was sent to; another fails
/// the statement (BadMedia).
#[test]
fn tape_addresses_are_checked() {
    let p = Profile {
        tape_restore_positioning: vdi_spec::profile::TapeRestorePositioning::Address,
        ..Profile::default()
    };
    // Answers the positioning commands, GetPosition with `at` once the
    // header is written (0 before).
    let tape = |at: u64| {
        let mut gets = 0;
        move |_: &mut Client, cmd: &Cmd| match cmd.code {
            CommandCode::Rewind | CommandCode::WriteMark => {
                Reply::With(done(cmd, Win32::ERROR_SUCCESS, 0))
            }
            CommandCode::GetPosition | CommandCode::SetPosition => {
                gets += 1;
                Reply::With(Completion {
                    position: if gets > 1 { at } else { 0 },
                    ..done(cmd, Win32::ERROR_SUCCESS, 0)
                })
            }
            _ => Reply::Perfect,
        }
    };
    for (at, ok) in [(129, true), (7, false)] {
        let mut h = H::new(p.clone());
        h.start(backup(1, 1 << 20), set_cfg(1, Features::LikeTape));
        h.run(tape(at));
        assert_eq!(h.outcome().succeeded(), ok, "{at}: {:?}", h.outcome());
        let gets = h.codes();
        let gets = gets.iter().filter(|c| **c == CommandCode::GetPosition);
        assert_eq!(gets.count(), 2);
        if !ok {
            assert_eq!(h.outcome().reason, Some(FailReason::BadMedia));
            assert!(h.text().contains("GetPosition"), "{}", h.text());
        }
    }
    let mut h = H::new(p.clone());
    h.start(backup(1, 1 << 20), set_cfg(1, Features::LikeTape));
    h.run(tape(129));
    for (at, ok) in [(129, true), (5, false)] {
        h.client.read_pos = vec![0];
        let stmt = restore(StatementKind::RestoreDatabase, 1);
        h.start(stmt, set_cfg(1, Features::LikeTape));
        // The test client keeps no filemarks: it reads the data right
        // after the header, where SetPosition put a real tape.
        h.run(tape(at));
        assert!(
            h.codes().contains(&CommandCode::SetPosition),
            "{:?} {:?}",
            h.codes(),
            h.outcome()
        );
        let set = h.all.iter().find(|c| c.code == CommandCode::SetPosition);
        assert_eq!(set.map(|c| c.position), Some(129));
        assert_eq!(h.outcome().succeeded(), ok, "{at}: {:?}", h.outcome());
        assert!(h.has_clause(id::TAPE_SET_POSITION));
    }
}

/// Clause `tape.skip-blocks`: under `tape-restore-positioning = blocks` a
/// tape RESTORE reads the header's identifying 4 KiB (8 blocks at
/// BLOCKSIZE 512), skips the other 120 with VDC_SkipBlocks, requires the
/// header's filemark address (128) from VDC_GetPosition, crosses the mark
/// with VDC_SkipMarks 1 and reads the data. A client that claims the skip
/// and stays put reports address 8 and the RESTORE fails as bad media.
#[test]
fn tape_skip_blocks_is_checked() {
    use super::tape::{HEADER_IDENTIFIES, header_blocks, header_probe};
    let p = Profile {
        tape_restore_positioning: vdi_spec::profile::TapeRestorePositioning::Blocks,
        ..Profile::default()
    };
    for (moves, ok) in [(true, true), (false, false)] {
        // The backup is the same under every value; the test client keeps
        // no filemarks, so its address is its read cursor in blocks.
        let mut h = backed_up(p.clone(), 1, 1 << 20);
        h.client.read_pos = vec![0];
        h.start(
            restore(StatementKind::RestoreDatabase, 1),
            set_cfg(1, Features::LikeTape),
        );
        h.run(|c, cmd| match cmd.code {
            CommandCode::Rewind | CommandCode::SkipMarks => {
                Reply::With(done(cmd, Win32::ERROR_SUCCESS, 0))
            }
            CommandCode::SkipBlocks => {
                if moves {
                    c.read_pos[0] += u64::from(cmd.size) * 512;
                }
                Reply::With(done(cmd, Win32::ERROR_SUCCESS, 0))
            }
            CommandCode::GetPosition => Reply::With(Completion {
                position: c.read_pos[0] / 512,
                ..done(cmd, Win32::ERROR_SUCCESS, 0)
            }),
            _ => Reply::Perfect,
        });
        let cmds: Vec<(CommandCode, u32)> =
            h.all.iter().map(|c| (c.code, c.size)).take(6).collect();
        let want = [
            (CommandCode::Rewind, 0),
            (CommandCode::GetPosition, 0),
            (CommandCode::Read, 4096),
            (CommandCode::SkipBlocks, 120),
            (CommandCode::GetPosition, 0),
        ];
        assert_eq!(cmds[..5], want, "{cmds:?}");
        assert_eq!(h.outcome().succeeded(), ok, "{moves}: {:?}", h.outcome());
        assert!(h.has_clause(id::TAPE_SKIP_BLOCKS));
        if ok {
            assert_eq!(cmds[5], (CommandCode::SkipMarks, 1));
            assert_eq!(
                h.outcome().bytes,
                (1 << 20) + 4096,
                "the skipped blocks are not read"
            );
        } else {
            assert_eq!(h.outcome().reason, Some(FailReason::BadMedia));
            assert!(h.text().contains("GetPosition"), "{}", h.text());
            assert!(!h.codes().contains(&CommandCode::SkipMarks));
        }
    }
    // The identifying part: 4 KiB in whole blocks, the whole header at most;
    // at BLOCKSIZE 65536 nothing is left to skip (positioned by marks).
    let probes: Vec<u64> = [512, 4096, 8192, 65536].map(header_probe).to_vec();
    assert_eq!(probes, [4096, 4096, 8192, 65536]);
    assert_eq!(header_blocks(512), 128);
    // The longest header (three names of NAME_BYTES_MAX) fits in it.
    let long = "x".repeat(crate::media::NAME_BYTES_MAX);
    let h = crate::media::MediaHeader {
        database: long.clone(),
        server: long.clone(),
        media_name: long,
        ..crate::media::MediaHeader::default()
    };
    assert!(
        h.encode().len() as u64 <= HEADER_IDENTIFIES,
        "{}",
        h.encode().len()
    );
}

/// Clauses `media.next-volume`, `tape.next-volume`: a next volume that
/// takes nothing (its first Write answered ERROR_END_OF_MEDIA with 0 bytes)
/// fails the BACKUP instead of asking for volume after volume forever.
#[test]
fn an_empty_next_volume_fails_the_backup() {
    for features in [Features::Removable, Features::LikeTape] {
        let mut h = H::default();
        h.start(backup(1, 1 << 20), set_cfg(1, features));
        let mut room = 100 * 1024u64;
        h.run(|c, cmd| match cmd.code {
            CommandCode::Write => {
                let n = u64::from(cmd.size).min(room);
                room -= n;
                c.grow(0);
                c.media[0].append(&cmd.data.slice(0, n));
                let code = if n < u64::from(cmd.size) {
                    Win32::ERROR_END_OF_MEDIA
                } else {
                    Win32::ERROR_SUCCESS
                };
                Reply::With(done(cmd, code, n))
            }
            CommandCode::Load
            | CommandCode::Rewind
            | CommandCode::GetPosition
            | CommandCode::WriteMark => Reply::With(done(cmd, Win32::ERROR_SUCCESS, 0)),
            _ => Reply::Perfect,
        });
        let loads = h
            .codes()
            .iter()
            .filter(|c| **c == CommandCode::Load)
            .count();
        assert_eq!(loads, 1, "{features:?}");
        let o = h.outcome();
        assert_eq!(o.reason, Some(FailReason::DeviceError), "{o:?}");
        assert!(h.text().contains("1100"), "{}", h.text());
    }
}

/// Clauses `media.next-volume`, `tape.next-volume`: a RESTORE whose next
/// volume holds nothing (its first Read answered EOF with 0 bytes) fails
/// instead of asking for volume after volume forever.
#[test]
fn an_empty_next_volume_fails_the_restore() {
    for features in [Features::Removable, Features::LikeTape] {
        let mut h = backed_up(Profile::default(), 1, 1 << 20);
        h.client.read_pos = vec![0];
        h.start(
            restore(StatementKind::RestoreDatabase, 1),
            set_cfg(1, features),
        );
        h.run(|c, cmd| match cmd.code {
            CommandCode::Read => {
                let end = (100 * 1024).min(c.media[0].len());
                let n = u64::from(cmd.size).min(end.saturating_sub(c.read_pos[0]));
                let data = c.media[0].slice(c.read_pos[0], n);
                c.read_pos[0] += n;
                let code = if n < u64::from(cmd.size) {
                    Win32::ERROR_NO_DATA_DETECTED
                } else {
                    Win32::ERROR_SUCCESS
                };
                Reply::With(Completion {
                    data,
                    ..done(cmd, code, n)
                })
            }
            CommandCode::Load
            | CommandCode::Rewind
            | CommandCode::GetPosition
            | CommandCode::SkipMarks => Reply::With(done(cmd, Win32::ERROR_SUCCESS, 0)),
            _ => Reply::Perfect,
        });
        let loads = h
            .codes()
            .iter()
            .filter(|c| **c == CommandCode::Load)
            .count();
        assert_eq!(loads, 1, "{features:?}");
        assert!(!h.outcome().succeeded(), "{:?}", h.outcome());
    }
}
