//! The model backend: the client and server halves of `vdi-sim` in a
//! deterministic world, driven call by call. Cases about the binary
//! interface (`requires = ["abi"]`) are also staged through the stand-in
//! built into this executable ([`super::builtin_abi`]).

use super::builtin_abi::BuiltinAbi;
use crate::backend::{Backend, BackendError, BackendInfo, BinaryHalf, CaseSetup, Ticket};
use crate::scenario::Scenario;
use std::collections::BTreeMap;
use vdi_model::call::{Call, Reply};
use vdi_model::client::DeviceHandle;
use vdi_model::fault::Fault;
use vdi_model::msg::Timeout;
use vdi_model::outcome::Outcome;
use vdi_model::process::ClientProcess;
use vdi_model::programs;
use vdi_model::programs::ClientSpec;
use vdi_model::statement::Statement;
use vdi_model::trace::Trace;
use vdi_sim::simulate;
use vdi_sim::world::{End, RunResult, World, WorldConfig};
use vdi_spec::id;

/// The built-in model.
#[derive(Default)]
pub struct ModelBackend {
    world: Option<World>,
    threads: BTreeMap<String, usize>,
    /// Tickets that are program threads (drains), not scripted calls.
    programs: BTreeMap<usize, ()>,
    /// The binary half of `abi` cases (made at the first one).
    builtin: Option<BuiltinAbi>,
}

fn config(setup: &CaseSetup) -> WorldConfig {
    let mut cfg = WorldConfig::new(setup.seed);
    cfg.profile = setup.profile.clone();
    cfg.budget_ms = setup.budget_ms;
    if let Some(n) = setup.max_steps {
        cfg.max_steps = n;
    }
    cfg.seed_backups = setup.seed_backups.clone();
    cfg.faults = setup.faults.clone();
    cfg
}

fn trace(setup: &CaseSetup) -> Trace {
    if setup.record_trace {
        Trace::recording()
    } else {
        Trace::hashing()
    }
}

fn ended(e: End) -> BackendError {
    BackendError::Ended(format!("{e:?}"))
}

impl ModelBackend {
    /// A model backend whose `abi` cases run their binary half through
    /// `builtin` (a test's, with a wrong symbol or vtable entry).
    pub fn with_binary_half(builtin: BuiltinAbi) -> ModelBackend {
        ModelBackend {
            builtin: Some(builtin),
            ..ModelBackend::default()
        }
    }

    fn world(&mut self) -> Result<&mut World, BackendError> {
        self.world
            .as_mut()
            .ok_or_else(|| BackendError::Failed("no case started (reset first)".into()))
    }

    fn thread(&mut self, name: &str) -> Result<usize, BackendError> {
        if let Some(t) = self.threads.get(name) {
            return Ok(*t);
        }
        let dev = name.strip_prefix("dev").and_then(|n| n.parse().ok());
        let t = self.world()?.add_thread(name, dev);
        self.threads.insert(name.to_string(), t);
        Ok(t)
    }
}

impl Backend for ModelBackend {
    fn capabilities(&self) -> &'static [&'static str] {
        &[
            "scheduler-steps",
            "disk-mode",
            "tape-mode",
            "removable-media",
            "snapshot",
            "secondary-process",
            // Staged twice: on the model (verdict, trace, trace hash) and
            // through the binary interface of the stand-in built into this
            // executable, in process (`binary_halves`, builtin_abi.rs);
            // both halves must pass.
            "abi",
        ]
    }

    fn info(&self) -> BackendInfo {
        BackendInfo {
            name: "model".into(),
            description: "vdi-sim: the client and server half-machines in a deterministic world; `abi` cases also through the binary interface of the stand-in built into vdisim (in process)"
                .into(),
            library: None,
        }
    }

    fn reset(&mut self, setup: &CaseSetup) -> Result<(), BackendError> {
        self.world = Some(World::new_driven(config(setup), trace(setup)));
        self.threads.clear();
        self.programs.clear();
        Ok(())
    }

    fn start(&mut self, thread: &str, call: Call) -> Result<Ticket, BackendError> {
        let t = self.thread(thread)?;
        self.world()?.start_call(t, call);
        Ok(Ticket(t))
    }

    fn join(&mut self, t: Ticket) -> Result<Reply, BackendError> {
        if self.programs.remove(&t.0).is_some() {
            let code = self.world()?.wait_thread(t.0).map_err(ended)?;
            return Ok(Reply::code(code, Some(id::TERM_CLOSE_DEVICE)));
        }
        self.world()?.wait_call(t.0).map_err(ended)
    }

    fn client_process(&mut self) -> Option<&mut ClientProcess> {
        self.world.as_mut().map(|w| w.process())
    }

    fn start_drain(
        &mut self,
        thread: &str,
        dev: DeviceHandle,
        timeout: Timeout,
    ) -> Result<Ticket, BackendError> {
        let gct = match timeout {
            Timeout::Infinite => vdi_spec::layout::limits::INFINITE,
            Timeout::Ms(ms) => ms.min(u64::from(u32::MAX - 1)) as u32,
        };
        let spec = ClientSpec {
            get_command_timeout_ms: gct,
            ..ClientSpec::default()
        };
        let w = self.world()?;
        let t = w.spawn_program(
            &format!("{thread}-drain"),
            Some(dev.index),
            programs::device_loop(&spec, dev),
        );
        self.programs.insert(t, ());
        Ok(Ticket(t))
    }

    fn start_statement(&mut self, stmt: &Statement) -> Result<(), BackendError> {
        self.world()?.send_statement(stmt.clone());
        Ok(())
    }

    fn event(&mut self, fault: Fault) -> Result<(), BackendError> {
        self.world()?.inject(fault);
        Ok(())
    }

    fn sleep(&mut self, ms: u64) -> Result<(), BackendError> {
        self.world()?.sleep(ms).map_err(ended)
    }

    fn wait_statement(&mut self, timeout: Timeout) -> Result<Option<Outcome>, BackendError> {
        self.world()?.wait_statement(timeout).map_err(ended)
    }

    fn finish(&mut self) -> Result<RunResult, BackendError> {
        let w = self
            .world
            .take()
            .ok_or_else(|| BackendError::Failed("no case started".into()))?;
        self.threads.clear();
        Ok(w.finish_driven())
    }

    fn binary_halves(&mut self, sc: &Scenario) -> Option<Result<Vec<BinaryHalf<'_>>, String>> {
        if !sc.requires.iter().any(|r| r == "abi") {
            return None;
        }
        Some(
            self.builtin
                .get_or_insert_with(BuiltinAbi::default)
                .for_case(sc),
        )
    }

    fn run_program(
        &mut self,
        setup: &CaseSetup,
        spec: &ClientSpec,
    ) -> Result<RunResult, BackendError> {
        Ok(simulate::simulate(spec, config(setup), trace(setup)))
    }
}
