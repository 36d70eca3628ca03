//! Keeps the importer's queue from growing toward the whole tenant: a page of repositories is fetched only
//! when the queue has room for it, so queue depth, broker memory and Redis keys stay flat however many
//! repositories there are.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use bb2snyk_broker::Broker;
use bb2snyk_messages::IMPORTER;

/// The most repositories one page can add (Bitbucket's `pagelen` as we ask for it).
pub const PAGE: u64 = 100;

/// How long a count of the queue is trusted: counting costs the broker a round trip.
const RECOUNT: Duration = Duration::from_secs(1);

/// How long what a page published is added to the count: until a count surely shows it (a page's
/// messages reach the queue while its delivery settles, after the page is done here).
const RECENT: Duration = Duration::from_secs(2);

/// Admits pages while the importer's queue, with what this process is about to add, stays within `limit`.
///
/// The broker's count is taken once a second; on top of it the process adds what it has admitted itself:
/// a whole page for each page being fetched, then, for two seconds, what the page really published (by
/// then a count shows it; until then it may or may not, and counting it twice only makes paging wait a
/// little). So however many pages run at once, one process never takes the queue past `limit` (a limit
/// under one page admits one page at a time). Several discoverer replicas each keep their own tally, so
/// together they can pass it by what they publish within one count's second, which Bitbucket's rate
/// bounds (about 16 pages a second at its default limit).
#[derive(Clone)]
pub struct Backlog {
    pub broker: Arc<dyn Broker>,
    pub limit: u64,
    /// How long a page waits when there is no room.
    pub pause: Duration,
    /// The broker's last count and when it was taken; held while a new count is under way, so one
    /// count serves every page that asks meanwhile.
    counted: Arc<tokio::sync::Mutex<Option<(Instant, u64)>>>,
    held: Arc<Mutex<Held>>,
}

/// What this process has admitted that the broker's last count may not show.
#[derive(Debug, Default)]
struct Held {
    /// Pages admitted and not yet done: each counts as a whole page.
    pages: u64,
    /// Imports published by pages done in the last [`RECENT`], and when.
    published: VecDeque<(Instant, u64)>,
}

impl Held {
    fn recently_published(&mut self) -> u64 {
        while self
            .published
            .front()
            .is_some_and(|(at, _)| at.elapsed() > RECENT)
        {
            self.published.pop_front();
        }
        self.published.iter().map(|(_, n)| n).sum()
    }
}

impl std::fmt::Debug for Backlog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backlog")
            .field("limit", &self.limit)
            .field("pause", &self.pause)
            .finish_non_exhaustive()
    }
}

impl Backlog {
    pub fn new(broker: Arc<dyn Broker>, limit: u64, pause: Duration) -> Self {
        Self {
            broker,
            limit,
            pause,
            counted: Arc::default(),
            held: Arc::default(),
        }
    }

    /// Room for one more page: `None` while the queue (counted, plus what is held here) has none. A queue
    /// the broker cannot count admits the page: paging goes on rather than stop on a monitoring answer.
    pub async fn admit(&self) -> Option<Admission> {
        let waiting = {
            let mut counted = self.counted.lock().await;
            match *counted {
                Some((at, n)) if at.elapsed() < RECOUNT => Some(n),
                _ => {
                    let n = self.broker.waiting(IMPORTER).await;
                    *counted = n.map(|n| (Instant::now(), n));
                    n
                }
            }
        };
        let mut held = self.held();
        if let Some(waiting) = waiting {
            let expected = waiting
                .saturating_add(held.pages.saturating_mul(PAGE))
                .saturating_add(held.recently_published());
            if expected > 0 && expected.saturating_add(PAGE) > self.limit {
                return None;
            }
        }
        held.pages += 1;
        Some(Admission {
            held: Arc::clone(&self.held),
            published: 0,
        })
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A page admitted: counts as a whole page until it says what it published (or is dropped, publishing
/// nothing).
#[must_use]
#[derive(Debug)]
pub struct Admission {
    held: Arc<Mutex<Held>>,
    published: u64,
}

impl Admission {
    /// The page is done and sends `imports` import messages.
    pub fn published(mut self, imports: u64) {
        self.published = imports;
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.pages = held.pages.saturating_sub(1);
        if self.published > 0 {
            held.published.push_back((Instant::now(), self.published));
        }
    }
}

#[cfg(test)]
mod tests {
    use bb2snyk_broker::memory::MemoryBroker;

    use super::*;

    fn backlog(broker: &MemoryBroker, limit: u64) -> Backlog {
        Backlog::new(Arc::new(broker.clone()), limit, Duration::from_secs(5))
    }

    #[tokio::test]
    async fn pages_in_flight_count_before_the_broker_sees_them() {
        let broker = MemoryBroker::new(Default::default());
        let backlog = backlog(&broker, 250);
        let first = backlog.admit().await.expect("an empty queue has room");
        let second = backlog.admit().await.expect("100 held, room for 100 more");
        assert!(
            backlog.admit().await.is_none(),
            "200 held: a third page could take the queue to 300"
        );
        // The first page published 40 imports: held here until a count surely shows them.
        first.published(40);
        drop(second);
        let third = backlog.admit().await.expect("40 held: room");
        let fourth = backlog.admit().await.expect("140 held: room");
        assert!(backlog.admit().await.is_none(), "240 held");
        drop((third, fourth));
    }

    #[tokio::test]
    async fn a_limit_under_one_page_admits_one_page_at_a_time() {
        let broker = MemoryBroker::new(Default::default());
        let backlog = backlog(&broker, 5);
        let page = backlog.admit().await.expect("an empty queue has room");
        assert!(backlog.admit().await.is_none());
        page.published(0);
        assert!(backlog.admit().await.is_some());
    }
}
