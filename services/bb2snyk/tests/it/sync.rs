//! `bb2snyk sync` with the real binary against the sandbox: after a first run, the tenant drifts (5
//! repositories added, 3 deleted, 2 renamed, 2 re-branched); a dry run lists exactly those 12 changes and
//! changes nothing; a sync makes Snyk match Bitbucket; a second sync changes nothing.

use crate::common::{GROUP, bb2snyk, reports, stderr, stdout, workdir};
use bb2snyk_sandbox::{Knobs, Sandbox};

/// The `total` row of the table: new, renamed, branch changed, deleted, retired, metadata.
fn totals(out: &str) -> Vec<u64> {
    out.lines()
        .find(|l| l.starts_with("total "))
        .unwrap_or_else(|| panic!("a total row in {out}"))
        .split_whitespace()
        .skip(1)
        .map(|n| n.parse().expect("a count"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_makes_snyk_match_bitbucket_and_a_second_changes_nothing() {
    let sandbox = Sandbox::start(Knobs {
        workspaces: 10,
        repos_per_workspace: 30,
        job_ms: 100,
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let dir = workdir("sync");
    let mut env = sandbox.env();
    env.push(("SNYK_LOG_PATH", dir.display().to_string()));
    let group = format!("--groupId={GROUP}");
    let first = bb2snyk(&["run", &group], env.clone(), &dir).await;
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));

    let change = sandbox.drift([5, 3, 2, 2]);
    let before = sandbox.stats();
    let dry = bb2snyk(&["sync", &group, "--dry-run"], env.clone(), &dir).await;
    assert_eq!(dry.status.code(), Some(0), "{}", stderr(&dry));
    assert_eq!(
        totals(&stdout(&dry)),
        [5, 2, 2, 3, 0, 0],
        "{}",
        stdout(&dry)
    );
    for (old, new) in &change.rename {
        let (ws, _) = old.split_once('/').expect("ws/slug");
        assert!(
            stdout(&dry).contains(&format!("renamed         {ws}/{new} (was {old})")),
            "{}",
            stdout(&dry)
        );
    }
    let after_dry = sandbox.stats();
    assert_eq!(
        after_dry.import_posts_total, before.import_posts_total,
        "a dry run posts nothing"
    );
    assert_eq!(after_dry.projects_deactivated, 0, "nor retires anything");

    let synced = bb2snyk(&["sync", &group], env.clone(), &dir).await;
    assert_eq!(synced.status.code(), Some(0), "{}", stderr(&synced));
    let totals_synced = totals(&stdout(&synced));
    assert_eq!(totals_synced[..4], [5, 2, 2, 3], "{}", stdout(&synced));
    let after = sandbox.stats();
    assert_eq!(
        after.import_posts_total - before.import_posts_total,
        5 + 2 + 2,
        "only the new, renamed and re-branched repositories are imported"
    );
    let report = reports(&dir, "sync-")
        .into_iter()
        .find(|r| r["dry_run"] == false)
        .expect("the sync's report");
    let retired = report["retired"].as_array().expect("retired");
    assert_eq!(
        retired.len(),
        3 + 2 + 2,
        "one retirement per deleted, renamed and re-branched target"
    );
    let projects: u64 = retired
        .iter()
        .map(|r| r["projects"].as_array().map_or(0, Vec::len) as u64)
        .sum();
    assert_eq!(after.projects_deactivated, projects);
    assert_eq!(
        totals_synced[4], projects,
        "the table counts what was retired"
    );
    assert_eq!(after.projects_deleted, 0);

    let again = bb2snyk(&["sync", &group], env.clone(), &dir).await;
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_eq!(
        totals(&stdout(&again)),
        [0, 0, 0, 0, 0, 0],
        "{}",
        stdout(&again)
    );
    let last = sandbox.stats();
    assert_eq!(last.import_posts_total, after.import_posts_total);
    assert_eq!(last.projects_deactivated, after.projects_deactivated);
    // The cost of staying in step, for docs/sync.md: what an unchanged sync asked of each API.
    let cost: Vec<String> = last
        .requests_since(&after)
        .iter()
        .map(|(endpoint, n)| format!("{endpoint}: {n}"))
        .collect();
    println!(
        "an unchanged sync of 10 workspaces x 30 repositories: {} requests ({})",
        last.requests_total - after.requests_total,
        cost.join(", ")
    );

    // --delete deletes instead: one more repository gone, its projects deleted.
    sandbox.drift([0, 1, 0, 0]);
    let deleting = bb2snyk(&["sync", &group, "--delete"], env.clone(), &dir).await;
    assert_eq!(deleting.status.code(), Some(0), "{}", stderr(&deleting));
    assert_eq!(totals(&stdout(&deleting))[..4], [0, 0, 0, 1]);
    let deleted = sandbox.stats();
    assert!(deleted.projects_deleted > 0);
    assert_eq!(deleted.import_posts_total, last.import_posts_total);

    // --orgId: one org's workspace alone. A repository added to each of the first two workspaces; the
    // sync of the first's org sees only its own.
    let added = sandbox.drift([2, 0, 0, 0]);
    let first_ws = added.add.keys().next().expect("a workspace").clone();
    let org = report["workspaces"]
        .as_array()
        .expect("workspaces")
        .iter()
        .find(|w| w["subject"] == first_ws.as_str())
        .and_then(|w| w["org_id"].as_str())
        .expect("the workspace's org")
        .to_owned();
    let one = bb2snyk(
        &["sync", &group, &format!("--orgId={org}"), "--dry-run"],
        env,
        &dir,
    )
    .await;
    assert_eq!(one.status.code(), Some(0), "{}", stderr(&one));
    assert_eq!(totals(&stdout(&one))[..4], [1, 0, 0, 0], "{}", stdout(&one));
    assert!(stdout(&one).contains(&format!("new             {first_ws}/")));
}
