//! Commands for a fleet on RabbitMQ: `discover` starts a run, `topology` declares the queues, `replay`
//! moves parked messages back to work. `status` is in [`crate::status`]; the broker crate's admin module
//! does the queue work for all of them.

use std::sync::Arc;

use bb2snyk_broker::{
    AmqpBroker, Broker, Message, Reconnect,
    admin::{Admin, Management},
};
use bb2snyk_messages::{Body, QUEUES, RunRequested};
use bb2snyk_settings::Settings;
use serde_json::Value;

use crate::{
    Failure,
    cli::{DiscoverArgs, ReplayArgs},
};

/// A short-lived connection for one operator command, and the broker on it (topology declared).
async fn connect(settings: &Settings, what: &str) -> Result<(Admin, AmqpBroker), Failure> {
    let reconnect = Reconnect {
        attempts: 2,
        ..Reconnect::default()
    };
    let name = format!("bb2snyk-{what}/{}", settings.amqp.prefix);
    let connection =
        Arc::new(bb2snyk_broker::connect(&settings.amqp.urls, &name, reconnect).await?);
    let topology = bb2snyk_service::topology(settings);
    let broker = AmqpBroker::new(connection.clone(), topology.clone(), "bb2snyk").await?;
    let http = crate::http(settings)?;
    let management = Management::for_amqp_urls(http, &settings.amqp.urls);
    Ok((Admin::new(connection, topology, management), broker))
}

/// For `status`, which reads and never publishes.
pub(crate) async fn admin(settings: &Settings) -> Result<Admin, Failure> {
    Ok(connect(settings, "status").await?.0)
}

/// Publishes a run request for the services, confirmed, and prints its run id.
pub async fn discover(settings: &Settings, args: &DiscoverArgs) -> Result<(), Failure> {
    // The services apply their own `policy.file`; one given here is checked before anything is asked.
    bb2snyk_policy::Policy::from_settings(settings)?;
    let (admin, broker) = connect(settings, "discover").await?;
    let run_id = bb2snyk_messages::new_run_id();
    let body = Body::RunRequested(RunRequested {
        run_id: run_id.clone(),
        group_id: args.group.group_id.clone(),
        source_org_id: args.group.source_org_public_id.clone(),
        filters: args.filters.given(),
        sync: args.sync.given(settings),
    });
    let broker: &dyn Broker = &broker;
    broker.publish(body.queue(), &body.to_message()).await?;
    admin.close().await;
    println!("{run_id}");
    eprintln!("Run {run_id} requested; follow it with: bb2snyk status --run {run_id}");
    Ok(())
}

/// Declares the whole topology (idempotent) and lists the queues.
pub async fn topology(settings: &Settings) -> Result<(), Failure> {
    let (admin, _broker) = connect(settings, "topology").await?;
    for name in admin.queue_names() {
        println!("{name}");
    }
    println!("{} (exchange)", admin.topology().events());
    admin.close().await;
    Ok(())
}

/// Moves parked messages back to their work queue, attempts reset and `message_id` kept; those that do
/// not match stay parked.
pub async fn replay(settings: &Settings, args: &ReplayArgs) -> Result<(), Failure> {
    let filters = args
        .filter
        .iter()
        .map(|f| {
            f.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| Failure::Config(format!("--filter {f:?} is not KEY=VALUE")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let queues: Vec<&str> = match &args.queue {
        Some(q) if QUEUES.contains(&q.as_str()) => vec![q.as_str()],
        Some(q) => {
            return Err(Failure::Config(format!(
                "--queue {q:?} is not one of {}",
                QUEUES.join(", ")
            )));
        }
        None => QUEUES.to_vec(),
    };
    let (admin, broker) = connect(settings, "replay").await?;
    let mut moved = 0;
    for queue in queues {
        let limit = args.limit.unwrap_or(usize::MAX).saturating_sub(moved);
        moved += admin
            .replay(
                &broker,
                queue,
                limit,
                args.dry_run,
                |message| matches(message, args.run.as_deref(), &filters),
                |message, reason| {
                    println!(
                        "{} {queue} {} {}: was parked for {reason}",
                        if args.dry_run { "would move" } else { "moved" },
                        message.message_id,
                        message.kind
                    );
                },
            )
            .await?;
    }
    admin.close().await;
    println!(
        "{moved} message(s) {}",
        if args.dry_run {
            "would move (dry run)"
        } else {
            "moved back to work"
        }
    );
    Ok(())
}

/// True when the message belongs to `run` (if given) and every `key=value` holds in its JSON body; a
/// dotted key reads a nested field (`target.name=api`). Any message type can be parked, malformed ones
/// included, so this reads the body as plain JSON rather than as one of our types.
fn matches(message: &Message, run: Option<&str>, filters: &[(String, String)]) -> bool {
    if run.is_some_and(|run| message.correlation_id != run) {
        return false;
    }
    if filters.is_empty() {
        return true;
    }
    let Ok(body) = serde_json::from_slice::<Value>(&message.body) else {
        return false;
    };
    filters.iter().all(|(key, want)| {
        let pointer = format!("/{}", key.replace('.', "/"));
        match body.pointer(&pointer) {
            Some(Value::String(s)) => s == want,
            Some(other) => serde_json::from_str::<Value>(want).is_ok_and(|w| &w == other),
            None => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_read_nested_fields_and_the_run() {
        let message = Message {
            kind: "any.kind.v1".into(),
            message_id: "m".into(),
            correlation_id: "run-1".into(),
            attempt: 3,
            body: br#"{"org_id":"o","target":{"name":"api","owner":"acme"},"failed_jobs":2}"#
                .to_vec(),
        };
        let f = |k: &str, v: &str| vec![(k.to_owned(), v.to_owned())];
        assert!(matches(&message, None, &[]));
        assert!(matches(&message, Some("run-1"), &f("target.name", "api")));
        assert!(matches(&message, None, &f("failed_jobs", "2")));
        assert!(!matches(&message, Some("run-2"), &[]));
        assert!(!matches(&message, None, &f("target.name", "web")));
        assert!(!matches(&message, None, &f("missing", "x")));
    }
}
