//! Property: the stand-in library's C ABI (`sim/standin`, `libsqlvdi.so`'s
//! Linux class members and the `vdisim_harness_*` exports) never panics,
//! crashes or hangs under any sequence of calls with arbitrary arguments,
//! and answers every call with a documented code:
//!
//! - a set method on a null, forged (8 readable bytes naming no set),
//!   destroyed, or device object answers `VD_E_INVALID`; so does a device
//!   method on a null, forged or client-constructed device object, and
//!   every method given a null out-pointer, a null name or a null
//!   configuration (`linux.rs`: "answers VD_E_INVALID instead of being
//!   dereferenced");
//! - every other answer is 0 or a named `VD_E_*` code;
//! - the harness exports answer `OK`, `TIMED_OUT`, `ERR_JSON`,
//!   `ERR_UNSUPPORTED` or `ERR_BUFFER` (with `needed` past the buffer).
//!
//! A panic inside the library is a crash here even though the library
//! catches it (libFuzzer's panic hook aborts first), so "never panics" is
//! checked too.
//!
//! The input is decoded with `arbitrary` into up to 48 calls, each with its
//! arguments: set and device objects made by OpenDevice, constructed by the
//! "client", forged or destroyed, passed aligned or misaligned; names from
//! a small pool (so Create, OpenDevice and the server's statement meet),
//! arbitrary bytes (non-UTF-8 included) or longer than the library reads;
//! configurations with arbitrary fields; timeouts; command blocks fetched
//! by GetCommand, forged or already completed, completed with arbitrary
//! codes, byte counts (past the command's size included) and positions,
//! after the "client" wrote arbitrary values into the read-only block;
//! buffer addresses and handles; statements (every kind, options in and out
//! of range, any device list) and server events for the case's in-process
//! server; the client's death. One more "call" is a prelude (a set created,
//! a BACKUP naming it, its configuration and devices), so that coverage
//! guidance starts from an active set.
//!
//! Each input is one harness case in process (`vdisim_harness_reset`: the
//! server runs in this process, no `vdisim serve`), and ends by destroying
//! every set object it made, so inputs are independent and fast.
//!
//! What is **not** fuzzed, and why:
//! - pointers to memory the target does not own: a "bad pointer" here is
//!   null, misaligned, a forged object (readable memory holding a value
//!   that names nothing), an object of the wrong kind, or a stale object —
//!   what the ABI says the library checks. A wild pointer would crash any
//!   C library and proves nothing;
//! - writing into a command's data buffer after its command is completed,
//!   or into a completed command block (the client does not own them then);
//!   data is written only just after GetCommand, at most the command's size;
//! - timeouts that wait forever (negative on Linux) or long: waits are 0 to
//!   3 ms (10 ms for the prelude's GetConfiguration, which waits for the
//!   case server to open the set), so no call blocks for long and nothing
//!   that waits forever is asked for;
//! - `vdisim_harness_finish` (it waits up to 5 s for a statement to end)
//!   and `vdisim_use_server` (it would switch the process to a server
//!   process for good);
//! - the COM face (`IClientVirtualDeviceSet2` vtables, UTF-16 names): it
//!   shares the objects, the registry and the runtime with the Linux face
//!   fuzzed here (`objects.rs`); its vtable dispatch is covered by the C and
//!   C++ ABI tests;
//! - memory leaks: LeakSanitizer's checks during fuzzing are off for this
//!   target ([`__asan_default_options`]). With them on, a 60 s run reported
//!   under 200 bytes "leaked" from the case server's thread (its list of
//!   fired faults) and from glibc's thread-exit records; the server runs on
//!   a thread of its own that each input's reset stops and joins, which is
//!   where LeakSanitizer is known to misreport. Not investigated further.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use sqlvdi::harness;
use std::ffi::{CString, c_char, c_int, c_long, c_uint, c_ulong, c_void};
use vdi_host::contract::CaseSetup;
use vdi_model::fault::Fault;
use vdi_model::statement::{ServerPlan, Statement, StatementKind};
use vdi_spec::{Hresult, TransferOptions, VdConfig, VdcCommand};

type SetPtr = *mut *const c_void;
type DevPtr = *mut c_void;

// The Linux class members, called through the C ABI as a client does.
unsafe extern "C" {
    #[link_name = "_ZN22ClientVirtualDeviceSetC1Ev"]
    fn cvds_ctor(this: SetPtr);
    #[link_name = "_ZN22ClientVirtualDeviceSetD1Ev"]
    fn cvds_dtor(this: SetPtr);
    #[link_name = "_ZN22ClientVirtualDeviceSet6CreateEPcP8VDConfig"]
    fn cvds_create(this: SetPtr, name: *const c_char, cfg: *mut VdConfig) -> c_int;
    #[link_name = "_ZN22ClientVirtualDeviceSet16GetConfigurationElP8VDConfig"]
    fn cvds_get_configuration(this: SetPtr, timeout: c_long, cfg: *mut VdConfig) -> c_int;
    #[link_name = "_ZN22ClientVirtualDeviceSet10OpenDeviceEPcPP19ClientVirtualDevice"]
    fn cvds_open_device(this: SetPtr, name: *const c_char, dev: *mut DevPtr) -> c_int;
    #[link_name = "_ZN22ClientVirtualDeviceSet5CloseEv"]
    fn cvds_close(this: SetPtr) -> c_int;
    #[link_name = "_ZN22ClientVirtualDeviceSet11SignalAbortEv"]
    fn cvds_signal_abort(this: SetPtr) -> c_int;
    #[link_name = "_ZN22ClientVirtualDeviceSet15OpenInSecondaryEPc"]
    fn cvds_open_in_secondary(this: SetPtr, name: *const c_char) -> c_int;
    #[link_name = "_ZN22ClientVirtualDeviceSet15GetBufferHandleEPhPj"]
    fn cvds_get_buffer_handle(this: SetPtr, buf: *mut u8, handle: *mut c_uint) -> c_int;
    #[link_name = "_ZN22ClientVirtualDeviceSet15MapBufferHandleEiPPh"]
    fn cvds_map_buffer_handle(this: SetPtr, handle: c_int, buf: *mut *mut u8) -> c_int;
    #[link_name = "_ZN22ClientVirtualDeviceSet20RegisterDeviceClosedEv"]
    fn cvds_register_device_closed(this: SetPtr);
    #[link_name = "_ZN19ClientVirtualDeviceC1Ev"]
    fn cvd_ctor(this: DevPtr);
    #[link_name = "_ZN19ClientVirtualDevice10GetCommandElPP11VDC_Command"]
    fn cvd_get_command(this: DevPtr, timeout: c_long, cmd: *mut *mut VdcCommand) -> c_int;
    #[link_name = "_ZN19ClientVirtualDevice15CompleteCommandEP11VDC_Commandiml"]
    fn cvd_complete_command(
        this: DevPtr,
        cmd: *mut VdcCommand,
        code: c_int,
        bytes: c_ulong,
        position: i64,
    ) -> c_int;
}

/// AddressSanitizer's options for this target: no leak checks (see the
/// header comment).
#[unsafe(no_mangle)]
pub extern "C" fn __asan_default_options() -> *const c_char {
    c"detect_leaks=0".as_ptr()
}

const INVALID: c_int = Hresult::VD_E_INVALID.0 as c_int;
const OPS_MAX: usize = 48;
const NAMES: [&str; 3] = ["fz-a", "fz-b", "fz-a-dev1"];
const TIMEOUTS_MS: [c_long; 4] = [0, 0, 1, 3];

/// A set object the "client" constructed (8 bytes it owns).
struct SetObj {
    obj: Box<*const c_void>,
    live: bool,
}

/// A device object OpenDevice returned, owned by set object `set`.
struct DevObj {
    set: usize,
    ptr: DevPtr,
}

/// A command block GetCommand returned, not yet completed.
struct Block {
    set: usize,
    ptr: *mut VdcCommand,
}

#[derive(Default)]
struct Client {
    sets: Vec<SetObj>,
    devs: Vec<DevObj>,
    /// Device objects the client constructed itself (not the set's),
    /// boxed: the library was handed their addresses, which must not move.
    #[allow(clippy::vec_box)]
    own_devs: Vec<Box<*const c_void>>,
    blocks: Vec<Block>,
    /// Command blocks completed (their addresses only, never read).
    done: Vec<usize>,
    /// Buffer addresses and handles seen.
    buffers: Vec<usize>,
    handles: Vec<c_uint>,
    /// Scratch for misaligned objects and out-pointers.
    scratch: [u64; 8],
}

/// Whether `rc` is 0 or a named `VD_E_*` code.
fn documented(rc: c_int) -> bool {
    let h = Hresult::from_linux(rc);
    rc == 0 || ((h.0 >> 16) == (0x8000 | Hresult::FACILITY_VDI) && h.name().is_some())
}

fn check(what: &str, rc: c_int, bad: bool) {
    if bad {
        assert_eq!(
            rc, INVALID,
            "{what}: a bad argument must answer VD_E_INVALID"
        );
    } else {
        assert!(documented(rc), "{what}: undocumented answer {rc:#x}");
    }
}

/// A name argument: null, a pool name, arbitrary bytes, or too long.
fn name(u: &mut Unstructured<'_>) -> Result<(Option<CString>, bool)> {
    Ok(match u.int_in_range(0..=9)? {
        0 => (None, true),
        1 => {
            let mut b: Vec<u8> = u.arbitrary()?;
            b.retain(|c| *c != 0);
            b.truncate(64);
            (CString::new(b).ok(), false)
        }
        2 => (CString::new("n".repeat(4200)).ok(), false),
        _ => (CString::new(*u.choose(&NAMES)?).ok(), false),
    })
}

fn cstr(n: &Option<CString>) -> *const c_char {
    n.as_ref().map_or(std::ptr::null(), |c| c.as_ptr())
}

fn config(u: &mut Unstructured<'_>) -> Result<VdConfig> {
    let mut c = VdConfig {
        device_count: u.int_in_range(1..=3)?,
        ..VdConfig::default()
    };
    if u.arbitrary()? {
        c.device_count = u.arbitrary()?;
        c.features = u.arbitrary()?;
        c.prefix_zone_size = u.arbitrary()?;
        c.alignment = u.arbitrary()?;
        c.soft_file_mark_block_size = u.arbitrary()?;
        c.eom_warning_size = u.arbitrary()?;
        c.server_time_out = u.arbitrary()?;
        c.block_size = u.arbitrary()?;
        c.max_io_depth = u.arbitrary()?;
        c.max_transfer_size = u.arbitrary()?;
        c.buffer_area_size = u.arbitrary()?;
    }
    Ok(c)
}

impl Client {
    /// A `this` for a set method, and whether the library must refuse it.
    fn set_this(&mut self, u: &mut Unstructured<'_>) -> Result<(SetPtr, bool)> {
        let base = self.scratch.as_mut_ptr().cast::<u8>();
        Ok(match u.int_in_range(0..=7)? {
            0 => (std::ptr::null_mut(), true),
            1 => {
                // SAFETY: 8 bytes inside `scratch`, which we own.
                unsafe { base.cast::<u64>().write(u.arbitrary::<u64>()? | 1) };
                (base.cast(), true)
            }
            2 if !self.devs.is_empty() => {
                let d = u.choose_index(self.devs.len())?;
                (self.devs[d].ptr.cast(), true)
            }
            _ if self.sets.is_empty() => (std::ptr::null_mut(), true),
            k => {
                let i = u.choose_index(self.sets.len())?;
                let s = &mut self.sets[i];
                let bad = !s.live;
                if k == 3 {
                    // The same object, misaligned: 8 bytes at scratch + 1.
                    // SAFETY: bytes 1..9 of `scratch`, which we own.
                    let at = unsafe { base.add(1) };
                    // SAFETY: as above; written unaligned.
                    unsafe { at.cast::<*const c_void>().write_unaligned(*s.obj) };
                    (at.cast(), bad)
                } else {
                    (&mut *s.obj as SetPtr, bad)
                }
            }
        })
    }

    /// A `this` for a device method, and whether it must be refused.
    fn dev_this(&mut self, u: &mut Unstructured<'_>) -> Result<(DevPtr, bool, Option<usize>)> {
        let base = self.scratch.as_mut_ptr().cast::<u8>();
        Ok(match u.int_in_range(0..=5)? {
            0 => (std::ptr::null_mut(), true, None),
            1 => {
                // SAFETY: 8 bytes inside `scratch`, which we own.
                unsafe { base.cast::<u64>().write(u.arbitrary::<u64>()? | 1) };
                (base.cast(), true, None)
            }
            2 => {
                let mut o = Box::new(std::ptr::null::<c_void>());
                let p: DevPtr = (&mut *o as *mut *const c_void).cast();
                // SAFETY: 8 writable bytes we own.
                unsafe { cvd_ctor(p) };
                self.own_devs.push(o);
                (p, true, None)
            }
            _ if self.devs.is_empty() => (std::ptr::null_mut(), true, None),
            _ => {
                let i = u.choose_index(self.devs.len())?;
                (self.devs[i].ptr, false, Some(i))
            }
        })
    }

    fn new_set(&mut self) {
        let mut obj = Box::new(std::ptr::null::<c_void>());
        // SAFETY: 8 writable bytes we own.
        unsafe { cvds_ctor(&mut *obj) };
        self.sets.push(SetObj { obj, live: true });
    }

    fn drop_set(&mut self, u: &mut Unstructured<'_>) -> Result<()> {
        if self.sets.is_empty() {
            return Ok(());
        }
        let i = u.choose_index(self.sets.len())?;
        // SAFETY: our 8-byte object (a second destructor finds null).
        unsafe { cvds_dtor(&mut *self.sets[i].obj) };
        self.sets[i].live = false;
        // Its device objects and command blocks are gone with it.
        self.devs.retain(|d| d.set != i);
        self.blocks.retain(|b| b.set != i);
        Ok(())
    }

    fn create(&mut self, u: &mut Unstructured<'_>) -> Result<()> {
        let (this, bad) = self.set_this(u)?;
        let (n, null_name) = name(u)?;
        let mut cfg = config(u)?;
        let null_cfg = u.ratio(1, 8)?;
        let c: *mut VdConfig = if null_cfg {
            std::ptr::null_mut()
        } else {
            &mut cfg
        };
        // SAFETY: `this` is null or 8 readable bytes; the name is null or
        // NUL-terminated; the configuration null or ours.
        let rc = unsafe { cvds_create(this, cstr(&n), c) };
        check("Create", rc, bad || null_name || null_cfg);
        Ok(())
    }

    fn get_configuration(&mut self, u: &mut Unstructured<'_>) -> Result<()> {
        let (this, bad) = self.set_this(u)?;
        let timeout = *u.choose(&TIMEOUTS_MS)?;
        let mut cfg = VdConfig::default();
        let base = self.scratch.as_mut_ptr().cast::<u8>();
        let (out, null): (*mut VdConfig, bool) = match u.int_in_range(0..=3)? {
            0 => (std::ptr::null_mut(), true),
            // SAFETY: VdConfig is 44 bytes; scratch + 3 leaves 61.
            1 => (unsafe { base.add(3) }.cast(), false),
            _ => (&mut cfg, false),
        };
        // SAFETY: `this` as in `set_this`; `out` null or writable.
        let rc = unsafe { cvds_get_configuration(this, timeout, out) };
        check("GetConfiguration", rc, bad || null);
        Ok(())
    }

    fn open_device(&mut self, u: &mut Unstructured<'_>) -> Result<()> {
        let (this, bad) = self.set_this(u)?;
        let (n, null_name) = name(u)?;
        let mut dev: DevPtr = std::ptr::null_mut();
        let base = self.scratch.as_mut_ptr().cast::<u8>();
        let (out, null): (*mut DevPtr, bool) = match u.int_in_range(0..=3)? {
            0 => (std::ptr::null_mut(), true),
            // SAFETY: 8 bytes at scratch + 5, inside it.
            1 => (unsafe { base.add(5) }.cast(), false),
            _ => (&mut dev, false),
        };
        // SAFETY: as in `create`; `out` null or 8 writable bytes.
        let rc = unsafe { cvds_open_device(this, cstr(&n), out) };
        check("OpenDevice", rc, bad || null_name || null);
        if rc == 0 {
            // SAFETY: the library wrote the device pointer there.
            let p = unsafe { out.read_unaligned() };
            let set = self.set_index(this);
            assert!(!p.is_null(), "OpenDevice succeeded with a null device");
            if let Some(set) = set {
                self.devs.push(DevObj { set, ptr: p });
            }
        }
        Ok(())
    }

    /// Which of our set objects `this` is (by the value it holds).
    fn set_index(&self, this: SetPtr) -> Option<usize> {
        // SAFETY: `this` is 8 readable bytes (it was just accepted).
        let v = unsafe { this.read_unaligned() };
        self.sets.iter().position(|s| s.live && *s.obj == v)
    }

    fn simple(&mut self, u: &mut Unstructured<'_>, which: u8) -> Result<()> {
        let (this, bad) = self.set_this(u)?;
        // SAFETY: `this` as in `set_this`; the names null or NUL-terminated.
        let rc = unsafe {
            match which {
                0 => cvds_close(this),
                1 => cvds_signal_abort(this),
                2 => {
                    let (n, null_name) = name(u)?;
                    let rc = cvds_open_in_secondary(this, cstr(&n));
                    check("OpenInSecondary", rc, bad || null_name);
                    return Ok(());
                }
                _ => {
                    cvds_register_device_closed(this);
                    return Ok(());
                }
            }
        };
        check(["Close", "SignalAbort"][usize::from(which)], rc, bad);
        Ok(())
    }

    fn buffer_handles(&mut self, u: &mut Unstructured<'_>) -> Result<()> {
        let (this, bad) = self.set_this(u)?;
        let base = self.scratch.as_mut_ptr().cast::<u8>();
        if u.arbitrary()? {
            let buf = match u.int_in_range(0..=2)? {
                0 => std::ptr::null_mut(),
                1 if !self.buffers.is_empty() => *u.choose(&self.buffers)? as *mut u8,
                _ => u.arbitrary::<usize>()? as *mut u8,
            };
            let mut h: c_uint = 0;
            let (out, null): (*mut c_uint, bool) = match u.int_in_range(0..=2)? {
                0 => (std::ptr::null_mut(), true),
                // SAFETY: 4 bytes at scratch + 1.
                1 => (unsafe { base.add(1) }.cast(), false),
                _ => (&mut h, false),
            };
            // SAFETY: `buf` is only compared, never read (linux.rs); `out`
            // null or writable.
            let rc = unsafe { cvds_get_buffer_handle(this, buf, out) };
            check("GetBufferHandle", rc, bad || null);
            if rc == 0 {
                // SAFETY: written by the library.
                self.handles.push(unsafe { out.read_unaligned() });
            }
        } else {
            let handle = match u.arbitrary::<bool>()? {
                true if !self.handles.is_empty() => *u.choose(&self.handles)? as c_int,
                _ => u.arbitrary()?,
            };
            let mut p: *mut u8 = std::ptr::null_mut();
            let (out, null): (*mut *mut u8, bool) = match u.int_in_range(0..=2)? {
                0 => (std::ptr::null_mut(), true),
                // SAFETY: 8 bytes at scratch + 7.
                1 => (unsafe { base.add(7) }.cast(), false),
                _ => (&mut p, false),
            };
            // SAFETY: `out` null or writable; the address is not read.
            let rc = unsafe { cvds_map_buffer_handle(this, handle, out) };
            check("MapBufferHandle", rc, bad || null);
        }
        Ok(())
    }

    fn get_command(&mut self, u: &mut Unstructured<'_>) -> Result<()> {
        let (this, bad, dev) = self.dev_this(u)?;
        let timeout = *u.choose(&TIMEOUTS_MS)?;
        let mut p: *mut VdcCommand = std::ptr::null_mut();
        let base = self.scratch.as_mut_ptr().cast::<u8>();
        let (out, null): (*mut *mut VdcCommand, bool) = match u.int_in_range(0..=3)? {
            0 => (std::ptr::null_mut(), true),
            // SAFETY: 8 bytes at scratch + 9.
            1 => (unsafe { base.add(9) }.cast(), false),
            _ => (&mut p, false),
        };
        // SAFETY: `this` null or 8 readable bytes; `out` null or writable.
        let rc = unsafe { cvd_get_command(this, timeout, out) };
        check("GetCommand", rc, bad || null);
        if rc != 0 {
            return Ok(());
        }
        // SAFETY: written by the library: a block it owns until completed.
        let block = unsafe { out.read_unaligned() };
        assert!(!block.is_null(), "GetCommand succeeded with a null block");
        // SAFETY: the block is the library's and alive (not completed).
        let c = unsafe { block.read() };
        if !c.buffer.is_null() {
            self.buffers.push(c.buffer as usize);
            if u.arbitrary()? {
                let n = (c.size as usize).min(u.int_in_range(0..=4096)?);
                let fill: u8 = u.arbitrary()?;
                // SAFETY: the client owns the command's `size` data bytes
                // until it completes the command; n <= size.
                unsafe { std::ptr::write_bytes(c.buffer, fill, n) };
            }
        }
        if let Some(d) = dev {
            self.blocks.push(Block {
                set: self.devs[d].set,
                ptr: block,
            });
        }
        Ok(())
    }

    fn complete_command(&mut self, u: &mut Unstructured<'_>) -> Result<()> {
        let (this, bad, _) = self.dev_this(u)?;
        let (cmd, tracked): (*mut VdcCommand, Option<usize>) = match u.int_in_range(0..=4)? {
            0 => (std::ptr::null_mut(), None),
            1 => (u.arbitrary::<usize>()? as *mut VdcCommand, None),
            2 if !self.done.is_empty() => (*u.choose(&self.done)? as *mut VdcCommand, None),
            _ if self.blocks.is_empty() => (std::ptr::null_mut(), None),
            _ => {
                let i = u.choose_index(self.blocks.len())?;
                (self.blocks[i].ptr, Some(i))
            }
        };
        if let Some(i) = tracked
            && u.ratio(1, 4)?
        {
            // The client scribbles on the read-only block it still holds.
            let forged = VdcCommand {
                command_code: u.arbitrary()?,
                size: u.arbitrary()?,
                position: u.arbitrary()?,
                buffer: u.arbitrary::<usize>()? as *mut u8,
            };
            // SAFETY: an outstanding block of a live set object: the
            // library keeps it allocated until completion or destruction.
            unsafe { self.blocks[i].ptr.write_volatile(forged) };
        }
        let code: c_int = match u.int_in_range(0..=3)? {
            0 => u.arbitrary()?,
            1 => 38, // ERROR_HANDLE_EOF
            _ => 0,
        };
        let bytes: c_ulong = u.arbitrary()?;
        let position: i64 = u.arbitrary()?;
        // SAFETY: `this` null or 8 readable bytes; `cmd` is read only when
        // it is one of the device's outstanding blocks (linux.rs).
        let rc = unsafe { cvd_complete_command(this, cmd, code, bytes, position) };
        check("CompleteCommand", rc, bad);
        if rc == 0
            && let Some(i) = tracked
        {
            let b = self.blocks.swap_remove(i);
            self.done.push(b.ptr as usize);
        }
        Ok(())
    }

    /// A short way into an active set, so coverage guidance starts from
    /// there: a set object, Create under a pool name with one or two
    /// devices, a BACKUP naming it, GetConfiguration (10 ms) and
    /// OpenDevice for each device. Each call is checked as any other.
    fn prelude(&mut self, u: &mut Unstructured<'_>) -> Result<()> {
        self.new_set();
        let i = self.sets.len() - 1;
        let this: SetPtr = &mut *self.sets[i].obj;
        let n: u32 = u.int_in_range(1..=2)?;
        let names: Vec<CString> = ["fz-a", "fz-a-dev1"][..n as usize]
            .iter()
            .filter_map(|s| CString::new(*s).ok())
            .collect();
        let mut cfg = VdConfig {
            device_count: n,
            ..VdConfig::default()
        };
        // SAFETY: our live object, a NUL-terminated name, our configuration.
        check(
            "Create",
            unsafe { cvds_create(this, names[0].as_ptr(), &mut cfg) },
            false,
        );
        // A statement the server accepts, so the configuration comes at
        // once (an invalid one would cost the 10 ms wait below).
        let stmt = Statement {
            devices: names
                .iter()
                .map(|c| c.to_string_lossy().into_owned())
                .collect(),
            options: TransferOptions {
                block_size: 512,
                max_transfer_size: 65536,
                buffer_count: None,
            },
            ..statement(u)?
        };
        let text = CString::new(serde_json::to_string(&stmt).unwrap_or_default()).ok();
        // SAFETY: NUL-terminated.
        let _ = unsafe { harness::vdisim_harness_start_statement(cstr(&text)) };
        // SAFETY: our live object and configuration.
        check(
            "GetConfiguration",
            unsafe { cvds_get_configuration(this, 10, &mut cfg) },
            false,
        );
        for name in &names {
            let mut dev: DevPtr = std::ptr::null_mut();
            // SAFETY: our live object, a NUL-terminated name, our out-pointer.
            let rc = unsafe { cvds_open_device(this, name.as_ptr(), &mut dev) };
            check("OpenDevice", rc, false);
            if rc == 0 {
                self.devs.push(DevObj { set: i, ptr: dev });
            }
        }
        Ok(())
    }

    fn end(&mut self) {
        for s in &mut self.sets {
            if s.live {
                // SAFETY: our 8-byte object.
                unsafe { cvds_dtor(&mut *s.obj) };
                s.live = false;
            }
        }
        self.devs.clear();
        self.blocks.clear();
    }
}

fn statement(u: &mut Unstructured<'_>) -> Result<Statement> {
    let kind = *u.choose(&[
        StatementKind::BackupDatabase,
        StatementKind::BackupLog,
        StatementKind::RestoreDatabase,
        StatementKind::RestoreHeaderOnly,
        StatementKind::RestoreVerifyOnly,
    ])?;
    let mut devices = Vec::new();
    for _ in 0..u.int_in_range(0..=3)? {
        devices.push(u.choose(&NAMES)?.to_string());
    }
    Ok(Statement {
        kind,
        database: "fz".into(),
        devices,
        options: TransferOptions {
            block_size: *u.choose(&[512, 4096, 65536, 0, 3, 1 << 20])?,
            max_transfer_size: *u.choose(&[65536, 131_072, 0, 65537, 8 << 20])?,
            buffer_count: *u.choose(&[None, Some(0), Some(1), Some(2), Some(4), Some(64)])?,
        },
        plan: ServerPlan {
            data_bytes: u.int_in_range(0..=256 << 10)?,
            mid_flushes: u.int_in_range(0..=2)?,
            ..ServerPlan::default()
        },
    })
}

fn harness_call(u: &mut Unstructured<'_>) -> Result<()> {
    let rc = match u.int_in_range(0..=4)? {
        0 => {
            let text = if u.ratio(1, 8)? {
                let mut b: Vec<u8> = u.arbitrary()?;
                b.retain(|c| *c != 0);
                CString::new(b).ok()
            } else {
                CString::new(serde_json::to_string(&statement(u)?).unwrap_or_default()).ok()
            };
            // SAFETY: null or NUL-terminated.
            unsafe { harness::vdisim_harness_start_statement(cstr(&text)) }
        }
        1 => {
            let f = u
                .choose(&[
                    Fault::ServerSignalAbort,
                    Fault::ServerDeath,
                    Fault::ServerStall { ms: 5 },
                    Fault::EarlyCloseDevice { dev: 0 },
                    Fault::EarlyCloseDevice { dev: 7 },
                    Fault::Attention,
                    Fault::Disconnect,
                    Fault::ClientSignalAbort,
                ])?
                .clone();
            let text = CString::new(serde_json::to_string(&f).unwrap_or_default()).ok();
            // SAFETY: NUL-terminated.
            unsafe { harness::vdisim_harness_event(cstr(&text)) }
        }
        2 => {
            let mut buf = vec![0u8; u.int_in_range(0..=64)? * 64];
            let mut needed = 0usize;
            let (b, len) = if u.arbitrary()? {
                (std::ptr::null_mut(), buf.len())
            } else {
                (buf.as_mut_ptr().cast::<c_char>(), buf.len())
            };
            let timeout = i64::from(u.int_in_range(0u8..=3)?);
            // SAFETY: `b` null or `len` writable bytes; `needed` writable.
            let rc =
                unsafe { harness::vdisim_harness_wait_statement(timeout, b, len, &mut needed) };
            if rc == harness::ERR_BUFFER {
                assert!(b.is_null() || needed > len, "ERR_BUFFER with room");
            }
            rc
        }
        3 => harness::vdisim_harness_client_death(),
        _ => {
            assert!(harness::vdisim_harness_now_ms() >= 0, "a case is active");
            harness::OK
        }
    };
    assert!(
        [
            harness::OK,
            harness::TIMED_OUT,
            harness::ERR_JSON,
            harness::ERR_UNSUPPORTED,
            harness::ERR_BUFFER
        ]
        .contains(&rc),
        "harness: undocumented answer {rc}"
    );
    Ok(())
}

fn run(u: &mut Unstructured<'_>, c: &mut Client) -> Result<()> {
    for _ in 0..OPS_MAX {
        match u.int_in_range(0u8..=14)? {
            0 => c.new_set(),
            1 | 14 => c.prelude(u)?,
            2 => c.drop_set(u)?,
            3 => c.create(u)?,
            4 => c.get_configuration(u)?,
            5 => c.open_device(u)?,
            6 => {
                let which = u.int_in_range(0..=3)?;
                c.simple(u, which)?
            }
            7 => c.buffer_handles(u)?,
            8 | 9 => c.get_command(u)?,
            10 | 11 => c.complete_command(u)?,
            _ => harness_call(u)?,
        }
    }
    Ok(())
}

fuzz_target!(|bytes: &[u8]| {
    let setup = CString::new(serde_json::to_string(&CaseSetup::default()).unwrap_or_default())
        .unwrap_or_default();
    // SAFETY: NUL-terminated.
    let rc = unsafe { harness::vdisim_harness_reset(setup.as_ptr()) };
    assert_eq!(rc, harness::OK, "a case starts");
    let mut u = Unstructured::new(bytes);
    let mut c = Client::default();
    let _ = run(&mut u, &mut c);
    c.end();
});
