//! The sandbox's Bitbucket side, checked against the documented contract.
//!
//! Over 400 lines on purpose: one test per point of `bitbucket-and-snyk-apis.md` (token endpoint, both
//! workspace lists, pagination, errors, limits), kept in one file so the contract reads in order.

use std::time::{Duration, Instant};

use bb2snyk_sandbox::{Knobs, Sandbox};
use reqwest::{Client, StatusCode};
use serde_json::Value;

struct Bb {
    sandbox: Sandbox,
    http: Client,
}

impl Bb {
    async fn start(knobs: Knobs) -> Self {
        Self {
            sandbox: Sandbox::start(knobs).await.expect("sandbox starts"),
            http: Client::new(),
        }
    }

    async fn exchange(&self, id: &str, secret: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}/site/oauth2/access_token", self.sandbox.url()))
            .basic_auth(id, Some(secret))
            .form(form)
            .send()
            .await
            .expect("token request");
        (
            response.status(),
            response.json().await.expect("token JSON"),
        )
    }

    async fn token(&self) -> String {
        let k = self.sandbox.knobs();
        let (status, body) = self
            .exchange(
                &k.client_id,
                &k.client_secret,
                &[("grant_type", "client_credentials")],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    async fn get(&self, token: &str, path_or_url: &str) -> (StatusCode, Value) {
        let url = if path_or_url.starts_with("http") {
            path_or_url.to_owned()
        } else {
            format!("{}{path_or_url}", self.sandbox.url())
        };
        let response = self
            .http
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .expect("GET");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn client_credentials_in_both_response_forms() {
    let bb = Bb::start(Knobs::default()).await;
    let (status, legacy) = bb
        .exchange(
            "sandbox-client-id",
            "sandbox-client-secret",
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(legacy["expires_in"], 7200);
    assert_eq!(legacy["token_type"], "bearer");
    assert_eq!(legacy["state"], "client_credentials");
    assert!(
        legacy["scopes"]
            .as_str()
            .is_some_and(|s| s.contains("repository"))
    );
    assert!(legacy["refresh_token"].is_string());

    bb.sandbox.update(|k| k.token_format = "2026".into());
    let (_, modern) = bb
        .exchange(
            "sandbox-client-id",
            "sandbox-client-secret",
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert!(
        modern["scope"].is_string()
            && modern.get("scopes").is_none()
            && modern.get("refresh_token").is_none()
    );
    assert_eq!(bb.sandbox.stats().token_exchanges, 2);
}

#[tokio::test]
async fn token_endpoint_errors_are_rfc6749_bodies() {
    let bb = Bb::start(Knobs::default()).await;
    let (status, wrong) = bb
        .exchange(
            "sandbox-client-id",
            "nope",
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(
        (status, wrong["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unauthorized_client"))
    );
    assert_eq!(
        wrong["error_description"],
        "Invalid OAuth client credentials"
    );

    let anonymous = bb
        .http
        .post(format!("{}/site/oauth2/access_token", bb.sandbox.url()))
        .form(&[("grant_type", "client_credentials")]);
    let body: Value = anonymous
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    assert_eq!(body["error"], "unauthorized_client");

    let (status, grant) = bb
        .exchange("sandbox-client-id", "sandbox-client-secret", &[])
        .await;
    assert_eq!(
        (status, grant["error_description"].as_str()),
        (
            StatusCode::BAD_REQUEST,
            Some("Unsupported grant type: None")
        )
    );

    bb.sandbox.update(|k| k.public_consumer = true);
    let (status, public) = bb
        .exchange(
            "sandbox-client-id",
            "sandbox-client-secret",
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(
        (status, public["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    assert!(
        public["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("marked as \"public\""))
    );
    assert_eq!(bb.sandbox.stats().token_exchanges, 0);
}

#[tokio::test]
async fn bearer_tokens_expire_and_can_be_revoked() {
    let bb = Bb::start(Knobs {
        token_expires_in: 1,
        ..Knobs::default()
    })
    .await;
    let token = bb.token().await;
    assert_eq!(
        bb.get(&token, "/2.0/user/workspaces").await.0,
        StatusCode::OK
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let expired = loop {
        let (status, body) = bb.get(&token, "/2.0/user/workspaces").await;
        if status == StatusCode::UNAUTHORIZED || Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(expired.0, StatusCode::UNAUTHORIZED);
    assert_eq!(expired.1["error"]["message"], "Access token expired.");

    bb.sandbox.update(|k| k.token_expires_in = 3600);
    let fresh = bb.token().await;
    assert_eq!(bb.sandbox.revoke_tokens(), 2);
    let (status, body) = bb.get(&fresh, "/2.0/repositories/acme-000").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["type"], "error");
    assert_eq!(
        bb.get("made-up", "/2.0/workspaces").await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_walk_of_1234_repositories_takes_13_pages_at_pagelen_100() {
    let bb = Bb::start(Knobs {
        workspaces: 1,
        repos_per_workspace: 1234,
        ..Knobs::default()
    })
    .await;
    let token = bb.token().await;
    let mut url = format!("{}/2.0/repositories/acme-000?pagelen=100", bb.sandbox.url());
    let (mut pages, mut slugs) = (0, std::collections::HashSet::new());
    loop {
        let (status, page) = bb.get(&token, &url).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        assert_eq!(page["pagelen"], 100);
        for repo in page["values"].as_array().expect("values") {
            assert!(slugs.insert(repo["slug"].as_str().expect("slug").to_owned()));
        }
        match page["next"].as_str() {
            Some(next) => url = next.to_owned(),
            None => break,
        }
    }
    assert_eq!((pages, slugs.len()), (13, 1234));
    assert_eq!(
        bb.sandbox.stats().requests["GET /2.0/repositories/{workspace}"],
        13
    );
}

#[tokio::test]
async fn repository_objects_are_realistic() {
    let bb = Bb::start(Knobs {
        workspaces: 1,
        repos_per_workspace: 200,
        fork_rate: 0.2,
        empty_rate: 0.1,
        ..Knobs::default()
    })
    .await;
    let token = bb.token().await;
    let (_, page) = bb.get(&token, "/2.0/repositories/acme-000").await;
    assert_eq!(
        page["values"].as_array().map(Vec::len),
        Some(10),
        "pagelen defaults to 10"
    );
    assert_eq!(page["size"], 200);
    let mut all = Vec::new();
    for p in 1..=2 {
        let (_, page) = bb
            .get(
                &token,
                &format!("/2.0/repositories/acme-000?pagelen=100&page={p}"),
            )
            .await;
        all.extend(page["values"].as_array().expect("values").clone());
    }
    let repo = &all[0];
    assert_ne!(repo["slug"], repo["name"]);
    assert_eq!(
        repo["full_name"],
        format!("acme-000/{}", repo["slug"].as_str().unwrap_or_default())
    );
    assert_eq!(repo["workspace"]["slug"], "acme-000");
    assert!(repo["project"]["key"].is_string());
    assert_eq!(repo["links"]["clone"][0]["name"], "https");
    assert!(
        repo["fork_policy"].is_string(),
        "every repository has a fork_policy, forks or not"
    );
    assert!(
        all.iter().any(|r| r.get("parent").is_some()),
        "some forks carry parent"
    );
    assert!(
        all.iter().any(|r| r.get("mainbranch").is_none()),
        "some repositories are empty"
    );
    assert!(all.iter().any(|r| r["mainbranch"]["name"].is_string()));
}

#[tokio::test]
async fn pagelen_fields_and_q_behave_like_bitbucket() {
    let bb = Bb::start(Knobs {
        workspaces: 1,
        repos_per_workspace: 40,
        ..Knobs::default()
    })
    .await;
    let token = bb.token().await;
    let (status, body) = bb
        .get(&token, "/2.0/repositories/acme-000?pagelen=101")
        .await;
    assert_eq!(
        (status, body["error"]["message"].as_str()),
        (StatusCode::BAD_REQUEST, Some("Invalid pagelen"))
    );

    let (_, projected) = bb
        .get(
            &token,
            "/2.0/repositories/acme-000?pagelen=5&fields=next,values.slug,values.mainbranch.name",
        )
        .await;
    let first = &projected["values"][0];
    assert!(
        first["slug"].is_string() && first.get("name").is_none() && first.get("links").is_none()
    );
    assert!(projected.get("size").is_none());
    let next = projected["next"].as_str().expect("next kept");
    assert!(
        next.contains("fields=") && next.contains("pagelen=5") && next.ends_with("page=2"),
        "{next}"
    );

    let (_, filtered) = bb
        .get(
            &token,
            "/2.0/repositories/acme-000?pagelen=100&q=project.key%3D%22PRJ1%22",
        )
        .await;
    let values = filtered["values"].as_array().expect("values");
    assert_eq!(values.len(), 10);
    assert!(values.iter().all(|r| r["project"]["key"] == "PRJ1"));

    let (status, body) = bb.get(&token, "/2.0/repositories/nobody").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        serde_json::json!({"type": "error", "error": {"message": "No workspace with identifier 'nobody'."}})
    );
    let (status, body) = bb.get(&token, "/2.0/nothing/here").await;
    assert_eq!(
        (status, body["error"]["message"].as_str()),
        (
            StatusCode::NOT_FOUND,
            Some("There is no API hosted at this URL.")
        )
    );
}

#[tokio::test]
async fn both_workspace_lists_and_their_410_answers() {
    let bb = Bb::start(Knobs {
        workspaces: 25,
        repos_per_workspace: 0,
        ..Knobs::default()
    })
    .await;
    let token = bb.token().await;
    let (_, user) = bb.get(&token, "/2.0/user/workspaces?pagelen=100").await;
    let items = user["values"].as_array().expect("values");
    assert_eq!(items.len(), 25);
    assert_eq!(items[0]["type"], "workspace_access");
    assert!(
        items[0]["workspace"]["slug"].is_string() && items[0]["workspace"].get("name").is_none()
    );
    let (_, listed) = bb.get(&token, "/2.0/workspaces").await;
    assert_eq!(listed["values"].as_array().map(Vec::len), Some(10));
    assert!(listed["values"][0]["name"].is_string() && listed["next"].is_string());

    bb.sandbox.update(|k| {
        k.user_workspaces_gone = true;
        k.workspaces_gone = true;
    });
    for path in ["/2.0/user/workspaces", "/2.0/workspaces"] {
        let (status, body) = bb.get(&token, path).await;
        assert_eq!(status, StatusCode::GONE);
        assert_eq!(
            body["error"]["message"],
            "CHANGE-2770 - Functionality has been deprecated"
        );
        assert!(
            body["data"]["announcement_url"]
                .as_str()
                .is_some_and(|u| u.ends_with("#CHANGE-2770"))
        );
    }
}

#[tokio::test]
async fn missing_scopes_answer_403_with_what_is_required() {
    let bb = Bb::start(Knobs {
        scopes: "email".into(),
        ..Knobs::default()
    })
    .await;
    let token = bb.token().await;
    let (status, body) = bb.get(&token, "/2.0/repositories/acme-000").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["detail"]["required"][0], "repository");
    assert_eq!(body["error"]["detail"]["granted"][0], "email");
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_retry_after() {
    let bb = Bb::start(Knobs {
        bitbucket_rate_limit: Some(5),
        bitbucket_window_secs: 30,
        ..Knobs::default()
    })
    .await;
    let token = bb.token().await;
    for _ in 0..5 {
        assert_eq!(
            bb.get(&token, "/2.0/user/workspaces").await.0,
            StatusCode::OK
        );
    }
    let response = bb
        .http
        .get(format!("{}/2.0/user/workspaces", bb.sandbox.url()))
        .bearer_auth(&token)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("Retry-After seconds");
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(
        body["error"]["message"],
        "Rate limit for this resource has been exceeded"
    );
    assert_eq!(bb.sandbox.stats().rate_limited["bitbucket"], 1);

    bb.sandbox.update(|k| {
        k.omit_retry_after = true;
        k.plain_text_429 = true;
    });
    let response = bb
        .http
        .get(format!("{}/2.0/workspaces", bb.sandbox.url()))
        .bearer_auth(&token)
        .send()
        .await
        .expect("sent");
    assert!(response.headers().get("retry-after").is_none());
    assert_eq!(
        response.text().await.ok().as_deref(),
        Some("Rate limit for this resource has been exceeded")
    );
}

#[tokio::test]
async fn faults_and_other_credentials() {
    let knobs = Knobs {
        access_tokens: vec!["workspace-access-token".into()],
        basic_credentials: vec!["ops@example.com:api-token".into()],
        ..Knobs::default()
    };
    let bb = Bb::start(knobs).await;
    assert_eq!(
        bb.get("workspace-access-token", "/2.0/repositories/acme-000")
            .await
            .0,
        StatusCode::OK
    );
    let basic = bb
        .http
        .get(format!("{}/2.0/repositories/acme-000", bb.sandbox.url()))
        .basic_auth("ops@example.com", Some("api-token"));
    assert_eq!(basic.send().await.expect("sent").status(), StatusCode::OK);

    bb.sandbox.update(|k| k.fault_rate = 1.0);
    let (status, _) = bb
        .get("workspace-access-token", "/2.0/repositories/acme-000")
        .await;
    assert!(status.is_server_error());
    assert_eq!(bb.sandbox.stats().server_errors, 1);
}
