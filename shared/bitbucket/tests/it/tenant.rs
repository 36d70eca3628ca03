//! A tenant spread over workspace-owned consumers: each consumer sees only its own workspace, discovery
//! takes the union, each workspace is served by its own consumer, and a revoked one is named, not fatal.

use bb2snyk_bitbucket::{BitbucketError, Tenant};
use bb2snyk_sandbox::{Knobs, Sandbox};
use bb2snyk_settings::Settings;
use bb2snyk_test_support::unique;

use crate::{settings_from, walk};

/// Settings with the sandbox's consumers in a credentials file (named for their workspaces or not).
fn settings(sandbox: &Sandbox, named: bool, extra: &[(&str, &str)]) -> Settings {
    let path = std::env::temp_dir().join(format!("{}.toml", unique("consumers")));
    std::fs::write(&path, sandbox.credentials_file(named)).expect("credentials file");
    settings_from(sandbox.env_with_credentials_file(&path), extra)
}

fn tenant_of(settings: &Settings) -> Tenant {
    Tenant::from_settings(settings, reqwest::Client::new(), None).expect("credentials")
}

fn knobs() -> Knobs {
    Knobs {
        workspaces: 6,
        repos_per_workspace: 5,
        consumers: 3,
        ..Knobs::default()
    }
}

#[tokio::test]
async fn each_workspace_is_served_by_the_consumer_that_sees_it_and_no_other_asks() {
    for named in [false, true] {
        let sandbox = Sandbox::start(knobs()).await.expect("sandbox");
        let tenant = tenant_of(&settings(&sandbox, named, &[]));
        assert_eq!(tenant.accounts().len(), 3);
        let discovery = tenant.discover().await.expect("discovery");
        assert!(discovery.failed.is_empty() && discovery.unseen.is_empty());
        let slugs: Vec<&str> = discovery
            .workspaces
            .iter()
            .map(|(w, _)| w.slug.as_str())
            .collect();
        let truth = sandbox.truth();
        let expected: Vec<&str> = truth
            .as_array()
            .expect("tenant")
            .iter()
            .filter_map(|w| w["slug"].as_str())
            .collect();
        let mut sorted = expected.clone();
        sorted.sort_unstable();
        assert_eq!(slugs, sorted, "every workspace once (named: {named})");
        for (workspace, credential) in &discovery.workspaces {
            let client = tenant
                .client(credential.as_deref())
                .expect("a configured credential");
            assert_eq!(walk(client, &workspace.slug).await.len(), 5);
            let owner = expected
                .iter()
                .position(|s| *s == workspace.slug)
                .expect("known")
                % 3;
            assert_eq!(
                credential.as_deref(),
                Some(tenant.accounts()[owner].id.as_str()),
                "{} is served by its own consumer",
                workspace.slug
            );
        }
        let stats = sandbox.stats();
        assert_eq!(
            stats.foreign_requests, 0,
            "no consumer asked for another's workspace"
        );
        assert_eq!(
            stats.exchanges_by_consumer.len(),
            3,
            "{:?}",
            stats.exchanges_by_consumer
        );
        assert!(
            stats.exchanges_by_consumer.values().all(|n| *n == 1),
            "{:?}",
            stats.exchanges_by_consumer
        );
        assert!(
            !stats
                .exchanges_by_consumer
                .contains_key(&sandbox.knobs().client_id)
        );
        let unknown = tenant
            .client(Some("0000000000000000"))
            .expect_err("not configured");
        assert!(
            matches!(unknown, BitbucketError::UnknownCredential(_)),
            "{unknown}"
        );
        assert!(
            tenant.client(None).is_err(),
            "with several, a message must name one"
        );
    }
}

#[tokio::test]
async fn a_revoked_consumer_is_named_and_the_others_go_on() {
    let sandbox = Sandbox::start(knobs()).await.expect("sandbox");
    sandbox.revoke_consumer(1);
    let settings = settings(&sandbox, false, &[]);
    let tenant = tenant_of(&settings);
    let failures = tenant.sign_in().await;
    assert_eq!(failures.len(), 1, "{failures:?}");
    let (revoked_id, revoked_secret) = sandbox.knobs().consumer(1);
    let message = failures[0].to_string();
    assert!(
        message.contains(&revoked_id),
        "names the consumer: {message}"
    );
    assert!(
        !message.contains(&revoked_secret),
        "never its secret: {message}"
    );
    let discovery = tenant.discover().await.expect("the others go on");
    assert_eq!(discovery.failed.len(), 1);
    assert_eq!(
        discovery.workspaces.len(),
        4,
        "workspaces 1 and 4 belong to the revoked consumer"
    );

    // Named in bitbucket.workspaces but seen by nobody: reported, not dropped silently.
    let truth = sandbox.truth();
    let owned_by_revoked = truth[1]["slug"].as_str().expect("slug").to_owned();
    let limited = settings_limited(
        &sandbox,
        &[truth[0]["slug"].as_str().expect("slug"), &owned_by_revoked],
    );
    let discovery = tenant_of(&limited).discover().await.expect("discovery");
    assert_eq!(discovery.workspaces.len(), 1);
    assert_eq!(discovery.unseen, vec![owned_by_revoked]);
}

fn settings_limited(sandbox: &Sandbox, slugs: &[&str]) -> Settings {
    settings(
        sandbox,
        false,
        &[("BB2SNYK__BITBUCKET__WORKSPACES", &slugs.join(","))],
    )
}
