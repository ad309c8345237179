//! Restart strategies, as Flink's (`restart-strategy.type`): what the master does when a
//! subtask fails or a worker is lost — restart the job after a delay, or give up and
//! fail it. Pure: the master passes the time of each failure.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, PartialEq)]
pub enum RestartStrategy {
    /// Fail the job at the first failure (Flink's default without checkpoints).
    None,
    /// Restart at most `attempts` times, each after `delay`.
    FixedDelay { attempts: u32, delay: Duration },
    /// Restart after a delay that starts at `initial` and grows by `multiplier` up to
    /// `max` with every failure; it falls back to `initial` once the job has run for
    /// `reset_after` without failing. Never gives up.
    ExponentialDelay {
        initial: Duration,
        max: Duration,
        multiplier: f64,
        reset_after: Duration,
    },
    /// Restart after `delay`, unless more than `max_failures` failures fell within the
    /// last `interval`.
    FailureRate {
        max_failures: u32,
        interval: Duration,
        delay: Duration,
    },
}

/// A strategy and the failures it has seen.
pub(crate) struct RestartTracker {
    strategy: RestartStrategy,
    restarts: u32,
    recent: VecDeque<Instant>,
    backoff: Option<(Duration, Instant)>,
}

impl RestartTracker {
    pub(crate) fn new(strategy: RestartStrategy) -> Self {
        RestartTracker {
            strategy,
            restarts: 0,
            recent: VecDeque::new(),
            backoff: None,
        }
    }

    /// Restarts so far.
    pub(crate) fn restarts(&self) -> u32 {
        self.restarts
    }

    /// A failure at `now`: the delay before the restart, or `None` when the strategy gives
    /// up (the job fails).
    pub(crate) fn on_failure(&mut self, now: Instant) -> Option<Duration> {
        let delay = match &self.strategy {
            RestartStrategy::None => None,
            RestartStrategy::FixedDelay { attempts, delay } => {
                (self.restarts < *attempts).then_some(*delay)
            }
            RestartStrategy::ExponentialDelay {
                initial,
                max,
                multiplier,
                reset_after,
            } => {
                let next = match self.backoff {
                    Some((last, at)) if now.saturating_duration_since(at) < *reset_after => {
                        last.mul_f64(multiplier.max(1.0)).min(*max)
                    }
                    _ => (*initial).min(*max),
                };
                self.backoff = Some((next, now));
                Some(next)
            }
            RestartStrategy::FailureRate {
                max_failures,
                interval,
                delay,
            } => {
                self.recent.push_back(now);
                while self
                    .recent
                    .front()
                    .is_some_and(|t| now.saturating_duration_since(*t) > *interval)
                {
                    self.recent.pop_front();
                }
                (self.recent.len() as u32 <= *max_failures).then_some(*delay)
            }
        };
        if delay.is_some() {
            self.restarts += 1;
        }
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn none_gives_up_at_once() {
        let mut t = RestartTracker::new(RestartStrategy::None);
        assert_eq!(t.on_failure(Instant::now()), None);
        assert_eq!(t.restarts(), 0);
    }

    #[test]
    fn fixed_delay_restarts_the_given_number_of_times() {
        let mut t = RestartTracker::new(RestartStrategy::FixedDelay {
            attempts: 2,
            delay: s(3),
        });
        let now = Instant::now();
        assert_eq!(t.on_failure(now), Some(s(3)));
        assert_eq!(t.on_failure(now + s(100)), Some(s(3)));
        assert_eq!(t.on_failure(now + s(200)), None);
        assert_eq!(t.restarts(), 2);
    }

    #[test]
    fn exponential_delay_grows_to_its_maximum_and_resets_after_a_quiet_run() {
        let mut t = RestartTracker::new(RestartStrategy::ExponentialDelay {
            initial: s(1),
            max: s(5),
            multiplier: 2.0,
            reset_after: s(60),
        });
        let t0 = Instant::now();
        let delays: Vec<_> = (0..5).map(|i| t.on_failure(t0 + s(i))).collect();
        assert_eq!(delays, [1, 2, 4, 5, 5].map(|n| Some(s(n))));
        // A minute without failure: back to the initial delay.
        assert_eq!(t.on_failure(t0 + s(4 + 61)), Some(s(1)));
        assert_eq!(t.restarts(), 6);
    }

    #[test]
    fn failure_rate_gives_up_when_too_many_failures_fall_in_the_interval() {
        let mut t = RestartTracker::new(RestartStrategy::FailureRate {
            max_failures: 2,
            interval: s(60),
            delay: s(1),
        });
        let t0 = Instant::now();
        assert_eq!(t.on_failure(t0), Some(s(1)));
        assert_eq!(t.on_failure(t0 + s(10)), Some(s(1)));
        // The first failure is more than a minute old by now: two in the interval.
        assert_eq!(t.on_failure(t0 + s(61)), Some(s(1)));
        // Three within a minute (10 s, 61 s, 62 s).
        assert_eq!(t.on_failure(t0 + s(62)), None);
    }
}
