//! `discover`, `status` and `replay` with the real binary against services on real RabbitMQ and Redis.

use std::time::Duration;

use crate::common::{GROUP, bb2snyk, stdout, workdir};
use bb2snyk_e2e::{ALL, TestFleet};
use bb2snyk_sandbox::Knobs;
use bb2snyk_settings::Settings;
use bb2snyk_test_support::wait_for;
use lapin::{options::QueueDeclareOptions, types::FieldTable};
use serde_json::Value;

/// Ready messages in `queue`, straight from the broker.
async fn depth(settings: &Settings, queue: &str) -> u64 {
    let connection =
        bb2snyk_broker::connect(&settings.amqp.urls, "cli-test-depth", Default::default())
            .await
            .expect("RabbitMQ");
    let channel = connection.create_channel().await.expect("channel");
    let options = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let n = channel
        .queue_declare(queue.into(), options, FieldTable::default())
        .await
        .map_or(0, |q| u64::from(q.message_count()));
    let _ = connection.close(200, "done".into()).await;
    n
}

async fn status(env: &[(String, String)], dir: &std::path::Path, run: &str) -> Value {
    let out = bb2snyk(&["status", "--json", "--run", run], env.to_vec(), dir).await;
    assert_eq!(out.status.code(), Some(0));
    serde_json::from_str(&stdout(&out)).expect("status --json prints JSON")
}

fn ready(report: &Value, queue: &str) -> u64 {
    report["queues"]
        .as_array()
        .and_then(|qs| qs.iter().find(|q| q["name"] == queue))
        .and_then(|q| q["ready"].as_u64())
        .unwrap_or_else(|| panic!("{queue} in {report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_real_depths_and_replay_imports_what_was_parked() {
    let knobs = Knobs {
        workspaces: 3,
        repos_per_workspace: 8,
        empty_rate: 0.0,
        poison_post_rate: 0.15,
        job_ms: 200,
        ..Knobs::default()
    };
    let mut fleet = TestFleet::start(knobs, "cli-fleet", &[]).await;
    let (sandbox, settings) = (fleet.sandbox.clone(), fleet.settings.clone());
    let truth = sandbox.stats().truth;
    assert!(truth.poison_post > 0, "{truth:?}");
    let env: Vec<(String, String)> = fleet.env.clone().into_iter().collect();
    let topology = bb2snyk_service::topology(&settings);
    let dir = workdir("fleet");
    let group = format!("--groupId={GROUP}");

    // Two run requests and no services yet: status counts them where the broker holds them.
    for _ in 0..2 {
        let out = bb2snyk(&["discover", group.as_str()], env.clone(), &dir).await;
        assert_eq!(out.status.code(), Some(0));
    }
    let discoverer = topology.work("discoverer");
    let report = status(&env, &dir, "none").await;
    assert_eq!(ready(&report, &discoverer), 2);
    assert_eq!(depth(&settings, &discoverer).await, 2);

    fleet.spawn(&ALL, 1);

    let out = bb2snyk(&["discover", group.as_str()], env.clone(), &dir).await;
    let run = stdout(&out).trim().to_owned();
    assert!(run.starts_with("run-"), "prints the run id: {run}");
    let ledger = fleet.ledger().await;
    let clean = truth.repositories - truth.poison_post;
    wait_for("the run to settle", Duration::from_secs(60), || async {
        let counts = ledger.counts(&run).await.ok()?;
        (counts.imported == clean && counts.parked == truth.poison_post).then_some(())
    })
    .await;
    let parked_queue = topology.parked("importer");
    // The two earlier requests ran too (same group): the parked queue holds each run's poison.
    wait_for("parking to settle", Duration::from_secs(30), || async {
        (depth(&settings, &parked_queue).await >= truth.poison_post).then_some(())
    })
    .await;
    // The earlier runs' polls may still be moving through the delay queues: compare depths once every
    // queue but the parking ones is at rest, so both reads see the same state.
    let moving: Vec<String> = bb2snyk_messages::QUEUES
        .iter()
        .flat_map(|q| {
            let retries = (0..topology.retry.tiers.len()).map(|t| topology.retry_queue(q, t));
            let delays = (0..bb2snyk_broker::DELAYS.len()).map(|i| topology.delay_queue(q, i));
            std::iter::once(topology.work(q))
                .chain(retries)
                .chain(delays)
        })
        .collect();
    // At rest for two seconds: a poll being handled is in no queue's depth for a moment, then deferred
    // into a delay queue again, so one empty look is not enough.
    let calm = std::sync::atomic::AtomicU32::new(0);
    wait_for("every queue at rest", Duration::from_secs(90), || async {
        let mut empty = true;
        for queue in &moving {
            if depth(&settings, queue).await > 0 {
                empty = false;
                break;
            }
        }
        let looks = if empty {
            calm.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1
        } else {
            calm.store(0, std::sync::atomic::Ordering::SeqCst);
            0
        };
        tokio::time::sleep(Duration::from_millis(250)).await;
        (looks >= 8).then_some(())
    })
    .await;
    let parked = depth(&settings, &parked_queue).await;
    let report = status(&env, &dir, &run).await;
    assert_eq!(ready(&report, &parked_queue), parked);
    assert_eq!(report["parked"]["total"].as_u64(), Some(parked));
    assert!(
        report["parked"]["reasons"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("could not be read")),
        "{report}"
    );
    assert_eq!(report["run"]["counts"]["imported"].as_u64(), Some(clean));
    assert_eq!(
        report["run"]["counts"]["parked"].as_u64(),
        Some(truth.poison_post)
    );
    for q in report["queues"].as_array().expect("queues") {
        let name = q["name"].as_str().expect("name");
        assert_eq!(
            q["ready"].as_u64(),
            Some(depth(&settings, name).await),
            "{name}"
        );
    }
    let alarm = bb2snyk(&["status", "--fail-on-parked"], env.clone(), &dir).await;
    assert_eq!(alarm.status.code(), Some(1));

    // A dry run moves nothing.
    let dry = bb2snyk(&["replay", "--run", &run, "--dry-run"], env.clone(), &dir).await;
    assert_eq!(dry.status.code(), Some(0));
    assert!(stdout(&dry).contains(&format!("{} message(s) would move", truth.poison_post)));
    assert_eq!(depth(&settings, &parked_queue).await, parked);

    // Cured, then replayed: imported, and the parked queue keeps only the other runs' messages.
    sandbox.update(|k| k.poison_paused = true);
    let posts = sandbox.stats().import_posts_total;
    let replay = bb2snyk(
        &["replay", "--run", &run, "--queue", "importer"],
        env.clone(),
        &dir,
    )
    .await;
    assert_eq!(replay.status.code(), Some(0));
    assert!(stdout(&replay).contains(&format!("{} message(s) moved", truth.poison_post)));
    wait_for(
        "the replayed targets to import",
        Duration::from_secs(60),
        || async {
            let counts = ledger.counts(&run).await.ok()?;
            (counts.imported == truth.repositories && counts.parked == 0).then_some(())
        },
    )
    .await;
    assert_eq!(
        sandbox.stats().import_posts_total - posts,
        truth.poison_post,
        "one POST per replayed message"
    );
    assert_eq!(
        depth(&settings, &parked_queue).await,
        parked - truth.poison_post
    );

    fleet.stop().await;
}

/// `doctor --fleet` warns when Redis keeps nothing on disk (the ledger would be lost with it), and says so
/// when it does keep it.
#[tokio::test]
async fn doctor_warns_when_redis_keeps_nothing_on_disk() {
    let sandbox = bb2snyk_sandbox::Sandbox::start(Knobs::default())
        .await
        .expect("sandbox");
    let dir = workdir("doctor-redis");
    let group = format!("--groupId={GROUP}");
    for (redis, expected) in [
        (
            bb2snyk_test_support::RedisServer::start().await,
            "warn  Redis persistence: off",
        ),
        (
            bb2snyk_test_support::RedisServer::start_persistent().await,
            "ok    Redis persistence: appendonly yes",
        ),
    ] {
        let mut env = sandbox.env();
        env.push((
            "REDIS_URL",
            secrecy::ExposeSecret::expose_secret(&redis.url()).to_owned(),
        ));
        let out = bb2snyk(&["doctor", "--fleet", group.as_str()], env, &dir).await;
        assert!(stdout(&out).contains(expected), "{}", stdout(&out));
    }
}
