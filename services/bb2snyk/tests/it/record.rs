//! Snyk's record is read to its last page whatever form its `next` links take: with 3 orgs of 250
//! targets, a second `run` from a fresh directory posts no import, and `list:imported` writes every
//! target, when Snyk answers `/rest`-prefixed links and when it answers relative ones.

use bb2snyk_sandbox::{Knobs, Sandbox};

use crate::common::{GROUP, bb2snyk, stderr, stdout, workdir};

async fn second_run_and_list_read_every_page(links: &str) {
    let sandbox = Sandbox::start(Knobs {
        workspaces: 3,
        repos_per_workspace: 250,
        job_ms: 50,
        rest_links: links.into(),
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let truth = sandbox.stats().truth;
    let imported = truth.repositories - truth.empty;
    let group = format!("--groupId={GROUP}");
    let first_dir = workdir(&format!("record-{links}"));
    let mut env = sandbox.env();
    env.push(("SNYK_LOG_PATH", first_dir.display().to_string()));
    let first = bb2snyk(&["run", &group], env.clone(), &first_dir).await;
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let posts = sandbox.stats().import_posts_total;
    assert_eq!(posts, imported);

    // A new machine: no log, no ledger; only Snyk knows what is imported.
    let dir = workdir(&format!("record-{links}-again"));
    let mut env = sandbox.env();
    env.push(("SNYK_LOG_PATH", dir.display().to_string()));
    let second = bb2snyk(&["run", &group], env.clone(), &dir).await;
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    assert_eq!(
        sandbox.stats().import_posts_total,
        posts,
        "{links} links: the second run posted imports"
    );
    let listed = bb2snyk(
        &[
            "list:imported",
            &group,
            "--integrationType=bitbucket-cloud-app",
        ],
        env,
        &dir,
    )
    .await;
    assert_eq!(listed.status.code(), Some(0), "{}", stderr(&listed));
    let log = std::fs::read_to_string(dir.join("imported-targets.log")).expect("log");
    let ids: std::collections::BTreeSet<&str> = log
        .lines()
        .filter_map(|l| l.split("\"targetId\":\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(
        ids.len() as u64,
        imported,
        "{links} links: {}",
        stdout(&listed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_record_is_read_to_its_last_page_with_rest_prefixed_links() {
    second_run_and_list_read_every_page("prefixed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_record_is_read_to_its_last_page_with_relative_links() {
    second_run_and_list_read_every_page("relative").await;
}
