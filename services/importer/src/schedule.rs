// Over 400 lines until the ablation of issue 30 measures which of its rules pay; the polling rewrite
// that follows splits what stays into two modules of under 800 lines together.
//! When to poll an import job. The first poll comes when the job is expected done: a running estimate of
//! a high quantile (`quantile`) of job durations, shared by the fleet through the store, plus a margin;
//! one first poll in [`PROBE_EVERY`] is a probe, at the estimate itself, and only probes move it. A job
//! still pending is polled again once its age has grown by `growth` (between `floor` and `max`).
//!
//! The estimate is a quantile tracker moved at most once a second for the whole fleet (the importer that
//! holds the turn), on [`MIN_HEARD`] outcomes at least, by the share of probes that found their job
//! pending, toward 1 − `quantile`, by at most [`MOST_UP`] up or [`MOST_DOWN`] down; its step halves when a
//! move turns back (down to [`LEAST_STEP`]) and doubles on the third move the same way. Only outcomes of
//! polls scheduled under (about, [`SAME_ESTIMATE`]) the current estimate count.
//!
//! Probed jobs are followed in cohorts (the estimate they probed): while a fifth or more of a cohort is
//! still pending a quarter past the estimate, the estimate is raised at once to the age where the cohort's
//! survival (Kaplan-Meier, drawn as a line through its last two polls) falls to 1 − `quantile`.

use std::{
    collections::VecDeque,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::time::Instant;

use bb2snyk_store::Store;

use crate::ablate::{Rule, off};

/// The estimate's key in the store; every importer reads and moves the same one.
const KEY: &str = "poll-estimate-ms";
/// Held for [`MOVE_EVERY`] by the importer that moves the estimate, so the fleet moves it once a second
/// however many importers it has (four importers each moving it once a second polled 1.18 times per
/// import where one polled 1.02).
const TURN_KEY: &str = "poll-estimate-turn";
/// How long a process trusts its copy before reading the fleet's again.
const REFRESH: Duration = Duration::from_secs(1);
/// The most often one importer moves the estimate.
const MOVE_EVERY: Duration = Duration::from_secs(1);
/// How much a move follows the pending share's distance from where it should be (a log-space gain).
const GAIN: f64 = 1.5;
/// Outcomes a move needs at least, so one job is never the whole evidence.
const MIN_HEARD: u32 = 10;
/// How close to the current estimate a poll's wait must be for its outcome to count.
const SAME_ESTIMATE: f64 = 0.05;
/// One first poll in this many is a probe, at the estimate without the margin.
const PROBE_EVERY: u64 = 8;
/// The most one move changes the estimate by: up, and down. Up is quicker: until the estimate reaches
/// the jobs' durations every first poll comes early, and each step waits one estimate for its evidence.
const MOST_UP: f64 = 1.75;
const MOST_DOWN: f64 = 0.8;
/// The smallest step, as a share of a full one (log space).
const LEAST_STEP: f64 = 0.125;
/// The estimate is raised to an age at which at least this many times (1 − `quantile`) of a cohort of
/// probed jobs is still pending: twice, so that a cohort circling the quantile (one in ten pending at the
/// estimate) never raises it.
const RAISE_SHARE: f64 = 2.0;
/// The least raise a cohort makes (a quarter): smaller ones are the tracker's, whose step adapts to them.
const RAISE_LEAST: f64 = 1.25;
/// A rise of the estimate by this factor within [`CLIMB_WINDOW`] is a climb.
const CLIMB: f64 = 1.25;
const CLIMB_WINDOW: Duration = Duration::from_secs(10);
/// Cohorts of probed jobs an importer follows (the latest), and polls of a job it counts: bounds on what a
/// message's `probe_ms` and `polls` can make it keep.
const COHORTS: usize = 32;
const COHORT_POLLS: usize = 16;

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
    /// The share of probes that should find their job done: where the estimate settles.
    pub quantile: f64,
    /// How much later than the estimate the first polls that are not probes come (0.15: 15 % later).
    pub margin: f64,
}

impl Default for PollTiming {
    fn default() -> Self {
        Self {
            prior: Duration::from_secs(5),
            floor: Duration::from_secs(1),
            max: Duration::from_secs(60),
            growth: 0.5,
            quantile: 0.9,
            margin: 0.15,
        }
    }
}

/// The fleet's estimate of when a job is done, and the waits between polls.
#[derive(Debug)]
pub struct Schedule {
    timing: PollTiming,
    store: Store,
    /// This process's copy of the estimate and when it was read.
    cached: Mutex<(Estimate, Option<Instant>)>,
    /// Outcomes heard since this process last moved the estimate, and when that was.
    heard: Mutex<Heard>,
    /// First polls scheduled by this process: every [`PROBE_EVERY`]th is a probe.
    first_polls: AtomicU64,
    /// Probed jobs' outcomes, per cohort (the estimate probed), newest last.
    cohorts: Mutex<VecDeque<Cohort>>,
    /// The oldest age (ms) at which this process found a job still pending: some jobs run that long.
    longest_pending_ms: AtomicU64,
    /// The estimates this process saw lately (one a [`REFRESH`] at most), to tell a climb.
    seen: Mutex<VecDeque<(Instant, f64)>>,
}

/// When a job's first poll comes, and whether it is a probe.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FirstPoll {
    pub wait: Duration,
    /// For a probe, the estimate it probes (ms), which the job's later polls carry; else 0.
    pub probe_ms: u64,
}

/// The jobs probed under one estimate: per poll (the probe first), how many found their job pending, how
/// many done, and the age it was heard at last.
#[derive(Debug)]
struct Cohort {
    probe_ms: u64,
    polls: Vec<CohortPoll>,
}

#[derive(Debug, Clone, Copy, Default)]
struct CohortPoll {
    pending: u32,
    done: u32,
    age_ms: f64,
}

impl Cohort {
    /// The share of the cohort still pending at its `poll`th poll, once every poll up to it was heard
    /// [`MIN_HEARD`] times: the product of each poll's pending share.
    fn still_pending(&self, poll: usize) -> Option<f64> {
        self.polls.get(..=poll)?.iter().try_fold(1.0, |share, p| {
            let heard = p.pending.saturating_add(p.done);
            (heard >= MIN_HEARD).then(|| share * f64::from(p.pending) / f64::from(heard))
        })
    }

    /// The age (ms) and share still pending at the poll before `poll`; none before the probe.
    fn before(&self, poll: usize) -> Option<(f64, f64)> {
        let last = poll.checked_sub(1)?;
        Some((self.polls.get(last)?.age_ms, self.still_pending(last)?))
    }
}

/// The fleet's estimate as the store keeps it (`"<ms> <step> <streak>"`).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Estimate {
    ms: f64,
    /// The share of a full move (in log space) moves are made at, between [`LEAST_STEP`] and 1.
    step: f64,
    /// The moves in a row the same way, up (1, 2) or down (-1, -2); 0 before the first.
    streak: i8,
}

impl Estimate {
    fn new(ms: f64) -> Self {
        Self {
            ms,
            step: 1.0,
            streak: 0,
        }
    }

    /// Moved by `factor` (a full step) at the step this move earns: half when it turns back, twice when
    /// it is the third the same way.
    fn moved(self, factor: f64, low: f64, high: f64) -> Self {
        let way: i8 = if factor > 1.0 {
            1
        } else if factor < 1.0 {
            -1
        } else {
            return self;
        };
        let (step, streak) = match self.streak.signum() {
            0 => (self.step, way),
            last if last != way => ((self.step / 2.0).max(LEAST_STEP), way),
            _ if self.streak.abs() >= 2 => ((self.step * 2.0).min(1.0), way),
            _ => (self.step, self.streak + way),
        };
        Self {
            ms: (self.ms * factor.powf(step)).clamp(low, high),
            step,
            streak,
        }
    }

    /// The store's text, read as input: anything but a positive number of ms is no estimate, and a step
    /// or streak that is missing or out of range (an older importer wrote ms alone) is a fresh one's.
    fn parse(text: &str) -> Option<Self> {
        let mut words = text.split_whitespace();
        let ms = words
            .next()?
            .parse::<f64>()
            .ok()
            .filter(|ms| ms.is_finite() && *ms > 0.0)?;
        let step = words
            .next()
            .and_then(|w| w.parse::<f64>().ok())
            .filter(|s| (LEAST_STEP..=1.0).contains(s));
        let streak = words
            .next()
            .and_then(|w| w.parse::<i8>().ok())
            .filter(|s| (-2..=2).contains(s));
        Some(Self {
            step: step.unwrap_or(1.0),
            streak: streak.unwrap_or(0),
            ..Self::new(ms)
        })
    }

    fn text(&self) -> String {
        format!("{} {} {}", self.ms.round(), self.step, self.streak)
    }
}

#[derive(Debug, Default)]
struct Heard {
    done: u32,
    pending: u32,
    moved: Option<Instant>,
    /// The estimate (ms) the outcomes were heard under: news of another is not news of this one.
    under: f64,
}

impl Schedule {
    pub fn new(timing: PollTiming, store: Store) -> Self {
        Self {
            cached: Mutex::new((Estimate::new(millis(timing.prior)), None)),
            heard: Mutex::default(),
            first_polls: AtomicU64::new(0),
            cohorts: Mutex::default(),
            longest_pending_ms: AtomicU64::new(0),
            seen: Mutex::default(),
            timing,
            store,
        }
    }

    /// The wait before a new job's first poll: the estimate for a probe, else the estimate and the margin.
    pub async fn first_poll(&self) -> Duration {
        self.plan_first_poll().await.wait
    }

    /// A new job's first poll: when, and whether it probes the estimate.
    pub async fn plan_first_poll(&self) -> FirstPoll {
        self.plan_first_poll_probing(PROBE_EVERY).await
    }

    /// A new job's first poll, one in `every` a probe.
    pub async fn plan_first_poll_probing(&self, every: u64) -> FirstPoll {
        let estimate = self.estimate().await;
        let probe = self
            .first_polls
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(every.max(1))
            && !off(Rule::Probes);
        if probe {
            let wait = self.wait_of(estimate / 1000.0);
            FirstPoll {
                wait,
                probe_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1),
            }
        } else {
            FirstPoll {
                wait: self.wait_of(estimate * (1.0 + self.timing.margin) / 1000.0),
                probe_ms: 0,
            }
        }
    }

    /// How long a job is expected to take, margin included (no probe, and no first poll is counted).
    pub async fn expected(&self) -> Duration {
        let estimate = self.estimate().await;
        self.wait_of(estimate * (1.0 + self.timing.margin) / 1000.0)
    }

    /// The wait before the next poll of a job `age` old that is still pending: when its age has grown by
    /// `growth`, or sooner, a floor after the oldest age a job was found pending at, when that comes
    /// first. Jobs of 1-60 s found pending at their first poll (about 55-59 s) were polled again at 1.5
    /// times their age, 83-88 s, and the last of them set a run's last 20 s. Where jobs run longer than
    /// any seen so far, this costs one poll at that age.
    pub fn next_poll(&self, age: Duration) -> Duration {
        let backoff = self.wait_of(age.as_secs_f64() * self.timing.growth);
        let longest = Duration::from_millis(self.longest_pending_ms.load(Ordering::Relaxed));
        match longest.checked_sub(age) {
            Some(until) if !until.is_zero() => backoff.min(self.clamp(until + self.timing.floor)),
            _ => backoff,
        }
    }

    /// Whether the estimate is climbing (it rose by a quarter or more within [`CLIMB_WINDOW`], by the
    /// tracker's moves or a cohort's raise): it is below most jobs' durations. Moves that circle the
    /// quantile are smaller.
    pub async fn climbing(&self) -> bool {
        let now = self.shared_estimate().await.ms;
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let at = Instant::now();
        seen.retain(|(when, _)| at.duration_since(*when) <= CLIMB_WINDOW);
        if seen
            .back()
            .is_none_or(|(when, _)| at.duration_since(*when) >= REFRESH)
        {
            seen.push_back((at, now));
        }
        seen.iter().any(|(_, ms)| now >= ms * CLIMB)
    }

    /// The longest wait between two polls of a job.
    pub fn longest_wait(&self) -> Duration {
        self.timing.max
    }

    /// A poll found its job still pending `age` after its request: some jobs run at least that long.
    pub fn found_pending(&self, age: Duration) {
        let ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
        self.longest_pending_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// The wait before the second poll of a job whose probe found it pending: when the other first polls
    /// come (the estimate and the margin), if that is sooner than the backoff. At 1.5 times its age, the
    /// probes of a run's last jobs made its last half minute: jobs of 1-60 s were probed at 54 s and
    /// polled again at 81 s, where the others' first polls came at 60 s.
    pub async fn after_probe(&self, age: Duration) -> Duration {
        let expected = self.expected().await;
        if expected > age {
            self.clamp(expected - age).min(self.next_poll(age))
        } else {
            self.next_poll(age)
        }
    }

    /// `secs` as a wait within the bounds; one that is no number of seconds at all (it never should be)
    /// is the longest wait rather than a panic.
    fn wait_of(&self, secs: f64) -> Duration {
        self.clamp(Duration::try_from_secs_f64(secs).unwrap_or(self.timing.max))
    }

    /// What the first poll of a job, scheduled `scheduled` after its request, found: done or pending. Only
    /// polls at (about) the current estimate count: the probes.
    pub async fn first_poll_found(&self, done: bool, scheduled: Duration) {
        let estimate = self.shared_estimate().await;
        let current = estimate.ms;
        let scheduled = millis(self.clamp(scheduled));
        // Waits travel in whole ms, hence the 1 ms.
        if (scheduled - current).abs() > current * SAME_ESTIMATE + 1.0 {
            return;
        }
        // Counted, checked and taken under one lock: taken in two, a concurrent outcome could take the
        // counts in between and leave this one none (0 of 0 pending: a NaN estimate, and every first
        // poll of the next second panicked, 157 imports parked in the benchmark).
        let (done_n, pending_n) = {
            let mut heard = self.heard();
            // Another importer moved the estimate since: what was heard is of the old one. Kept, it
            // moved the new one (probes of 4.3 s, 40 % pending, raised an estimate of 6.75 s to 10.6 s;
            // 5 s jobs were then seen 11 s late at p50 with four importers).
            if heard.under != current {
                *heard = Heard {
                    under: current,
                    moved: heard.moved,
                    ..Heard::default()
                };
            }
            if done {
                heard.done += 1;
            } else {
                heard.pending += 1;
            }
            if heard.done + heard.pending < MIN_HEARD
                || heard.moved.is_some_and(|at| at.elapsed() < MOVE_EVERY)
            {
                return;
            }
            let counts = (heard.done, heard.pending);
            *heard = Heard {
                moved: Some(Instant::now()),
                under: current,
                ..Heard::default()
            };
            counts
        };
        // Another importer's turn this second: it moved the estimate on news as fresh, and this one starts
        // over. Without Redis, or on a store of this process alone, the turn is this process's.
        let my_turn = !self.store.is_shared()
            || !matches!(
                self.store.set_nx_px(TURN_KEY, b"1", MOVE_EVERY).await,
                Ok(false)
            );
        if !my_turn {
            return;
        }
        let pending_share = f64::from(pending_n) / f64::from(done_n + pending_n);
        let factor = (GAIN * (pending_share - (1.0 - self.timing.quantile)))
            .exp()
            .clamp(MOST_DOWN, MOST_UP);
        if !factor.is_finite() {
            return;
        }
        let low = millis(self.timing.floor);
        let high = millis(self.timing.max);
        // Moved from the estimate the outcomes were heard under, not from a copy read since.
        let moved = estimate.moved(factor, low, high);
        tracing::debug!(
            from_ms = estimate.ms.round(),
            to_ms = moved.ms.round(),
            step = moved.step,
            pending = pending_n,
            done = done_n,
            "poll estimate moved"
        );
        // Should a turn expire mid-move, two importers may move it at once: one move is lost, which an
        // estimate can afford.
        self.publish(moved).await;
    }

    /// What the `poll`th poll (0: the probe) of a job probed at `probe_ms` found, `age` after its request.
    /// Counted in the job's cohort; while a [`RAISE_SHARE`] share of the cohort is still pending at an
    /// age past the estimate, the estimate is raised past that age ([`Self::beyond`]), by
    /// [`RAISE_LEAST`] at least.
    pub async fn probed_job_found(&self, probe_ms: u64, poll: u32, done: bool, age: Duration) {
        let Ok(poll) = usize::try_from(poll) else {
            return;
        };
        if probe_ms == 0 || poll >= COHORT_POLLS || off(Rule::Raise) {
            return;
        }
        let still_pending = {
            let mut cohorts = self.cohorts();
            let index = match cohorts.iter().position(|c| c.probe_ms == probe_ms) {
                Some(index) => index,
                None => {
                    if cohorts.len() == COHORTS {
                        cohorts.pop_front();
                    }
                    cohorts.push_back(Cohort {
                        probe_ms,
                        polls: Vec::new(),
                    });
                    cohorts.len() - 1
                }
            };
            let cohort = &mut cohorts[index];
            if cohort.polls.len() <= poll {
                cohort.polls.resize(poll + 1, CohortPoll::default());
            }
            let counts = &mut cohort.polls[poll];
            if done {
                counts.done = counts.done.saturating_add(1);
            } else {
                counts.pending = counts.pending.saturating_add(1);
            }
            counts.age_ms = millis(age);
            cohort
                .still_pending(poll)
                .map(|share| (share, cohort.before(poll)))
        };
        let Some((share, before)) = still_pending else {
            return;
        };
        if done || share < RAISE_SHARE * (1.0 - self.timing.quantile) {
            return;
        }
        let estimate = self.shared_estimate().await;
        let to = millis(self.wait_of(self.beyond((millis(age), share), before) / 1000.0));
        if to < estimate.ms * RAISE_LEAST {
            return;
        }
        // The step and streak stay: a raise says the quantile lies past an age, not how the tracker's
        // moves went, and a fresh full step is what kept jobs of a fixed 5 s circling 4.3-7.5 s (above).
        let raised = Estimate { ms: to, ..estimate };
        tracing::debug!(
            from_ms = estimate.ms.round(),
            to_ms = to.round(),
            probe_ms,
            poll,
            still_pending = share,
            "poll estimate raised: probed jobs still pending"
        );
        self.publish(raised).await;
    }

    /// Where the quantile lies, from a cohort's survival (age ms, share pending) at a poll and at the one
    /// before: where the straight line through them falls to 1 − `quantile`, at least the later age and
    /// at most twice it. A line that does not fall (no job done in between: jobs of one length are all
    /// pending until they are all done), or a probe with no poll before it, says only that the quantile
    /// is past the age. (A line from all pending at 0 misled: probes of 5 s jobs at 4.5 s, one in ten
    /// taken late enough to find its job done, drew a line that doubled the estimate.)
    fn beyond(&self, (age, share): (f64, f64), before: Option<(f64, f64)>) -> f64 {
        let Some((before_age, before_share)) = before else {
            return age;
        };
        let falls = (before_share - share) / (age - before_age);
        if !(falls.is_finite() && falls > 0.0) {
            return age;
        }
        (age + (share - (1.0 - self.timing.quantile)) / falls).clamp(age, 2.0 * age)
    }

    /// Makes `estimate` this process's and the fleet's.
    async fn publish(&self, estimate: Estimate) {
        *self.lock() = (estimate, Some(Instant::now()));
        bb2snyk_telemetry::metrics::poll_estimate(Duration::from_secs_f64(estimate.ms / 1000.0));
        if let Err(e) = self.store.set(KEY, estimate.text().as_bytes(), None).await {
            tracing::debug!(error = %e, "poll estimate kept in this process");
        }
    }

    /// The estimate in ms.
    async fn estimate(&self) -> f64 {
        self.shared_estimate().await.ms
    }

    /// This process's copy of the fleet's estimate, read afresh once a [`REFRESH`].
    async fn shared_estimate(&self) -> Estimate {
        let (estimate, read) = *self.lock();
        if read.is_some_and(|at| at.elapsed() < REFRESH) {
            return estimate;
        }
        let shared = self
            .store
            .get(KEY)
            .await
            .ok()
            .flatten()
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|text| Estimate::parse(&text));
        let estimate = shared.unwrap_or(estimate);
        *self.lock() = (estimate, Some(Instant::now()));
        bb2snyk_telemetry::metrics::poll_estimate(Duration::from_secs_f64(estimate.ms / 1000.0));
        estimate
    }

    fn clamp(&self, wait: Duration) -> Duration {
        wait.clamp(self.timing.floor, self.timing.max)
    }

    fn cohorts(&self) -> std::sync::MutexGuard<'_, VecDeque<Cohort>> {
        self.cohorts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn heard(&self) -> std::sync::MutexGuard<'_, Heard> {
        self.heard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Estimate, Option<Instant>)> {
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
mod tests;
