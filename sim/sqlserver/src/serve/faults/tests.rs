use super::*;
use vdi_model::fault::{Phase, PlannedFault, Trigger};

fn stall_plan() -> FaultPlan {
    FaultPlan {
        name: "server-stall".into(),
        faults: vec![PlannedFault {
            phase: Phase::Any,
            trigger: Trigger::OnCommand {
                dev: 0,
                nth: 2,
                code: None,
            },
            fault: Fault::ServerStall { ms: 180_001 },
        }],
    }
}

#[test]
fn a_plan_alone_selects_every_statement() {
    let p = parse_spec("read-fault").unwrap();
    assert_eq!(p.plan, "read-fault");
    assert_eq!(p.stall_ms, None);
    assert!(p.select.items.is_empty());
    for k in [
        StatementKind::BackupDatabase,
        StatementKind::RestoreHeaderOnly,
    ] {
        assert!(p.select.selects(k, 1));
    }
}

#[test]
fn kinds_and_ordinals_select() {
    let p = parse_spec(" server-abort@Restore-HeaderOnly, backup-log ,#3").unwrap();
    assert_eq!(p.plan, "server-abort");
    assert_eq!(
        p.select.items,
        vec!["restore-headeronly", "backup-log", "#3"]
    );
    let s = &p.select;
    assert!(s.selects(StatementKind::RestoreHeaderOnly, 1));
    assert!(s.selects(StatementKind::BackupLog, 2));
    assert!(!s.selects(StatementKind::RestoreDatabase, 2));
    assert!(!s.selects(StatementKind::BackupDatabase, 4));
    assert!(s.selects(StatementKind::BackupDatabase, 3));
    let r = parse_spec("read-fault@restore").unwrap().select;
    for k in [
        StatementKind::RestoreDatabase,
        StatementKind::RestoreLog,
        StatementKind::RestoreHeaderOnly,
        StatementKind::RestoreFilelistOnly,
        StatementKind::RestoreVerifyOnly,
    ] {
        assert!(r.selects(k, 9));
    }
    assert!(!r.selects(StatementKind::BackupDatabase, 9));
    let b = parse_spec("cancel@backup").unwrap().select;
    assert!(b.selects(StatementKind::BackupLog, 1) && b.selects(StatementKind::BackupDatabase, 1));
    assert!(!b.selects(StatementKind::RestoreLog, 1));
}

#[test]
fn stall_length_is_a_parameter_or_from_the_set() {
    let p = parse_spec("server-stall:ms=5000@backup").unwrap();
    assert_eq!(p.stall_ms, Some(5000));
    let plan = apply_params(stall_plan(), &p);
    assert_eq!(plan.faults[0].fault, Fault::ServerStall { ms: 5000 });
    assert!(!FaultScope::of("server-stall:ms=5000@backup", &p).stall_from_set);
    let q = parse_spec("server-stall").unwrap();
    assert!(FaultScope::of("server-stall", &q).stall_from_set);
    assert_eq!(apply_params(stall_plan(), &q), stall_plan());
    assert_eq!(stall_for(60_000), 180_001);
    assert_eq!(stall_for(1_000), 3_001);
    assert_eq!(stall_for(0), STALL_WITHOUT_TIMEOUT_MS);
}

/// Every bad input gets an error naming what, where (character) and how
/// to fix it; none panics.
#[test]
fn bad_specs_say_what_where_and_how() {
    let cases: &[(&str, usize, &str, &str)] = &[
        ("", 1, "empty", "PLAN[:ms=N][@SELECTOR]"),
        ("   ", 1, "empty", "PLAN"),
        ("@restore", 1, "no plan name", "PLAN"),
        (
            "read-fault@",
            12,
            "empty selector item",
            "restore-headeronly",
        ),
        (
            "read-fault@restore,,#2",
            20,
            "empty selector item",
            "single commas",
        ),
        (
            "read-fault@bakup",
            12,
            "unknown statement kind \"bakup\"",
            "#N",
        ),
        (
            "read-fault@restore, restor",
            21,
            "unknown statement kind",
            "backup",
        ),
        ("server-abort@#0", 14, "statement #0", "from 1"),
        ("server-abort@#x", 14, "not a statement number", "#3"),
        ("server-abort@#-1", 14, "not a statement number", "#N"),
        ("server-abort@3", 14, "unknown statement kind", "#N"),
        ("none@restore", 5, "takes no selector", "`none` alone"),
        (
            "read-fault:ms=5",
            12,
            "takes no parameters",
            "server-stall:ms=N",
        ),
        ("server-stall:len=5", 14, "unknown parameter", "ms=N"),
        ("server-stall:ms=", 14, "not a number", "ms=5000"),
        ("server-stall:ms=0", 14, "a stall of 0 ms", "30 days"),
        (
            "server-stall:ms=99999999999999",
            14,
            "a stall of",
            "30 days",
        ),
        (
            "read-fault, cancel",
            1,
            "not one plan name",
            "--faults help",
        ),
    ];
    for (spec, at, what, fix) in cases {
        let e = parse_spec(spec).expect_err(spec);
        assert_eq!(e.at, *at, "{spec}: {e}");
        let text = e.to_string();
        assert!(text.contains(what), "{spec}: {text}");
        assert!(text.contains(fix), "{spec}: {text}");
        assert!(text.contains("at character"), "{spec}: {text}");
    }
}

#[test]
fn positions_count_characters_not_bytes() {
    let e = parse_spec("read-fault@réstore").unwrap_err();
    assert_eq!(e.at, 12);
    let e = parse_spec("read-fault@restore,ü").unwrap_err();
    assert_eq!(e.at, 20);
}

#[test]
fn resolve_reports_an_unknown_plan_with_the_spec() {
    let e = resolve_spec("bogus@restore", |n| {
        Err(format!("unknown fault plan '{n}'"))
    })
    .unwrap_err();
    assert!(
        e.contains("bogus@restore") && e.contains("unknown fault plan 'bogus'"),
        "{e}"
    );
    let (plan, scope) = resolve_spec("server-stall:ms=7@#2", |_| Ok(stall_plan())).unwrap();
    assert_eq!(plan.faults[0].fault, Fault::ServerStall { ms: 7 });
    assert_eq!(scope.spec, "server-stall:ms=7@#2");
    assert!(scope.select.selects(StatementKind::RestoreDatabase, 2));
    assert!(!scope.select.selects(StatementKind::RestoreDatabase, 1));
}

#[test]
fn descriptions_say_what_applies_where() {
    let (plan, scope) = resolve_spec("server-stall@restore,#4", |_| Ok(stall_plan())).unwrap();
    let d = describe(&plan, &scope, &|f| f.is_server_side());
    assert_eq!(
        d,
        "server-stall@restore,#4: server-stall (3 x the set's serverTimeOut + 1 ms) on restore, statement #4 (others run clean)"
    );
    let d = describe(&FaultPlan::none(), &FaultScope::default(), &|f| {
        f.is_server_side()
    });
    assert_eq!(d, "no faults: every statement runs clean");
}
