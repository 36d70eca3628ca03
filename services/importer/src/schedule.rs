//! When to poll an import job. The first poll comes when the job is expected done: a running estimate of
//! a high quantile of job durations, learned from the jobs seen so far and shared by the fleet through the
//! store. A job still pending is polled again when its age has grown by `growth` (never sooner than
//! `floor`, never later than `max`), so a long job costs a few polls, not one every few seconds.
//!
//! The estimate is a stochastic quantile tracker: a job found done at its first poll lowers it a little, one
//! found pending raises it more, in the ratio that settles where `quantile` of the jobs are done by the
//! first poll. It follows jobs that get slower or faster within a run.
//!
//! Each outcome counts only against the estimate its poll was scheduled with. Hundreds of polls are in
//! flight at once, all scheduled under the same estimate; counting each against the current one made a
//! burst of them move it hundreds of steps on one piece of news (wound up from 1 s to the 60 s cap in a
//! second of the benchmark, then polled every job half a minute late). Now a pending job raises the estimate
//! only while it is at most [`BAND`] times the wait that poll had, and a done job lowers it only while it is
//! at least that wait divided by [`BAND`]: a burst moves it by that factor at most, and the next polls,
//! scheduled under the moved estimate, carry it further if they agree.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use bb2snyk_store::Store;

/// The estimate's key in the store; every importer reads and moves the same one.
const KEY: &str = "poll-estimate-ms";
/// How long a process trusts its copy before reading the fleet's again.
const REFRESH: Duration = Duration::from_secs(1);
/// The step of each move, as a share of the estimate (a log-space learning rate).
const STEP: f64 = 0.1;
/// How far from the wait its poll had an outcome may still move the estimate.
const BAND: f64 = 1.25;

/// The poll timing settings (`import.poll_*`).
#[derive(Debug, Clone, Copy)]
pub struct PollTiming {
    /// The estimate before any job was seen.
    pub prior: Duration,
    /// The shortest wait between two polls of a job.
    pub floor: Duration,
    /// The longest wait between two polls of a job (and the highest estimate).
    pub max: Duration,
    /// A pending job is polled again when its age has grown by this share (0.5: at 1.5 times its age).
    pub growth: f64,
    /// The share of jobs the first poll should find done.
    pub quantile: f64,
}

impl Default for PollTiming {
    fn default() -> Self {
        Self {
            prior: Duration::from_secs(5),
            floor: Duration::from_secs(1),
            max: Duration::from_secs(60),
            growth: 0.5,
            quantile: 0.75,
        }
    }
}

/// The fleet's estimate of when a job is done, and the waits between polls.
#[derive(Debug)]
pub struct Schedule {
    timing: PollTiming,
    store: Store,
    /// This process's copy: the estimate in ms and when it was read.
    cached: Mutex<(f64, Option<Instant>)>,
}

impl Schedule {
    pub fn new(timing: PollTiming, store: Store) -> Self {
        Self {
            cached: Mutex::new((millis(timing.prior), None)),
            timing,
            store,
        }
    }

    /// The wait before a new job's first poll: the estimate.
    pub async fn first_poll(&self) -> Duration {
        let estimate = self.estimate().await;
        self.clamp(Duration::from_secs_f64(estimate / 1000.0))
    }

    /// The wait before the next poll of a job `age` old that is still pending.
    pub fn next_poll(&self, age: Duration) -> Duration {
        self.clamp(age.mul_f64(self.timing.growth))
    }

    /// What the first poll of a job, scheduled `scheduled` after its request, found: done (the estimate moves
    /// down a little) or pending (up more), unless the estimate has already moved past that wait.
    pub async fn first_poll_found(&self, done: bool, scheduled: Duration) {
        let current = self.estimate().await;
        let scheduled = millis(self.clamp(scheduled));
        let heard = if done {
            current < scheduled / BAND
        } else {
            current > scheduled * BAND
        };
        if heard {
            return;
        }
        let q = self.timing.quantile;
        let factor = if done {
            (-STEP * (1.0 - q)).exp()
        } else {
            (STEP * q).exp()
        };
        let low = millis(self.timing.floor);
        let high = millis(self.timing.max);
        let moved = (current * factor).clamp(low, high);
        *self.lock() = (moved, Some(Instant::now()));
        // Another importer may move it at the same time: one of the two moves is lost, which an estimate
        // can afford.
        if let Err(e) = self
            .store
            .set(KEY, moved.round().to_string().as_bytes(), None)
            .await
        {
            tracing::debug!(error = %e, "poll estimate kept in this process");
        }
    }

    async fn estimate(&self) -> f64 {
        let (ms, read) = *self.lock();
        if read.is_some_and(|at| at.elapsed() < REFRESH) {
            return ms;
        }
        let shared = self
            .store
            .get(KEY)
            .await
            .ok()
            .flatten()
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|text| text.parse::<f64>().ok())
            .filter(|ms| ms.is_finite() && *ms > 0.0);
        let ms = shared.unwrap_or(ms);
        *self.lock() = (ms, Some(Instant::now()));
        ms
    }

    fn clamp(&self, wait: Duration) -> Duration {
        wait.clamp(self.timing.floor, self.timing.max)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (f64, Option<Instant>)> {
        self.cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
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

    #[tokio::test]
    async fn the_estimate_settles_where_most_first_polls_find_the_job_done() {
        let schedule = Schedule::new(PollTiming::default(), Store::memory());
        assert_eq!(schedule.first_poll().await, Duration::from_secs(5));
        // Jobs of a fixed 12 s: the estimate climbs past them, then hovers just above.
        for _ in 0..300 {
            let estimate = schedule.first_poll().await;
            schedule
                .first_poll_found(estimate >= Duration::from_secs(12), estimate)
                .await;
        }
        let settled = schedule.first_poll().await;
        assert!(
            settled >= Duration::from_secs(11) && settled <= Duration::from_secs(14),
            "{settled:?}"
        );
        // Jobs get faster (3 s): it follows them down.
        for _ in 0..300 {
            let estimate = schedule.first_poll().await;
            schedule
                .first_poll_found(estimate >= Duration::from_secs(3), estimate)
                .await;
        }
        let faster = schedule.first_poll().await;
        assert!(faster <= Duration::from_secs(4), "{faster:?}");
        // A burst of outcomes of polls scheduled under one estimate moves it by the band at most, not
        // hundreds of steps: 500 polls scheduled at 1 s that all find their 2 s jobs pending raise it to
        // about 1.25 s; 500 scheduled at 30 s that all find theirs done lower it to about 24 s.
        let burst = Schedule::new(
            PollTiming {
                prior: Duration::from_secs(1),
                ..PollTiming::default()
            },
            Store::memory(),
        );
        for _ in 0..500 {
            burst.first_poll_found(false, Duration::from_secs(1)).await;
        }
        let raised = burst.first_poll().await;
        assert!(
            raised > Duration::from_millis(1200) && raised < Duration::from_millis(1400),
            "{raised:?}"
        );
        let high = Schedule::new(
            PollTiming {
                prior: Duration::from_secs(30),
                ..PollTiming::default()
            },
            Store::memory(),
        );
        for _ in 0..500 {
            high.first_poll_found(true, Duration::from_secs(30)).await;
        }
        let lowered = high.first_poll().await;
        assert!(
            lowered < Duration::from_secs(25) && lowered > Duration::from_secs(23),
            "{lowered:?}"
        );
        // A pending job is polled again as it ages, within the floor and the cap.
        assert_eq!(
            schedule.next_poll(Duration::from_millis(500)),
            Duration::from_secs(1)
        );
        assert_eq!(
            schedule.next_poll(Duration::from_secs(20)),
            Duration::from_secs(10)
        );
        assert_eq!(
            schedule.next_poll(Duration::from_secs(600)),
            Duration::from_secs(60)
        );
    }
}
