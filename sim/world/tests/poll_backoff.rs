//! `WorldConfig::poll_backoff_max_ms`: a polling client backs off while
//! nothing arrives, so virtual time crosses a long server stall in far
//! fewer steps, and the run ends the same way.

use vdi_model::programs::{ClientSpec, Operation};
use vdi_model::trace::Trace;
use vdi_sim::simulate::{fault_plan, simulate};
use vdi_sim::world::{End, WorldConfig};

fn polling_backup() -> ClientSpec {
    ClientSpec {
        operation: Operation::Backup,
        devices: 2,
        get_command_timeout_ms: 0,
        server_timeout_ms: 0,
        ..ClientSpec::default()
    }
}

#[test]
fn backing_off_crosses_a_stall_in_fewer_steps_with_the_same_end() {
    let spec = polling_backup();
    let run = |backoff: u64| {
        let mut cfg = WorldConfig::new(3);
        cfg.faults = fault_plan("server-stall", &spec, 3).unwrap();
        cfg.poll_backoff_max_ms = backoff;
        simulate(&spec, cfg, Trace::off())
    };
    let (plain, backed) = (run(0), run(64));
    assert_eq!(plain.end, End::Finished);
    assert_eq!(backed.end, End::Finished);
    assert_eq!(plain.statements.len(), backed.statements.len());
    for ((_, a), (_, b)) in plain.statements.iter().zip(&backed.statements) {
        assert_eq!((a.status, a.reason), (b.status, b.reason));
    }
    assert!(
        backed.steps * 10 < plain.steps,
        "{} steps backing off, {} polling every ms",
        backed.steps,
        plain.steps
    );
    // The default is no backoff: the same run as before the setting.
    assert_eq!(WorldConfig::new(3).poll_backoff_max_ms, 0);
}
