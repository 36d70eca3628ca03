//! The in-process broker settles outcomes the way the RabbitMQ topology does.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use bb2snyk_broker::{
    Broker, Handler, Message, Outcome, Publish, RetryPolicy, memory::MemoryBroker,
};
use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

fn message(id: &str) -> Message {
    Message {
        kind: "test.v1".into(),
        message_id: id.into(),
        correlation_id: "run".into(),
        attempt: 0,
        body: id.as_bytes().to_vec(),
    }
}

/// `ok-*` fans out one follow-up to `done`; `flaky-*` fails twice then succeeds; `bad-*` is parked;
/// `never-*` always asks for a retry.
struct Stage {
    handled: AtomicU32,
}

impl Handler for Stage {
    fn handle(&self, m: Message) -> BoxFuture<'_, Outcome> {
        Box::pin(async move {
            self.handled.fetch_add(1, Ordering::SeqCst);
            let id = m.message_id.clone();
            if id.starts_with("ok") {
                Outcome::Ack(vec![Publish {
                    queue: "done".into(),
                    message: message(&format!("{id}-next")),
                    delay: None,
                }])
            } else if id.starts_with("flaky") && m.attempt < 2 {
                Outcome::retry("503")
            } else if id.starts_with("flaky") {
                Outcome::ack()
            } else if id.starts_with("bad") {
                Outcome::park("400 Bad Request")
            } else {
                Outcome::retry("still failing")
            }
        })
    }
}

struct Sink(AtomicU32);

impl Handler for Sink {
    fn handle(&self, _m: Message) -> BoxFuture<'_, Outcome> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Outcome::ack() })
    }
}

#[tokio::test]
async fn retries_park_and_follow_ups_settle_then_the_broker_is_idle() {
    let broker = MemoryBroker::new(RetryPolicy {
        tiers: vec![Duration::from_millis(20), Duration::from_millis(40)],
        max_attempts: 4,
    });
    let stage = Arc::new(Stage {
        handled: AtomicU32::new(0),
    });
    let sink = Arc::new(Sink(AtomicU32::new(0)));
    let shutdown = CancellationToken::new();
    let serving = tokio::spawn({
        let (b, s, stop) = (broker.clone(), stage.clone(), shutdown.clone());
        async move { b.serve("work", s, 4, stop).await }
    });
    // Through the transport-neutral trait, as `bb2snyk run` drives it.
    let sinking = tokio::spawn({
        let (b, s, stop) = (broker.clone(), sink.clone(), shutdown.clone());
        async move {
            let transport: &dyn Broker = &b;
            transport.serve("done", s, 2, stop, Duration::ZERO).await
        }
    });
    for id in ["ok-1", "ok-2", "flaky-1", "bad-1", "never-1"] {
        let transport: &dyn Broker = &broker;
        transport
            .publish("work", &message(id))
            .await
            .expect("accepted");
    }
    tokio::time::timeout(Duration::from_secs(5), broker.idle())
        .await
        .expect("the pipeline goes idle");
    assert_eq!(sink.0.load(Ordering::SeqCst), 2, "both follow-ups arrived");
    // ok ×2, flaky 3 tries, bad once, never 4 tries.
    assert_eq!(stage.handled.load(Ordering::SeqCst), 2 + 3 + 1 + 4);
    let parked = broker.parked("work");
    let reasons: Vec<(&str, &str)> = parked
        .iter()
        .map(|(m, r)| (m.message_id.as_str(), r.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            ("bad-1", "400 Bad Request"),
            ("never-1", "gave up after 4 tries: still failing")
        ]
    );

    assert_eq!(broker.replay("work"), 2);
    tokio::time::timeout(Duration::from_secs(5), broker.idle())
        .await
        .expect("idle again");
    assert_eq!(
        broker.parked("work").len(),
        2,
        "they fail again the same way"
    );
    shutdown.cancel();
    serving.await.expect("serve ends");
    sinking.await.expect("serve ends").expect("served");
}
