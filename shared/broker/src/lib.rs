//! Messaging for bb2snyk. Stage logic is written as [`Handler`]s that turn a [`Message`] into an
//! [`Outcome`] (ack with follow-ups, retry, park) and know nothing of the transport. Two transports run
//! them: RabbitMQ ([`amqp`]: persistent messages, publisher confirms with `mandatory`, durable quorum queues,
//! retry tiers as TTL queues, a parking queue per work queue) and an in-process one ([`memory`]) for
//! `bb2snyk run` and handler tests. Both settle outcomes with the same rules ([`settle`]).

pub mod admin;
pub mod amqp;
mod envelope;
pub mod memory;
mod settle;
mod topology;
mod transport;

pub use amqp::{
    BrokerError, Outgoing, Publisher, QueueSpec, Reconnect, connect, declare_quorum_queue, stalled,
};
pub use envelope::{Broker, Handler, Message, Outcome, Publish, Route, Stage, serve_stages};
pub use settle::{Settlement, settle};
pub use topology::{DELAYS, RetryPolicy, Topology};
pub use transport::{ATTEMPT_HEADER, AmqpBroker, REASON_HEADER, decode, parked_reason};
