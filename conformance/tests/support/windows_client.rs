//! The Windows build of the in-repo C client (mingw-w64, COM through
//! `CoCreateInstance`), shared by the Wine tests that run it. A test that
//! includes this also includes `support/clients.rs` as `clients` and
//! `support/wine.rs` as `wine`.

use crate::clients;
use crate::wine::mingw;
use std::path::{Path, PathBuf};

/// The Windows build of the C client (`flaw`: a variant).
pub fn windows_client(dir: &Path, flaw: Option<&str>) -> PathBuf {
    let name = match flaw {
        None => "vdi_client.exe".to_string(),
        Some(f) => format!("vdi_client-{}.exe", f.to_ascii_lowercase()),
    };
    let exe = dir.join(name);
    let define = flaw.map(|f| format!("-DFLAW_{f}"));
    let inc = clients::include_dir();
    let mut args = vec!["-std=c11", "-I", inc.to_str().expect("utf-8 path")];
    args.extend(define.as_deref());
    mingw(
        &args,
        &clients::sources_dir().join("vdi_client.c"),
        &exe,
        &["-static", "-lole32", "-luuid", "-lpthread"],
    );
    exe
}
