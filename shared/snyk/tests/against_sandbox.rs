use bb2snyk_sandbox::{Knobs, Sandbox};
use bb2snyk_snyk::{Client, SnykError};
use secrecy::SecretString;
use url::Url;

fn client(sandbox: &Sandbox, token: &str) -> Client {
    let api = Url::parse(&format!("{}/v1", sandbox.url())).expect("URL");
    Client::new(
        reqwest::Client::new(),
        &api,
        SecretString::from(token.to_owned()),
    )
}

#[tokio::test]
async fn every_org_of_the_group_across_pages() {
    let names: Vec<String> = (0..230).map(|i| format!("org-{i}")).collect();
    let sandbox = Sandbox::start(Knobs {
        existing_orgs: names,
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let orgs = client(&sandbox, "sandbox-snyk-token")
        .group_orgs(&sandbox.knobs().group_id)
        .await
        .expect("orgs");
    assert_eq!(orgs.len(), 231, "230 and the template");
    assert_eq!(sandbox.stats().requests["GET /v1/group/{group_id}/orgs"], 3);
}

#[tokio::test]
async fn a_rejected_token_names_snyk_token() {
    let sandbox = Sandbox::start(Knobs::default()).await.expect("sandbox");
    let error = client(&sandbox, "wrong")
        .group_orgs(&sandbox.knobs().group_id)
        .await
        .expect_err("401");
    assert!(matches!(error, SnykError::Unauthorized));
    assert!(error.to_string().contains("SNYK_TOKEN"));
    let missing = client(&sandbox, "sandbox-snyk-token")
        .group_orgs("no-such-group")
        .await
        .expect_err("404");
    assert!(missing.to_string().contains("was not found"), "{missing}");
}
