//! The store's commands, locks and health guard against the real Redis.

use std::time::Duration;

use bb2snyk_store::Store;

use super::connect;
use bb2snyk_test_support::{redis_url, unique, wait_for};
use secrecy::SecretString;

async fn store() -> Store {
    connect(&redis_url(), &format!("{}:", unique("store"))).await
}

#[tokio::test]
async fn set_with_px_then_get_then_expire() {
    let store = store().await;
    store
        .set_px("token", b"value-1", Duration::from_millis(800))
        .await
        .expect("SET PX");
    assert_eq!(
        store.get("token").await.expect("GET"),
        Some(b"value-1".to_vec())
    );
    let left = store
        .ttl("token")
        .await
        .expect("PTTL")
        .expect("has an expiry");
    assert!(
        left > Duration::ZERO && left <= Duration::from_millis(800),
        "{left:?}"
    );
    wait_for("the key to expire", Duration::from_secs(5), || async {
        store
            .get("token")
            .await
            .expect("GET")
            .is_none()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn prefixes_keep_tests_apart() {
    let (a, b) = (store().await, store().await);
    a.set_px("shared-name", b"a", Duration::from_secs(30))
        .await
        .expect("SET");
    assert_eq!(b.get("shared-name").await.expect("GET"), None);
    assert!(a.key("shared-name").starts_with(a.prefix()) && a.prefix() != b.prefix());
    assert!(a.delete("shared-name").await.expect("DEL"));
    assert_eq!(a.get("shared-name").await.expect("GET"), None);
}

#[tokio::test]
async fn an_unreachable_redis_is_named_without_its_password() {
    let url = SecretString::from("redis://:r3d1s-pw@127.0.0.1:1".to_owned());
    let error = Store::connect(&url, "x:")
        .await
        .expect_err("nothing listens on port 1");
    let message = error.to_string();
    assert!(
        message.starts_with("cannot reach Redis at redis://:***@127.0.0.1:1"),
        "{message}"
    );
    assert!(
        message.contains("REDIS_URL") && !format!("{message} {error:?}").contains("r3d1s-pw"),
        "{message}"
    );
}

#[tokio::test]
async fn a_lock_is_held_past_its_ttl_while_its_owner_lives_and_then_passes_on() {
    let prefix = format!("{}:", unique("lock"));
    let connect = || async {
        Store::connect(&redis_url(), &prefix)
            .await
            .expect("Redis is reachable")
    };
    let (one, two) = (connect().await, connect().await);
    let ttl = Duration::from_millis(300);
    let held = one.lock("l", ttl).await.expect("Redis").expect("free");
    // For four lifetimes the other replica finds it taken: the owner's renewal keeps it.
    let since = std::time::Instant::now();
    while since.elapsed() < 4 * ttl {
        assert!(
            two.lock("l", ttl).await.expect("Redis").is_none(),
            "taken by the other replica after {:?}",
            since.elapsed()
        );
        tokio::time::sleep(ttl / 10).await;
    }
    assert!(held.is_held());
    assert!(
        held.release().await.expect("Redis"),
        "released by its owner"
    );
    let next = two.lock("l", ttl).await.expect("Redis");
    assert!(next.is_some(), "free once released");
}

/// Released while Redis is away, a lock is released once Redis is back, not left for its lifetime: an
/// org lock of two minutes, left so across a Redis restart, held a workspace's imports past a run's end.
#[tokio::test]
async fn a_lock_released_while_redis_is_away_is_released_once_it_is_back() {
    let mut server = bb2snyk_test_support::RedisServer::start_persistent().await;
    let prefix = format!("{}:", unique("lock"));
    let (one, two) = (
        connect(&server.url(), &prefix).await,
        connect(&server.url(), &prefix).await,
    );
    let ttl = Duration::from_secs(120);
    let held = one.lock("l", ttl).await.expect("Redis").expect("free");
    server.stop();
    assert!(held.release().await.is_err(), "Redis is away");
    // The lock outlives the restart (the append-only file keeps it) and passes on in seconds.
    server.restart().await;
    wait_for(
        "the lock to be released",
        Duration::from_secs(15),
        || async { two.lock("l", ttl).await.ok().flatten() },
    )
    .await;
}

/// What the Redis memory alert reads: bytes in use, and `maxmemory` (0 when unbounded).
#[tokio::test]
async fn redis_reports_its_memory_and_the_in_process_store_none() {
    let (used, _max) = store()
        .await
        .memory_use()
        .await
        .expect("INFO memory")
        .expect("Redis reports its memory");
    assert!(used > 0);
    assert_eq!(Store::memory().memory_use().await.expect("local"), None);
}
