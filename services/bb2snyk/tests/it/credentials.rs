//! Several credentials with the real binary: `run` over workspace-owned consumers and several Snyk tokens
//! (one of them wrong), `doctor`'s table, `config` without secrets, and the file beside the single pair.

use crate::common::{GROUP, bb2snyk, stderr, stdout, workdir};
use bb2snyk_sandbox::{Knobs, Sandbox};

async fn tenant() -> (Sandbox, std::path::PathBuf, Vec<(&'static str, String)>) {
    let sandbox = Sandbox::start(Knobs {
        workspaces: 12,
        repos_per_workspace: 6,
        consumers: 12,
        snyk_tokens: vec!["second-snyk-token".into()],
        job_ms: 100,
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let dir = workdir("consumers");
    let file = dir.join("consumers.toml");
    std::fs::write(&file, sandbox.credentials_file(false)).expect("credentials file");
    let mut env = sandbox.env_with_credentials_file(&file);
    env.push(("SNYK_LOG_PATH", dir.display().to_string()));
    (sandbox, dir, env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_brings_in_a_tenant_of_consumers_with_every_token_and_skips_a_wrong_one() {
    let (sandbox, dir, mut env) = tenant().await;
    let knobs = sandbox.knobs();
    // A third token Snyk refuses: it leaves the rotation, the run goes on with the other two.
    env.retain(|(k, _)| *k != "SNYK_TOKENS");
    env.push((
        "SNYK_TOKENS",
        format!("{},not-a-snyk-token", knobs.snyk_tokens[0]),
    ));
    let group = format!("--groupId={GROUP}");
    let out = bb2snyk(&["run", group.as_str()], env, &dir).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let truth = sandbox.stats().truth;
    let clean = truth.repositories - truth.empty;
    assert!(
        stdout(&out).contains(&format!("Imported {clean} target(s)")),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("readable by every user"),
        "a world-readable credentials file is warned about: {}",
        stderr(&out)
    );
    assert!(
        !stderr(&out).contains("not-a-snyk-token"),
        "{}",
        stderr(&out)
    );
    let stats = sandbox.stats();
    assert_eq!(stats.orgs_created, 12, "one org per workspace");
    assert_eq!(stats.import_posts_total, clean, "each repository once");
    assert_eq!(stats.foreign_requests, 0);
    assert_eq!(
        stats.exchanges_by_consumer.len(),
        12,
        "{:?}",
        stats.exchanges_by_consumer
    );
    assert!(stats.exchanges_by_consumer.values().all(|n| *n == 1));
    assert_eq!(stats.snyk_by_token.len(), 2, "{:?}", stats.snyk_by_token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_every_consumer_and_config_shows_no_secret() {
    let (sandbox, dir, env) = tenant().await;
    let (revoked_id, revoked_secret) = sandbox.knobs().consumer(2);
    sandbox.revoke_consumer(2);
    let group = format!("--groupId={GROUP}");
    let out = bb2snyk(&["doctor", group.as_str()], env.clone(), &dir).await;
    assert_eq!(
        out.status.code(),
        Some(3),
        "a refused consumer is a credentials failure"
    );
    let report = stdout(&out);
    let rows: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("sandbox-client-id-"))
        .collect();
    assert_eq!(rows.len(), 12, "one row per consumer:\n{report}");
    let failed: Vec<&&str> = rows.iter().filter(|r| r.contains("FAIL")).collect();
    assert!(
        failed.len() == 1 && failed[0].contains(&revoked_id),
        "{report}"
    );
    assert!(!report.contains(&revoked_secret), "{report}");
    assert!(
        report.contains("ok    Snyk token 1 of 2") && report.contains("ok    Snyk token 2 of 2"),
        "every Snyk token is checked on its own:\n{report}"
    );

    let config = bb2snyk(&["config"], env.clone(), &dir).await;
    let shown = format!("{}{}", stdout(&config), stderr(&config));
    assert!(shown.contains("12 consumers"), "{shown}");
    assert!(!shown.contains("sandbox-client-secret"), "{shown}");
    assert!(
        !shown.contains("second-snyk-token") && !shown.contains("sandbox-snyk-token"),
        "{shown}"
    );

    let mut both = env;
    both.push(("BITBUCKET_APP_CLIENT_ID", "key".into()));
    let out = bb2snyk(&["doctor"], both, &dir).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "the file beside the pair is a configuration error"
    );
    let error = stderr(&out) + &stdout(&out);
    assert!(
        error.contains("BITBUCKET_APP_CREDENTIALS_FILE")
            && error.contains("BITBUCKET_APP_CLIENT_ID"),
        "{error}"
    );
}
