//! The one wall clock and the one retry backoff of the workspace.
//!
//! The protocol logic never reads the clock: it takes `now_ms` as a parameter. [`now_ms`] is
//! the single place where the edges (engine, AMQP client, metrics, fake endpoint, camera
//! simulator) read it. [`Backoff`] is a pure schedule: it computes delays, the caller sleeps, and
//! the randomness of the jitter is an argument so that tests can fix it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Microseconds since the Unix epoch (0 if the clock is before 1970), for latency histograms.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// How a [`Backoff`] spreads its delays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Exactly the capped exponential delay (one local resource, nothing to spread).
    None,
    /// "Equal jitter": half the delay fixed, half uniform random, so that many clients retrying
    /// the same server spread out.
    Equal,
}

/// Capped exponential backoff: the n-th delay (from 0) is `d = min(initial * 2^n, max)`, or
/// uniform in `[d/2, d]` with [`Jitter::Equal`].
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    step: u32,
    jitter: Jitter,
}

impl Backoff {
    /// Starts at `initial`, never exceeds `max` (nor goes below `initial`), with equal jitter.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
            step: 0,
            jitter: Jitter::Equal,
        }
    }

    /// The same schedule with another jitter.
    pub fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The delay before jitter that [`next_delay`](Self::next_delay) will use next.
    pub fn base(&self) -> Duration {
        let factor = 1u32 << self.step.min(20);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// How many delays were taken since the start or the last [`reset`](Self::reset).
    pub fn attempts(&self) -> u32 {
        self.step
    }

    /// The next delay; `random` is any 64-bit random value (ignored without jitter).
    pub fn next_delay(&mut self, random: u64) -> Duration {
        let base = self.base();
        self.step = self.step.saturating_add(1);
        match self.jitter {
            Jitter::None => base,
            Jitter::Equal => {
                let half = base / 2;
                // The top 53 bits as a fraction in [0, 1].
                let frac = (random >> 11) as f64 / ((1u64 << 53) - 1) as f64;
                half + half.mul_f64(frac.min(1.0))
            }
        }
    }

    /// Back to the initial delay.
    pub fn reset(&mut self) {
        self.step = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        for (i, (want, random)) in [
            (1u64, 0u64),
            (2, u64::MAX),
            (4, 1 << 63),
            (8, 7),
            (8, u64::MAX),
            (8, 0),
        ]
        .into_iter()
        .enumerate()
        {
            let want = Duration::from_secs(want);
            let d = b.next_delay(random);
            assert!(d >= want / 2 && d <= want, "{i}: {d:?}");
        }
        assert_eq!(b.attempts(), 6);
        b.reset();
        assert_eq!(b.base(), Duration::from_secs(1));
        assert_eq!(b.next_delay(0), Duration::from_millis(500));
    }

    #[test]
    fn jitter_spans_half_to_full() {
        let b = Backoff::new(Duration::from_secs(2), Duration::from_secs(2));
        assert_eq!(b.clone().next_delay(0), Duration::from_secs(1));
        assert_eq!(b.clone().next_delay(u64::MAX), Duration::from_secs(2));
    }

    #[test]
    fn without_jitter_it_doubles_exactly_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(700))
            .with_jitter(Jitter::None);
        let d: Vec<u64> = (0..5)
            .map(|_| b.next_delay(12345).as_millis() as u64)
            .collect();
        assert_eq!(d, [100, 200, 400, 700, 700]);
    }

    #[test]
    fn a_max_below_initial_is_raised_to_it() {
        let mut b =
            Backoff::new(Duration::from_secs(3), Duration::from_secs(1)).with_jitter(Jitter::None);
        assert_eq!(b.next_delay(0), Duration::from_secs(3));
        assert_eq!(b.next_delay(0), Duration::from_secs(3));
    }

    #[test]
    fn the_clock_is_after_2020() {
        assert!(now_ms() > 1_577_836_800_000);
    }
}
