//! When polls come, on the in-memory broker with tokio's paused clock: the first poll of a job waits for
//! `poll_first` (not for the next retry tier), and a pending job is polled again later as it ages.
//! The job is simulated (done 12 s after it starts); the schedule, the delay queues and the due check are
//! the importer's own.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use bb2snyk_broker::{Handler, Message, Outcome, RetryPolicy, memory::MemoryBroker};
use bb2snyk_importer::{PollTiming, now_ms, wait_until};
use bb2snyk_messages::{Body, IMPORTER_POLLS, ImportRepo, PollImport, Target, UnixMs};
use futures_util::future::BoxFuture;

/// Polls a job that is done 12 s after it started, as the importer does: early polls wait out the rest,
/// pending ones come back at the schedule's next poll.
struct Job {
    timing: PollTiming,
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
            let wait = self.timing.next_poll(Duration::from_millis(age), false);
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
async fn the_first_poll_waits_for_poll_first_and_a_pending_job_is_polled_again_later() {
    let timing = PollTiming {
        first: Duration::from_secs(5),
        ..PollTiming::default()
    };
    let job = Arc::new(Job {
        timing,
        started_ms: now_ms(),
        polls: Mutex::default(),
    });
    let broker = MemoryBroker::new(RetryPolicy {
        delayed: vec![IMPORTER_POLLS.to_owned()],
        ..RetryPolicy::default()
    });
    let first = job.timing.first_poll(false);
    assert_eq!(first, Duration::from_secs(5));
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
    // 5 s, then at 1.5 times the age: 7.5 s, 11.25 s, 16.9 s (done by then); each within
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
