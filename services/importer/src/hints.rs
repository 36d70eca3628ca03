// Over 400 lines until the ablation of issue 30 measures which of its rules pay; the polling rewrite
// that follows splits what stays into two modules of under 800 lines together.
//! Completion hints: listings that tell of many jobs at once. Snyk lists an org's targets by when they
//! were created, and a target is listed once its import has made projects, so one request (the org's
//! targets created since its oldest followed job) tells which of many followed jobs are done.
//!
//! A listing costs a request, as a poll does, so an org is listed once `hint_yield` of the jobs this
//! importer follows there are expected done since its last listing, by the ages at which it has seen jobs
//! done (a prior of jobs of a second to a minute until it has seen twenty), scaled by what listings lately
//! told of. Only jobs whose own next poll is more than [`WORTH`] away count.
//!
//! A listed job is polled at once (a `hinted` poll): a completed job is recorded as any poll would record
//! it, and its own scheduled poll then finds the record and makes no request; anything else is left to
//! the job's own polls. In a fleet each importer follows the jobs it posted and shares its listings
//! through the store ([`shared`]), so the yield is the fleet's: jobs expected done times the importers.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use bb2snyk_broker::Broker;
use bb2snyk_messages::{Body, IMPORTER_POLLS, ImportRepo, PollImport};
use bb2snyk_service::CancellationToken;
use bb2snyk_snyk::Client as Snyk;
use bb2snyk_store::Store;
use futures_util::StreamExt;

use crate::ablate::{Rule, off};
use crate::schedule::now_ms;
use shared::SharedListing;

mod shared;

/// How often the importer looks for orgs worth listing.
const TICK: Duration = Duration::from_millis(250);
/// A job whose own next poll comes sooner than this gains too little from a listing to count for one.
const WORTH: Duration = Duration::from_secs(2);
/// Jobs an importer follows at most (beyond, jobs are left to their own polls): a bound on memory.
const MOST_FOLLOWED: usize = 20_000;
/// Listings in flight at once.
const LISTINGS_AT_ONCE: usize = 4;
/// Listings reach back this far before an org's oldest followed job: Snyk's clock may be behind ours.
const CLOCK_SLACK: Duration = Duration::from_secs(120);
/// The least time between two listings of one org, and the most it grows to while they tell of nothing.
const LEAST_INTERVAL: Duration = Duration::from_secs(1);
const MOST_INTERVAL: Duration = Duration::from_secs(16);
/// Outcomes the durations need before they alone are trusted to expect anything. Until then a prior fills
/// in for the rest: jobs of [`PRIOR_SHORTEST`] to [`PRIOR_LONGEST`], evenly on a log scale (Snyk's jobs
/// take seconds to minutes), so orgs are listed from a run's first seconds. Without it no org was listed
/// before twenty jobs were seen done, and where first polls are safety nets, the jobs of a tenant of a
/// few dozen repositories would each have waited a minute.
const LEAST_SEEN: f64 = 20.0;
const PRIOR_SHORTEST: Duration = Duration::from_secs(1);
const PRIOR_LONGEST: Duration = Duration::from_secs(60);
/// A followed job whose own poll is this overdue is forgotten: that poll follows it now (in a fleet, often
/// another importer's), or its message was lost. Not sooner: forgotten 5 s past due, jobs of 1-60 s
/// polled 1,004 times pending in a run, not 238 (284 s, 83 % of the bound, against 270 s); with 4
/// importers and jobs of 5 s it had helped (245 s to 227 s). A hinted poll looks in the ledger first, so
/// a job another importer recorded costs no request.
const STALE: Duration = Duration::from_secs(600);
/// A followed job whose own poll is this overdue no longer counts among the jobs followed, as the oldest,
/// nor for where a listing starts: its poll follows it now, and in a fleet that is often another
/// importer's, which records it unseen by this one. Counted until [`STALE`], with 4 importers and jobs of
/// 5 s, such jobs held first polls back as safety nets (never alike, the oldest 10 min old) and the
/// fleet saw jobs done 2.1 s late at p50. Still followed, so a listing that names one hints it.
const OVERDUE: Duration = Duration::from_secs(2);
/// The share of an org's jobs expected done that is worth a listing, however many they are and whatever
/// listings told of lately.
const MOST_OF_THE_REST: f64 = 0.75;
/// Each listing fades the earlier ones' expectations and findings by this: about the last fifty count.
const CALIBRATION_FADE: f64 = 0.98;
/// The weight of jobs longer than any seen, in the share expected done of a job that ran past the rest.
const UNSEEN: f64 = 0.02;
/// How many times the quickest tenth of jobs the slowest tenth may take at most for jobs to count as alike.
const SPREAD: f64 = 3.0;
/// How often an org with jobs worth a listing has its shared listing read, when none is due of its own.
const HEAR_EVERY: Duration = Duration::from_secs(1);
/// How long a failing listing waits before it is logged again as a warning.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The jobs this importer follows, by org, and the ages at which it has seen jobs done.
#[derive(Debug)]
pub struct Hints {
    least_yield: f64,
    /// Where listings are shared with the rest of the fleet; none for an importer alone.
    shared: Option<Store>,
    state: Mutex<Followed>,
}

#[derive(Debug, Default)]
struct Followed {
    orgs: HashMap<String, Org>,
    count: usize,
    durations: Durations,
    /// Jobs listings were expected to tell of, and told of, lately (each listing fades them by
    /// [`CALIBRATION_FADE`]): the durations seen are those of jobs already done, which are the shorter
    /// ones until the longest have ended, and expect too much early in a run.
    expected: f64,
    found: f64,
    /// When the oldest followed job was requested, of those whose own poll is not [`OVERDUE`], as of the
    /// last look for orgs to list (Unix ms; 0 for none): a job that old and not seen done runs at least
    /// that long.
    oldest_ms: u64,
    /// When the oldest job was requested of those followed since the importer last followed none (Unix
    /// ms): how long jobs have been followed without a break, so how old a followed job could be.
    following_since_ms: u64,
    /// When a listing last failed, and when one was last logged as a warning (Unix ms).
    failed_ms: u64,
    warned_ms: u64,
    /// The importers of the fleet sharing listings, as last counted (0 before the first count: alone).
    importers: u32,
}

#[derive(Debug)]
struct Org {
    /// By the target's display name, `workspace/slug`.
    jobs: HashMap<String, Job>,
    /// When the last listing of the org began, this importer's or one it heard of (Unix ms; 0 for never).
    listed_ms: u64,
    /// When its shared listing was last read (Unix ms).
    heard_ms: u64,
    /// The least wait before its next listing: doubled by each listing that told of nothing (a job
    /// running longer than any seen would otherwise have its org listed every second).
    interval: Duration,
}

/// An org to list, from when, and how many of its followed jobs it is expected to tell of.
#[derive(Debug, PartialEq)]
struct Listing {
    org: String,
    since_ms: u64,
    expected: f64,
    /// Whether to ask Snyk if no shared listing newer than `previous_ms` tells of the jobs; if not,
    /// the shared listing is only read.
    ask: bool,
    /// When the org was last listed before (Unix ms): a shared listing from then or before is heard.
    previous_ms: u64,
    /// When it was decided on: the org's last listing from then on, and its shared listing's time, so
    /// that an importer does not hear its own listing as another's.
    at_ms: u64,
    /// Whether the expectation leant on the prior: what such a listing tells of does not calibrate the
    /// outcomes' expectations (one fruitless listing in a run's first seconds scaled them to a tenth).
    by_prior: bool,
}

impl Default for Org {
    fn default() -> Self {
        Self {
            jobs: HashMap::new(),
            listed_ms: 0,
            heard_ms: 0,
            interval: LEAST_INTERVAL,
        }
    }
}

#[derive(Debug)]
struct Job {
    poll: PollImport,
    /// When the job's own next poll is due (Unix ms).
    due_ms: u64,
}

impl Followed {
    fn live(&self, now_ms: u64) -> usize {
        let jobs = self.orgs.values().flat_map(|org| org.jobs.values());
        jobs.filter(|job| job.live(now_ms)).count()
    }

    /// The importers sharing listings (at least this one).
    fn importers(&self) -> u32 {
        self.importers.max(1)
    }
}

impl Job {
    /// Whether its own poll is not [`OVERDUE`] at `now_ms`.
    fn live(&self, now_ms: u64) -> bool {
        self.due_ms.saturating_add(millis(OVERDUE)) >= now_ms
    }
}

impl Hints {
    /// Listings when `least_yield` jobs are expected done; none when it is 0.
    pub fn new(least_yield: u32) -> Self {
        Self {
            least_yield: f64::from(least_yield),
            shared: None,
            state: Mutex::new(Followed::default()),
        }
    }

    /// Shares listings with the importers on `store`, and reads theirs.
    pub fn shared_through(self, store: Store) -> Self {
        Self {
            shared: Some(store),
            ..self
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
        if state.count == 0 {
            state.following_since_ms = poll.requested_at(now_ms());
        }
        let Followed { orgs, count, .. } = &mut *state;
        let org = orgs.entry(poll.import.org_id.to_string()).or_default();
        let name = display_name(&poll.import);
        if !org.jobs.contains_key(&name) {
            if *count >= MOST_FOLLOWED {
                return;
            }
            *count += 1;
        }
        org.jobs.insert(
            name,
            Job {
                poll: poll.clone(),
                due_ms: poll.due_ms(),
            },
        );
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

    /// Whether listings work (none failed in the last minute). A pending job's own next poll is then
    /// only a safety net, at the longest wait: a job whose own poll is that far off is worth listing its
    /// org for, and a hint tells of its end. Polled again as they aged (at 1.5 times their age), jobs of
    /// up to a minute found pending early in a run cost five polls each. (Not whether listings tell of
    /// what was expected: early in a run the ages seen are the short jobs' only, and expect far too much.)
    pub fn trusted(&self) -> bool {
        let state = self.lock();
        self.enabled()
            && (state.failed_ms == 0
                || now_ms() >= state.failed_ms.saturating_add(millis(WARN_EVERY)))
    }

    /// A listing failed at `now_ms`; true when it is time to say so as a warning again.
    fn failed(&self, now_ms: u64) -> bool {
        let mut state = self.lock();
        state.failed_ms = now_ms;
        let warn = now_ms >= state.warned_ms.saturating_add(millis(WARN_EVERY));
        if warn {
            state.warned_ms = now_ms;
        }
        warn
    }

    /// Whether jobs run for about one time (the slowest tenth of those seen, and the oldest followed, less
    /// than three times as long as the quickest tenth seen), on enough outcomes: then a first poll at the
    /// estimate finds most jobs done. Not while too few were seen: assumed alike early in a run, jobs of a
    /// second to a minute were polled at the 5 s prior and at each step of the estimate's climb, 500 polls
    /// that found them pending. The oldest followed job counts because the ages seen early in a run are
    /// those of jobs already done: half a minute in, jobs of 1-60 s seen done at 9 to 26 s looked alike,
    /// and 257 first polls at 40 s found theirs pending. It tells only once jobs have been followed for
    /// longer than three times the quickest tenth: before, no followed job can be older, however long
    /// jobs run (40 s into a run of jobs of 1-60 s, whose quickest tenth is seen at 12-19 s that early,
    /// no followed job could be older than 36 s; 267 first polls at 30 s found theirs pending).
    pub fn alike(&self) -> bool {
        let state = self.lock();
        if !self.enabled() || state.durations.total() < LEAST_SEEN || off(Rule::Alike) {
            return false;
        }
        let cdf = state.durations.cdf();
        let age_of = |ms: u64| match ms {
            0 => 0.0,
            ms => now_ms().saturating_sub(ms) as f64,
        };
        let (oldest, following) = (age_of(state.oldest_ms), age_of(state.following_since_ms));
        match (cdf.age_at(0.1), cdf.age_at(0.9)) {
            (Some(quick), Some(slow)) => {
                slow.max(oldest) < quick * SPREAD
                    && (state.count == 0 || following >= quick * SPREAD)
            }
            _ => false,
        }
    }

    /// Jobs followed now.
    pub fn followed(&self) -> usize {
        self.lock().count
    }

    /// Jobs followed at `now_ms` whose own poll is not [`OVERDUE`].
    pub fn live(&self, now_ms: u64) -> usize {
        self.lock().live(now_ms)
    }

    /// About how many such jobs the fleet follows, whose listings this importer hears: its own times
    /// the importers (each takes about as many import requests as the others).
    pub fn live_in_fleet(&self, now_ms: u64) -> usize {
        let state = self.lock();
        let importers = usize::try_from(state.importers()).unwrap_or(usize::MAX);
        state.live(now_ms).saturating_mul(importers)
    }

    /// The orgs worth listing at `now_ms`, each with the time to list from and the jobs it is expected to
    /// tell of, each marked listed; in a fleet, also the orgs whose shared listing is worth reading.
    fn due(&self, now_ms: u64) -> Vec<Listing> {
        let mut state = self.lock();
        let by_prior = state.durations.total() < LEAST_SEEN;
        let calibration = if by_prior { 1.0 } else { calibration(&state) };
        // The fleet's jobs in the org are expected done about as this importer's times the importers:
        // the yield is the listing's, for all who hear it. Without it, with 4 importers and jobs of 1-60
        // s, an org was listed once one importer's quarter of its jobs made the yield, and jobs were seen
        // 15.6 s late at p50 (5.5 s with one importer).
        let fleet = f64::from(state.importers());
        let Followed {
            orgs,
            count,
            durations,
            ..
        } = &mut *state;
        let durations = durations.cdf();

        let mut due = Vec::new();
        for (id, org) in orgs.iter_mut() {
            // A job whose poll is long overdue is followed elsewhere now (its message went to another
            // importer) or has ended unseen: forgotten, so no listing is spent on it.
            let before = org.jobs.len();
            org.jobs
                .retain(|_, job| job.due_ms.saturating_add(millis(STALE)) >= now_ms);
            *count -= before - org.jobs.len();
            let listable = now_ms >= org.listed_ms.saturating_add(millis(org.interval));
            let hearable =
                self.shared.is_some() && now_ms >= org.heard_ms.saturating_add(millis(HEAR_EVERY));
            if !listable && !hearable {
                continue;
            }
            // An org is listed once the yield's worth of its jobs are expected done, or most of them
            // (an org with fewer jobs left than the yield: its last jobs otherwise waited for their own
            // polls, and the last org's set a run's end). Calibration scales only the yield's
            // expectation: a lone job a minute old is done whatever the listings told of lately, and
            // early in a run, when the ages seen are the short jobs' only, one listing that told of 1
            // job in 45 scaled expectations to a tenth, and no org of 100 jobs was listed for a minute.
            let (done, worth) = expected_done(org, &durations, now_ms);
            let enough = done >= worth as f64 * MOST_OF_THE_REST
                || done * calibration * fleet >= self.least_yield;
            let ask = listable && enough;
            if worth > 0 && (ask || hearable) {
                let oldest = org
                    .jobs
                    .values()
                    .filter(|job| job.live(now_ms))
                    .map(|job| job.poll.requested_at(now_ms))
                    .min();
                due.push(Listing {
                    org: id.clone(),
                    since_ms: oldest.unwrap_or(now_ms).saturating_sub(millis(CLOCK_SLACK)),
                    expected: done,
                    ask,
                    previous_ms: org.listed_ms,
                    at_ms: now_ms,
                    by_prior,
                });
                org.heard_ms = now_ms;
                if ask {
                    org.listed_ms = now_ms;
                }
            }
        }
        orgs.retain(|_, org| !org.jobs.is_empty());
        state.oldest_ms = state
            .orgs
            .values()
            .flat_map(|org| org.jobs.values())
            .filter(|job| job.live(now_ms))
            .map(|job| job.poll.requested_at(now_ms))
            .min()
            .unwrap_or(0);
        due
    }

    /// The hinted polls for the followed jobs of `org` among `names` (Snyk's new targets); they are no
    /// longer followed. A fruitless listing doubles the org's interval, unless it was made by the prior,
    /// whose expectation already spreads over a second to a minute: doubled, the listings of a tenant of
    /// 200 repositories with jobs of 5 s came at 2, 4 and 8 s, and saw the jobs 2.8 s late at p50.
    fn take(&self, org_id: &str, names: &[String], by_prior: bool) -> Vec<PollImport> {
        self.take_listed(org_id, names, by_prior, None)
    }

    /// As [`Self::take`], for a listing another importer made at `heard_at_ms` (when given): the org's
    /// jobs are expected done since then, and the interval moves only when it told of some (this
    /// importer's expectation did not ask for it).
    fn take_listed(
        &self,
        org_id: &str,
        names: &[String],
        by_prior: bool,
        heard_at_ms: Option<u64>,
    ) -> Vec<PollImport> {
        let mut state = self.lock();
        let Followed { orgs, count, .. } = &mut *state;
        let Some(org) = orgs.get_mut(org_id) else {
            return Vec::new();
        };
        if let Some(at_ms) = heard_at_ms {
            org.listed_ms = at_ms;
        }
        let polls: Vec<PollImport> = names
            .iter()
            .filter_map(|name| org.jobs.remove(name))
            .map(|job| PollImport {
                hinted: true,
                ..job.poll
            })
            .collect();
        org.interval = if !polls.is_empty() {
            LEAST_INTERVAL
        } else if heard_at_ms.is_some() {
            org.interval
        } else if by_prior {
            LEAST_INTERVAL
        } else {
            (org.interval * 2).min(MOST_INTERVAL)
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
        let name = format!("{:016x}", fastrand::u64(..));
        let mut present_ms = 0;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(TICK) => {}
            }
            if let Some(store) = &self.shared
                && now_ms() >= present_ms + millis(shared::PRESENT_EVERY)
            {
                present_ms = now_ms();
                if !off(Rule::FleetCount) {
                    let importers = shared::importers(store, &name, present_ms).await;
                    self.lock().importers = importers;
                }
            }
            bb2snyk_telemetry::metrics::followed_jobs(self.lock().count);
            let due = self.due(now_ms());
            let listing = futures_util::stream::iter(due).for_each_concurrent(
                LISTINGS_AT_ONCE,
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
        let (source, polls) = match self.heard(&listing).await {
            Some(polls) => ("heard", polls),
            None if listing.ask => match self.ask(snyk, &listing).await {
                Some(polls) => ("asked", polls),
                None => return,
            },
            None => return,
        };
        bb2snyk_telemetry::metrics::listed(source, !polls.is_empty());
        for poll in polls {
            let message = Body::PollImport(poll).to_message();
            if let Err(e) = broker.publish(IMPORTER_POLLS, &message).await {
                tracing::debug!(error = %e, "a hinted poll was not published; the job's own poll follows it");
            }
        }
    }

    /// The hinted polls a listing another importer shared tells of, when it is newer than this one's
    /// last look at the org and reaches back as far as its jobs, give or take half the clock slack.
    async fn heard(&self, listing: &Listing) -> Option<Vec<PollImport>> {
        let store = self.shared.as_ref()?;
        let org = listing.org.as_str();
        let shared = SharedListing::read(store, org).await?;
        let covers = shared.since_ms <= listing.since_ms.saturating_add(millis(CLOCK_SLACK) / 2);
        if shared.at_ms <= listing.previous_ms || !covers {
            return None;
        }
        let polls = self.take_listed(org, &shared.names, true, Some(shared.at_ms));
        tracing::debug!(%org, listed = shared.names.len(), hinted = polls.len(), "a shared listing heard");
        Some(polls)
    }

    /// The hinted polls Snyk's listing of the org's new targets tells of (shared with the fleet); none
    /// when it could not be listed.
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
        tracing::debug!(%org, listed = names.len(), hinted = polls.len(), expected = listing.expected, by_prior = listing.by_prior, calibration = calibration(&self.lock()), "new targets listed");
        if let Some(store) = &self.shared {
            let (at_ms, since_ms) = (listing.at_ms, listing.since_ms);
            SharedListing {
                at_ms,
                since_ms,
                names,
            }
            .share(store, org)
            .await;
        }
        Some(polls)
    }

    /// A listing expected to tell of `expected` jobs told of `found`.
    fn calibrate(&self, expected: f64, found: usize) {
        let mut state = self.lock();
        state.expected = state.expected * CALIBRATION_FADE + expected;
        state.found = state.found * CALIBRATION_FADE + found as f64;
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
/// finished since its last listing (or their request), by `durations`.
/// Also how many such jobs it has.
fn expected_done(org: &Org, durations: &Cdf, now_ms: u64) -> (f64, usize) {
    let worth: Vec<&Job> = org
        .jobs
        .values()
        .filter(|job| job.due_ms >= now_ms.saturating_add(millis(WORTH)))
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
            let unseen = UNSEEN * (age - before) as f64 / age.max(1) as f64;
            (by_now - by_then + unseen) / (1.0 - by_then + UNSEEN)
        })
        .sum();
    (done, worth.len())
}

/// `workspace/slug`, as Snyk names the target.
fn display_name(import: &ImportRepo) -> String {
    format!("{}/{}", import.target.owner, import.target.name)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The ages (ms) at which jobs were seen done: a histogram on a log scale, recent outcomes weighing more
/// (each new one fades the others by [`FADE`]), so it follows jobs that change.
#[derive(Debug)]
struct Durations {
    counts: [f64; BUCKETS],
}

/// Buckets of the histogram; bucket `i` holds ages up to `FIRST_MS × RATIO^(i+1)` (the last, all older).
const BUCKETS: usize = 64;
const FIRST_MS: f64 = 250.0;
const RATIO: f64 = 1.15;
/// Each outcome fades the earlier ones by this: about the last thousand count.
const FADE: f64 = 0.999;

impl Default for Durations {
    fn default() -> Self {
        Self {
            counts: [0.0; BUCKETS],
        }
    }
}

impl Durations {
    fn add(&mut self, age: Duration) {
        for count in &mut self.counts {
            *count *= FADE;
        }
        self.counts[bucket(millis(age))] += 1.0;
    }

    fn total(&self) -> f64 {
        self.counts.iter().sum()
    }

    /// The outcomes' distribution, the prior filling in for those short of [`LEAST_SEEN`].
    fn cdf(&self) -> Cdf {
        let mut counts = self.counts;
        let missing = LEAST_SEEN - self.total();
        if missing > 0.0 {
            let prior = bucket(millis(PRIOR_SHORTEST))..=bucket(millis(PRIOR_LONGEST));
            let each = missing / prior.clone().count() as f64;
            for count in &mut counts[prior] {
                *count += each;
            }
        }
        let mut below = [0.0; BUCKETS + 1];
        for (i, count) in counts.iter().enumerate() {
            below[i + 1] = below[i] + count;
        }
        Cdf { below }
    }
}

/// The durations summed bucket by bucket: `below[i]` is the weight of the buckets before `i`.
#[derive(Debug)]
struct Cdf {
    below: [f64; BUCKETS + 1],
}

impl Cdf {
    /// The share of jobs done within `age_ms`, spread evenly within a bucket.
    fn share_within(&self, age_ms: u64) -> f64 {
        let total = self.below[BUCKETS];
        if total <= 0.0 {
            return 0.0;
        }
        let i = bucket(age_ms);
        let (low, high) = (edge(i), edge(i + 1));
        let part = ((age_ms as f64 - low) / (high - low)).clamp(0.0, 1.0);
        (self.below[i] + (self.below[i + 1] - self.below[i]) * part) / total
    }
}

impl Cdf {
    /// The age (ms) by which a `share` of jobs were done: the upper edge of the bucket it falls in.
    fn age_at(&self, share: f64) -> Option<f64> {
        let total = self.below[BUCKETS];
        (1..=BUCKETS)
            .find(|&i| self.below[i] >= share * total && total > 0.0)
            .map(edge)
    }
}

/// The bucket of `age_ms`.
fn bucket(age_ms: u64) -> usize {
    let ratio = age_ms as f64 / FIRST_MS;
    if ratio <= 1.0 {
        return 0;
    }
    // Non-negative and finite here; the cast floors it.
    (ratio.ln() / RATIO.ln()).floor().min((BUCKETS - 1) as f64) as usize
}

/// The lower edge (ms) of bucket `i`; bucket 0 starts at 0.
fn edge(i: usize) -> f64 {
    if i == 0 {
        0.0
    } else {
        FIRST_MS * RATIO.powi(i32::try_from(i).unwrap_or(i32::MAX))
    }
}

#[cfg(test)]
mod tests;
