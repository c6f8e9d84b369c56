//! A secondary client process (vdi-spec.md §1.5, §2.1 OpenInSecondary):
//! the primary creates and configures the set, then starts a secondary
//! process that opens the same set by name (`OpenInSecondary`), opens the
//! last devices of the set and serves them with its own device threads.
//!
//! The world runs a thread spawned under the name [`SECONDARY_PROCESS`] as
//! the main thread of a new client process, with its own death: a thread
//! of that process that dies ([`crate::programs::Action::Die`]) ends that
//! process alone. VDI does not notice (clause
//! `abort.secondary-death-undetected`): no message reaches the server, the
//! set stays open, and the commands the secondary held are never answered.
//! A primary that does not watch its secondaries waits until the server's
//! watchdog aborts the set, or forever without one.

use crate::call::{Call, Reply};
use crate::client::DeviceHandle;
use crate::process::ClientProcess;
use crate::programs::{Action, ClientSpec, Program, device_loop};
use vdi_spec::Hresult;

/// The thread name under which a spawned program becomes the main thread
/// of a new (secondary) client process.
pub const SECONDARY_PROCESS: &str = "secondary";

/// The secondary's main thread: OpenInSecondary, OpenDevice for devices
/// `first..`, a device thread for each, then it returns (its device
/// threads live on).
pub fn controller(spec: &ClientSpec, id: u32, set: String, first: u16) -> Box<dyn Program> {
    Box::new(Secondary {
        spec: spec.clone(),
        id,
        set,
        first,
        next: None,
        spawned: 0,
    })
}

struct Secondary {
    spec: ClientSpec,
    /// The secondary's id for OpenInSecondary.
    id: u32,
    set: String,
    first: u16,
    /// The next device to open (`None`: OpenInSecondary not answered yet).
    next: Option<u16>,
    /// Device threads spawned.
    spawned: u16,
}

impl Secondary {
    fn log(&self, p: &mut ClientProcess, s: String) {
        p.log.push(format!("secondary {}: {s}", self.id));
    }
}

impl Program for Secondary {
    fn describe(&self, out: &mut dyn std::fmt::Write) -> bool {
        write!(
            out,
            "secondary {} {:?} {}",
            self.id, self.next, self.spawned
        )
        .is_ok()
    }

    fn next(&mut self, last: Option<Reply>, p: &mut ClientProcess) -> Action {
        let n = self.spec.devices;
        let names = self.spec.device_names(&self.set);
        let Some(r) = last else {
            return Action::Call(Call::OpenInSecondary {
                secondary: self.id,
                name: self.set.clone(),
            });
        };
        let Some(d) = self.next else {
            if r.code != Hresult::NOERROR {
                self.log(p, format!("OpenInSecondary returned {}", r.code));
                return Action::Exit;
            }
            self.next = Some(self.first);
            return Action::Call(Call::OpenDevice {
                name: names[usize::from(self.first)].clone(),
            });
        };
        if d < n {
            if r.code != Hresult::NOERROR {
                self.log(p, format!("OpenDevice returned {}", r.code));
                return Action::Exit;
            }
            self.next = Some(d + 1);
            if d + 1 < n {
                return Action::Call(Call::OpenDevice {
                    name: names[usize::from(d + 1)].clone(),
                });
            }
        }
        let k = self.first + self.spawned;
        if k >= n {
            return Action::Exit;
        }
        self.spawned += 1;
        let Some(h) = p.handles.get(usize::from(k)).copied().flatten() else {
            return Action::Exit;
        };
        p.devices
            .resize(p.devices.len().max(usize::from(k) + 1), Default::default());
        Action::Spawn {
            who: format!("dev{k}"),
            dev: Some(k),
            prog: secondary_device(&self.spec, h),
        }
    }
}

/// A device thread of the secondary: the reference device loop, which
/// dies (the whole secondary process with it) when it has fetched
/// `secondary_dies_after` commands, holding the last one unanswered.
fn secondary_device(spec: &ClientSpec, h: DeviceHandle) -> Box<dyn Program> {
    let inner = device_loop(spec, h);
    if spec.secondary_dies_after == 0 {
        return inner;
    }
    Box::new(Mortal {
        inner,
        fetched: 0,
        dies_after: spec.secondary_dies_after,
    })
}

struct Mortal {
    inner: Box<dyn Program>,
    fetched: u32,
    dies_after: u32,
}

impl Program for Mortal {
    fn describe(&self, out: &mut dyn std::fmt::Write) -> bool {
        self.inner.describe(out) && write!(out, " mortal {}", self.fetched).is_ok()
    }

    fn next(&mut self, last: Option<Reply>, p: &mut ClientProcess) -> Action {
        if let Some(r) = &last
            && matches!(r.value, crate::call::Value::Command(_))
        {
            self.fetched += 1;
            if self.fetched >= self.dies_after {
                return Action::Die;
            }
        }
        self.inner.next(last, p)
    }
}
