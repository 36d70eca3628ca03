//! Against the real RabbitMQ on this machine; every test uses its own queue names.

use std::time::Duration;

use bb2snyk_broker::{
    BrokerError, Outgoing, Publisher, QueueSpec, Reconnect, connect, declare_quorum_queue, stalled,
};
use bb2snyk_test_support::{TcpProxy, amqp_url, unique};
use futures_util::StreamExt;
use lapin::{
    options::{BasicAckOptions, BasicConsumeOptions, QueueDeclareOptions, QueueDeleteOptions},
    types::{AMQPValue, FieldTable},
};
use secrecy::SecretString;

/// Test queues expire on their own if a failing test leaves them behind.
fn spec() -> QueueSpec {
    QueueSpec {
        expires: Some(Duration::from_secs(300)),
        delivery_limit: Some(10),
        ..QueueSpec::default()
    }
}

#[tokio::test]
async fn publish_with_confirm_and_consume_on_a_quorum_queue() {
    let connection = connect(&[amqp_url()], "bb2snyk-test", Reconnect::default())
        .await
        .expect("RabbitMQ is reachable");
    let publisher = Publisher::new(&connection, "bb2snyk-test")
        .await
        .expect("confirm channel");
    let queue = unique("work");
    declare_quorum_queue(publisher.channel(), &queue, &spec())
        .await
        .expect("declared");

    let mut headers = FieldTable::default();
    headers.insert("bb2snyk-attempt".into(), AMQPValue::LongUInt(1));
    let message = Outgoing {
        body: br#"{"type":"repo.import.v1"}"#,
        message_id: "m-1",
        correlation_id: "run-1",
        kind: "repo.import.v1",
        headers,
        mandatory: true,
    };
    publisher
        .publish("", &queue, &message)
        .await
        .expect("confirmed");

    let consumer_channel = connection.create_channel().await.expect("channel");
    let mut consumer = consumer_channel
        .basic_consume(
            queue.as_str().into(),
            "t".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("a delivery within 10 s")
        .expect("stream open")
        .expect("delivery");
    assert_eq!(delivery.data, message.body);
    let p = &delivery.properties;
    assert_eq!(p.message_id().as_ref().map(|s| s.as_str()), Some("m-1"));
    assert_eq!(
        p.correlation_id().as_ref().map(|s| s.as_str()),
        Some("run-1")
    );
    assert_eq!(
        p.kind().as_ref().map(|s| s.as_str()),
        Some("repo.import.v1")
    );
    assert_eq!(*p.delivery_mode(), Some(2), "persistent");
    let attempt = p
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("bb2snyk-attempt").cloned());
    assert_eq!(attempt, Some(AMQPValue::LongUInt(1)));
    assert!(
        delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .expect("acked")
    );

    // Declaring the same name as a classic queue is refused: the queue really is a quorum queue.
    let probe = connection.create_channel().await.expect("channel");
    let classic = probe
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await;
    assert!(
        classic.is_err(),
        "a classic redeclare of a quorum queue must fail"
    );

    let cleanup = connection.create_channel().await.expect("channel");
    let deleted = cleanup
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("deleted");
    assert_eq!(deleted, 0, "the one message was consumed and acked");
}

#[tokio::test]
async fn an_unroutable_publish_is_an_error_not_a_loss() {
    let connection = connect(&[amqp_url()], "bb2snyk-test", Reconnect::default())
        .await
        .expect("RabbitMQ is reachable");
    let publisher = Publisher::new(&connection, "bb2snyk-test")
        .await
        .expect("confirm channel");
    let message = Outgoing {
        body: b"{}",
        message_id: "m",
        correlation_id: "r",
        kind: "k",
        headers: FieldTable::default(),
        mandatory: true,
    };
    let nowhere = unique("nowhere");
    match publisher.publish("", &nowhere, &message).await {
        Err(BrokerError::Unroutable { routing_key, .. }) => assert_eq!(routing_key, nowhere),
        other => panic!("expected Unroutable, got {other:?}"),
    }
    // The channel stays usable after a returned message.
    let queue = unique("after-return");
    declare_quorum_queue(publisher.channel(), &queue, &spec())
        .await
        .expect("declared");
    publisher
        .publish("", &queue, &message)
        .await
        .expect("confirmed");
    let _ = publisher
        .channel()
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
}

#[tokio::test]
async fn an_unreachable_broker_is_named_without_its_password() {
    let url = SecretString::from("amqp://ops:s3cr3t-pw@127.0.0.1:1/%2f".to_owned());
    let error = connect(
        std::slice::from_ref(&url),
        "bb2snyk-test",
        Reconnect {
            attempts: 1,
            max_delay: Duration::from_millis(100),
        },
    )
    .await
    .expect_err("nothing listens on port 1");
    let message = error.to_string();
    assert!(
        message.starts_with("cannot reach RabbitMQ at amqp://ops:***@127.0.0.1:1/%2f"),
        "{message}"
    );
    assert!(message.contains("AMQP_URL"), "{message}");
    assert!(!format!("{message} {error:?}").contains("s3cr3t-pw"));
}

#[tokio::test]
async fn a_connection_down_past_its_limit_is_reported_stalled_and_a_live_one_never_is() {
    let (url, broker_at) = broker();
    let proxy = TcpProxy::start(&broker_at).await;
    let mut through = url.clone();
    let _ = through.set_port(Some(proxy.addr().port()));
    // lapin keeps trying far longer than the limit below: only the watchdog can end the wait.
    let connection = connect(
        &[SecretString::from(through.to_string())],
        "bb2snyk-test-stalled",
        Reconnect {
            attempts: 100,
            max_delay: Duration::from_millis(500),
        },
    )
    .await
    .expect("connects through the proxy");
    let limit = Duration::from_secs(2);
    assert!(
        tokio::time::timeout(Duration::from_secs(4), stalled(&connection, limit))
            .await
            .is_err(),
        "a connected connection is never stalled"
    );
    proxy.stop();
    let error = tokio::time::timeout(Duration::from_secs(30), stalled(&connection, limit))
        .await
        .expect("reported within the deadline");
    assert!(
        matches!(error, BrokerError::Stalled(d) if d == limit),
        "{error}"
    );
}

/// The test broker's URL, and its `host:port` for a proxy to stand in front of.
fn broker() -> (url::Url, String) {
    let url = url::Url::parse(secrecy::ExposeSecret::expose_secret(&amqp_url())).expect("AMQP URL");
    let at = format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(5672)
    );
    (url, at)
}

/// The broker behind two proxies, as two nodes of a cluster: the URL of the one at `proxy`.
fn node_url(proxy: &TcpProxy) -> SecretString {
    let (mut url, _) = broker();
    let _ = url.set_host(Some("127.0.0.1"));
    let _ = url.set_port(Some(proxy.addr().port()));
    SecretString::from(url.to_string())
}

#[tokio::test]
async fn a_cluster_s_nodes_are_tried_in_order_and_a_lost_node_is_left_for_the_next() {
    let (_, broker_at) = broker();
    let (first, second) = (
        TcpProxy::start(&broker_at).await,
        TcpProxy::start(&broker_at).await,
    );
    let nodes = [node_url(&first), node_url(&second)];
    let reconnect = Reconnect {
        attempts: 8,
        max_delay: Duration::from_millis(500),
    };

    // In order: the first node takes the connection, so the second going away leaves it alone.
    let on_first = connect(&nodes, "bb2snyk-test-cluster", reconnect)
        .await
        .expect("the first node");
    second.stop();
    let channel = on_first
        .create_channel()
        .await
        .expect("a channel on the first node");
    let queue = unique("cluster");
    declare_quorum_queue(&channel, &queue, &spec())
        .await
        .expect("declared through the first node");
    second.resume().await;

    // The first node goes away: its connection gives up after a few tries (not the configured eight),
    // and a new connection finds the second.
    first.stop();
    let budget = reconnect.per_connection(nodes.len()).budget();
    assert!(budget < reconnect.budget(), "{budget:?}");
    let lost = tokio::time::timeout(budget * 2, stalled(&on_first, budget)).await;
    assert!(
        lost.is_ok(),
        "the lost node's connection is reported within {budget:?}"
    );
    let on_second = connect(&nodes, "bb2snyk-test-cluster", reconnect)
        .await
        .expect("the second node, the first being down");
    let channel = on_second
        .create_channel()
        .await
        .expect("a channel on the second node");
    crate::common::passive(&channel, &queue)
        .await
        .expect("the queue declared through the first node, seen through the second");
    let _ = channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;

    // No node at all: an error naming the last one tried, without its password.
    second.stop();
    let error = connect(
        &nodes,
        "bb2snyk-test-cluster",
        Reconnect {
            attempts: 1,
            max_delay: Duration::from_millis(100),
        },
    )
    .await
    .expect_err("no node listens");
    assert!(matches!(error, BrokerError::Unreachable { .. }), "{error}");
}
