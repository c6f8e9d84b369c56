//! What the client process saw: its media, device handles, configuration,
//! per-device counts and what it believes about the operation.
//!
//! Every driver of a client program (the world, the ABI backends, the
//! harness's scripts) records a call's reply here through
//! [`ClientProcess::absorb`], so the record means the same thing whoever
//! ran the program.

use crate::call::{Call, Method, Reply, Value};
use crate::client::DeviceHandle;
use crate::content::Content;
use crate::msg::DevIx;
use crate::statement::BackupRecord;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use vdi_spec::{Hresult, VdConfig};

/// What the client process shares between its threads: media, device
/// handles, the statement outcome, and reports.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct ClientProcess {
    /// Bytes the client stored per device (media family).
    pub media: Vec<Content>,
    /// Read cursors into `media` during a restore.
    #[serde(skip)]
    pub cursors: Vec<u64>,
    /// A tape-like client's filemarks per device (byte offsets into
    /// `media`; module `tape`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub marks: Vec<Vec<u64>>,
    /// A tape-like client's heads per device.
    #[serde(skip)]
    pub heads: Vec<Head>,
    /// A removable pipe-like client's volumes per device: the media offsets
    /// where each volume after the first begins (module `tape`,
    /// `perform_volume`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Vec<u64>>,
    /// The volume each device reads in a RESTORE.
    #[serde(skip)]
    pub volume: Vec<usize>,
    /// Whether the current statement reads the media (a RESTORE).
    #[serde(skip)]
    pub reading: bool,
    /// The furthest byte each device's Writes reached in the current
    /// statement (where a disk-like client's Flush sets end-of-file).
    #[serde(skip)]
    pub written: Vec<u64>,
    /// Device handles of the current set, by device index.
    #[serde(skip)]
    pub handles: Vec<Option<DeviceHandle>>,
    /// The configuration GetConfiguration returned.
    pub config: Option<VdConfig>,
    /// What each device thread saw.
    pub devices: Vec<DeviceReport>,
    /// Lines the client program logs about itself (what it decided and why).
    pub log: Vec<String>,
    /// Whether the client believes the operation succeeded.
    pub believes_success: Option<bool>,
}

/// A device thread's view of the run.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceReport {
    pub commands: BTreeMap<String, u64>,
    pub bytes: u64,
    pub timeouts: u64,
    /// The code that ended the thread's GetCommand loop.
    pub end: Option<Hresult>,
}

/// The part of a call the process record needs once the call has been
/// performed (the call itself is consumed by whoever performs it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallMark {
    pub method: Method,
    /// The device of the thread that made the call (a device thread's
    /// timeouts count there).
    pub thread_dev: Option<DevIx>,
    /// CompleteCommand: the device index and the bytes reported (after any
    /// planned override of the completion).
    pub completion: Option<(DevIx, u64)>,
}

impl CallMark {
    /// The mark of `call` made on a thread of device `thread_dev`.
    pub fn of(call: &Call, thread_dev: Option<DevIx>) -> CallMark {
        CallMark {
            method: call.method(),
            thread_dev,
            completion: call.completion(),
        }
    }
}

impl ClientProcess {
    /// A process holding the media of `backup` (a restore with no backup
    /// in the run reads what a seeded backup left), or none.
    pub fn holding(backup: Option<&BackupRecord>) -> ClientProcess {
        ClientProcess {
            media: backup.map(BackupRecord::media).unwrap_or_default(),
            ..ClientProcess::default()
        }
    }

    /// Makes room in the reports for device `dev`.
    pub fn ensure_device(&mut self, dev: DevIx) {
        let n = usize::from(dev) + 1;
        if self.devices.len() < n {
            self.devices.resize(n, DeviceReport::default());
        }
    }

    /// Records what `reply` to the call marked `mark` tells the process:
    /// the handle OpenDevice returned, the configuration, a fetched
    /// command's code, a GetCommand timeout, the bytes a successful
    /// completion reported.
    pub fn absorb(&mut self, mark: &CallMark, reply: &Reply) {
        match &reply.value {
            Value::Device(h) => {
                let ix = usize::from(h.index);
                if self.handles.len() <= ix {
                    self.handles.resize(ix + 1, None);
                }
                self.handles[ix] = Some(*h);
            }
            Value::Config(c) => self.config = Some(*c),
            Value::Command(c) => {
                if let Some(rep) = self.devices.get_mut(usize::from(c.dev)) {
                    let name = c.code.name();
                    match rep.commands.get_mut(name) {
                        Some(n) => *n += 1,
                        None => {
                            rep.commands.insert(name.to_string(), 1);
                        }
                    }
                }
            }
            _ => {}
        }
        if mark.method == Method::GetCommand
            && reply.code == Hresult::VD_E_TIMEOUT
            && let Some(d) = mark.thread_dev
            && let Some(rep) = self.devices.get_mut(usize::from(d))
        {
            rep.timeouts += 1;
        }
        if let Some((d, bytes)) = mark.completion
            && reply.code == Hresult::NOERROR
            && let Some(rep) = self.devices.get_mut(usize::from(d))
        {
            rep.bytes += bytes;
        }
    }
}

/// The head of a tape (module `tape`): where the next operation acts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Head {
    /// Byte position in the medium's data.
    pub pos: u64,
    /// Filemarks before the head.
    pub passed: usize,
}
