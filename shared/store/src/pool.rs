//! Spending budgets: waiting for a slot and the retry rules of one call, for a single [`Budget`] and for a
//! [`Pool`] of several (one per Snyk token), which takes a slot from whichever member has one first.

use std::{
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use crate::{Budget, Next, Overdue, Retry, millis};

/// Tries of one call that meets 429s, 5xx or network failures before its error is returned.
const ATTEMPTS: u32 = 8;
/// The longest backoff between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A `Retry-After` longer than this is cut to it; the caller's own retry policy covers the rest.
const MAX_PAUSE: Duration = Duration::from_secs(300);
/// The longest single sleep, so a waiter notices a shortened pause or a freed slot soon enough.
const MAX_SLEEP: Duration = Duration::from_secs(5);

/// Budgets a call may be paid from, one per credential.
pub(crate) trait Lanes: Sync {
    fn count(&self) -> usize;
    fn lane(&self, index: usize) -> &Budget;
    fn live(&self, index: usize) -> bool;
    /// Where this call starts looking, so calls spread over the members.
    fn first(&self) -> usize;
    /// `index`'s credential was refused: true when it left the rotation and another member is left to try.
    fn retire(&self, index: usize) -> bool;
    fn max_hold(&self) -> Option<Duration>;
}

impl Lanes for Budget {
    fn count(&self) -> usize {
        1
    }
    fn lane(&self, _: usize) -> &Budget {
        self
    }
    fn live(&self, _: usize) -> bool {
        true
    }
    fn first(&self) -> usize {
        0
    }
    fn retire(&self, _: usize) -> bool {
        false
    }
    fn max_hold(&self) -> Option<Duration> {
        Budget::max_hold(self)
    }
}

/// Several budgets, one per credential of the same account (Snyk API tokens of one group): each call is
/// paid from a member with a slot free now, looking from a rotating start, so k tokens give k times one
/// token's rate. A member whose credential is refused leaves the rotation for `cooldown`, then is tried
/// again (a token rotated back in, a passing refusal). The last live member never leaves, however many
/// refusals arrive at once, so its refusals reach the caller.
#[derive(Debug)]
pub struct Pool {
    members: Vec<Budget>,
    /// When each member was refused, while it is out of the rotation; one lock, so two refusals at once
    /// cannot both see another member live and retire the last two.
    retired: Mutex<Vec<Option<Instant>>>,
    cooldown: Duration,
    next: AtomicUsize,
}

impl Pool {
    /// At least one member; a refused one comes back after `cooldown`.
    pub fn new(members: Vec<Budget>, cooldown: Duration) -> Self {
        assert!(!members.is_empty(), "a pool has at least one budget");
        Self {
            retired: Mutex::new(vec![None; members.len()]),
            cooldown,
            next: AtomicUsize::new(fastrand::usize(..members.len())),
            members,
        }
    }

    /// Members in the rotation now.
    pub fn live_count(&self) -> usize {
        let retired = self.retired();
        (0..self.members.len())
            .filter(|i| self.is_live(&retired, *i))
            .count()
    }

    fn retired(&self) -> std::sync::MutexGuard<'_, Vec<Option<Instant>>> {
        self.retired.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_live(&self, retired: &[Option<Instant>], index: usize) -> bool {
        retired[index].is_none_or(|at| at.elapsed() >= self.cooldown)
    }

    /// Runs an idempotent call, given the index of the member that pays for it (and whose credential it
    /// must be signed with). The rules of [`Budget::call`], and a refused credential moves it to another.
    pub async fn call<T, E, F, Fut>(&self, call: F) -> Result<T, E>
    where
        E: Retry + std::fmt::Display + From<Overdue>,
        F: FnMut(usize) -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        run(self, true, call).await
    }

    /// As [`Pool::call`] for a call that must not happen twice ([`Budget::call_write`]'s rules).
    pub async fn call_write<T, E, F, Fut>(&self, call: F) -> Result<T, E>
    where
        E: Retry + std::fmt::Display + From<Overdue>,
        F: FnMut(usize) -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        run(self, false, call).await
    }
}

impl Lanes for Pool {
    fn count(&self) -> usize {
        self.members.len()
    }
    fn lane(&self, index: usize) -> &Budget {
        &self.members[index]
    }
    fn live(&self, index: usize) -> bool {
        self.is_live(&self.retired(), index)
    }
    fn first(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % self.members.len()
    }
    fn retire(&self, index: usize) -> bool {
        let mut retired = self.retired();
        let others = (0..self.members.len())
            .filter(|i| *i != index && self.is_live(&retired, *i))
            .count();
        if others == 0 {
            return false;
        }
        retired[index] = Some(Instant::now());
        true
    }
    fn max_hold(&self) -> Option<Duration> {
        self.members[0].max_hold()
    }
}

/// Waits for a slot in any live member (in its writes' share too for a `write`), or answers [`Overdue`] at
/// once when the wait would pass `max_hold` in all. Returns the member that granted it.
pub(crate) async fn acquire<L: Lanes + ?Sized>(
    lanes: &L,
    max_hold: Option<Duration>,
    write: bool,
) -> Result<usize, Overdue> {
    let started = Instant::now();
    loop {
        let first = lanes.first();
        // No live member cannot happen (the last never retires); were it so, every member is tried.
        let any_live = (0..lanes.count()).any(|i| lanes.live(i));
        let mut soonest: Option<Duration> = None;
        for k in 0..lanes.count() {
            let index = (first + k) % lanes.count();
            if any_live && !lanes.live(index) {
                continue;
            }
            let wait = lanes.lane(index).try_take(write).await;
            if wait.is_zero() {
                lanes.lane(index).record_wait(started.elapsed());
                return Ok(index);
            }
            soonest = Some(soonest.map_or(wait, |s| s.min(wait)));
        }
        let soonest = soonest.unwrap_or(MAX_SLEEP);
        if max_hold.is_some_and(|max| started.elapsed().saturating_add(soonest) > max) {
            return Err(Overdue { wait: soonest });
        }
        let jitter = Duration::from_millis(fastrand::u64(0..=(millis(soonest) / 10).min(50)));
        let retry = soonest.min(MAX_SLEEP) + jitter;
        // A call that goes first (a read, or a write of a budget going first) and found no member free
        // comes back first: until it does, writes that yield wait for it.
        if !lanes.lane(first).yields(write) {
            for index in (0..lanes.count()).filter(|i| lanes.live(*i)) {
                lanes.lane(index).mark_read_waiting(retry).await;
            }
        }
        tokio::time::sleep(retry).await;
    }
}

/// One call under `lanes`: a slot per try, a pause of the paying member on 429, backoff on passing
/// failures, another member when a credential is refused, up to [`ATTEMPTS`] tries. A call that is not
/// `idempotent` is not sent again after a failure that may have happened.
pub(crate) async fn run<L, T, E, F, Fut>(lanes: &L, idempotent: bool, mut call: F) -> Result<T, E>
where
    L: Lanes + ?Sized,
    E: Retry + std::fmt::Display + From<Overdue>,
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut attempt = 0;
    loop {
        // What must not happen twice is what creates something: a write, within the writes' share.
        let index = acquire(lanes, lanes.max_hold(), !idempotent).await?;
        let error = match call(index).await {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        attempt += 1;
        match error.next() {
            _ if attempt >= ATTEMPTS => return Err(error),
            Next::Fail => return Err(error),
            Next::Refused if lanes.retire(index) => {
                // Refused before anything happened, so even a write may go to another member.
                tracing::error!(%error, "the credential was refused; it leaves the rotation and the call goes to another");
            }
            Next::Refused => return Err(error),
            _ if !idempotent && error.may_have_happened() => return Err(error),
            Next::Pause(retry_after) => {
                let pause = retry_after
                    .map(|d| d.min(MAX_PAUSE))
                    .unwrap_or_else(|| bb2snyk_http::backoff(attempt - 1, MAX_BACKOFF));
                tracing::warn!(%error, ?pause, "rate limited; pausing every replica");
                lanes.lane(index).pause(pause).await;
            }
            Next::Backoff => {
                let wait = bb2snyk_http::backoff(attempt - 1, MAX_BACKOFF);
                tracing::warn!(%error, ?wait, "call failed; retrying");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BudgetConfig;

    fn pool(members: usize) -> Pool {
        let budget = |n: usize| {
            Budget::new(
                None,
                BudgetConfig {
                    api: "test",
                    credential: format!("token-{n}"),
                    limit: 10,
                    window: Duration::from_secs(60),
                },
            )
        };
        Pool::new((0..members).map(budget).collect(), Duration::from_secs(600))
    }

    /// Refusals of every member at the same instant, from as many threads: one member always stays.
    #[test]
    fn refusals_at_once_on_every_member_leave_one_live() {
        for _ in 0..200 {
            let pool = pool(3);
            let barrier = std::sync::Barrier::new(3);
            let retired: usize = std::thread::scope(|s| {
                let handles: Vec<_> = (0..3)
                    .map(|i| {
                        let (pool, barrier) = (&pool, &barrier);
                        s.spawn(move || {
                            barrier.wait();
                            usize::from(pool.retire(i))
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("no panic"))
                    .sum()
            });
            assert_eq!(retired, 2);
            assert_eq!(pool.live_count(), 1);
        }
    }
}
