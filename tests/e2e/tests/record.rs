//! Snyk is the record of what is imported: a fleet that lost its Redis (or a new one on a new machine)
//! imports nothing that Snyk already holds.

use bb2snyk_e2e::{ALL, TestFleet};
use bb2snyk_sandbox::Knobs;

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
