//! The fleet's budget against a rate-limited Bitbucket: no 429s while the budget is spent in full, and
//! 429s honoured when they come anyway.

use std::time::{Duration, Instant};

use bb2snyk_sandbox::{Knobs, Sandbox};
use bb2snyk_test_support::redis_url;
use futures_util::future::join_all;

use crate::{replica, requests, settings, walk};

/// The sandbox allows 120 requests a minute; the two replicas share a budget of 114 (95 %). They walk 140
/// pages between them, so the budget runs out and pacing has to hold them until the window rolls.
#[tokio::test]
async fn two_replicas_spend_the_budget_without_a_429() {
    let sandbox = Sandbox::start(Knobs {
        workspaces: 14,
        repos_per_workspace: 1000,
        bitbucket_rate_limit: Some(120),
        bitbucket_window_secs: 60,
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let settings = settings(
        &sandbox,
        &[
            ("BB2SNYK__BITBUCKET__RATE_BUDGET", "114"),
            ("BB2SNYK__BITBUCKET__RATE_WINDOW_SECS", "60"),
        ],
    );
    let replicas = join_all((0..2).map(|_| replica(&settings, redis_url()))).await;
    let slugs: Vec<String> = sandbox
        .truth()
        .as_array()
        .expect("the tenant")
        .iter()
        .filter_map(|w| w["slug"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(slugs.len(), 14);
    let started = Instant::now();
    let walks = replicas.iter().enumerate().map(|(i, r)| {
        let slugs = &slugs;
        async move {
            let mut finished = Vec::new();
            for slug in slugs.iter().skip(i).step_by(2) {
                let mut pages = r.bitbucket.repositories(slug, &Default::default());
                while pages.next_page().await.expect("no error").is_some() {
                    finished.push(started.elapsed());
                }
            }
            finished
        }
    });
    let mut times: Vec<Duration> = join_all(walks).await.concat();
    times.sort();
    assert_eq!(times.len(), 140);
    let stats = sandbox.stats();
    assert_eq!(stats.rate_limited.get("bitbucket"), None, "no 429 was sent");
    let in_first_minute = times
        .iter()
        .filter(|t| **t < Duration::from_secs(60))
        .count();
    assert!(
        in_first_minute >= 108,
        "together they used at least 90 % of 120 in the first minute: {in_first_minute}"
    );
    assert_eq!(in_first_minute, 114, "and exactly the budget");
    assert_eq!(requests(&sandbox, "GET /2.0/repositories/{workspace}"), 140);
}

/// A server stricter than the budget answers 429; the client pauses as told and every page still arrives.
#[tokio::test]
async fn a_429_pauses_and_the_walk_completes() {
    let sandbox = Sandbox::start(Knobs {
        workspaces: 1,
        repos_per_workspace: 1000,
        bitbucket_rate_limit: Some(4),
        bitbucket_window_secs: 1,
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let r = replica(&settings(&sandbox, &[]), redis_url()).await;
    assert_eq!(walk(&r.bitbucket, "acme-000").await.len(), 1000);
    let limited = sandbox
        .stats()
        .rate_limited
        .get("bitbucket")
        .copied()
        .unwrap_or(0);
    assert!(limited >= 1, "the sandbox did refuse some requests");
    assert_eq!(
        requests(&sandbox, "GET /2.0/repositories/{workspace}"),
        10 + limited,
        "each refused page was asked for again, nothing more"
    );
}
