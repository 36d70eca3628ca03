//! The shared request budget, against real Redis: one budget for every instance, a rolling window, a
//! fleet-wide pause, and per-process pacing while Redis is down.
//!
//! Over 400 lines on purpose: one test per rule of the budget (window, pause, pool, pacing, the write
//! floor), each needing its own timeline, and all sharing the two builders below.

use std::time::{Duration, Instant};

use bb2snyk_store::{Budget, BudgetConfig, Pool, Store};

use super::connect;
use bb2snyk_test_support::{RedisServer, redis_url, unique, wait_for};

fn budget(store: Store, limit: u32, window: Duration) -> Budget {
    budget_of("c0ffee", store, limit, window)
}

fn budget_of(credential: &str, store: Store, limit: u32, window: Duration) -> Budget {
    Budget::new(
        Some(store),
        BudgetConfig {
            api: "test",
            credential: credential.into(),
            limit,
            window,
        },
    )
}

#[tokio::test]
async fn two_instances_share_one_rolling_window() {
    let prefix = format!("{}:", unique("budget"));
    let window = Duration::from_millis(1500);
    let a = budget(connect(&redis_url(), &prefix).await, 5, window);
    let b = budget(connect(&redis_url(), &prefix).await, 5, window);
    let started = Instant::now();
    for i in 0..5 {
        if i % 2 == 0 {
            a.acquire().await
        } else {
            b.acquire().await
        }
    }
    let burst = started.elapsed();
    assert!(
        burst < Duration::from_millis(500),
        "the first 5 went at once: {burst:?}"
    );
    b.acquire().await;
    let sixth = started.elapsed();
    // Redis's clock and ours may differ by a few milliseconds; the window is what matters.
    assert!(
        sixth >= window - Duration::from_millis(50),
        "the 6th waited for the window: {sixth:?}"
    );
    assert!(
        b.waited() >= Duration::from_millis(1000),
        "{:?}",
        b.waited()
    );
}

#[tokio::test]
async fn a_pause_holds_every_instance() {
    let prefix = format!("{}:", unique("pause"));
    let a = budget(
        connect(&redis_url(), &prefix).await,
        100,
        Duration::from_secs(60),
    );
    let b = budget(
        connect(&redis_url(), &prefix).await,
        100,
        Duration::from_secs(60),
    );
    b.acquire().await;
    let started = Instant::now();
    a.pause(Duration::from_millis(800)).await;
    b.acquire().await;
    let held = started.elapsed();
    assert!(
        held >= Duration::from_millis(750),
        "b waited out a's pause: {held:?}"
    );
}

#[tokio::test]
async fn without_redis_each_process_keeps_its_own_budget() {
    let mut server = RedisServer::start().await;
    let store = connect(&server.url(), "b:").await;
    let window = Duration::from_millis(1200);
    let budget = budget(store.clone(), 3, window);
    budget.acquire().await;
    server.stop();
    let started = Instant::now();
    budget.acquire().await;
    budget.acquire().await;
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "no wait within the budget"
    );
    assert!(store.failures() > 0, "the failure was counted");
    budget.acquire().await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "the 4th waited for the local window: {:?}",
        started.elapsed()
    );

    server.restart().await;
    wait_for(
        "the store to use Redis again",
        Duration::from_secs(10),
        || async { store.get("probe").await.ok() },
    )
    .await;
    assert!(!store.is_degraded());
}

/// The error a test call answers: a 429 until told otherwise, or the budget's own deferral.
#[derive(Debug)]
enum Refused {
    Limited,
    Overdue(Duration),
    /// The credential was refused (a 401).
    Unauthorized,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl bb2snyk_store::Retry for Refused {
    fn next(&self) -> bb2snyk_store::Next {
        match self {
            Self::Limited => bb2snyk_store::Next::Pause(Some(Duration::from_secs(120))),
            Self::Overdue(_) => bb2snyk_store::Next::Fail,
            Self::Unauthorized => bb2snyk_store::Next::Refused,
        }
    }
}

impl From<bb2snyk_store::Overdue> for Refused {
    fn from(o: bb2snyk_store::Overdue) -> Self {
        Self::Overdue(o.wait)
    }
}

/// A call with no slot in sight (the window spent, or a long 429 pause) gives its delivery back at once,
/// saying how long until it may go, instead of holding it past RabbitMQ's consumer timeout.
#[tokio::test]
async fn a_wait_past_the_hold_bound_answers_overdue_at_once() {
    let prefix = format!("{}:", unique("hold"));
    let hold = Duration::from_millis(500);
    let spent = budget(
        connect(&redis_url(), &prefix).await,
        1,
        Duration::from_secs(60),
    )
    .holding_at_most(hold);
    let first: Result<(), Refused> = spent.call(|| async { Ok(()) }).await;
    assert!(first.is_ok());
    let asked = Instant::now();
    match spent.call(|| async { Ok::<(), Refused>(()) }).await {
        Err(Refused::Overdue(wait)) => assert!(wait > hold, "{wait:?}"),
        other => panic!("expected overdue, got {other:?}"),
    }
    assert!(
        asked.elapsed() < Duration::from_secs(30),
        "it did not wait out the window"
    );

    let paused = budget(
        connect(&redis_url(), &format!("{prefix}p:")).await,
        100,
        Duration::from_secs(60),
    )
    .holding_at_most(hold);
    match paused
        .call(|| async { Err::<(), _>(Refused::Limited) })
        .await
    {
        Err(Refused::Overdue(wait)) => assert!(wait > Duration::from_secs(60), "{wait:?}"),
        other => panic!("expected overdue after the 429, got {other:?}"),
    }
}

/// While Redis is away, a process of a fleet of five keeps to a fifth of the budget: the fleet together
/// stays under the API's limit instead of spending it five times.
#[tokio::test]
async fn without_redis_each_process_keeps_to_its_share_of_the_fleet() {
    let mut server = RedisServer::start().await;
    let store = connect(&server.url(), "share:").await;
    let budget = budget(store, 10, Duration::from_secs(60))
        .shared_by(5)
        .holding_at_most(Duration::from_millis(200));
    server.stop();
    let ok = |r: Result<(), Refused>| r.is_ok();
    assert!(ok(budget.call(|| async { Ok(()) }).await));
    assert!(ok(budget.call(|| async { Ok(()) }).await));
    match budget.call(|| async { Ok::<(), Refused>(()) }).await {
        Err(Refused::Overdue(wait)) => assert!(wait > Duration::from_secs(50), "{wait:?}"),
        other => panic!("the third call of a 2-call share should wait the window, got {other:?}"),
    }
}

/// Two credentials' budgets: a call takes a slot from whichever has one, so the pool grants twice one
/// budget in a window, then defers; a refused credential leaves the rotation and its calls go to the
/// other, and the last one's refusal reaches the caller.
#[tokio::test]
async fn a_pool_spends_every_member_and_moves_off_a_refused_one() {
    let prefix = format!("{}:", unique("pool"));
    let window = Duration::from_secs(60);
    let hold = Duration::from_millis(300);
    let members = vec![
        budget_of("a", connect(&redis_url(), &prefix).await, 3, window).holding_at_most(hold),
        budget_of("b", connect(&redis_url(), &prefix).await, 3, window).holding_at_most(hold),
    ];
    let pool = Pool::new(members, Duration::from_secs(600));
    let mut paid_by = [0; 2];
    for _ in 0..6 {
        let member: Result<usize, Refused> = pool.call(|i| async move { Ok(i) }).await;
        paid_by[member.expect("a slot in one of the members")] += 1;
    }
    assert_eq!(paid_by, [3, 3], "each member paid for its own budget");
    match pool.call(|i| async move { Ok::<usize, Refused>(i) }).await {
        Err(Refused::Overdue(wait)) => assert!(wait > hold, "{wait:?}"),
        other => panic!("both budgets are spent, got {other:?}"),
    }

    let pool = Pool::new(
        vec![
            budget_of("c", connect(&redis_url(), &prefix).await, 100, window),
            budget_of("d", connect(&redis_url(), &prefix).await, 100, window),
        ],
        Duration::from_secs(600),
    );
    for _ in 0..4 {
        let paid: Result<usize, Refused> = pool
            .call_write(|i| async move {
                if i == 0 {
                    Err(Refused::Unauthorized)
                } else {
                    Ok(i)
                }
            })
            .await;
        assert_eq!(paid.expect("the other member"), 1);
    }
    assert_eq!(pool.live_count(), 1);
    let last: Result<(), Refused> = pool.call(|_| async { Err(Refused::Unauthorized) }).await;
    assert!(matches!(last, Err(Refused::Unauthorized)), "{last:?}");
    assert_eq!(pool.live_count(), 1, "the last member stays");
}

/// Two calls refused at once, on the pool's two members: one member leaves the rotation, never both (two
/// 401s at once once retired every token, and the next call's wait was `Duration::MAX`: a panic). A
/// retired member comes back after the cool-down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_refusals_at_once_never_retire_the_last_member_and_a_retired_one_comes_back() {
    let store = Store::memory();
    let window = Duration::from_secs(60);
    let cooldown = Duration::from_millis(300);
    let pool = std::sync::Arc::new(Pool::new(
        vec![
            budget_of("e", store.clone(), 100, window),
            budget_of("f", store.clone(), 100, window),
        ],
        cooldown,
    ));
    // Both calls are refused only once both have been sent, each by its own member.
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(2));
    let refused_once = |barrier: std::sync::Arc<tokio::sync::Barrier>| {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut first = true;
            let answer: Result<usize, Refused> = pool
                .call(|i| {
                    let barrier = barrier.clone();
                    let refuse = std::mem::take(&mut first);
                    async move {
                        if refuse {
                            barrier.wait().await;
                            Err(Refused::Unauthorized)
                        } else {
                            Ok(i)
                        }
                    }
                })
                .await;
            answer
        })
    };
    let (a, b) = (refused_once(barrier.clone()), refused_once(barrier));
    let deadline = Duration::from_secs(10);
    let (a, b) = tokio::time::timeout(deadline, async { (a.await, b.await) })
        .await
        .expect("both calls answered: with no member left, they would wait for ever");
    let (a, b) = (a.expect("no panic"), b.expect("no panic"));
    assert_eq!(
        pool.live_count(),
        1,
        "one member left the rotation, not both"
    );
    // One call moved to the member still live; the other was refused on the last one.
    let answers = [a.is_ok(), b.is_ok()];
    assert!(answers.contains(&true), "{a:?} {b:?}");
    let after: Result<usize, Refused> = pool.call(|i| async move { Ok(i) }).await;
    assert!(after.is_ok(), "the pool still answers: {after:?}");
    bb2snyk_test_support::wait_for("the retired member back", Duration::from_secs(5), || {
        let live = pool.live_count();
        async move { (live == 2).then_some(()) }
    })
    .await;
}

/// `bb2snyk run`'s stages each build their own client on the one in-process store: together they keep
/// to the limit, as replicas do on Redis (a log per budget let each spend all of it: 429s).
#[tokio::test]
async fn budgets_on_one_in_process_store_share_its_log_and_its_pause() {
    let store = Store::memory();
    let window = Duration::from_secs(60);
    let (org_creator, importer) = (
        budget(store.clone(), 3, window),
        budget(store.clone(), 3, window),
    );
    org_creator.acquire().await;
    importer.acquire().await;
    org_creator.acquire().await;
    let fourth = tokio::time::timeout(Duration::from_millis(300), importer.acquire()).await;
    assert!(fourth.is_err(), "the 4th waits for the shared window");

    // Another store is another process: a budget of its own.
    let other = budget(Store::memory(), 3, window);
    other.acquire().await;

    // A 429 heard by one holds the other.
    let (a, b) = (
        budget_of("paused", store.clone(), 100, window),
        budget_of("paused", store, 100, window),
    );
    a.pause(Duration::from_secs(60)).await;
    let held = tokio::time::timeout(Duration::from_millis(300), b.acquire()).await;
    assert!(held.is_err(), "b waits out a's pause");
}

/// Writes (the import POSTs) may spend half the limit in a window, reads (their polls) all of it: a burst
/// of writes leaves the polls that follow them their half. On Redis and on an in-process store alike.
#[tokio::test]
async fn writes_spend_half_the_budget_and_reads_the_rest() {
    let prefix = format!("{}:", unique("writes"));
    for store in [connect(&redis_url(), &prefix).await, Store::memory()] {
        let hold = Duration::from_millis(300);
        let budget = budget(store, 4, Duration::from_secs(60)).holding_at_most(hold);
        let write = || budget.call_write(|| async { Ok::<(), Refused>(()) });
        assert!(write().await.is_ok());
        assert!(write().await.is_ok());
        match write().await {
            Err(Refused::Overdue(wait)) => assert!(wait > hold, "{wait:?}"),
            other => panic!("a third write of a 4-call budget should wait, got {other:?}"),
        }
        let read = || budget.call(|| async { Ok::<(), Refused>(()) });
        assert!(read().await.is_ok(), "the reads' half");
        assert!(read().await.is_ok(), "the reads' half");
        assert!(
            matches!(read().await, Err(Refused::Overdue(_))),
            "writes and reads together keep to the limit"
        );
    }
}

#[tokio::test]
async fn an_evenly_paced_budget_spends_a_second_s_share_in_any_second() {
    // 120 a minute: two in any second, however much of the window is left.
    let minute = Duration::from_secs(60);
    let shared = connect(&redis_url(), &format!("{}:", unique("paced"))).await;
    let cases = [
        ("Redis", Some(shared)),
        ("in-process store", Some(Store::memory())),
        ("no store", None),
    ];
    for (what, store) in cases {
        let config = BudgetConfig {
            api: "test",
            credential: "even".into(),
            limit: 120,
            window: minute,
        };
        let paced = Budget::new(store.clone(), config.clone()).evenly_paced(true);
        let started = Instant::now();
        for _ in 0..5 {
            paced.acquire().await;
        }
        // Two at once, two a second later, the fifth a second after them.
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(1950) && took < Duration::from_secs(10),
            "{what}: five grants took {took:?}"
        );
        // Writes may spend the whole window, a second's share at a time: past the half that binds an
        // unpaced budget (60 of 120 here).
        let writes_config = BudgetConfig {
            credential: "paced-writes".into(),
            window: Duration::from_millis(1000),
            ..config.clone()
        };
        let writes = Budget::new(store.clone(), writes_config)
            .evenly_paced(true)
            .holding_at_most(Duration::from_millis(300));
        for n in 1..=90 {
            let wrote = writes.call_write(|| async { Ok::<(), Refused>(()) }).await;
            assert!(wrote.is_ok(), "{what}: write {n} of an evenly paced budget");
        }
        // The same budget not evenly paced spends its window at once.
        let config = BudgetConfig {
            credential: "burst".into(),
            ..config
        };
        let burst = Budget::new(store, config).evenly_paced(false);
        let started = Instant::now();
        for _ in 0..5 {
            burst.acquire().await;
        }
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "{what}: unpaced grants waited {:?}",
            started.elapsed()
        );
    }
}

/// Reads go first: a read that finds no slot marks the budget while it waits, a write that comes meanwhile
/// yields to it (once writes had their floor, a quarter of the limit), and the read's grant clears the mark.
/// Polls of finished jobs (reads) so never queue behind a stream of import POSTs (writes).
#[tokio::test]
async fn a_write_yields_to_a_waiting_read_once_writes_had_their_floor() {
    let prefix = format!("{}:", unique("reads-first"));
    let mark = "budget-reads-waiting:{test:c0ffee}";
    for store in [connect(&redis_url(), &prefix).await, Store::memory()] {
        // 8 in 2 s: writes may spend 4 and get 2 however many reads wait.
        let window = Duration::from_secs(2);
        let budget = budget(store.clone(), 8, window).holding_at_most(Duration::from_millis(300));
        let write = || budget.call_write(|| async { Ok::<(), Refused>(()) });
        let read = || budget.call(|| async { Ok::<(), Refused>(()) });
        store
            .set(mark, b"1", Some(Duration::from_secs(5)))
            .await
            .expect("Redis sets the mark");
        assert!(write().await.is_ok(), "below their floor writes go");
        assert!(write().await.is_ok(), "below their floor writes go");
        match write().await {
            Err(Refused::Overdue(wait)) => assert!(wait > Duration::from_secs(4), "{wait:?}"),
            other => panic!("a write should yield to the waiting read, got {other:?}"),
        }
        assert!(read().await.is_ok());
        assert_eq!(
            store.get(mark).await.expect("Redis reads the mark"),
            None,
            "a granted read clears the mark"
        );
        assert!(write().await.is_ok(), "with no read waiting a write goes");

        // A read with no slot marks the budget until it is granted.
        for _ in 0..4 {
            assert!(read().await.is_ok());
        }
        let waiting = budget_of("c0ffee", store.clone(), 8, window);
        let started = Instant::now();
        let granted = tokio::spawn(async move { waiting.acquire().await });
        wait_for("a waiting read's mark", Duration::from_secs(5), || async {
            store.get(mark).await.ok().flatten()
        })
        .await;
        granted.await.expect("the waiting read is granted");
        assert!(
            started.elapsed() > Duration::from_secs(1),
            "the read waited for a slot"
        );
        assert_eq!(
            store.get(mark).await.expect("Redis reads the mark"),
            None,
            "and its grant cleared the mark"
        );
    }
}

/// A budget going first (the org-creator's: an org's few calls unlock a workspace's imports) is not paced
/// by the imports it feeds: its writes pass a waiting read's mark beyond the writes' floor, and when one
/// finds no slot it marks the budget as a waiting read does, so import POSTs yield to it.
#[tokio::test]
async fn writes_going_first_never_yield_and_mark_the_budget_while_they_wait() {
    let prefix = format!("{}:", unique("first"));
    let mark = "budget-reads-waiting:{test:c0ffee}";
    for store in [connect(&redis_url(), &prefix).await, Store::memory()] {
        // 8 in 2 s: writes may spend 4, and get 2 however many reads wait.
        let window = Duration::from_secs(2);
        let hold = Duration::from_millis(300);
        let setup = budget(store.clone(), 8, window)
            .going_first(true)
            .holding_at_most(hold);
        let imports = budget(store.clone(), 8, window).holding_at_most(hold);
        let ok = || async { Ok::<(), Refused>(()) };
        store
            .set(mark, b"1", Some(Duration::from_secs(5)))
            .await
            .expect("Redis sets the mark");
        for n in 1..=3 {
            assert!(
                setup.call_write(ok).await.is_ok(),
                "write {n} going first passes the mark"
            );
        }
        match imports.call_write(ok).await {
            Err(Refused::Overdue(wait)) => assert!(wait > Duration::from_secs(4), "{wait:?}"),
            other => panic!("an import POST beyond the floor yields, got {other:?}"),
        }
        store.delete(mark).await.expect("Redis deletes the mark");
        assert!(imports.call_write(ok).await.is_ok(), "the writes' 4th slot");

        // The writes' share is spent: a write going first waits for a slot, and marks the budget.
        let waiting = budget(store.clone(), 8, window).going_first(true);
        let granted = tokio::spawn(async move { waiting.call_write(ok).await });
        wait_for(
            "a waiting setup write's mark",
            Duration::from_secs(5),
            || async { store.get(mark).await.ok().flatten() },
        )
        .await;
        assert!(
            granted.await.expect("the waiting write is granted").is_ok(),
            "once a write's slot frees"
        );
    }
}
