//! Integration tests talk to a real RabbitMQ and a real Redis (started by `.ci/run`, or already running on
//! the machine). Each test isolates itself with unique names, and waits on conditions, never on luck.

use std::{
    future::Future,
    time::{Duration, Instant},
};

use secrecy::SecretString;

/// `BB2SNYK_TEST_AMQP_URL`, or the local broker's default.
pub fn amqp_url() -> SecretString {
    SecretString::from(
        std::env::var("BB2SNYK_TEST_AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into()),
    )
}

/// `BB2SNYK_TEST_REDIS_URL`, or the local server's default.
pub fn redis_url() -> SecretString {
    SecretString::from(
        std::env::var("BB2SNYK_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
    )
}

/// A name no other test (or earlier run) uses: `t-<8 hex>-<what>`.
pub fn unique(what: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("t-{}-{what}", &id[..8])
}

/// Polls `check` until it returns `Some`, or panics with `what` when `limit` passes.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
