//! The token cache shared through Redis: one exchange per lifetime for the whole fleet, a refresh on
//! revocation, degraded mode while Redis is down, and nothing readable at rest.

use std::time::Duration;

use bb2snyk_sandbox::{Knobs, Sandbox};
use bb2snyk_test_support::{RedisServer, redis_url, wait_for};
use futures_util::future::join_all;
use secrecy::ExposeSecret;

use crate::{Replica, replica, settings, walk};

/// 50 concurrent token requests on each replica; every one must succeed.
async fn fifty_callers_each(replicas: &[Replica]) {
    let calls = replicas
        .iter()
        .flat_map(|r| (0..50).map(move |_| r.provider.token()));
    for result in join_all(calls).await {
        result.expect("a token");
    }
}

#[tokio::test]
async fn eight_replicas_make_one_exchange_per_lifetime() {
    let sandbox = Sandbox::start(Knobs {
        token_expires_in: 4,
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let settings = settings(&sandbox, &[]);
    let replicas = join_all((0..8).map(|_| replica(&settings, redis_url()))).await;
    fifty_callers_each(&replicas).await;
    assert_eq!(
        sandbox.stats().token_exchanges,
        1,
        "a cold fleet exchanges once"
    );
    let shared: u64 = replicas
        .iter()
        .map(|r| r.provider.stats().shared_hits)
        .sum();
    assert_eq!(
        shared, 7,
        "the other seven replicas took the token from Redis"
    );

    // Past the token's lifetime (4 s), the next calls refresh it: once, for the whole fleet.
    tokio::time::sleep(Duration::from_secs(4)).await;
    fifty_callers_each(&replicas).await;
    assert_eq!(
        sandbox.stats().token_exchanges,
        2,
        "one more exchange after the lifetime"
    );
    for r in &replicas {
        r.bitbucket
            .workspaces()
            .await
            .expect("the refreshed token works");
    }
    assert_eq!(sandbox.stats().token_exchanges, 2);
}

#[tokio::test]
async fn a_flaky_token_endpoint_is_retried_and_still_exchanged_once() {
    let sandbox = Sandbox::start(Knobs {
        token_fault_rate: 0.6,
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let settings = settings(&sandbox, &[]);
    let replicas = join_all((0..4).map(|_| replica(&settings, redis_url()))).await;
    fifty_callers_each(&replicas).await;
    let stats = sandbox.stats();
    assert_eq!(stats.token_exchanges, 1);
    assert!(stats.server_errors >= 1, "the endpoint did fail");
    assert_eq!(
        stats.server_errors,
        stats
            .requests
            .get("POST /site/oauth2/access_token")
            .copied()
            .unwrap_or(0)
            - 1,
        "every 503 was followed by another try, and the one success ended them"
    );
}

/// A 429 from the token endpoint is passing: waited out and tried again, never taken for a credential error
/// (which would park every message of the workspace).
#[tokio::test]
async fn a_429_from_the_token_endpoint_is_waited_out() {
    let sandbox = Sandbox::start(Knobs {
        token_429_rate: 1.0,
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let settings = settings(&sandbox, &[]);
    let consumer = bb2snyk_bitbucket::Consumer {
        client_id: sandbox.knobs().client_id,
        client_secret: secrecy::SecretString::from(sandbox.knobs().client_secret),
    };
    let error = bb2snyk_bitbucket::exchange(
        &reqwest::Client::new(),
        &settings.bitbucket.token_url,
        &consumer,
    )
    .await
    .expect_err("429");
    assert!(error.is_transient() && !error.is_credentials(), "{error:?}");

    sandbox.update(|k| k.token_429_rate = 0.5);
    let r = replica(&settings, redis_url()).await;
    r.provider.token().await.expect("a token after the 429s");
    let stats = sandbox.stats();
    assert_eq!(stats.token_exchanges, 1);
    assert!(stats.rate_limited.get("token").copied().unwrap_or(0) >= 1);
}

#[tokio::test]
async fn a_token_revoked_mid_walk_is_refreshed_once_and_the_walk_completes() {
    let sandbox = Sandbox::start(Knobs {
        workspaces: 1,
        repos_per_workspace: 1000,
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let settings = settings(&sandbox, &[]);
    let r = replica(&settings, redis_url()).await;
    let mut pages = r.bitbucket.repositories("acme-000", &Default::default());
    let mut repos = Vec::new();
    for _ in 0..3 {
        repos.extend(
            pages
                .next_page()
                .await
                .expect("a page")
                .expect("more pages"),
        );
    }
    assert_eq!(sandbox.revoke_tokens(), 1);
    while let Some(page) = pages.next_page().await.expect("the walk goes on") {
        repos.extend(page);
    }
    assert_eq!(repos.len(), 1000);
    let stats = sandbox.stats();
    assert_eq!(stats.token_exchanges, 2, "one exchange, then one refresh");
    assert_eq!(
        stats.requests.get("GET /2.0/repositories/{workspace}"),
        Some(&11),
        "10 pages and the one refused with 401"
    );
}

#[tokio::test]
async fn without_redis_each_replica_exchanges_at_most_once_and_shares_again_when_it_is_back() {
    let mut redis = RedisServer::start().await;
    let sandbox = Sandbox::start(Knobs::default()).await.expect("sandbox");
    let settings = settings(&sandbox, &[]);
    let replicas = join_all((0..4).map(|_| replica(&settings, redis.url()))).await;
    fifty_callers_each(&replicas).await;
    assert_eq!(sandbox.stats().token_exchanges, 1);

    // Redis dies and every token is revoked: each replica needs a new one and cannot share it.
    redis.stop();
    sandbox.revoke_tokens();
    for round in 0..3 {
        for r in &replicas {
            let repos = walk(&r.bitbucket, "acme-000").await;
            assert_eq!(repos.len(), 12, "round {round}: calls keep succeeding");
        }
    }
    let during = sandbox.stats().token_exchanges - 1;
    assert!(
        during <= 4,
        "at most one exchange per replica, saw {during}"
    );
    assert!(replicas.iter().all(|r| r.store.failures() > 0));
    assert!(
        replicas
            .iter()
            .map(|r| r.provider.stats().degraded)
            .sum::<u64>()
            >= 1
    );

    // Redis is back (empty): after the next revocation the fleet shares one token again.
    redis.restart().await;
    for r in &replicas {
        wait_for(
            "the replica to reach Redis again",
            Duration::from_secs(10),
            || async { r.store.get("probe").await.ok() },
        )
        .await;
    }
    sandbox.revoke_tokens();
    let before = sandbox.stats().token_exchanges;
    for r in &replicas {
        assert_eq!(walk(&r.bitbucket, "globex-001").await.len(), 12);
    }
    assert_eq!(
        sandbox.stats().token_exchanges - before,
        1,
        "one exchange for all four once Redis is back"
    );
}

#[tokio::test]
async fn redis_holds_no_readable_token() {
    let sandbox = Sandbox::start(Knobs::default()).await.expect("sandbox");
    let settings = settings(&sandbox, &[]);
    let r = replica(&settings, redis_url()).await;
    let token = r.provider.token().await.expect("token");

    let client = redis::Client::open(redis_url().expose_secret()).expect("Redis URL");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", settings.redis.prefix))
        .query_async(&mut connection)
        .await
        .expect("KEYS");
    let token_keys: Vec<&String> = keys.iter().filter(|k| k.contains("token:")).collect();
    assert_eq!(token_keys.len(), 1, "{keys:?}");
    assert!(
        keys.iter().all(|k| !k.contains("sandbox-client-id")),
        "key names carry a hash of the client id, not the id: {keys:?}"
    );
    let raw: Vec<u8> = redis::cmd("GET")
        .arg(token_keys[0])
        .query_async(&mut connection)
        .await
        .expect("GET");
    let secret = token.expose_secret().as_bytes();
    assert!(raw.len() > secret.len(), "something is stored");
    assert!(
        !raw.windows(secret.len()).any(|w| w == secret),
        "the Bearer token is not in the stored value"
    );
    assert!(!String::from_utf8_lossy(&raw).contains("access_token"));
}
