//! Bitbucket access against the sandbox and real Redis: credentials, the fleet-wide token cache, discovery
//! and the shared budget. Each test has its own sandbox and its own Redis key prefix.

mod access;
mod broken;
mod budget;
mod discovery;
mod tenant;
mod token_cache;

use std::{collections::HashMap, sync::Arc};

use bb2snyk_bitbucket::{Bitbucket, Consumer, TokenProvider};
use bb2snyk_sandbox::Sandbox;
use bb2snyk_settings::{Settings, Sources};
use bb2snyk_store::{Budget, BudgetConfig, Store};
use bb2snyk_test_support::{redis_url, unique};
use secrecy::{ExposeSecret, SecretString};

/// Settings pointing at `sandbox`, a fresh Redis prefix, and `extra` variables on top.
fn settings(sandbox: &Sandbox, extra: &[(&str, &str)]) -> Settings {
    settings_from(sandbox.env(), extra)
}

/// Settings from these variables (the sandbox's, in one form or another), as [`settings`] makes them.
fn settings_from(base: Vec<(&'static str, String)>, extra: &[(&str, &str)]) -> Settings {
    let mut env: HashMap<String, String> =
        base.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    env.insert("REDIS_URL".into(), redis_url().expose_secret().to_owned());
    env.insert(
        "BB2SNYK__REDIS__PREFIX".into(),
        format!("{}:", unique("bitbucket")),
    );
    for (k, v) in extra {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    bb2snyk_settings::load(&Sources { file: None, env }).expect("settings")
}

/// One replica's view: its own HTTP client, its own Redis connection, its own token provider.
struct Replica {
    provider: Arc<TokenProvider>,
    bitbucket: Bitbucket,
    store: Store,
}

async fn replica(settings: &Settings, redis: SecretString) -> Replica {
    let http = bb2snyk_http::client(&settings.http).expect("HTTP client");
    let store = Store::connect(&redis, &settings.redis.prefix)
        .await
        .expect("Redis");
    let (client_id, client_secret) = settings.bitbucket_consumer().expect("consumer");
    let provider = Arc::new(TokenProvider::new(
        http.clone(),
        settings.bitbucket.token_url.clone(),
        Consumer {
            client_id: client_id.to_owned(),
            client_secret: client_secret.clone(),
        },
        Some(store.clone()),
    ));
    let budget = Budget::new(
        Some(store.clone()),
        BudgetConfig {
            api: "bitbucket",
            credential: provider.account(),
            limit: settings.bitbucket.rate_budget,
            window: settings.bitbucket.rate_window,
        },
    );
    let bitbucket = Bitbucket::new(
        http,
        &settings.bitbucket.api_base,
        provider.clone(),
        Arc::new(budget),
    )
    .with_workspaces(settings.bitbucket.workspaces.clone());
    Replica {
        provider,
        bitbucket,
        store,
    }
}

/// Every repository of every page of `workspace`.
async fn walk(bitbucket: &Bitbucket, workspace: &str) -> Vec<bb2snyk_bitbucket::Repository> {
    let mut repos = Vec::new();
    let mut pages = bitbucket.repositories(workspace, &Default::default());
    while let Some(page) = pages.next_page().await.expect("a page") {
        repos.extend(page);
    }
    repos
}

/// Requests the sandbox received for `endpoint`, e.g. `GET /2.0/repositories/{workspace}`.
fn requests(sandbox: &Sandbox, endpoint: &str) -> u64 {
    sandbox.stats().requests.get(endpoint).copied().unwrap_or(0)
}
