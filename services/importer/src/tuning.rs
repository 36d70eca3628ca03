//! The importer's polling constants, one line each. Each rule they tune earned its place in the
//! ablation (BENCHMARKS.md); the values are the ones the benchmark's rows were measured with.

use std::time::Duration;

/// The constants of listings ([`crate::hints`]) and of the polls that pass by the ledger.
#[derive(Debug)]
pub struct Tuning {
    /// How often the importer looks for orgs worth listing.
    pub tick: Duration,
    /// A job whose own next poll comes sooner than this does not count toward a listing.
    pub worth: Duration,
    /// Jobs an importer follows at most (beyond, they are left to their own polls): a bound on memory.
    pub most_followed: usize,
    /// Listings in flight at once.
    pub listings_at_once: usize,
    /// How far before an org's oldest followed job a listing starts: Snyk's clock may be behind ours.
    pub clock_slack: Duration,
    /// The least time between two listings of one org, and the most it doubles to while they find nothing.
    pub least_interval: Duration,
    pub most_interval: Duration,
    /// Jobs seen done before their durations alone are trusted; until then a prior fills in the rest.
    pub least_seen: f64,
    /// The prior: jobs of this long to that long, evenly on a log scale.
    pub prior_shortest: Duration,
    pub prior_longest: Duration,
    /// A followed job whose own poll is this overdue is forgotten (its poll follows it now).
    pub stale: Duration,
    /// A followed job whose own poll is this overdue no longer sets where a listing starts.
    pub overdue: Duration,
    /// The share of an org's followed jobs expected done that is worth a listing whatever the yield.
    pub most_of_the_rest: f64,
    /// Each listing fades the earlier ones' expected and found counts by this (about the last fifty count).
    pub calibration_fade: f64,
    /// The weight of jobs longer than any seen, in the share done of a job that ran past the rest.
    pub unseen: f64,
    /// How long after a failed listing hints are not trusted, and a failure is warned of once.
    pub warn_every: Duration,
    /// Each job seen done fades the earlier ones' weight by this (about the last thousand count).
    pub duration_fade: f64,
    /// The first bucket of the durations' histogram (ms), and the ratio from one bucket to the next.
    pub first_bucket_ms: f64,
    pub bucket_ratio: f64,
    /// Jobs an importer follows from which a first poll leaves a job to listings (a safety net): with
    /// fewer, a listing tells of few at once, and a job that fails (which no listing tells of) would wait.
    pub many_followed: usize,
    /// With hints, the longest a poll waits in a delay queue before it looks at the ledger again.
    pub pass_every: Duration,
}

pub const TUNING: Tuning = Tuning {
    tick: Duration::from_millis(250),
    worth: Duration::from_secs(2),
    most_followed: 20_000,
    listings_at_once: 4,
    clock_slack: Duration::from_secs(120),
    least_interval: Duration::from_secs(1),
    most_interval: Duration::from_secs(16),
    least_seen: 20.0,
    prior_shortest: Duration::from_secs(1),
    prior_longest: Duration::from_secs(60),
    stale: Duration::from_secs(600),
    overdue: Duration::from_secs(2),
    most_of_the_rest: 0.75,
    calibration_fade: 0.98,
    unseen: 0.02,
    warn_every: Duration::from_secs(60),
    duration_fade: 0.999,
    first_bucket_ms: 250.0,
    bucket_ratio: 1.15,
    many_followed: 160,
    pass_every: Duration::from_secs(8),
};

/// `d` in whole ms.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
