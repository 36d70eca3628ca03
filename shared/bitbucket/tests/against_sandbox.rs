use bb2snyk_bitbucket::{BitbucketError, Client, Consumer, Page, UserWorkspace, exchange};
use bb2snyk_sandbox::{Knobs, Sandbox};
use secrecy::SecretString;
use url::Url;

fn urls(sandbox: &Sandbox) -> (Url, Url) {
    let parse = |s: String| Url::parse(&s).expect("sandbox URL");
    (
        parse(format!("{}/site/oauth2/access_token", sandbox.url())),
        parse(format!("{}/2.0", sandbox.url())),
    )
}

fn consumer(secret: &str) -> Consumer {
    Consumer {
        client_id: "sandbox-client-id".into(),
        client_secret: SecretString::from(secret.to_owned()),
    }
}

#[tokio::test]
async fn exchange_then_walk_every_repository() {
    let sandbox = Sandbox::start(Knobs {
        workspaces: 2,
        repo_counts: vec![0, 250],
        fork_rate: 0.2,
        empty_rate: 0.1,
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let (token_url, api) = urls(&sandbox);
    let http = reqwest::Client::new();
    let token = exchange(&http, &token_url, &consumer("sandbox-client-secret"))
        .await
        .expect("token");
    assert_eq!(token.lifetime.as_secs(), 7200);
    assert!(token.scopes.iter().any(|s| s == "repository"));

    let client = Client::new(http, &api);
    let page: Page<UserWorkspace> = client
        .page(&token.secret, &client.user_workspaces_url())
        .await
        .expect("workspaces");
    let slugs: Vec<String> = page.values.into_iter().map(|w| w.workspace.slug).collect();
    assert_eq!(slugs, ["acme-000", "globex-001"]);

    let mut repos = Vec::new();
    assert_eq!(
        client
            .walk_repositories(&token.secret, "acme-000", |p| repos.extend(p))
            .await
            .expect("empty workspace"),
        1
    );
    assert!(repos.is_empty());
    let pages = client
        .walk_repositories(&token.secret, "globex-001", |p| repos.extend(p))
        .await
        .expect("walk");
    assert_eq!((pages, repos.len()), (3, 250));
    let truth = sandbox.stats().truth;
    assert_eq!(
        repos.iter().filter(|r| r.is_fork()).count() as u64,
        truth.forks
    );
    assert_eq!(
        repos.iter().filter(|r| r.is_empty()).count() as u64,
        truth.empty
    );
    assert!(
        repos
            .iter()
            .all(|r| r.workspace.as_ref().is_some_and(|w| w.slug == "globex-001"))
    );
}

#[tokio::test]
async fn a_public_consumer_and_a_wrong_secret_say_what_to_do() {
    let sandbox = Sandbox::start(Knobs::default()).await.expect("sandbox");
    let (token_url, _) = urls(&sandbox);
    let http = reqwest::Client::new();
    let wrong = exchange(&http, &token_url, &consumer("not-the-secret"))
        .await
        .expect_err("wrong secret");
    assert!(matches!(wrong, BitbucketError::BadConsumer(_)));
    assert!(
        wrong
            .to_string()
            .starts_with("the client id or secret is wrong"),
        "{wrong}"
    );

    sandbox.update(|k| k.public_consumer = true);
    let public = exchange(&http, &token_url, &consumer("sandbox-client-secret"))
        .await
        .expect_err("public consumer");
    assert_eq!(
        public.to_string(),
        "this OAuth consumer is public; client_credentials needs a private consumer: tick 'This is a private consumer' \
         in the workspace's OAuth consumer settings"
    );
}

#[tokio::test]
async fn missing_scopes_are_named() {
    let sandbox = Sandbox::start(Knobs {
        scopes: "account".into(),
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let (token_url, api) = urls(&sandbox);
    let http = reqwest::Client::new();
    let token = exchange(&http, &token_url, &consumer("sandbox-client-secret"))
        .await
        .expect("token");
    let error = Client::new(http, &api)
        .walk_repositories(&token.secret, "acme-000", |_| {})
        .await
        .expect_err("403");
    assert!(
        error
            .to_string()
            .starts_with("the OAuth consumer lacks the scopes repository:"),
        "{error}"
    );
}
