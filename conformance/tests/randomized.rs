//! Randomized scenarios (swarm style) judged by the model plus invariants.
//!
//! proptest generates a client program (operation, devices, options, a
//! random subset of flaws), a fault plan (a random subset of fault kinds at
//! random triggers) and a scheduler seed. A failure shrinks to a minimal
//! case, which is written as a scenario file to
//! `conformance/regressions/random-latest.toml` and printed with the
//! one-line command that replays it. proptest's own persistence file
//! (`conformance/tests/randomized.proptest-regressions`) re-runs the failing
//! input first next time, and `vdisim run` runs `conformance/regressions/`
//! before the catalog.

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use std::path::PathBuf;
use vdi_conformance::random::{self, RandomCase};
use vdi_model::fault::{Fault, Phase, PlannedFault, Trigger};
use vdi_model::programs::{ClientSpec, Flaw, Operation};
use vdi_model::statement::ReadSizes;
use vdi_model::trace::Trace;
use vdi_spec::id;
use vdi_spec::{CommandCode, TransferOptions, Win32};

fn flaw() -> impl Strategy<Value = Flaw> {
    prop::sample::select(Flaw::ALL.to_vec())
}

fn trigger(devices: u16) -> impl Strategy<Value = Trigger> {
    prop_oneof![
        (0u64..300).prop_map(|step| Trigger::AtStep { step }),
        (
            0..devices,
            1u64..16,
            prop::option::of(prop::sample::select(vec![
                CommandCode::Write,
                CommandCode::Read,
                CommandCode::Flush
            ]))
        )
            .prop_map(|(dev, nth, code)| Trigger::OnCommand { dev, nth, code }),
    ]
}

fn fault(devices: u16) -> impl Strategy<Value = Fault> {
    prop_oneof![
        Just(Fault::ClientSignalAbort),
        Just(Fault::ServerSignalAbort),
        Just(Fault::ClientDeath),
        Just(Fault::ServerDeath),
        (1u64..200_000).prop_map(|ms| Fault::ServerStall { ms }),
        (1u64..200_000).prop_map(|ms| Fault::ClientStall { ms }),
        prop::sample::select(vec![
            Win32::ERROR_DISK_FULL,
            Win32::ERROR_EOM_OVERFLOW,
            Win32::ERROR_WRITE_FAULT,
            Win32::ERROR_READ_FAULT,
            Win32::ERROR_HANDLE_EOF,
            Win32::ERROR_END_OF_MEDIA,
            Win32::ERROR_NOT_SUPPORTED,
        ])
        .prop_map(|code| Fault::CompleteWithError { code }),
        (0..devices).prop_map(|dev| Fault::EarlyCloseDevice { dev }),
        (0..devices, 0u64..(1 << 20)).prop_map(|(dev, bytes)| Fault::TruncateMedia { dev, bytes }),
    ]
}

fn planned(devices: u16) -> impl Strategy<Value = PlannedFault> {
    (
        prop::sample::select(vec![Phase::Any, Phase::Backup, Phase::Restore]),
        trigger(devices),
        fault(devices),
    )
        .prop_map(|(phase, trigger, fault)| PlannedFault {
            phase,
            trigger,
            fault,
        })
}

fn case() -> impl Strategy<Value = RandomCase> {
    (1u16..=6).prop_flat_map(|devices| {
        (
            (
                any::<u64>(),
                prop::sample::select(vec![
                    Operation::Backup,
                    Operation::Restore,
                    Operation::Roundtrip,
                ]),
                any::<bool>(),
                prop::sample::select(vec![0u32, 1_000, 60_000]),
                prop::sample::select(vec![0u32, 100, 10_000, 0xFFFF_FFFF]),
            ),
            (
                prop::sample::select(vec![512u32, 4096, 65536]),
                1u32..=8,
                prop::option::of(1u32..=12),
                1u64..(1 << 20),
                0u32..3,
                any::<bool>(),
            ),
            prop::collection::btree_set(flaw(), 0..3),
            prop::collection::vec(planned(devices), 0..4),
            Just(devices),
        )
            .prop_map(
                |(
                    (seed, operation, rc, sto, gct),
                    (block, mts, bc, data, flushes, seeded),
                    flaws,
                    faults,
                    devices,
                )| {
                    let mut spec = ClientSpec {
                        operation,
                        devices,
                        request_complete: rc,
                        server_timeout_ms: sto,
                        get_command_timeout_ms: gct,
                        set_name: "prop".into(),
                        options: TransferOptions {
                            block_size: block,
                            max_transfer_size: 65536 * mts,
                            buffer_count: bc,
                        },
                        flaws,
                        ..ClientSpec::default()
                    };
                    spec.plan.data_bytes = data;
                    spec.plan.mid_flushes = flushes;
                    spec.plan.read_sizes = if seeded {
                        ReadSizes::Seeded(seed)
                    } else {
                        ReadSizes::Max
                    };
                    RandomCase {
                        seed,
                        spec,
                        faults,
                        mutant: Default::default(),
                    }
                },
            )
    })
}

fn regressions_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("regressions")
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    /// Every call returns a documented code, no command after abort, every
    /// reference device ends VD_E_CLOSE/VD_E_ABORT in bounded time, success
    /// only with every byte delivered (clauses: table.*, abort.no-commands-after,
    /// term.close-device, restore.byte-identical, watchdog.fires).
    #[test]
    fn random_worlds_hold_the_invariants(c in case()) {
        let r = random::run(&c, Trace::off());
        let broken = random::check(&c, &r);
        if !broken.is_empty() {
            let dir = regressions_dir();
            let path = dir.join("random-latest.toml");
            let text = random::to_scenario(&c, "random-latest", &broken);
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::write(&path, text);
            prop_assert!(false, "invariant broken: {broken:?}\nreplay: vdisim replay {}", path.display());
        }
    }
}

/// The scenario file a failure writes parses and replays.
#[test]
fn failure_files_replay() {
    let c = random::from_seed(11);
    let broken = vec![random::Broken {
        clause: id::TERM_CLOSE_DEVICE.into(),
        what: "example".into(),
    }];
    let text = random::to_scenario(&c, "random-11", &broken);
    let dir = std::env::temp_dir().join(format!("vdisim-reg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("random-11.toml");
    std::fs::write(&path, &text).unwrap();
    let sc =
        vdi_conformance::scenario::Scenario::load(&path).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(sc.seeds, vec![11]);
    assert_eq!(sc.fault_plan(11).faults, c.faults);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Found by the `world` fuzz target: a flawed client (closes-before-close)
/// abandons a Write with the watchdog disabled while its other device
/// threads poll with timeout 0. The run is a genuine hang; it must end by
/// its virtual-time budget, not by the scheduler's step bound (which the
/// world reports as a violation of its own).
#[test]
fn busy_polling_hang_ends_by_its_budget() {
    let c = random::from_seed(1_709_083_370);
    let r = random::run(&c, Trace::off());
    assert_eq!(r.end, vdi_sim::world::End::Budget, "{:?}", r.violations);
    assert!(
        random::check(&c, &r).is_empty(),
        "{:?}",
        random::check(&c, &r)
    );
}
