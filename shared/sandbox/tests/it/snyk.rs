//! The sandbox's Snyk v1 side, checked against the documented contract.
//!
//! Over 400 lines on purpose: one test per point of `bitbucket-and-snyk-apis.md` (orgs, integrations,
//! import, jobs, errors, limits), kept in one file so the contract reads in order.

use std::time::{Duration, Instant};

use bb2snyk_sandbox::{Knobs, Sandbox};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

struct Snyk {
    sandbox: Sandbox,
    http: Client,
}

impl Snyk {
    async fn start(knobs: Knobs) -> Self {
        Self {
            sandbox: Sandbox::start(knobs).await.expect("sandbox starts"),
            http: Client::new(),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> reqwest::Response {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}/v1{path}", self.sandbox.url())
        };
        let mut request = self
            .http
            .request(method, url)
            .header("authorization", "token sandbox-snyk-token");
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("Snyk request")
    }

    async fn json(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let response = self.call(method, path, body).await;
        (
            response.status(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    fn group(&self) -> String {
        self.sandbox.knobs().group_id
    }

    /// A new org and its Bitbucket Cloud App integration id.
    async fn org(&self, name: &str) -> (String, String) {
        let (status, org) = self
            .json(
                Method::POST,
                "/org",
                Some(json!({"name": name, "groupId": self.group()})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{org}");
        let id = org["id"].as_str().expect("id").to_owned();
        let (_, integrations) = self
            .json(Method::GET, &format!("/org/{id}/integrations"), None)
            .await;
        (
            id,
            integrations["bitbucket-connect-app"]
                .as_str()
                .expect("app integration")
                .to_owned(),
        )
    }

    async fn import(
        &self,
        org: &str,
        integration: &str,
        owner: &str,
        name: &str,
    ) -> reqwest::Response {
        let body = json!({"target": {"owner": owner, "name": name, "branch": "main"}});
        self.call(
            Method::POST,
            &format!("/org/{org}/integrations/{integration}/import"),
            Some(body),
        )
        .await
    }

    /// Polls a job until it leaves `pending`, within a deadline.
    async fn finished(&self, location: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, job) = self.json(Method::GET, location, None).await;
            assert_eq!(status, StatusCode::OK, "{job}");
            if job["status"] != "pending" {
                return job;
            }
            assert!(Instant::now() < deadline, "job still pending: {job}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn a_bad_token_gets_the_documented_401() {
    let snyk = Snyk::start(Knobs::default()).await;
    let response = snyk
        .http
        .get(format!(
            "{}/v1/group/{}/orgs",
            snyk.sandbox.url(),
            snyk.group()
        ))
        .header("authorization", "token wrong")
        .send()
        .await;
    let response = response.expect("sent");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(
        body,
        json!({"code": 401, "error": "Not authorised", "message": "Not authorised"})
    );
}

#[tokio::test]
async fn orgs_are_created_listed_by_page_and_duplicates_counted() {
    let snyk = Snyk::start(Knobs {
        existing_orgs: vec!["acme-000".into()],
        ..Knobs::default()
    })
    .await;
    let group = snyk.group();
    let (status, created) = snyk
        .json(
            Method::POST,
            "/org",
            Some(json!({"name": "globex-001", "groupId": group})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(created["group"]["id"], group.as_str());
    assert!(
        created["id"].is_string()
            && created["created"].is_string()
            && created["slug"] == "globex-001"
    );
    snyk.org("acme-000").await;

    let (_, page1) = snyk
        .json(
            Method::GET,
            &format!("/group/{group}/orgs?perPage=2&page=1"),
            None,
        )
        .await;
    let (_, page2) = snyk
        .json(
            Method::GET,
            &format!("/group/{group}/orgs?perPage=2&page=2"),
            None,
        )
        .await;
    assert_eq!(page1["orgs"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        page2["orgs"].as_array().map(Vec::len),
        Some(2),
        "template, existing, and two created"
    );
    let (_, named) = snyk
        .json(Method::GET, &format!("/group/{group}/orgs?name=ACME"), None)
        .await;
    assert_eq!(named["orgs"].as_array().map(Vec::len), Some(2));

    let (status, body) = snyk
        .json(Method::POST, "/org", Some(json!({"name": " "})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body["message"],
        "Please provide a new organization name in the body of the request"
    );
    let stats = snyk.sandbox.stats();
    assert_eq!((stats.orgs_created, stats.duplicate_org_names), (2, 1));
}

#[tokio::test]
async fn new_orgs_get_the_app_integration_and_honour_the_source_org() {
    let snyk = Snyk::start(Knobs::default()).await;
    let template = snyk
        .sandbox
        .orgs()
        .into_iter()
        .find(|o| o.name == "bb2snyk-template")
        .expect("template org");
    let body =
        json!({"name": "from-template", "groupId": snyk.group(), "sourceOrgId": template.id});
    let (_, org) = snyk.json(Method::POST, "/org", Some(body)).await;
    let id = org["id"].as_str().expect("id");
    let (_, integrations) = snyk
        .json(Method::GET, &format!("/org/{id}/integrations"), None)
        .await;
    assert!(integrations["bitbucket-connect-app"].is_string());
    assert!(
        integrations["bitbucket-cloud"].is_string(),
        "copied from the source org: {integrations}"
    );
    assert_ne!(
        integrations["bitbucket-cloud"].as_str(),
        template
            .integrations
            .get("bitbucket-cloud")
            .map(String::as_str)
    );
    let (_, one) = snyk
        .json(
            Method::GET,
            &format!("/org/{id}/integrations/bitbucket-connect-app"),
            None,
        )
        .await;
    assert_eq!(one["id"], integrations["bitbucket-connect-app"]);

    let (status, _) = snyk
        .json(
            Method::POST,
            "/org",
            Some(json!({"name": "x", "sourceOrgId": "no-such-org"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = snyk
        .json(Method::GET, "/org/no-such-org/integrations", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("was not found"))
    );

    snyk.sandbox
        .update(|k| k.orgs_without_app_integration = true);
    let (_, bare) = snyk
        .json(Method::POST, "/org", Some(json!({"name": "no-app"})))
        .await;
    let (_, integrations) = snyk
        .json(
            Method::GET,
            &format!(
                "/org/{}/integrations",
                bare["id"].as_str().unwrap_or_default()
            ),
            None,
        )
        .await;
    assert_eq!(integrations, json!({}));
}

#[tokio::test]
async fn notification_settings_are_stored() {
    let snyk = Snyk::start(Knobs::default()).await;
    let (org, _) = snyk.org("acme-000").await;
    let settings = json!({"new-issues-remediations": {"enabled": false, "issueType": "none", "issueSeverity": "high"},
                          "project-imported": {"enabled": false}, "test-limit": {"enabled": false}, "weekly-report": {"enabled": false}});
    let (status, echoed) = snyk
        .json(
            Method::PUT,
            &format!("/org/{org}/notification-settings"),
            Some(settings.clone()),
        )
        .await;
    assert_eq!((status, &echoed), (StatusCode::OK, &settings));
    let stored = snyk
        .sandbox
        .orgs()
        .into_iter()
        .find(|o| o.id == org)
        .and_then(|o| o.notification_settings);
    assert_eq!(stored, Some(settings));
}

#[tokio::test]
async fn an_import_answers_201_with_an_absolute_location_and_its_job_completes() {
    let snyk = Snyk::start(Knobs {
        job_ms: 300,
        workspaces: 1,
        repos_per_workspace: 20,
        empty_rate: 0.0,
        ..Knobs::default()
    })
    .await;
    let (org, integration) = snyk.org("acme-000").await;
    let truth = snyk.sandbox.truth();
    let slug = truth[0]["repos"][0]["slug"]
        .as_str()
        .expect("slug")
        .to_owned();
    let response = snyk.import(&org, &integration, "acme-000", &slug).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"]
        .to_str()
        .expect("Location")
        .to_owned();
    assert!(location.starts_with(&snyk.sandbox.url()));
    assert!(location.contains(&format!("/v1/org/{org}/integrations/{integration}/import/")));

    let (_, pending) = snyk.json(Method::GET, &location, None).await;
    assert_eq!(pending["status"], "pending");
    let job = snyk.finished(&location).await;
    assert_eq!(job["status"], "complete");
    assert_eq!(job["logs"][0]["name"], format!("acme-000/{slug}"));
    let project = &job["logs"][0]["projects"][0];
    assert!(
        project["success"] == true
            && project["projectId"].is_string()
            && project["targetFile"].is_string()
    );
    let stats = snyk.sandbox.stats();
    assert_eq!(stats.import_posts[&format!("acme-000/{slug}")], 1);
    assert_eq!((stats.jobs.complete, stats.jobs.seen), (1, 1));
    assert!(stats.jobs.pending_polls >= 1);

    // REST projects (§7.2): one per manifest, the target expanded; Snyk's parameter rules.
    let projects = |query: &str| {
        format!(
            "{}/rest/orgs/{org}/projects?version=2024-05-31{query}",
            snyk.sandbox.url()
        )
    };
    let (status, page) = snyk
        .json(Method::GET, &projects("&limit=100&expand=target"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let made = job["logs"][0]["projects"].as_array().map(Vec::len);
    assert_eq!(page["data"].as_array().map(Vec::len), made);
    let first = &page["data"][0];
    let file = first["attributes"]["target_file"].as_str().expect("file");
    assert_eq!(
        first["attributes"]["name"],
        format!("acme-000/{slug}:{file}")
    );
    assert_eq!(first["attributes"]["origin"], "bitbucket-connect-app");
    assert_eq!(first["attributes"]["status"], "active");
    assert_eq!(
        first["relationships"]["target"]["data"]["attributes"]["display_name"],
        format!("acme-000/{slug}")
    );
    for (query, expected, parameter) in [
        ("&limit=15", StatusCode::BAD_REQUEST, Some("limit")),
        (
            "&displayName=x",
            StatusCode::BAD_REQUEST,
            Some("displayName"),
        ),
    ] {
        let (status, body) = snyk.json(Method::GET, &projects(query), None).await;
        assert_eq!(status, expected, "{query}: {body}");
        assert_eq!(body["errors"][0]["source"]["parameter"].as_str(), parameter);
    }
    let old = format!(
        "{}/rest/orgs/{org}/projects?version=2022-01-01",
        snyk.sandbox.url()
    );
    assert_eq!(
        snyk.json(Method::GET, &old, None).await.0,
        StatusCode::NOT_FOUND
    );
    // Filtered by target; deactivated (v1, again and again), then deleted (REST, then 404).
    let target = first["relationships"]["target"]["data"]["id"]
        .as_str()
        .expect("target id");
    let count = |page: &Value| page["data"].as_array().map_or(0, Vec::len);
    let (_, mine) = snyk
        .json(
            Method::GET,
            &projects(&format!("&target_id={target}")),
            None,
        )
        .await;
    assert_eq!(Some(count(&mine)), made);
    let (_, none) = snyk
        .json(
            Method::GET,
            &projects("&target_id=00000000-0000-4000-8000-000000000000"),
            None,
        )
        .await;
    assert_eq!(count(&none), 0);
    let id = first["id"].as_str().expect("project id");
    for _ in 0..2 {
        let (status, _) = snyk
            .json(
                Method::POST,
                &format!("/org/{org}/project/{id}/deactivate"),
                Some(json!({})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let (_, page) = snyk.json(Method::GET, &projects("&limit=100"), None).await;
    assert_eq!(page["data"][0]["attributes"]["status"], "inactive");
    let delete = format!(
        "{}/rest/orgs/{org}/projects/{id}?version=2024-05-31",
        snyk.sandbox.url()
    );
    assert_eq!(
        snyk.call(Method::DELETE, &delete, None).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        snyk.call(Method::DELETE, &delete, None).await.status(),
        StatusCode::NOT_FOUND
    );
    let (_, page) = snyk.json(Method::GET, &projects("&limit=100"), None).await;
    assert_eq!(
        Some(count(&page) + 1),
        made,
        "a deleted project is listed no more"
    );
    let stats = snyk.sandbox.stats();
    assert_eq!((stats.projects_deactivated, stats.projects_deleted), (0, 1));

    // A job first seen done more than a quarter of its duration and a second after its end was not
    // seen in time (the polling target's measure).
    let late = truth[0]["repos"][1]["slug"].as_str().expect("slug");
    let response = snyk.import(&org, &integration, "acme-000", late).await;
    let location = response.headers()["location"].to_str().expect("Location");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(snyk.finished(location).await["status"], "complete");
    let later = snyk.sandbox.stats();
    assert_eq!(later.jobs.seen, 2);
    assert_eq!(later.jobs.seen_in_time, stats.jobs.seen_in_time);
}

#[tokio::test]
async fn poison_repositories_fail_in_both_ways_until_poisoning_stops() {
    let knobs = Knobs {
        job_ms: 50,
        workspaces: 1,
        repos_per_workspace: 40,
        empty_rate: 0.0,
        poison_post_rate: 0.25,
        poison_job_rate: 0.25,
        ..Knobs::default()
    };
    let snyk = Snyk::start(knobs).await;
    let (org, integration) = snyk.org("acme-000").await;
    let truth = snyk.sandbox.truth();
    let repos = truth[0]["repos"].as_array().expect("repos");
    let with = |poison: &str| {
        repos
            .iter()
            .find(|r| r["poison"] == poison)
            .and_then(|r| r["slug"].as_str())
            .expect("a poison repo")
            .to_owned()
    };
    let (rejected, failing) = (with("post_rejected"), with("job_fails"));

    let response = snyk.import(&org, &integration, "acme-000", &rejected).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = snyk.import(&org, &integration, "acme-000", &failing).await;
    let location = response.headers()["location"]
        .to_str()
        .expect("Location")
        .to_owned();
    let job = snyk.finished(&location).await;
    assert_eq!(job["status"], "failed");
    assert!(
        job["logs"][0]["projects"][0]["userMessage"]
            .as_str()
            .is_some_and(|m| m.contains("poison"))
    );

    snyk.sandbox.update(|k| k.poison_paused = true);
    assert_eq!(
        snyk.import(&org, &integration, "acme-000", &rejected)
            .await
            .status(),
        StatusCode::CREATED
    );
    let stats = snyk.sandbox.stats();
    assert_eq!(
        stats.import_posts[&format!("acme-000/{rejected}")],
        2,
        "every POST counts, so duplicates show"
    );
    assert!(stats.truth.poison_post >= 1 && stats.truth.poison_job >= 1);
}

#[tokio::test]
async fn an_import_with_extra_target_fields_is_rejected_as_snyk_does() {
    let snyk = Snyk::start(Knobs::default()).await;
    let (org, integration) = snyk.org("acme-000").await;
    let body =
        json!({"target": {"owner": "acme-000", "name": "x", "branch": "main", "fork": true}});
    let response = snyk
        .call(
            Method::POST,
            &format!("/org/{org}/integrations/{integration}/import"),
            Some(body),
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = snyk
        .import(&org, "not-this-orgs-integration", "acme-000", "x")
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let missing = snyk
        .import(&org, &integration, "acme-000", "no-such-repo")
        .await;
    let job = snyk
        .finished(missing.headers()["location"].to_str().expect("Location"))
        .await;
    assert_eq!(job["status"], "failed");

    // The import options are kept per target: exclusionGlobs (a string) and files.
    let body = json!({"target": {"owner": "acme-000", "name": "y", "branch": "main"},
                      "exclusionGlobs": "fixtures, test", "files": [{"path": "a/package.json"}]});
    let response = snyk
        .call(
            Method::POST,
            &format!("/org/{org}/integrations/{integration}/import"),
            Some(body),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let stats = snyk.sandbox.stats();
    assert_eq!(stats.exclusion_globs["acme-000/y"], "fixtures, test");
    assert_eq!(
        stats.import_files["acme-000/y"],
        vec!["a/package.json".to_owned()]
    );
    let bad = json!({"target": {"owner": "acme-000", "name": "y"}, "exclusionGlobs": ["fixtures"]});
    let response = snyk
        .call(
            Method::POST,
            &format!("/org/{org}/integrations/{integration}/import"),
            Some(bad),
        )
        .await;
    assert_eq!(
        response.status(),
        StatusCode::BAD_REQUEST,
        "exclusionGlobs is a string"
    );
}

#[tokio::test]
async fn snyk_rate_limit_and_faults() {
    let snyk = Snyk::start(Knobs {
        snyk_rate_limit: Some(3),
        snyk_window_secs: 60,
        ..Knobs::default()
    })
    .await;
    let group = snyk.group();
    for _ in 0..3 {
        assert_eq!(
            snyk.call(Method::GET, &format!("/group/{group}/orgs"), None)
                .await
                .status(),
            StatusCode::OK
        );
    }
    let limited = snyk
        .call(Method::GET, &format!("/group/{group}/orgs"), None)
        .await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers().get("retry-after").is_some());
    snyk.sandbox.update(|k| {
        k.snyk_rate_limit = None;
        k.fault_rate = 1.0;
    });
    assert!(
        snyk.call(Method::GET, &format!("/group/{group}/orgs"), None)
            .await
            .status()
            .is_server_error()
    );
    let stats = snyk.sandbox.stats();
    assert_eq!((stats.rate_limited["snyk"], stats.server_errors), (1, 1));
    assert_eq!(stats.requests["GET /v1/group/{group_id}/orgs"], 5);
}

#[tokio::test]
async fn control_endpoints_over_http() {
    let snyk = Snyk::start(Knobs::default()).await;
    let url = snyk.sandbox.url();
    let patched: Value = snyk
        .http
        .patch(format!("{url}/_sandbox/knobs"))
        .json(&json!({"latency_ms": 5, "poison_paused": true}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        (
            patched["latency_ms"].as_u64(),
            patched["poison_paused"].as_bool()
        ),
        (Some(5), Some(true))
    );
    let bad = snyk
        .http
        .patch(format!("{url}/_sandbox/knobs"))
        .json(&json!({"latency_ms": "slow"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let stats: Value = snyk
        .http
        .get(format!("{url}/_sandbox/stats"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    assert_eq!(stats["truth"]["workspaces"], 3);
    let truth: Value = snyk
        .http
        .get(format!("{url}/_sandbox/truth"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    assert_eq!(truth.as_array().map(Vec::len), Some(3));
    let revoked: Value = snyk
        .http
        .post(format!("{url}/_sandbox/revoke-tokens"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    assert_eq!(revoked["revoked"], 0);

    // The tenant drifts between runs: one of each change, all or nothing.
    let first = &truth[0]["repos"];
    let slug = |i: usize| first[i]["slug"].as_str().expect("slug").to_owned();
    let ws = truth[0]["slug"].as_str().expect("slug").to_owned();
    let uuid = first[1]["uuid"].clone();
    let change = json!({
        "add": {ws.clone(): 2},
        "delete": [format!("{ws}/{}", slug(0))],
        "rename": {format!("{ws}/{}", slug(1)): "renamed"},
        "branch": {format!("{ws}/{}", slug(2)): "develop"},
    });
    let changed = snyk
        .http
        .post(format!("{url}/_sandbox/tenant"))
        .json(&change)
        .send()
        .await
        .expect("sent");
    assert_eq!(changed.status(), StatusCode::OK);
    let added: Value = changed.json().await.expect("JSON");
    assert_eq!(added["added"].as_array().map(Vec::len), Some(2));
    let after = snyk.sandbox.truth();
    let repos = after[0]["repos"].as_array().expect("repos");
    assert_eq!(repos.len(), first.as_array().expect("repos").len() + 1);
    assert!(!repos.iter().any(|r| r["slug"] == slug(0).as_str()));
    let renamed = repos
        .iter()
        .find(|r| r["slug"] == "renamed")
        .expect("renamed");
    assert_eq!(renamed["uuid"], uuid, "a rename keeps the uuid");
    let rebranched = repos
        .iter()
        .find(|r| r["slug"] == slug(2).as_str())
        .expect("kept");
    assert_eq!(rebranched["mainbranch"], "develop");
    let unknown = snyk
        .http
        .post(format!("{url}/_sandbox/tenant"))
        .json(&json!({"delete": [format!("{ws}/no-such-repo")], "add": {ws: 1}}))
        .send()
        .await
        .expect("sent");
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        snyk.sandbox.truth()[0]["repos"].as_array().map(Vec::len),
        Some(repos.len()),
        "nothing changed"
    );
}

/// Project metadata (§8): v1 tags (added, removed) and attributes, and REST `PATCH`, each with Snyk's
/// validation, and what they set shown in the REST projects list.
#[tokio::test]
async fn project_tags_and_attributes_are_set_through_v1_and_rest_with_snyk_s_validation() {
    let snyk = Snyk::start(Knobs {
        workspaces: 1,
        repos_per_workspace: 3,
        empty_rate: 0.0,
        poison_post_rate: 0.0,
        poison_job_rate: 0.0,
        job_ms: 10,
        ..Knobs::default()
    })
    .await;
    let truth = snyk.sandbox.truth();
    let (owner, name) = (
        truth[0]["slug"].as_str().expect("slug").to_owned(),
        truth[0]["repos"][0]["slug"]
            .as_str()
            .expect("slug")
            .to_owned(),
    );
    let (org, integration) = snyk.org("meta").await;
    let location = snyk
        .import(&org, &integration, &owner, &name)
        .await
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .expect("a job")
        .to_owned();
    let job = snyk.finished(&location).await;
    let project = job["logs"][0]["projects"][0]["projectId"]
        .as_str()
        .expect("a project")
        .to_owned();
    let v1 = |what: &str| format!("/org/{org}/project/{project}/{what}");
    let rest = format!(
        "{}/rest/orgs/{org}/projects/{project}?version=2024-05-31",
        snyk.sandbox.url()
    );

    let (status, _) = snyk
        .json(
            Method::POST,
            &v1("tags"),
            Some(json!({"key": "team", "value": "a"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    for bad in [
        json!({"key": "a b", "value": "x"}),
        json!({"key": "k", "value": "v".repeat(51)}),
    ] {
        let (status, _) = snyk.json(Method::POST, &v1("tags"), Some(bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
    let (status, _) = snyk
        .json(
            Method::POST,
            &v1("attributes"),
            Some(json!({"criticality": ["high"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = snyk
        .json(
            Method::POST,
            &v1("attributes"),
            Some(json!({"criticality": ["urgent"]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let patch = json!({"data": {"type": "project", "id": project, "attributes": {
        "tags": [{"key": "team", "value": "b"}, {"key": "tier", "value": "api"}],
        "lifecycle": ["production"]}}});
    let plain = snyk.call(Method::PATCH, &rest, Some(patch.clone())).await;
    assert_eq!(
        plain.status(),
        StatusCode::BAD_REQUEST,
        "application/json is refused"
    );
    let patched = snyk
        .http
        .patch(&rest)
        .header("authorization", "token sandbox-snyk-token")
        .header("content-type", "application/vnd.api+json")
        .body(patch.to_string())
        .send()
        .await
        .expect("PATCH");
    assert_eq!(patched.status(), StatusCode::OK);

    let listed: Value = snyk
        .http
        .get(format!(
            "{}/rest/orgs/{org}/projects?version=2024-05-31&ids={project}",
            snyk.sandbox.url()
        ))
        .header("authorization", "token sandbox-snyk-token")
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("JSON");
    let attributes = &listed["data"][0]["attributes"];
    assert_eq!(
        attributes["tags"],
        json!([{"key": "team", "value": "b"}, {"key": "tier", "value": "api"}])
    );
    assert_eq!(attributes["business_criticality"], json!(["high"]));
    assert_eq!(attributes["lifecycle"], json!(["production"]));
    let (status, _) = snyk
        .json(
            Method::POST,
            &v1("tags/remove"),
            Some(json!({"key": "tier", "value": "api"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let left = &snyk.sandbox.project_metadata()[0].2;
    assert_eq!(left.tags, vec![("team".to_owned(), "b".to_owned())]);
}
