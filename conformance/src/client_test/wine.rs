//! Windows programs under Wine (`--wine`, or a template whose program is a
//! PE `.exe`): a private Wine prefix under the run's directory (never
//! `~/.wine`), the stand-in `sqlvdi.dll` registered in it with `regsvr32`
//! under `CLSID_MSSQL_ClientVirtualDeviceSet`, one persistent `wineserver`
//! for the whole run (stopped at its end), and per case a TCP bridge in
//! front of the case's server socket (`vdi_host::remote::bridge`), since a
//! Windows program cannot open the Unix socket. The buffers are the
//! server's shared-memory files, mapped by the DLL through Wine's `Z:`
//! drive.
//!
//! Bounds: each Wine set-up step (wineboot, regsvr32) may take
//! [`STEP_BOUND`]; the prefix is made once per run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one set-up step (wineboot, regsvr32, wineserver -k) may take.
pub const STEP_BOUND: Duration = Duration::from_secs(300);

/// The environment variable naming the Windows stand-in DLL.
pub const DLL_ENV: &str = "VDISIM_SQLVDI_DLL";

/// The environment variable naming the `wine64` (or `wine`) to use.
pub const WINE_ENV: &str = "VDISIM_WINE";

/// DLLs a Wine release may lack that the stand-in needs; installed from
/// beside `sqlvdi.dll` into the prefix's `system32` when found there.
/// `bcryptprimitives.dll`: Rust's standard library calls `ProcessPrng`,
/// which Wine 8 does not export (a stub: `sim/standin/samples/
/// bcryptprimitives_stub.c`).
pub const HELPER_DLLS: &[&str] = &["bcryptprimitives.dll"];

/// A private Wine prefix with the stand-in registered.
pub struct Wine {
    /// The loader (`wine64`).
    pub wine: PathBuf,
    wineserver: Option<PathBuf>,
    /// The prefix (under the run's directory).
    pub prefix: PathBuf,
    /// How the prefix was made, for the report.
    pub note: String,
    /// The set-up steps' output (in the run's directory).
    log: PathBuf,
}

/// Whether a template's program is a Windows program: its name ends in
/// `.exe`, or the file starts with `MZ` (a PE image).
pub fn is_windows_program(program: &Path) -> bool {
    let by_name = program
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("exe"));
    by_name || is_pe(program)
}

fn is_pe(p: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 2];
    std::fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"MZ"
}

/// The Windows path of a Unix path, through the `Z:` drive every Wine
/// prefix maps to `/`.
pub fn dos_path(p: &Path) -> String {
    format!("Z:{}", p.display().to_string().replace('/', "\\"))
}

/// The Wine loader: [`WINE_ENV`], else `wine64` or `wine` on PATH, else
/// where Debian's `wine64` package puts it.
pub fn find_wine() -> Option<PathBuf> {
    let given = std::env::var_os(WINE_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let candidates = given.into_iter().chain(
        [
            "wine64",
            "wine",
            "/usr/lib/wine/wine64",
            "/usr/lib64/wine/wine64",
        ]
        .into_iter()
        .map(PathBuf::from),
    );
    for c in candidates {
        let ok = Command::new(&c)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(c);
        }
    }
    None
}

/// The `wineserver` beside the loader (`/usr/lib/wine/wineserver`), else
/// on PATH.
fn find_wineserver(wine: &Path) -> Option<PathBuf> {
    let beside = wine.parent().map(|d| d.join("wineserver"));
    beside
        .into_iter()
        .chain([PathBuf::from("wineserver")])
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .stdin(Stdio::null())
                .output()
                .is_ok_and(|o| o.status.success() || !o.stderr.is_empty())
        })
}

/// The stand-in DLL: [`DLL_ENV`], else `sqlvdi.dll` beside `vdisim`, else
/// in the cargo target directory's `x86_64-pc-windows-gnu/<profile>/`.
pub fn find_dll(vdisim: &Path) -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os(DLL_ENV).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("{DLL_ENV}={}: no such file", p.display()))
        };
    }
    let dir = vdisim.parent().unwrap_or(Path::new("."));
    let mut tried = vec![dir.join("sqlvdi.dll")];
    if let (Some(profile), Some(target)) = (dir.file_name(), dir.parent()) {
        tried.push(
            target
                .join("x86_64-pc-windows-gnu")
                .join(profile)
                .join("sqlvdi.dll"),
        );
    }
    tried.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        format!(
            "the Windows stand-in sqlvdi.dll is not found (looked at {}): build it with `cargo build -p vdi-standin --target x86_64-pc-windows-gnu`, or name it with {DLL_ENV}",
            tried
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

impl Wine {
    /// Makes the prefix (`given`, kept after the run, else
    /// `<work>/wineprefix`, removed with the run's directory), or reuses
    /// `given` when it is a prefix already; starts its persistent
    /// wineserver, and registers `dll` (with the helper DLLs found beside
    /// it).
    pub fn setup(work: &Path, given: Option<&Path>, dll: &Path) -> Result<Wine, String> {
        let wine = find_wine().ok_or_else(|| {
            format!(
                "Wine is not found: install it (Debian: apt-get install wine64), or name the loader with {WINE_ENV}"
            )
        })?;
        let wineserver = find_wineserver(&wine);
        let prefix = match given {
            Some(p) => {
                std::path::absolute(p).map_err(|e| format!("--wine-prefix {}: {e}", p.display()))?
            }
            None => work.join("wineprefix"),
        };
        let booted = prefix.join("system.reg").is_file();
        std::fs::create_dir_all(&prefix)
            .map_err(|e| format!("cannot make {}: {e}", prefix.display()))?;
        let mut w = Wine {
            wine,
            wineserver,
            prefix,
            note: String::new(),
            log: work.join("wine-setup.log"),
        };
        let t0 = Instant::now();
        // One server for the whole run, started before the prefix boots:
        // every program run finds it and the prefix's services (started by
        // wineboot, outside any program's process group) up, and none of
        // them starts one in its own process group.
        w.start_server()?;
        if !booted {
            let boot = || {
                let mut c = w.command(&w.wine);
                c.args(["wineboot", "-i"]);
                w.step(&mut c, "wineboot -i")
            };
            if let Err(first) = boot() {
                // A first boot fails now and then on a loaded machine
                // ("could not load kernel32.dll", c0000135): once more,
                // on a fresh server.
                w.stop_server();
                w.start_server()?;
                boot().map_err(|e| format!("{e} (the first attempt: {first})"))?;
            }
        }
        let boot_ms = t0.elapsed().as_millis();
        let sys32 = w.prefix.join("drive_c/windows/system32");
        let from = dll.parent().unwrap_or(Path::new("."));
        for h in HELPER_DLLS {
            if from.join(h).is_file() {
                std::fs::copy(from.join(h), sys32.join(h))
                    .map_err(|e| format!("cannot install {h} into the Wine prefix: {e}"))?;
            }
        }
        let dir = w.prefix.join("drive_c/vdisim");
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::copy(dll, dir.join("sqlvdi.dll")).map(|_| ()))
            .map_err(|e| format!("cannot copy {} into the Wine prefix: {e}", dll.display()))?;
        let mut reg = w.command(&w.wine);
        reg.args(["regsvr32", "/s", "C:\\vdisim\\sqlvdi.dll"]);
        w.step(&mut reg, "regsvr32 sqlvdi.dll").map_err(|e| {
            format!("{e} (if the DLL needs ProcessPrng, put bcryptprimitives.dll beside it)")
        })?;
        w.note = format!(
            "Wine prefix {} ({}): {} in {boot_ms} ms, {} registered with regsvr32",
            w.prefix.display(),
            if booted {
                "reused, its server started"
            } else {
                "made"
            },
            w.wine.display(),
            dll.display()
        );
        Ok(w)
    }

    /// The environment of every Wine process of the run.
    pub fn env(&self) -> [(&'static str, String); 3] {
        [
            ("WINEPREFIX", self.prefix.display().to_string()),
            ("WINEDEBUG", "-all".into()),
            // No Mono/Gecko installer dialogs at wineboot.
            ("WINEDLLOVERRIDES", "mscoree,mshtml=".into()),
        ]
    }

    fn command(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        c.envs(self.env())
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .stdin(Stdio::null());
        c
    }

    /// Starts the prefix's persistent wineserver (`wineserver -p`).
    fn start_server(&self) -> Result<(), String> {
        match &self.wineserver {
            Some(ws) => self.step(Command::new(ws).arg("-p"), "wineserver -p"),
            None => Ok(()),
        }
    }

    /// Stops the prefix's wineserver (and so every Wine process of the
    /// prefix) and waits until it has gone.
    fn stop_server(&self) {
        if let Some(ws) = &self.wineserver {
            let _ = self.step(Command::new(ws).arg("-k"), "wineserver -k");
            // -k only asks; -w waits until it has gone.
            let _ = self.step(Command::new(ws).arg("-w"), "wineserver -w");
        }
    }

    /// Runs a set-up step within [`STEP_BOUND`]. Its output goes to the
    /// run's `wine-setup.log`, not a pipe: the processes Wine starts on
    /// the way (the wineserver, the prefix's services) outlive the step and
    /// must not write into a pipe nobody reads.
    fn step(&self, c: &mut Command, what: &str) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("cannot open {}: {e}", self.log.display()))?;
        let log2 = log
            .try_clone()
            .map_err(|e| format!("{}: {e}", self.log.display()))?;
        c.envs(self.env())
            .env_remove("DISPLAY")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        let mut child = c.spawn().map_err(|e| format!("cannot start {what}: {e}"))?;
        let t0 = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(st)) if st.success() => return Ok(()),
                Ok(Some(st)) => {
                    let text = std::fs::read(&self.log).unwrap_or_default();
                    let tail = String::from_utf8_lossy(&text[text.len().saturating_sub(2000)..])
                        .into_owned();
                    return Err(format!(
                        "{what} failed under Wine ({st}); its output ends: {tail}"
                    ));
                }
                Ok(None) if t0.elapsed() > STEP_BOUND => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("{what} did not finish within {STEP_BOUND:?}"));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(format!("{what}: {e}")),
            }
        }
    }
}

impl Drop for Wine {
    fn drop(&mut self) {
        // Ends the run's wineserver and every Wine process of the prefix.
        self.stop_server();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_programs_are_told_by_name_or_magic() {
        assert!(is_windows_program(Path::new("/x/backup.EXE")));
        assert!(!is_windows_program(Path::new("/bin/sh")));
        assert_eq!(dos_path(Path::new("/tmp/a b/c")), "Z:\\tmp\\a b\\c");
    }
}
