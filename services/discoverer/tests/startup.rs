//! The real `discoverer` binary proves its Bitbucket credentials at start, with the documented exit codes.

use std::process::Output;

use bb2snyk_sandbox::{Knobs, Sandbox};
use bb2snyk_test_support::unique;
use tokio::process::Command;

async fn discoverer(sandbox: &Sandbox, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_discoverer"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(sandbox.env())
        .env(
            "BB2SNYK__REDIS__PREFIX",
            format!("{}:", unique("discoverer")),
        )
        .env("BB2SNYK__AMQP__CONNECT_ATTEMPTS", "2")
        // Tests run side by side: each takes a free port for its endpoints.
        .env("BB2SNYK__METRICS__LISTEN", "127.0.0.1:0");
    for var in ["BB2SNYK_TEST_AMQP_URL", "BB2SNYK_TEST_REDIS_URL"] {
        if let Ok(url) = std::env::var(var) {
            command.env(var.trim_start_matches("BB2SNYK_TEST_"), url);
        }
    }
    command.envs(env.iter().copied());
    command.output().await.expect("discoverer runs")
}

#[tokio::test]
async fn a_public_consumer_exits_3_with_the_fix() {
    let sandbox = Sandbox::start(Knobs {
        public_consumer: true,
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let out = discoverer(&sandbox, &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(
            "discoverer: this OAuth consumer is public; client_credentials needs a private consumer: tick 'This is \
             a private consumer'"
        ),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_wrong_secret_exits_3_naming_the_variables() {
    let sandbox = Sandbox::start(Knobs::default()).await.expect("sandbox");
    let out = discoverer(&sandbox, &[("BITBUCKET_APP_CLIENT_SECRET", "wrong")]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("the client id or secret is wrong")
            && stderr.contains("BITBUCKET_APP_CLIENT_SECRET")
            && !stderr.contains("sandbox-client-secret"),
        "{stderr}"
    );
}

#[tokio::test]
async fn access_token_mode_without_a_token_exits_2() {
    let sandbox = Sandbox::start(Knobs::default()).await.expect("sandbox");
    let out = discoverer(&sandbox, &[("BB2SNYK__BITBUCKET__AUTH", "access-token")]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("discoverer: BITBUCKET_ACCESS_TOKEN is not set"),
        "{stderr}"
    );
}
