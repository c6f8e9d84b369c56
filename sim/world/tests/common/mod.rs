//! Helpers shared by the integration tests: a thin driver over the world's
//! driven API, statements with small data, a namespace for the client half.

#![allow(dead_code)]

use std::collections::BTreeMap;
use vdi_model::call::{Call, Reply, Value};
use vdi_model::client::Namespace;
use vdi_model::content::Content;
use vdi_model::msg::Cmd;
use vdi_model::msg::Timeout;
use vdi_model::statement::{ServerPlan, Statement, StatementKind};
use vdi_sim::world::{World, WorldConfig};
use vdi_spec::{CommandCode, Features, Hresult, TransferOptions, VdConfig, Win32};

/// 64 KiB, the default MAXTRANSFERSIZE: one Write per chunk.
pub const CHUNK: u64 = 64 * 1024;

/// A namespace of set names for a bare `ClientSet`.
#[derive(Default)]
pub struct Ns(pub BTreeMap<String, VdConfig>);

impl Namespace for Ns {
    fn claim(&mut self, name: &str, cfg: &VdConfig) -> bool {
        if self.0.contains_key(name) {
            return false;
        }
        self.0.insert(name.to_string(), *cfg);
        true
    }
    fn release(&mut self, name: &str) {
        self.0.remove(name);
    }
}

/// Device names of a set: the first is the set's name.
pub fn device_names(set: &str, n: u16) -> Vec<String> {
    (0..n)
        .map(|i| {
            if i == 0 {
                set.to_string()
            } else {
                format!("{set}-dev{i}")
            }
        })
        .collect()
}

/// A statement over `n` devices of set `set` with `data` bytes (backup) and
/// the default WITH options (BLOCKSIZE 512, MAXTRANSFERSIZE 64 KiB).
pub fn statement(kind: StatementKind, set: &str, n: u16, data: u64) -> Statement {
    Statement {
        kind,
        database: "sales".to_string(),
        devices: device_names(set, n),
        options: TransferOptions::default(),
        plan: ServerPlan {
            data_bytes: data,
            ..ServerPlan::default()
        },
    }
}

/// A pipe-like client configuration.
pub fn pipe(n: u32) -> VdConfig {
    let mut c = VdConfig::client(n, Features::LikePipe);
    c.server_time_out = 60_000;
    c
}

/// The world's driven API, one call at a time.
pub struct Driver {
    pub w: World,
}

impl Driver {
    pub fn new(cfg: WorldConfig, trace: vdi_model::trace::Trace) -> Driver {
        Driver {
            w: World::new_driven(cfg, trace),
        }
    }

    /// Makes `call` on thread `t` and runs the world until it returns.
    pub fn call(&mut self, t: usize, call: Call) -> Reply {
        self.w.start_call(t, call);
        match self.w.wait_call(t) {
            Ok(r) => r,
            Err(end) => panic!("the world ended ({end:?}) before the call returned"),
        }
    }

    pub fn create(&mut self, t: usize, name: &str, cfg: VdConfig) -> Reply {
        self.call(
            t,
            Call::Create {
                name: name.to_string(),
                cfg,
            },
        )
    }

    pub fn get_configuration(&mut self, t: usize) -> Reply {
        self.call(
            t,
            Call::GetConfiguration {
                timeout: Timeout::Ms(10_000),
            },
        )
    }

    pub fn open(&mut self, t: usize, name: &str) -> Reply {
        self.call(
            t,
            Call::OpenDevice {
                name: name.to_string(),
            },
        )
    }

    pub fn get_command(&mut self, t: usize, dev: vdi_model::client::DeviceHandle) -> Reply {
        self.call(
            t,
            Call::GetCommand {
                dev,
                timeout: Timeout::Ms(10_000),
            },
        )
    }

    /// Performs `c` as a perfect pipe-like client would: a Write is stored
    /// in the process's media, a Read served from it, anything else
    /// acknowledged (unknown commands with ERROR_NOT_SUPPORTED).
    pub fn perform(&mut self, t: usize, dev: vdi_model::client::DeviceHandle, c: Cmd) -> Reply {
        let d = dev.index as usize;
        let p = self.w.process();
        if p.media.len() <= d {
            p.media.resize(d + 1, Content::Empty);
        }
        if p.cursors.len() <= d {
            p.cursors.resize(d + 1, 0);
        }
        // A disk-like device stores and reads at the commands' positions
        // (clause disk.positioned-io); a pipe is a stream.
        let disk = p.config.is_some_and(|g| {
            vdi_spec::Features(g.features).contains(vdi_spec::Features::RandomAccess)
        });
        let (code, bytes, data) = match c.code {
            CommandCode::Write if disk => {
                p.media[d].write_at(c.position, &c.data);
                (Win32::ERROR_SUCCESS, u64::from(c.size), Content::Empty)
            }
            CommandCode::Write => {
                p.media[d].append(&c.data);
                (Win32::ERROR_SUCCESS, u64::from(c.size), Content::Empty)
            }
            CommandCode::Read => {
                let at = if disk { c.position } else { p.cursors[d] };
                let data = p.media[d].slice(at, u64::from(c.size));
                let n = data.len();
                p.cursors[d] += n;
                let code = if n < u64::from(c.size) {
                    Win32::ERROR_HANDLE_EOF
                } else {
                    Win32::ERROR_SUCCESS
                };
                (code, n, data)
            }
            CommandCode::Flush | CommandCode::Complete | CommandCode::ClearError => {
                (Win32::ERROR_SUCCESS, 0, Content::Empty)
            }
            _ => (Win32::ERROR_NOT_SUPPORTED, 0, Content::Empty),
        };
        self.call(
            t,
            Call::CompleteCommand {
                dev,
                position: c.position,
                cmd: c,
                code,
                bytes,
                data,
            },
        )
    }

    /// Serves device `dev` on thread `t` until GetCommand returns something
    /// other than a command; returns that code.
    pub fn serve(&mut self, t: usize, dev: vdi_model::client::DeviceHandle) -> Hresult {
        loop {
            let r = self.get_command(t, dev);
            match r.value {
                Value::Command(c) => {
                    let done = self.perform(t, dev, c);
                    assert_eq!(done.code, Hresult::NOERROR, "CompleteCommand");
                }
                _ if r.code == Hresult::VD_E_TIMEOUT => {}
                _ => return r.code,
            }
        }
    }
}

/// The device handle in a reply.
pub fn handle(r: &Reply) -> vdi_model::client::DeviceHandle {
    match r.value {
        Value::Device(h) => h,
        _ => panic!("no device handle in {r:?}"),
    }
}

/// The command in a reply.
pub fn command(r: &Reply) -> Cmd {
    match &r.value {
        Value::Command(c) => c.clone(),
        _ => panic!("no command in {r:?}"),
    }
}
