//! Snyk is the record of what is imported: a fleet that lost its Redis (or a new one on a new machine)
//! imports nothing that Snyk already holds, and a sync brings Snyk in step with a tenant that drifted.
//!
//! A test binary of its own, as `credentials.rs`: its fleets run whole tenants, and kept apart from `it`
//! they do not share two cores with the broker chaos tests there.

use std::time::Duration;

use bb2snyk_e2e::{ALL, Run, TestFleet};
use bb2snyk_ledger::LastSync;
use bb2snyk_messages::Sync;
use bb2snyk_sandbox::Knobs;
use bb2snyk_test_support::wait_for;

#[tokio::test]
async fn a_second_run_on_an_empty_redis_posts_no_import() {
    let knobs = Knobs {
        workspaces: 4,
        repos_per_workspace: 12,
        empty_rate: 0.1,
        job_ms: 200,
        ..Knobs::default()
    };
    let mut first = TestFleet::start(knobs, "record", &[]).await;
    first.spawn(&ALL, 1);
    let truth = first.sandbox.stats().truth;
    let expected = truth.repositories - truth.empty;
    first.run_to_the_end(truth.repositories).await;
    let posts = first.sandbox.stats().import_posts_total;
    assert_eq!(
        posts, expected,
        "the first run imports every repository once"
    );
    let mut second = first.afresh("record-again");
    first.stop().await;

    // The same tenant and Snyk, with nothing in Redis: the orgs and targets are read from Snyk.
    second.spawn(&ALL, 2);
    let run_id = second.run_to_the_end(truth.repositories).await;
    let stats = second.sandbox.stats();
    assert_eq!(
        stats.import_posts_total, posts,
        "the second run posts no import"
    );
    assert_eq!(stats.orgs_created, 4, "nor creates an org");
    let counts = second.ledger().await.counts(&run_id).await.expect("counts");
    assert_eq!(
        counts.imported, expected,
        "what Snyk holds counts as imported"
    );
    assert_eq!(counts.skipped, truth.empty);
    let reads = stats
        .requests
        .get("GET /rest/orgs/{org_id}/targets")
        .copied()
        .unwrap_or(0);
    assert_eq!(
        reads, 8,
        "the org's targets are read once per org and run (4 orgs, 2 runs)"
    );
    second.stop().await;
}

/// Requests a sync of the fleet's group and waits until every org has been compared; each org's result.
async fn sync(fleet: &TestFleet, sync: Sync, orgs: usize) -> Vec<LastSync> {
    let run = Run::request_with(&fleet.settings, &fleet.sandbox.knobs().group_id, Some(sync)).await;
    let ledger = fleet.ledger().await;
    wait_for("every org synced", Duration::from_secs(120), || async {
        let mine: Vec<LastSync> = ledger
            .last_syncs()
            .await
            .ok()?
            .into_iter()
            .map(|(_, last)| last)
            .filter(|last| last.run_id == run.id)
            .collect();
        (mine.len() == orgs).then_some(mine)
    })
    .await
}

const DRY_RUN: Sync = Sync {
    dry_run: true,
    delete: false,
    org_id: None,
    allow_mass_retire: false,
    started_ms: None,
};

/// New, renamed, branch changed and deleted, over every org.
fn changes(syncs: &[LastSync]) -> [u32; 4] {
    syncs.iter().fold([0; 4], |t, s| {
        [
            t[0] + s.new,
            t[1] + s.renamed,
            t[2] + s.branch_changed,
            t[3] + s.deleted,
        ]
    })
}

#[tokio::test]
async fn the_services_sync_a_drifted_tenant_and_a_second_sync_changes_nothing() {
    let knobs = Knobs {
        workspaces: 10,
        repos_per_workspace: 30,
        job_ms: 100,
        ..Knobs::default()
    };
    let mut fleet = TestFleet::start(knobs, "sync", &[]).await;
    fleet.spawn(&ALL, 2);
    let truth = fleet.sandbox.stats().truth;
    fleet.run_to_the_end(truth.repositories).await;
    fleet.sandbox.drift([5, 3, 2, 2]);
    let before = fleet.sandbox.stats();

    let dry = sync(&fleet, DRY_RUN, 10).await;
    assert_eq!(
        changes(&dry),
        [5, 2, 2, 3],
        "exactly the 12 changes: {dry:?}"
    );
    let stats = fleet.sandbox.stats();
    assert_eq!(
        stats.import_posts_total, before.import_posts_total,
        "a dry run posts nothing"
    );
    assert_eq!(stats.projects_deactivated, 0, "nor retires anything");

    let synced = sync(&fleet, Sync::default(), 10).await;
    assert_eq!(changes(&synced), [5, 2, 2, 3]);
    // Done when a look finds nothing left to change: the imports made projects, the old ones retired.
    wait_for(
        "Snyk to match Bitbucket",
        Duration::from_secs(120),
        || async {
            let look = sync(&fleet, DRY_RUN, 10).await;
            (changes(&look) == [0; 4]).then_some(())
        },
    )
    .await;
    let after = fleet.sandbox.stats();
    assert_eq!(
        after.import_posts_total - before.import_posts_total,
        5 + 2 + 2,
        "only the new, renamed and re-branched repositories are imported"
    );
    assert!(
        after.projects_deactivated >= 7,
        "the 7 targets' projects: {}",
        after.projects_deactivated
    );
    assert_eq!(
        fleet.duplicate_imports(),
        2,
        "the re-branched two, once on each branch"
    );

    let again = sync(&fleet, Sync::default(), 10).await;
    assert_eq!(changes(&again), [0; 4]);
    let last = fleet.sandbox.stats();
    assert_eq!(last.import_posts_total, after.import_posts_total);
    assert_eq!(last.projects_deactivated, after.projects_deactivated);
    // The cost of staying in step, for the README: what an unchanged sync of the services asked.
    let cost: Vec<String> = last
        .requests_since(&after)
        .iter()
        .map(|(endpoint, n)| format!("{endpoint}: {n}"))
        .collect();
    println!(
        "an unchanged sync of the services, 10 workspaces x 30 repositories: {} requests ({})",
        last.requests_total - after.requests_total,
        cost.join(", ")
    );

    // `bb2snyk status` shows each org's last sync.
    let bin = bb2snyk_e2e::binaries(false).join("bb2snyk");
    let out = tokio::process::Command::new(bin)
        .args(["status", "--json"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(&fleet.env)
        .output()
        .await
        .expect("bb2snyk status runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let syncs = report["syncs"].as_array().expect("syncs");
    assert_eq!(syncs.len(), 10, "{report}");
    assert!(
        syncs
            .iter()
            .all(|s| s["run_id"] == again[0].run_id && s["new"] == 0)
    );
    fleet.stop().await;
}
