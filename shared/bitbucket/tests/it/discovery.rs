//! Discovery: every workspace and repository in the fewest requests, the CHANGE-2770 fallback, an explicit
//! workspace list, and filters pushed to Bitbucket where it can apply them.

use bb2snyk_bitbucket::{BitbucketError, RepoFilter};
use bb2snyk_sandbox::{Knobs, Sandbox};
use bb2snyk_settings::Filters;
use bb2snyk_test_support::redis_url;

use crate::{replica, requests, settings, walk};

const COUNTS: [usize; 5] = [0, 1, 100, 101, 1000];

async fn tenant() -> Sandbox {
    Sandbox::start(Knobs {
        workspaces: 250,
        repo_counts: COUNTS.to_vec(),
        ..Knobs::default()
    })
    .await
    .expect("sandbox")
}

#[tokio::test]
async fn every_workspace_and_repository_in_the_fewest_requests() {
    let sandbox = tenant().await;
    let settings = settings(&sandbox, &[]);
    let r = replica(&settings, redis_url()).await;
    let workspaces = r.bitbucket.workspaces().await.expect("workspaces");
    assert_eq!(workspaces.len(), 250);
    assert_eq!(
        requests(&sandbox, "GET /2.0/user/workspaces"),
        3,
        "pages of 100"
    );

    let mut found = 0;
    let mut slugs = std::collections::HashSet::new();
    for ws in &workspaces {
        for repo in walk(&r.bitbucket, &ws.slug).await {
            found += 1;
            slugs.insert(repo.full_name.unwrap_or_default());
        }
    }
    let expected: usize = (0..250).map(|i| COUNTS[i % COUNTS.len()]).sum();
    assert_eq!((found, slugs.len()), (expected, expected));
    // One page for an empty workspace, else one per 100 repositories.
    let minimum: usize = (0..250)
        .map(|i| COUNTS[i % COUNTS.len()].div_ceil(100).max(1))
        .sum();
    assert_eq!(
        requests(&sandbox, "GET /2.0/repositories/{workspace}"),
        minimum as u64
    );
    assert_eq!(sandbox.stats().token_exchanges, 1);
}

#[tokio::test]
async fn when_user_workspaces_is_gone_the_older_list_finds_them() {
    let sandbox = tenant().await;
    sandbox.update(|k| k.user_workspaces_gone = true);
    let r = replica(&settings(&sandbox, &[]), redis_url()).await;
    let workspaces = r.bitbucket.workspaces().await.expect("fallback");
    assert_eq!(workspaces.len(), 250);
    assert!(
        workspaces.iter().all(|w| w.name.is_some()),
        "/workspaces carries names"
    );
    assert_eq!(requests(&sandbox, "GET /2.0/user/workspaces"), 1);
    assert_eq!(requests(&sandbox, "GET /2.0/workspaces"), 3);
}

#[tokio::test]
async fn when_both_lists_are_gone_the_error_says_to_name_the_workspaces() {
    let sandbox = Sandbox::start(Knobs::default()).await.expect("sandbox");
    sandbox.update(|k| {
        k.user_workspaces_gone = true;
        k.workspaces_gone = true;
    });
    let r = replica(&settings(&sandbox, &[]), redis_url()).await;
    let error = r.bitbucket.workspaces().await.expect_err("both gone");
    assert!(matches!(error, BitbucketError::WorkspacesUnlisted(_)));
    assert_eq!(
        error.to_string(),
        "Bitbucket lists no workspaces for this credential: /2.0/user/workspaces and /2.0/workspaces both answered \
         410 Gone; name the workspaces instead with bitbucket.workspaces in the config file (or \
         BB2SNYK__BITBUCKET__WORKSPACES), comma-separated slugs"
    );

    // And naming them works, without asking Bitbucket for a list.
    let named = replica(
        &settings(
            &sandbox,
            &[("BB2SNYK__BITBUCKET__WORKSPACES", "globex-001, acme-000")],
        ),
        redis_url(),
    )
    .await;
    let slugs: Vec<String> = named
        .bitbucket
        .workspaces()
        .await
        .expect("explicit list")
        .into_iter()
        .map(|w| w.slug)
        .collect();
    assert_eq!(slugs, ["globex-001", "acme-000"]);
    assert_eq!(requests(&sandbox, "GET /2.0/workspaces"), 1);
}

#[tokio::test]
async fn filters_skip_with_reasons_and_bitbucket_applies_what_it_can() {
    let sandbox = Sandbox::start(Knobs {
        workspaces: 1,
        repos_per_workspace: 300,
        fork_rate: 0.2,
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let r = replica(&settings(&sandbox, &[]), redis_url()).await;
    let all = walk(&r.bitbucket, "acme-000").await;
    let filter = RepoFilter::new(&Filters {
        exclude_forks: true,
        project_keys: vec!["PRJ1".into()],
        ..Filters::default()
    });
    let mut pages = r.bitbucket.repositories("acme-000", &filter);
    let mut served = Vec::new();
    while let Some(page) = pages.next_page().await.expect("page") {
        served.extend(page);
    }
    assert!(
        served
            .iter()
            .all(|r| r.project.as_ref().is_some_and(|p| p.key == "PRJ1")),
        "Bitbucket applied the project key"
    );
    assert!(served.len() < all.len() / 2);
    let kept: Vec<_> = served.iter().filter(|r| filter.check(r).is_ok()).collect();
    let expected = all
        .iter()
        .filter(|r| {
            r.project.as_ref().is_some_and(|p| p.key == "PRJ1") && !r.is_fork() && !r.is_empty()
        })
        .count();
    assert_eq!(kept.len(), expected);
    assert!(
        kept.len() < served.len(),
        "forks or empty ones were skipped"
    );
}

/// Listings come in the repositories' uuid order, which no update changes: a repository updated while a
/// workspace is paged through moves to no other page (in the default order, by update time, it could).
#[tokio::test]
async fn repositories_are_listed_in_the_stable_order_of_their_uuids() {
    let sandbox = Sandbox::start(Knobs {
        workspaces: 1,
        repos_per_workspace: 250,
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let r = replica(&settings(&sandbox, &[]), redis_url()).await;
    let listed = walk(&r.bitbucket, "acme-000").await;
    assert_eq!(listed.len(), 250);
    let uuids: Vec<&str> = listed.iter().filter_map(|r| r.uuid.as_deref()).collect();
    assert_eq!(uuids.len(), 250);
    assert!(
        uuids.windows(2).all(|w| w[0] < w[1]),
        "pages come in uuid order"
    );
}
