//! snyk-api-import's four-step workflow with the real binary against the sandbox: every non-empty
//! repository imported once, each step safe to run again, and an `imported-targets.log` written by
//! snyk-api-import honoured.

use crate::common::{GROUP, bb2snyk, stdout, workdir};
use bb2snyk_sandbox::{Knobs, Sandbox};
use serde_json::Value;

fn read(path: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("file written")).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_four_steps_import_every_repository_once_and_can_run_again() {
    let sandbox = Sandbox::start(Knobs {
        workspaces: 26,
        repos_per_workspace: 5,
        poison_post_rate: 0.04,
        job_ms: 300,
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let truth = sandbox.stats().truth;
    assert!(truth.poison_post > 0 && truth.empty > 0, "{truth:?}");
    let dir = workdir("seed");
    let mut env = sandbox.env();
    env.push(("SNYK_LOG_PATH", "logs".into()));
    let logs = dir.join("logs");
    let orgs_file = format!("logs/group-{GROUP}-bitbucket-cloud-app-orgs.json");
    let group = format!("--groupId={GROUP}");
    let steps: [&[&str]; 3] = [
        &["orgs:data", "--source=bitbucket-cloud-app", &group],
        &["orgs:create", &format!("--file={orgs_file}")],
        &[
            "import:data",
            "--orgsData=logs/snyk-created-orgs.json",
            "--source=bitbucket-cloud-app",
        ],
    ];
    for step in steps {
        assert_eq!(
            bb2snyk(step, env.clone(), &dir).await.status.code(),
            Some(0)
        );
    }
    let orgs = read(&dir.join(&orgs_file));
    assert_eq!(orgs["orgs"].as_array().map(Vec::len), Some(26));
    assert!(
        orgs["orgs"][0]["slug"].is_string(),
        "the slug is carried: {orgs}"
    );
    let targets = read(&logs.join("bitbucket-cloud-app-import-targets.json"));
    let non_empty = (truth.repositories - truth.empty) as usize;
    assert_eq!(targets["targets"].as_array().map(Vec::len), Some(non_empty));

    let import = [
        "import",
        "--file=logs/bitbucket-cloud-app-import-targets.json",
    ];
    let first = bb2snyk(&import, env.clone(), &dir).await;
    assert_eq!(first.status.code(), Some(1), "the poison is parked");
    assert!(stdout(&first).contains("the repository could not be read"));
    let stats = sandbox.stats();
    assert_eq!(stats.orgs_created, 26);
    assert_eq!(stats.import_posts_total as usize, non_empty);
    let imported = non_empty - truth.poison_post as usize;
    let log = std::fs::read_to_string(logs.join("imported-targets.log")).expect("log");
    assert_eq!(
        log.lines().count(),
        imported,
        "written when a job completes"
    );
    let failed_logs = std::fs::read_dir(&logs)
        .expect("logs")
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .ends_with(".failed-imports.log")
        })
        .count();
    assert!(failed_logs > 0);

    // Every step again: nothing new in Snyk, the same files.
    for step in steps {
        assert_eq!(
            bb2snyk(step, env.clone(), &dir).await.status.code(),
            Some(0)
        );
    }
    assert_eq!(
        read(&logs.join("bitbucket-cloud-app-import-targets.json")),
        targets
    );
    let again = bb2snyk(&import, env.clone(), &dir).await;
    assert_eq!(again.status.code(), Some(1), "the poison is still parked");
    let after = sandbox.stats();
    assert_eq!(after.orgs_created, 26, "no org created twice");
    assert_eq!(after.duplicate_org_names, 0);
    assert_eq!(
        after.import_posts_total - stats.import_posts_total,
        truth.poison_post,
        "only the failures are tried again"
    );

    // The poison is cured: the next import brings in exactly what failed, and the one after, nothing.
    sandbox.update(|k| k.poison_paused = true);
    assert_eq!(
        bb2snyk(&import, env.clone(), &dir).await.status.code(),
        Some(0)
    );
    assert_eq!(
        bb2snyk(&import, env.clone(), &dir).await.status.code(),
        Some(0)
    );
    let last = sandbox.stats();
    assert_eq!(
        last.import_posts_total - after.import_posts_total,
        truth.poison_post
    );
    let log = std::fs::read_to_string(logs.join("imported-targets.log")).expect("log");
    assert_eq!(log.lines().count(), non_empty);

    // The log is lost: `list:imported` writes it again from Snyk's projects, with the same target ids,
    // and `import` resumes from it, posting nothing.
    std::fs::remove_file(logs.join("imported-targets.log")).expect("removed");
    let listed = bb2snyk(
        &[
            "list:imported",
            &group,
            "--integrationType=bitbucket-cloud-app",
        ],
        env.clone(),
        &dir,
    )
    .await;
    assert_eq!(listed.status.code(), Some(0), "{}", stdout(&listed));
    assert!(
        stdout(&listed).contains(&format!("Found {non_empty} imported target(s)")),
        "{}",
        stdout(&listed)
    );
    let relisted = std::fs::read_to_string(logs.join("imported-targets.log")).expect("log");
    let ids = |text: &str| -> std::collections::BTreeSet<String> {
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v["targetId"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(ids(&relisted), ids(&log), "the ids the imports logged");
    let resumed = bb2snyk(&import, env, &dir).await;
    assert_eq!(resumed.status.code(), Some(0));
    assert!(
        stdout(&resumed).contains(&format!(
            "Skipped previously imported {non_empty}/{non_empty} target(s)"
        )),
        "{}",
        stdout(&resumed)
    );
    assert_eq!(sandbox.stats().import_posts_total, last.import_posts_total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_targets_log_written_by_snyk_api_import_is_honoured() {
    let sandbox = Sandbox::start(Knobs {
        workspaces: 2,
        repos_per_workspace: 4,
        empty_rate: 0.0,
        job_ms: 100,
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let dir = workdir("legacy-log");
    let mut env = sandbox.env();
    env.push(("SNYK_LOG_PATH", dir.display().to_string()));
    let group = format!("--groupId={GROUP}");
    let orgs_file = format!("group-{GROUP}-bitbucket-cloud-app-orgs.json");
    for step in [
        vec!["orgs:data", "--source=bitbucket-cloud-app", &group],
        vec!["orgs:create", &format!("--file={orgs_file}")],
        vec![
            "import:data",
            "--orgsData=snyk-created-orgs.json",
            "--source=bitbucket-cloud-app",
        ],
    ] {
        assert_eq!(
            bb2snyk(&step, env.clone(), &dir).await.status.code(),
            Some(0)
        );
    }
    let targets = read(&dir.join("bitbucket-cloud-app-import-targets.json"));
    let all = targets["targets"].as_array().expect("targets").clone();
    assert_eq!(all.len(), 8);
    // Three lines as snyk-api-import writes them ("requested", bunyan fields); one without a targetId,
    // which is then computed the same way; and a line that is not JSON.
    let mut legacy = String::new();
    for (i, t) in all.iter().take(3).enumerate() {
        let target = &t["target"];
        let id = format!(
            "{}:{}:{}:{}:{}",
            t["orgId"].as_str().unwrap_or_default(),
            t["integrationId"].as_str().unwrap_or_default(),
            target["name"].as_str().unwrap_or_default(),
            target["owner"].as_str().unwrap_or_default(),
            target["branch"].as_str().unwrap_or_default()
        );
        let mut line = serde_json::json!({
            "name": "snyk:import-projects-script", "hostname": "ci", "pid": 7, "level": 30,
            "target": {"name": target["name"], "owner": target["owner"], "branch": target["branch"]},
            "locationUrl": "https://api.snyk.io/v1/org/x/integrations/y/import/z",
            "orgId": t["orgId"], "integrationId": t["integrationId"],
            "msg": "Target requested for import", "time": "2025-12-01T10:00:00.000Z", "v": 0
        });
        if i < 2 {
            line["targetId"] = id.into();
        }
        legacy.push_str(&format!("{line}\n"));
    }
    legacy.push_str("not json\n");
    std::fs::write(dir.join("imported-targets.log"), legacy).expect("write");

    let out = bb2snyk(
        &["import", "--file=bitbucket-cloud-app-import-targets.json"],
        env,
        &dir,
    )
    .await;
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("Skipped previously imported 3/8 target(s)"));
    assert_eq!(sandbox.stats().import_posts_total, 5);
}

/// Display names are not unique: 250 workspaces of which 16 share 8 names, listed by `/2.0/workspaces`
/// (which gives them). Each workspace gets an org of its own, and every repository is listed for import.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workspaces_that_share_a_display_name_get_an_org_each() {
    let sandbox = Sandbox::start(Knobs {
        workspaces: 250,
        repos_per_workspace: 4,
        shared_names: 8,
        user_workspaces_gone: true,
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let truth = sandbox.stats().truth;
    let dir = workdir("shared-names");
    let mut env = sandbox.env();
    env.push(("SNYK_LOG_PATH", ".".into()));
    let group = format!("--groupId={GROUP}");
    let orgs_file = format!("group-{GROUP}-bitbucket-cloud-app-orgs.json");
    for step in [
        vec!["orgs:data", "--source=bitbucket-cloud-app", group.as_str()],
        vec!["orgs:create", &format!("--file={orgs_file}")],
        vec![
            "import:data",
            "--orgsData=snyk-created-orgs.json",
            "--source=bitbucket-cloud-app",
        ],
    ] {
        let out = bb2snyk(&step, env.clone(), &dir).await;
        assert_eq!(out.status.code(), Some(0), "{step:?}: {}", stdout(&out));
    }
    let stats = sandbox.stats();
    assert_eq!(stats.orgs_created, 250, "one org per workspace");
    assert_eq!(stats.duplicate_org_names, 0);
    let targets = read(&dir.join("bitbucket-cloud-app-import-targets.json"));
    assert_eq!(
        targets["targets"].as_array().map(Vec::len),
        Some((truth.repositories - truth.empty) as usize),
        "no workspace's repositories left out"
    );
}

/// A team moving from snyk-api-import: the org it made (named after the display name) is reused, and so is
/// one bb2snyk made before it named orgs so (after the slug); nothing is created twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orgs_snyk_api_import_or_an_older_bb2snyk_made_are_reused() {
    let sandbox = Sandbox::start(Knobs {
        workspaces: 3,
        repos_per_workspace: 2,
        existing_orgs: vec!["Acme Engineering 0".into(), "globex-001".into()],
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let dir = workdir("moving");
    let mut env = sandbox.env();
    env.push(("SNYK_LOG_PATH", ".".into()));
    let group = format!("--groupId={GROUP}");
    let orgs_file = format!("--file=group-{GROUP}-bitbucket-cloud-app-orgs.json");
    for step in [
        vec!["orgs:data", "--source=bitbucket-cloud-app", group.as_str()],
        vec!["orgs:create", orgs_file.as_str()],
    ] {
        let out = bb2snyk(&step, env.clone(), &dir).await;
        assert_eq!(out.status.code(), Some(0), "{step:?}: {}", stdout(&out));
    }
    let stats = sandbox.stats();
    assert_eq!(
        stats.orgs_created, 1,
        "only the third workspace needed an org"
    );
    assert_eq!(stats.duplicate_org_names, 0);
    let created = read(&dir.join("snyk-created-orgs.json"));
    let names: Vec<&str> = created["orgData"]
        .as_array()
        .expect("orgData")
        .iter()
        .filter_map(|o| o["name"].as_str())
        .collect();
    assert!(names.contains(&"Acme Engineering 0"), "{names:?}");
}
