//! Property: what either side of a `vdisim serve` connection decodes from
//! its peer never panics or crashes it, and bad geometry is refused:
//!
//! - **buffer maps** (`vdi_host::remote::shm::ClientMap::add`, what the
//!   library does with the server's `Map` frame): an announcement whose
//!   geometry is inconsistent (zero stride or count, `per_chunk * stride !=
//!   len`, a data zone outside its buffer, an alignment that is not a power
//!   of two or is absurd, a file shorter than `len`, a chunk number whose
//!   buffer ids overflow, a `per_chunk` unlike the earlier chunks', a chunk
//!   already mapped) is an error; for whatever is accepted, every address
//!   `address(id)` gives is a data zone whose every byte is mapped (the
//!   target writes its first and last byte: an address outside the mapping,
//!   or past the end of the file, is a SIGSEGV / SIGBUS crash here), and
//!   `lookup` of that address gives the id back;
//! - **server geometry** (`Geometry::new`, from the prefix zone and
//!   alignment a client's hello carries): no overflow, and the data zone
//!   is aligned, after the prefix zone, inside the stride;
//! - **messages** (`Frame::ToClient` / `Frame::ToServer`): arbitrary model
//!   messages written with `write_frame` read back equal with `read_frame`,
//!   and the half that receives them — the client half (`ClientSet::deliver`,
//!   what the library's reader thread does with a server's frame) between
//!   client calls, or the server half (`ServerHalf::on_message`, what
//!   `vdisim serve` does with a library's frame) during a statement —
//!   takes them without panicking (its invariants, checked around every
//!   transition in debug builds, included).
//!
//! The input is decoded with `arbitrary`. Not fuzzed, and why: the `path`
//! of a `Map` frame is always this target's own scratch file (sized by the
//! input, possibly shorter than announced) or a name that does not exist —
//! mapping arbitrary files read-write and touching them would write to
//! them; raw socket bytes (the `wire` target covers `read_frame` on any
//! byte stream).
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use vdi_host::buffers::BufferMap;
use vdi_host::remote::shm::{ClientMap, Geometry, PER_CHUNK};
use vdi_host::remote::wire::{Frame, MapChunk, read_frame, write_frame};
use vdi_model::client::{Blocking, ClientSet, DeviceHandle, Namespace};
use vdi_model::content::Content;
use vdi_model::msg::{BufId, Cmd, CmdId, Completion, ToClient, ToServer};
use vdi_model::server::{ServerHalf, SetInfo};
use vdi_model::statement::{ServerPlan, Statement, StatementKind};
use vdi_model::trace::Trace;
use vdi_spec::{CommandCode, Profile, TransferOptions, VdConfig, Win32};

/// The scratch file's largest size.
const FILE_MAX: u64 = 1 << 20;

/// This process's scratch file for `Map` announcements.
fn scratch() -> PathBuf {
    let dir = PathBuf::from("/dev/shm");
    let dir = if dir.is_dir() {
        dir
    } else {
        std::env::temp_dir()
    };
    dir.join(format!("vdisim-fuzz-shm-{}", std::process::id()))
}

/// A geometry near the ones a server sends, or anything.
fn map_chunk(u: &mut Unstructured<'_>, path: &str) -> Result<MapChunk> {
    let per_chunk = *u.choose(&[PER_CHUNK, 1, 2, 4, 0, 3])?;
    let stride = 4096 * u64::from(u.int_in_range(0u8..=16)?);
    let mut m = MapChunk {
        chunk: u.int_in_range(0..=3)?,
        path: path.to_string(),
        len: stride * u64::from(per_chunk),
        stride,
        data_offset: *u.choose(&[0, 512, 4096, stride, stride.saturating_sub(1)])?,
        per_chunk,
        align: *u.choose(&[4096, 65536, 1, 0, 3 << 12, 1 << 40, u64::MAX])?,
    };
    // Now and then, anything at all.
    match u.int_in_range(0..=7)? {
        0 => m.len = u.arbitrary()?,
        1 => m.stride = u.arbitrary()?,
        2 => m.data_offset = u.arbitrary()?,
        3 => m.chunk = u.arbitrary()?,
        4 => m.align = u.arbitrary()?,
        5 => m.path = "/nonexistent/vdisim-fuzz".into(),
        _ => {}
    }
    Ok(m)
}

/// What `ClientMap::add` must refuse, whatever else it checks.
fn inconsistent(
    m: &MapChunk,
    file_len: u64,
    per_chunks: &BTreeSet<u32>,
    have: &BTreeSet<u32>,
) -> bool {
    m.stride == 0
        || m.per_chunk == 0
        || u64::from(m.per_chunk).checked_mul(m.stride) != Some(m.len)
        || m.data_offset >= m.stride
        || !m.align.is_power_of_two()
        || m.len > file_len
        || m.chunk.checked_mul(m.per_chunk).is_none()
        || per_chunks.iter().any(|p| *p != m.per_chunk)
        || have.contains(&m.chunk)
}

fn maps(u: &mut Unstructured<'_>) -> Result<()> {
    let path = scratch();
    let file_len = u.int_in_range(0..=FILE_MAX)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .expect("a scratch file");
    file.set_len(file_len).expect("sized");
    let map = ClientMap::default();
    let mut per_chunks = BTreeSet::new();
    let mut have = BTreeSet::new();
    let mut zones = Vec::new();
    for _ in 0..u.int_in_range(1..=4)? {
        let m = map_chunk(u, &path.display().to_string())?;
        let bad = inconsistent(&m, file_len, &per_chunks, &have);
        let (chunk, per, zone) = (m.chunk, m.per_chunk, m.stride.saturating_sub(m.data_offset));
        let r = map.add(m.clone());
        if bad {
            assert!(
                r.is_err(),
                "accepted a bad geometry {m:?} (file {file_len} bytes)"
            );
            continue;
        }
        if r.is_ok() {
            per_chunks.insert(per);
            have.insert(chunk);
            zones.push((chunk, per, zone));
        }
    }
    for &(chunk, per, zone) in &zones {
        for ix in [0, per - 1, u.int_in_range(0..=per - 1)?] {
            let id = BufId(chunk * per + ix);
            let p = map
                .address(id)
                .expect("a buffer of a mapped chunk has an address");
            // SAFETY: the property under test: the data zone of an accepted
            // chunk lies inside its mapping of our scratch file (a crash
            // here is the finding).
            unsafe {
                p.as_ptr().write_volatile(0xa5);
                p.as_ptr().add(zone as usize - 1).write_volatile(0x5a);
            }
            assert_eq!(
                map.lookup(p.as_ptr() as usize),
                Some(id),
                "address and lookup agree"
            );
        }
    }
    // Any other id is a mapped buffer's or none; any address a buffer's or none.
    let id = BufId(u.arbitrary()?);
    if let Some(p) = map.address(id) {
        assert_eq!(map.lookup(p.as_ptr() as usize), Some(id));
    }
    let addr: usize = u.arbitrary()?;
    if let Some(id) = map.lookup(addr) {
        assert_eq!(map.address(id).map(|p| p.as_ptr() as usize), Some(addr));
    }
    drop(map);
    let _ = std::fs::remove_file(&path);
    Ok(())
}

fn geometry(u: &mut Unstructured<'_>) -> Result<()> {
    let (prefix, size, align): (u32, u32, u32) = (u.arbitrary()?, u.arbitrary()?, u.arbitrary()?);
    let g = Geometry::new(prefix, size, align);
    assert!(g.align.is_power_of_two() && g.align >= 4096, "{g:?}");
    assert!(
        g.data_offset >= u64::from(prefix),
        "data zone after the prefix zone: {g:?}"
    );
    assert_eq!(g.data_offset % g.align, 0, "data zone aligned: {g:?}");
    assert!(
        g.data_offset + g.size <= g.stride,
        "data zone inside the stride: {g:?}"
    );
    assert!(
        g.stride.checked_mul(u64::from(PER_CHUNK)).is_some(),
        "{g:?}"
    );
    Ok(())
}

/// A frame written and read back must be the frame.
fn round_trip(f: &Frame) -> Frame {
    let mut bytes = Vec::new();
    write_frame(&mut bytes, f).expect("a frame is written");
    let back = read_frame(&mut bytes.as_slice())
        .expect("read back")
        .expect("a frame");
    assert_eq!(format!("{back:?}"), format!("{f:?}"), "frame round trip");
    back
}

fn cmd(u: &mut Unstructured<'_>, ids: &[Cmd]) -> Result<Cmd> {
    if !ids.is_empty() && u.arbitrary()? {
        return Ok(u.choose(ids)?.clone());
    }
    Ok(Cmd {
        id: CmdId(u.int_in_range(0..=8)?),
        dev: u.int_in_range(0..=4)?,
        code: *u.choose(&[
            CommandCode::Read,
            CommandCode::Write,
            CommandCode::Flush,
            CommandCode::ClearError,
            CommandCode::Complete,
        ])?,
        size: u.arbitrary()?,
        position: u.arbitrary()?,
        buffer: if u.arbitrary()? {
            Some(BufId(u.arbitrary()?))
        } else {
            None
        },
        data: Content::Empty,
    })
}

struct Names(BTreeSet<String>);

impl Namespace for Names {
    fn claim(&mut self, name: &str, _cfg: &VdConfig) -> bool {
        self.0.insert(name.to_string())
    }
    fn release(&mut self, name: &str) {
        self.0.remove(name);
    }
}

fn config(u: &mut Unstructured<'_>) -> Result<VdConfig> {
    Ok(VdConfig {
        device_count: u.int_in_range(0..=4)?,
        features: u.arbitrary()?,
        prefix_zone_size: u.arbitrary()?,
        alignment: u.arbitrary()?,
        soft_file_mark_block_size: u.arbitrary()?,
        eom_warning_size: u.arbitrary()?,
        server_time_out: *u.choose(&[0, 1_000, 60_000, u32::MAX])?,
        block_size: *u.choose(&[512, 4096, 65536, 0, 3])?,
        max_io_depth: u.arbitrary()?,
        max_transfer_size: *u.choose(&[65536, 0, 1 << 22, 65537])?,
        buffer_area_size: u.arbitrary()?,
    })
}

/// A hostile server's messages to the client half, between client calls.
fn client_half(u: &mut Unstructured<'_>) -> Result<()> {
    let mut ns = Names(BTreeSet::new());
    let mut c = ClientSet::new(Arc::new(Profile::default()));
    let cfg = VdConfig {
        device_count: u.int_in_range(1..=3)?,
        ..VdConfig::default()
    };
    let _ = c.create("fz", &cfg, &mut ns);
    let mut handles: Vec<DeviceHandle> = Vec::new();
    let mut fetched: Vec<Cmd> = Vec::new();
    let names = ["fz", "fz-dev1", "fz-dev2", "other"];
    for _ in 0..u.int_in_range(0..=48)? {
        match u.int_in_range(0..=9)? {
            0..=2 => {
                let msg = match u.int_in_range(0..=5)? {
                    0 => {
                        let n = u.int_in_range(0..=4)?;
                        let devices = (0..n).map(|i| names[i % names.len()].to_string()).collect();
                        ToClient::Configured {
                            cfg: config(u)?,
                            devices,
                        }
                    }
                    1 | 2 => ToClient::Command(cmd(u, &fetched)?),
                    3 => ToClient::CloseDevice {
                        dev: u.int_in_range(0..=4)?,
                    },
                    4 => ToClient::Abort,
                    _ => ToClient::Died,
                };
                let Frame::ToClient { msg } = round_trip(&Frame::ToClient { msg }) else {
                    unreachable!("read back as written");
                };
                c.deliver(msg);
            }
            3 => {
                let _ = c.get_configuration();
            }
            4 => {
                if let Ok(h) = c.open_device(u.choose(&names)?).result {
                    handles.push(h);
                }
            }
            5 | 6 if !handles.is_empty() => {
                let h = *u.choose(&handles)?;
                if let Blocking::Ready(r) = c.get_command(h)
                    && let Ok(k) = r.result
                {
                    fetched.push(k);
                }
            }
            7 if !handles.is_empty() => {
                let h = *u.choose(&handles)?;
                let k = cmd(u, &fetched)?;
                let code = Win32(*u.choose(&[0, 38, 112, 1117, u32::MAX])?);
                let _ =
                    c.complete_command(h, &k, code, u.arbitrary()?, u.arbitrary()?, Content::Empty);
            }
            8 => {
                let _ = c.signal_abort();
            }
            _ => {
                let _ = c.close(&mut ns);
                if u.arbitrary()? {
                    let _ = c.create("fz", &cfg, &mut ns);
                }
            }
        }
        c.out.clear();
    }
    Ok(())
}

/// A hostile library's messages to the server half during a statement.
fn server_half(u: &mut Unstructured<'_>) -> Result<()> {
    let mut s = ServerHalf::new(Arc::new(Profile::default()));
    let mut tr = Trace::off();
    let mut out = Vec::new();
    let cfg = VdConfig {
        device_count: u.int_in_range(1..=3)?,
        ..config(u)?
    };
    let devices = (0..cfg.device_count)
        .map(|i| {
            if i == 0 {
                "fz".to_string()
            } else {
                format!("fz-dev{i}")
            }
        })
        .collect();
    let stmt = Statement {
        kind: *u.choose(&[
            StatementKind::BackupDatabase,
            StatementKind::RestoreDatabase,
        ])?,
        database: "fz".into(),
        devices,
        options: TransferOptions {
            block_size: 512,
            max_transfer_size: 65536,
            buffer_count: None,
        },
        plan: ServerPlan {
            data_bytes: u.int_in_range(0..=(256 << 10))?,
            ..ServerPlan::default()
        },
    };
    let set = SetInfo {
        name: "fz".into(),
        cfg,
    };
    let mut now = 0;
    s.start(now, stmt, Some(set), &mut out, &mut tr);
    let mut sent: Vec<Cmd> = Vec::new();
    for _ in 0..u.int_in_range(0..=64)? {
        for m in out.drain(..) {
            if let ToClient::Command(c) = m {
                sent.push(c);
            }
        }
        now += u64::from(u.int_in_range(0u16..=2000)?);
        let msg = match u.int_in_range(0..=9)? {
            0 => ToServer::Abort,
            1 => ToServer::Closed,
            2 => ToServer::Died,
            3 => {
                s.on_time(now, &mut out, &mut tr);
                continue;
            }
            _ => {
                let c = cmd(u, &sent)?;
                ToServer::Completed(Completion {
                    id: c.id,
                    dev: c.dev,
                    code: Win32(*u.choose(&[0, 38, 112, 1117, u32::MAX])?),
                    bytes: *u.choose(&[u64::from(c.size), 0, u64::from(c.size) + 1, u64::MAX])?,
                    position: u.arbitrary()?,
                    data: Content::Empty,
                    auto: u.arbitrary()?,
                })
            }
        };
        let Frame::ToServer { msg } = round_trip(&Frame::ToServer { msg }) else {
            unreachable!("read back as written");
        };
        s.on_message(now, msg, &mut out, &mut tr);
    }
    Ok(())
}

fuzz_target!(|bytes: &[u8]| {
    let mut u = Unstructured::new(bytes);
    let _ = match u.int_in_range(0u8..=3) {
        Ok(0) => maps(&mut u),
        Ok(1) => geometry(&mut u),
        Ok(2) => client_half(&mut u),
        _ => server_half(&mut u),
    };
});
