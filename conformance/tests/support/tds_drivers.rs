//! Real SQL Server drivers for the `vdisim serve --tds` tests: where
//! `.ci/run` installs them (under `target/`, so the clone stays clean) and
//! whether they are there. A missing driver makes its test print
//! `SKIPPED: <why>` and pass.
//!
//! - Python drivers (python-tds, mssql-python = Microsoft ODBC Driver 18,
//!   pymssql = FreeTDS): the venv's python, `$VDISIM_TDS_PYTHON`, else
//!   `target/tds-venv/bin/python`, else `python3`.
//! - tedious: `node` from PATH with `$VDISIM_TDS_NODE_PATH` (a
//!   `node_modules` directory), else `target/tds-node/node_modules`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn workspace_target() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target")
}

/// The python that has the Python drivers.
pub fn python() -> String {
    if let Ok(p) = std::env::var("VDISIM_TDS_PYTHON") {
        return p;
    }
    let venv = workspace_target().join("tds-venv/bin/python");
    if venv.exists() {
        return venv.display().to_string();
    }
    "python3".into()
}

/// The `node_modules` directory that has tedious.
pub fn node_path() -> String {
    std::env::var("VDISIM_TDS_NODE_PATH").unwrap_or_else(|_| {
        workspace_target()
            .join("tds-node/node_modules")
            .display()
            .to_string()
    })
}

/// Whether `program args...` exits 0 (quietly).
pub fn runs(program: &str, args: &[&str], env: &[(&str, &str)]) -> bool {
    let mut c = Command::new(program);
    c.args(args).stdout(Stdio::null()).stderr(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.status().is_ok_and(|s| s.success())
}

/// Whether the python of [`python`] imports `module`; prints SKIPPED for
/// `test` when it does not.
pub fn have_python_module(test: &str, module: &str, package: &str) -> bool {
    let py = python();
    if runs(&py, &["-c", &format!("import {module}")], &[]) {
        return true;
    }
    println!(
        "SKIPPED: {test}: `{py} -c 'import {module}'` failed; install it (pip install {package}; .ci/run puts it in target/tds-venv) or point VDISIM_TDS_PYTHON at a python that has it"
    );
    false
}

/// Whether node loads tedious from [`node_path`]; prints SKIPPED for
/// `test` when it does not.
pub fn have_tedious(test: &str) -> bool {
    let np = node_path();
    if runs(
        "node",
        &["-e", "require('tedious')"],
        &[("NODE_PATH", np.as_str())],
    ) {
        return true;
    }
    println!(
        "SKIPPED: {test}: node cannot load tedious from {np} (npm install tedious there; .ci/run puts it in target/tds-node) or node is missing"
    );
    false
}

/// The driver scripts' directory (`conformance/tests/clients/tds`).
pub fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/tds")
}
