//! The shape of the workspace, checked: the crates depend one way, the
//! model stays pure, no source file or function grows past its bound, and
//! no code names a clause by a bare string. These are the re-layering's
//! promises (docs/ARCHITECTURE.md); a change that breaks one fails here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Longest source file, tests and data tables aside.
const FILE_LINES_MAX: usize = 1_000;
/// Longest function, tests aside.
const FN_LINES_MAX: usize = 120;
/// Data tables: files that are a table of facts, not logic.
const DATA_TABLES: &[&str] = &[
    "spec/src/clauses.rs",
    "spec/src/tables.rs",
    "spec/src/clause_id.rs",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `src/` trees of the workspace's crates.
const SOURCES: &[&str] = &[
    "spec/src",
    "sim/model/src",
    "sim/world/src",
    "sim/host/src",
    "sim/standin/src",
    "sim/sqlserver/src",
    "conformance/src",
    "reports/src",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `text` with comments, string and char literals blanked out (newlines
/// kept), so braces and keywords inside them do not count.
fn code_only(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to.min(b.len())] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            let end = b[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |k| i + k);
            blank(&mut out, i, end);
            i = end;
        } else if b[i..].starts_with(b"/*") {
            let end = find(b, i + 2, b"*/").map_or(b.len(), |k| k + 2);
            blank(&mut out, i, end);
            i = end;
        } else if b[i] == b'r'
            && (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
        {
            let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
            if b.get(i + 1 + hashes) != Some(&b'"') {
                i += 1;
                continue;
            }
            let mut close = vec![b'"'];
            close.extend(std::iter::repeat_n(b'#', hashes));
            let end = find(b, i + 2 + hashes, &close).map_or(b.len(), |k| k + close.len());
            blank(&mut out, i, end);
            i = end;
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut out, i, j + 1);
            i = j + 1;
        } else if b[i] == b'\'' {
            // A char literal ('x', '\n', '\u{..}'); a lifetime has no closing quote.
            let end = if b.get(i + 1) == Some(&b'\\') {
                b[i + 2..]
                    .iter()
                    .position(|&c| c == b'\'')
                    .map(|k| i + 2 + k + 1)
            } else if b.get(i + 2) == Some(&b'\'') {
                Some(i + 3)
            } else {
                None
            };
            match end {
                Some(e) if e - i <= 12 => {
                    blank(&mut out, i, e);
                    i = e;
                }
                _ => i += 1,
            }
        } else {
            i += 1;
        }
    }
    out
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|k| from + k)
}

/// The byte index of the `}` closing the `{` at `open`.
fn close_of(code: &[u8], open: usize) -> usize {
    let mut depth = 0usize;
    for (k, &c) in code.iter().enumerate().skip(open) {
        match c {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return k;
                }
            }
            _ => {}
        }
    }
    code.len()
}

fn line_of(code: &[u8], at: usize) -> usize {
    code[..at].iter().filter(|&&c| c == b'\n').count() + 1
}

/// Line ranges of `#[cfg(test)] mod ... { }` blocks.
fn test_modules(code: &[u8]) -> Vec<(usize, usize)> {
    let text = String::from_utf8_lossy(code);
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(k) = text[from..].find("#[cfg(") {
        let at = from + k;
        from = at + 1;
        let attr_end = text[at..].find(']').map_or(text.len(), |e| at + e);
        if !text[at..attr_end].contains("test") {
            continue;
        }
        let rest = text[attr_end + 1..].trim_start();
        if !rest.starts_with("mod ") {
            continue;
        }
        let Some(brace) = text[attr_end..].find(['{', ';']).map(|e| attr_end + e) else {
            continue;
        };
        if code[brace] == b';' {
            continue;
        }
        let end = close_of(code, brace);
        out.push((line_of(code, at), line_of(code, end)));
    }
    out
}

/// `(name, first line, lines)` of every function body outside test modules.
fn functions(code: &[u8], tests: &[(usize, usize)]) -> Vec<(String, usize, usize)> {
    let text = String::from_utf8_lossy(code);
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(k) = text[from..].find("fn ") {
        let at = from + k;
        from = at + 3;
        if at > 0 && (code[at - 1].is_ascii_alphanumeric() || code[at - 1] == b'_') {
            continue;
        }
        let name: String = text[at + 3..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            continue;
        }
        let Some(brace) = text[at..].find(['{', ';']).map(|e| at + e) else {
            continue;
        };
        if code[brace] == b';' {
            continue;
        }
        let first = line_of(code, at);
        if tests.iter().any(|(a, b)| (*a..=*b).contains(&first)) {
            continue;
        }
        let last = line_of(code, close_of(code, brace));
        out.push((name, first, last - first + 1));
    }
    out
}

fn relative(p: &Path) -> String {
    p.strip_prefix(root())
        .unwrap_or(p)
        .display()
        .to_string()
        .replace('\\', "/")
}

fn sources() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for s in SOURCES {
        rust_files(&root().join(s), &mut files);
    }
    files
}

/// No source file over 1,000 lines and no function over 120 (test modules,
/// `tests.rs` files and data tables aside).
#[test]
fn files_and_functions_stay_small() {
    let mut over = Vec::new();
    for p in sources() {
        let rel = relative(&p);
        if p.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&p).expect("a source file");
        let code = code_only(&text);
        let tests = test_modules(&code);
        let lines = line_of(&code, code.len());
        let test_lines: usize = tests.iter().map(|(a, b)| b - a + 1).sum();
        if lines - test_lines > FILE_LINES_MAX && !DATA_TABLES.contains(&rel.as_str()) {
            over.push(format!("{rel}: {} lines", lines - test_lines));
        }
        for (name, first, n) in functions(&code, &tests) {
            if n > FN_LINES_MAX {
                over.push(format!("{rel}:{first} fn {name}: {n} lines"));
            }
        }
    }
    assert!(
        over.is_empty(),
        "over the bounds ({FILE_LINES_MAX} lines a file, {FN_LINES_MAX} a function):\n{}",
        over.join("\n")
    );
}

/// Code names clauses by `vdi_spec::id` constants, never by a string
/// (string data in test fixtures and scenario files aside: only code
/// outside string literals is read).
#[test]
fn clause_ids_are_constants() {
    let ids: BTreeSet<&str> = vdi_spec::id::ALL.iter().map(|c| c.as_str()).collect();
    let mut bare = Vec::new();
    for p in sources() {
        let rel = relative(&p);
        if rel.starts_with("spec/") {
            continue;
        }
        let text = std::fs::read_to_string(&p).expect("a source file");
        for (n, line) in text.lines().enumerate() {
            let t = line.trim_start();
            if t.starts_with("//") || t.starts_with("r#\"") {
                continue;
            }
            for (k, part) in line.split('"').enumerate() {
                if k % 2 == 1 && ids.contains(part) && !line.contains("r#\"") {
                    bare.push(format!("{rel}:{}: \"{part}\"", n + 1));
                }
            }
        }
    }
    // Raw-string fixtures (TOML, JSON) are data, not code.
    bare.retain(|b| !b.contains("scenario.rs") && !b.contains("oracle.rs"));
    assert!(
        bare.is_empty(),
        "clause ids as strings:\n{}",
        bare.join("\n")
    );
}

/// The `[dependencies]` names of a crate's manifest.
fn dependencies(manifest: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join(manifest)).expect("a manifest");
    let mut deps = BTreeSet::new();
    let mut in_deps = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_deps = t == "[dependencies]"
                || (t.starts_with("[target.") && t.ends_with(".dependencies]"));
            continue;
        }
        if in_deps
            && let Some((name, _)) = t.split_once(['=', '.'])
            && !name.trim().is_empty()
            && !t.starts_with('#')
        {
            deps.insert(name.trim().to_string());
        }
    }
    deps
}

/// The model depends on the spec, serde and thiserror only, and forbids
/// threads, clocks, IO, environment and randomness to clippy; the harness
/// uses the stand-in library it links in one file only; dependencies point
/// one way.
#[test]
fn crates_depend_one_way() {
    let model = dependencies("sim/model/Cargo.toml");
    let allowed: BTreeSet<String> = ["vdi-spec", "serde", "thiserror"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert!(model.is_subset(&allowed), "vdi-model depends on {model:?}");
    let clippy = std::fs::read_to_string(root().join("sim/model/clippy.toml"))
        .expect("sim/model/clippy.toml");
    for banned in [
        "std::thread::spawn",
        "std::time::Instant::now",
        "std::env::var",
        "std::fs::File",
        "std::collections::HashMap",
    ] {
        assert!(
            clippy.contains(banned),
            "clippy.toml no longer bans {banned}"
        );
    }
    // The harness links the stand-in (as an rlib) for the model backend's
    // binary half only (`backends/builtin_abi.rs`, which calls its C
    // exports through function pointers, as the ABI backends call a loaded
    // library); no other file of the harness reaches into it.
    let conformance = dependencies("conformance/Cargo.toml");
    assert!(
        conformance.contains("vdi-standin"),
        "conformance/Cargo.toml no longer names vdi-standin: update this test"
    );
    let mut reach = Vec::new();
    for p in sources() {
        let rel = relative(&p);
        if !rel.starts_with("conformance/")
            || rel.starts_with("conformance/src/backends/builtin_abi")
        {
            continue;
        }
        let text = std::fs::read_to_string(&p).expect("a source file");
        for (n, line) in text.lines().enumerate() {
            let t = line.trim_start();
            if !t.starts_with("//") && (t.contains("sqlvdi::") || t.contains("use sqlvdi")) {
                reach.push(format!("{rel}:{}", n + 1));
            }
        }
    }
    assert!(
        reach.is_empty(),
        "the harness uses the linked-in stand-in outside backends/builtin_abi.rs:\n{}",
        reach.join("\n")
    );
    // Upward edges: a lower layer never depends on a higher one.
    let layers: &[(&str, &[&str])] = &[
        (
            "spec/Cargo.toml",
            &[
                "vdi-model",
                "vdi-sim",
                "vdi-host",
                "vdi-standin",
                "vdi-sqlserver",
                "vdi-conformance",
                "vdi-reports",
            ],
        ),
        (
            "sim/world/Cargo.toml",
            &[
                "vdi-host",
                "vdi-standin",
                "vdi-sqlserver",
                "vdi-conformance",
            ],
        ),
        (
            "sim/host/Cargo.toml",
            &["vdi-sim", "vdi-standin", "vdi-sqlserver", "vdi-conformance"],
        ),
        (
            "sim/standin/Cargo.toml",
            &["vdi-sim", "vdi-sqlserver", "vdi-conformance"],
        ),
        (
            "sim/sqlserver/Cargo.toml",
            &["vdi-standin", "vdi-conformance"],
        ),
        (
            "reports/Cargo.toml",
            &[
                "vdi-model",
                "vdi-sim",
                "vdi-host",
                "vdi-standin",
                "vdi-sqlserver",
                "vdi-conformance",
            ],
        ),
    ];
    for (manifest, never) in layers {
        let deps = dependencies(manifest);
        for n in *never {
            assert!(!deps.contains(*n), "{manifest} depends on {n}");
        }
    }
}
