//! The in-process broker settles outcomes the way the RabbitMQ topology does.

use std::{sync::Arc, time::Duration};

use crate::common::{Sink, Stage, message};
use bb2snyk_broker::{Broker, RetryPolicy, memory::MemoryBroker};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn retries_park_and_follow_ups_settle_then_the_broker_is_idle() {
    let broker = MemoryBroker::new(RetryPolicy {
        tiers: vec![Duration::from_millis(20), Duration::from_millis(40)],
        max_attempts: 4,
        ..RetryPolicy::default()
    });
    let stage = Arc::new(Stage::new(2));
    let sink = Arc::new(Sink::default());
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
    assert_eq!(sink.received(), 2, "both follow-ups arrived");
    let events: Vec<(String, String)> = broker
        .events()
        .into_iter()
        .map(|(m, key)| (m.message_id, key))
        .collect();
    assert_eq!(events.len(), 2);
    assert!(
        events
            .iter()
            .all(|(id, key)| id.ends_with("-done") && key == "test.done")
    );
    // ok ×2, flaky 3 tries, bad once, never 4 tries.
    assert_eq!(stage.handled(), 2 + 3 + 1 + 4);
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
