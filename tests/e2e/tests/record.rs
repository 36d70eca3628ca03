//! Snyk is the record of what is imported: a fleet that lost its Redis (or a new one on a new machine)
//! imports nothing that Snyk already holds, and a sync brings Snyk in step with a tenant that drifted.
//!
//! A test binary of its own, as `credentials.rs`: its fleets run whole tenants, and kept apart from `it`
//! they do not share two cores with the broker chaos tests there.

use std::time::Duration;

use bb2snyk_e2e::{ALL, Run, TestFleet};
use bb2snyk_ledger::LastSync;
use bb2snyk_messages::{Filters, Sync};
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
    filtered_sync(fleet, sync, None, orgs).await
}

/// As [`sync`], with the run's own filters.
async fn filtered_sync(
    fleet: &TestFleet,
    sync: Sync,
    filters: Option<Filters>,
    orgs: usize,
) -> Vec<LastSync> {
    let run = Run::request_with(
        &fleet.settings,
        &fleet.sandbox.knobs().group_id,
        Some(sync),
        filters,
    )
    .await;
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
    report: false,
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
    // The cost of staying in step, for docs/sync.md: what an unchanged sync of the services asked.
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

/// The services retire only what Bitbucket confirms gone (2 replicas per stage): after a full import of
/// 6 workspaces x 40, syncs narrowed by `updated_since`, by one project key and by an include glob, and
/// one whose credential sees only part of two workspaces, retire nothing and import nothing, dry-run or
/// not; two repositories deleted, a plain sync retires exactly their projects; most of a workspace
/// deleted, the brake stops that org's sync and nothing changes.
#[tokio::test]
async fn the_services_retire_nothing_on_a_partial_view_and_stop_at_the_brake() {
    let knobs = Knobs {
        workspaces: 6,
        repos_per_workspace: 40,
        empty_rate: 0.0,
        job_ms: 100,
        rest_links: "per-org".into(),
        ..Knobs::default()
    };
    let mut fleet = TestFleet::start(knobs, "evidence", &[]).await;
    fleet.spawn(&ALL, 2);
    fleet.run_to_the_end(240).await;
    let imported = fleet.sandbox.stats();
    assert_eq!(imported.import_posts_total, 240);

    let truth = fleet.sandbox.truth();
    let repos = |w: usize| -> Vec<String> {
        truth[w]["repos"]
            .as_array()
            .expect("repos")
            .iter()
            .map(|r| {
                format!(
                    "{}/{}",
                    truth[w]["slug"].as_str().expect("slug"),
                    r["slug"].as_str().expect("slug")
                )
            })
            .collect()
    };
    let mut dates: Vec<String> = truth
        .as_array()
        .expect("workspaces")
        .iter()
        .flat_map(|w| w["repos"].as_array().expect("repos").iter())
        .map(|r| r["updated_on"].as_str().expect("updated_on")[..10].to_owned())
        .collect();
    dates.sort_unstable();
    let narrowed = [
        Filters {
            updated_since: Some(dates[dates.len() / 2].parse().expect("a date")),
            ..Filters::default()
        },
        Filters {
            project_keys: vec!["PRJ1".into()],
            ..Filters::default()
        },
        Filters {
            include: vec!["*-1*".parse().expect("a glob")],
            ..Filters::default()
        },
    ];
    for filters in narrowed {
        for dry_run in [true, false] {
            let synced = filtered_sync(
                &fleet,
                Sync {
                    dry_run,
                    ..Sync::default()
                },
                Some(filters.clone()),
                6,
            )
            .await;
            assert_eq!(changes(&synced), [0; 4], "{filters:?}: {synced:?}");
            let stats = fleet.sandbox.stats();
            assert_eq!(
                stats.projects_deactivated, 0,
                "{filters:?} retired live projects"
            );
            assert_eq!(stats.import_posts_total, 240, "{filters:?} imported");
        }
    }

    // A credential that sees 15 of the 40 repositories of two workspaces less.
    let hidden: Vec<String> = (0..2).flat_map(|w| repos(w).into_iter().take(15)).collect();
    fleet.sandbox.update(|k| k.hidden_repos = hidden.clone());
    for dry_run in [true, false] {
        let synced = sync(
            &fleet,
            Sync {
                dry_run,
                ..Sync::default()
            },
            6,
        )
        .await;
        assert_eq!(changes(&synced), [0; 4], "{synced:?}");
        assert_eq!(
            fleet.sandbox.stats().projects_deactivated,
            0,
            "a partial view retired live projects"
        );
    }
    fleet.sandbox.update(|k| k.hidden_repos.clear());

    // Two deleted: exactly their projects.
    let gone = vec![repos(0)[0].clone(), repos(1)[0].clone()];
    fleet
        .sandbox
        .change_tenant(&bb2snyk_sandbox::TenantChange {
            delete: gone,
            ..Default::default()
        })
        .expect("deleted");
    let synced = sync(&fleet, Sync::default(), 6).await;
    assert_eq!(changes(&synced), [0, 0, 0, 2]);
    // Done when a look finds nothing left to retire.
    wait_for("the two retired", Duration::from_secs(120), || async {
        let look = sync(&fleet, DRY_RUN, 6).await;
        (changes(&look) == [0; 4]).then_some(())
    })
    .await;
    let retired = fleet.sandbox.stats().projects_deactivated;
    assert!(retired >= 2, "{retired}");

    // 24 of one workspace's 40 deleted: the brake stops that org, nothing changes.
    fleet
        .sandbox
        .change_tenant(&bb2snyk_sandbox::TenantChange {
            delete: repos(2).into_iter().take(24).collect(),
            ..Default::default()
        })
        .expect("deleted");
    let braked = sync(&fleet, Sync::default(), 6).await;
    assert_eq!(braked.iter().filter(|s| s.braked).count(), 1, "{braked:?}");
    assert_eq!(
        fleet.sandbox.stats().projects_deactivated,
        retired,
        "the brake changed something"
    );
    assert_eq!(fleet.sandbox.stats().import_posts_total, 240);
    fleet.stop().await;
}
