//! # vdi-sim — the deterministic engine
//!
//! A [`World`](world::World) runs the pure model of `vdi-model` — the
//! client half, the server half, the channel between them — together with
//! a client program's threads, in virtual time:
//!
//! - [`world`]: the world's state and its configuration;
//! - the step loop (`step.rs`): each step the [`scheduler`] picks one ready
//!   thread, the head message towards the client, or the head message
//!   towards the server; when nothing can step, the virtual clock jumps to
//!   the next deadline (timers, `timers.rs`);
//! - calls (`calls.rs`): a thread's action performed on the client half,
//!   recorded in the client process (`vdi_model::process`) and checked
//!   (`vdi_model::checks`);
//! - faults (`faults.rs`): the plan's faults fired when the model's one
//!   trigger matcher (`vdi_model::fault::FaultSchedule`) says so;
//! - driven use (`driven.rs`): calls injected from outside (the model
//!   backend of the harness);
//! - [`scheduler`]: the [`Scheduler`](scheduler::Scheduler) trait and its
//!   seeded ChaCha implementation;
//! - [`explore`]: bounded exhaustive exploration of the interleavings
//!   (stateless model checking with a preemption bound);
//! - [`plans`]: fault plans that need a generator (`random`, swarm);
//! - [`simulate`]: one client program in one world.
//!
//! ## What this crate must not do
//!
//! It does not decide VDI behaviour: results, commands and outcomes come
//! from the model's halves, trigger matching from the model's schedule,
//! invariants from the model's checks. It reads no wall clock, spawns no
//! thread and draws randomness only through its scheduler and plan
//! generator, both seeded, so the same seed and build give the same trace.

mod calls;
mod driven;
pub mod explore;
mod faults;
pub mod plans;
pub mod scheduler;
pub mod simulate;
mod step;
mod timers;
pub mod world;
