//! The pipeline on RabbitMQ: declares the topology, publishes [`Message`]s with confirms, and serves a
//! [`Handler`] on a work queue, acking each delivery only after everything its outcome sends is confirmed.
//!
//! Over 400 lines on purpose: publishing with confirms and settling a delivery share the channel and its
//! failure rules; split apart, the ack-after-confirm order they keep together would be hard to see.

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use lapin::{
    Channel, Connection, ExchangeKind,
    message::Delivery,
    options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
        BasicQosOptions, ExchangeDeclareOptions,
    },
    types::{AMQPValue, FieldTable},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    BrokerError, Handler, Message, Outgoing, Publisher, QueueSpec, Settlement, Topology,
    declare_quorum_queue,
};

/// Tries of the retry tiers so far.
pub const ATTEMPT_HEADER: &str = "x-bb2snyk-attempt";
/// Why a message was parked.
pub const REASON_HEADER: &str = "x-bb2snyk-reason";
/// Deliveries after which RabbitMQ parks a message that keeps crashing its consumer.
const DELIVERY_LIMIT: u32 = 20;

/// The longest a cancel or close waits for the broker's answer.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct AmqpBroker {
    connection: Arc<Connection>,
    publisher: Publisher,
    topology: Arc<Topology>,
}

impl AmqpBroker {
    /// Declares every queue of `topology` (idempotent: every service does it at start) and opens the
    /// confirm channel.
    pub async fn new(
        connection: Arc<Connection>,
        topology: Topology,
        app_id: &str,
    ) -> Result<Self, BrokerError> {
        let publisher = Publisher::new(&connection, app_id).await?;
        declare(&connection, publisher.channel(), &topology).await?;
        Ok(Self {
            connection,
            publisher,
            topology: Arc::new(topology),
        })
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Sends `message` to work queue `queue` and waits for the broker's confirm.
    pub async fn publish(&self, queue: &str, message: &Message) -> Result<(), BrokerError> {
        self.send("", &self.topology.work(queue), message, None)
            .await
    }

    /// Sends one settlement, confirmed.
    pub async fn apply(&self, settlement: &Settlement) -> Result<(), BrokerError> {
        match settlement {
            Settlement::Work { queue, message } => self.publish(queue, message).await,
            Settlement::Later {
                queue,
                tier,
                message,
            } => {
                self.send("", &self.topology.retry_queue(queue, *tier), message, None)
                    .await
            }
            Settlement::Delayed {
                queue,
                index,
                message,
            } => {
                self.send("", &self.topology.delay_queue(queue, *index), message, None)
                    .await
            }
            Settlement::Parked {
                queue,
                message,
                reason,
            } => {
                tracing::warn!(%queue, message_id = %message.message_id, %reason, "parked");
                self.send("", &self.topology.parked(queue), message, Some(reason))
                    .await
            }
            Settlement::Event {
                routing_key,
                message,
            } => {
                self.send(&self.topology.events(), routing_key, message, None)
                    .await
            }
        }
    }

    async fn send(
        &self,
        exchange: &str,
        routing_key: &str,
        message: &Message,
        reason: Option<&str>,
    ) -> Result<(), BrokerError> {
        // lapin cannot encode an overlong short string; refused here rather than failing in the encoder.
        if let Some(problem) = crate::settle::unsendable(message) {
            return Err(BrokerError::Unsendable(problem));
        }
        let mut headers = FieldTable::default();
        headers.insert(ATTEMPT_HEADER.into(), AMQPValue::LongUInt(message.attempt));
        if let Some(reason) = reason {
            headers.insert(REASON_HEADER.into(), AMQPValue::LongString(reason.into()));
        }
        let outgoing = Outgoing {
            body: &message.body,
            message_id: &message.message_id,
            correlation_id: &message.correlation_id,
            kind: &message.kind,
            headers,
            // The default exchange routes work by queue name, and a missing queue is an error; events may
            // have no listener.
            mandatory: exchange.is_empty(),
        };
        self.publisher
            .publish(exchange, routing_key, &outgoing)
            .await
    }

    /// Serves `handler` on work queue `queue` with `concurrency` deliveries in flight (the prefetch), until
    /// `shutdown`. Then it cancels the consumer and gives in-flight deliveries `drain` to finish; whatever
    /// is still unacked goes back to the queue, which is safe because handlers are idempotent.
    pub async fn serve(
        &self,
        queue: &str,
        handler: Arc<dyn Handler>,
        concurrency: u16,
        shutdown: CancellationToken,
        drain: Duration,
    ) -> Result<(), BrokerError> {
        let channel = self.connection.create_channel().await?;
        channel
            .basic_qos(concurrency.max(1), BasicQosOptions::default())
            .await?;
        let tag = format!("{queue}-{}", std::process::id());
        let mut deliveries = channel
            .basic_consume(
                self.topology.work(queue).as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let tracker = TaskTracker::new();
        // A channel lapin leaves reconnecting for good delivers nothing and reports nothing
        // (amqp-rs/lapin#450): watched, it ends the serving, and the service starts again.
        let mut check = tokio::time::interval(Duration::from_secs(1));
        let mut down_since: Option<tokio::time::Instant> = None;
        let result = loop {
            let delivery = tokio::select! {
                _ = shutdown.cancelled() => break Ok(()),
                _ = check.tick() => {
                    if channel.status().connected() && self.publisher.channel().status().connected() {
                        down_since = None;
                    } else if down_since
                        .get_or_insert_with(tokio::time::Instant::now)
                        .elapsed()
                        >= crate::amqp::RECOVERY_WAIT
                    {
                        tracing::warn!(%queue, "the broker channels stayed down; starting again");
                        break Err(BrokerError::Stalled(crate::amqp::RECOVERY_WAIT));
                    }
                    continue;
                }
                next = deliveries.next() => next,
            };
            let delivery = match delivery {
                Some(Ok(delivery)) => delivery,
                Some(Err(e)) => {
                    // lapin recovers the connection, channel and consumer; unacked deliveries come back.
                    tracing::warn!(error = %e, %queue, "consumer interrupted; waiting for recovery");
                    match crate::amqp::recovered(&channel, e).await {
                        Ok(()) => {
                            tracing::info!(%queue, "consumer recovered");
                            continue;
                        }
                        Err(e) => break Err(e),
                    }
                }
                None => break Ok(()),
            };
            let (broker, handler, queue) = (self.clone(), handler.clone(), queue.to_owned());
            tracker.spawn(async move { broker.settle_delivery(&queue, handler, delivery).await });
        };
        // Bounded: on a channel whose recovery hangs, these would wait for ever.
        let _ = tokio::time::timeout(
            CLOSE_WAIT,
            channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()),
        )
        .await;
        tracker.close();
        if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
            tracing::warn!(%queue, ?drain, "in-flight deliveries did not finish; the broker will redeliver them");
        }
        let _ = tokio::time::timeout(CLOSE_WAIT, channel.close(200, "shutdown".into())).await;
        result
    }

    async fn settle_delivery(&self, queue: &str, handler: Arc<dyn Handler>, delivery: Delivery) {
        let message = decode(&delivery);
        let mut sent = Ok(());
        for settlement in
            crate::settle::handle(&self.topology.retry, queue, &handler, &message).await
        {
            sent = self.apply(&settlement).await;
            if sent.is_err() {
                break;
            }
        }
        let done = match sent {
            Ok(()) => delivery.acker.ack(BasicAckOptions::default()).await,
            Err(e) => {
                tracing::warn!(error = %e, %queue, message_id = %message.message_id, "could not settle; requeued");
                delivery
                    .acker
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..BasicNackOptions::default()
                    })
                    .await
            }
        };
        if let Err(e) = done {
            // The channel is gone; the broker redelivers the message to another consumer.
            tracing::warn!(error = %e, %queue, "could not ack; the broker will redeliver");
        }
    }
}

impl AmqpBroker {
    /// Ready messages in work queue `queue`, by a passive declare on a channel of its own.
    pub async fn waiting(&self, queue: &str) -> Option<u64> {
        let channel = self.connection.create_channel().await.ok()?;
        let options = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let depth = channel
            .queue_declare(
                self.topology.work(queue).as_str().into(),
                options,
                FieldTable::default(),
            )
            .await
            .ok()
            .map(|q| u64::from(q.message_count()));
        let _ = channel.close(200, "counted".into()).await;
        depth
    }
}

impl crate::Broker for AmqpBroker {
    fn waiting<'a>(&'a self, queue: &'a str) -> futures_util::future::BoxFuture<'a, Option<u64>> {
        Box::pin(AmqpBroker::waiting(self, queue))
    }

    fn publish<'a>(
        &'a self,
        queue: &'a str,
        message: &'a Message,
    ) -> futures_util::future::BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(AmqpBroker::publish(self, queue, message))
    }

    fn serve<'a>(
        &'a self,
        queue: &'a str,
        handler: Arc<dyn Handler>,
        concurrency: u16,
        shutdown: CancellationToken,
        drain: Duration,
    ) -> futures_util::future::BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(AmqpBroker::serve(
            self,
            queue,
            handler,
            concurrency,
            shutdown,
            drain,
        ))
    }
}

/// A delivery as a [`Message`]; missing properties become empty, for the handler to park.
pub fn decode(delivery: &Delivery) -> Message {
    let p = &delivery.properties;
    let text = |v: Option<&lapin::types::ShortString>| v.map(|s| s.to_string()).unwrap_or_default();
    let attempt = p
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(ATTEMPT_HEADER))
        .and_then(|v| match v {
            AMQPValue::LongUInt(n) => Some(*n),
            AMQPValue::LongLongInt(n) => u32::try_from(*n).ok(),
            AMQPValue::LongInt(n) => u32::try_from(*n).ok(),
            _ => None,
        })
        .unwrap_or(0);
    Message {
        kind: text(p.kind().as_ref()),
        message_id: text(p.message_id().as_ref()),
        correlation_id: text(p.correlation_id().as_ref()),
        attempt,
        body: delivery.data.clone(),
    }
}

/// Why a parked delivery was parked: our reason header, or RabbitMQ's own when its delivery limit did it.
pub fn parked_reason(delivery: &Delivery) -> String {
    let headers = delivery.properties.headers().as_ref();
    match headers.and_then(|h| h.inner().get(REASON_HEADER)) {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        _ if headers.is_some_and(|h| h.inner().contains_key("x-death")) => format!(
            "RabbitMQ dead-lettered it after {DELIVERY_LIMIT} deliveries (a consumer kept failing on it)"
        ),
        _ => "no reason recorded".to_owned(),
    }
}

/// Deliveries of a parked message before RabbitMQ would drop it: never reached. RabbitMQ 4 gives every
/// quorum queue a delivery limit of 20 by default, and each `status` or `replay` peek is a delivery; without
/// this, a parked message would vanish after twenty peeks.
const PARKED_DELIVERY_LIMIT: u32 = 2_000_000_000;

/// Declares a parking queue with [`PARKED_DELIVERY_LIMIT`], on a channel of its own. One that an earlier
/// version made without the limit refuses those arguments (and closes the channel): it is then declared as
/// it is, and a RabbitMQ policy gives it the limit (docs/design.md says how).
async fn declare_parked(
    connection: &Connection,
    name: &str,
    base: &QueueSpec,
) -> Result<(), BrokerError> {
    let channel = connection.create_channel().await?;
    let spec = QueueSpec {
        delivery_limit: Some(PARKED_DELIVERY_LIMIT),
        ..base.clone()
    };
    let declared = declare_quorum_queue(&channel, name, &spec).await;
    let _ = channel.close(200, "declared".into()).await;
    if declared.is_ok() {
        return declared;
    }
    tracing::warn!(
        queue = %name,
        "this parking queue predates its delivery limit; on RabbitMQ 4 give it one with a policy (see docs/design.md, \"Durable memory\")"
    );
    let channel = connection.create_channel().await?;
    let declared = declare_quorum_queue(&channel, name, base).await;
    let _ = channel.close(200, "declared".into()).await;
    declared
}

/// Every queue of the topology and the events exchange, declared idempotently.
async fn declare(
    connection: &Connection,
    channel: &Channel,
    topology: &Topology,
) -> Result<(), BrokerError> {
    for queue in &topology.queues {
        let base = QueueSpec {
            expires: topology.expires,
            ..QueueSpec::default()
        };
        declare_parked(connection, &topology.parked(queue), &base).await?;
        declare_quorum_queue(
            channel,
            &topology.work(queue),
            &QueueSpec {
                delivery_limit: Some(DELIVERY_LIMIT),
                dead_letter: Some((String::new(), topology.parked(queue))),
                ..base.clone()
            },
        )
        .await?;
        if topology.retry.is_delayed(queue) {
            for (index, ttl) in crate::DELAYS.iter().enumerate() {
                declare_quorum_queue(
                    channel,
                    &topology.delay_queue(queue, index),
                    &QueueSpec {
                        message_ttl: Some(*ttl),
                        dead_letter: Some((String::new(), topology.work(queue))),
                        ..base.clone()
                    },
                )
                .await?;
            }
        }
        for (tier, ttl) in topology.retry.tiers.iter().enumerate() {
            declare_quorum_queue(
                channel,
                &topology.retry_queue(queue, tier),
                &QueueSpec {
                    message_ttl: Some(*ttl),
                    dead_letter: Some((String::new(), topology.work(queue))),
                    ..base.clone()
                },
            )
            .await?;
        }
    }
    channel
        .exchange_declare(
            topology.events().as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(())
}
