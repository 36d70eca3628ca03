//! What handlers see and say, whatever the transport.

use std::time::Duration;

use futures_util::future::BoxFuture;

/// A message as the broker carries it: a JSON body and the properties every bb2snyk message has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The versioned type, e.g. `repo.import.v1`; also the body's `type` field.
    pub kind: String,
    /// Deterministic, so a redelivered or replayed message keeps its identity.
    pub message_id: String,
    /// The run id.
    pub correlation_id: String,
    /// How many times this message has been retried by the retry tiers (0 on first delivery).
    pub attempt: u32,
    pub body: Vec<u8>,
}

/// Where a published message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A work queue, by its short name (e.g. `importer`).
    Queue(String),
    /// The events exchange, under this routing key (e.g. `import.completed`), for ops tools that bind a queue
    /// to it; the broker confirms it, but nobody has to be listening.
    Event(String),
}

/// A message to send, now or (to a work queue) after `delay`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub to: Route,
    pub message: Message,
    /// Sent through the shortest retry tier at least this long (polls, pacing); `None` is at once.
    pub delay: Option<Duration>,
}

impl Publish {
    /// To work queue `queue`, at once.
    pub fn to_queue(queue: impl Into<String>, message: Message) -> Self {
        Self {
            to: Route::Queue(queue.into()),
            message,
            delay: None,
        }
    }

    /// To the events exchange under `routing_key`.
    pub fn event(routing_key: impl Into<String>, message: Message) -> Self {
        Self {
            to: Route::Event(routing_key.into()),
            message,
            delay: None,
        }
    }
}

/// What became of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done; publish these first (each confirmed), then ack.
    Ack(Vec<Publish>),
    /// A passing failure: try again later under the retry policy, or park once attempts run out.
    Retry { reason: String },
    /// A permanent failure: keep the message in the parking queue with this reason for a person to replay.
    Park { reason: String },
    /// Not a failure: the message comes back after at least `after` (through the retry tier that fits),
    /// spending no attempt; its delivery is freed now rather than held (a rate budget with no slot yet).
    Defer { after: Duration },
}

impl Outcome {
    pub fn ack() -> Self {
        Self::Ack(Vec::new())
    }

    pub fn retry(reason: impl Into<String>) -> Self {
        Self::Retry {
            reason: reason.into(),
        }
    }

    pub fn park(reason: impl Into<String>) -> Self {
        Self::Park {
            reason: reason.into(),
        }
    }

    pub fn defer(after: Duration) -> Self {
        Self::Defer { after }
    }

    /// A failure: retried when it may pass (`transient`), parked with its reason when it will not.
    pub fn failed(transient: bool, reason: impl Into<String>) -> Self {
        if transient {
            Self::retry(reason)
        } else {
            Self::park(reason)
        }
    }
}

/// Stage logic. It never sees the transport, so it is tested with plain values.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, message: Message) -> BoxFuture<'_, Outcome>;
}

/// A transport the stages run on: RabbitMQ in the services, memory in one process. The services, `bb2snyk
/// run` and `bb2snyk discover` serve and publish through this (see [`serve_stages`]), so they work on either.
pub trait Broker: Send + Sync {
    /// Sends `message` to work queue `queue`; returns once the transport has it (confirmed, on RabbitMQ).
    fn publish<'a>(
        &'a self,
        queue: &'a str,
        message: &'a Message,
    ) -> BoxFuture<'a, Result<(), crate::BrokerError>>;

    /// Messages waiting in work queue `queue` (ready, not yet delivered); `None` when the transport cannot
    /// tell now.
    fn waiting<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Option<u64>>;

    /// Runs `handler` on `queue`, `concurrency` deliveries at a time, until `shutdown`; in-flight deliveries
    /// get `drain` to finish.
    fn serve<'a>(
        &'a self,
        queue: &'a str,
        handler: std::sync::Arc<dyn Handler>,
        concurrency: u16,
        shutdown: tokio_util::sync::CancellationToken,
        drain: Duration,
    ) -> BoxFuture<'a, Result<(), crate::BrokerError>>;
}

/// A handler serving one work queue, `concurrency` deliveries at a time.
#[derive(Clone)]
pub struct Stage {
    pub queue: &'static str,
    pub handler: std::sync::Arc<dyn Handler>,
    pub concurrency: u16,
}

impl std::fmt::Debug for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stage")
            .field("queue", &self.queue)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

/// Serves every stage on `broker` until `shutdown`; the first to fail ends them all (a service's
/// supervisor then starts its next life).
pub async fn serve_stages(
    broker: &dyn Broker,
    stages: &[Stage],
    shutdown: &tokio_util::sync::CancellationToken,
    drain: Duration,
) -> Result<(), crate::BrokerError> {
    let serving = stages.iter().map(|stage| {
        broker.serve(
            stage.queue,
            stage.handler.clone(),
            stage.concurrency,
            shutdown.clone(),
            drain,
        )
    });
    futures_util::future::try_join_all(serving).await.map(drop)
}
