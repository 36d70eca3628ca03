//! Completion hints: listings that tell of many jobs at once. Snyk lists an org's targets by when they
//! were created, and a target is listed once its import has made projects, so one request (the org's
//! targets created since its oldest followed job) tells which of many followed jobs are done.
//!
//! A listing costs a request, as a poll does, so an org is listed once `hint_yield` of the jobs followed
//! there are expected done since its last listing (or most of them), by the ages at which jobs were seen
//! done ([`durations`]), scaled by what listings lately told of. Only jobs whose own next poll is more
//! than `worth` away count. A listed job is polled at once (a `hinted` poll): a completed one is recorded
//! as any poll records it, and its own poll then finds the record and asks nothing.
//!
//! While listings work, a job's own polls are only a safety net ([`crate::schedule`]). In a fleet each
//! importer follows and lists for the jobs it posted.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use bb2snyk_broker::Broker;
use bb2snyk_messages::{Body, IMPORTER_POLLS, ImportRepo, PollImport};
use bb2snyk_service::CancellationToken;
use bb2snyk_snyk::Client as Snyk;
use futures_util::StreamExt;

use crate::schedule::now_ms;
use crate::tuning::{TUNING, millis};
use durations::{Cdf, Durations};

mod durations;

/// The jobs this importer follows, by org, and the ages at which it has seen jobs done.
#[derive(Debug)]
pub struct Hints {
    least_yield: f64,
    state: Mutex<Followed>,
}

#[derive(Debug, Default)]
struct Followed {
    orgs: HashMap<String, Org>,
    count: usize,
    durations: Durations,
    /// Jobs listings were expected to tell of, and told of, lately: the durations seen early in a run
    /// are the short jobs' only, and expect too much.
    expected: f64,
    found: f64,
    /// When a listing last failed, and when one was last warned of (Unix ms).
    failed_ms: u64,
    warned_ms: u64,
}

#[derive(Debug)]
struct Org {
    /// By the target's display name, `workspace/slug`.
    jobs: HashMap<String, Job>,
    /// When the last listing of the org began (Unix ms; 0: never).
    listed_ms: u64,
    /// The least wait before its next listing, doubled by each listing that found nothing.
    interval: Duration,
}

impl Default for Org {
    fn default() -> Self {
        Self {
            jobs: HashMap::new(),
            listed_ms: 0,
            interval: TUNING.least_interval,
        }
    }
}

#[derive(Debug)]
struct Job {
    poll: PollImport,
    /// When the job's own next poll is due (Unix ms).
    due_ms: u64,
}

impl Job {
    /// Whether its own poll is not `overdue` at `now_ms`: an overdue one is followed by that poll now.
    fn live(&self, now_ms: u64) -> bool {
        self.due_ms.saturating_add(millis(TUNING.overdue)) >= now_ms
    }
}

/// An org to list, from when, and how many of its followed jobs it is expected to tell of.
#[derive(Debug, PartialEq)]
struct Listing {
    org: String,
    since_ms: u64,
    expected: f64,
    /// Whether the expectation leant on the prior: such a listing calibrates nothing.
    by_prior: bool,
}

impl Hints {
    /// Listings when `least_yield` jobs are expected done; none when it is 0.
    pub fn new(least_yield: u32) -> Self {
        Self {
            least_yield: f64::from(least_yield),
            state: Mutex::new(Followed::default()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.least_yield > 0.0
    }

    /// Follows `poll`'s job until it ends; `poll` is its next scheduled poll.
    pub fn follow(&self, poll: &PollImport) {
        if !self.enabled() {
            return;
        }
        let mut state = self.lock();
        let Followed { orgs, count, .. } = &mut *state;
        let org = orgs.entry(poll.import.org_id.to_string()).or_default();
        let name = display_name(&poll.import);
        if !org.jobs.contains_key(&name) {
            if *count >= TUNING.most_followed {
                return;
            }
            *count += 1;
        }
        let due_ms = poll.due_ms();
        let poll = poll.clone();
        org.jobs.insert(name, Job { poll, due_ms });
    }

    /// Stops following `import`'s job (it ended, or its own poll is the one that follows it now).
    pub fn forget(&self, import: &ImportRepo) {
        let mut state = self.lock();
        let Followed { orgs, count, .. } = &mut *state;
        if let Some(org) = orgs.get_mut(import.org_id.as_str()) {
            if org.jobs.remove(&display_name(import)).is_some() {
                *count -= 1;
            }
            if org.jobs.is_empty() {
                orgs.remove(import.org_id.as_str());
            }
        }
    }

    /// A job was seen done at `age` (since Snyk accepted it), by a hinted poll or by its own.
    pub fn seen_done(&self, age: Duration) {
        if self.enabled() {
            self.lock().durations.add(age);
        }
    }

    /// Whether listings work (none failed in the last `warn_every`): a job's own polls are then only a
    /// safety net.
    pub fn trusted(&self) -> bool {
        let failed_ms = self.lock().failed_ms;
        self.enabled()
            && (failed_ms == 0 || now_ms() >= failed_ms.saturating_add(millis(TUNING.warn_every)))
    }

    /// A listing failed at `now_ms`; true when it is time to warn of it again.
    fn failed(&self, now_ms: u64) -> bool {
        let mut state = self.lock();
        state.failed_ms = now_ms;
        let warn = now_ms >= state.warned_ms.saturating_add(millis(TUNING.warn_every));
        if warn {
            state.warned_ms = now_ms;
        }
        warn
    }

    /// Jobs followed now.
    pub fn followed(&self) -> usize {
        self.lock().count
    }

    /// The orgs worth listing at `now_ms`, each with the time to list from and the jobs it is expected to
    /// tell of, each marked listed.
    fn due(&self, now_ms: u64) -> Vec<Listing> {
        let mut state = self.lock();
        let by_prior = state.durations.total() < TUNING.least_seen;
        let calibration = if by_prior { 1.0 } else { calibration(&state) };
        let Followed {
            orgs,
            count,
            durations,
            ..
        } = &mut *state;
        let durations = durations.cdf();

        let mut due = Vec::new();
        for (id, org) in orgs.iter_mut() {
            // A job whose poll is long overdue is followed elsewhere or ended unseen: forgotten.
            let before = org.jobs.len();
            org.jobs
                .retain(|_, job| job.due_ms.saturating_add(millis(TUNING.stale)) >= now_ms);
            *count -= before - org.jobs.len();
            if now_ms < org.listed_ms.saturating_add(millis(org.interval)) {
                continue;
            }
            // Calibration scales only the yield's expectation: most of an org's jobs expected done is
            // worth a listing whatever listings told of lately (an org's last jobs set a run's end).
            let (done, worth) = expected_done(org, &durations, now_ms);
            let enough = done >= worth as f64 * TUNING.most_of_the_rest
                || done * calibration >= self.least_yield;
            if worth > 0 && enough {
                let oldest = org
                    .jobs
                    .values()
                    .filter(|job| job.live(now_ms))
                    .map(|job| job.poll.requested_at(now_ms))
                    .min();
                due.push(Listing {
                    org: id.clone(),
                    since_ms: oldest
                        .unwrap_or(now_ms)
                        .saturating_sub(millis(TUNING.clock_slack)),
                    expected: done,
                    by_prior,
                });
                org.listed_ms = now_ms;
            }
        }
        orgs.retain(|_, org| !org.jobs.is_empty());
        due
    }

    /// The hinted polls for the followed jobs of `org_id` among `names` (Snyk's new targets), no longer
    /// followed. A listing that found nothing doubles the org's interval, unless it was made by the prior,
    /// whose expectation already spreads over a second to a minute.
    fn take(&self, org_id: &str, names: &[String], by_prior: bool) -> Vec<PollImport> {
        let mut state = self.lock();
        let Followed { orgs, count, .. } = &mut *state;
        let Some(org) = orgs.get_mut(org_id) else {
            return Vec::new();
        };
        let polls: Vec<PollImport> = names
            .iter()
            .filter_map(|name| org.jobs.remove(name))
            .map(|job| PollImport {
                hinted: true,
                ..job.poll
            })
            .collect();
        org.interval = if !polls.is_empty() || by_prior {
            TUNING.least_interval
        } else {
            (org.interval * 2).min(TUNING.most_interval)
        };
        *count -= polls.len();
        if org.jobs.is_empty() {
            orgs.remove(org_id);
        }
        polls
    }

    /// Lists the orgs worth it and publishes a hinted poll for each followed job Snyk shows done, until
    /// `shutdown`. Failures are logged and left to the jobs' own polls.
    pub async fn run(&self, snyk: &Snyk, broker: &dyn Broker, shutdown: &CancellationToken) {
        if !self.enabled() {
            shutdown.cancelled().await;
            return;
        }
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(TUNING.tick) => {}
            }
            bb2snyk_telemetry::metrics::followed_jobs(self.lock().count);
            let due = self.due(now_ms());
            let listing = futures_util::stream::iter(due).for_each_concurrent(
                TUNING.listings_at_once,
                |listing| async move {
                    self.list(snyk, broker, listing).await;
                },
            );
            // A listing or a publish on a broken connection must not hold up the service's restart.
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = listing => {}
            }
        }
    }

    async fn list(&self, snyk: &Snyk, broker: &dyn Broker, listing: Listing) {
        let Some(polls) = self.ask(snyk, &listing).await else {
            return;
        };
        bb2snyk_telemetry::metrics::listed(!polls.is_empty());
        for poll in polls {
            let message = Body::PollImport(poll).to_message();
            if let Err(e) = broker.publish(IMPORTER_POLLS, &message).await {
                tracing::debug!(error = %e, "a hinted poll was not published; the job's own poll follows it");
            }
        }
    }

    /// The hinted polls Snyk's listing of the org's new targets tells of; none when it could not be listed.
    async fn ask(&self, snyk: &Snyk, listing: &Listing) -> Option<Vec<PollImport>> {
        let org = listing.org.as_str();
        let names = match snyk.new_targets(org, listing.since_ms).await {
            Ok(names) => names,
            // No budget for it now (imports and polls are using it): not a failure; tried again later.
            Err(e) if e.deferred().is_some() => {
                tracing::debug!(%org, "no budget for a listing now");
                return None;
            }
            Err(e) => {
                if self.failed(now_ms()) {
                    tracing::warn!(%org, error = %e, "could not list the org's new targets; its jobs are polled on their schedule (set import.hint_yield = 0 to stop listing)");
                } else {
                    tracing::debug!(%org, error = %e, "could not list the org's new targets");
                }
                return None;
            }
        };
        let polls = self.take(org, &names, listing.by_prior);
        if !listing.by_prior {
            self.calibrate(listing.expected, polls.len());
        }
        tracing::debug!(%org, listed = names.len(), hinted = polls.len(), expected = listing.expected, by_prior = listing.by_prior, "new targets listed");
        Some(polls)
    }

    /// A listing expected to tell of `expected` jobs told of `found`.
    fn calibrate(&self, expected: f64, found: usize) {
        let mut state = self.lock();
        state.expected = state.expected * TUNING.calibration_fade + expected;
        state.found = state.found * TUNING.calibration_fade + found as f64;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Followed> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How many of the jobs listings were expected to tell of they told of lately (at least a tenth, at most
/// twice): the expectation is scaled by it.
fn calibration(state: &Followed) -> f64 {
    ((state.found + 1.0) / (state.expected + 1.0)).clamp(0.1, 2.0)
}

/// How many of `org`'s followed jobs, of those whose own next poll is not near, are expected to have
/// finished since its last listing (or their request), by `durations`; and how many such jobs it has.
fn expected_done(org: &Org, durations: &Cdf, now_ms: u64) -> (f64, usize) {
    let worth: Vec<&Job> = org
        .jobs
        .values()
        .filter(|job| job.due_ms >= now_ms.saturating_add(millis(TUNING.worth)))
        .collect();
    let done = worth
        .iter()
        .map(|job| {
            let requested = job.poll.requested_at(now_ms);
            let age = now_ms.saturating_sub(requested);
            let before = org
                .listed_ms
                .max(requested)
                .saturating_sub(requested)
                .min(age);
            // A job the last listing did not tell of ran past `before`: of jobs that long, the share
            // done by now. Jobs longer than any seen weigh a little, as the time since grows.
            let (by_now, by_then) = (durations.share_within(age), durations.share_within(before));
            let unseen = TUNING.unseen * (age - before) as f64 / age.max(1) as f64;
            (by_now - by_then + unseen) / (1.0 - by_then + TUNING.unseen)
        })
        .sum();
    (done, worth.len())
}

/// `workspace/slug`, as Snyk names the target.
fn display_name(import: &ImportRepo) -> String {
    format!("{}/{}", import.target.owner, import.target.name)
}

#[cfg(test)]
mod tests;
