//! `bb2snyk migrate:legacy` against the sandbox: one legacy org holding 20 repositories of 6 workspaces
//! (one since deleted from Bitbucket), each project with tags, attributes and ignores. A dry run names
//! every repository and writes nothing; the migration gives every other legacy project an App project in
//! its workspace's org with the same file, branch, tags, attributes and ignores, and deactivates it; the
//! deleted repository's projects are left and reported; a second migration writes nothing; `--delete`
//! deletes the migrated legacy projects, and only those. Killed halfway and run again, nothing is done
//! twice.

use std::collections::{BTreeMap, BTreeSet};

use bb2snyk_sandbox::{Knobs, Sandbox, legacy::Project};
use serde_json::Value;

use crate::common::{GROUP, bb2snyk, reports, stderr, stdout, workdir};

const GONE: &str = "retired-service";

/// A tenant of 6 workspaces and a legacy org holding 19 of its repositories (over every workspace) and
/// one Bitbucket no longer has.
async fn tenant(job_ms: u64) -> (Sandbox, String, Vec<String>) {
    let sandbox = Sandbox::start(Knobs {
        workspaces: 6,
        repos_per_workspace: 5,
        empty_rate: 0.0,
        job_ms,
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let truth = sandbox.truth();
    let mut repos = Vec::new();
    for round in 0..5 {
        for ws in truth.as_array().expect("workspaces") {
            if let Some(repo) = ws["repos"]
                .get(round)
                .filter(|r| !r["mainbranch"].is_null())
            {
                repos.push(format!(
                    "{}/{}",
                    ws["slug"].as_str().expect("slug"),
                    repo["slug"].as_str().expect("slug")
                ));
            }
        }
    }
    repos.truncate(19);
    let first_ws = repos[0].split('/').next().expect("workspace").to_owned();
    repos.push(format!("{first_ws}/{GONE}"));
    let legacy = sandbox.seed_legacy("Legacy Bitbucket", &repos);
    (sandbox, legacy, repos)
}

fn legacy_projects(sandbox: &Sandbox) -> Vec<Project> {
    sandbox
        .projects()
        .into_iter()
        .filter(|p| p.origin == "bitbucket-cloud")
        .collect()
}

/// Each legacy project of a repository Bitbucket has is inactive, and its App counterpart (same target,
/// branch and file, in its workspace's own org) carries its tags, attributes and ignores.
fn assert_migrated(sandbox: &Sandbox, legacy_org: &str) {
    let all = sandbox.projects();
    let legacy: Vec<&Project> = all
        .iter()
        .filter(|p| p.origin == "bitbucket-cloud")
        .collect();
    assert!(legacy.len() >= 20, "{}", legacy.len());
    for old in &legacy {
        if old.target.ends_with(GONE) {
            assert!(
                old.active,
                "the deleted repository's project is left active"
            );
            assert!(
                !old.metadata
                    .tags
                    .iter()
                    .any(|(k, _)| k == "bb2snyk-migrated"),
                "and unmarked"
            );
            continue;
        }
        assert!(!old.active, "{} is deactivated", old.target);
        let app: Vec<&Project> = all
            .iter()
            .filter(|p| {
                p.origin == "bitbucket-connect-app"
                    && p.target == old.target
                    && p.branch == old.branch
                    && p.file == old.file
            })
            .collect();
        assert_eq!(
            app.len(),
            1,
            "one App project for {} {}",
            old.target,
            old.file
        );
        let app = app[0];
        assert!(app.active);
        assert_ne!(app.org_id, legacy_org, "in the workspace's App org");
        let workspace = format!("{}/", old.target.split('/').next().expect("ws"));
        assert!(
            all.iter()
                .filter(|p| p.org_id == app.org_id)
                .all(|p| p.target.starts_with(&workspace)),
            "an App org serves one workspace"
        );
        let mut want = old.metadata.clone();
        want.tags.retain(|(k, _)| k != "bb2snyk-migrated");
        assert_eq!(app.metadata, want, "{}: tags and attributes", old.target);
        assert_eq!(
            app.ignores.len(),
            old.ignores.len(),
            "{}: ignores",
            old.target
        );
        for (issue, paths) in &old.ignores {
            for (path, rule) in paths {
                let copied = &app.ignores[issue][path];
                for field in ["reason", "reasonType", "disregardIfFixable", "expires"] {
                    assert_eq!(copied.get(field), rule.get(field), "{issue} {path} {field}");
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_projects_move_to_the_app_with_their_tags_attributes_and_ignores() {
    let (sandbox, legacy_org, repos) = tenant(50).await;
    let dir = workdir("migrate");
    let mut env = sandbox.env();
    env.push(("SNYK_LOG_PATH", dir.display().to_string()));
    let group = format!("--groupId={GROUP}");

    let before = sandbox.stats();
    let dry = bb2snyk(&["migrate:legacy", &group, "--dry-run"], env.clone(), &dir).await;
    assert_eq!(dry.status.code(), Some(0), "{}", stderr(&dry));
    for repo in &repos {
        assert!(
            stdout(&dry).contains(repo.as_str()),
            "the plan names {repo}"
        );
    }
    assert!(stdout(&dry).contains("answered 404"), "{}", stdout(&dry));
    assert_eq!(
        sandbox.stats().writes_since(&before),
        BTreeMap::new(),
        "a dry run writes nothing"
    );

    let before = sandbox.stats();
    let run = bb2snyk(&["migrate:legacy", &group], env.clone(), &dir).await;
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    eprintln!(
        "the migration's requests: {:?}",
        sandbox.stats().requests_since(&before)
    );
    assert_migrated(&sandbox, &legacy_org);
    let stats = sandbox.stats();
    assert!(
        stats.import_posts.values().all(|n| *n == 1),
        "{:?}",
        stats.import_posts
    );
    assert_eq!(
        stats.import_posts.len(),
        19,
        "each repository Bitbucket has, once"
    );
    let report = reports(&dir, "migrate-legacy-")
        .into_iter()
        .find(|r| r["dry_run"] == false)
        .expect("the migration's report");
    let left: Vec<&Value> = report["projects"]
        .as_array()
        .expect("projects")
        .iter()
        .filter(|p| p["outcome"] == "left")
        .collect();
    assert!(
        !left.is_empty()
            && left
                .iter()
                .all(|p| p["target"].as_str().is_some_and(|t| t.ends_with(GONE))),
        "{left:?}"
    );
    assert!(
        left.iter()
            .all(|p| p["reason"].as_str().is_some_and(|r| r.contains("404")))
    );
    assert_eq!(report["counts"]["failed"], 0);

    let before = sandbox.stats();
    let again = bb2snyk(&["migrate:legacy", &group], env.clone(), &dir).await;
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_eq!(
        sandbox.stats().writes_since(&before),
        BTreeMap::new(),
        "a second migration writes nothing"
    );

    let delete = bb2snyk(&["migrate:legacy", &group, "--delete"], env, &dir).await;
    assert_eq!(delete.status.code(), Some(0), "{}", stderr(&delete));
    let remaining: BTreeSet<String> = legacy_projects(&sandbox)
        .into_iter()
        .map(|p| p.target)
        .collect();
    assert_eq!(
        remaining,
        BTreeSet::from([repos.last().expect("the gone one").clone()]),
        "the migrated legacy projects are deleted, the deleted repository's are not"
    );
}

/// Starts a migration and kills it (SIGKILL) once `stop` holds.
async fn killed_when(
    sandbox: &Sandbox,
    env: &[(&str, String)],
    dir: &std::path::Path,
    what: &str,
    stop: impl Fn(&bb2snyk_sandbox::Stats) -> bool,
) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_bb2snyk"));
    command
        .args(["migrate:legacy", &format!("--groupId={GROUP}")])
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .kill_on_drop(true);
    let mut child = command.spawn().expect("bb2snyk runs");
    bb2snyk_test_support::wait_for(what, std::time::Duration::from_secs(60), || {
        let now = stop(&sandbox.stats());
        async move { now.then_some(()) }
    })
    .await;
    child.start_kill().expect("killed");
    let _ = child.wait().await;
    // Jobs Snyk had begun go on without us; a run started before they end could not know of them (Snyk
    // lists a target once its job is done), so the next run waits for them as a person would.
    bb2snyk_test_support::wait_for(
        "Snyk's jobs to end",
        std::time::Duration::from_secs(30),
        || {
            let ended = sandbox.stats().jobs.pending == 0;
            async move { ended.then_some(()) }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_killed_halfway_carries_on_and_does_nothing_twice() {
    let (sandbox, legacy_org, _) = tenant(1500).await;
    let dir = workdir("migrate-killed");
    let mut env = sandbox.env();
    env.push(("SNYK_LOG_PATH", dir.display().to_string()));
    let active = |sandbox: &Sandbox| legacy_projects(sandbox).iter().filter(|p| p.active).count();
    let all = active(&sandbox);

    // Killed once half the imports are done: nothing is carried over yet.
    killed_when(&sandbox, &env, &dir, "half the imports done", |s| {
        s.jobs.complete >= 10
    })
    .await;
    assert_eq!(
        active(&sandbox),
        all,
        "killed before any project was carried over"
    );
    assert_eq!(sandbox.stats().ignore_posts, 0);
    // Killed again halfway through the copies.
    let ignores: u64 = legacy_projects(&sandbox)
        .iter()
        .filter(|p| !p.target.ends_with(GONE))
        .map(|p| {
            p.ignores
                .values()
                .map(|paths| paths.len() as u64)
                .sum::<u64>()
        })
        .sum();
    killed_when(&sandbox, &env, &dir, "half the ignores copied", |s| {
        s.ignore_posts >= ignores / 2
    })
    .await;
    let left = active(&sandbox);
    assert!(
        left < all && left > 1,
        "killed amid the copies: {left} of {all} still active"
    );

    let group = format!("--groupId={GROUP}");
    let again = bb2snyk(&["migrate:legacy", &group], env, &dir).await;
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_migrated(&sandbox, &legacy_org);
    let stats = sandbox.stats();
    assert!(
        stats.import_posts.values().all(|n| *n == 1),
        "no repository imported twice: {:?}",
        stats.import_posts
    );
    assert_eq!(stats.ignore_posts, ignores, "each ignore posted once");
}
