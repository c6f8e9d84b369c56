//! Who acts next. Every step the world lists what can act — ready client
//! threads, the head message towards the client, the head message towards
//! the server — and a [`Scheduler`] picks one. The world's default is
//! [`RandomScheduler`]: uniform over the choices, drawn from a ChaCha
//! generator seeded with the run's seed, so a seed names one interleaving.

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

/// One thing that can act at a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Choice {
    /// The client thread with this index makes its next call.
    Thread(u32),
    /// The head message towards the client is delivered.
    ToClient,
    /// The head message towards the server is delivered.
    ToServer,
}

/// Picks who acts next.
pub trait Scheduler: Send {
    /// The index into `choices` (never empty) of the one that acts.
    fn pick(&mut self, choices: &[Choice]) -> usize;
}

/// The world's scheduler: the seeded random one directly (the common case,
/// no indirect call per step), or any other. One per world, so the size of
/// the generator's state does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Picker {
    Random(RandomScheduler),
    Other(Box<dyn Scheduler>),
}

impl Picker {
    #[inline]
    pub(crate) fn pick(&mut self, choices: &[Choice]) -> usize {
        match self {
            Picker::Random(r) => r.pick(choices),
            Picker::Other(s) => s.pick(choices),
        }
    }
}

/// Uniform choice from a seeded ChaCha8 stream: one draw per step, the
/// draw modulo the number of choices.
pub struct RandomScheduler {
    rng: ChaCha8Rng,
}

impl RandomScheduler {
    /// The scheduler of seed `seed`.
    pub fn new(seed: u64) -> RandomScheduler {
        RandomScheduler {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }
}

impl Scheduler for RandomScheduler {
    #[inline]
    fn pick(&mut self, choices: &[Choice]) -> usize {
        debug_assert!(!choices.is_empty(), "a step with nothing to pick");
        (self.rng.next_u64() % choices.len() as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_picks() {
        let c = [Choice::Thread(0), Choice::ToClient, Choice::ToServer];
        let mut a = RandomScheduler::new(9);
        let mut b = RandomScheduler::new(9);
        let pa: Vec<usize> = (0..64).map(|_| a.pick(&c)).collect();
        let pb: Vec<usize> = (0..64).map(|_| b.pick(&c)).collect();
        assert_eq!(pa, pb);
        assert!(pa.iter().all(|&i| i < c.len()));
        assert!((0..3).all(|i| pa.contains(&i)), "every choice is picked");
    }
}
