//! The one set of rules that turns a handler's [`Outcome`] into messages to send before the delivery is
//! acked. Both transports follow it, so `bb2snyk run` behaves as the services do.

use std::{panic::AssertUnwindSafe, sync::Arc, time::Instant};

use bb2snyk_telemetry::metrics;
use futures_util::FutureExt;
use tracing::Instrument;

use crate::{Handler, Message, Outcome, RetryPolicy, Route};

/// Runs `handler` on `message` from work queue `queue` and settles its outcome, counting the message and
/// timing the handler for `/metrics`. Both transports call this. Every log line of the unit of work carries
/// the delivery's span: queue, type, message id, run id and attempt.
pub async fn handle(
    policy: &RetryPolicy,
    queue: &str,
    handler: &Arc<dyn Handler>,
    message: &Message,
) -> Vec<Settlement> {
    let span = tracing::info_span!(
        "delivery",
        queue,
        kind = %message.kind,
        message_id = %message.message_id,
        run = %message.correlation_id,
        attempt = message.attempt,
    );
    handle_in_span(policy, queue, handler, message)
        .instrument(span)
        .await
}

async fn handle_in_span(
    policy: &RetryPolicy,
    queue: &str,
    handler: &Arc<dyn Handler>,
    message: &Message,
) -> Vec<Settlement> {
    metrics::message(queue, &message.kind, "consumed");
    let started = Instant::now();
    let outcome = if message.body.len() > policy.max_body {
        Outcome::park(format!(
            "its body is {} bytes, over the {} a stage reads (pipeline.max_message_bytes)",
            message.body.len(),
            policy.max_body
        ))
    } else {
        // A handler that panics parks its message; the consumer goes on, and nothing is left unacked.
        match AssertUnwindSafe(handler.handle(message.clone()))
            .catch_unwind()
            .await
        {
            Ok(outcome) => outcome,
            Err(panic) => Outcome::park(format!("the handler panicked: {}", panic_text(&*panic))),
        }
    };
    metrics::handled(queue, &message.kind, started.elapsed());
    let retried = matches!(outcome, Outcome::Retry { .. } | Outcome::Defer { .. });
    let mut settlements = settle(policy, queue, message, outcome);
    // What the broker cannot carry (an AMQP short string holds 255 bytes) would fail every time it is
    // sent: the delivery is parked instead of returning to its queue for ever.
    if let Some(problem) = settlements.iter().find_map(|s| unsendable(s.message())) {
        settlements = vec![Settlement::Parked {
            queue: queue.to_owned(),
            message: message.clipped(),
            reason: bounded(format!("its follow-ups cannot be sent: {problem}")),
        }];
    }
    let parked = settlements.iter().any(|s| {
        matches!(s, Settlement::Parked { message: m, .. } if m.message_id == message.message_id)
    });
    let counted = match (parked, retried) {
        (true, _) => "parked",
        (false, true) => "retried",
        (false, false) => "acked",
    };
    metrics::message(queue, &message.kind, counted);
    settlements
}

/// `message` to `queue` after `delay`: through a delay queue when the queue has them, else the retry tier
/// that fits.
fn later(
    policy: &RetryPolicy,
    queue: String,
    delay: std::time::Duration,
    message: Message,
) -> Settlement {
    if policy.is_delayed(&queue) {
        Settlement::Delayed {
            index: policy.delay_for(delay),
            queue,
            message,
        }
    } else {
        Settlement::Later {
            tier: policy.tier_for_delay(delay),
            queue,
            message,
        }
    }
}

/// The longest value of an AMQP short string (message id, correlation id, type).
pub const MAX_PROPERTY: usize = 255;
/// Park reasons (a header) are cut to this many bytes.
pub const MAX_REASON: usize = 1024;

/// Why `message` cannot be published as it is, if it cannot.
pub(crate) fn unsendable(message: &Message) -> Option<String> {
    [
        ("type", &message.kind),
        ("message_id", &message.message_id),
        ("correlation_id", &message.correlation_id),
    ]
    .into_iter()
    .find(|(_, value)| value.len() > MAX_PROPERTY)
    .map(|(name, value)| {
        format!(
            "its {name} would be {} bytes; AMQP carries at most {MAX_PROPERTY}",
            value.len()
        )
    })
}

impl Message {
    /// The message with every property cut to what AMQP carries, so it can always be parked.
    fn clipped(&self) -> Self {
        let clip = |s: &String| cut(s, MAX_PROPERTY).to_owned();
        Self {
            kind: clip(&self.kind),
            message_id: clip(&self.message_id),
            correlation_id: clip(&self.correlation_id),
            attempt: self.attempt,
            body: self.body.clone(),
        }
    }
}

impl Settlement {
    fn message(&self) -> &Message {
        match self {
            Self::Work { message, .. }
            | Self::Later { message, .. }
            | Self::Delayed { message, .. }
            | Self::Event { message, .. }
            | Self::Parked { message, .. } => message,
        }
    }
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A park reason no longer than [`MAX_REASON`] bytes.
fn bounded(reason: String) -> String {
    if reason.len() <= MAX_REASON {
        return reason;
    }
    format!("{}…", cut(&reason, MAX_REASON - 3))
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned())
}

/// Where one message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// To a work queue at once.
    Work { queue: String, message: Message },
    /// Into a retry tier of a work queue; it comes back to that queue when the tier's time is up.
    Later {
        queue: String,
        tier: usize,
        message: Message,
    },
    /// Into a delay queue of a delayed work queue ([`crate::DELAYS`]); it comes back when that delay is up.
    Delayed {
        queue: String,
        index: usize,
        message: Message,
    },
    /// To the events exchange, under a routing key such as `import.completed`.
    Event {
        routing_key: String,
        message: Message,
    },
    /// Into a work queue's parking queue, with the reason, for a person to look at and replay.
    Parked {
        queue: String,
        message: Message,
        reason: String,
    },
}

/// What to send for `outcome` of `message`, taken from work queue `queue`. The delivery is acked once all of
/// it is confirmed; if any of it fails, the delivery is returned to its queue instead.
pub fn settle(
    policy: &RetryPolicy,
    queue: &str,
    message: &Message,
    outcome: Outcome,
) -> Vec<Settlement> {
    match outcome {
        Outcome::Ack(publishes) => publishes
            .into_iter()
            .map(|p| match (p.to, p.delay) {
                (Route::Event(routing_key), _) => Settlement::Event {
                    routing_key,
                    message: p.message,
                },
                (Route::Queue(queue), None) => Settlement::Work {
                    queue,
                    message: p.message,
                },
                (Route::Queue(queue), Some(delay)) => later(policy, queue, delay, p.message),
            })
            .collect(),
        Outcome::Retry { reason } => {
            let tries = message.attempt.saturating_add(1);
            if tries >= policy.max_attempts {
                return vec![Settlement::Parked {
                    queue: queue.to_owned(),
                    message: message.clone(),
                    reason: bounded(format!("gave up after {tries} tries: {reason}")),
                }];
            }
            tracing::info!(%queue, message_id = %message.message_id, tries, %reason, "will retry");
            vec![Settlement::Later {
                queue: queue.to_owned(),
                tier: policy.tier(message.attempt),
                message: Message {
                    attempt: tries,
                    ..message.clone()
                },
            }]
        }
        Outcome::Defer { after } => {
            tracing::info!(%queue, message_id = %message.message_id, ?after, "deferred");
            vec![later(policy, queue.to_owned(), after, message.clone())]
        }
        Outcome::Park { reason } => vec![Settlement::Parked {
            queue: queue.to_owned(),
            message: message.clone(),
            reason: bounded(reason),
        }],
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::Publish;

    fn message(attempt: u32) -> Message {
        Message {
            kind: "repo.import.v1".into(),
            message_id: "m".into(),
            correlation_id: "run".into(),
            attempt,
            body: b"{}".to_vec(),
        }
    }

    #[test]
    fn retries_climb_the_tiers_then_park_with_the_count() {
        let policy = RetryPolicy::default();
        let first = settle(&policy, "importer", &message(0), Outcome::retry("503"));
        assert_eq!(
            first,
            vec![Settlement::Later {
                queue: "importer".into(),
                tier: 0,
                message: message(1)
            }]
        );
        let fifth = settle(&policy, "importer", &message(4), Outcome::retry("503"));
        assert!(
            matches!(&fifth[..], [Settlement::Later { tier: 3, message, .. }] if message.attempt == 5)
        );
        let sixth = settle(&policy, "importer", &message(5), Outcome::retry("503"));
        assert_eq!(
            sixth,
            vec![Settlement::Parked {
                queue: "importer".into(),
                message: message(5),
                reason: "gave up after 6 tries: 503".into()
            }]
        );
    }

    /// A handler whose outcome the test chooses, or that panics.
    struct Scripted(Option<Outcome>);

    impl Handler for Scripted {
        fn handle(&self, _: Message) -> futures_util::future::BoxFuture<'_, Outcome> {
            let outcome = self.0.clone();
            Box::pin(async move { outcome.unwrap_or_else(|| panic!("a bug in the handler")) })
        }
    }

    async fn run(outcome: Option<Outcome>, message: Message) -> Vec<Settlement> {
        let handler: Arc<dyn Handler> = Arc::new(Scripted(outcome));
        handle(&RetryPolicy::default(), "importer", &handler, &message).await
    }

    fn reason(settled: &[Settlement]) -> &str {
        match settled {
            [Settlement::Parked { reason, .. }] => reason,
            other => panic!("expected it parked, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn nothing_a_message_carries_can_wedge_its_stage() {
        // A panic parks the delivery with the panic's message.
        let settled = run(None, message(0)).await;
        assert!(reason(&settled).contains("the handler panicked: a bug in the handler"));

        // A body over the limit is parked unread.
        let mut big = message(0);
        big.body = vec![b' '; RetryPolicy::default().max_body + 1];
        let ok = Some(Outcome::ack());
        assert!(reason(&run(ok.clone(), big).await).contains("over the 1048576 a stage reads"));

        // A follow-up AMQP cannot carry (a 400-byte run id in its correlation id) parks the delivery.
        let mut long = message(0);
        long.correlation_id = "r".repeat(400);
        let follow_up = Some(Outcome::Ack(vec![Publish::to_queue("importer", long)]));
        let settled = run(follow_up, message(0)).await;
        assert!(reason(&settled).contains("correlation_id would be 400 bytes"));

        // Reasons are bounded, and an attempt count at its maximum does not overflow.
        let mut worn = message(u32::MAX);
        worn.attempt = u32::MAX;
        let settled = run(Some(Outcome::retry("x".repeat(5000))), worn).await;
        assert!(reason(&settled).len() <= MAX_REASON);
        assert!(reason(&settled).starts_with("gave up after"));
    }

    #[test]
    fn follow_ups_go_now_or_through_the_tier_that_fits_their_delay() {
        let publish = |delay| Publish {
            delay,
            ..Publish::to_queue("importer", message(0))
        };
        let settled = settle(
            &RetryPolicy::default(),
            "discoverer",
            &message(0),
            Outcome::Ack(vec![publish(None), publish(Some(Duration::from_secs(20)))]),
        );
        assert!(matches!(&settled[0], Settlement::Work { queue, .. } if queue == "importer"));
        assert!(matches!(&settled[1], Settlement::Later { tier: 1, .. }));
        assert!(settle(&RetryPolicy::default(), "q", &message(0), Outcome::ack()).is_empty());
        // Deferred: back through the tier that fits, its attempts untouched.
        let deferred = settle(
            &RetryPolicy::default(),
            "importer",
            &message(2),
            Outcome::defer(Duration::from_secs(45)),
        );
        assert_eq!(
            deferred,
            vec![Settlement::Later {
                queue: "importer".into(),
                tier: 1,
                message: message(2)
            }]
        );
    }
}
