//! One case against its own server: the case's private `vdisim serve`
//! (in process, on a socket of its own, with the case's database, profile,
//! faults, plan and clock), the program's backup, and — for a restore case
//! — its restore of its own media after the case's media fault.

use super::cases::{ClientCase, MediaFault, Op, ProcessFault, ServerFault};
use super::exec::{self, RunRecord, RunSetup};
use super::template::Template;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;
use vdi_host::remote::bridge::TcpBridge;
use vdi_host::server::ClientFaultHook;
use vdi_model::fault::{Fault, FaultPlan, Phase, PlannedFault, Trigger};
use vdi_model::statement::{ExtraCommand, ReadSizes, Statement, StatementKind};
use vdi_spec::{Profile, TransferOptions};
use vdi_sqlserver::serve::{PlanOverlay, ServeConfig, Server, StatementOutcome};

/// The database every case's server holds (each case has its own server).
pub const DATABASE: &str = "vdisim_ct";

/// What the runner learned of the program from its plain backup: the
/// timeouts it uses, for sizing stalls and the clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Behaviour {
    /// The longest finite GetCommand timeout it passed (ms), if any.
    pub get_command_timeout_ms: Option<u64>,
    /// The serverTimeOut it gave Create (ms; 0: no watchdog).
    pub server_timeout_ms: u64,
    /// The device shape its CreateEx features chose.
    pub shape: super::cases::DeviceShape,
}

impl Behaviour {
    /// The watchdog's period in virtual ms (0: none).
    pub fn watchdog_ms(&self, profile: &Profile) -> u64 {
        self.server_timeout_ms * u64::from(profile.watchdog_factor)
    }

    /// A server stall longer than the program's GetCommand timeout (so it
    /// sees VD_E_TIMEOUT) and shorter than half its watchdog (so a program
    /// that polls survives), and where both allow at least `floor_ms`
    /// (virtual ms: [`STALL_REAL_MIN_MS`] of real time on the case's clock,
    /// so that a loaded machine still lets the program reach a GetCommand
    /// inside the stall): `Err` says why none fits.
    pub fn stall_ms(&self, profile: &Profile, floor_ms: u64) -> Result<u64, String> {
        let wd = self.watchdog_ms(profile);
        match (self.get_command_timeout_ms, wd) {
            (Some(t), 0) => Ok(t.saturating_mul(3).max(floor_ms).max(1)),
            (Some(t), wd) => {
                let (lo, hi) = (t + t / 2 + 1, wd / 2);
                if lo > hi {
                    Err(format!(
                        "the program's GetCommand timeout ({t} ms) leaves no room for a stall below half its watchdog ({wd} ms = {} x serverTimeOut)",
                        profile.watchdog_factor
                    ))
                } else {
                    Ok(t.saturating_mul(3).max(floor_ms).clamp(lo, hi))
                }
            }
            (None, 0) => Ok(30_000),
            (None, wd) => Ok((wd / 2).min(30_000)),
        }
    }

    /// The clock for `--time-scale auto`: as fast as keeps the watchdog at
    /// least 2 s of real time, at most 100 virtual ms per real ms.
    pub fn auto_scale(&self, profile: &Profile) -> u32 {
        let wd = self.watchdog_ms(profile);
        if wd == 0 {
            return 100;
        }
        u32::try_from((wd / 2000).clamp(1, 100)).unwrap_or(100)
    }
}

/// The least real time a server stall lasts when the program's timeouts
/// allow it (see [`Behaviour::stall_ms`]): with a stall only a few real
/// milliseconds long, a program descheduled on a busy machine could miss
/// it and a timeout-is-fatal program pass (seen once in CI).
pub const STALL_REAL_MIN_MS: u64 = 250;

/// The clock of the probe run under `--time-scale auto`: the probe learns
/// the program's timeouts from the arguments it passes, not from timing, so
/// a program that leaves a command unanswered costs 1.2 s of real time
/// there instead of the 120 s its watchdog takes at scale 1.
pub const PROBE_SCALE: u32 = 100;

/// What the whole run shares.
pub struct Harness {
    pub template: Template,
    pub ready_line: Option<String>,
    pub op_words: (String, String),
    /// The directory with `sqlcmd` (a link to vdisim).
    pub bin_dir: PathBuf,
    pub library_dir: Option<PathBuf>,
    /// `--time-scale N` (`None`: auto).
    pub time_scale: Option<u32>,
    /// The exit code meaning "this program cannot do this case".
    pub unimplemented_code: i32,
    /// Learned from the plain backup (before it, `None`).
    pub behaviour: Option<Behaviour>,
    /// The run's private directory.
    pub work: PathBuf,
    pub ready_bound: Duration,
    pub exit_bound: Duration,
    pub run_bound: Duration,
    /// Windows programs: the run's Wine prefix.
    pub wine: Option<super::wine::Wine>,
}

/// One operation of a case, run.
#[derive(Clone, Debug)]
pub struct OpRun {
    pub op: Op,
    pub record: RunRecord,
    /// The statements the case's server ran during it.
    pub outcomes: Vec<StatementOutcome>,
    /// The virtual ms per real ms it ran at.
    pub time_scale: u32,
    /// The size of device 0's media file (`{file}`) after it, if it exists.
    pub media_bytes: Option<u64>,
}

/// A case, run.
#[derive(Clone, Debug)]
pub struct CaseRun {
    pub case: ClientCase,
    pub seed: u64,
    /// The backup (for a restore case: the one whose media it restores).
    pub backup: Option<OpRun>,
    pub restore: Option<OpRun>,
    /// Why the case could not be run as asked, if it could not.
    pub unimplemented: Option<String>,
}

impl Harness {
    /// Runs `case` with `seed` in `dir` (made and removed here).
    pub fn run_case(&self, case: &ClientCase, seed: u64, dir: &Path) -> CaseRun {
        let mut out = CaseRun {
            case: case.clone(),
            seed,
            backup: None,
            restore: None,
            unimplemented: None,
        };
        if let Err(e) = std::fs::create_dir_all(dir) {
            out.unimplemented = Some(format!("cannot make {}: {e}", dir.display()));
            return out;
        }
        let profile = case_profile(case);
        let scale = self.scale(&profile);
        let stall = match (case.server_fault, &self.behaviour) {
            (Some(ServerFault::Stall), Some(b)) => {
                match b.stall_ms(&profile, STALL_REAL_MIN_MS.saturating_mul(u64::from(scale))) {
                    Ok(ms) => Some(ms),
                    Err(why) => {
                        out.unimplemented = Some(why);
                        return out;
                    }
                }
            }
            (Some(ServerFault::Stall), None) => {
                out.unimplemented =
                    Some("the plain backup did not run, so no stall can be sized".into());
                return out;
            }
            _ => None,
        };
        let group = Arc::new(AtomicI32::new(0));
        let killed = Arc::new(AtomicBool::new(false));
        let cfg = self.server_config(case, seed, dir, profile, scale, stall, &group, &killed);
        let server = match Server::start(cfg) {
            Ok(s) => s,
            Err(e) => {
                out.unimplemented = Some(format!("the case's server could not start: {e}"));
                return out;
            }
        };
        // A Windows program reaches the case's server through a TCP bridge.
        let bridge = match &self.wine {
            Some(_) => match TcpBridge::start(server.path().to_path_buf(), BRIDGE_BIND.into()) {
                Ok(b) => Some(b),
                Err(e) => {
                    out.unimplemented = Some(format!("the case's TCP bridge could not start: {e}"));
                    return out;
                }
            },
            None => None,
        };
        let extra_env: Vec<(&'static str, String)> = bridge.iter().flat_map(|b| b.env()).collect();
        let run = |op: Op, c: &ClientCase, fsize: Option<u64>| {
            let ctx = OpContext {
                dir,
                server: &server,
                scale,
                fsize,
                group: &group,
                killed: &killed,
                extra_env: &extra_env,
            };
            self.run_op(op, c, seed, &ctx)
        };
        let fsize = match case.process_fault {
            Some(ProcessFault::DiskFull { bytes }) => Some(bytes),
            _ => case.volume_bytes,
        };
        if case.stale_media
            && let Err(e) = stale_media(case, dir)
        {
            out.unimplemented = Some(e);
            return out;
        }
        match case.op {
            Op::Backup => {
                server.set_plan(Some(overlay(case, seed)));
                out.backup = Some(run(Op::Backup, case, fsize));
            }
            Op::Restore => {
                let before = case.backup_before();
                server.set_plan(Some(overlay(&before, seed)));
                let b = run(Op::Backup, &before, fsize);
                let made = b.outcomes.last().is_some_and(|o| o.outcome.succeeded())
                    && b.record.end == exec::ProgramEnd::Exited(0);
                out.backup = Some(b);
                if !made {
                    out.unimplemented = Some(
                        "the program's own backup for this case did not succeed, so there is nothing of its to restore".into(),
                    );
                } else if let Err(e) = media_fault(case, dir) {
                    out.unimplemented = Some(e);
                } else {
                    server.set_plan(Some(overlay(case, seed)));
                    out.restore = Some(run(Op::Restore, case, None));
                }
            }
        }
        server.shutdown();
        drop(server);
        drop(bridge);
        let _ = std::fs::remove_dir_all(dir);
        out
    }

    fn scale(&self, profile: &Profile) -> u32 {
        match (self.time_scale, &self.behaviour) {
            (Some(s), _) => s,
            (None, Some(b)) => b.auto_scale(profile),
            // The probe (and a program that never created a set): only the
            // arguments of its calls are learned, so the fastest clock.
            (None, None) => PROBE_SCALE,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn server_config(
        &self,
        case: &ClientCase,
        seed: u64,
        dir: &Path,
        profile: Profile,
        scale: u32,
        stall: Option<u64>,
        group: &Arc<AtomicI32>,
        killed: &Arc<AtomicBool>,
    ) -> ServeConfig {
        let mut cfg = ServeConfig::new(dir.join("s.sock"));
        cfg.databases = vec![(DATABASE.to_string(), case.data_bytes)];
        cfg.profile = profile;
        cfg.seed = seed;
        cfg.time_scale = scale;
        cfg.faults = faults(case, stall);
        let (g, k) = (group.clone(), killed.clone());
        cfg.client_faults = Some(ClientFaultHook(Arc::new(move |f: &Fault| {
            apply_process_fault(f, &g, &k, scale)
        })));
        cfg
    }

    fn run_op(&self, op: Op, case: &ClientCase, seed: u64, x: &OpContext<'_>) -> OpRun {
        let OpContext {
            dir,
            server,
            scale,
            fsize,
            group,
            killed,
            extra_env,
        } = *x;
        let device = format!("vdisim-ct-{seed}");
        let values = self.values(op, case, &device, dir, server.path());
        let before = server.outcomes().len();
        let ended = || server.outcomes().len() > before;
        let sql = self
            .ready_line
            .as_deref()
            .map(|l| (l, statement(op, case, &device, seed).to_tsql()));
        let setup = RunSetup {
            template: &self.template,
            values,
            socket: server.path(),
            bin_dir: &self.bin_dir,
            log: dir.join(format!("{}.calls.jsonl", op_name(op))),
            ready: sql,
            time_scale: scale,
            library_dir: self.library_dir.as_deref(),
            profile: None,
            file_size_limit: fsize,
            ready_bound: self.ready_bound,
            exit_bound: self.exit_bound,
            run_bound: self.run_bound,
            statement_ended: &ended,
            group: group.clone(),
            killed_by_fault: killed.clone(),
            wine: self.wine.as_ref(),
            extra_env,
        };
        killed.store(false, Ordering::SeqCst);
        let record = exec::run(&setup);
        let outcomes = server.outcomes().into_iter().skip(before).collect();
        OpRun {
            op,
            record,
            outcomes,
            time_scale: scale,
            media_bytes: std::fs::metadata(dir.join("media")).ok().map(|m| m.len()),
        }
    }

    fn values(
        &self,
        op: Op,
        case: &ClientCase,
        device: &str,
        dir: &Path,
        socket: &Path,
    ) -> BTreeMap<&'static str, String> {
        let word = match op {
            Op::Backup => &self.op_words.0,
            Op::Restore => &self.op_words.1,
        };
        BTreeMap::from([
            ("op", word.clone()),
            ("database", DATABASE.to_string()),
            ("device", device.to_string()),
            ("devices", case.devices.to_string()),
            ("file", {
                let media = dir.join("media");
                match &self.wine {
                    // A Windows program is given a Windows path.
                    Some(_) => super::wine::dos_path(&media),
                    None => media.display().to_string(),
                }
            }),
            ("server", socket.display().to_string()),
        ])
    }
}

/// Where a case's TCP bridge listens (a free loopback port).
const BRIDGE_BIND: ([u8; 4], u16) = ([127, 0, 0, 1], 0);

/// What one operation of a case runs with.
#[derive(Clone, Copy)]
struct OpContext<'a> {
    dir: &'a Path,
    server: &'a Server,
    scale: u32,
    fsize: Option<u64>,
    group: &'a Arc<AtomicI32>,
    killed: &'a Arc<AtomicBool>,
    extra_env: &'a [(&'static str, String)],
}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::Backup => "backup",
        Op::Restore => "restore",
    }
}

/// The profile of the case's server (and the library).
pub fn case_profile(case: &ClientCase) -> Profile {
    let mut p = Profile::default();
    if case.no_complete {
        p.server_supports_complete = false;
    }
    if case.abort_at_once {
        p.error_termination = vdi_spec::profile::ErrorTermination::Abort;
    }
    if case.disk_header_last {
        // clause disk.header-order
        p.disk_header_order = vdi_spec::profile::DiskHeaderOrder::Last;
    }
    if case.skip_blocks {
        // clause tape.skip-blocks
        p.tape_restore_positioning = vdi_spec::profile::TapeRestorePositioning::Blocks;
    }
    p
}

/// The statement the runner sends in `--ready-line` mode.
pub fn statement(op: Op, case: &ClientCase, device: &str, seed: u64) -> Statement {
    let kind = match op {
        Op::Backup => StatementKind::BackupDatabase,
        Op::Restore => StatementKind::RestoreDatabase,
    };
    Statement {
        kind,
        database: DATABASE.to_string(),
        devices: vdi_model::statement::default_device_names(device, case.devices),
        options: TransferOptions {
            block_size: case.block_size.unwrap_or(512),
            max_transfer_size: case.max_transfer_size.unwrap_or(65536),
            buffer_count: case.buffer_count,
        },
        plan: vdi_model::statement::ServerPlan {
            read_sizes: read_sizes(case, seed),
            tape: Box::new(tape_options(op, case)),
            snapshot: case.snapshot,
            ..Default::default()
        },
    }
}

/// The statement's MEDIANAME and REWIND/UNLOAD options (clauses
/// `tape.media-name`, `tape.end-rewind`).
fn tape_options(op: Op, case: &ClientCase) -> vdi_model::statement::TapeOptions {
    use super::cases::{MEDIA_NAME, OTHER_MEDIA_NAME};
    let media_name = match (op, case.media_name, case.wrong_media_name) {
        (Op::Restore, _, true) => Some(OTHER_MEDIA_NAME.to_string()),
        (_, true, _) | (Op::Backup, _, true) => Some(MEDIA_NAME.to_string()),
        _ => None,
    };
    vdi_model::statement::TapeOptions {
        media_name,
        rewind: !case.no_rewind,
        unload: !case.no_rewind,
    }
}

fn read_sizes(case: &ClientCase, seed: u64) -> ReadSizes {
    match case.read_sizes.as_deref() {
        Some("seeded") => ReadSizes::Seeded(seed),
        Some(n) => n.parse().map(ReadSizes::Fixed).unwrap_or(ReadSizes::Max),
        None => ReadSizes::Max,
    }
}

/// What the case's server does besides the T-SQL.
fn overlay(case: &ClientCase, seed: u64) -> PlanOverlay {
    PlanOverlay {
        mid_flushes: case.mid_flushes,
        read_sizes: Some(read_sizes(case, seed)),
        extra_commands: case
            .probes
            .iter()
            .enumerate()
            .map(|(i, code)| ExtraCommand {
                dev: 0,
                after_data_commands: 1 + i as u32,
                code: *code,
            })
            .collect(),
    }
}

/// The case's faults, all in its operation's phase, triggered when the
/// client fetches its `at`-th command on device 0.
fn faults(case: &ClientCase, stall: Option<u64>) -> FaultPlan {
    let phase = match case.op {
        Op::Backup => Phase::Backup,
        Op::Restore => Phase::Restore,
    };
    // A snapshot case's faults fire at the snapshot command itself.
    let on = match (case.snapshot, case.op) {
        (true, Op::Backup) => Trigger::OnCommand {
            dev: 0,
            nth: 1,
            code: Some(vdi_spec::CommandCode::Snapshot),
        },
        (true, Op::Restore) => Trigger::OnCommand {
            dev: 0,
            nth: 1,
            code: Some(vdi_spec::CommandCode::MountSnapshot),
        },
        _ => Trigger::OnCommand {
            dev: 0,
            nth: case.at,
            code: None,
        },
    };
    let mut list = Vec::new();
    let server = case.server_fault.map(|f| match f {
        ServerFault::Abort => Fault::ServerSignalAbort,
        ServerFault::Death => Fault::ServerDeath,
        ServerFault::EarlyClose => Fault::EarlyCloseDevice { dev: 0 },
        ServerFault::Cancel => Fault::Attention,
        ServerFault::Stall => Fault::ServerStall {
            ms: stall.unwrap_or(0),
        },
    });
    let process = match case.process_fault {
        Some(ProcessFault::Kill) => Some(Fault::ClientDeath),
        Some(ProcessFault::Stop { ms }) => Some(Fault::ClientStall { ms }),
        _ => None,
    };
    for fault in server.into_iter().chain(process) {
        list.push(PlannedFault {
            phase,
            trigger: on.clone(),
            fault,
        });
    }
    FaultPlan {
        name: case.id.clone(),
        faults: list,
    }
}

/// The runner's side of a process fault: kill the program's group, or
/// stop it for `ms` virtual ms.
fn apply_process_fault(f: &Fault, group: &AtomicI32, killed: &AtomicBool, scale: u32) {
    let pgid = group.load(Ordering::SeqCst);
    match *f {
        Fault::ClientDeath => {
            killed.store(true, Ordering::SeqCst);
            exec::kill_group(pgid, libc::SIGKILL);
        }
        Fault::ClientStall { ms } => {
            exec::kill_group(pgid, libc::SIGSTOP);
            let real = vdi_host::clock::scaled_wait(ms, scale);
            std::thread::spawn(move || {
                std::thread::sleep(real);
                exec::kill_group(pgid, libc::SIGCONT);
            });
        }
        _ => {}
    }
}

/// What `{file}` holds before a `stale-media` case's backup: twice the
/// database's size of 0xEE bytes, longer than any backup of it, in the
/// case's own directory (made by the runner, removed with it).
/// Written 64 KiB at a time: the database may be as large as
/// `vdi_spec::bounds::DATA_BYTES_MAX`.
fn stale_media(case: &ClientCase, dir: &Path) -> Result<(), String> {
    use std::io::Write;
    let f = dir.join("media");
    let err = |e: std::io::Error| format!("cannot write the stale media {}: {e}", f.display());
    let mut out = std::io::BufWriter::new(std::fs::File::create(&f).map_err(err)?);
    let chunk = [0xEEu8; 64 * 1024];
    let mut left = case.data_bytes.saturating_mul(2);
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        out.write_all(&chunk[..n]).map_err(err)?;
        left -= n as u64;
    }
    out.flush().map_err(err)
}

/// Applies the case's media fault to the program's backup files.
fn media_fault(case: &ClientCase, dir: &Path) -> Result<(), String> {
    let Some(m) = case.media_fault else {
        return Ok(());
    };
    let f = dir.join("media");
    let bytes = std::fs::read(&f).map_err(|e| {
        format!(
            "the media fault needs the program's backup at {{file}} = {}: {e}",
            f.display()
        )
    })?;
    let out = match m {
        // Not at a transfer boundary: the last read is a partial one.
        MediaFault::Truncate => {
            let cut = (bytes.len() / 2 + 777).min(bytes.len().saturating_sub(1));
            bytes[..cut].to_vec()
        }
        MediaFault::Corrupt => {
            let mut b = bytes;
            let at = b.len() / 3;
            if let Some(x) = b.get_mut(at) {
                *x ^= 0x5a;
            }
            b
        }
    };
    std::fs::write(&f, out).map_err(|e| format!("cannot alter {}: {e}", f.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(t: Option<u64>, server_timeout_ms: u64) -> Behaviour {
        Behaviour {
            get_command_timeout_ms: t,
            server_timeout_ms,
            shape: crate::client_test::cases::DeviceShape::Pipe,
        }
    }

    /// The stall outlasts the GetCommand timeout, stays under half the
    /// watchdog, and lasts at least the floor where the two allow it.
    #[test]
    fn stalls_are_sized_from_the_program() {
        let p = Profile::default();
        let wd = 60_000 * u64::from(p.watchdog_factor);
        // 90 ms timeouts (seconds meant), 60 s serverTimeOut, scale 60.
        let s = b(Some(90), 60_000).stall_ms(&p, 250 * 60).unwrap();
        assert_eq!(s, 15_000);
        assert!(s > 135 && s <= wd / 2);
        // Without the floor, three timeouts.
        assert_eq!(b(Some(90), 60_000).stall_ms(&p, 0).unwrap(), 270);
        // The floor never passes half the watchdog.
        let s = b(Some(500), 1_000).stall_ms(&p, 1_000_000).unwrap();
        assert_eq!(s, u64::from(p.watchdog_factor) * 1_000 / 2);
        // No watchdog: the floor or three timeouts.
        assert_eq!(b(Some(50), 0).stall_ms(&p, 400).unwrap(), 400);
        // A timeout too long for any stall under half the watchdog.
        assert!(b(Some(60_000), 1_000).stall_ms(&p, 0).is_err());
        // Blocking forever: half the watchdog, at most 30 s.
        assert_eq!(b(None, 0).stall_ms(&p, 0).unwrap(), 30_000);
    }
}
