//! A private directory for one test, removed with everything in it when
//! dropped: `$TMPDIR/vdisim-<test binary>-<pid>-<tag>`, made empty.

#![allow(dead_code)]

use std::path::PathBuf;

pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let exe = std::env::current_exe().ok();
        let test = exe
            .as_deref()
            .and_then(|p| p.file_stem())
            .and_then(|s| s.to_str())
            .and_then(|s| s.split('-').next())
            .unwrap_or("test")
            .to_string();
        let d = std::env::temp_dir().join(format!("vdisim-{test}-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("a scratch directory");
        Scratch(d)
    }

    /// `name` inside it.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
