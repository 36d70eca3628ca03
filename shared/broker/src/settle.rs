//! The one set of rules that turns a handler's [`Outcome`] into messages to send before the delivery is
//! acked. Both transports follow it, so `bb2snyk run` behaves as the services do.

use std::{sync::Arc, time::Instant};

use bb2snyk_telemetry::metrics;
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
    let outcome = handler.handle(message.clone()).await;
    metrics::handled(queue, &message.kind, started.elapsed());
    let retried = matches!(outcome, Outcome::Retry { .. });
    let settlements = settle(policy, queue, message, outcome);
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
                (Route::Queue(queue), Some(delay)) => Settlement::Later {
                    queue,
                    tier: policy.tier_for_delay(delay),
                    message: p.message,
                },
            })
            .collect(),
        Outcome::Retry { reason } => {
            let tries = message.attempt + 1;
            if tries >= policy.max_attempts {
                return vec![Settlement::Parked {
                    queue: queue.to_owned(),
                    message: message.clone(),
                    reason: format!("gave up after {tries} tries: {reason}"),
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
        Outcome::Park { reason } => vec![Settlement::Parked {
            queue: queue.to_owned(),
            message: message.clone(),
            reason,
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
    }
}
