//! Secrets never reach the logs: at trace level, for every target (ours, reqwest, hyper, the sandbox), in
//! both log formats, across a token exchange, both APIs and their error paths.
//!
//! A test binary of its own: it installs tracing subscribers and counts the HTTP stack's trace lines, and
//! tracing's callsite registry is shared by the whole process, so other tests' traffic must not be in it.

use std::{collections::HashMap, sync::Arc, time::Duration};

use bb2snyk_bitbucket::{Authorization, Bitbucket, Consumer, Fixed, RepoFilter, Tenant, exchange};
use bb2snyk_e2e::Captured;
use bb2snyk_sandbox::{Knobs, Sandbox};
use bb2snyk_settings::{Settings, Sources};
use bb2snyk_snyk::Client as Snyk;
use bb2snyk_store::Store;
use bb2snyk_telemetry::Format;
use bb2snyk_test_support::{redis_url, unique};
use secrecy::{ExposeSecret, SecretString};
use tracing_subscriber::EnvFilter;

const CLIENT_SECRET: &str = "cs-4f8a1d7e9b2c6a30-very-secret";
const SNYK_TOKEN: &str = "st-0c1b2a3d4e5f6a7b-very-secret";
const ACCESS_TOKEN: &str = "at-9e8d7c6b5a4f3e2d-very-secret";
const SECOND_SNYK_TOKEN: &str = "st-71d2c3b4a5968778-very-secret";
const WRONG_SNYK_TOKEN: &str = "st-aaaabbbbccccdddd-wrong-secret";

/// Runs a whole session: settings from the environment, the shared token cache on real Redis, Bitbucket,
/// Snyk, and failures of each. Returns the Bearer tokens it used and the Debug text of everything it held.
async fn session(sandbox: &Sandbox) -> (Vec<String>, String) {
    let mut env: HashMap<String, String> = sandbox
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    env.insert(
        "BB2SNYK__REDIS__PREFIX".into(),
        format!("{}:", unique("secrets")),
    );
    env.insert("REDIS_URL".into(), redis_url().expose_secret().to_owned());
    let settings: Settings =
        bb2snyk_settings::load(&Sources { file: None, env }).expect("settings load");
    let mut debug = format!("{settings:?}\n");
    let http = bb2snyk_http::client(&settings.http).expect("HTTP client");
    let store = Store::connect(&settings.redis.url, &settings.redis.prefix)
        .await
        .expect("Redis");
    let bitbucket =
        Bitbucket::from_settings(&settings, http.clone(), Some(store)).expect("credentials");
    let bearer = || async {
        match bitbucket.credential().authorization().await.expect("token") {
            Authorization::Bearer(token) => token.expose_secret().to_owned(),
            other => panic!("expected a Bearer token, got {other:?}"),
        }
    };
    let mut bearers = vec![bearer().await];
    walk_everything(&bitbucket).await;
    let snyk = Snyk::from_settings(&settings, http.clone(), None).expect("SNYK_TOKEN");
    snyk.group_orgs(&sandbox.knobs().group_id)
        .await
        .expect("orgs");
    debug += &format!("{snyk:?} {bitbucket:?}\n");

    // A revoked Bearer token is refreshed (the 401 and the refresh are logged), and the walk goes on.
    sandbox.revoke_tokens();
    walk_everything(&bitbucket).await;
    bearers.push(bearer().await);

    // The error paths: a wrong consumer secret, a rejected access token, a rejected Snyk token.
    let (client_id, _) = settings.bitbucket_consumer().expect("consumer");
    let wrong = Consumer {
        client_id: client_id.to_owned(),
        client_secret: SecretString::from(format!("{CLIENT_SECRET}-wrong")),
    };
    let refused = exchange(&http, &settings.bitbucket.token_url, &wrong)
        .await
        .expect_err("wrong secret");
    let fixed = Bitbucket::new(
        http.clone(),
        &settings.bitbucket.api_base,
        Arc::new(Fixed::access_token(SecretString::from(
            ACCESS_TOKEN.to_owned(),
        ))),
        bitbucket.budget().clone(),
    );
    let rejected = fixed.workspaces().await.expect_err("unknown access token");
    let bad_snyk = Snyk::new(
        http,
        &settings.snyk.api_base,
        vec![(
            SecretString::from(format!("{SNYK_TOKEN}-wrong")),
            bb2snyk_store::Budget::new(
                None,
                bb2snyk_store::BudgetConfig {
                    api: "snyk",
                    credential: "wrong".into(),
                    limit: 100,
                    window: Duration::from_secs(60),
                },
            ),
        )],
    );
    let unauthorised = bad_snyk
        .group_orgs(&sandbox.knobs().group_id)
        .await
        .expect_err("401");
    // The trust paths: a URL on another host (refused before anything is sent), a ghost write.
    let foreign = bitbucket
        .get::<serde_json::Value>(
            bb2snyk_http::Call {
                endpoint: "/repositories/{workspace}",
                about: "x",
            },
            "http://127.0.0.1:9/2.0/repositories/x",
        )
        .await
        .expect_err("foreign host");
    let foreign_job = snyk
        .job("o", "http://127.0.0.1:9/v1/org/o/integrations/i/import/j")
        .await
        .expect_err("foreign host");
    sandbox.update(|k| k.ghost_rate = 1.0);
    let ghost = snyk
        .create_org("ghost", &sandbox.knobs().group_id, None)
        .await
        .expect_err("a 502 after the write");
    sandbox.update(|k| k.ghost_rate = 0.0);
    debug += &format!(
        "{refused:?} {refused} {rejected:?} {rejected} {fixed:?} {unauthorised:?} {unauthorised}\n\
         {foreign:?} {foreign} {foreign_job:?} {foreign_job} {ghost:?} {ghost}\n"
    );
    debug += &several_credentials(sandbox).await;
    (bearers, debug)
}

/// The same with workspace-owned consumers from a credentials file (their secrets are the client secret
/// with a suffix) and several Snyk tokens, one of them refused: discovery, paging, a revoked consumer.
async fn several_credentials(sandbox: &Sandbox) -> String {
    let path = std::env::temp_dir().join(format!("{}.toml", unique("secrets-consumers")));
    std::fs::write(&path, sandbox.credentials_file(false)).expect("credentials file");
    let mut env: HashMap<String, String> = sandbox
        .env_with_credentials_file(&path)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    env.insert(
        "SNYK_TOKENS".into(),
        format!("{SECOND_SNYK_TOKEN},{WRONG_SNYK_TOKEN}"),
    );
    env.insert(
        "BB2SNYK__REDIS__PREFIX".into(),
        format!("{}:", unique("secrets")),
    );
    env.insert("REDIS_URL".into(), redis_url().expose_secret().to_owned());
    let settings = bb2snyk_settings::load(&Sources { file: None, env }).expect("settings load");
    let http = bb2snyk_http::client(&settings.http).expect("HTTP client");
    let store = Store::connect(&settings.redis.url, &settings.redis.prefix)
        .await
        .expect("Redis");
    let tenant = Tenant::from_settings(&settings, http.clone(), Some(store)).expect("consumers");
    let discovery = tenant.discover().await.expect("discovery");
    for (workspace, credential) in &discovery.workspaces {
        let client = tenant.client(credential.as_deref()).expect("credential");
        let mut pages = client.repositories(&workspace.slug, &RepoFilter::default());
        while pages.next_page().await.expect("repositories").is_some() {}
    }
    sandbox.revoke_consumer(1);
    let refused = tenant.discover().await.expect("the others go on").failed;
    assert_eq!(refused.len(), 1, "the revoked consumer is refused");
    let snyk = Snyk::from_settings(&settings, http, None).expect("SNYK_TOKENS");
    for _ in 0..6 {
        snyk.group_orgs(&sandbox.knobs().group_id)
            .await
            .expect("orgs with the tokens Snyk accepts");
    }
    assert_eq!(
        snyk.tokens_in_rotation(),
        (2, 3),
        "the wrong token was tried and left"
    );
    format!(
        "{settings:?} {:?} {tenant:?} {snyk:?} {discovery:?} {refused:?} {}\n",
        settings.describe(),
        refused
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

async fn walk_everything(bitbucket: &Bitbucket) {
    for ws in bitbucket.workspaces().await.expect("workspaces") {
        let mut pages = bitbucket.repositories(&ws.slug, &RepoFilter::default());
        while pages.next_page().await.expect("repositories").is_some() {}
    }
}

async fn captured_session(format: Format) {
    let knobs = Knobs {
        client_secret: CLIENT_SECRET.into(),
        snyk_token: SNYK_TOKEN.into(),
        snyk_tokens: vec![SECOND_SNYK_TOKEN.into()],
        consumers: 2,
        ..Knobs::default()
    };
    let sandbox = Sandbox::start(knobs).await.expect("sandbox");
    let captured = Captured::default();
    let subscriber =
        bb2snyk_telemetry::subscriber(EnvFilter::new("trace"), format, captured.clone(), false);
    let guard = tracing::subscriber::set_default(subscriber);
    let (bearers, debug) = session(&sandbox).await;
    drop(guard);
    let logs = captured.text();

    // The capture is real: it saw our calls and the HTTP stack's trace output.
    assert!(
        logs.contains("bitbucket token exchange") && logs.contains("snyk call"),
        "our debug lines are missing"
    );
    assert!(
        logs.contains("/2.0/repositories/acme-000"),
        "request URLs are missing"
    );
    assert!(
        logs.lines().count() > 50,
        "trace output from the HTTP stack is missing ({} lines)",
        logs.lines().count()
    );
    assert!(
        logs.contains("refreshing once"),
        "the 401 and its refresh are missing"
    );
    assert!(bearers.len() == 2 && bearers[0] != bearers[1] && bearers[0].len() > 20);

    for (name, secret) in [
        ("client secret", CLIENT_SECRET),
        ("Snyk token", SNYK_TOKEN),
        ("access token", ACCESS_TOKEN),
        ("second Snyk token", SECOND_SNYK_TOKEN),
        ("refused Snyk token", WRONG_SNYK_TOKEN),
        ("first Bearer token", bearers[0].as_str()),
        ("second Bearer token", bearers[1].as_str()),
    ] {
        assert!(
            !logs.contains(secret),
            "the {name} appears in the {format:?} logs"
        );
        assert!(
            !debug.contains(secret),
            "the {name} appears in Debug or Display output"
        );
    }
}

#[tokio::test]
async fn no_secret_in_human_logs_at_trace_level() {
    captured_session(Format::Human).await;
}

#[tokio::test]
async fn no_secret_in_json_logs_at_trace_level() {
    captured_session(Format::Json).await;
}
