//! Makes the events: uniform amounts from a seedable generator, ids made of
//! a per-run prefix and a sequence number.

use std::ops::Range;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use streamproc_event::{Amount, Event, EventId, EventTime};

pub struct Generator {
    // ChaCha8 rather than StdRng: its sequence for a seed is fixed across
    // rand releases, so `--seed` stays reproducible.
    rng: ChaCha8Rng,
    amounts: Range<f64>,
    run: String,
    sequence: u64,
}

impl Generator {
    pub fn new(seed: Option<u64>, amounts: Range<f64>) -> Self {
        let rng = match seed {
            Some(seed) => ChaCha8Rng::seed_from_u64(seed),
            None => ChaCha8Rng::from_os_rng(),
        };
        Self {
            rng,
            amounts,
            run: uuid::Uuid::now_v7().simple().to_string(),
            sequence: 0,
        }
    }

    /// Identifies this run; every event id starts with it.
    pub fn run_id(&self) -> &str {
        &self.run
    }

    pub fn next_event(&mut self, time: EventTime) -> Event {
        let amount = self.rng.random_range(self.amounts.clone());
        let id = EventId::parse(&format!("{}-{}", self.run, self.sequence))
            .expect("a 32-char run id and a number fit the id limit");
        self.sequence += 1;
        Event::new(
            id,
            time,
            Amount::new(amount).expect("a finite range gives finite amounts"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amounts(seed: u64) -> Vec<f64> {
        let mut generator = Generator::new(Some(seed), 0.0..10.0);
        let now = EventTime::now();
        (0..100)
            .map(|_| generator.next_event(now).amount.value())
            .collect()
    }

    #[test]
    fn a_seed_fixes_the_amounts() {
        assert_eq!(amounts(7), amounts(7));
        assert_ne!(amounts(7), amounts(8));
        assert!(amounts(7).iter().all(|a| (0.0..10.0).contains(a)));
    }

    #[test]
    fn ids_are_unique_within_and_across_runs() {
        let now = EventTime::now();
        let mut a = Generator::new(Some(1), 0.0..1.0);
        let mut b = Generator::new(Some(1), 0.0..1.0);
        let first = a.next_event(now).id;
        assert_ne!(first, a.next_event(now).id);
        assert_ne!(first, b.next_event(now).id);
    }
}
