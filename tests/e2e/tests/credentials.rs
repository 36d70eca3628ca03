//! A tenant spread over workspace-owned OAuth consumers and several Snyk tokens, brought in by the fleet:
//! each workspace served by its own consumer, one token exchange per consumer, and a consumer revoked
//! mid-run parks only its own workspace's remaining pages, naming it.
//!
//! A test binary of its own: two fleets of six replicas each are heavy on two cores, and beside the broker
//! chaos tests of `it` they slowed lapin's recoveries there past those tests' deadlines.

use std::time::Duration;

use bb2snyk_e2e::{ALL, Service, TestFleet};
use bb2snyk_ledger::Tally;
use bb2snyk_sandbox::Knobs;
use bb2snyk_service::Infrastructure;
use bb2snyk_test_support::wait_for;

/// Snyk's budget out of the way: these tests are about who signs what.
const FAST: (&str, &str) = ("BB2SNYK__SNYK__RATE_BUDGET", "20000");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_workspace_comes_in_through_its_own_consumer_and_every_token_is_spent() {
    let knobs = Knobs {
        workspaces: 12,
        repos_per_workspace: 8,
        consumers: 12,
        snyk_tokens: vec!["second-snyk-token".into()],
        job_ms: 200,
        ..Knobs::default()
    };
    let mut fleet = TestFleet::with_consumers(knobs, "e2e-consumers", &[FAST], false).await;
    fleet.spawn(&ALL, 2);
    let truth = fleet.sandbox.stats().truth;
    fleet.run_to_the_end(truth.repositories).await;

    let stats = fleet.sandbox.stats();
    assert_eq!(stats.orgs_created, 12, "one org per workspace");
    assert_eq!(stats.duplicate_org_names, 0);
    assert_eq!(
        fleet.duplicate_imports(),
        0,
        "every repository imported once"
    );
    assert_eq!(stats.import_posts_total, truth.repositories - truth.empty);
    assert_eq!(
        stats.foreign_requests, 0,
        "no consumer asked for a workspace it does not own"
    );
    let main = fleet.sandbox.knobs().client_id;
    assert!(
        !stats.exchanges_by_consumer.contains_key(&main),
        "the single pair was not used"
    );
    assert_eq!(
        stats.exchanges_by_consumer.len(),
        12,
        "{:?}",
        stats.exchanges_by_consumer
    );
    assert!(
        stats.exchanges_by_consumer.values().all(|n| *n == 1),
        "one exchange per consumer for the whole fleet: {:?}",
        stats.exchanges_by_consumer
    );
    assert!(
        stats.snyk_by_token.len() == 2 && stats.snyk_by_token.values().all(|n| *n > 10),
        "both Snyk tokens carried the run: {:?}",
        stats.snyk_by_token
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_revoked_mid_run_parks_its_own_pages_naming_it_and_the_rest_completes() {
    // Workspace 3 has four pages, the others one of five repositories each. With no importer yet, one
    // discoverer holds the importer's queue to 199: every first page fits (11 × 5 + 100), and workspace
    // 3's second page cannot (another 100) until the importers start, after its consumer is revoked.
    let mut repo_counts = vec![5; 12];
    repo_counts[3] = 400;
    let knobs = Knobs {
        workspaces: 12,
        repo_counts,
        empty_rate: 0.0,
        consumers: 12,
        job_ms: 100,
        ..Knobs::default()
    };
    let backlog = [
        ("BB2SNYK__DISCOVERY__MAX_BACKLOG", "199"),
        ("BB2SNYK__DISCOVERY__BACKLOG_PAUSE_SECS", "1"),
    ];
    let mut fleet =
        TestFleet::with_consumers(knobs, "e2e-revoked", &[FAST, backlog[0], backlog[1]], false)
            .await;
    // One discoverer: the bound is exact for one process (replicas each add their own pages).
    fleet.spawn(&[Service::Discoverer], 1);
    fleet.spawn(&[Service::OrgCreator], 2);
    let run = fleet.request_run().await;
    let third = fleet.sandbox.truth()[3]["slug"]
        .as_str()
        .expect("a slug")
        .to_owned();
    wait_for(
        "workspace 3's first page discovered",
        Duration::from_secs(60),
        || async {
            let discovered = run.ledger.members(&run.id, Tally::Discovered).await.ok()?;
            // A targetId is org:integration:repository:workspace[:branch].
            let own = |t: &&String| t.split(':').nth(3) == Some(third.as_str());
            (discovered.iter().filter(own).count() >= 100).then_some(())
        },
    )
    .await;
    let (revoked_id, revoked_secret) = fleet.sandbox.knobs().consumer(3);
    fleet.sandbox.revoke_consumer(3);
    fleet.spawn(&[Service::Importer], 2);
    wait_for(
        "every discovered repository imported",
        Duration::from_secs(120),
        || async {
            let counts = run.ledger.counts(&run.id).await.ok()?;
            (counts.discovered == 155 && counts.settled() == 155).then_some(())
        },
    )
    .await;

    // `status` names the consumer among the parked reasons.
    let bin = bb2snyk_e2e::binaries(false);
    let status = wait_for(
        "status to name the revoked consumer",
        Duration::from_secs(60),
        || async {
            let out = tokio::process::Command::new(bin.join("bb2snyk"))
                .arg("status")
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .envs(&fleet.env)
                .output()
                .await
                .ok()?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.contains(&revoked_id).then_some(text)
        },
    )
    .await;
    assert!(!status.contains(&revoked_secret), "{status}");
    let infrastructure = Infrastructure::connect(&fleet.settings, "e2e-revoked-check")
        .await
        .expect("infrastructure");
    let parked = bb2snyk_service::topology(&fleet.settings).parked(bb2snyk_messages::DISCOVERER);
    let channel = infrastructure.amqp.create_channel().await.expect("channel");
    let reason = wait_for(
        "workspace 3's next page parked",
        Duration::from_secs(60),
        || async {
            let got = channel
                .basic_get(
                    parked.as_str().into(),
                    lapin::options::BasicGetOptions { no_ack: true },
                )
                .await
                .ok()??;
            Some(bb2snyk_broker::parked_reason(&got.delivery))
        },
    )
    .await;
    assert!(
        reason.contains(&revoked_id),
        "the reason names the consumer: {reason}"
    );
    assert!(
        !reason.contains(&revoked_secret),
        "never its secret: {reason}"
    );
    let counts = run.ledger.counts(&run.id).await.expect("counts");
    assert_eq!(
        counts.imported, 155,
        "every other workspace completed: {counts:?}"
    );
    let stats = fleet.sandbox.stats();
    assert_eq!(stats.foreign_requests, 0);
    assert_eq!(fleet.duplicate_imports(), 0);
    infrastructure.close().await;
    fleet.stop().await;
}
