//! `vdisim fuzz` as a user runs it: a campaign ends at its case budget with
//! exit 0 and a state directory; the same command with a larger budget
//! resumes where it stopped; one job makes the same campaign twice; shards
//! and bad input are refused with exit 2 and a message.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const VDISIM: &str = env!("CARGO_BIN_EXE_vdisim");

struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("vdisim-fuzz-test-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fuzz(args: &[&str], state: &Path) -> (i32, String) {
    let out = Command::new(VDISIM)
        .arg("fuzz")
        .args(args)
        .arg("--state")
        .arg(state)
        .output()
        .expect("vdisim runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn state(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).unwrap()).unwrap()
}

#[test]
fn a_campaign_runs_and_resumes() {
    let s = Scratch::new("resume");
    let (code, text) = fuzz(&["--cases", "1500", "--time", "10m"], &s.0);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("1500 cases in all"), "{text}");
    let st = state(&s.0);
    assert_eq!(st["next"], 1500);
    assert_eq!(st["cases"], 1500);
    assert!(st["clause_hits"].as_object().unwrap().len() > 5, "{st}");
    assert!(st["cell_hits"].as_object().unwrap().len() > 5, "{st}");
    let (code, text) = fuzz(&["--cases", "2000", "--time", "10m"], &s.0);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("resumed at case 1500"), "{text}");
    assert!(text.contains("2000 cases in all (500 now"), "{text}");
    // Another campaign seed in the same directory is refused.
    let (code, text) = fuzz(&["--cases", "10", "--seed", "9"], &s.0);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("--seed") && text.contains("--shard"),
        "{text}"
    );
}

/// With one job a campaign is a function of its seed, shard and budget.
#[test]
fn one_job_makes_the_same_campaign() {
    let (a, b) = (Scratch::new("det-a"), Scratch::new("det-b"));
    for d in [&a, &b] {
        let (code, text) = fuzz(&["--cases", "800", "--jobs", "1", "--seed", "4"], &d.0);
        assert_eq!(code, 0, "{text}");
    }
    assert_eq!(state(&a.0), state(&b.0));
    let ca = std::fs::read_to_string(a.0.join("corpus.json")).unwrap();
    let cb = std::fs::read_to_string(b.0.join("corpus.json")).unwrap();
    assert_eq!(ca, cb);
}

#[test]
fn bad_input_exits_2() {
    let s = Scratch::new("bad");
    for (args, words) in [
        (&["--time", "0"][..], "--time"),
        (&["--time", "31d"][..], "30 days"),
        (&["--shard", "2/2"][..], "--shard"),
        (&["--cases", "0"][..], "--cases"),
    ] {
        let (code, text) = fuzz(args, &s.0);
        assert_eq!(code, 2, "{args:?}: {text}");
        assert!(text.contains(words), "{args:?}: {text}");
    }
    std::fs::create_dir_all(&s.0).unwrap();
    std::fs::write(s.0.join("state.json"), "mine\n").unwrap();
    let (code, text) = fuzz(&["--cases", "10"], &s.0);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("not a vdisim fuzz state file"), "{text}");
    assert_eq!(
        std::fs::read_to_string(s.0.join("state.json")).unwrap(),
        "mine\n"
    );
}
