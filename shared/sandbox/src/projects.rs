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
    state::{JobOutcome, State as World},
};

/// The first GA release of the projects list, and of deleting one.
const GA: &str = "2023-02-15";
const DELETE_GA: &str = "2023-11-06";
pub(crate) const ORIGIN: &str = "bitbucket-connect-app";
const KNOWN: [&str; 9] = [
    "version",
    "limit",
    "starting_after",
    "ending_before",
    "origins",
    "expand",
    "target_id",
    "meta_count",
    "ids",
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
    let expand = params.get("expand").is_some_and(|e| e == "target");
    // `target_id` filters by target (comma-separated here; Snyk's spec gives no style for the array).
    let targets: Option<Vec<&str>> = params.get("target_id").map(|t| t.split(',').collect());
    let ids: Option<Vec<&str>> = params.get("ids").map(|t| t.split(',').collect());
    let all: Vec<Row> = rows(&state, &org_id, Instant::now())
        .into_iter()
        .filter(|row| {
            targets
                .as_ref()
                .is_none_or(|t| t.contains(&target_id(&org_id, &row.target).as_str()))
                && ids
                    .as_ref()
                    .is_none_or(|ids| ids.contains(&row.id.as_str()))
                && origins.as_ref().is_none_or(|o| o.contains(&row.origin))
        })
        .collect();
    let start = start(&params);
    let data: Vec<Value> = all
        .iter()
        .skip(start)
        .take(limit)
        .map(|row| {
            let meta = state.metadata.get(&row.id).cloned().unwrap_or_default();
            project(
                &org_id,
                row,
                state.deactivated.contains(&row.id),
                expand,
                &meta,
            )
        })
        .collect();
    let mut links = json!({});
    if start + limit < all.len() {
        links["next"] = json!(next(
            &state.knobs,
            &org_id,
            &format!("/orgs/{org_id}/projects"),
            &params,
            start + limit
        ));
    }
    Json(json!({"jsonapi": {"version": "1.0"}, "data": data, "links": links})).into_response()
}

/// A project the org has: one per target, branch and manifest of its completed imports, however often
/// each was imported.
pub(crate) struct Row {
    pub id: String,
    pub target: String,
    pub branch: Option<String>,
    pub file: &'static str,
    /// When its first import finished, RFC 3339 in seconds.
    pub created: String,
    /// The App's (`bitbucket-connect-app`), or the legacy integration's (`bitbucket-cloud`) for a job
    /// made through it.
    pub origin: &'static str,
}

/// The org's projects, deleted ones left out, in a stable order.
pub(crate) fn rows(state: &World, org_id: &str, now: Instant) -> Vec<Row> {
    // Each project once, with when its first completed import finished (its `created`).
    let mut found: BTreeMap<(&str, Option<&str>, &str, &'static str), String> = BTreeMap::new();
    let legacy = state
        .org(org_id)
        .and_then(|o| o.integrations.get(crate::legacy::LEGACY));
    for job in state
        .jobs
        .values()
        .filter(|j| j.org_id == org_id && state.is_done(j, now))
    {
        if let JobOutcome::Complete { manifests } = &job.outcome {
            let finished = crate::state::State::finished_at(job);
            let origin = if legacy == Some(&job.integration_id) {
                crate::legacy::LEGACY
            } else {
                ORIGIN
            };
            for file in *manifests {
                let created = found
                    .entry((job.target.as_str(), job.branch.as_deref(), file, origin))
                    .or_insert_with(|| finished.clone());
                if finished < *created {
                    *created = finished.clone();
                }
            }
        }
    }
    found
        .into_iter()
        .map(|((target, branch, file, origin), created)| Row {
            id: target_id(
                org_id,
                &format!(
                    "{target}({}):{file}{}",
                    branch.unwrap_or_default(),
                    if origin == ORIGIN { "" } else { origin }
                ),
            ),
            target: target.to_owned(),
            branch: branch.map(str::to_owned),
            file,
            created,
            origin,
        })
        .filter(|row| !state.deleted.contains(&row.id))
        .collect()
}

/// A v1 call's checks on a project: the token, and that the org has it (404 as v1 words it).
pub(crate) fn v1_project(
    state: &World,
    headers: &HeaderMap,
    org_id: &str,
    project_id: &str,
) -> Result<(), Response> {
    crate::snyk::authorize(state, headers)?;
    if rows(state, org_id, Instant::now())
        .iter()
        .any(|row| row.id == project_id)
    {
        return Ok(());
    }
    Err(crate::snyk::error(
        StatusCode::NOT_FOUND,
        &format!("Project {project_id} not found in org {org_id}"),
    ))
}

/// `POST /v1/org/{org_id}/project/{project_id}/deactivate`: 200 with an empty body, again and again.
pub async fn deactivate(
    State(app): State<App>,
    Path((org_id, project_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut state = app.0.lock();
    if let Err(response) = v1_project(&state, &headers, &org_id, &project_id) {
        return response;
    }
    state.deactivated.insert(project_id);
    StatusCode::OK.into_response()
}

/// `POST /v1/org/{org_id}/project/{project_id}/activate`: 200 with an empty body; an active project stays so.
pub async fn activate(
    State(app): State<App>,
    Path((org_id, project_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut state = app.0.lock();
    if let Err(response) = v1_project(&state, &headers, &org_id, &project_id) {
        return response;
    }
    if state.deactivated.remove(&project_id) {
        state.counters.projects_activated += 1;
    }
    StatusCode::OK.into_response()
}

/// `DELETE /rest/orgs/{org_id}/projects/{project_id}`: 204, then 404 for a project that is gone.
pub async fn delete(
    State(app): State<App>,
    Path((org_id, project_id)): Path<(String, String)>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let mut state = app.0.lock();
    if let Err(response) = checked(&state, &headers, &params, &org_id, &["version"], DELETE_GA) {
        return response;
    }
    if !rows(&state, &org_id, Instant::now())
        .iter()
        .any(|row| row.id == project_id)
    {
        return error(
            StatusCode::NOT_FOUND,
            &format!("project {project_id} not found"),
            None,
        );
    }
    state.deactivated.remove(&project_id);
    state.deleted.insert(project_id);
    StatusCode::NO_CONTENT.into_response()
}

fn project(
    org_id: &str,
    row: &Row,
    inactive: bool,
    expand: bool,
    meta: &crate::metadata::Metadata,
) -> Value {
    let kind = match row.file.rsplit('/').next().unwrap_or(row.file) {
        "package.json" => "npm",
        "requirements.txt" | "setup.py" => "pip",
        "pom.xml" => "maven",
        "go.mod" => "gomodules",
        "Gemfile.lock" => "rubygems",
        "Dockerfile" => "dockerfile",
        _ => "nuget",
    };
    let mut target = json!({"type": "target", "id": target_id(org_id, &row.target)});
    if expand {
        target["attributes"] = json!({"display_name": row.target,
                                      "url": format!("https://bitbucket.org/{}", row.target)});
    }
    let mut attributes = json!({"name": format!("{}:{}", row.target, row.file), "type": kind,
                          "target_file": row.file, "target_reference": row.branch, "origin": row.origin,
                          "created": row.created,
                          "status": if inactive { "inactive" } else { "active" }, "read_only": false,
                          "settings": {"recurring_tests": {"frequency": "daily"}, "pull_requests": {}}});
    if let (Some(a), Some(m)) = (attributes.as_object_mut(), meta.json().as_object()) {
        a.extend(m.clone());
    }
    json!({"type": "project", "id": row.id,
           "attributes": attributes,
           "relationships": {"organization": {"data": {"type": "org", "id": org_id}, "links": {}},
                             "target": {"data": target, "links": {}}}})
}
