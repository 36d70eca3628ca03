//! `bb2snyk sync` retires only what Bitbucket confirms gone. After a full import of 6 workspaces × 40
//! repositories: syncs narrowed by `--updatedSince`, `--projectKeys` and `--include`, and one whose
//! credential sees only part of the workspaces, retire nothing and import nothing, dry-run or not. Two
//! repositories deleted: a plain sync retires exactly their projects. Most of one workspace deleted: the
//! sync stops at its brake (exit 5) and changes nothing; `--allow-mass-retire` proceeds; `--undo` on its
//! report reactivates every project it deactivated, and a second `--undo` changes nothing.

use std::{collections::BTreeSet, path::Path};

use bb2snyk_sandbox::{Knobs, Sandbox, TenantChange};
use serde_json::Value;

use crate::common::{GROUP, bb2snyk, stderr, stdout, workdir};

/// The report a sync's output names.
fn report(out: &str) -> (String, Value) {
    let path = out
        .lines()
        .find_map(|l| l.strip_prefix("Report: "))
        .unwrap_or_else(|| panic!("a report in {out}"))
        .to_owned();
    let value = serde_json::from_slice(&std::fs::read(&path).expect("report")).expect("JSON");
    (path, value)
}

/// The targets a report says were retired, and how many projects.
fn retired(report: &Value) -> (BTreeSet<String>, u64) {
    let retired = report["retired"].as_array().expect("retired");
    let names = retired
        .iter()
        .map(|r| r["subject"].as_str().expect("subject").to_owned())
        .collect();
    let projects = retired
        .iter()
        .map(|r| r["projects"].as_array().map_or(0, Vec::len) as u64)
        .sum();
    (names, projects)
}

/// A repository as the sandbox holds it: slug, project key, last update.
type Repo = (String, String, String);

/// Each workspace's repositories (non-empty ones), as the sandbox holds them.
fn tenant(sandbox: &Sandbox) -> Vec<(String, Vec<Repo>)> {
    sandbox
        .truth()
        .as_array()
        .expect("workspaces")
        .iter()
        .map(|w| {
            let repos = w["repos"]
                .as_array()
                .expect("repos")
                .iter()
                .filter(|r| !r["mainbranch"].is_null())
                .map(|r| {
                    let field = |k: &str| r[k].as_str().expect(k).to_owned();
                    (field("slug"), field("project_key"), field("updated_on"))
                })
                .collect();
            (w["slug"].as_str().expect("slug").to_owned(), repos)
        })
        .collect()
}

async fn sync(args: &[&str], env: &[(&'static str, String)], dir: &Path) -> std::process::Output {
    let group = format!("--groupId={GROUP}");
    let mut all = vec!["sync", group.as_str()];
    all.extend_from_slice(args);
    bb2snyk(&all, env.iter().cloned(), dir).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_retires_only_what_bitbucket_confirms_gone_within_its_brake_and_can_be_undone() {
    let sandbox = Sandbox::start(Knobs {
        workspaces: 6,
        repos_per_workspace: 40,
        empty_rate: 0.0,
        job_ms: 100,
        rest_links: "per-org".into(),
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let dir = workdir("evidence");
    let mut env = sandbox.env();
    env.push(("SNYK_LOG_PATH", dir.display().to_string()));
    let group = format!("--groupId={GROUP}");
    let first = bb2snyk(&["run", &group], env.clone(), &dir).await;
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let imported = sandbox.stats();
    assert_eq!(imported.import_posts_total, 240);

    // Narrowed views: a date that half the repositories pass, one project key, one glob.
    let tenant = tenant(&sandbox);
    let mut dates: Vec<&str> = tenant
        .iter()
        .flat_map(|(_, repos)| repos.iter().map(|r| &r.2[..10]))
        .collect();
    dates.sort_unstable();
    let since = format!("--updatedSince={}", dates[dates.len() / 2]);
    let narrowed = [
        vec![since.as_str()],
        vec!["--projectKeys=PRJ1"],
        vec!["--include=*-1*"],
    ];
    for args in &narrowed {
        for dry in [true, false] {
            let mut args = args.clone();
            if dry {
                args.push("--dry-run");
            }
            let out = sync(&args, &env, &dir).await;
            assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
            let stats = sandbox.stats();
            assert_eq!(
                stats.projects_deactivated, 0,
                "{args:?} retired live projects"
            );
            assert_eq!(stats.import_posts_total, 240, "{args:?} imported");
        }
    }
    assert!(
        stdout(&sync(&[since.as_str()], &env, &dir).await)
            .contains("needs a sync without those filters"),
        "a narrowed sync says retiring needs an unfiltered listing"
    );

    // A credential that sees only part of two workspaces: 15 of their 40 repositories each.
    let hidden: Vec<String> = tenant[..2]
        .iter()
        .flat_map(|(ws, repos)| repos.iter().take(15).map(move |r| format!("{ws}/{}", r.0)))
        .collect();
    sandbox.update(|k| k.hidden_repos = hidden.clone());
    for args in [vec!["--dry-run"], vec![]] {
        let out = sync(&args, &env, &dir).await;
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(
            stdout(&out).contains(
                "0 confirmed gone (Bitbucket answered 404), 0 found alive, 30 left unchecked"
            ),
            "{}",
            stdout(&out)
        );
        let stats = sandbox.stats();
        assert_eq!(
            stats.projects_deactivated, 0,
            "a partial view retired live projects"
        );
        assert_eq!(stats.import_posts_total, 240);
    }
    sandbox.update(|k| k.hidden_repos.clear());

    // Two repositories deleted: exactly their projects are retired.
    let gone: Vec<String> = tenant[..2]
        .iter()
        .map(|(ws, repos)| format!("{ws}/{}", repos[0].0))
        .collect();
    sandbox
        .change_tenant(&TenantChange {
            delete: gone.clone(),
            ..TenantChange::default()
        })
        .expect("deleted");
    let out = sync(&[], &env, &dir).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (_, two) = report(&stdout(&out));
    let (names, projects) = retired(&two);
    assert_eq!(names, gone.iter().cloned().collect::<BTreeSet<_>>());
    assert!(projects >= 2);
    assert_eq!(sandbox.stats().projects_deactivated, projects);
    assert_eq!(sandbox.stats().import_posts_total, 240);
    let reason = two["retired"][0]["reason"].as_str().expect("reason");
    assert!(
        reason.contains("answered 404"),
        "the evidence is in the report: {reason}"
    );

    // 24 of one workspace's 40 deleted (60 %): the brake stops that org's sync, and nothing changes.
    let (ws, repos) = &tenant[2];
    let mass: Vec<String> = repos
        .iter()
        .take(24)
        .map(|r| format!("{ws}/{}", r.0))
        .collect();
    sandbox
        .change_tenant(&TenantChange {
            delete: mass.clone(),
            ..TenantChange::default()
        })
        .expect("deleted");
    let before = sandbox.stats();
    let braked = sync(&[], &env, &dir).await;
    assert_eq!(braked.status.code(), Some(5), "{}", stderr(&braked));
    assert!(
        stderr(&braked).contains("--allow-mass-retire"),
        "{}",
        stderr(&braked)
    );
    let after = sandbox.stats();
    assert_eq!(
        after.projects_deactivated, before.projects_deactivated,
        "the brake changed something"
    );
    assert_eq!(after.import_posts_total, before.import_posts_total);

    let allowed = sync(&["--allow-mass-retire"], &env, &dir).await;
    assert_eq!(allowed.status.code(), Some(0), "{}", stderr(&allowed));
    let (path, mass_report) = report(&stdout(&allowed));
    let (names, projects) = retired(&mass_report);
    assert_eq!(names, mass.iter().cloned().collect::<BTreeSet<_>>());
    let deactivated = sandbox.stats().projects_deactivated;
    assert_eq!(deactivated, before.projects_deactivated + projects);

    // Undo reactivates exactly what that sync deactivated; a second undo changes nothing.
    let undo = bb2snyk(
        &["sync", &group, &format!("--undo={path}")],
        env.clone(),
        &dir,
    )
    .await;
    assert_eq!(undo.status.code(), Some(0), "{}", stderr(&undo));
    assert!(
        stdout(&undo).contains(&format!("reactivated {projects},")),
        "{}",
        stdout(&undo)
    );
    let undone = sandbox.stats();
    assert_eq!(undone.projects_activated, projects);
    assert_eq!(undone.projects_deactivated, before.projects_deactivated);
    let again = bb2snyk(
        &["sync", &group, &format!("--undo={path}")],
        env.clone(),
        &dir,
    )
    .await;
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(
        stdout(&again).contains("reactivated 0,"),
        "{}",
        stdout(&again)
    );
    assert_eq!(sandbox.stats().projects_activated, projects);
}
