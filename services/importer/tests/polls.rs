//! When polls come, on the in-memory broker with tokio's paused clock: the first poll of a job waits for
//! the fleet's estimate (not for the next retry tier), and a pending job is polled again later as it ages.
//! The job is simulated (done 12 s after it starts); the schedule, the delay queues and the due check are
//! the importer's own.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use bb2snyk_broker::{Handler, Message, Outcome, RetryPolicy, memory::MemoryBroker};
use bb2snyk_importer::{PollTiming, Schedule, now_ms, wait_until};
use bb2snyk_messages::{Body, IMPORTER_POLLS, ImportRepo, PollImport, Target, UnixMs};
use bb2snyk_store::Store;
use futures_util::future::BoxFuture;

/// Polls a job that is done 12 s after it started, as the importer does: early polls wait out the rest,
/// pending ones come back at the schedule's next poll.
struct Job {
    schedule: Schedule,
    started_ms: u64,
    /// When each poll was taken, in ms since the job started.
    polls: Mutex<Vec<u64>>,
}

const DONE_AFTER_MS: u64 = 12_000;

impl Handler for Job {
    fn handle(&self, message: Message) -> BoxFuture<'_, Outcome> {
        Box::pin(async move {
            let Ok(Body::PollImport(poll)) = Body::from_message(&message) else {
                return Outcome::park("not a poll");
            };
            if let Some(wait) = wait_until(poll.due_ms()) {
                return Outcome::defer(wait);
            }
            let age = now_ms() - self.started_ms;
            self.polls.lock().expect("polls").push(age);
            if age >= DONE_AFTER_MS {
                return Outcome::ack();
            }
            let wait = self.schedule.next_poll(Duration::from_millis(age));
            let again = PollImport {
                polls: poll.polls + 1,
                not_before_ms: Some(UnixMs(now_ms() + wait.as_millis() as u64)),
                ..poll
            };
            Outcome::Ack(vec![Body::PollImport(again).publish_after(wait)])
        })
    }
}

#[tokio::test(start_paused = true)]
async fn the_first_poll_waits_for_the_estimate_and_a_pending_job_is_polled_again_later() {
    let timing = PollTiming {
        prior: Duration::from_secs(5),
        ..PollTiming::default()
    };
    let job = Arc::new(Job {
        schedule: Schedule::new(timing, Store::memory()),
        started_ms: now_ms(),
        polls: Mutex::default(),
    });
    let broker = MemoryBroker::new(RetryPolicy {
        delayed: vec![IMPORTER_POLLS.to_owned()],
        ..RetryPolicy::default()
    });
    let first = job.schedule.first_poll().await;
    assert_eq!(
        first,
        Duration::from_secs(5),
        "the prior, before any job was seen"
    );
    let poll = PollImport {
        import: ImportRepo {
            run_id: "run-1".parse().expect("a run id"),
            org_id: "o".parse().expect("an id"),
            integration_id: "i".parse().expect("an id"),
            target: Target {
                owner: "acme".parse().expect("an id"),
                name: "api".parse().expect("an id"),
                branch: None,
            },
            failed_jobs: 0,
            policy: None,
        },
        job_url: "https://api.snyk.io/v1/job".parse().expect("an id"),
        polls: 0,
        requested_ms: Some(UnixMs(job.started_ms)),
        not_before_ms: Some(UnixMs(job.started_ms + first.as_millis() as u64)),
        probe_ms: None,
        hinted: false,
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let serving = tokio::spawn({
        let (broker, shutdown) = (broker.clone(), shutdown.clone());
        let handler: Arc<dyn Handler> = job.clone();
        async move { broker.serve(IMPORTER_POLLS, handler, 4, shutdown).await }
    });
    // Published as the importer publishes it: through the delay queues, due in 5 s.
    let settled = bb2snyk_broker::settle(
        &RetryPolicy {
            delayed: vec![IMPORTER_POLLS.to_owned()],
            ..RetryPolicy::default()
        },
        "importer",
        &Body::PollImport(poll.clone()).to_message(),
        Outcome::Ack(vec![Body::PollImport(poll).publish_after(first)]),
    );
    assert!(
        matches!(
            &settled[..],
            [bb2snyk_broker::Settlement::Delayed { index: 4, .. }]
        ),
        "the 4 s delay queue, the longest not over 5 s: {settled:?}"
    );
    broker.publish(
        IMPORTER_POLLS,
        match settled.into_iter().next() {
            Some(bb2snyk_broker::Settlement::Delayed { message, .. }) => message,
            other => panic!("{other:?}"),
        },
    );
    broker.idle().await;
    shutdown.cancel();
    serving.await.expect("served");

    let polls = job.polls.lock().expect("polls").clone();
    // 5 s (the estimate), then at 1.5 times the age: 7.5 s, 11.25 s, 16.9 s (done by then); each within
    // the shortest delay queue (250 ms) of its time.
    let expected = [5_000, 7_500, 11_250, 16_875];
    assert_eq!(polls.len(), expected.len(), "{polls:?}");
    for (got, want) in polls.iter().zip(expected) {
        assert!(
            got.abs_diff(want) <= 250,
            "polled at {polls:?}, expected about {expected:?}"
        );
    }
}

/// Two importers on one Redis hear the same news in the same second: the fleet moves the estimate once,
/// not once per importer (four importers each moving it once a second polled 1.18 times per import).
#[tokio::test]
async fn the_fleet_moves_the_estimate_once_a_second_however_many_importers_hear_the_news() {
    let prefix = format!("{}:", bb2snyk_test_support::unique("turn"));
    let url = bb2snyk_test_support::redis_url();
    let mut importers = Vec::new();
    for _ in 0..2 {
        let store = Store::connect(&url, &prefix).await.expect("Redis");
        importers.push(Schedule::new(PollTiming::default(), store));
    }
    // Every probe finds its job pending: the first importer raises the estimate by the most a move may.
    for _ in 0..10 {
        importers[0]
            .first_poll_found(false, Duration::from_secs(5))
            .await;
    }
    let moved = Duration::from_millis(8750);
    // The second reads the fleet's estimate afresh and hears the same of its own probes in that second:
    // alone it would raise it again, but the turn is taken.
    for _ in 0..10 {
        importers[1].first_poll_found(false, moved).await;
    }
    assert_eq!(
        importers[1].first_poll().await,
        moved,
        "one move of x1.75, not two"
    );
    assert_eq!(importers[0].first_poll().await, moved);
    // A second later it is the fleet's turn again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..10 {
        importers[1].first_poll_found(false, moved).await;
    }
    assert!(importers[1].first_poll().await > moved);
}

/// Outcomes heard by many deliveries at once, on Redis where taking the fleet's turn awaits: the estimate
/// stays a number and no first poll panics. (Counts checked and taken under two locks let a delivery
/// take none: 0 of 0 pending, a NaN estimate, and every first poll of the next second panicked.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_heard_at_once_never_make_the_estimate_no_number() {
    let prefix = format!("{}:", bb2snyk_test_support::unique("outcomes"));
    let url = bb2snyk_test_support::redis_url();
    let store = Store::connect(&url, &prefix).await.expect("Redis");
    let schedule = std::sync::Arc::new(Schedule::new(PollTiming::default(), store));
    let until = std::time::Instant::now() + Duration::from_secs(3);
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..64_u32 {
        let schedule = schedule.clone();
        tasks.spawn(async move {
            let mut i = 0_u32;
            while std::time::Instant::now() < until {
                let estimate = schedule.expected().await.div_f64(1.15);
                schedule
                    // One in ten pending: where the estimate settles, so it stays near the prior.
                    .first_poll_found(!(task + i).is_multiple_of(10), estimate)
                    .await;
                schedule.first_poll().await;
                i += 1;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("no delivery panicked");
    }
    // Not the longest wait, which is what a wait that is no number would become.
    let wait = schedule.expected().await;
    assert!(wait < PollTiming::default().max / 2, "{wait:?}");
}
