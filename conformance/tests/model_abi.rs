//! `vdisim run` on the model stages the `abi` cases through the stand-in
//! built into vdisim, in process: an environment that would send a loaded
//! stand-in to another server (`VDISIM_SERVER`, `VDISIM_PLAN`) or name
//! another library (`VDISIM_LIBSQLVDI`) changes nothing, and the report
//! says how each case was staged.

#[path = "support/scratch.rs"]
mod scratch;

use scratch::Scratch;
use std::process::Command;
use vdi_spec::id;

#[test]
fn abi_cases_run_in_process_whatever_the_environment() {
    let dir = Scratch::new("model-abi");
    let out = Command::new(env!("CARGO_BIN_EXE_vdisim"))
        .args([
            "run",
            "--filter",
            "abi.,open-device.null-on-failure,close.release-after-close",
            "--report-dir",
        ])
        .arg(dir.path("report"))
        .env("VDISIM_SERVER", dir.path("no-such-server.sock"))
        .env("VDISIM_PLAN", dir.path("no-such-plan.toml"))
        // The model loads no library: its binary half is built in.
        .env("VDISIM_LIBSQLVDI", dir.path("no-such-libsqlvdi.so"))
        .output()
        .expect("vdisim runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let text = std::fs::read_to_string(dir.path("report/report.json")).expect("report.json");
    let report: serde_json::Value = serde_json::from_str(&text).expect("report JSON");
    let cases = report["cases"].as_array().expect("cases");
    let ids: Vec<&str> = cases.iter().filter_map(|c| c["case"].as_str()).collect();
    for want in [
        id::ABI_LINUX_CLASSES,
        id::ABI_COM_VTABLES,
        id::ABI_LAYOUTS,
        id::OPEN_DEVICE_NULL_ON_FAILURE,
        id::CLOSE_RELEASE_AFTER_CLOSE,
    ] {
        assert!(ids.contains(&want.as_str()), "{want} did not run: {ids:?}");
    }
    for c in cases {
        let detail = c["detail"].as_str().unwrap_or_default();
        assert_eq!(c["verdict"], "pass", "{}: {detail}", c["case"]);
        assert!(
            detail.contains(
                "staged on the model and through the built-in stand-in's binary interface (in process)"
            ),
            "{}: {detail}",
            c["case"]
        );
    }
}
