//! The pipeline's transport on the real RabbitMQ: the topology, retry tiers that come back, parking with
//! the reason, follow-ups confirmed before the ack. Each test has its own queue prefix.

use std::{sync::Arc, time::Duration};

use crate::common::{Sink, Stage, message, passive};
use bb2snyk_broker::{AmqpBroker, Reconnect, RetryPolicy, Topology, connect};
use bb2snyk_test_support::{amqp_url, unique, wait_for};
use lapin::options::BasicGetOptions;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn retries_come_back_parking_keeps_the_reason_and_follow_ups_arrive() {
    let connection = Arc::new(
        connect(&[amqp_url()], "bb2snyk-test", Reconnect::default())
            .await
            .expect("RabbitMQ"),
    );
    let topology = Topology {
        prefix: unique("pipe"),
        queues: vec!["work".into(), "done".into()],
        retry: RetryPolicy {
            tiers: vec![Duration::from_secs(1), Duration::from_secs(2)],
            max_attempts: 3,
            ..RetryPolicy::default()
        },
        expires: Some(Duration::from_secs(120)),
    };
    let broker = AmqpBroker::new(connection.clone(), topology.clone(), "test")
        .await
        .expect("topology");
    // Declaring again, as every replica does at start, is harmless.
    AmqpBroker::new(connection.clone(), topology.clone(), "test")
        .await
        .expect("idempotent");
    let stage = Arc::new(Stage::new(1));
    let sink = Arc::new(Sink::default());
    let shutdown = CancellationToken::new();
    let drain = Duration::from_secs(5);
    let work = tokio::spawn({
        let (b, s, stop) = (broker.clone(), stage.clone(), shutdown.clone());
        async move { b.serve("work", s, 4, stop, drain).await }
    });
    let done = tokio::spawn({
        let (b, s, stop) = (broker.clone(), sink.clone(), shutdown.clone());
        async move { b.serve("done", s, 4, stop, drain).await }
    });
    for id in ["ok-1", "ok-2", "flaky-1", "bad-1", "never-1"] {
        broker
            .publish("work", &message(id))
            .await
            .expect("confirmed");
    }

    let channel = connection.create_channel().await.expect("channel");
    let parked = topology.parked("work");
    let depth = |queue: String| {
        let channel = channel.clone();
        async move {
            passive(&channel, &queue)
                .await
                .expect("passive declare")
                .message_count()
        }
    };
    wait_for("two parked messages", Duration::from_secs(20), || async {
        (depth(parked.clone()).await == 2).then_some(())
    })
    .await;
    wait_for("both follow-ups", Duration::from_secs(10), || async {
        (sink.received() == 2).then_some(())
    })
    .await;
    // ok ×2, flaky twice, bad once, never three times.
    assert_eq!(stage.handled(), 2 + 2 + 1 + 3);

    let mut reasons = Vec::new();
    for _ in 0..2 {
        let got = channel
            .basic_get(parked.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get")
            .expect("a parked message");
        let message = bb2snyk_broker::decode(&got.delivery);
        let reason = bb2snyk_broker::parked_reason(&got.delivery);
        reasons.push(format!("{}: {reason}", message.message_id));
    }
    reasons.sort();
    assert!(
        reasons[0].starts_with("bad-1") && reasons[0].contains("400 Bad Request"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].starts_with("never-1")
            && reasons[1].contains("gave up after 3 tries: still failing"),
        "{reasons:?}"
    );
    for queue in ["work", "done"] {
        assert_eq!(depth(topology.work(queue)).await, 0);
    }

    shutdown.cancel();
    work.await.expect("joined").expect("served");
    done.await.expect("joined").expect("served");
}

/// A parked message survives any number of peeks (`status`, `replay --dry-run`): its queue is declared with
/// a delivery limit no peeking reaches, where RabbitMQ 4 would otherwise drop it after 20 deliveries.
#[tokio::test]
async fn a_parked_message_survives_every_peek() {
    let connection = Arc::new(
        connect(&[amqp_url()], "bb2snyk-test-peek", Reconnect::default())
            .await
            .expect("RabbitMQ"),
    );
    let topology = Topology {
        prefix: unique("peek"),
        queues: vec!["work".into()],
        retry: RetryPolicy::default(),
        expires: Some(Duration::from_secs(120)),
    };
    let broker = AmqpBroker::new(connection.clone(), topology.clone(), "test")
        .await
        .expect("topology");
    let parked = bb2snyk_broker::Settlement::Parked {
        queue: "work".into(),
        message: message("bad-1"),
        reason: "a test".into(),
    };
    broker.apply(&parked).await.expect("parked");
    let management =
        bb2snyk_broker::admin::Management::for_amqp_url(reqwest::Client::new(), &amqp_url());
    let admin = bb2snyk_broker::admin::Admin::new(connection.clone(), topology.clone(), management);
    let name = topology.parked("work");
    for peek in 0..25 {
        let reasons = admin.parked_reasons(&name, 10).await.expect("peek");
        assert_eq!(reasons, vec!["a test".to_owned()], "peek {peek}");
    }
    // The limit that makes this hold on RabbitMQ 4 is on the queue.
    let mut base = reqwest::Url::parse(&bb2snyk_test_support::management_url()).expect("URL");
    let (user, password) = (
        base.username().to_owned(),
        base.password().map(str::to_owned),
    );
    let _ = base.set_username("");
    let _ = base.set_password(None);
    let queue: serde_json::Value = reqwest::Client::new()
        .get(base.join(&format!("/api/queues/%2F/{name}")).expect("URL"))
        .basic_auth(user, password)
        .send()
        .await
        .expect("the management API answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(queue["arguments"]["x-delivery-limit"], 2_000_000_000);
}
