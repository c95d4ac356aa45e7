//! Exponential backoff with jitter, for every retry loop in StreamProc.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            next: initial,
        }
    }

    /// After a success: the next failure waits `initial` again.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }

    /// How long to wait after a failure: doubling from `initial` up to `max`,
    /// ±25% so that many clients do not retry in lockstep, and never less
    /// than what the other side asked for (a `Retry-After`, say).
    pub fn next_delay(&mut self, at_least: Option<Duration>) -> Duration {
        let jitter = rand::rng().random_range(0.75..1.25);
        let delay = self.next.mul_f64(jitter).max(at_least.unwrap_or_default());
        self.next = (self.next * 2).min(self.max);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(400));
        let delays: Vec<_> = (0..5)
            .map(|_| backoff.next_delay(None).as_millis())
            .collect();
        let within = |d: u128, base: u128| d >= base * 3 / 4 && d <= base * 5 / 4;
        assert!(
            within(delays[0], 100) && within(delays[1], 200),
            "{delays:?}"
        );
        assert!(delays[2..].iter().all(|&d| within(d, 400)), "{delays:?}");
        backoff.reset();
        assert!(within(backoff.next_delay(None).as_millis(), 100));
    }

    #[test]
    fn honours_what_the_server_asked_for() {
        let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_secs(1));
        assert!(backoff.next_delay(Some(Duration::from_secs(3))) >= Duration::from_secs(3));
    }
}
