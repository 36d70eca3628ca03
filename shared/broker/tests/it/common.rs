//! The stage both transports' tests run: its outcomes depend on the message id.

use std::sync::atomic::{AtomicU32, Ordering};

use bb2snyk_broker::{Handler, Message, Outcome, Publish};
use futures_util::future::BoxFuture;

/// The queue as the broker holds it, declared passively (an error if it does not exist).
pub async fn passive(channel: &lapin::Channel, queue: &str) -> lapin::Result<lapin::Queue> {
    let options = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue.into(), options, Default::default())
        .await
}

pub fn message(id: &str) -> Message {
    Message {
        kind: "test.v1".into(),
        message_id: id.into(),
        correlation_id: "run-1".into(),
        attempt: 0,
        body: id.as_bytes().to_vec(),
    }
}

/// `ok-*` sends one follow-up to `done` and a `test.done` event; `flaky-*` asks for a retry `flaky_failures` times, then succeeds;
/// `bad-*` is parked; anything else always asks for a retry.
pub struct Stage {
    pub handled: AtomicU32,
    pub flaky_failures: u32,
}

impl Stage {
    pub fn new(flaky_failures: u32) -> Self {
        Self {
            handled: AtomicU32::new(0),
            flaky_failures,
        }
    }

    pub fn handled(&self) -> u32 {
        self.handled.load(Ordering::SeqCst)
    }
}

impl Handler for Stage {
    fn handle(&self, m: Message) -> BoxFuture<'_, Outcome> {
        Box::pin(async move {
            self.handled.fetch_add(1, Ordering::SeqCst);
            let id = m.message_id.clone();
            if id.starts_with("ok") {
                Outcome::Ack(vec![
                    Publish::to_queue("done", message(&format!("{id}-next"))),
                    Publish::event("test.done", message(&format!("{id}-done"))),
                ])
            } else if id.starts_with("flaky") && m.attempt < self.flaky_failures {
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

/// Counts what arrives.
#[derive(Default)]
pub struct Sink(pub AtomicU32);

impl Sink {
    pub fn received(&self) -> u32 {
        self.0.load(Ordering::SeqCst)
    }
}

impl Handler for Sink {
    fn handle(&self, _m: Message) -> BoxFuture<'_, Outcome> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Outcome::ack() })
    }
}
