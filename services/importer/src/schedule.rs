//! When to poll an import job. Where listings tell of jobs' ends (hints are trusted, see [`crate::hints`]),
//! a job's own polls are only a safety net: each comes the longest wait (`max`) after the last (a first
//! poll only while the importer follows `many_followed` jobs, so that a few jobs, or one that fails and
//! which no listing tells of, do not wait for it). Otherwise the first poll comes `first` after Snyk
//! accepted the job, and each later one once the job's age has grown by `growth`, never sooner than
//! `floor` nor later than `max` after the last.
//!
//! Nothing about job durations is learned here: with listings at work an estimate of them does not pay
//! (BENCHMARKS.md, the ablation).

use std::time::Duration;

/// The poll timing settings (`import.poll_*`).
#[derive(Debug, Clone, Copy)]
pub struct PollTiming {
    /// The wait before a job's first poll.
    pub first: Duration,
    /// The shortest wait between two polls of a job.
    pub floor: Duration,
    /// The longest wait between two polls of a job, and a safety net's wait.
    pub max: Duration,
    /// A pending job is polled again when its age has grown by this share (0.5: at 1.5 times its age).
    pub growth: f64,
}

impl Default for PollTiming {
    fn default() -> Self {
        Self {
            first: Duration::from_secs(5),
            floor: Duration::from_secs(1),
            max: Duration::from_secs(60),
            growth: 0.5,
        }
    }
}

impl PollTiming {
    /// The wait before a new job's first poll; a safety net's where listings tell of jobs' ends.
    pub fn first_poll(&self, safety_net: bool) -> Duration {
        if safety_net {
            self.max
        } else {
            self.clamp(self.first)
        }
    }

    /// The wait before the next poll of a job `age` old that is still pending.
    pub fn next_poll(&self, age: Duration, safety_net: bool) -> Duration {
        if safety_net {
            return self.max;
        }
        let grown =
            Duration::try_from_secs_f64(age.as_secs_f64() * self.growth).unwrap_or(self.max);
        self.clamp(grown)
    }

    fn clamp(&self, wait: Duration) -> Duration {
        wait.clamp(self.floor, self.max.max(self.floor))
    }
}

/// Milliseconds since the Unix epoch: polls carry when their job was requested and when they are due.
/// Read off tokio's clock from the wall-clock time the process first asked, so it never jumps back with
/// the wall clock, and a test's paused clock moves it as it moves the broker's delays.
pub fn now_ms() -> u64 {
    static ANCHOR: std::sync::OnceLock<(u64, tokio::time::Instant)> = std::sync::OnceLock::new();
    let (unix, at) = *ANCHOR.get_or_init(|| {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        (unix, tokio::time::Instant::now())
    });
    unix.saturating_add(u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX))
}

/// How long until a poll due at `not_before_ms` is due; `None` when it is (or nearly is: within 50 ms).
pub fn wait_until(not_before_ms: u64) -> Option<Duration> {
    let now = now_ms();
    (not_before_ms > now + 50).then(|| Duration::from_millis(not_before_ms - now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_is_polled_first_after_first_then_as_it_ages_or_on_the_safety_net() {
        let timing = PollTiming::default();
        assert_eq!(timing.first_poll(false), Duration::from_secs(5));
        assert_eq!(timing.first_poll(true), Duration::from_secs(60));
        assert_eq!(
            timing.next_poll(Duration::from_secs(10), false),
            Duration::from_secs(5)
        );
        assert_eq!(
            timing.next_poll(Duration::from_millis(100), false),
            Duration::from_secs(1),
            "the floor"
        );
        assert_eq!(
            timing.next_poll(Duration::from_secs(600), false),
            Duration::from_secs(60),
            "the max"
        );
        assert_eq!(
            timing.next_poll(Duration::from_secs(10), true),
            Duration::from_secs(60)
        );
    }
}
