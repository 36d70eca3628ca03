//! Queue names and the retry policy, shared by both transports and by the ops tooling.

use std::time::Duration;

/// How deliveries are settled: how often, and after how long, a message that asked to be retried is tried
/// again, and the largest body a handler is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Waits before retry 1, 2, ...; the last repeats.
    pub tiers: Vec<Duration>,
    /// Tries in all, the first included, before the message is parked.
    pub max_attempts: u32,
    /// A larger body is parked unread.
    pub max_body: usize,
    /// Queues whose delayed follow-ups wait in [`DELAYS`] rather than in the retry tiers: a follow-up comes
    /// back after the longest delay not over the one asked, and its handler defers the rest (job polls,
    /// which must come back when a job is expected done, not at the next retry tier).
    pub delayed: Vec<String>,
}

/// The delay queues of a delayed queue: powers of two from a quarter second, so any wait is a few hops and
/// a message comes back less than 250 ms after it is due.
pub const DELAYS: [Duration; 11] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(16),
    Duration::from_secs(32),
    Duration::from_secs(64),
    Duration::from_secs(128),
    Duration::from_secs(256),
];

impl Default for RetryPolicy {
    /// 10 s, 1 min, 10 min, 1 h; 6 tries in all.
    fn default() -> Self {
        Self {
            tiers: [10, 60, 600, 3600]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            max_attempts: 6,
            max_body: 1024 * 1024,
            delayed: Vec::new(),
        }
    }
}

impl RetryPolicy {
    /// The tier index for a message that has been retried `attempt` times so far.
    pub fn tier(&self, attempt: u32) -> usize {
        (attempt as usize).min(self.tiers.len().saturating_sub(1))
    }

    /// The delay queue for a wait of `delay`: the longest not over it (the shortest when all are).
    pub fn delay_for(&self, delay: Duration) -> usize {
        DELAYS.iter().rposition(|d| *d <= delay).unwrap_or(0)
    }

    pub fn is_delayed(&self, queue: &str) -> bool {
        self.delayed.iter().any(|q| q == queue)
    }

    /// The shortest tier at least `delay` long (the longest if none is).
    pub fn tier_for_delay(&self, delay: Duration) -> usize {
        let mut best = self.tiers.len().saturating_sub(1);
        for (i, tier) in self.tiers.iter().enumerate() {
            if *tier >= delay && *tier < self.tiers[best] {
                best = i;
            }
        }
        best
    }
}

/// Every name under the prefix: `<prefix>.<queue>`, its retry tiers `<prefix>.<queue>.retry.<n>s`, its
/// parking queue `<prefix>.<queue>.parked`, and the `<prefix>.events` exchange.
#[derive(Debug, Clone)]
pub struct Topology {
    pub prefix: String,
    /// Short names of the work queues, e.g. `discoverer`, `org-creator`, `importer`.
    pub queues: Vec<String>,
    pub retry: RetryPolicy,
    /// Every queue goes away after this long unused: for tests and rehearsals, `None` in production.
    pub expires: Option<Duration>,
}

impl Topology {
    pub fn work(&self, queue: &str) -> String {
        format!("{}.{queue}", self.prefix)
    }

    pub fn retry_queue(&self, queue: &str, tier: usize) -> String {
        let secs = self
            .retry
            .tiers
            .get(tier)
            .map(Duration::as_secs)
            .unwrap_or(0);
        format!("{}.{queue}.retry.{secs}s", self.prefix)
    }

    pub fn delay_queue(&self, queue: &str, index: usize) -> String {
        let millis = DELAYS.get(index).map_or(0, Duration::as_millis);
        format!("{}.{queue}.delay.{millis}ms", self.prefix)
    }

    pub fn parked(&self, queue: &str) -> String {
        format!("{}.{queue}.parked", self.prefix)
    }

    pub fn events(&self) -> String {
        format!("{}.events", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_grow_then_stay_at_the_last() {
        let p = RetryPolicy::default();
        assert_eq!((p.tier(0), p.tier(1), p.tier(3), p.tier(9)), (0, 1, 3, 3));
        assert_eq!(p.tier_for_delay(Duration::from_secs(5)), 0);
        assert_eq!(p.tier_for_delay(Duration::from_secs(30)), 1);
        assert_eq!(p.tier_for_delay(Duration::from_secs(99_999)), 3);
    }

    #[test]
    fn names_sit_under_the_prefix() {
        let t = Topology {
            prefix: "bb2snyk".into(),
            queues: vec!["importer".into()],
            retry: RetryPolicy::default(),
            expires: None,
        };
        assert_eq!(t.work("importer"), "bb2snyk.importer");
        assert_eq!(t.retry_queue("importer", 1), "bb2snyk.importer.retry.60s");
        assert_eq!(t.parked("importer"), "bb2snyk.importer.parked");
    }
}
