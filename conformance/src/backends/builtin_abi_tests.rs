//! The model backend's binary half is real: the `abi` cases pass through
//! it, a wrong symbol-table entry or vtable slot in it makes them
//! violations naming it, and it never feeds the case's trace hash.

use super::*;
use crate::backends::model::ModelBackend;
use crate::oracle::{self, CaseOptions};
use std::path::Path;
use vdi_reports::schema::{CaseResult, Verdict};

const CASES: [&str; 5] = [
    "abi/abi.linux-classes.toml",
    "abi/abi.com-vtables.toml",
    "abi/abi.layouts.toml",
    "open-device/open-device.null-on-failure.toml",
    "close/close.release-after-close.toml",
];

fn case(rel: &str) -> Scenario {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(rel);
    Scenario::load(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn graded(b: &mut ModelBackend, sc: &Scenario) -> CaseResult {
    let seed = sc.seeds.first().copied().unwrap_or(0);
    oracle::grade(b, sc, seed, &[], &CaseOptions::default()).result
}

#[test]
fn abi_cases_pass_on_the_model_and_through_the_builtin_binary_interface() {
    let mut m = ModelBackend::default();
    for rel in CASES {
        let sc = case(rel);
        let r = graded(&mut m, &sc);
        assert_eq!(r.verdict, Verdict::Pass, "{rel}: {}", r.detail);
        assert!(
            r.detail.contains(
                "staged on the model and through the built-in stand-in's binary interface (in process)"
            ),
            "{rel}: {}",
            r.detail
        );
        let linux = r.detail.contains(LINUX);
        let com = r.detail.contains(COM);
        match sc.id.as_str() {
            x if id::ABI_LINUX_CLASSES == x => assert!(linux && !com, "{}", r.detail),
            x if id::ABI_COM_VTABLES == x => assert!(com && !linux, "{}", r.detail),
            _ => assert!(linux && com, "{}", r.detail),
        }
    }
}

const CLOSE: &str = "_ZN22ClientVirtualDeviceSet5CloseEv";
const ABORT: &str = "_ZN22ClientVirtualDeviceSet11SignalAbortEv";

/// The stand-in's Linux members with Close and SignalAbort crossed (both
/// `int (ClientVirtualDeviceSet*)`: a wrong symbol-table entry).
fn crossed_linux() -> LinuxAbi {
    let lookup = |n: &str| match n {
        CLOSE => linux_symbol(ABORT),
        ABORT => linux_symbol(CLOSE),
        n => linux_symbol(n),
    };
    // SAFETY: every address is a stand-in member; the two crossed ones have
    // the same signature, so only the behaviour is wrong.
    unsafe { linux_abi(&lookup) }.expect("every member is linked in")
}

/// `IClientVirtualDeviceSet2` has 13 slots; Close is slot 6, SignalAbort 7.
const SET_SLOTS: usize = 13;

/// The stand-in's factory, its objects given a copy of their vtable with
/// slots 6 and 7 (Close, SignalAbort) crossed: a wrong vtable layout.
unsafe extern "C" fn crossed_factory(iid: *const Guid, out: *mut *mut c_void) -> i32 {
    // SAFETY: forwarded to the stand-in's factory.
    let r = unsafe { create_set(iid, out) };
    if r != 0 {
        return r;
    }
    // SAFETY: on success `*out` is a live object whose first word points to
    // its 13-slot vtable; the copy is leaked, so it outlives the object.
    unsafe {
        let obj = (*out).cast::<*const [usize; SET_SLOTS]>();
        let mut v = **obj;
        v.swap(6, 7);
        *obj = Box::leak(Box::new(v));
    }
    r
}

fn crossed_model() -> ModelBackend {
    ModelBackend::with_binary_half(BuiltinAbi::over(crossed_linux(), com_abi(crossed_factory)))
}

#[test]
fn a_wrong_symbol_or_slot_in_the_binary_half_is_a_violation_naming_it() {
    let mut bad = crossed_model();
    for (rel, half) in [
        ("abi/abi.linux-classes.toml", LINUX),
        ("abi/abi.com-vtables.toml", COM),
    ] {
        let sc = case(rel);
        let r = graded(&mut bad, &sc);
        assert_eq!(r.verdict, Verdict::Violation, "{rel}: {}", r.detail);
        assert!(
            r.detail.starts_with(&format!(
                "binary interface of the built-in stand-in ({half}, in process): "
            )),
            "{rel}: {}",
            r.detail
        );
        assert!(r.divergence.is_some(), "{rel}: {}", r.detail);
    }
}

#[test]
fn the_binary_half_does_not_feed_the_trace_hash() {
    let mut good = ModelBackend::default();
    let mut bad = crossed_model();
    for rel in CASES {
        let sc = case(rel);
        let a = graded(&mut good, &sc);
        let b = graded(&mut good, &sc);
        let c = graded(&mut bad, &sc);
        assert_eq!(a.trace_hash, b.trace_hash, "{rel}: same seed, same hash");
        assert_eq!(
            a.trace_hash, c.trace_hash,
            "{rel}: the hash is the model's, whatever the binary half did"
        );
        assert_eq!(a.virtual_ms, c.virtual_ms, "{rel}");
    }
}

const OPEN: &str = "_ZN22ClientVirtualDeviceSet10OpenDeviceEPcPP19ClientVirtualDevice";
type OpenDevice =
    unsafe extern "C" fn(*mut c_void, *mut std::ffi::c_char, *mut *mut c_void) -> std::ffi::c_int;

/// The stand-in's OpenDevice, except that a failure leaves
/// `*ppVirtualDevice` as the caller set it (not NULL).
unsafe extern "C" fn open_device_leaving_out(
    this: *mut c_void,
    name: *mut std::ffi::c_char,
    dev: *mut *mut c_void,
) -> std::ffi::c_int {
    let Some(p) = linux_symbol(OPEN) else {
        return -1;
    };
    // SAFETY: the stand-in's OpenDevice member has this signature.
    let real: OpenDevice = unsafe { std::mem::transmute::<*const c_void, OpenDevice>(p) };
    let mut mine = std::ptr::null_mut();
    // SAFETY: forwarded from the caller; `mine` is a writable out-pointer.
    let r = unsafe { real(this, name, &mut mine) };
    if r == 0 {
        // SAFETY: the caller's out-pointer, written on success only.
        unsafe { *dev = mine };
    }
    r
}

#[test]
fn an_open_device_that_leaves_the_out_pointer_on_failure_is_a_violation() {
    let lookup = |n: &str| match n {
        OPEN => Some(open_device_leaving_out as *const c_void),
        n => linux_symbol(n),
    };
    // SAFETY: the replaced member has OpenDevice's signature.
    let linux = unsafe { linux_abi(&lookup) }.expect("every member is linked in");
    let mut m = ModelBackend::with_binary_half(BuiltinAbi::over(linux, com_abi(create_set)));
    let sc = case("open-device/open-device.null-on-failure.toml");
    let r = graded(&mut m, &sc);
    assert_eq!(r.verdict, Verdict::Violation, "{}", r.detail);
    assert!(
        r.detail.starts_with(
            "binary interface of the built-in stand-in (Linux class API, in process): "
        ) && r.detail.contains("not NULL"),
        "{}",
        r.detail
    );
}

/// A factory that makes no object (`E_FAIL`).
unsafe extern "C" fn failing_factory(_iid: *const Guid, out: *mut *mut c_void) -> i32 {
    if !out.is_null() {
        // SAFETY: the caller's out-pointer.
        unsafe { *out = std::ptr::null_mut() };
    }
    0x8000_4005_u32 as i32
}

#[test]
fn a_half_that_cannot_start_is_a_violation_and_leaves_the_next_case_free_to_run() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let linux = linked_linux_members();
        let mut m =
            ModelBackend::with_binary_half(BuiltinAbi::over(linux, com_abi(failing_factory)));
        let a = graded(&mut m, &case("abi/abi.layouts.toml"));
        // The Linux half only: it must not wait for the failed COM half's case.
        let b = graded(&mut m, &case("abi/abi.linux-classes.toml"));
        let _ = tx.send((a, b));
    });
    // A guard against a hang only (the cases take milliseconds).
    let (a, b) = rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("the second case ran (no case lock left held by the failed half)");
    assert_eq!(a.verdict, Verdict::Violation, "{}", a.detail);
    assert!(
        a.detail
            .starts_with("binary interface of the built-in stand-in (COM vtables, in process): "),
        "{}",
        a.detail
    );
    assert_eq!(b.verdict, Verdict::Pass, "{}", b.detail);
}

/// The stand-in's Linux members, uncrossed.
fn linked_linux_members() -> LinuxAbi {
    // SAFETY: every address is the stand-in's member of that name.
    unsafe { linux_abi(&linux_symbol) }.expect("every member is linked in")
}
