//! Snyk REST: `GET /rest/orgs/{org_id}/projects`, as §7.2 of the API notes describes it: one project per
//! manifest of every completed import, named `workspace/slug:file`, its branch as `target_reference`, its
//! origin `bitbucket-connect-app` (what Snyk reports for the Bitbucket Cloud App), `expand=target` adding
//! the target's display name.

use std::{collections::BTreeMap, collections::HashMap, time::Instant};

use axum::{
    Json,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use crate::{
    App,
    rest::{checked, error, next, page_size, start, target_id},
    state::JobOutcome,
};

/// The first GA release of the projects endpoint.
const GA: &str = "2023-02-15";
pub(crate) const ORIGIN: &str = "bitbucket-connect-app";
const KNOWN: [&str; 8] = [
    "version",
    "limit",
    "starting_after",
    "ending_before",
    "origins",
    "expand",
    "target_id",
    "meta_count",
];

pub async fn projects(
    State(app): State<App>,
    Path(org_id): Path<String>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let state = app.0.lock();
    if let Err(response) = checked(&state, &headers, &params, &org_id, &KNOWN, GA) {
        return response;
    }
    let Some(limit) = page_size(&state, &params, |n| (10..=100).contains(&n) && n % 10 == 0) else {
        return error(
            StatusCode::BAD_REQUEST,
            "limit must be a multiple of 10 from 10 to 100",
            Some("limit"),
        );
    };
    let origins: Option<Vec<&str>> = params.get("origins").map(|o| o.split(',').collect());
    if origins.as_ref().is_some_and(|o| !o.contains(&ORIGIN)) {
        return Json(json!({"jsonapi": {"version": "1.0"}, "data": [], "links": {}}))
            .into_response();
    }
    let expand = params.get("expand").is_some_and(|e| e == "target");
    // One project per target, branch and manifest, however often it was imported.
    let now = Instant::now();
    let mut found: BTreeMap<(&str, Option<&str>, &str), ()> = BTreeMap::new();
    for job in state
        .jobs
        .values()
        .filter(|j| j.org_id == org_id && state.is_done(j, now))
    {
        if let JobOutcome::Complete { manifests } = &job.outcome {
            for file in *manifests {
                found.insert((job.target.as_str(), job.branch.as_deref(), file), ());
            }
        }
    }
    let all: Vec<_> = found.into_keys().collect();
    let start = start(&params);
    let data: Vec<Value> = all
        .iter()
        .skip(start)
        .take(limit)
        .map(|(target, branch, file)| project(&org_id, target, *branch, file, expand))
        .collect();
    let mut links = json!({});
    if start + limit < all.len() {
        links["next"] = json!(next(
            &format!("/orgs/{org_id}/projects"),
            &params,
            start + limit
        ));
    }
    Json(json!({"jsonapi": {"version": "1.0"}, "data": data, "links": links})).into_response()
}

fn project(org_id: &str, target: &str, branch: Option<&str>, file: &str, expand: bool) -> Value {
    let kind = match file.rsplit('/').next().unwrap_or(file) {
        "package.json" => "npm",
        "requirements.txt" | "setup.py" => "pip",
        "pom.xml" => "maven",
        "go.mod" => "gomodules",
        "Gemfile.lock" => "rubygems",
        "Dockerfile" => "dockerfile",
        _ => "nuget",
    };
    let mut target_data = json!({"type": "target", "id": target_id(org_id, target)});
    if expand {
        target_data["attributes"] = json!({"display_name": target,
                                           "url": format!("https://bitbucket.org/{target}")});
    }
    json!({"type": "project", "id": crate::rest::target_id(org_id, &format!("{target}({}):{file}", branch.unwrap_or_default())),
           "attributes": {"name": format!("{target}:{file}"), "type": kind, "target_file": file,
                          "target_reference": branch, "origin": ORIGIN,
                          "created": "2026-11-23T09:00:00.000Z", "status": "active", "read_only": false,
                          "settings": {"recurring_tests": {"frequency": "daily"}, "pull_requests": {}},
                          "tags": []},
           "relationships": {"organization": {"data": {"type": "org", "id": org_id}, "links": {}},
                             "target": {"data": target_data, "links": {}}}})
}
