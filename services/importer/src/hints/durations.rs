//! The ages at which jobs were seen done: a histogram on a log scale in which recent outcomes weigh more,
//! so it follows jobs that change, and a prior fills in until enough were seen.

use std::time::Duration;

use crate::tuning::{TUNING, millis};

/// Buckets of the histogram (an array's length, so a constant): bucket `i` holds ages up to
/// `first_bucket_ms × bucket_ratio^(i+1)`, the last all older ones (about 40 minutes on).
const BUCKETS: usize = 64;

#[derive(Debug)]
pub(super) struct Durations {
    counts: [f64; BUCKETS],
}

impl Default for Durations {
    fn default() -> Self {
        Self {
            counts: [0.0; BUCKETS],
        }
    }
}

impl Durations {
    pub(super) fn add(&mut self, age: Duration) {
        for count in &mut self.counts {
            *count *= TUNING.duration_fade;
        }
        self.counts[bucket(millis(age))] += 1.0;
    }

    pub(super) fn total(&self) -> f64 {
        self.counts.iter().sum()
    }

    /// The outcomes' distribution, the prior filling in for those short of `least_seen`.
    pub(super) fn cdf(&self) -> Cdf {
        let mut counts = self.counts;
        let missing = TUNING.least_seen - self.total();
        if missing > 0.0 {
            let prior =
                bucket(millis(TUNING.prior_shortest))..=bucket(millis(TUNING.prior_longest));
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
pub(super) struct Cdf {
    below: [f64; BUCKETS + 1],
}

impl Cdf {
    /// The share of jobs done within `age_ms`, spread evenly within a bucket.
    pub(super) fn share_within(&self, age_ms: u64) -> f64 {
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

/// The bucket of `age_ms`.
fn bucket(age_ms: u64) -> usize {
    let ratio = age_ms as f64 / TUNING.first_bucket_ms;
    if ratio <= 1.0 {
        return 0;
    }
    // Non-negative and finite here; the cast floors it.
    (ratio.ln() / TUNING.bucket_ratio.ln())
        .floor()
        .min((BUCKETS - 1) as f64) as usize
}

/// The lower edge (ms) of bucket `i`; bucket 0 starts at 0.
fn edge(i: usize) -> f64 {
    if i == 0 {
        0.0
    } else {
        TUNING.first_bucket_ms
            * TUNING
                .bucket_ratio
                .powi(i32::try_from(i).unwrap_or(i32::MAX))
    }
}
