//! Real C and C++ programs against the built `libsqlvdi.so`: a C client
//! over the COM-shaped interface and a C++ client over Microsoft's Linux
//! class declarations, each doing a 2-device BACKUP then RESTORE through the
//! in-process server (checked byte for byte by the server, and by the
//! client against the self-describing blocks), bad input, the header's
//! layout, and the exported symbols.
//!
//! Needs gcc, g++ and nm; without them each test prints `SKIPPED: <why>`.
#![cfg(target_os = "linux")]

mod common;

use common::{crate_dir, have};
use std::path::{Path, PathBuf};
use std::process::Command;

const DATA_BYTES: u64 = 1_000_000;

fn compile(compiler: &str, src: &str, out: &str, extra: &[&str]) -> PathBuf {
    let exe = out_dir().join(out);
    let mut c = Command::new(compiler);
    c.arg("-Wall")
        .arg("-Werror")
        .arg("-I")
        .arg(crate_dir().join("include"))
        .arg(crate_dir().join("tests/c").join(src))
        .arg("-o")
        .arg(&exe)
        .args(extra)
        .arg("-L")
        .arg(lib_dir())
        .arg("-lsqlvdi")
        .arg("-lpthread");
    let o = c.output().expect("run compiler");
    assert!(
        o.status.success(),
        "{compiler} {src} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    exe
}

fn plan_file() -> PathBuf {
    let p = out_dir().join("roundtrip.toml");
    std::fs::write(
        &p,
        format!(
            r#"
# BACKUP to two devices, then RESTORE from them with mixed read sizes.
[[statement]]
kind = "backup-database"
database = "sales"
data-bytes = {DATA_BYTES}
mid-flushes = 1

[[statement]]
kind = "restore-database"
database = "sales"
read-sizes = {{ cycle = [4096, 65536, 512] }}
"#
        ),
    )
    .expect("write plan");
    p
}

fn run(exe: &Path, args: &[&str], plan: Option<&Path>) -> std::process::Output {
    let mut c = Command::new(exe);
    c.args(args)
        .env("LD_LIBRARY_PATH", lib_dir())
        .env_remove("VDISIM_PLAN")
        // Hermetic: never a `vdisim serve` that happens to run here.
        .env(
            "VDISIM_SERVER",
            std::env::temp_dir().join(format!("vdisim-no-server-{}.sock", std::process::id())),
        )
        .env("VDISIM_SEED", "7");
    if let Some(p) = plan {
        c.env("VDISIM_PLAN", p);
    }
    c.output().expect("run program")
}

fn expect_ok(what: &str, o: &std::process::Output) {
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && out.contains("OK"),
        "{what} failed ({:?})\nstdout:\n{out}\nstderr:\n{err}",
        o.status
    );
}

/// The backup's media over its 2 devices: 1,000,000 bytes rounded up to
/// BLOCKSIZE 512, and a 64 KiB media header per family.
fn expected_total() -> String {
    (DATA_BYTES.div_ceil(512).saturating_mul(512) + 2 * vdi_model::media::HEADER_BYTES).to_string()
}

/// A C program over the COM-shaped interface: 2-device BACKUP then RESTORE
/// (restore.byte-identical, stripe.distribution), stale / foreign / null
/// CompleteCommand (complete-command.invalid), a write into the command
/// block (complete-command.read-only-block), unknown device name
/// (open-device.invalid-name), double Close (close.not-open), device after
/// Close (close.invalidates-devices).
#[test]
fn c_com_roundtrip_and_bad_input() {
    if !have("gcc") {
        println!("SKIPPED: gcc not found");
        return;
    }
    let exe = compile("gcc", "roundtrip_com.c", "roundtrip_com", &["-std=c11"]);
    let o = run(&exe, &["c-com", &expected_total()], Some(&plan_file()));
    expect_ok("roundtrip_com", &o);
}

/// A C++ program written against Microsoft's Linux class declarations,
/// linked with -lsqlvdi: the same round trip and bad input through the
/// mangled symbols.
#[test]
fn cpp_linux_roundtrip_and_bad_input() {
    if !have("g++") {
        println!("SKIPPED: g++ not found");
        return;
    }
    let exe = compile(
        "g++",
        "roundtrip_linux.cpp",
        "roundtrip_linux",
        &["-std=c++17"],
    );
    let o = run(&exe, &["cpp-linux", &expected_total()], Some(&plan_file()));
    expect_ok("roundtrip_linux", &o);
}

/// Without VDISIM_PLAN and with no `vdisim serve` listening: configuration
/// never arrives (GetConfiguration times out), wrong-state calls and bad
/// names return their codes, and exactly one diagnostic line tells how to
/// start a server.
#[test]
fn c_no_server_codes_and_one_diagnostic_line() {
    if !have("gcc") {
        println!("SKIPPED: gcc not found");
        return;
    }
    let exe = compile("gcc", "no_server.c", "no_server", &["-std=c11"]);
    let o = run(&exe, &[], None);
    expect_ok("no_server", &o);
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "stderr: {err}");
    assert!(
        lines[0].starts_with("vdisim:")
            && lines[0].contains("vdisim serve")
            && lines[0].contains("VDISIM_SERVER")
            && lines[0].contains("VDISIM_PLAN"),
        "{err}"
    );
}

/// The header's layout: VDConfig 44 bytes, VDC_Command 24 with position at
/// 8 and buffer at 16, vtables of 13 and 5 slots (C `_Static_assert`s); the
/// header also compiles as C++ in both forms.
#[test]
fn header_layout_static_asserts() {
    if !have("gcc") {
        println!("SKIPPED: gcc not found");
        return;
    }
    let inc = crate_dir().join("include");
    let src = crate_dir().join("tests/c/layout.c");
    let obj = out_dir().join("layout.o");
    let o = Command::new("gcc")
        .args(["-std=c11", "-Wall", "-Werror", "-c"])
        .arg("-I")
        .arg(&inc)
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .output()
        .expect("gcc");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    if have("g++") {
        for extra in [None, Some("-DCINTERFACE")] {
            let o = Command::new("g++")
                .args([
                    "-std=c++17",
                    "-Wall",
                    "-Werror",
                    "-fsyntax-only",
                    "-x",
                    "c++",
                ])
                .args(extra)
                .arg("-I")
                .arg(&inc)
                .arg(&src)
                .output()
                .expect("g++");
            // layout.c uses C's _Static_assert/_Alignof, which g++ accepts as
            // extensions; CINTERFACE selects the C form in C++.
            assert!(
                o.status.success(),
                "{extra:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
}

/// `nm -D` of the library lists every symbol of
/// `vdi_spec::abi::LINUX_SYMBOLS` (and the vdisim extensions) as defined
/// text.
#[test]
fn nm_lists_every_linux_symbol() {
    if !have("nm") {
        println!("SKIPPED: nm not found");
        return;
    }
    let so = lib_dir().join("libsqlvdi.so");
    let o = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&so)
        .output()
        .expect("nm");
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    let defined: Vec<&str> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_addr, kind, name) = (f.next()?, f.next()?, f.next()?);
            (kind == "T").then_some(name)
        })
        .collect();
    let mut wanted: Vec<&str> = vdi_spec::abi::LINUX_SYMBOLS
        .iter()
        .map(|s| s.symbol)
        .collect();
    wanted.extend([
        "vdisim_CreateClientVirtualDeviceSet",
        "vdisim_statement_outcome",
        "vdisim_block_modifications",
    ]);
    for w in wanted {
        assert!(defined.contains(&w), "{w} not exported by {}", so.display());
    }
}

fn out_dir() -> PathBuf {
    common::out_dir("standin-c-abi")
}

fn lib_dir() -> &'static PathBuf {
    common::lib_dir("standin-c-abi")
}
