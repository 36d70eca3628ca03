//! Signing in: the client_credentials exchange and its errors, access tokens and Basic auth.

use bb2snyk_bitbucket::{Bitbucket, BitbucketError, Consumer, exchange};
use bb2snyk_sandbox::{Knobs, Sandbox};
use secrecy::SecretString;

use crate::{settings, walk};

fn consumer(secret: &str) -> Consumer {
    Consumer {
        client_id: "sandbox-client-id".into(),
        client_secret: SecretString::from(secret.to_owned()),
    }
}

/// A client built from settings, as the services build it, sharing nothing.
fn client(sandbox: &Sandbox, extra: &[(&str, &str)]) -> Bitbucket {
    let settings = settings(sandbox, extra);
    let http = bb2snyk_http::client(&settings.http).expect("HTTP client");
    Bitbucket::from_settings(&settings, http, None).expect("credentials configured")
}

#[tokio::test]
async fn an_oauth_consumer_walks_every_repository_and_flags_forks_and_empty_ones() {
    let sandbox = Sandbox::start(Knobs {
        workspaces: 2,
        repo_counts: vec![0, 250],
        fork_rate: 0.2,
        empty_rate: 0.1,
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let bitbucket = client(&sandbox, &[]);
    let slugs: Vec<String> = bitbucket
        .workspaces()
        .await
        .expect("workspaces")
        .into_iter()
        .map(|w| w.slug)
        .collect();
    assert_eq!(slugs, ["acme-000", "globex-001"]);
    assert!(walk(&bitbucket, "acme-000").await.is_empty());
    let repos = walk(&bitbucket, "globex-001").await;
    assert_eq!(repos.len(), 250);
    let truth = sandbox.stats().truth;
    assert_eq!(
        repos.iter().filter(|r| r.is_fork()).count() as u64,
        truth.forks
    );
    assert_eq!(
        repos.iter().filter(|r| r.is_empty()).count() as u64,
        truth.empty
    );
    assert!(truth.forks > 0 && truth.empty > 0);
    assert!(
        repos
            .iter()
            .all(|r| r.workspace.as_ref().is_some_and(|w| w.slug == "globex-001"))
    );
    assert_eq!(sandbox.stats().token_exchanges, 1);
}

#[tokio::test]
async fn a_public_consumer_and_a_wrong_secret_say_what_to_do() {
    let sandbox = Sandbox::start(Knobs::default()).await.expect("sandbox");
    let wrong = client(
        &sandbox,
        &[("BITBUCKET_APP_CLIENT_SECRET", "not-the-secret")],
    )
    .workspaces()
    .await
    .expect_err("wrong secret");
    assert!(wrong.is_credentials());
    assert_eq!(
        wrong.to_string(),
        "the client id or secret is wrong (Bitbucket: Invalid OAuth client credentials); check \
         BITBUCKET_APP_CLIENT_ID and BITBUCKET_APP_CLIENT_SECRET (or the consumer's [[consumer]] table in \
         BITBUCKET_APP_CREDENTIALS_FILE), and that the consumer still exists"
    );

    sandbox.update(|k| k.public_consumer = true);
    let public = client(&sandbox, &[])
        .workspaces()
        .await
        .expect_err("public consumer");
    assert!(public.is_credentials());
    assert_eq!(
        public.to_string(),
        "this OAuth consumer is public; client_credentials needs a private consumer: tick 'This is a private consumer' \
         in the workspace's OAuth consumer settings"
    );
    // A credential error is final: no retries hammer the token endpoint.
    assert_eq!(sandbox.stats().token_failures, 2);
}

#[tokio::test]
async fn missing_scopes_are_named() {
    let sandbox = Sandbox::start(Knobs {
        scopes: "account".into(),
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let error = client(&sandbox, &[("BB2SNYK__BITBUCKET__WORKSPACES", "acme-000")])
        .repositories("acme-000", &Default::default())
        .next_page()
        .await
        .expect_err("403");
    assert_eq!(
        error.to_string(),
        "the OAuth consumer lacks the scopes repository: grant them in the workspace's OAuth consumer settings \
         (granted: account)"
    );
}

#[tokio::test]
async fn the_2026_token_form_is_read() {
    let sandbox = Sandbox::start(Knobs {
        token_format: "2026".into(),
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let token = exchange(
        &reqwest::Client::new(),
        &url::Url::parse(&format!("{}/site/oauth2/access_token", sandbox.url())).expect("URL"),
        &consumer("sandbox-client-secret"),
    )
    .await
    .expect("token");
    assert_eq!(token.lifetime.as_secs(), 7200);
    assert!(token.scopes.iter().any(|s| s == "repository"));
}

#[tokio::test]
async fn an_access_token_and_basic_auth_work_without_a_consumer() {
    let sandbox = Sandbox::start(Knobs {
        access_tokens: vec!["workspace-access-token".into()],
        basic_credentials: vec!["ops@example.com:api-token".into()],
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let by_token = client(
        &sandbox,
        &[
            ("BB2SNYK__BITBUCKET__AUTH", "access-token"),
            ("BITBUCKET_ACCESS_TOKEN", "workspace-access-token"),
        ],
    );
    assert_eq!(by_token.workspaces().await.expect("workspaces").len(), 3);
    assert_eq!(walk(&by_token, "acme-000").await.len(), 12);
    let by_password = client(
        &sandbox,
        &[
            ("BB2SNYK__BITBUCKET__AUTH", "basic"),
            ("BITBUCKET_CLOUD_USERNAME", "ops@example.com"),
            ("BITBUCKET_CLOUD_PASSWORD", "api-token"),
        ],
    );
    assert_eq!(walk(&by_password, "globex-001").await.len(), 12);
    assert_eq!(sandbox.stats().token_exchanges, 0);

    let rejected = client(
        &sandbox,
        &[
            ("BB2SNYK__BITBUCKET__AUTH", "access-token"),
            ("BITBUCKET_ACCESS_TOKEN", "revoked-token"),
        ],
    )
    .workspaces()
    .await
    .expect_err("unknown token");
    assert!(matches!(rejected, BitbucketError::Rejected(..)));
    assert_eq!(
        rejected.to_string(),
        "Bitbucket rejected the credentials (Invalid credentials.); check the access token \
         (BITBUCKET_ACCESS_TOKEN) bb2snyk is configured with"
    );
}

/// A token endpoint that answers 200 with a body that is not JSON (a proxy's page, a form encoding): the
/// error says so and how long it was, and never quotes it, since it may hold the token.
#[tokio::test]
async fn a_token_body_that_is_not_json_is_never_quoted() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let addr = listener.local_addr().expect("address");
    let body = "access_token=tok-9f8e7d6c-very-secret&expires_in=7200";
    tokio::spawn(async move {
        if let Ok((mut stream, _)) = listener.accept().await {
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request).await;
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    });
    let consumer = bb2snyk_bitbucket::Consumer {
        client_id: "id".into(),
        client_secret: secrecy::SecretString::from("secret".to_owned()),
    };
    let url = url::Url::parse(&format!("http://{addr}/site/oauth2/access_token")).expect("URL");
    let error = bb2snyk_bitbucket::exchange(&reqwest::Client::new(), &url, &consumer)
        .await
        .expect_err("not JSON");
    let text = format!("{error} {error:?}");
    assert!(!text.contains("tok-9f8e7d6c"), "{text}");
    assert!(text.contains("withheld"), "{text}");
}
