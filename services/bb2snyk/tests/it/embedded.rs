//! `run`, `demo` and `doctor` with the real binary: no RabbitMQ or Redis involved.

use crate::common::{GROUP, bb2snyk, stderr, stdout, workdir};
use bb2snyk_sandbox::{Knobs, Sandbox};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_imports_the_tenant_and_a_second_run_skips_what_is_done() {
    let sandbox = Sandbox::start(Knobs {
        workspaces: 6,
        repos_per_workspace: 7,
        poison_job_rate: 0.05,
        job_ms: 200,
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let truth = sandbox.stats().truth;
    assert!(truth.poison_job > 0, "{truth:?}");
    let dir = workdir("run");
    let mut env = sandbox.env();
    env.push(("SNYK_LOG_PATH", dir.display().to_string()));
    env.push(("BB2SNYK__PIPELINE__EMBEDDED_RETRY_TIERS_SECS", "1".into()));
    let group = format!("--groupId={GROUP}");
    let run = ["run", group.as_str()];

    let first = bb2snyk(&run, env.clone(), &dir).await;
    assert_eq!(first.status.code(), Some(1), "failed jobs are parked");
    let clean = truth.repositories - truth.empty - truth.poison_job;
    assert!(
        stdout(&first).contains(&format!("Imported {clean} target(s)")),
        "{}",
        stdout(&first)
    );
    let stats = sandbox.stats();
    assert_eq!(stats.orgs_created, 6);
    assert_eq!(stats.token_exchanges, 1);
    assert_eq!(
        stats.import_posts_total,
        clean + 3 * truth.poison_job,
        "a failed job is tried 3 times, then parked"
    );

    sandbox.update(|k| k.poison_paused = true);
    let second = bb2snyk(&run, env.clone(), &dir).await;
    assert_eq!(second.status.code(), Some(0));
    assert!(
        stdout(&second).contains(&format!(
            "Imported {} target(s); {clean} were imported before",
            truth.poison_job
        )),
        "{}",
        stdout(&second)
    );
    let third = bb2snyk(&run, env.clone(), &dir).await;
    assert_eq!(third.status.code(), Some(0));
    let after = sandbox.stats();
    assert_eq!(after.orgs_created, 6, "orgs are reused by name");
    assert_eq!(
        after.import_posts_total,
        stats.import_posts_total + truth.poison_job,
        "nothing imported twice"
    );

    // A new machine, its log lost: Snyk is the record, so nothing is posted, and the new log lists all.
    let elsewhere = workdir("run-elsewhere");
    env.retain(|(k, _)| *k != "SNYK_LOG_PATH");
    env.push(("SNYK_LOG_PATH", elsewhere.display().to_string()));
    let fourth = bb2snyk(&run, env, &elsewhere).await;
    assert_eq!(fourth.status.code(), Some(0), "{}", stderr(&fourth));
    let imported = truth.repositories - truth.empty;
    assert!(
        stdout(&fourth).contains(&format!(
            "Imported 0 target(s); {imported} were imported before"
        )),
        "{}",
        stdout(&fourth)
    );
    assert_eq!(
        sandbox.stats().import_posts_total,
        after.import_posts_total,
        "no import posted"
    );
    let log = std::fs::read_to_string(elsewhere.join("imported-targets.log")).expect("the log");
    assert_eq!(log.lines().count() as u64, imported, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_travel_with_the_run_request() {
    let sandbox = Sandbox::start(Knobs {
        workspaces: 2,
        repos_per_workspace: 6,
        empty_rate: 0.0,
        fork_rate: 0.0,
        job_ms: 100,
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let slugs: Vec<String> = sandbox
        .truth()
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|w| w["repos"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r["slug"].as_str().map(str::to_owned))
        .collect();
    let kept = slugs
        .iter()
        .filter(|s| !s.ends_with("-0") && !s.ends_with("-1"))
        .count();
    assert!(kept > 0 && kept < slugs.len());
    let dir = workdir("filters");
    let mut env = sandbox.env();
    env.push(("SNYK_LOG_PATH", dir.display().to_string()));
    let group = format!("--groupId={GROUP}");
    let out = bb2snyk(&["run", group.as_str(), "--exclude=*-0,*-1"], env, &dir).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(sandbox.stats().import_posts_total as usize, kept);
    assert!(
        stdout(&out).contains(&format!("{} skipped by discovery", slugs.len() - kept)),
        "{}",
        stdout(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_on_a_fresh_machine_with_one_command() {
    let dir = workdir("demo");
    let out = bb2snyk(
        &["demo", "--workspaces=3", "--repos=4"],
        Vec::<(&str, &str)>::new(),
        &dir,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("3 orgs created"), "{text}");
    assert!(
        text.contains("Imported 0 target(s)"),
        "the second run: {text}"
    );
    assert!(dir.join("bb2snyk-demo/imported-targets.log").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_a_public_consumer_and_the_fix() {
    let sandbox = Sandbox::start(Knobs {
        public_consumer: true,
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let dir = workdir("doctor");
    let group = format!("--groupId={GROUP}");
    let out = bb2snyk(&["doctor", group.as_str()], sandbox.env(), &dir).await;
    assert_eq!(out.status.code(), Some(3));
    let text = stdout(&out);
    let line = text
        .lines()
        .find(|l| l.starts_with("FAIL  Bitbucket sign-in"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains("public") && line.contains("private"),
        "{line}"
    );
    assert!(text.contains("ok    SNYK_TOKEN and group"), "{text}");

    sandbox.update(|k| k.public_consumer = false);
    let out = bb2snyk(&["doctor", group.as_str()], sandbox.env(), &dir).await;
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("All checks passed."));
}

/// True when `text` holds something shaped like a sandbox Bearer token (`sbx` and 48 hex digits).
fn holds_bearer_token(text: &str) -> bool {
    text.match_indices("sbx").any(|(i, _)| {
        let rest = &text[i + 3..];
        rest.len() >= 48 && rest[..48].chars().all(|c| c.is_ascii_hexdigit())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_out_of_output_and_files_at_trace_level() {
    let sandbox = Sandbox::start(Knobs {
        workspaces: 2,
        repos_per_workspace: 3,
        poison_post_rate: 0.3,
        client_secret: "consumer-s3cr3t-value".into(),
        snyk_token: "snyk-s3cr3t-value".into(),
        job_ms: 100,
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let dir = workdir("secrets");
    let mut env = sandbox.env();
    env.push(("SNYK_LOG_PATH", dir.display().to_string()));
    env.push(("RUST_LOG", "trace".into()));
    env.push(("BB2SNYK__PIPELINE__EMBEDDED_RETRY_TIERS_SECS", "1".into()));
    let group = format!("--groupId={GROUP}");
    let mut texts = Vec::new();
    for args in [
        vec!["run", group.as_str()],
        vec!["doctor", group.as_str()],
        vec!["config"],
    ] {
        let out = bb2snyk(&args, env.clone(), &dir).await;
        texts.push(stdout(&out));
        texts.push(stderr(&out));
    }
    for entry in std::fs::read_dir(&dir).expect("logs").flatten() {
        texts.push(std::fs::read_to_string(entry.path()).unwrap_or_default());
    }
    assert!(sandbox.stats().token_exchanges >= 1, "a token was issued");
    assert!(
        texts
            .iter()
            .any(|t| t.contains("TRACE") || t.contains("DEBUG")),
        "trace logs were on"
    );
    for text in &texts {
        assert!(!text.contains("s3cr3t"), "a secret leaked: {text}");
        assert!(!holds_bearer_token(text), "a Bearer token leaked: {text}");
    }
}

/// A fifth of Snyk's POSTs take effect but are answered 502: no org is made twice, and an import is
/// posted again only when its first job was still pending at the retry (Snyk shows no target until then).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_through_ghost_writes_makes_nothing_twice_that_it_could_see() {
    let sandbox = Sandbox::start(Knobs {
        workspaces: 10,
        repos_per_workspace: 20,
        ghost_rate: 0.2,
        job_ms: 300,
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let truth = sandbox.stats().truth;
    let dir = workdir("ghosts");
    let mut env = sandbox.env();
    env.push(("SNYK_LOG_PATH", dir.display().to_string()));
    env.push(("BB2SNYK__PIPELINE__EMBEDDED_RETRY_TIERS_SECS", "1".into()));
    let group = format!("--groupId={GROUP}");
    let out = bb2snyk(&["run", group.as_str()], env, &dir).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let importable = truth.repositories - truth.empty;
    assert!(
        stdout(&out).contains(&format!("Imported {importable} target(s)")),
        "{}",
        stdout(&out)
    );
    let stats = sandbox.stats();
    assert!(stats.ghost_writes > 0, "ghost writes were injected");
    assert_eq!(stats.orgs_created, 10, "one org per workspace");
    assert_eq!(stats.duplicate_org_names, 0);
    let duplicates: u64 = stats.import_posts.values().map(|n| n - 1).sum();
    println!(
        "ghost writes {}, duplicate import jobs {duplicates}, posted again while the first job was pending {}",
        stats.ghost_writes, stats.posts_while_pending
    );
    assert!(duplicates <= stats.posts_while_pending);
}
