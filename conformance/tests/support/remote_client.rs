//! A backup client over the client host (`vdi_host::runtime`, what the
//! stand-in library runs its objects on), connected to a `vdisim serve` at
//! a given socket: Create, GetConfiguration, OpenDevice, one thread per
//! device running the GetCommand / CompleteCommand loop. Shared by the
//! serve tests and the serve benchmark.

#![allow(dead_code)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use vdi_host::remote::connector::RemoteConnector;
use vdi_host::runtime::{CreateKind, SetRuntime};
use vdi_model::client::DeviceHandle;
use vdi_model::msg::Timeout;
use vdi_spec::{CommandCode, Features, Hresult, VdConfig, Win32};

/// A set object: the client host's runtime.
pub type SetCore = SetRuntime;

/// A device of a set: its runtime and handle.
#[derive(Clone)]
pub struct DevCore {
    rt: Arc<SetRuntime>,
    h: DeviceHandle,
}

impl DevCore {
    /// GetCommand with `timeout`: the command, or the code that ended it.
    pub fn get_command(&self, timeout: Timeout) -> Result<vdi_model::msg::Cmd, Hresult> {
        self.rt.get_command(self.h, timeout).result
    }

    /// CompleteCommand of `c` with `code` and `bytes`.
    pub fn complete(&self, c: &vdi_model::msg::Cmd, code: Win32, bytes: u64) -> Hresult {
        self.rt
            .complete_command(self.h, c, code, bytes, c.position)
            .code()
    }
}

/// Waits (up to 30 s) until a `vdisim serve` accepts connections at `path`.
pub fn wait_listening(path: &Path) {
    let t0 = std::time::Instant::now();
    while vdi_host::remote::control::Control::connect(path, "wait").is_err() {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(30),
            "vdisim serve never listened at {}",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// What a device does with a Write's bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// Keep them (a later restore reads them back).
    Keep,
    /// Drop them (throughput runs).
    Discard,
}

/// A set object connected to the server at `path`.
pub fn set_at(path: &Path) -> Arc<SetCore> {
    SetRuntime::new(
        Arc::new(vdi_spec::Profile::default()),
        Arc::new(RemoteConnector::at(path.to_path_buf())),
    )
}

/// Creates the set `name` for `devices` devices.
pub fn create(set: &Arc<SetCore>, name: &str, devices: u32) -> Hresult {
    set.create(
        CreateKind::Create,
        name,
        &VdConfig::client(devices, Features(0)),
    )
    .code()
}

/// Waits for the configuration and opens every device (`name`, then
/// `name-dev1`, ...).
pub fn open_all(
    set: &Arc<SetCore>,
    name: &str,
    devices: u32,
) -> Result<Vec<Arc<DevCore>>, Hresult> {
    set.get_configuration(Timeout::Ms(20_000)).result?;
    device_names(name, devices)
        .iter()
        .map(|n| {
            let h = set.open_device(n).result?;
            Ok(Arc::new(DevCore { rt: set.clone(), h }))
        })
        .collect()
}

/// The device names a statement lists for set `name`.
pub fn device_names(name: &str, devices: u32) -> Vec<String> {
    (0..devices)
        .map(|i| {
            if i == 0 {
                name.to_string()
            } else {
                format!("{name}-dev{i}")
            }
        })
        .collect()
}

/// Runs the device loop until something other than NOERROR; Writes go to
/// (or are dropped from) `media`, Reads come from it. Returns the ending
/// code and the bytes moved.
pub fn device_loop(dev: &DevCore, media: &Mutex<Vec<u8>>, sink: Sink) -> (Hresult, u64) {
    let mut moved = 0u64;
    loop {
        let c = match dev.rt.get_command(dev.h, Timeout::Ms(30_000)).result {
            Ok(c) => c,
            Err(e) => return (e, moved),
        };
        let buf = dev.rt.buffer_address(c.buffer).map(|p| p.as_ptr());
        let (code, bytes) = match (c.code, buf) {
            (CommandCode::Write, Some(p)) => {
                if sink == Sink::Keep {
                    // SAFETY: a Write's buffer holds `size` bytes until completion.
                    let b = unsafe { std::slice::from_raw_parts(p, c.size as usize) };
                    media.lock().unwrap().extend_from_slice(b);
                }
                moved += u64::from(c.size);
                (Win32::ERROR_SUCCESS, u64::from(c.size))
            }
            (CommandCode::Read, Some(p)) => {
                let m = media.lock().unwrap();
                let at = (c.position as usize).min(m.len());
                let n = (c.size as usize).min(m.len() - at);
                // SAFETY: a Read's buffer holds `size` writable bytes until completion.
                let b = unsafe { std::slice::from_raw_parts_mut(p, n) };
                b.copy_from_slice(&m[at..at + n]);
                moved += n as u64;
                let code = if n < c.size as usize {
                    Win32::ERROR_HANDLE_EOF
                } else {
                    Win32::ERROR_SUCCESS
                };
                (code, n as u64)
            }
            (CommandCode::Flush | CommandCode::ClearError | CommandCode::Complete, _) => {
                (Win32::ERROR_SUCCESS, 0)
            }
            _ => (Win32::ERROR_NOT_SUPPORTED, 0),
        };
        let r = dev
            .rt
            .complete_command(dev.h, &c, code, bytes, c.position)
            .code();
        if r != Hresult::NOERROR {
            return (r, moved);
        }
    }
}

/// Runs one device thread per device; returns each device's end code and
/// the bytes moved in all.
pub fn run_devices(
    devs: &[Arc<DevCore>],
    media: &[Arc<Mutex<Vec<u8>>>],
    sink: Sink,
) -> (Vec<Hresult>, u64) {
    let hs: Vec<_> = devs
        .iter()
        .zip(media)
        .map(|(d, m)| {
            let (d, m) = (d.clone(), m.clone());
            std::thread::spawn(move || device_loop(&d, &m, sink))
        })
        .collect();
    let mut ends = Vec::new();
    let mut total = 0;
    for h in hs {
        let (e, n) = h.join().unwrap();
        ends.push(e);
        total += n;
    }
    (ends, total)
}

/// Runs one T-SQL batch on the server at `path` over a control connection
/// (as `vdisim sqlcmd` does) and returns its messages.
pub fn sql_at(path: &Path, text: &str) -> Vec<vdi_host::remote::wire::LineMessage> {
    use vdi_host::remote::wire::{Request, Response};
    let mut c = vdi_host::remote::control::Control::connect(path, "test").unwrap();
    match c
        .request(Request::Sql {
            text: text.into(),
            database: None,
            first_line: 1,
        })
        .unwrap()
    {
        Response::Sql { messages, .. } => messages,
        other => panic!("unexpected {other:?}"),
    }
}

/// A raw set connection (what the stand-in library sends at Create): a
/// hello for `name` with a 1-device configuration, then the server's first
/// answer (a welcome, or a refusal).
pub fn raw_set(
    path: &Path,
    name: &str,
) -> (
    std::os::unix::net::UnixStream,
    Option<vdi_host::remote::wire::Frame>,
) {
    use vdi_host::remote::wire::{self, Frame, PROTOCOL};
    let mut s = std::os::unix::net::UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    wire::write_frame(
        &mut s,
        &Frame::HelloSet {
            protocol: PROTOCOL,
            pid: std::process::id(),
            name: name.into(),
            cfg: VdConfig::client(1, Features(0)),
        },
    )
    .unwrap();
    let answer = wire::read_frame(&mut s).unwrap();
    (s, answer)
}

/// Reads frames from a raw set connection until one `want` takes (within
/// 30 s); that frame. Panics if the connection ends first.
pub fn read_until(
    s: &mut std::os::unix::net::UnixStream,
    want: impl Fn(&vdi_host::remote::wire::Frame) -> bool,
) -> vdi_host::remote::wire::Frame {
    let t0 = std::time::Instant::now();
    loop {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(30),
            "no such frame came"
        );
        match vdi_host::remote::wire::read_frame(s) {
            Ok(Some(f)) if want(&f) => return f,
            Ok(Some(_)) => {}
            other => panic!("the connection ended first: {other:?}"),
        }
    }
}
