//! Commands for a fleet on RabbitMQ and Redis: `discover` starts a run, `status` shows queues, parked
//! reasons and a run's counts, `replay` moves parked messages back to work.

use std::{collections::BTreeMap, io::IsTerminal, sync::Arc, time::Duration};

use bb2snyk_broker::{AmqpBroker, Message, Reconnect, Topology, decode, parked_reason};
use bb2snyk_ledger::Ledger;
use bb2snyk_messages::{Body, DISCOVERER, QUEUES, RunRequested};
use bb2snyk_settings::Settings;
use bb2snyk_store::Store;
use lapin::{
    Channel, Connection,
    options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions},
    types::FieldTable,
};
use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::{Value, json};

use crate::{
    Failure,
    cli::{DiscoverArgs, ReplayArgs, StatusArgs},
};

/// Parked messages read for the reason tally; the count itself is exact.
const REASON_SAMPLE: usize = 200;

async fn connect(settings: &Settings, what: &str) -> Result<Arc<Connection>, Failure> {
    let reconnect = Reconnect {
        attempts: 2,
        ..Reconnect::default()
    };
    let name = format!("bb2snyk-{what}/{}", settings.amqp.prefix);
    Ok(Arc::new(
        bb2snyk_broker::connect(&settings.amqp.url, &name, reconnect).await?,
    ))
}

/// Publishes a run request for the services, confirmed, and prints its run id.
pub async fn discover(settings: &Settings, args: &DiscoverArgs) -> Result<(), Failure> {
    let connection = connect(settings, "discover").await?;
    let broker = AmqpBroker::new(
        connection.clone(),
        bb2snyk_service::topology(settings),
        "bb2snyk",
    )
    .await?;
    let run_id = bb2snyk_messages::new_run_id();
    let body = Body::RunRequested(RunRequested {
        run_id: run_id.clone(),
        group_id: args.group.group_id.clone(),
        source_org_id: args.group.source_org_public_id.clone(),
        filters: args.filters.to_message(),
    });
    broker.publish(DISCOVERER, &body.to_message()).await?;
    let _ = connection.close(200, "done".into()).await;
    println!("{run_id}");
    eprintln!("Run {run_id} requested; follow it with: bb2snyk status --run {run_id}");
    Ok(())
}

/// Declares the whole topology (idempotent) and lists the queues.
pub async fn topology(settings: &Settings) -> Result<(), Failure> {
    let connection = connect(settings, "topology").await?;
    let topology = bb2snyk_service::topology(settings);
    AmqpBroker::new(connection.clone(), topology.clone(), "bb2snyk").await?;
    let _ = connection.close(200, "done".into()).await;
    for queue in QUEUES {
        println!("{}", topology.work(queue));
        for tier in 0..topology.retry.tiers.len() {
            println!("{}", topology.retry_queue(queue, tier));
        }
        println!("{}", topology.parked(queue));
    }
    println!("{} (exchange)", topology.events());
    Ok(())
}

#[derive(Debug, Serialize)]
struct QueueStatus {
    name: String,
    ready: u64,
    /// Unknown without the management API.
    unacked: Option<u64>,
    consumers: u64,
    /// Messages per second published and acknowledged, from the management API.
    publish_rate: Option<f64>,
    ack_rate: Option<f64>,
}

/// Queue depths (management API when reachable, else a passive declare), parked counts with their most
/// frequent reasons, and a run's counts from the ledger.
pub async fn status(settings: &Settings, args: &StatusArgs) -> Result<(), Failure> {
    loop {
        let report = snapshot(settings, args).await?;
        let parked = report["parked"]["total"].as_u64().unwrap_or(0);
        if args.json {
            println!("{report}");
        } else {
            if args.watch && std::io::stdout().is_terminal() {
                print!("\x1b[2J\x1b[H");
            }
            print_status(&report);
        }
        if !args.watch {
            if args.fail_on_parked && parked > 0 {
                return Err(Failure::Failed(format!("{parked} message(s) parked")));
            }
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

async fn snapshot(settings: &Settings, args: &StatusArgs) -> Result<Value, Failure> {
    let topology = bb2snyk_service::topology(settings);
    let connection = connect(settings, "status").await?;
    let management = Management::from_settings(settings)?;
    let mut queues = Vec::new();
    let mut parked_total = 0;
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    let mut source = "broker and management API";
    for queue in QUEUES {
        let mut names = vec![topology.work(queue)];
        names.extend((0..topology.retry.tiers.len()).map(|t| topology.retry_queue(queue, t)));
        names.push(topology.parked(queue));
        for name in names {
            // Depths from the broker itself (exact now); unacked and rates from the management API,
            // whose statistics lag a few seconds.
            let mut status = passive(&connection, &name).await?;
            match management.queue(&name).await {
                Some(extra) => {
                    status.unacked = extra.unacked;
                    status.publish_rate = extra.publish_rate;
                    status.ack_rate = extra.ack_rate;
                }
                None => {
                    source =
                        "passive declare (management API unreachable: no unacked counts or rates)"
                }
            }
            if name == topology.parked(queue) {
                parked_total += status.ready + status.unacked.unwrap_or(0);
                for reason in peek_reasons(&connection, &name).await? {
                    *reasons.entry(reason).or_default() += 1;
                }
            }
            queues.push(status);
        }
    }
    let _ = connection.close(200, "done".into()).await;
    let mut top: Vec<(String, u64)> = reasons.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top.truncate(5);
    let run = match &args.run {
        Some(run) => {
            let store = Store::connect(&settings.redis.url, &settings.redis.prefix).await?;
            let counts = Ledger::new(store).counts(run).await?;
            json!({"id": run, "counts": counts})
        }
        None => Value::Null,
    };
    Ok(json!({
        "source": source,
        "queues": queues,
        "parked": {
            "total": parked_total,
            "reasons": top.iter().map(|(r, n)| json!({"reason": r, "count": n})).collect::<Vec<_>>(),
        },
        "run": run,
    }))
}

fn print_status(report: &Value) {
    println!("Queues ({})", report["source"].as_str().unwrap_or(""));
    println!(
        "  {:<44} {:>8} {:>8} {:>9} {:>9} {:>9}",
        "queue", "ready", "unacked", "consumers", "in/s", "acked/s"
    );
    let show = |v: &Value| match v {
        Value::Null => "-".to_owned(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    };
    for q in report["queues"].as_array().into_iter().flatten() {
        println!(
            "  {:<44} {:>8} {:>8} {:>9} {:>9} {:>9}",
            q["name"].as_str().unwrap_or(""),
            show(&q["ready"]),
            show(&q["unacked"]),
            show(&q["consumers"]),
            show(&q["publish_rate"]),
            show(&q["ack_rate"]),
        );
    }
    println!("Parked: {}", show(&report["parked"]["total"]));
    for r in report["parked"]["reasons"].as_array().into_iter().flatten() {
        println!(
            "  {:>5} × {}",
            show(&r["count"]),
            r["reason"].as_str().unwrap_or("")
        );
    }
    if let Some(counts) = report["run"]["counts"].as_object() {
        let n = |k: &str| counts.get(k).map(show).unwrap_or_default();
        println!(
            "Run {}: {} discovered, {} orgs ready, {} imported, {} failed (retrying), {} parked, {} in flight, {} skipped",
            report["run"]["id"].as_str().unwrap_or(""),
            n("discovered"),
            n("orgs"),
            n("imported"),
            n("failed"),
            n("parked"),
            n("requested"),
            n("skipped"),
        );
    }
}

/// A queue's depth and consumers without the management API; a missing queue counts as empty.
async fn passive(connection: &Connection, name: &str) -> Result<QueueStatus, Failure> {
    // A passive declare of a missing queue closes its channel, so each gets its own.
    let channel = connection.create_channel().await.map_err(amqp)?;
    let options = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let (ready, consumers) = match channel
        .queue_declare(name.into(), options, FieldTable::default())
        .await
    {
        Ok(q) => (u64::from(q.message_count()), u64::from(q.consumer_count())),
        Err(_) => (0, 0),
    };
    let _ = channel.close(200, "done".into()).await;
    Ok(QueueStatus {
        name: name.to_owned(),
        ready,
        unacked: None,
        consumers,
        publish_rate: None,
        ack_rate: None,
    })
}

/// The reasons of up to [`REASON_SAMPLE`] parked messages. They are read unacknowledged and go back when
/// the channel closes; a parking queue has no delivery limit, so reading never loses one.
async fn peek_reasons(connection: &Connection, queue: &str) -> Result<Vec<String>, Failure> {
    let channel = connection.create_channel().await.map_err(amqp)?;
    let mut reasons = Vec::new();
    while reasons.len() < REASON_SAMPLE {
        match channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: false })
            .await
        {
            Ok(Some(got)) => reasons.push(parked_reason(&got.delivery)),
            Ok(None) | Err(_) => break,
        }
    }
    let _ = channel.close(200, "done".into()).await;
    Ok(reasons)
}

fn amqp(e: lapin::Error) -> Failure {
    Failure::Unavailable(format!("RabbitMQ: {e}"))
}

/// RabbitMQ's management API, at the AMQP host on port 15672 with the same credentials and vhost.
struct Management {
    http: reqwest::Client,
    base: Option<url::Url>,
    vhost: String,
    user: String,
    password: Option<String>,
}

impl Management {
    fn from_settings(settings: &Settings) -> Result<Self, Failure> {
        let http = bb2snyk_http::client(&settings.http)?;
        let Ok(amqp) = url::Url::parse(settings.amqp.url.expose_secret()) else {
            return Ok(Self {
                http,
                base: None,
                vhost: String::new(),
                user: String::new(),
                password: None,
            });
        };
        let scheme = if amqp.scheme() == "amqps" {
            "https"
        } else {
            "http"
        };
        let host = amqp.host_str().unwrap_or("127.0.0.1");
        let base = url::Url::parse(&format!("{scheme}://{host}:15672/")).ok();
        let vhost = match amqp.path().trim_start_matches('/') {
            "" => "%2F".to_owned(),
            v => v.to_owned(),
        };
        Ok(Self {
            http,
            base,
            vhost,
            user: percent(amqp.username()),
            password: amqp.password().map(percent),
        })
    }

    async fn queue(&self, name: &str) -> Option<QueueStatus> {
        let base = self.base.as_ref()?;
        let url = format!("{base}api/queues/{}/{name}", self.vhost);
        let response = self
            .http
            .get(url)
            .basic_auth(&self.user, self.password.as_deref())
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .ok()?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Some(QueueStatus {
                name: name.to_owned(),
                ready: 0,
                unacked: Some(0),
                consumers: 0,
                publish_rate: None,
                ack_rate: None,
            });
        }
        let q: Value = response.error_for_status().ok()?.json().await.ok()?;
        let rate = |what: &str| q["message_stats"][what]["rate"].as_f64();
        Some(QueueStatus {
            name: name.to_owned(),
            ready: q["messages_ready"].as_u64().unwrap_or(0),
            unacked: Some(q["messages_unacknowledged"].as_u64().unwrap_or(0)),
            consumers: q["consumers"].as_u64().unwrap_or(0),
            publish_rate: Some(rate("publish_details").unwrap_or(0.0)),
            ack_rate: Some(rate("ack_details").unwrap_or(0.0)),
        })
    }
}

/// A URL's percent-encoded user or password, as the management API wants it.
fn percent(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Moves parked messages back to their work queue, attempts reset and `message_id` kept. Each is acked
/// only after its republish is confirmed; those that do not match stay parked, in order.
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
    let connection = connect(settings, "replay").await?;
    let topology: Topology = bb2snyk_service::topology(settings);
    let broker = AmqpBroker::new(connection.clone(), topology.clone(), "bb2snyk").await?;
    let mut moved = 0;
    let limit = args.limit.unwrap_or(usize::MAX);
    for queue in queues {
        let channel: Channel = connection.create_channel().await.map_err(amqp)?;
        let parked = topology.parked(queue);
        let waiting = passive(&connection, &parked).await?.ready;
        // Each parked message is read once: those not moved are held unacked until the channel closes.
        for _ in 0..waiting {
            if moved >= limit {
                break;
            }
            let Some(got) = channel
                .basic_get(parked.as_str().into(), BasicGetOptions { no_ack: false })
                .await
                .map_err(amqp)?
            else {
                break;
            };
            let message = decode(&got.delivery);
            if !matches(&message, args.run.as_deref(), &filters) {
                continue;
            }
            let reason = parked_reason(&got.delivery);
            println!(
                "{} {queue} {} {}: was parked for {reason}",
                if args.dry_run { "would move" } else { "moved" },
                message.message_id,
                message.kind
            );
            moved += 1;
            if args.dry_run {
                continue;
            }
            let again = Message {
                attempt: 0,
                ..message
            };
            broker.publish(queue, &again).await?;
            got.delivery
                .ack(BasicAckOptions::default())
                .await
                .map_err(amqp)?;
        }
        let _ = channel.close(200, "done".into()).await;
    }
    let _ = connection.close(200, "done".into()).await;
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
/// dotted key reads a nested field (`target.name=api`).
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
    fn credentials_are_decoded_as_a_url_holds_them() {
        assert_eq!(percent("p%40ss+w%2Fd"), "p@ss+w/d");
    }

    #[test]
    fn filters_read_nested_fields_and_the_run() {
        let message = Message {
            kind: "repo.import.v1".into(),
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
