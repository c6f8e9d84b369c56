//! `vdisim client-test` wall time (issue: client-test — "the default
//! matrix on a correct client in under 60 s wall on 2 cores").
//!
//! - `default_matrix`: one whole `vdisim client-test` run of the default
//!   matrix (seed 1, every core) on the correct in-repo client in each start
//!   mode: `c_ready_line` (the runner sends the statement after `READY`) and
//!   `cpp_sqlcmd` (the program runs `sqlcmd`, a link to vdisim, itself).
//!   The process is timed from start to exit, the probe run and the reports
//!   included. Goal: each under 60 s.
//!
//! The programs are built with gcc/g++ against this build's stand-in
//! library (as the tests build them); without a compiler the bench says
//! SKIPPED.
//!
//! Run: `cargo bench -p vdi-conformance --bench client_test`.

#[cfg(unix)]
#[path = "../tests/support/clients.rs"]
mod clients;

#[cfg(unix)]
mod imp {
    use super::clients::{self, Lang};
    use std::path::{Path, PathBuf};
    use std::process::Command;

    const VDISIM: &str = env!("CARGO_BIN_EXE_vdisim");

    fn matrix(lang: Lang, prog: &Path, report: &Path) {
        let template = format!(
            "{} {{op}} {{database}} {{device}} {{devices}} {{file}} {{server}}",
            prog.display()
        );
        let mut c = Command::new(VDISIM);
        c.args(["client-test", "--program", &template, "--report-dir"])
            .arg(report);
        if lang == Lang::C {
            c.args(["--ready-line", "READY"]);
        }
        let out = c.output().expect("vdisim runs");
        assert!(
            out.status.success(),
            "the correct {lang:?} client passes the default matrix: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn program(lang: Lang) -> Option<PathBuf> {
        match clients::build(lang, None) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("SKIPPED: {e}");
                None
            }
        }
    }

    #[divan::bench(args = ["c_ready_line", "cpp_sqlcmd"], sample_count = 5, sample_size = 1)]
    fn default_matrix(bencher: divan::Bencher, mode: &str) {
        let lang = if mode == "c_ready_line" {
            Lang::C
        } else {
            Lang::Cpp
        };
        let Some(prog) = program(lang) else { return };
        let report = std::env::temp_dir().join(format!(
            "vdisim-bench-client-test-{}-{mode}",
            std::process::id()
        ));
        bencher.bench_local(|| matrix(lang, &prog, &report));
        let _ = std::fs::remove_dir_all(&report);
    }

    pub fn main() {
        divan::main();
    }
}

fn main() {
    #[cfg(unix)]
    imp::main();
    #[cfg(not(unix))]
    eprintln!("SKIPPED: vdisim client-test runs on Unix only");
}
