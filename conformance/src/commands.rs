//! The `vdisim` subcommands other than `simulate`, as library functions
//! that return their text and exit status (the binary only prints).

use crate::backends;
use crate::oracle::{self, CaseOptions};
use crate::runner::{self, RunConfig};
use crate::scenario::{self, Scenario};
use std::fmt::Write;
use std::path::{Path, PathBuf};
use vdi_model::trace::Trace;
use vdi_reports::schema::{RunReport, TimelineEvent};

/// A command's printed text and exit status (0 ok, 1 spec violated, 2 usage or input error).
pub struct Output {
    pub text: String,
    pub status: u8,
}

fn ok(text: String) -> Output {
    Output { text, status: 0 }
}

/// Loads the catalog (regressions first, then the scenarios), failing on
/// a scenario directory that is not there and on any malformed file.
pub fn load_catalog(dir: &Path) -> Result<Vec<Scenario>, String> {
    check_dir(dir)?;
    let mut all = Vec::new();
    let reg = dir.parent().map(|p| p.join("regressions"));
    for d in reg.iter().chain(std::iter::once(&dir.to_path_buf())) {
        if !d.exists() {
            continue;
        }
        let (cases, errs) = scenario::load_dir(d);
        if !errs.is_empty() {
            let msgs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
            return Err(msgs.join("\n"));
        }
        all.extend(cases);
    }
    Ok(all)
}

/// Checks that the scenario directory is a directory, before anything is
/// read from it (an empty catalog would read as "nothing failed").
fn check_dir(dir: &Path) -> Result<(), String> {
    let fix = "point --scenarios (or VDISIM_SCENARIOS) at a directory of scenario .toml files, such as conformance/scenarios";
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!(
            "scenario directory {} is not a directory; {fix}",
            dir.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "scenario directory {} does not exist; {fix}",
            dir.display()
        )),
        Err(e) => Err(format!(
            "scenario directory {} cannot be read: {e}; {fix}",
            dir.display()
        )),
    }
}

/// Builds the backend named `name` to check the name, and, for a backend
/// that loads a VDI library, checks up front that the library loads: a
/// library that does not is an input error (exit 2), not a violation in
/// every case.
fn check_backend(name: &str, recording: Option<&Path>) -> Result<(), String> {
    let b = backends::configured(name, recording).map_err(|e| e.to_string())?;
    #[cfg(windows)]
    if name == "windows" {
        // The registry names the DLL: check that the class can be made.
        return backends::windows::check()
            .map(|_| ())
            .map_err(|e| format!("--backend {name}: {e}"));
    }
    // The model stages its `abi` cases through the stand-in built into
    // this executable (backends/builtin_abi.rs): it loads no library.
    if b.capabilities().contains(&"abi") && b.info().name != "model" {
        backends::abi::check_loadable().map_err(|e| format!("--backend {name}: {e}"))?;
    }
    Ok(())
}

/// Keeps cases whose id contains any of the comma-separated `filter` words.
pub fn filter(cases: Vec<Scenario>, filter: Option<&str>) -> Vec<Scenario> {
    match filter {
        None => cases,
        Some(f) => {
            let words: Vec<&str> = f
                .split(',')
                .map(str::trim)
                .filter(|w| !w.is_empty())
                .collect();
            cases
                .into_iter()
                .filter(|c| {
                    words
                        .iter()
                        .any(|w| c.id.contains(w) || c.clauses.iter().any(|k| k.contains(w)))
                })
                .collect()
        }
    }
}

/// `vdisim list`.
pub fn list(dir: &Path, f: Option<&str>, clauses: bool, profile: bool) -> Result<Output, String> {
    let mut s = String::new();
    if clauses {
        for c in vdi_spec::clauses::all() {
            let _ = writeln!(
                s,
                "{:<48} {:<10} {}",
                c.id,
                format!("{:?}", c.basis).to_lowercase(),
                c.summary
            );
        }
        return Ok(ok(s));
    }
    if profile {
        for p in vdi_spec::Profile::describe() {
            let _ = writeln!(
                s,
                "{:<34} = {:<24} [{}] {}",
                p.key, p.default, p.basis, p.doc
            );
        }
        return Ok(ok(s));
    }
    let cases = filter(load_catalog(dir)?, f);
    for c in &cases {
        let kind = if c.client.is_some() {
            "program"
        } else {
            "script"
        };
        let _ = writeln!(s, "{:<52} {:<8} {}", c.id, kind, c.summary);
    }
    let _ = writeln!(s, "{} cases", cases.len());
    Ok(ok(s))
}

/// `vdisim run`.
pub fn run(
    dir: &Path,
    backend: &[String],
    f: Option<&str>,
    seeds: u64,
    report_dir: &Path,
    workers: Option<usize>,
) -> Result<(Output, RunReport), String> {
    run_with(dir, backend, f, seeds, report_dir, workers, None)
}

/// `vdisim run`, with the replay backend's recordings (`--recording DIR`).
pub fn run_with(
    dir: &Path,
    backend: &[String],
    f: Option<&str>,
    seeds: u64,
    report_dir: &Path,
    workers: Option<usize>,
    recording: Option<&Path>,
) -> Result<(Output, RunReport), String> {
    for b in backend {
        check_backend(b, recording)?;
    }
    let cases = filter(load_catalog(dir)?, f);
    if cases.is_empty() {
        return Err(match f {
            Some(f) => format!(
                "no case in {} matches the filter '{f}'; `vdisim list` shows the ids",
                dir.display()
            ),
            None => format!(
                "no case in {}; point --scenarios at a directory of scenario .toml files",
                dir.display()
            ),
        });
    }
    let plan = RunConfig {
        backends: backend.to_vec(),
        extra_seeds: seeds,
        workers: workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        case: CaseOptions::default(),
        deviations_dir: Some(
            dir.parent()
                .map_or_else(|| PathBuf::from("deviations"), |p| p.join("deviations")),
        ),
        recording: recording.map(Path::to_path_buf),
    };
    let report = runner::run(&cases, &plan)?;
    vdi_reports::write_all(&report, report_dir).map_err(|e| e.to_string())?;
    let mut s = vdi_reports::markdown::render(&report);
    let failures: Vec<_> = report
        .cases
        .iter()
        .filter(|c| c.verdict.is_failure())
        .collect();
    if !failures.is_empty() {
        let _ = writeln!(s, "\nreproduce:");
        for c in failures {
            let _ = writeln!(s, "  {}", c.repro);
        }
    }
    let _ = writeln!(s, "\nreports written to {}", report_dir.display());
    let status = if report.exit_ok() { 0 } else { 1 };
    Ok((Output { text: s, status }, report))
}

fn find_case(dir: &Path, name: &str) -> Result<Scenario, String> {
    let p = Path::new(name);
    if p.extension().is_some_and(|e| e == "toml") && p.exists() {
        return Scenario::load(p).map_err(|e| e.to_string());
    }
    let cases = load_catalog(dir)?;
    cases.into_iter().find(|c| c.id == name).ok_or_else(|| {
        format!(
            "no case '{name}' in {}; `vdisim list` shows the ids",
            dir.display()
        )
    })
}

/// `vdisim explain <case>`.
pub fn explain(dir: &Path, name: &str) -> Result<Output, String> {
    let sc = find_case(dir, name)?;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} — {}\nfile: {}\n",
        sc.id,
        sc.summary,
        sc.path.display()
    );
    let _ = writeln!(s, "clauses:");
    for c in &sc.clauses {
        if let Some(k) = vdi_spec::clauses::all().iter().find(|k| k.id == c) {
            let _ = writeln!(
                s,
                "  {} [{:?}; {}; {}]\n    {}",
                k.id, k.basis, k.section, k.source, k.summary
            );
        }
    }
    let _ = writeln!(s, "\nchecks:");
    if sc.client.is_some() {
        let spec = sc.client_spec(sc.seeds[0]);
        let flaws: Vec<&str> = spec.flaws.iter().map(|f| f.name()).collect();
        let _ = writeln!(
            s,
            "  runs the {} client ({:?}) against: {}",
            if flaws.is_empty() {
                "reference".into()
            } else {
                flaws.join("+")
            },
            spec.operation,
            crate::script::statement(&sc, sc.seeds[0]).to_tsql()
        );
        let plan = sc.fault_plan(sc.seeds[0]);
        if !plan.faults.is_empty() {
            let _ = writeln!(s, "  with faults ({}):", plan.name);
            for f in &plan.faults {
                let _ = writeln!(s, "    {:?} on {:?}: {:?}", f.phase, f.trigger, f.fault);
            }
        }
    } else {
        for (i, st) in sc.steps.iter().enumerate() {
            let thread = st.thread.as_deref().unwrap_or("ctl");
            let action = st.action.map_or("-".to_string(), |a| format!("{a:?}"));
            let clause = st
                .clause
                .as_ref()
                .map(|c| format!("  [{c}]"))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "  {:>2}. {thread:<5} {action:<18} expect {}{clause}",
                i + 1,
                describe_expect(&st.expect)
            );
        }
    }
    let e = &sc.expect;
    let _ = writeln!(s, "\nthe case must end:");
    let _ = writeln!(s, "  run ends {}", e.end.as_deref().unwrap_or("finished"));
    if let Some(o) = &e.outcome {
        let reason = e.reason.map(|r| format!(" ({r:?})")).unwrap_or_default();
        let _ = writeln!(s, "  statement {o}{reason}");
    }
    if !e.messages.is_empty() {
        let _ = writeln!(s, "  messages include {:?}", e.messages);
    }
    if let Some(d) = &e.devices {
        let _ = writeln!(s, "  device loops end {}", d.join(", "));
    }
    if !e.hits.is_empty() {
        let _ = writeln!(s, "  the model cites {}", e.hits.join(", "));
    }
    if e.violations.is_empty() {
        let _ = writeln!(s, "  every invariant holds");
    } else {
        let _ = writeln!(
            s,
            "  the invariant checks report {}",
            e.violations.join(", ")
        );
    }
    let seed = sc.seeds[0];
    let mut m = backends::model::ModelBackend::default();
    let g = oracle::grade(
        &mut m,
        &sc,
        seed,
        &[],
        &CaseOptions {
            keep_timeline: true,
            timeline_cap: usize::MAX,
            failure_timeline_cap: usize::MAX,
        },
    );
    let _ = writeln!(
        s,
        "\nexpected trace (model, seed {seed}; verdict {}):",
        g.result.verdict
    );
    for e in &g.result.timeline {
        let _ = writeln!(s, "{}", timeline_line("  ", e));
    }
    let _ = writeln!(s, "trace-hash {}", g.result.trace_hash);
    Ok(ok(s))
}

/// `vdisim replay <case-or-file> [--seed S] [--backend B]`.
pub fn replay(dir: &Path, name: &str, seed: Option<u64>, backend: &str) -> Result<Output, String> {
    replay_with(dir, name, seed, backend, None)
}

/// `vdisim replay`, with the replay backend's recordings (`--recording DIR`).
pub fn replay_with(
    dir: &Path,
    name: &str,
    seed: Option<u64>,
    backend: &str,
    recording: Option<&Path>,
) -> Result<Output, String> {
    check_backend(backend, recording)?;
    let sc = find_case(dir, name)?;
    let seed = seed.unwrap_or(sc.seeds[0]);
    let mut b = backends::configured(backend, recording).map_err(|e| e.to_string())?;
    let predicted = if backend == "model" || backend == "replay" || sc.client.is_some() {
        Vec::new()
    } else {
        oracle::predict(&sc, seed)
    };
    let g = oracle::grade(
        b.as_mut(),
        &sc,
        seed,
        &predicted,
        &CaseOptions {
            keep_timeline: true,
            timeline_cap: usize::MAX,
            failure_timeline_cap: usize::MAX,
        },
    );
    let r = &g.result;
    let mut s = String::new();
    for e in &r.timeline {
        let mark = if r
            .divergence
            .as_ref()
            .is_some_and(|d| d.seq == e.seq && sc.client.is_some())
        {
            ">>"
        } else {
            "  "
        };
        let _ = writeln!(s, "{}", timeline_line(mark, e));
    }
    let _ = writeln!(
        s,
        "\n{} on {} seed {}: {}\n  {}",
        r.case, r.backend, r.seed, r.verdict, r.detail
    );
    if let Some(d) = &r.divergence {
        let _ = writeln!(
            s,
            "  first divergence at {}: expected {}, got {} [{}]",
            d.seq,
            d.expected,
            d.actual,
            d.clause.clone().unwrap_or_default()
        );
    }
    let _ = writeln!(s, "trace-hash {}", r.trace_hash);
    Ok(Output {
        text: s,
        status: if r.verdict.is_failure() { 1 } else { 0 },
    })
}

/// `vdisim check-determinism [--seeds N]`: every case, and random worlds,
/// run twice per seed; the trace hashes must agree.
pub fn check_determinism(dir: &Path, seeds: u64) -> Result<Output, String> {
    let cases = load_catalog(dir)?;
    let mut s = String::new();
    let mut bad = 0;
    let mut n = 0;
    for sc in &cases {
        for seed in 1..=seeds.max(1) {
            let mut m = backends::model::ModelBackend::default();
            let a = oracle::grade(&mut m, sc, seed, &[], &CaseOptions::default())
                .result
                .trace_hash;
            let b = oracle::grade(&mut m, sc, seed, &[], &CaseOptions::default())
                .result
                .trace_hash;
            n += 1;
            if a != b {
                bad += 1;
                let _ = writeln!(s, "DIFFERENT {} seed {seed}: {a} vs {b}", sc.id);
            }
        }
    }
    for seed in 1..=seeds.max(1) * 4 {
        let case = crate::random::from_seed(seed);
        let a = crate::random::run(&case, Trace::hashing()).trace_hash();
        let b = crate::random::run(&case, Trace::hashing()).trace_hash();
        n += 1;
        if a != b {
            bad += 1;
            let _ = writeln!(s, "DIFFERENT random world seed {seed}: {a} vs {b}");
        }
    }
    let _ = writeln!(
        s,
        "{n} runs twice each: {} identical, {bad} different",
        n - bad
    );
    Ok(Output {
        text: s,
        status: if bad == 0 { 0 } else { 1 },
    })
}

/// One trace event as `explain` and `replay` print it.
fn timeline_line(mark: &str, e: &TimelineEvent) -> String {
    let clause = e
        .clause
        .as_ref()
        .map(|c| format!("  [{c}]"))
        .unwrap_or_default();
    format!(
        "{mark}{:>5} {:>8}ms {:<7} {:<18} {}{clause}",
        e.seq, e.t, e.who, e.what, e.detail
    )
}

/// An expectation as a person reads it.
fn describe_expect(e: &scenario::Expect) -> String {
    match e {
        scenario::Expect::One(x) if x == "model" => "what the model predicts".into(),
        scenario::Expect::One(x) if x == "any" => "any code".into(),
        scenario::Expect::One(x) => x.clone(),
        scenario::Expect::AnyOf(v) => v.join(" or "),
        scenario::Expect::Graded { code, lenient } => {
            format!("{code} (lenient: {})", lenient.join(", "))
        }
    }
}
