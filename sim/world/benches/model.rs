//! Model throughput with tracing off (issue: foundation).
//!
//! - `client_api_calls`: GetCommand + CompleteCommand on one open device,
//!   two client API calls per iteration (goal ≥ 1,000,000 calls/s/core).
//! - `backup_64_commands`: a complete 1-device BACKUP of 63 × 64 KiB writes
//!   plus the final Flush — 64 commands — in a world with the reference
//!   client, from Create to the statement's outcome (goal ≥ 10,000/s/core).
//!
//! Run: `cargo bench -p vdi-sim --bench model`.

use divan::counter::ItemsCount;
use std::collections::BTreeMap;
use std::sync::Arc;
use vdi_model::client::{Blocking, ClientSet, Namespace};
use vdi_model::content::Content;
use vdi_model::msg::{BufId, Cmd, CmdId, ToClient};
use vdi_model::programs::{ClientSpec, Operation};
use vdi_model::trace::Trace;
use vdi_sim::simulate;
use vdi_sim::world::WorldConfig;
use vdi_spec::{CommandCode, Features, Profile, VdConfig, Win32};

fn main() {
    divan::main();
}

struct Ns(BTreeMap<String, VdConfig>);
impl Namespace for Ns {
    fn claim(&mut self, n: &str, c: &VdConfig) -> bool {
        self.0.insert(n.to_string(), *c).is_none()
    }
    fn release(&mut self, n: &str) {
        self.0.remove(n);
    }
}

const CALLS_PER_ITER: u64 = 2;
const BATCH: u64 = 1000;

#[divan::bench]
fn client_api_calls(b: divan::Bencher) {
    let mut c = ClientSet::new(Arc::new(Profile::default()));
    let mut ns = Ns(BTreeMap::new());
    let cfg = VdConfig::client(1, Features::LikePipe);
    let _ = c.create("bench", &cfg, &mut ns);
    c.deliver(ToClient::Configured {
        cfg,
        devices: vec!["bench".into()],
    });
    let _ = c.get_configuration();
    let h = c.open_device("bench").result.expect("open");
    let mut id = 0u64;
    b.counter(ItemsCount::new(CALLS_PER_ITER * BATCH))
        .bench_local(|| {
            for _ in 0..BATCH {
                id += 1;
                c.deliver(ToClient::Command(Cmd {
                    id: CmdId(id),
                    dev: 0,
                    code: CommandCode::Write,
                    size: 65536,
                    position: 0,
                    buffer: Some(BufId(0)),
                    data: Content::stream(1, id * 65536, 65536),
                }));
                let Blocking::Ready(r) = c.get_command(h) else {
                    unreachable!("queued")
                };
                let cmd = r.result.expect("command");
                let _ = c.complete_command(h, &cmd, Win32::ERROR_SUCCESS, 65536, 0, Content::Empty);
                c.out.clear();
            }
        });
}

fn backup_spec() -> ClientSpec {
    let mut s = ClientSpec {
        operation: Operation::Backup,
        ..ClientSpec::default()
    };
    s.plan.data_bytes = 63 * 65536;
    s
}

#[divan::bench]
fn backup_64_commands(b: divan::Bencher) {
    let spec = backup_spec();
    let mut seed = 0u64;
    b.counter(ItemsCount::new(1u64)).bench_local(|| {
        seed += 1;
        let r = simulate::simulate(&spec, WorldConfig::new(seed), Trace::off());
        assert!(r.statements[0].1.succeeded());
        r.steps
    });
}
