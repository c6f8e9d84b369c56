//! Starting a statement: opening the set, checking the device count and the
//! media, configuring the set (features, BUFFERCOUNT, queue depth), arming
//! the watchdog and opening the devices with their planned probes, in that
//! order (vdi-spec.md §4.4, §7.1).

use super::*;
use crate::media::{BackupType, HEADER_BYTES, SetId};
use vdi_spec::{TransferOptions, id};

impl ServerHalf {
    // ------------------------------------------------------------------
    // start
    // ------------------------------------------------------------------

    /// Starts a statement. `set` is what `IServerVirtualDeviceSet2::Open`
    /// found under the first device name (`None`: no such set).
    ///
    /// Model choices: WITH options are checked before the set is opened (the
    /// client is then never configured and its GetConfiguration times out,
    /// vdi-spec.md §7.1); a RESTORE checks its media when it has read their
    /// headers (clause `media.header`).
    /// A `start` while a statement runs is ignored (traced).
    pub fn start(
        &mut self,
        now: u64,
        stmt: Statement,
        set: Option<SetInfo>,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) {
        self.transition(now, |s| s.start_statement(now, stmt, set, out, tr));
    }

    /// [`ServerHalf::start`] without the invariant checks around it.
    fn start_statement(
        &mut self,
        now: u64,
        stmt: Statement,
        set: Option<SetInfo>,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) {
        if self.running {
            ev!(
                tr,
                now,
                "StartIgnored",
                None,
                "a statement is already running"
            );
            return;
        }
        self.reset_statement(&stmt);
        self.started = now;
        self.outcome = Outcome {
            status: Status::Running,
            ..Outcome::default()
        };
        ev!(tr, now, "Start", None, "{}", stmt.to_tsql());
        if self.dead {
            self.outcome.status = Status::Failed;
            self.outcome.reason = Some(FailReason::ServerDied);
            self.outcome.ended_ms = Some(now);
            ev!(
                tr,
                now,
                "Outcome",
                Some(id::ABORT_SERVER_DEATH),
                "Failed ServerDied (server is dead)"
            );
            return;
        }
        self.running = true;
        self.state = ServerState::Dne;
        let first = stmt.devices.first().cloned().unwrap_or_default();
        let Some(set) = self.open_set(now, &stmt, set, &first, tr) else {
            return;
        };
        let Some(n) = self.usable_devices(now, &stmt, &set, &first, out, tr) else {
            return;
        };
        let record = self.media(&stmt, n);
        self.configure(now, &stmt, &set, n, out, tr);
        self.arm_watchdog(now, &set.cfg, tr);
        self.devs = self.open_devices(now, &stmt, record.as_ref(), n, tr);
        self.record = record;
        self.state = ServerState::Active;
        self.advance(now, out, tr);
    }

    /// Forgets the last statement and takes `stmt`'s parameters.
    fn reset_statement(&mut self, stmt: &Statement) {
        self.kind = stmt.kind;
        self.database = stmt.database.clone();
        self.mid_flushes = stmt.plan.mid_flushes;
        self.metadata_bytes = stmt.plan.metadata_bytes;
        self.read_sizes = stmt.plan.read_sizes.clone();
        self.features = Features(0);
        self.complete_enabled = false;
        self.end_rewind = stmt.plan.tape.rewinds_at_end(stmt.kind);
        self.media_name = stmt.plan.tape.media_name.clone();
        self.snapshot = stmt.plan.snapshot;
        self.freeze = super::snapshot::Freeze::Idle;
        self.freeze_ms = None;
        self.snap_msgs.clear();
        self.block = stmt.options.block_size.max(1);
        self.mts = stmt.options.max_transfer_size.max(self.block);
        self.qd = 1;
        self.buf_total = 0;
        self.buf_next = 0;
        self.buf_free.clear();
        self.buf_starved = false;
        self.devs.clear();
        self.phase = Phase::Data;
        self.record = None;
        self.outstanding = 0;
        self.wd_anchor = 0;
        self.wd_period = 0;
        self.failure = None;
        self.term = Term::None;
        self.rr = 0;
        self.abort_sent = false;
    }

    /// Checks the WITH options, then `IServerVirtualDeviceSet2::Open` and
    /// GetConfiguration: the set the client created, or `None` once the
    /// statement has failed (bad options, no such set).
    fn open_set(
        &mut self,
        now: u64,
        stmt: &Statement,
        set: Option<SetInfo>,
        first: &str,
        tr: &mut Trace,
    ) -> Option<SetInfo> {
        if let Err(e) = stmt.options.validate() {
            let text = e.to_string();
            self.finish_failed(
                now,
                FailReason::BadOptions,
                vec![messages::bad_option(&text)],
                None,
                tr,
            );
            return None;
        }
        if stmt.plan.snapshot && stmt.devices.len() != 1 {
            let text = format!(
                "SNAPSHOT needs exactly one VIRTUAL_DEVICE, not {}",
                stmt.devices.len()
            );
            self.finish_failed(
                now,
                FailReason::BadOptions,
                vec![messages::bad_option(&text)],
                Some(id::SNAPSHOT_ONE_DEVICE),
                tr,
            );
            return None;
        }
        let Some(set) = set else {
            ev!(
                tr,
                now,
                "Open",
                Some(id::SERVER_OPEN_MISSING_SET),
                "name=\"{first}\" -> VD_E_INVALID (0x80770006)"
            );
            self.finish_failed(
                now,
                FailReason::OpenFailed,
                vec![messages::cannot_open(first)],
                Some(id::SERVER_OPEN_MISSING_SET),
                tr,
            );
            return None;
        };
        self.state = ServerState::Connected;
        ev!(
            tr,
            now,
            "Open",
            None,
            "name=\"{}\" -> NOERROR (0x00000000)",
            set.name
        );
        ev!(
            tr,
            now,
            "GetConfiguration",
            None,
            "deviceCount={} features={} prefixZoneSize={} serverTimeOut={}",
            set.cfg.device_count,
            set.cfg.features(),
            set.cfg.prefix_zone_size,
            set.cfg.server_time_out
        );
        Some(set)
    }

    /// How many devices the statement uses: the VIRTUAL_DEVICE clauses
    /// against the set's deviceCount (clause `stripe.device-count-mismatch`).
    /// `None` once a mismatch the profile does not tolerate aborted the set.
    fn usable_devices(
        &mut self,
        now: u64,
        stmt: &Statement,
        set: &SetInfo,
        first: &str,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) -> Option<usize> {
        let n_stmt = stmt.devices.len();
        let n_cfg = set.cfg.device_count;
        if n_stmt as u64 != u64::from(n_cfg)
            && (self.profile.device_count_mismatch_fails || n_stmt == 0 || n_cfg == 0)
        {
            ev!(
                tr,
                now,
                "DeviceCountMismatch",
                Some(id::STRIPE_DEVICE_COUNT_MISMATCH),
                "VIRTUAL_DEVICE clauses={n_stmt} deviceCount={n_cfg}"
            );
            self.abort_before_config(
                now,
                FailReason::DeviceCountMismatch,
                messages::device_count(first, n_stmt, n_cfg),
                Some(id::STRIPE_DEVICE_COUNT_MISMATCH),
                out,
                tr,
            );
            return None;
        }
        let n = n_stmt.min(n_cfg as usize);
        if n != n_stmt {
            ev!(
                tr,
                now,
                "DeviceCountMismatch",
                Some(id::STRIPE_DEVICE_COUNT_MISMATCH),
                "tolerated by the profile: using {n} of {n_stmt} VIRTUAL_DEVICE clauses"
            );
        }
        Some(n)
    }

    /// The media: what a BACKUP will write over `n` devices (its layout and
    /// its headers' contents). A RESTORE learns its backup from the media
    /// headers it reads first (clause `media.header`), so it has none yet.
    fn media(&self, stmt: &Statement, n: usize) -> Option<BackupRecord> {
        if !self.kind.is_backup() {
            return None;
        }
        let number = u32::try_from(self.history.len() + 1)
            .unwrap_or(u32::MAX)
            .saturating_add(self.numbered_after);
        let mut rec = BackupRecord::plan(
            &stmt.database,
            stmt.kind,
            number,
            n,
            stmt.plan.data_bytes,
            &stmt.options,
        );
        let mut meta = (*stmt.plan.media).clone();
        if meta.database_bytes == 0 {
            meta.database_bytes = stmt.plan.data_bytes;
        }
        if stmt.kind == StatementKind::BackupLog {
            meta.backup_type = BackupType::Log;
        }
        if meta.set_id == SetId::default() {
            meta.set_id = rec.meta.set_id;
        } else {
            // A set id from the server process: the data streams are the
            // set's own, so backups of different servers never share bytes.
            let n = rec.families.len() as u64;
            let (hi, lo) = ((meta.set_id.0 >> 64) as u64, meta.set_id.0 as u64);
            for (k, f) in rec.families.iter_mut().enumerate() {
                f.origin = crate::content::origin_of(&[hi, lo, k as u64, n]);
            }
        }
        if let Some(name) = &stmt.plan.tape.media_name {
            // BACKUP WITH MEDIANAME: the name goes into every family's
            // header (clause tape.media-name).
            meta.media_name = name.clone();
        }
        rec.meta = meta;
        Some(rec)
    }

    /// The server inspected the client's configuration (or the media) and
    /// cannot go on: SignalAbort before EndConfiguration, so the client's
    /// GetConfiguration returns VD_E_ABORT instead of waiting.
    fn abort_before_config(
        &mut self,
        now: u64,
        reason: FailReason,
        msg: SqlMessage,
        clause: Option<ClauseId>,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) {
        debug_assert!(
            self.devs.is_empty(),
            "no device is open before configuration"
        );
        self.state = ServerState::AbnormallyTerminated;
        self.abort_sent = true;
        out.push(ToClient::Abort);
        ev!(
            tr,
            now,
            "SignalAbort",
            Some(id::ABORT_SERVER_SIGNAL),
            "before configuration: {reason:?}"
        );
        self.finish_failed(now, reason, vec![msg], clause, tr);
    }

    // ------------------------------------------------------------------
    // configuration
    // ------------------------------------------------------------------

    /// BeginConfiguration .. EndConfiguration: negotiates the features
    /// (VDC_Complete among them), takes BLOCKSIZE, MAXTRANSFERSIZE, the queue
    /// depth and BUFFERCOUNT, and hands the configuration and the device
    /// names to the client.
    fn configure(
        &mut self,
        now: u64,
        stmt: &Statement,
        set: &SetInfo,
        n: usize,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) {
        let opts = stmt.options;
        self.state = ServerState::Configurable;
        let client = set.cfg.features();
        let asked = client.contains(Features::RequestComplete);
        // VDF_CompleteEnabled says the server "will send VDC_Complete"
        // (vdi-spec.md §3, §5.17; KB3188454 describes it for BACKUP): a
        // RESTORE never sends it, so it never returns the flag; nor does a
        // snapshot BACKUP, which ends at VDC_Snapshot (clause
        // snapshot.sequence).
        self.complete_enabled = asked
            && self.profile.server_supports_complete
            && self.kind.is_backup()
            && !stmt.plan.snapshot;
        let mut features = client.union(self.media_feature());
        if self.complete_enabled {
            features = features.union(Features::CompleteEnabled);
        }
        self.features = features;
        self.block = opts.block_size;
        self.mts = opts.max_transfer_size;
        self.qd = self.profile.queue_depth_per_device.max(1);
        let buffers = opts
            .effective_buffer_count(n as u32, self.profile.default_buffer_count_per_device)
            .clamp(1, u32::MAX - 1);
        self.buf_total = buffers;
        let mut cfg = set.cfg;
        cfg.features = features.0;
        cfg.block_size = opts.block_size;
        cfg.max_io_depth = limits::MAX_IO_DEPTH_REPORTED;
        cfg.max_transfer_size = opts.max_transfer_size;
        cfg.buffer_area_size =
            buffers.saturating_mul(opts.max_transfer_size.saturating_add(cfg.prefix_zone_size));
        self.trace_configuration(now, &opts, &set.cfg, &cfg, n, tr);
        self.state = ServerState::Initializing;
        out.push(ToClient::Configured {
            cfg,
            devices: stmt.devices.iter().take(n).cloned().collect(),
        });
        ev!(
            tr,
            now,
            "Configured",
            Some(id::COMMAND_PIPE_ONLY),
            "stream commands: {}{}",
            if self.kind.is_backup() {
                "VDC_Write, VDC_Flush, VDC_ClearError"
            } else {
                "VDC_Read, VDC_ClearError"
            },
            if self.complete_enabled && self.kind.is_backup() {
                ", VDC_Complete"
            } else {
                ""
            }
        );
    }

    /// The media feature the server adds: VDF_WriteMedia for a BACKUP,
    /// VDF_ReadMedia for a RESTORE.
    fn media_feature(&self) -> Features {
        if self.kind.is_backup() {
            Features::WriteMedia
        } else {
            Features::ReadMedia
        }
    }

    /// Traces the configuration [`ServerHalf::configure`] decided:
    /// `client_cfg` is what the client gave to Create, `cfg` what the server
    /// returns.
    fn trace_configuration(
        &self,
        now: u64,
        opts: &TransferOptions,
        client_cfg: &VdConfig,
        cfg: &VdConfig,
        n: usize,
        tr: &mut Trace,
    ) {
        let client = client_cfg.features();
        let asked = client.contains(Features::RequestComplete);
        ev!(
            tr,
            now,
            "BeginConfiguration",
            Some(id::SERVER_BEGIN_CONFIGURATION_ORDER),
            "features={:#010x} blockSize={} alignment={} maxTransferSize={} timeout=0",
            self.features.0,
            opts.block_size,
            client_cfg.alignment.max(opts.block_size),
            opts.max_transfer_size
        );
        ev!(
            tr,
            now,
            "FeaturesReturned",
            Some(id::GET_CONFIGURATION_FEATURES_RETURNED),
            "{} = client {} | {}",
            self.features,
            client,
            self.media_feature()
        );
        ev!(
            tr,
            now,
            "CompleteNegotiation",
            Some(id::COMPLETE_NEGOTIATION),
            "VDF_RequestComplete {} server-supports-complete={} {} -> VDF_CompleteEnabled {}",
            if asked { "requested" } else { "not requested" },
            self.profile.server_supports_complete,
            if self.kind.is_backup() {
                "BACKUP"
            } else {
                "RESTORE (never sends VDC_Complete)"
            },
            if self.complete_enabled {
                "returned"
            } else {
                "not returned"
            }
        );
        if self.disk() {
            ev!(
                tr,
                now,
                "DiskLike",
                Some(id::DISK_POSITIONED_IO),
                "VDF_RandomAccess: every Read and Write carries its byte position; disk-header-order={:?}",
                self.profile.disk_header_order
            );
        }
        ev!(
            tr,
            now,
            "RequestBuffers",
            Some(id::STRIPE_SHARED_BUFFERS),
            "count={} size={} shared by {} devices",
            self.buf_total,
            opts.max_transfer_size,
            n
        );
        if opts.buffer_count.is_none() {
            ev!(
                tr,
                now,
                "RequestBuffers",
                Some(id::STRIPE_DEFAULT_BUFFER_COUNT),
                "no BUFFERCOUNT: {} devices x default-buffer-count-per-device {}",
                n,
                self.profile.default_buffer_count_per_device
            );
        }
        ev!(
            tr,
            now,
            "QueueDepth",
            Some(id::SERVER_QUEUE_DEPTH),
            "up to {} commands in flight per device",
            self.qd
        );
        ev!(
            tr,
            now,
            "EndConfiguration",
            Some(id::GET_CONFIGURATION_SERVER_OUTPUTS),
            "blockSize={} maxIODepth={} maxTransferSize={} bufferAreaSize={}",
            cfg.block_size,
            cfg.max_io_depth,
            cfg.max_transfer_size,
            cfg.buffer_area_size
        );
    }

    /// Arms the watchdog at watchdog-factor × serverTimeOut, or disables it
    /// when either is 0 (clauses `watchdog.fires`, `watchdog.disabled`).
    fn arm_watchdog(&mut self, now: u64, client_cfg: &VdConfig, tr: &mut Trace) {
        let timeout = client_cfg.server_time_out;
        self.wd_period = if timeout == 0 || self.profile.watchdog_factor == 0 {
            ev!(
                tr,
                now,
                "Watchdog",
                Some(id::WATCHDOG_DISABLED),
                "serverTimeOut={} watchdog-factor={}: disabled",
                timeout,
                self.profile.watchdog_factor
            );
            0
        } else {
            let p = u64::from(timeout) * u64::from(self.profile.watchdog_factor);
            ev!(
                tr,
                now,
                "Watchdog",
                Some(id::WATCHDOG_FIRES),
                "armed: {} x serverTimeOut {} ms = {} ms with nothing completing",
                self.profile.watchdog_factor,
                timeout,
                p
            );
            p
        };
    }

    // ------------------------------------------------------------------
    // devices
    // ------------------------------------------------------------------

    /// OpenDevice on the first `n` devices of the statement (the completion
    /// agent runs), each with its family of `record` and its planned probes;
    /// probes planned for devices that do not exist are traced and dropped.
    fn open_devices(
        &self,
        now: u64,
        stmt: &Statement,
        record: Option<&BackupRecord>,
        n: usize,
        tr: &mut Trace,
    ) -> Vec<Dev> {
        let mut devs = Vec::with_capacity(n);
        for (k, name) in stmt.devices.iter().take(n).enumerate() {
            devs.push(self.open_device(now, k, name, stmt, record, tr));
        }
        for x in &stmt.plan.extra_commands {
            if usize::from(x.dev) >= n {
                ev!(
                    tr,
                    now,
                    "ExtraIgnored",
                    None,
                    "dev={} does not exist; {} not sent",
                    x.dev,
                    x.code
                );
            }
        }
        devs
    }

    /// Device `k` named `name`: a BACKUP's family (its header, then its
    /// data), or what a RESTORE reads first (the media header: every
    /// device's, or device 0's alone for HEADERONLY / FILELISTONLY), and its
    /// probes sorted by trigger (a VDC_Complete probe is refused without
    /// VDF_CompleteEnabled).
    fn open_device(
        &self,
        now: u64,
        k: usize,
        name: &str,
        stmt: &Statement,
        record: Option<&BackupRecord>,
        tr: &mut Trace,
    ) -> Dev {
        let fam = record.and_then(|r| r.families.get(k).copied());
        let mut d = if let Some(f) = fam {
            ev!(
                tr,
                now,
                "OpenDevice",
                Some(id::STRIPE_DISTRIBUTION),
                "dev={k} name=\"{name}\" family {} origin={:#018x} len={}",
                k + 1,
                f.origin,
                f.media_len()
            );
            Dev::new(name.to_string(), f.origin, f.media_len(), 0, self.qd)
        } else {
            let target = if self.kind.is_metadata_only() && k > 0 {
                0
            } else {
                HEADER_BYTES
            };
            ev!(
                tr,
                now,
                "OpenDevice",
                Some(id::MEDIA_HEADER),
                "dev={k} name=\"{name}\" read={target}: the media header first"
            );
            Dev::new(name.to_string(), 0, HEADER_BYTES, target, self.qd)
        };
        d.tape = self.first_tape_step(self.kind.is_backup() || d.target > 0);
        for x in &stmt.plan.extra_commands {
            if usize::from(x.dev) == k {
                if x.code == CommandCode::Complete && !self.complete_enabled {
                    ev!(
                        tr,
                        now,
                        "ExtraRefused",
                        Some(id::COMPLETE_NEVER_UNREQUESTED),
                        "dev={k} VDC_Complete probe not sent: VDF_CompleteEnabled was not returned"
                    );
                } else {
                    d.extras.push((x.after_data_commands, x.code));
                }
            }
        }
        d.extras.sort_by_key(|x| x.0);
        d
    }
}
