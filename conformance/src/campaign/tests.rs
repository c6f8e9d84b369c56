use super::*;
use std::collections::BTreeSet;

#[test]
fn durations() {
    assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
    assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
    assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
    assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
    assert_eq!(parse_duration("30d").unwrap(), TIME_MAX);
    for bad in ["", "0", "31d", "10x", "m", "-1", "18446744073709551615d"] {
        assert!(parse_duration(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn shards() {
    assert_eq!(parse_shard("0/1").unwrap(), (0, 1));
    assert_eq!(parse_shard("3/4").unwrap(), (3, 4));
    for bad in ["4/4", "0/0", "1", "a/b", "-1/2", "0/2000000"] {
        assert!(parse_shard(bad).is_err(), "{bad:?}");
    }
}

/// Shards of one campaign draw disjoint seeds, and together the same
/// global sequence as a campaign of one shard.
#[test]
fn shards_split_without_overlap() {
    let n = 4;
    let mut all = BTreeSet::new();
    for i in 0..n {
        for k in 0..500 {
            assert!(all.insert(case_seed(7, (i, n), k)), "shard {i} case {k}");
        }
    }
    let one: BTreeSet<u64> = (0..2000).map(|k| case_seed(7, (0, 1), k)).collect();
    assert_eq!(all, one);
    assert_ne!(case_seed(7, (0, 1), 0), case_seed(8, (0, 1), 0));
}

/// A neighbour keeps its corpus entry's program and faults and takes a
/// new scheduler seed; without a corpus every case is a fresh draw.
#[test]
fn guided_cases() {
    let base = random::from_seed(99);
    let corpus = vec![base.clone()];
    let c = case_at(1, (0, 1), 3, &corpus);
    assert_eq!((c.spec.clone(), c.faults.clone()), (base.spec, base.faults));
    assert_ne!(c.seed, 99);
    let fresh = case_at(1, (0, 1), 3, &[]);
    assert_eq!(fresh, random::from_seed(case_seed(1, (0, 1), 3)));
    assert_eq!(case_at(1, (0, 1), 2, &corpus), case_at(1, (0, 1), 2, &[]));
}

/// Shrinking keeps only what the predicate needs.
#[test]
fn shrinking_reaches_the_smallest_failing_case() {
    let mut c = (0..200)
        .map(random::from_seed)
        .find(|c| c.faults.len() >= 2 && c.spec.devices >= 2 && !c.spec.flaws.is_empty())
        .expect("a case with faults, devices and flaws");
    c.spec.plan.data_bytes = 1 << 20;
    let keep = c.faults[0].fault.kind();
    let small = shrink::shrink_by(&c, |x| x.faults.iter().any(|f| f.fault.kind() == keep));
    assert_eq!(small.faults.len(), 1, "{small:?}");
    assert_eq!(small.faults[0].fault.kind(), keep);
    assert!(small.spec.flaws.is_empty());
    assert_eq!(small.spec.plan.data_bytes, 1);
    assert_eq!(small.spec.plan.mid_flushes, 0);
    // A predicate nothing satisfies leaves the case as it was.
    assert_eq!(shrink::shrink_by(&c, |_| false), c);
}

/// A failure is written as a scenario file the catalog loader reads, in
/// the campaign's own `failures/` directory; a file there that the campaign
/// did not write is kept.
#[test]
fn a_failure_becomes_a_replayable_scenario() {
    let dir = std::env::temp_dir().join(format!("vdisim-campaign-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (st, corpus) = state::load_or_new(&dir, 1, (0, 1), Mutation::None).unwrap();
    assert_eq!((st.next, corpus.len()), (0, 0));
    let case = random::from_seed(5);
    let broken = vec![random::Broken {
        clause: vdi_spec::id::WATCHDOG_FIRES.to_string(),
        what: "synthetic".into(),
    }];
    let f = state::record_failure(&dir, &case, &broken);
    assert_eq!(f.seed, 5);
    let path = dir.join("failures").join("fuzz-0000000000000005.toml");
    assert_eq!(f.file, path.display().to_string());
    let (cases, errors) = crate::scenario::load_dir(&dir.join("failures"));
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(cases.len(), 1);
    assert_eq!(cases[0].id, "fuzz-0000000000000005");
    // Someone else's file of that name is not replaced.
    std::fs::write(&path, "my notes\n").unwrap();
    let f = state::record_failure(&dir, &case, &broken);
    assert!(f.file.starts_with("(not written"), "{}", f.file);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "my notes\n");
    // The saved state resumes; another seed or shard is refused.
    let mut st = st;
    st.next = 640;
    state::save(&dir, &st, std::slice::from_ref(&case)).unwrap();
    let (back, corpus) = state::load_or_new(&dir, 1, (0, 1), Mutation::None).unwrap();
    assert_eq!((back.next, corpus), (640, vec![case]));
    assert!(matches!(
        state::load_or_new(&dir, 2, (0, 1), Mutation::None),
        Err(state::StateError::Mismatch { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}
