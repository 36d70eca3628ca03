//! The whole pipeline on real RabbitMQ and Redis against the sandbox, each stage as 2 replicas running the
//! services' own `run`: every repository ends imported, skipped or parked with its reason, exactly once.

use std::time::Duration;

use bb2snyk_e2e::{ALL, TestFleet};
use bb2snyk_ledger::{State, Tally};
use bb2snyk_messages::Event;
use bb2snyk_sandbox::Knobs;
use bb2snyk_service::Infrastructure;
use bb2snyk_settings::Settings;
use bb2snyk_test_support::{unique, wait_for};

/// Snyk's budget is far above what these tenants need, unless a test paces it.
pub(crate) const FAST: (&str, &str) = ("BB2SNYK__SNYK__RATE_BUDGET", "20000");
/// Paced to 10 Snyk calls a second after a burst of 100, about 30 s, so a fault lands mid-run.
const PACED: [(&str, &str); 2] = [
    ("BB2SNYK__SNYK__RATE_BUDGET", "100"),
    ("BB2SNYK__SNYK__RATE_WINDOW_SECS", "10"),
];

/// 10 × 20 repositories, Snyk paced so a fault lands mid-run, one variable pointing somewhere of the test's own.
async fn paced_fleet(own: (&str, &str)) -> TestFleet {
    let knobs = Knobs {
        workspaces: 10,
        repos_per_workspace: 20,
        job_ms: 500,
        ..Knobs::default()
    };
    fleet(knobs, &[own, PACED[0], PACED[1]]).await
}

/// Two replicas of each stage against the sandbox.
pub(crate) async fn fleet(knobs: Knobs, env: &[(&str, &str)]) -> TestFleet {
    let mut fleet = TestFleet::start(knobs, "e2e", env).await;
    fleet.spawn(&ALL, 2);
    fleet
}

/// Events heard, by type.
#[derive(Debug, Clone, Default)]
struct Heard {
    org_ready: u64,
    skipped: u64,
    requested: u64,
    completed: u64,
    failed: u64,
}

impl Heard {
    fn count(&mut self, event: &Event) {
        let tally = match event {
            Event::OrgReady(_) => &mut self.org_ready,
            Event::RepoSkipped(_) => &mut self.skipped,
            Event::ImportRequested(_) => &mut self.requested,
            Event::ImportCompleted(_) => &mut self.completed,
            Event::ImportFailed(_) => &mut self.failed,
            Event::SyncPlanned(_) | Event::ProjectsRetired(_) | Event::CoverageListed(_) => return,
        };
        *tally += 1;
    }
}

/// A queue of the test's own, bound to every event, as an ops tool would bind one.
async fn listen_to_events(settings: &Settings) -> (lapin::Channel, String) {
    let connection = bb2snyk_broker::connect(&settings.amqp.urls, "e2e-events", Default::default())
        .await
        .expect("RabbitMQ");
    let channel = connection.create_channel().await.expect("channel");
    // Kept alive by the channel's handle.
    std::mem::forget(connection);
    let exchange = bb2snyk_service::topology(settings).events();
    channel
        .exchange_declare(
            exchange.as_str().into(),
            lapin::ExchangeKind::Topic,
            lapin::options::ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .expect("events exchange");
    let queue = format!("{}.ops", exchange);
    channel
        .queue_declare(
            queue.as_str().into(),
            lapin::options::QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .expect("ops queue");
    channel
        .queue_bind(
            queue.as_str().into(),
            exchange.as_str().into(),
            "#".into(),
            Default::default(),
            Default::default(),
        )
        .await
        .expect("bound");
    (channel, queue)
}

/// Publishes a run request and waits until every discovered target is imported, skipped or parked.
pub(crate) async fn run_to_the_end(fleet: &TestFleet, expected_targets: u64) -> String {
    fleet.run_to_the_end(expected_targets).await
}

#[tokio::test]
async fn a_tenant_is_imported_once_and_a_second_run_changes_nothing() {
    let fleet = fleet(
        Knobs {
            workspaces: 30,
            repos_per_workspace: 40,
            fork_rate: 0.1,
            empty_rate: 0.05,
            poison_post_rate: 0.02,
            poison_job_rate: 0.02,
            job_ms: 300,
            ..Knobs::default()
        },
        &[FAST],
    )
    .await;
    let (sandbox, settings) = (&fleet.sandbox, &fleet.settings);
    let truth = sandbox.stats().truth;
    assert_eq!(truth.repositories, 1200);
    let (events_channel, events) = listen_to_events(settings).await;

    let run_id = run_to_the_end(&fleet, truth.repositories).await;
    let ledger = fleet.ledger().await;
    let counts = ledger.counts(&run_id).await.expect("counts");
    assert_eq!(counts.skipped, truth.empty, "empty repositories skipped");
    assert_eq!(
        counts.parked,
        truth.poison_post + truth.poison_job,
        "poison parked"
    );
    assert_eq!(
        counts.imported,
        truth.repositories - truth.empty - truth.poison_post - truth.poison_job
    );
    for id in ledger
        .members(&run_id, Tally::In(State::Skipped))
        .await
        .expect("skipped")
    {
        let record = ledger.target(&id).await.expect("read").expect("record");
        assert_eq!(
            record.last_error.as_deref(),
            Some("empty repository (no main branch): nothing to import")
        );
    }
    for id in ledger
        .members(&run_id, Tally::In(State::Parked))
        .await
        .expect("parked")
    {
        let record = ledger.target(&id).await.expect("read").expect("record");
        let reason = record.last_error.expect("a reason");
        assert!(
            reason.contains("(400 Bad Request)") || reason.contains("failed jobs"),
            "{id}: {reason}"
        );
    }

    let stats = sandbox.stats();
    assert_eq!(stats.orgs_created, 30, "one org per workspace");
    assert_eq!(stats.duplicate_org_names, 0);
    assert_eq!(stats.token_exchanges, 1, "one token for the whole fleet");
    let tenant = sandbox.truth();
    for ws in tenant.as_array().expect("tenant") {
        for repo in ws["repos"].as_array().expect("repos") {
            let full = format!(
                "{}/{}",
                ws["slug"].as_str().unwrap_or(""),
                repo["slug"].as_str().unwrap_or("")
            );
            let posts = stats.import_posts.get(&full).copied().unwrap_or(0);
            let expected = match (repo["mainbranch"].is_null(), repo["poison"].as_str()) {
                (true, _) => 0,
                (false, None) => 1,
                (false, Some("post_rejected")) => 1,
                (false, Some(_)) => 3,
            };
            assert_eq!(posts, expected, "{full}");
        }
    }

    // Queues are empty but for the parked poison.
    let topology = bb2snyk_service::topology(settings);
    let depth = |queue: String| {
        let channel = events_channel.clone();
        async move {
            channel
                .queue_declare(
                    queue.as_str().into(),
                    lapin::options::QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    Default::default(),
                )
                .await
                .map(|q| u64::from(q.message_count()))
                .unwrap_or(u64::MAX)
        }
    };
    wait_for("every queue drained", Duration::from_secs(10), || async {
        let mut waiting = 0;
        for queue in bb2snyk_messages::QUEUES {
            waiting += depth(topology.work(queue)).await;
            for tier in 0..topology.retry.tiers.len() {
                waiting += depth(topology.retry_queue(queue, tier)).await;
            }
        }
        (waiting == 0).then_some(())
    })
    .await;
    // A repository refused at its POST parks its request; one whose jobs keep failing parks its last poll.
    assert_eq!(
        depth(topology.parked(bb2snyk_messages::IMPORTER)).await
            + depth(topology.parked(bb2snyk_messages::IMPORTER_POLLS)).await,
        truth.poison_post + truth.poison_job
    );
    assert_eq!(
        depth(topology.parked(bb2snyk_messages::DISCOVERER)).await,
        0
    );
    assert_eq!(
        depth(topology.parked(bb2snyk_messages::ORG_CREATOR)).await,
        0
    );

    // An ops tool bound to the events exchange heard every result, each under its own routing key.
    let heard: std::sync::Mutex<Heard> = Default::default();
    let heard = wait_for("every event", Duration::from_secs(10), || async {
        while let Ok(Some(got)) = events_channel
            .basic_get(
                events.as_str().into(),
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await
        {
            let event =
                Event::from_message(&bb2snyk_broker::decode(&got.delivery)).expect("an event");
            assert_eq!(got.delivery.routing_key.as_str(), event.routing_key());
            heard.lock().expect("tally").count(&event);
        }
        let tally = heard.lock().expect("tally").clone();
        (tally.completed == counts.imported).then_some(tally)
    })
    .await;
    assert_eq!(heard.skipped, truth.empty);
    assert_eq!(heard.org_ready, 30);
    assert_eq!(
        heard.requested,
        heard.completed + heard.failed + truth.poison_job,
        "every job requested ended: completed, failed and tried again, or failed a third time and parked"
    );
    assert_eq!(
        heard.failed,
        2 * truth.poison_job,
        "two failed jobs each before the third parks"
    );

    // The same run again: nothing new is created or imported.
    let again = run_to_the_end(&fleet, truth.repositories).await;
    assert_ne!(again, run_id);
    let after = sandbox.stats();
    assert_eq!(
        after.import_posts_total - stats.import_posts_total,
        truth.poison_post + 3 * truth.poison_job,
        "only the parked ones are tried again"
    );
    assert_eq!(after.orgs_created, 30);

    fleet.stop().await;
}

#[tokio::test]
async fn malformed_messages_are_parked_with_their_reason_and_nothing_crashes() {
    use bb2snyk_broker::Message;
    let fleet = fleet(
        Knobs {
            workspaces: 1,
            repos_per_workspace: 3,
            empty_rate: 0.0,
            fork_rate: 0.0,
            job_ms: 100,
            ..Knobs::default()
        },
        &[FAST],
    )
    .await;
    let settings = &fleet.settings;
    let infrastructure = Infrastructure::connect(settings, "e2e")
        .await
        .expect("infrastructure");
    let broker = infrastructure
        .broker(settings, "e2e")
        .await
        .expect("broker");
    let bad = |kind: &str, body: &[u8]| Message {
        kind: kind.to_owned(),
        message_id: unique("bad"),
        correlation_id: "run-bad".into(),
        attempt: 0,
        body: body.to_vec(),
    };
    let cases: [(&str, &str, &[u8], &str); 3] = [
        (
            "repo.import.v1",
            "malformed",
            b"{not json",
            "malformed message (repo.import.v1)",
        ),
        (
            "repo.delete.v1",
            "unknown",
            br#"{"type":"repo.delete.v1"}"#,
            "unknown variant `repo.delete.v1`",
        ),
        (
            "org.ready.v1",
            "missing",
            br#"{"type":"org.ready.v1","run_id":"r"}"#,
            "missing field `group_id`",
        ),
    ];
    for queue in bb2snyk_messages::QUEUES {
        for (kind, _, body, _) in &cases {
            broker
                .publish(queue, &bad(kind, body))
                .await
                .expect("published");
        }
    }
    // The stages still work: a real run completes after the bad messages.
    run_to_the_end(&fleet, 3).await;
    let channel = infrastructure.amqp.create_channel().await.expect("channel");
    for queue in bb2snyk_messages::QUEUES {
        let parked = broker.topology().parked(queue);
        let mut reasons = Vec::new();
        for _ in 0..3 {
            let got = channel
                .basic_get(
                    parked.as_str().into(),
                    lapin::options::BasicGetOptions { no_ack: true },
                )
                .await
                .expect("basic.get")
                .unwrap_or_else(|| panic!("three messages parked on {queue}"));
            reasons.push(bb2snyk_broker::parked_reason(&got.delivery));
        }
        for (_, what, _, expected) in &cases {
            assert!(
                reasons.iter().any(|r| r.contains(expected)),
                "{queue}: the {what} message's reason {expected:?} is missing from {reasons:?}"
            );
        }
    }
    fleet.stop().await;
}

/// 5 % of API calls answer 5xx, and both APIs allow far less than the fleet's budgets, so 429s come in
/// bursts: every repository still ends imported (or parked for its poison), each imported exactly once.
#[tokio::test]
async fn server_errors_and_429_bursts_lose_nothing() {
    let fleet = fleet(
        Knobs {
            workspaces: 8,
            repos_per_workspace: 25,
            poison_post_rate: 0.04,
            job_ms: 200,
            fault_rate: 0.05,
            snyk_rate_limit: Some(60),
            snyk_window_secs: 2,
            bitbucket_rate_limit: Some(4),
            bitbucket_window_secs: 2,
            ..Knobs::default()
        },
        &[FAST],
    )
    .await;
    let truth = fleet.sandbox.stats().truth;
    let run_id = run_to_the_end(&fleet, truth.repositories).await;

    let stats = fleet.sandbox.stats();
    assert!(stats.server_errors > 0, "faults were injected");
    assert!(
        stats.rate_limited.get("snyk").copied().unwrap_or(0) > 0
            && stats.rate_limited.get("bitbucket").copied().unwrap_or(0) > 0,
        "both APIs sent 429s: {:?}",
        stats.rate_limited
    );
    let counts = fleet.ledger().await.counts(&run_id).await.expect("counts");
    assert_eq!(
        counts.parked, truth.poison_post,
        "only the poison is parked"
    );
    assert_eq!(
        counts.imported,
        truth.repositories - truth.empty - truth.poison_post
    );
    assert!(
        stats.import_posts.values().all(|n| *n == 1),
        "no repository was imported twice"
    );
    assert_eq!(stats.orgs_created, 8);
    fleet.stop().await;
}

/// `rabbitmqctl close_all_connections` mid-run, in a vhost of the test's own (so other tests' connections
/// live on): lapin recovers, unacked deliveries come back, and nothing is lost.
#[tokio::test]
async fn the_broker_dropping_every_connection_loses_nothing() {
    let vhost = bb2snyk_test_support::Vhost::create("drop").await;
    let amqp_url = secrecy::ExposeSecret::expose_secret(&vhost.amqp_url()).to_owned();
    let fleet = paced_fleet(("AMQP_URL", &amqp_url)).await;
    let (sandbox, settings) = (fleet.sandbox.clone(), &fleet.settings);
    let truth = sandbox.stats().truth;
    let expected = truth.repositories - truth.empty;
    let chaos = tokio::spawn({
        let (prefix, sandbox) = (settings.amqp.prefix.clone(), sandbox.clone());
        async move {
            let before = wait_for(
                "the management API to list the fleet",
                Duration::from_secs(30),
                || async {
                    let ids = bb2snyk_test_support::connection_ids(&prefix).await;
                    (ids.len() >= 6).then_some(ids)
                },
            )
            .await;
            let posts = wait_for("imports under way", Duration::from_secs(60), || async {
                let posts = sandbox.stats().import_posts_total;
                (posts >= 20).then_some(posts)
            })
            .await;
            vhost.close_all_connections().await;
            // Every replica is back, each on a new connection.
            wait_for(
                "the fleet to reconnect",
                Duration::from_secs(60),
                || async {
                    let after = bb2snyk_test_support::connection_ids(&prefix).await;
                    (after.len() >= before.len() && after.iter().all(|id| !before.contains(id)))
                        .then_some(())
                },
            )
            .await;
            (before.len(), posts, vhost)
        }
    });
    let run_id = run_to_the_end(&fleet, truth.repositories).await;
    let (closed, posts_at_close, vhost) = chaos.await.expect("chaos");
    assert!(
        closed >= 6,
        "the fleet's connections were closed ({closed})"
    );
    assert!(
        posts_at_close < expected,
        "the drop came mid-run ({posts_at_close} of {expected} imports)"
    );

    let counts = fleet.ledger().await.counts(&run_id).await.expect("counts");
    assert_eq!(counts.imported, expected);
    assert_eq!(
        fleet.duplicate_imports(),
        0,
        "no repository was imported twice"
    );
    assert_eq!(sandbox.stats().orgs_created, 10);
    fleet.stop().await;
    vhost.delete().await;
}

/// Redis (with its append-only file, as in production) restarts mid-run: the stages wait it out, and
/// every repository is imported, none twice.
#[tokio::test]
async fn a_redis_restart_mid_run_loses_nothing() {
    let mut redis = bb2snyk_test_support::RedisServer::start_persistent().await;
    let redis_url = secrecy::ExposeSecret::expose_secret(&redis.url()).to_owned();
    let fleet = paced_fleet(("REDIS_URL", &redis_url)).await;
    let sandbox = fleet.sandbox.clone();
    let truth = sandbox.stats().truth;
    let expected = truth.repositories - truth.empty;
    let chaos = tokio::spawn({
        let sandbox = sandbox.clone();
        async move {
            let posts = wait_for("imports under way", Duration::from_secs(60), || async {
                let posts = sandbox.stats().import_posts_total;
                (posts >= 40).then_some(posts)
            })
            .await;
            redis.restart().await;
            (redis, posts)
        }
    });
    let run_id = run_to_the_end(&fleet, truth.repositories).await;
    let (_redis, posts_at_restart) = chaos.await.expect("chaos");
    assert!(
        posts_at_restart < expected,
        "restarted mid-run ({posts_at_restart} of {expected})"
    );
    let counts = fleet.ledger().await.counts(&run_id).await.expect("counts");
    assert_eq!(counts.imported, expected);
    assert_eq!(counts.parked, 0);
    let duplicates = fleet.duplicate_imports();
    assert!(
        duplicates <= 1,
        "{duplicates} duplicate imports for one restart"
    );
    assert_eq!(sandbox.stats().orgs_created, 10);
    fleet.stop().await;
}

/// A fifth of Snyk's POSTs take effect but are answered 502, with two replicas of each stage: no org is
/// made twice, and an import is posted again only when its first job was still pending at the retry.
#[tokio::test]
async fn ghost_writes_make_nothing_twice_that_could_be_seen() {
    let fleet = fleet(
        Knobs {
            workspaces: 10,
            repos_per_workspace: 20,
            ghost_rate: 0.2,
            job_ms: 300,
            ..Knobs::default()
        },
        &[FAST],
    )
    .await;
    let truth = fleet.sandbox.stats().truth;
    let run_id = run_to_the_end(&fleet, truth.repositories).await;
    let counts = fleet.ledger().await.counts(&run_id).await.expect("counts");
    assert_eq!(counts.imported, truth.repositories - truth.empty);
    assert_eq!(counts.parked, 0);
    let stats = fleet.sandbox.stats();
    assert!(stats.ghost_writes > 0, "ghost writes were injected");
    assert_eq!(stats.orgs_created, 10, "one org per workspace");
    assert_eq!(stats.duplicate_org_names, 0);
    let duplicates = fleet.duplicate_imports();
    println!(
        "ghost writes {}, duplicate import jobs {duplicates}, posted again while the first job was pending {}",
        stats.ghost_writes, stats.posts_while_pending
    );
    assert!(duplicates <= stats.posts_while_pending);
    fleet.stop().await;
}
