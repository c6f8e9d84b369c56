//! The recording: the objects seen so far (set objects numbered in the
//! order they were constructed, their incarnations and devices, the
//! command blocks delivered and not yet completed) and the file the lines
//! go to.

use crate::digest::{fnv4x64, fnv4x64_sample};
use crate::{
    DIGEST_BYTES_MAX, ENV_DIGEST, ENV_FILE, ENV_FLUSH, FORMAT_NAME, FORMAT_VERSION,
    NAME_RECORDED_MAX,
};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use vdi_spec::{CommandCode, Hresult, VdConfig, VdcCommand};

/// A set object the program constructed.
#[derive(Default)]
struct SetRec {
    obj: u64,
    inc: u32,
    name: String,
    /// Device names opened in this incarnation, in index order.
    devices: Vec<String>,
    next_cmd: u64,
}

/// A device object OpenDevice returned.
#[derive(Clone, Copy)]
pub struct DevRec {
    pub set_addr: usize,
    pub obj: u64,
    pub inc: u32,
    pub index: u16,
}

/// A command block delivered by GetCommand and not yet completed.
#[derive(Clone, Copy)]
pub struct Delivered {
    pub id: u64,
    pub block: VdcCommand,
}

// SAFETY: `block.buffer` is only an address here; it is dereferenced only
// while the command is outstanding, by the thread completing it.
unsafe impl Send for Delivered {}

/// A hasher for addresses: one multiply per word (the maps are small and
/// their keys are not chosen by an adversary).
#[derive(Default)]
struct AddrHasher(u64);

impl std::hash::Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

type Map<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<AddrHasher>>;

#[derive(Default)]
struct State {
    sets: Map<usize, SetRec>,
    devs: Map<usize, DevRec>,
    outstanding: Map<(usize, usize), Delivered>,
    next_obj: u64,
}

/// What buffers are digested (`VDISIM_RECORD_DIGEST`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Digest {
    /// Every byte (`full`).
    Full,
    /// The first and the last [`crate::digest::SAMPLE`] bytes and the
    /// length (`sample`).
    Sample,
    /// None (`none`).
    None,
}

impl Digest {
    /// The header's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Digest::Full => "fnv4x64",
            Digest::Sample => "fnv4x64-sample",
            Digest::None => "none",
        }
    }
}

/// The file, the `seq` of the last line, and the lines not yet written.
struct Out {
    file: File,
    seq: u64,
    pending: Vec<u8>,
}

/// The most bytes of batched lines held before they are written.
pub const BATCH_BYTES: usize = 64 * 1024;

/// The recording file and what numbers its lines.
pub struct Recorder {
    out: Mutex<Out>,
    /// Whether data round trips are batched (`VDISIM_RECORD_FLUSH=batch`).
    batch: bool,
    /// The `seq` of the last call written (0: none).
    last: AtomicU64,
    origin: Instant,
    /// This process's id (read once: `getpid` is a system call).
    pid: u32,
    pub digest: Digest,
    state: Mutex<State>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The recorder, opened at the first call; `None` when nothing is recorded.
pub fn recorder() -> Option<&'static Recorder> {
    static REC: OnceLock<Option<Recorder>> = OnceLock::new();
    REC.get_or_init(open).as_ref()
}

fn open() -> Option<Recorder> {
    let path = std::env::var_os(ENV_FILE).filter(|p| !p.is_empty())?;
    let digest = match std::env::var(ENV_DIGEST).as_deref() {
        Ok("full") => Digest::Full,
        Err(_) | Ok("sample") => Digest::Sample,
        Ok("none") => Digest::None,
        Ok(v) => {
            eprintln!(
                "vdisim recorder: {ENV_DIGEST}={v:?} is not full, sample or none; digesting the ends of each buffer (sample)"
            );
            Digest::Sample
        }
    };
    let batch = match std::env::var(ENV_FLUSH).as_deref() {
        Err(_) | Ok("batch") => true,
        Ok("call") => false,
        Ok(v) => {
            eprintln!(
                "vdisim recorder: {ENV_FLUSH}={v:?} is neither batch nor call; writing each line as its call returns (call)"
            );
            false
        }
    };
    let mut o = std::fs::OpenOptions::new();
    o.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let file = match o.open(&path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "vdisim recorder: cannot open the recording {} named by {ENV_FILE}: {e}; give a path this process may create or append to; calls are forwarded and not recorded",
                std::path::Path::new(&path).display()
            );
            return None;
        }
    };
    if batch {
        // SAFETY: registers a function with no preconditions, run by the C
        // library at exit.
        unsafe { atexit(flush_at_exit) };
    }
    let r = Recorder {
        out: Mutex::new(Out {
            file,
            seq: 0,
            pending: Vec::with_capacity(BATCH_BYTES + 4096),
        }),
        batch,
        pid: std::process::id(),
        last: AtomicU64::new(0),
        origin: Instant::now(),
        digest,
        state: Mutex::new(State::default()),
    };
    r.header();
    Some(r)
}

impl Recorder {
    fn header(&self) {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let scale = std::env::var("VDISIM_TIME_SCALE")
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|v| (1..=1000).contains(v))
            .unwrap_or(1);
        let real = std::env::var(crate::ENV_REAL).unwrap_or_default();
        let mut l = String::new();
        let _ = write!(
            l,
            "{{\"rec\":\"header\",\"format\":\"{FORMAT_NAME}\",\"v\":{FORMAT_VERSION},\"pid\":{},\"unix_ms\":{unix_ms},\"time_scale\":{scale},\"digest\":\"{}\",\"real\":",
            std::process::id(),
            self.digest.name()
        );
        json_str(&mut l, &real);
        l.push_str(",\"recorder\":\"");
        l.push_str(env!("CARGO_PKG_VERSION"));
        l.push_str("\"}\n");
        let mut g = lock(&self.out);
        let _ = g.file.write_all(l.as_bytes());
    }

    /// Writes the batched lines.
    pub fn flush(&self) {
        let mut g = lock(&self.out);
        let Out { file, pending, .. } = &mut *g;
        if !pending.is_empty() {
            let _ = file.write_all(pending);
            pending.clear();
        }
    }

    /// Microseconds since the recording's origin.
    pub fn now_us(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64
    }

    /// The `seq` of the last call that returned.
    pub fn last_seq(&self) -> u64 {
        self.last.load(Ordering::Acquire)
    }

    /// Writes a call line; `fill` appends the fields after `"method"`. A
    /// batched call's line is held (up to [`BATCH_BYTES`]); any other
    /// line is written at once, after the held ones.
    pub fn write(&self, call: &Call, fill: impl FnOnce(&mut String)) {
        let mut l = String::with_capacity(320);
        let mut g = lock(&self.out);
        let seq = g.seq + 1;
        g.seq = seq;
        let _ = write!(
            l,
            "{{\"rec\":\"call\",\"pid\":{},\"tid\":{},\"thread\":{},\"seq\":{seq},\"after\":{},\"t0_us\":{},\"t1_us\":{},\"method\":\"{}\"",
            self.pid,
            os_tid(),
            thread_no(),
            call.after,
            call.t0,
            self.now_us(),
            call.method
        );
        fill(&mut l);
        l.push_str("}\n");
        let Out { file, pending, .. } = &mut *g;
        pending.extend_from_slice(l.as_bytes());
        if !(self.batch && call.batch) || pending.len() >= BATCH_BYTES {
            let _ = file.write_all(pending);
            pending.clear();
        }
        self.last.store(seq, Ordering::Release);
    }

    // ----- objects ---------------------------------------------------------------------

    /// A set object constructed at `addr`: its number.
    pub fn constructed(&self, addr: usize) -> u64 {
        let mut s = lock(&self.state);
        s.next_obj += 1;
        let obj = s.next_obj;
        s.sets.insert(
            addr,
            SetRec {
                obj,
                ..SetRec::default()
            },
        );
        obj
    }

    /// The set object at `addr` destroyed: its (number, incarnation).
    pub fn destroyed(&self, addr: usize) -> (u64, u32) {
        let mut s = lock(&self.state);
        s.devs.retain(|_, d| d.set_addr != addr);
        s.sets.remove(&addr).map_or((0, 0), |r| (r.obj, r.inc))
    }

    /// The (number, incarnation) of the set object at `addr` (0, 0 if it
    /// was not constructed through the recorder).
    pub fn set_of(&self, addr: usize) -> (u64, u32) {
        lock(&self.state)
            .sets
            .get(&addr)
            .map_or((0, 0), |r| (r.obj, r.inc))
    }

    /// A Create on `addr` named `name` succeeded: the new incarnation.
    pub fn created(&self, addr: usize, name: &str) -> (u64, u32) {
        let mut s = lock(&self.state);
        let Some(r) = s.sets.get_mut(&addr) else {
            return (0, 0);
        };
        r.inc += 1;
        r.name = name.to_string();
        r.devices.clear();
        (r.obj, r.inc)
    }

    /// OpenDevice on set `addr` returned the device object `dev` for
    /// `name`: its index (0 for the device named like the set, then in the
    /// order the others were opened).
    pub fn opened(&self, addr: usize, name: &str, dev: usize) -> Option<u16> {
        let mut s = lock(&self.state);
        let r = s.sets.get_mut(&addr)?;
        let index = if name == r.name {
            0
        } else if let Some(i) = r.devices.iter().position(|n| n == name) {
            i as u16 + 1
        } else {
            r.devices.push(name.to_string());
            r.devices.len() as u16
        };
        let d = DevRec {
            set_addr: addr,
            obj: r.obj,
            inc: r.inc,
            index,
        };
        s.devs.insert(dev, d);
        Some(index)
    }

    /// The device object at `dev`, if OpenDevice returned it.
    pub fn device(&self, dev: usize) -> Option<DevRec> {
        lock(&self.state).devs.get(&dev).copied()
    }

    /// GetCommand on `dev` delivered `block` at `addr`: its id.
    pub fn delivered(&self, dev: usize, set_addr: usize, addr: usize, block: VdcCommand) -> u64 {
        let mut s = lock(&self.state);
        let id = s.sets.get_mut(&set_addr).map_or(0, |r| {
            r.next_cmd += 1;
            r.next_cmd
        });
        s.outstanding.insert((dev, addr), Delivered { id, block });
        id
    }

    /// The command delivered on `dev` at `addr`, if it is outstanding.
    pub fn outstanding(&self, dev: usize, addr: usize) -> Option<Delivered> {
        lock(&self.state).outstanding.get(&(dev, addr)).copied()
    }

    /// The command at `addr` was completed on `dev` (the real library
    /// accepted it, or refused it for good).
    pub fn completed(&self, dev: usize, addr: usize) {
        lock(&self.state).outstanding.remove(&(dev, addr));
    }
}

/// A call in progress: when it began and what had returned by then.
pub struct Call {
    pub method: &'static str,
    /// A data round trip that went well (GetCommand or CompleteCommand
    /// returning NOERROR): its line may be batched.
    pub batch: bool,
    pub t0: u64,
    pub after: u64,
}

impl Call {
    pub fn begin(r: &Recorder, method: &'static str) -> Call {
        Call {
            method,
            batch: false,
            after: r.last_seq(),
            t0: r.now_us(),
        }
    }
}

/// The operating system's id of the calling thread (`gettid` on Linux,
/// `GetCurrentThreadId` on Windows).
fn os_tid() -> i64 {
    thread_local! {
        static TID: i64 = sys_tid();
    }
    TID.with(|t| *t)
}

#[cfg(unix)]
fn sys_tid() -> i64 {
    // SAFETY: gettid has no preconditions.
    i64::from(unsafe { libc_gettid() })
}

#[cfg(windows)]
fn sys_tid() -> i64 {
    // SAFETY: GetCurrentThreadId has no preconditions.
    i64::from(unsafe { windows_sys::Win32::System::Threading::GetCurrentThreadId() })
}

#[cfg(unix)]
unsafe extern "C" {
    #[link_name = "gettid"]
    fn libc_gettid() -> i32;
}

// The C library's `atexit`: on Linux run at `exit`; in a Windows DLL
// (mingw-w64's DLL start-up code) run when the DLL is detached from the
// process, which `ExitProcess` does too.
unsafe extern "C" {
    fn atexit(f: extern "C" fn()) -> std::ffi::c_int;
}

/// Writes the batched lines when the process exits normally.
extern "C" fn flush_at_exit() {
    if let Some(r) = recorder() {
        r.flush();
    }
}

fn thread_no() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static NO: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    NO.with(|n| *n)
}

// ----- fields ----------------------------------------------------------------------------

/// Appends `s` as a JSON string.
pub fn json_str(l: &mut String, s: &str) {
    l.push('"');
    for c in s.chars() {
        match c {
            '"' => l.push_str("\\\""),
            '\\' => l.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(l, "\\u{:04x}", c as u32);
            }
            c => l.push(c),
        }
    }
    l.push('"');
}

/// `,"key":"value"`.
pub fn field_str(l: &mut String, key: &str, v: &str) {
    let _ = write!(l, ",\"{key}\":");
    json_str(l, v);
}

/// `,"key":n`.
pub fn field_num(l: &mut String, key: &str, v: impl std::fmt::Display) {
    let _ = write!(l, ",\"{key}\":{v}");
}

/// The set fields `obj`, `inc`.
pub fn field_set(l: &mut String, obj: u64, inc: u32) {
    let _ = write!(l, ",\"obj\":{obj},\"inc\":{inc}");
}

/// `,"ret":n,"ret_name":"..."` for a Linux return value.
pub fn field_ret(l: &mut String, ret: i32) {
    let h = Hresult::from_linux(ret);
    let _ = write!(l, ",\"ret\":{}", h.0);
    match h.name() {
        Some(n) => field_str(l, "ret_name", n),
        None => field_str(l, "ret_name", &format!("0x{:08X}", h.0)),
    }
}

/// `,"config":{...}` with the VDConfig's eleven fields.
pub fn field_config(l: &mut String, c: &VdConfig) {
    let _ = write!(
        l,
        ",\"config\":{{\"deviceCount\":{},\"features\":{},\"prefixZoneSize\":{},\"alignment\":{},\"softFileMarkBlockSize\":{},\"EOMWarningSize\":{},\"serverTimeOut\":{},\"blockSize\":{},\"maxIoDepth\":{},\"maxTransferSize\":{},\"bufferAreaSize\":{}}}",
        c.device_count,
        c.features,
        c.prefix_zone_size,
        c.alignment,
        c.soft_file_mark_block_size,
        c.eom_warning_size,
        c.server_time_out,
        c.block_size,
        c.max_io_depth,
        c.max_transfer_size,
        c.buffer_area_size
    );
}

/// `,"key":{"id":..,"code":..,"name":..,"size":..,"position":..}` and the
/// digest when given.
pub fn field_cmd(l: &mut String, key: &str, id: u64, b: &VdcCommand, digest: Option<u64>) {
    let name = CommandCode::from_u32(b.command_code).map_or("unknown", CommandCode::name);
    let _ = write!(
        l,
        ",\"{key}\":{{\"id\":{id},\"code\":{},\"name\":\"{name}\",\"size\":{},\"position\":{}",
        b.command_code, b.size, b.position
    );
    if let Some(d) = digest {
        let _ = write!(l, ",\"digest\":\"{d:016x}\"");
    }
    l.push('}');
}

/// The `,"cmd":{..}` fields of a GetCommand that answered `ok` on device
/// object `this` (`d` its record), with the block's digest for a Write;
/// empty when no block was delivered. The block is noted as delivered (its
/// id is the recording's).
///
/// # Safety
/// When `ok`, `cmd` must be null or where the real library wrote the
/// address of a block it delivered (readable until it is completed).
pub unsafe fn fetched_fields(
    r: &Recorder,
    this: usize,
    d: Option<DevRec>,
    ok: bool,
    cmd: *const *mut VdcCommand,
) -> String {
    let got = if ok && !cmd.is_null() {
        // SAFETY: the real library wrote the block's address there.
        let p = unsafe { cmd.read_unaligned() };
        // SAFETY: a block the real library just delivered: readable until
        // it is completed.
        (!p.is_null()).then(|| (p as usize, unsafe { p.read_unaligned() }))
    } else {
        None
    };
    let mut fields = String::new();
    if let Some((addr, b)) = got {
        let id = r.delivered(this, d.map_or(0, |d| d.set_addr), addr, b);
        let digest = if CommandCode::from_u32(b.command_code) == Some(CommandCode::Write) {
            // SAFETY: a Write's buffer holds `size` bytes for the client
            // to read (VDC_Command, vdi-spec.md §3.5).
            unsafe { digest_of(r, b.buffer, b.size as usize) }
        } else {
            None
        };
        field_cmd(&mut fields, "cmd", id, &b, digest);
    }
    fields
}

/// The fields of a CompleteCommand on device object `this`, read before
/// the real call: the delivered block, whether the program changed it, the
/// Read's digest when the program `succeeded` (ERROR_SUCCESS) with
/// `bytes`; and whether `cmd` is a block outstanding on `this` (else
/// the fields give only its address).
pub fn completion_fields(
    r: &Recorder,
    this: usize,
    cmd: *mut VdcCommand,
    succeeded: bool,
    bytes: u64,
) -> (String, bool) {
    let mut fields = String::new();
    let Some(o) = r.outstanding(this, cmd as usize) else {
        field_str(&mut fields, "cmd_addr", &format!("{:#x}", cmd as usize));
        return (fields, false);
    };
    // SAFETY: an outstanding block the real library delivered on this
    // device: still its, still readable.
    let now = unsafe { cmd.read_unaligned() };
    field_cmd(&mut fields, "cmd", o.id, &o.block, None);
    let modified = now != o.block;
    field_num(&mut fields, "block_modified", modified);
    if modified {
        fields.push_str(&format!(
            ",\"handed_back\":{{\"code\":{},\"size\":{},\"position\":{},\"buffer_changed\":{}}}",
            now.command_code,
            now.size,
            now.position,
            now.buffer != o.block.buffer
        ));
    }
    let read = CommandCode::from_u32(o.block.command_code) == Some(CommandCode::Read);
    if read && succeeded {
        let n = bytes.min(u64::from(o.block.size)) as usize;
        // SAFETY: the delivered buffer holds `size` bytes; the program
        // filled the first `bytes` of them for this Read.
        if let Some(h) = unsafe { digest_of(r, o.block.buffer, n) } {
            field_str(&mut fields, "digest", &format!("{h:016x}"));
        }
    }
    (fields, true)
}

/// A NUL-terminated name as the program passed it: the text (lossy
/// UTF-8) and whether it was cut at [`NAME_RECORDED_MAX`] bytes.
///
/// # Safety
/// `p` must be null or a NUL-terminated string (what the real library
/// requires of the program too); at most `NAME_RECORDED_MAX + 1` bytes
/// are read, stopping at the NUL.
pub unsafe fn read_name(p: *const std::ffi::c_char) -> Option<(String, bool)> {
    if p.is_null() {
        return None;
    }
    let mut v = Vec::new();
    for i in 0..=NAME_RECORDED_MAX {
        // SAFETY: within the NUL-terminated string (caller), stopping at
        // its NUL.
        let b = unsafe { p.add(i).read() } as u8;
        if b == 0 {
            return Some((String::from_utf8_lossy(&v).into_owned(), false));
        }
        v.push(b);
    }
    v.truncate(NAME_RECORDED_MAX);
    Some((String::from_utf8_lossy(&v).into_owned(), true))
}

/// The digest of `len` bytes at `buf`, when digests are on and the bytes
/// are within bounds.
///
/// # Safety
/// `buf` must be null or point to `len` readable bytes.
pub unsafe fn digest_of(r: &Recorder, buf: *const u8, len: usize) -> Option<u64> {
    if r.digest == Digest::None || buf.is_null() || len > DIGEST_BYTES_MAX {
        return None;
    }
    // SAFETY: per the caller.
    let data = unsafe { std::slice::from_raw_parts(buf, len) };
    Some(match r.digest {
        Digest::Sample => fnv4x64_sample(data),
        _ => fnv4x64(data),
    })
}

/// A NUL-terminated UTF-16 name as the program passed it (Windows): the
/// text as UTF-8 (unpaired surrogates replaced by U+FFFD) and whether it
/// was cut at [`NAME_RECORDED_MAX`] units.
///
/// # Safety
/// `p` must be null or a NUL-terminated UTF-16 string (what the real
/// library requires of the program too); at most `NAME_RECORDED_MAX + 1`
/// units are read, stopping at the NUL.
#[cfg_attr(not(windows), allow(dead_code))]
pub unsafe fn read_wide_name(p: *const u16) -> Option<(String, bool)> {
    if p.is_null() {
        return None;
    }
    let mut v = Vec::new();
    for i in 0..=NAME_RECORDED_MAX {
        // SAFETY: within the NUL-terminated string (caller), stopping at
        // its NUL.
        let u = unsafe { p.add(i).read_unaligned() };
        if u == 0 {
            return Some((String::from_utf16_lossy(&v), false));
        }
        v.push(u);
    }
    v.truncate(NAME_RECORDED_MAX);
    Some((String::from_utf16_lossy(&v), true))
}

/// A Windows `DWORD` timeout as the format records it: ms, with
/// `INFINITE` as -1 (a negative timeout waits forever, as on Linux).
#[cfg_attr(not(windows), allow(dead_code))]
pub fn dword_timeout_ms(t: u32) -> i64 {
    if t == vdi_spec::abi::INFINITE {
        -1
    } else {
        i64::from(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wide(s: &str) -> Vec<u16> {
        s.encode_utf16().chain(std::iter::once(0)).collect()
    }

    #[test]
    fn wide_names_are_recorded_as_utf8() {
        let w = wide("nightly-é-\u{1F600}");
        // SAFETY: a NUL-terminated UTF-16 string.
        let got = unsafe { read_wide_name(w.as_ptr()) };
        assert_eq!(got, Some(("nightly-é-\u{1F600}".to_string(), false)));
        // SAFETY: null is allowed.
        assert_eq!(unsafe { read_wide_name(std::ptr::null()) }, None);
        // An unpaired surrogate becomes U+FFFD, the rest is kept.
        let bad = [0x61, 0xD800, 0x62, 0];
        // SAFETY: NUL-terminated.
        let got = unsafe { read_wide_name(bad.as_ptr()) };
        assert_eq!(got, Some(("a\u{FFFD}b".to_string(), false)));
    }

    #[test]
    fn long_wide_names_are_cut_and_flagged() {
        let long = "x".repeat(NAME_RECORDED_MAX + 10);
        let w = wide(&long);
        // SAFETY: NUL-terminated.
        let (n, cut) = unsafe { read_wide_name(w.as_ptr()) }.unwrap();
        assert!(cut);
        assert_eq!(n.len(), NAME_RECORDED_MAX);
        let exact = wide(&"y".repeat(NAME_RECORDED_MAX));
        // SAFETY: NUL-terminated.
        let (n, cut) = unsafe { read_wide_name(exact.as_ptr()) }.unwrap();
        assert!(!cut);
        assert_eq!(n.len(), NAME_RECORDED_MAX);
    }

    #[test]
    fn infinite_dword_timeouts_are_recorded_as_negative() {
        assert_eq!(dword_timeout_ms(vdi_spec::abi::INFINITE), -1);
        assert_eq!(dword_timeout_ms(10_000), 10_000);
        assert_eq!(dword_timeout_ms(0), 0);
    }
}
