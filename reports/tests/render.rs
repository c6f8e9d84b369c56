//! Renderer tests: snapshots of every format over the sample report, JSON
//! round trips and version checks, totals and exit status, escaping of
//! hostile text, coverage completeness, and robustness on odd reports.

use std::collections::BTreeMap;
use vdi_reports::{
    CaseResult, ClauseCoverage, Coverage, Divergence, ReportError, RunReport, SCHEMA_VERSION,
    TimelineEvent, ToolInfo, Totals, Verdict, html, json, junit, markdown, sample, write_all,
};
use vdi_spec::id;

// ---- snapshots ---------------------------------------------------------------

#[test]
fn snapshot_json() {
    insta::assert_snapshot!("report.json", json::render(&sample::report()));
}

#[test]
fn snapshot_junit() {
    insta::assert_snapshot!("junit.xml", junit::render(&sample::report()));
}

#[test]
fn snapshot_markdown() {
    insta::assert_snapshot!("summary.md", markdown::render(&sample::report()));
}

#[test]
fn snapshot_html() {
    insta::assert_snapshot!("index.html", html::render(&sample::report()));
}

#[test]
fn rendering_is_deterministic() {
    let a = sample::report();
    let b = sample::report();
    assert_eq!(json::render(&a), json::render(&b));
    assert_eq!(junit::render(&a), junit::render(&b));
    assert_eq!(markdown::render(&a), markdown::render(&b));
    assert_eq!(html::render(&a), html::render(&b));
}

#[test]
fn sample_has_every_verdict_two_backends_and_a_three_device_timeline() {
    let r = sample::report();
    for v in Verdict::ALL {
        assert!(
            r.cases.iter().any(|c| c.verdict == v),
            "no {v} in the sample"
        );
    }
    assert_eq!(r.backend_names(), ["model", "linux-abi"]);
    let failing = r
        .cases
        .iter()
        .find(|c| c.verdict == Verdict::Violation)
        .expect("a violation");
    assert!(failing.divergence.is_some());
    for dev in ["dev0", "dev1", "dev2"] {
        assert!(failing.timeline.iter().any(|e| e.who == dev), "no {dev}");
    }
    let mut sorted = r.cases.clone();
    sorted.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    assert_eq!(sorted, r.cases);
    assert_eq!(r.totals, Totals::from_cases(&r.cases));
}

// ---- json ------------------------------------------------------------------------

#[test]
fn json_round_trip() {
    let r = sample::report();
    let text = json::render(&r);
    assert!(text.ends_with("}\n"));
    let back = json::parse(&text).expect("parses");
    assert_eq!(back, r);
    assert_eq!(json::render(&back), text);

    let h = hostile();
    assert_eq!(json::parse(&json::render(&h)).expect("parses"), h);
}

#[test]
fn json_keys_follow_struct_order() {
    let text = json::render(&sample::report());
    let pos = |k: &str| text.find(&format!("\"{k}\":")).unwrap_or(usize::MAX);
    let order = [
        "schema_version",
        "tool",
        "backends",
        "seeds",
        "cases",
        "coverage",
        "totals",
        "expected_deviations_file",
    ];
    for w in order.windows(2) {
        assert!(
            pos(w[0]) < pos(w[1]),
            "{} should come before {}",
            w[0],
            w[1]
        );
    }
    assert!(text.starts_with("{\n  \"schema_version\": 1,\n"));
}

#[test]
fn unknown_schema_version_is_rejected_clearly() {
    let text = json::render(&sample::report());
    let v2 = text.replacen("\"schema_version\": 1", "\"schema_version\": 2", 1);
    let err = json::parse(&v2).expect_err("version 2 must be refused");
    assert!(matches!(
        err,
        ReportError::UnsupportedSchemaVersion { supported: 1, .. }
    ));
    let msg = err.to_string();
    assert!(msg.contains("schema_version 2"), "{msg}");
    assert!(msg.contains("reads only schema_version 1"), "{msg}");

    for bad in ["\"1\"", "0", "-1", "1.5", "{}"] {
        let t = text.replacen(
            "\"schema_version\": 1",
            &format!("\"schema_version\": {bad}"),
            1,
        );
        assert!(
            matches!(
                json::parse(&t),
                Err(ReportError::UnsupportedSchemaVersion { .. })
            ),
            "{bad}"
        );
    }
    let missing = text.replacen("\"schema_version\": 1,", "", 1);
    assert!(matches!(
        json::parse(&missing),
        Err(ReportError::MissingSchemaVersion { supported: 1 })
    ));
    let null = text.replacen("\"schema_version\": 1", "\"schema_version\": null", 1);
    assert!(matches!(
        json::parse(&null),
        Err(ReportError::MissingSchemaVersion { .. })
    ));
}

#[test]
fn malformed_json_is_an_error_not_a_panic() {
    for bad in [
        "",
        "{",
        "[]",
        "null",
        "42",
        "{\"schema_version\": 1}",
        "{\"schema_version\": 1, \"tool\": 5}",
        "\u{0}",
    ] {
        assert!(json::parse(bad).is_err(), "{bad:?}");
    }
    let text = json::render(&sample::report());
    let bad_verdict = text.replacen("\"verdict\": \"pass\"", "\"verdict\": \"meh\"", 1);
    let err = json::parse(&bad_verdict).expect_err("unknown verdict");
    assert!(matches!(err, ReportError::Json(_)));
    assert!(err.to_string().contains("line"), "{err}");
}

#[test]
fn unknown_fields_are_ignored() {
    let text = json::render(&sample::report());
    let extra = text.replacen(
        "\"schema_version\": 1,",
        "\"schema_version\": 1,\n  \"added_later\": {\"x\": [1, 2]},",
        1,
    );
    assert_eq!(json::parse(&extra).expect("parses"), sample::report());
}

// ---- totals and exit status ----------------------------------------------------

fn result(case: &str, backend: &str, seed: u64, verdict: Verdict) -> CaseResult {
    CaseResult {
        case: case.to_string(),
        file: format!("scenarios/{case}.toml"),
        summary: String::new(),
        clauses: vec![case.to_string()],
        backend: backend.to_string(),
        seed,
        verdict,
        detail: String::new(),
        divergence: None,
        trace_hash: "0000000000000000".to_string(),
        virtual_ms: 0,
        steps: 0,
        repro: format!("vdisim run --case {case} --seed {seed}"),
        deviation_reason: None,
        timeline: Vec::new(),
    }
}

fn tool() -> ToolInfo {
    ToolInfo {
        name: "vdisim".to_string(),
        version: "0.1.0".to_string(),
        git_commit: None,
        build_profile: "debug".to_string(),
        rustc: None,
    }
}

fn report_of(cases: Vec<CaseResult>) -> RunReport {
    RunReport::new(tool(), Vec::new(), vec![1], cases, Coverage::default())
}

#[test]
fn totals_count_every_verdict() {
    let cases: Vec<CaseResult> = Verdict::ALL
        .into_iter()
        .enumerate()
        .flat_map(|(i, v)| (0..=i).map(move |n| result("c", "b", n as u64, v)))
        .collect();
    let t = Totals::from_cases(&cases);
    assert_eq!(
        t,
        Totals {
            cases: 21,
            pass: 1,
            violation: 2,
            lenient: 3,
            unimplemented: 4,
            expected_deviation: 5,
            unexpected_pass: 6,
        }
    );
    assert_eq!(t.failures(), 8);
    for v in Verdict::ALL {
        assert_eq!(
            t.get(v) as usize,
            cases.iter().filter(|c| c.verdict == v).count()
        );
    }
    assert_eq!(Totals::from_cases(&[]), Totals::default());
}

#[test]
fn exit_ok_only_without_violations_and_unexpected_passes() {
    assert!(report_of(Vec::new()).exit_ok());
    for v in Verdict::ALL {
        let r = report_of(vec![
            result("a", "m", 1, Verdict::Pass),
            result("b", "m", 1, v),
        ]);
        assert_eq!(r.exit_ok(), !v.is_failure(), "{v}");
    }
    assert!(!sample::report().exit_ok());
}

#[test]
fn new_sorts_cases_by_case_backend_seed() {
    let r = report_of(vec![
        result("b", "model", 2, Verdict::Pass),
        result("a", "z", 1, Verdict::Pass),
        result("b", "model", 1, Verdict::Pass),
        result("a", "com", 9, Verdict::Pass),
    ]);
    let keys: Vec<(&str, &str, u64)> = r.cases.iter().map(|c| c.sort_key()).collect();
    assert_eq!(
        keys,
        [
            ("a", "com", 9),
            ("a", "z", 1),
            ("b", "model", 1),
            ("b", "model", 2)
        ]
    );
    assert_eq!(r.schema_version, SCHEMA_VERSION);
    assert_eq!(r.totals.cases, 4);
}

// ---- coverage ------------------------------------------------------------------

#[test]
fn coverage_lists_every_clause_and_all_42_cells() {
    let catalog = vdi_spec::clauses::all();
    let mut clause_hits = BTreeMap::new();
    clause_hits.insert(id::CLOSE_DEVICES_OPEN.to_string(), 5u64);
    clause_hits.insert("no.such-clause".to_string(), 1u64);
    let mut cell_hits = BTreeMap::new();
    cell_hits.insert(("Close".to_string(), "Active".to_string()), 4u64);
    let named = [
        id::CLOSE_DEVICES_OPEN.as_str(),
        id::CLOSE_DEVICES_OPEN.as_str(),
        id::CREATE_OK.as_str(),
        "typo.clause",
    ];
    let cov = Coverage::from_hits(named.into_iter(), &clause_hits, &cell_hits);

    // Every catalog clause, in catalog order, then the unknown ids sorted.
    assert_eq!(cov.clauses.len(), catalog.len() + 2);
    for (c, k) in cov.clauses.iter().zip(catalog) {
        assert_eq!(c.id, k.id);
        assert_eq!(c.summary, k.summary);
    }
    let tail: Vec<&str> = cov.clauses[catalog.len()..]
        .iter()
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(tail, ["no.such-clause", "typo.clause"]);
    assert!(
        cov.clauses[catalog.len()..]
            .iter()
            .all(|c| c.basis == "unknown")
    );

    let get = |id: &str| cov.clause(id).expect(id);
    assert_eq!(
        (
            get(id::CLOSE_DEVICES_OPEN.as_str()).cases,
            get(id::CLOSE_DEVICES_OPEN.as_str()).hits
        ),
        (2, 5)
    );
    assert_eq!(
        (
            get(id::CREATE_OK.as_str()).cases,
            get(id::CREATE_OK.as_str()).hits
        ),
        (1, 0)
    );
    assert_eq!(get(id::CLOSE_DEVICES_OPEN.as_str()).basis, "inferred");
    assert_eq!(get(id::CREATE_OK.as_str()).basis, "documented");
    assert!(
        cov.clauses
            .iter()
            .all(|c| ["documented", "inferred", "unknown"].contains(&c.basis.as_str()))
    );

    // All 42 cells, row-major, each once.
    assert_eq!(cov.cells.len(), 42);
    let mut seen = std::collections::BTreeSet::new();
    for (cell, spec) in cov.cells.iter().zip(vdi_spec::tables::CLIENT_TABLE.iter()) {
        assert_eq!(cell.method, spec.method.name());
        assert_eq!(cell.state, spec.state.name());
        assert_eq!(cell.clause, spec.clause.as_str());
        assert!(seen.insert((cell.method.clone(), cell.state.clone())));
    }
    let hit: Vec<&str> = cov
        .cells
        .iter()
        .filter(|c| c.hits > 0)
        .map(|c| c.clause.as_str())
        .collect();
    assert_eq!(hit, [id::TABLE_CLOSE_ACTIVE.as_str()]);
    let counts = cov.counts();
    assert_eq!(counts.cells, 42);
    assert_eq!(counts.cells_hit, 1);
    assert_eq!(counts.clauses_checked, 3);
    assert_eq!(counts.clauses_hit, 2);

    let empty = Coverage::from_hits(std::iter::empty(), &BTreeMap::new(), &BTreeMap::new());
    assert_eq!(empty.clauses.len(), catalog.len());
    assert!(empty.clauses.iter().all(|c| c.cases == 0 && c.hits == 0));
    assert_eq!(empty.cells.len(), 42);
}

// ---- escaping --------------------------------------------------------------------

const EVIL: &str = "<script>alert(\"x&y\")</script> 'q' \u{1}\u{8}\u{b}\u{1f}\u{7f} ]]> `tick` |pipe| *b* _i_ [l](http://e) \r\n2nd line";

/// A report with hostile text in every string field.
fn hostile() -> RunReport {
    let s = |tag: &str| format!("{tag}:{EVIL}");
    let mut cases = Vec::new();
    for (i, v) in Verdict::ALL.into_iter().enumerate() {
        cases.push(CaseResult {
            case: s("case"),
            file: s("file"),
            summary: s("summary"),
            clauses: vec![s("clause")],
            backend: s("backend"),
            seed: i as u64,
            verdict: v,
            detail: s("detail"),
            divergence: Some(Divergence {
                seq: 1,
                clause: Some(s("dclause")),
                expected: s("expected"),
                actual: s("actual"),
            }),
            trace_hash: s("hash"),
            virtual_ms: u64::MAX,
            steps: u64::MAX,
            repro: s("repro"),
            deviation_reason: Some(s("reason")),
            timeline: vec![
                TimelineEvent {
                    seq: 0,
                    t: 0,
                    who: s("who"),
                    what: s("what"),
                    detail: s("evdetail"),
                    clause: Some(s("evclause")),
                },
                TimelineEvent {
                    seq: 1,
                    t: u64::MAX,
                    who: "dev0".to_string(),
                    what: s("what"),
                    detail: s("evdetail"),
                    clause: None,
                },
            ],
        });
    }
    let mut r = RunReport::new(
        ToolInfo {
            name: s("tool"),
            version: s("version"),
            git_commit: Some(s("commit")),
            build_profile: s("profile"),
            rustc: Some(s("rustc")),
        },
        vec![vdi_reports::BackendInfo {
            name: s("backend"),
            description: s("description"),
            library: Some(s("library")),
            profile: s("bprofile"),
            profile_params: serde_json::json!({ s("key"): s("value") }),
        }],
        vec![u64::MAX, 0],
        cases,
        Coverage {
            clauses: vec![ClauseCoverage {
                id: s("clause"),
                summary: s("csummary"),
                basis: s("basis"),
                cases: 1,
                hits: 0,
            }],
            cells: vec![vdi_reports::CellCoverage {
                method: s("method"),
                state: s("state"),
                clause: s("clause"),
                hits: 3,
            }],
        },
    );
    r.expected_deviations_file = Some(s("deviations"));
    r
}

fn has_forbidden_xml_char(s: &str) -> bool {
    s.chars().any(|c| {
        matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{7f}' | '\u{fffe}' | '\u{ffff}')
    })
}

/// A small XML well-formedness check (no DTD): balanced, properly nested
/// tags; quoted attributes without `<`; every `&` starts a known entity or a
/// legal character reference; no forbidden characters.
fn check_well_formed_xml(doc: &str) -> Result<(), String> {
    check_markup(doc, &[])
}

/// [`check_well_formed_xml`], with HTML's void elements allowed unclosed.
fn check_html_markup(doc: &str) -> Result<(), String> {
    check_markup(doc, &["input", "col", "br", "meta", "img", "hr"])
}

fn check_markup(doc: &str, void: &[&str]) -> Result<(), String> {
    if has_forbidden_xml_char(doc) {
        return Err("forbidden control character".into());
    }
    let check_refs = |s: &str| -> Result<(), String> {
        let mut rest = s;
        while let Some(i) = rest.find('&') {
            let after = &rest[i + 1..];
            let end = after.find(';').ok_or("unterminated reference")?;
            let name = &after[..end];
            let ok = matches!(name, "amp" | "lt" | "gt" | "quot" | "apos")
                || name
                    .strip_prefix('#')
                    .and_then(|n| n.parse::<u32>().ok())
                    .is_some_and(|n| n == 9 || n == 10 || n == 13 || n >= 32);
            if !ok {
                return Err(format!("bad reference &{name};"));
            }
            rest = &after[end + 1..];
        }
        Ok(())
    };
    let mut stack: Vec<String> = Vec::new();
    let mut rest = doc;
    if let Some(r) = rest.strip_prefix("<?xml") {
        rest = &r[r.find("?>").ok_or("bad declaration")? + 2..];
    }
    while let Some(i) = rest.find('<') {
        let content = &rest[..i];
        if content.contains('>') && content.contains("]]>") {
            return Err("]]> in content".into());
        }
        check_refs(content)?;
        rest = &rest[i + 1..];
        // Scan the tag, honouring quotes.
        let mut end = None;
        let mut quote: Option<char> = None;
        for (j, c) in rest.char_indices() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), '<') => return Err("< inside an attribute".into()),
                (Some(_), _) => {}
                (None, '"' | '\'') => quote = Some(c),
                (None, '>') => {
                    end = Some(j);
                    break;
                }
                (None, '<') => return Err("< inside a tag".into()),
                _ => {}
            }
        }
        let end = end.ok_or("unterminated tag")?;
        let tag = &rest[..end];
        rest = &rest[end + 1..];
        check_refs(tag)?;
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack.pop().ok_or("close without open")?;
            if open != name.trim() {
                return Err(format!("</{name}> closes <{open}>"));
            }
        } else if !tag.ends_with('/') {
            let name = tag.split_whitespace().next().unwrap_or("").to_string();
            if !void.contains(&name.as_str()) {
                stack.push(name);
            }
        }
    }
    check_refs(rest)?;
    if stack.is_empty() {
        Ok(())
    } else {
        Err(format!("unclosed {stack:?}"))
    }
}

#[test]
fn xml_checker_catches_mistakes() {
    assert!(check_well_formed_xml("<a b=\"1\"><c/>x &amp; y</a>").is_ok());
    assert!(check_well_formed_xml("<a>x & y</a>").is_err());
    assert!(check_well_formed_xml("<a b=\"<\"></a>").is_err());
    assert!(check_well_formed_xml("<a><b></a></b>").is_err());
    assert!(check_well_formed_xml("<a>\u{1}</a>").is_err());
    assert!(check_well_formed_xml("<a>&#1;</a>").is_err());
}

#[test]
fn junit_escapes_everything() {
    let xml = junit::render(&hostile());
    check_well_formed_xml(&xml).expect("well-formed junit.xml");
    assert!(!xml.contains("<script"));
    assert!(xml.contains("&lt;script&gt;alert(\"x&amp;y\")&lt;/script&gt;"));
    assert!(xml.contains("\\u{0001}\\u{0008}\\u{000b}\\u{001f}\\u{007f}"));
    assert!(xml.contains("]]&gt;"));
    // In attributes quotes and line breaks are references.
    assert!(xml.contains(
        "name=\"case:&lt;script&gt;alert(&quot;x&amp;y&quot;)&lt;/script&gt; &#39;q&#39;"
    ));
    assert!(xml.contains("&#13;&#10;2nd line"));
    check_well_formed_xml(&junit::render(&sample::report())).expect("sample well-formed");
}

#[test]
fn junit_maps_verdicts() {
    let xml = junit::render(&sample::report());
    assert!(xml.contains("type=\"violation\""));
    assert!(xml.contains("type=\"unexpected-pass\""));
    assert_eq!(xml.matches("<failure ").count(), 2);
    assert_eq!(xml.matches("<skipped ").count(), 1);
    assert!(xml.contains("<system-out>lenient: "));
    assert!(xml.contains("<system-out>expected deviation: ACME-2291"));
    assert!(xml.contains("name=\"close.devices-open [seed 7]\""));
    assert!(xml.contains("classname=\"linux-abi\""));
    assert_eq!(xml.matches("<testsuite ").count(), 2);
    assert!(xml.contains(
        "<testsuites name=\"vdisim 0.1.0\" tests=\"12\" failures=\"2\" errors=\"0\" skipped=\"1\">"
    ));
    assert!(xml.contains("vdisim run --backend linux-abi --library /opt/acme/lib/libsqlvdi.so --profile default --seed 7 --case close.devices-open"));
}

#[test]
fn html_escapes_everything() {
    let page = html::render(&hostile());
    // Only the page's own script element.
    assert_eq!(page.matches("<script").count(), 1);
    assert_eq!(page.matches("</script").count(), 1);
    assert!(!page.contains("alert(\"x&y\")"));
    assert!(page.contains("&lt;script&gt;alert(\"x&amp;y\")&lt;/script&gt;"));
    assert!(!has_forbidden_xml_char(&page));
    for line in page.lines() {
        if let Some(i) = line.find("data-copy=\"") {
            let v = &line[i + 11..];
            let end = v.find('"').expect("closed attribute");
            assert!(!v[..end].contains('<'), "{line}");
            assert!(v[..end].contains("&quot;x&amp;y&quot;"), "{line}");
        }
    }
    // Everything outside the style and script elements is well-formed markup.
    let body = &page[page.find("<body>").expect("body")..page.find("<script>").expect("script")];
    check_html_markup(&format!("{body}</body>")).expect("balanced, escaped body");
    check_html_markup(&{
        let p = html::render(&sample::report());
        let b = &p[p.find("<body>").expect("body")..p.find("<script>").expect("script")];
        format!("{b}</body>")
    })
    .expect("sample body balanced");
}

#[test]
fn html_is_self_contained() {
    let page = html::render(&sample::report());
    for external in ["http://", "https://", "src=", "<link", "@import", "url("] {
        assert!(!page.contains(external), "page refers to {external}");
    }
    assert!(page.contains("Content-Security-Policy"));
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.ends_with("</html>\n"));
}

#[test]
fn html_shows_matrix_timeline_and_grid() {
    let page = html::render(&sample::report());
    // Matrix: one row per case, one column per backend.
    assert_eq!(page.matches("<tr class=\"row\"").count(), 6);
    // The divergence row is highlighted once, with the lanes in order.
    assert_eq!(page.matches("class=\"diverged\"").count(), 1);
    let lanes: Vec<&str> = page
        .match_indices("<th class=\"lane ")
        .map(|(i, _)| {
            let s = &page[i..];
            let a = s.find('>').expect(">") + 1;
            let b = s.find("</th>").expect("</th>");
            &s[a..b]
        })
        .collect();
    assert_eq!(
        lanes,
        [
            "ctl", "dev0", "dev1", "dev2", "client", "link", "server", "sql", "world"
        ]
    );
    // The 7 × 6 grid.
    let grid = &page[page.find("<table class=\"cells\">").expect("grid")..];
    let grid = &grid[grid.find("<tbody>").expect("tbody")..grid.find("</table>").expect("end")];
    assert_eq!(grid.matches("<tr><th>").count(), 7);
    assert_eq!(grid.matches("<td class=\"h").count(), 42);
}

#[test]
fn html_matrix_shows_one_badge_per_seed() {
    let r = RunReport::new(
        tool(),
        Vec::new(),
        vec![1, 2],
        vec![
            result("a", "model", 1, Verdict::Pass),
            result("a", "model", 2, Verdict::Violation),
            result("b", "com", 1, Verdict::Pass),
        ],
        Coverage::default(),
    );
    let page = html::render(&r);
    assert!(page.contains("✓ pass <small>#1</small></a>"));
    assert!(page.contains("✗ violation <small>#2</small></a>"));
    // "a" was not run on com, "b" not on model.
    assert_eq!(page.matches("title=\"not run\"").count(), 2);
    // Unlisted backends still get a column, in name order.
    let head = &page[page.find("<table class=\"grid matrix\">").expect("matrix")..];
    let head = &head[..head.find("</thead>").expect("thead")];
    assert!(head.find("com").expect("com") < head.find("model").expect("model"));
}

#[test]
fn markdown_escapes_everything() {
    let md = markdown::render(&hostile());
    let prose: String = md
        .lines()
        .map(strip_code_spans)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(!prose.contains("<script"), "{prose}");
    assert!(!prose.contains("[l](http://e)"));
    assert!(!prose.contains("*b*"));
    assert!(!has_forbidden_xml_char(&md));
    // Table rows keep their column count: every unescaped pipe is a cell border.
    let mut header_cells = None;
    for line in md.lines() {
        if !line.starts_with('|') {
            header_cells = None;
            continue;
        }
        let cells = count_unescaped_pipes(line);
        match header_cells {
            None => header_cells = Some(cells),
            Some(n) => assert_eq!(cells, n, "{line}"),
        }
    }
    // Code spans hold the repro command literally.
    assert!(md.contains("``repro:<script>alert(\"x&y\")</script> 'q' \\u{0001}"));
}

/// The line without its Markdown code spans.
fn strip_code_spans(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find('`') {
        out.push_str(&rest[..i]);
        let run = rest[i..].chars().take_while(|c| *c == '`').count();
        let after = &rest[i + run..];
        let fence = "`".repeat(run);
        // The closing fence: a run of exactly `run` backticks.
        let mut search = 0;
        let mut close = None;
        while let Some(j) = after[search..].find(&fence) {
            let at = search + j;
            let len = after[at..].chars().take_while(|c| *c == '`').count();
            if len == run {
                close = Some(at);
                break;
            }
            search = at + len;
        }
        match close {
            Some(at) => rest = &after[at + run..],
            None => {
                out.push_str(&rest[i..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

fn count_unescaped_pipes(line: &str) -> usize {
    let mut n = 0;
    let mut prev = ' ';
    for c in line.chars() {
        if c == '|' && prev != '\\' {
            n += 1;
        }
        prev = c;
    }
    n
}

#[test]
fn markdown_headline_and_failures() {
    let md = markdown::render(&sample::report());
    assert!(md.starts_with("# ❌ vdisim conformance: FAIL\n"));
    assert_eq!(md.matches("   - reproduce: `vdisim run").count(), 2);
    assert!(md.contains("| client transition table cells hit | 16 | 42 | 38.1% |"));
    let ok = markdown::render(&report_of(vec![result("a", "m", 1, Verdict::Pass)]));
    assert!(ok.starts_with("# ✅ vdisim conformance: PASS\n"));
    assert!(ok.contains("## Failures\n\nNone."));
}

#[test]
fn markdown_stays_short_for_large_catalogs() {
    let mut cases = Vec::new();
    for i in 0..5000u64 {
        let v = match i % 50 {
            0 => Verdict::Lenient,
            1 => Verdict::Violation,
            _ => Verdict::Pass,
        };
        cases.push(result(&format!("case.{i:05}"), "model", 1, v));
    }
    let md = markdown::render(&report_of(cases));
    // 100 failures listed in full, 100 lenient rows, passes only counted.
    assert_eq!(md.matches("   - reproduce: ").count(), 100);
    assert!(md.contains("4800 results passed"));
    assert!(md.lines().count() < 1000, "{} lines", md.lines().count());
}

// ---- robustness ----------------------------------------------------------------

#[test]
fn renderers_survive_odd_reports() {
    let mut odd = report_of(Vec::new());
    odd.seeds = Vec::new();
    let mut reports = vec![odd];

    // Divergence outside the timeline, a very long timeline, odd lanes.
    let mut r = result("long", "ghost-backend", u64::MAX, Verdict::Violation);
    r.divergence = Some(Divergence {
        seq: 1_000_000,
        clause: None,
        expected: String::new(),
        actual: String::new(),
    });
    r.timeline = (0..5000u64)
        .map(|i| TimelineEvent {
            seq: i,
            t: i,
            who: ["dev63", "dev", "devX", "", "world", "dev007"][(i % 6) as usize].to_string(),
            what: "x".repeat((i % 300) as usize),
            detail: String::new(),
            clause: None,
        })
        .collect();
    let mut short = result("short", "ghost-backend", 0, Verdict::UnexpectedPass);
    short.divergence = Some(Divergence {
        seq: 3,
        clause: Some("c".into()),
        expected: "e".into(),
        actual: "a".into(),
    });
    reports.push(report_of(vec![r, short]));
    reports.push(hostile());

    // A coverage section far from the 7 × 6 table: the grid stays bounded.
    let mut wide = report_of(Vec::new());
    wide.coverage.cells = (0..5000u64)
        .map(|i| vdi_reports::CellCoverage {
            method: format!("m{i}"),
            state: format!("s{i}"),
            clause: format!("c{i}"),
            hits: i,
        })
        .collect();
    reports.push(wide);

    for rep in &reports {
        let j = json::render(rep);
        assert_eq!(&json::parse(&j).expect("round trip"), rep);
        check_well_formed_xml(&junit::render(rep)).expect("junit well-formed");
        let _ = markdown::render(rep);
        let page = html::render(rep);
        assert!(page.ends_with("</html>\n"));
    }
    let page = html::render(&reports[1]);
    assert!(page.contains("earlier events not shown"));
    assert!(page.contains("is not among the timeline events kept"));
    assert!(page.matches("<tr id=\"r0-e").count() <= 2000);
    let page = html::render(&reports[3]);
    assert!(page.contains("4968 more cells are not shown"));
    assert!(markdown::render(&reports[3]).contains("4968 more cells are not shown"));
}

// ---- write_all -------------------------------------------------------------------

fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("vdi-reports-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn write_all_writes_four_files() {
    let dir = scratch_dir("write").join("nested/out");
    let r = sample::report();
    let w = write_all(&r, &dir).expect("written");
    assert_eq!(w.report_json, dir.join("report.json"));
    assert_eq!(w.junit_xml, dir.join("junit.xml"));
    assert_eq!(w.summary_md, dir.join("summary.md"));
    assert_eq!(w.index_html, dir.join("index.html"));
    let read = |p: &std::path::Path| std::fs::read_to_string(p).expect("readable");
    assert_eq!(json::parse(&read(&w.report_json)).expect("parses"), r);
    assert_eq!(read(&w.junit_xml), junit::render(&r));
    assert_eq!(read(&w.summary_md), markdown::render(&r));
    assert_eq!(read(&w.index_html), html::render(&r));
    // Writing again replaces the files.
    write_all(&r, &dir).expect("rewritten");
    let _ = std::fs::remove_dir_all(scratch_dir("write"));
}

#[test]
fn write_all_reports_io_errors() {
    let base = scratch_dir("io");
    std::fs::create_dir_all(&base).expect("scratch");
    let file = base.join("not-a-dir");
    std::fs::write(&file, "x").expect("file");
    let err = write_all(&sample::report(), &file).expect_err("a file is not a directory");
    assert!(matches!(err, ReportError::Io { .. }));
    assert!(err.to_string().contains("not-a-dir"), "{err}");
    let _ = std::fs::remove_dir_all(&base);
}

/// A file of a report's name that vdisim did not write is never replaced:
/// the call fails naming it, and none of the four files is written.
#[test]
fn write_all_leaves_files_it_did_not_write() {
    let r = sample::report();
    for name in ["report.json", "junit.xml", "summary.md", "index.html"] {
        let dir = scratch_dir(&format!("foreign-{name}"));
        std::fs::create_dir_all(&dir).expect("scratch");
        std::fs::write(dir.join(name), "the user's own notes\n").expect("file");
        let err = write_all(&r, &dir).expect_err("a foreign file is kept");
        assert!(matches!(err, ReportError::NotOurs { .. }), "{err}");
        assert!(err.to_string().contains(name), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.join(name)).unwrap(),
            "the user's own notes\n"
        );
        let entries = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(entries, 1, "nothing else was written");
        let _ = std::fs::remove_dir_all(&dir);
    }
    // A directory in a report's place is not ours either.
    let dir = scratch_dir("foreign-dir");
    std::fs::create_dir_all(dir.join("index.html")).expect("scratch");
    assert!(matches!(
        write_all(&r, &dir),
        Err(ReportError::NotOurs { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}
