//! Snyk v1: group orgs, org creation, integrations, notification settings, import and job polling.

use std::{collections::HashMap, time::Instant};

use axum::{
    Json,
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header::AUTHORIZATION},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use crate::{
    App, base_url,
    state::{Job, JobOutcome, Org, State as World},
    tenant::Poison,
};

/// The current error shape, with the reference header Snyk adds.
pub fn error(status: StatusCode, message: &str) -> Response {
    let mut response = (
        status,
        Json(json!({"code": status.as_u16(), "message": message, "error": message})),
    )
        .into_response();
    if let Ok(reference) = HeaderValue::from_str("00000000-0000-4000-8000-0000000e4404") {
        response
            .headers_mut()
            .insert("x-error-reference", reference);
    }
    response
}

pub(crate) fn authorize(state: &World, headers: &HeaderMap) -> Result<(), Response> {
    let sent = headers
        .get(AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("token "));
    if sent.is_some_and(|t| state.knobs.snyk_token_index(t.trim()).is_some()) {
        return Ok(());
    }
    let body = json!({"code": 401, "error": "Not authorised", "message": "Not authorised"});
    Err((StatusCode::UNAUTHORIZED, Json(body)).into_response())
}

fn org_not_found(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        &format!(
            "Org {id} was not found or you may not have the correct permissions to access the org."
        ),
    )
}

fn org_json(org: &Org, state: &World) -> Value {
    json!({"id": org.id, "name": org.name, "slug": org.slug, "url": format!("https://app.snyk.io/org/{}", org.slug),
           "created": org.created, "group": {"name": "Sandbox Group", "id": state.knobs.group_id}})
}

pub async fn group_orgs(
    State(app): State<App>,
    Path(group_id): Path<String>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let state = app.0.lock();
    if let Err(response) = authorize(&state, &headers) {
        return response;
    }
    if group_id != state.knobs.group_id {
        return error(
            StatusCode::NOT_FOUND,
            &format!(
                "Group {group_id} was not found or you may not have the correct permissions to access the group."
            ),
        );
    }
    let per_page = params
        .get("perPage")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(100)
        .clamp(1, 100);
    let page = params
        .get("page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let page = if state.knobs.loop_pages { 1 } else { page };
    let prefix = params.get("name").map(|n| n.to_lowercase());
    let orgs: Vec<Value> = state
        .orgs
        .iter()
        .filter(|o| prefix.as_deref().is_none_or(|p| o.name.to_lowercase().starts_with(p)))
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|o| {
            json!({"name": o.name, "id": o.id, "slug": o.slug, "url": format!("https://app.snyk.io/org/{}", o.slug), "created": o.created})
        })
        .collect();
    Json(json!({"id": group_id, "name": "Sandbox Group", "url": format!("https://api.snyk.io/group/{group_id}"),
                "created": "2024-01-01T00:00:00.000Z", "orgs": orgs}))
    .into_response()
}

pub async fn create_org(State(app): State<App>, headers: HeaderMap, body: String) -> Response {
    let mut state = app.0.lock();
    if let Err(response) = authorize(&state, &headers) {
        return response;
    }
    let Ok(body) = serde_json::from_str::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "Invalid JSON body");
    };
    let Some(name) = body
        .get("name")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|n| !n.is_empty())
    else {
        let reference = "00000000-0000-4000-8000-000000000422";
        return (StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({"message": "Please provide a new organization name in the body of the request", "errorRef": reference})))
            .into_response();
    };
    if body
        .get("groupId")
        .and_then(Value::as_str)
        .is_some_and(|group| group != state.knobs.group_id)
    {
        return (StatusCode::UNAUTHORIZED,
                Json(json!({"message": "You must have the required permissions to add an org", "errorRef": "00000000-0000-4000-8000-000000000401"})))
            .into_response();
    }
    let source = match body.get("sourceOrgId").and_then(Value::as_str) {
        None => None,
        Some(id) => match state.org(id) {
            Some(org) => Some(org.clone()),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("sourceOrgId {id} is not an org in this group"),
                );
            }
        },
    };
    let app_integration = !state.knobs.orgs_without_app_integration;
    let index = state.insert_org(name, source.as_ref(), app_integration);
    state.counters.orgs_created += 1;
    let created = org_json(&state.orgs[index], &state);
    (StatusCode::CREATED, Json(created)).into_response()
}

pub async fn integrations(
    State(app): State<App>,
    Path(org_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let state = app.0.lock();
    if let Err(response) = authorize(&state, &headers) {
        return response;
    }
    match state.org(&org_id) {
        Some(org) => Json(json!(org.integrations)).into_response(),
        None => org_not_found(&org_id),
    }
}

pub async fn integration(
    State(app): State<App>,
    Path((org_id, kind)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let state = app.0.lock();
    if let Err(response) = authorize(&state, &headers) {
        return response;
    }
    match state.org(&org_id).map(|o| o.integrations.get(&kind)) {
        None => org_not_found(&org_id),
        Some(None) => error(
            StatusCode::NOT_FOUND,
            &format!("Integration {kind} not found"),
        ),
        Some(Some(id)) => Json(json!({"id": id})).into_response(),
    }
}

pub async fn notification_settings(
    State(app): State<App>,
    Path(org_id): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let mut state = app.0.lock();
    if let Err(response) = authorize(&state, &headers) {
        return response;
    }
    let Ok(settings) = serde_json::from_str::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "Invalid JSON body");
    };
    match state.orgs.iter_mut().find(|o| o.id == org_id) {
        Some(org) => {
            org.notification_settings = Some(settings.clone());
            Json(settings).into_response()
        }
        None => org_not_found(&org_id),
    }
}

/// The target for Bitbucket Cloud (App): `owner` and `name`, an optional `branch`, nothing else.
fn target(body: &Value) -> Option<(String, String, Option<String>)> {
    let target = body.get("target")?.as_object()?;
    if target
        .keys()
        .any(|k| !matches!(k.as_str(), "owner" | "name" | "branch"))
    {
        return None;
    }
    if target.get("branch").is_some_and(|b| !b.is_string()) {
        return None;
    }
    if body.get("exclusionGlobs").is_some_and(|g| !g.is_string()) {
        return None;
    }
    if let Some(files) = body.get("files") {
        let files = files.as_array()?;
        if !files
            .iter()
            .all(|f| f.get("path").is_some_and(Value::is_string))
        {
            return None;
        }
    }
    Some((
        target.get("owner")?.as_str()?.to_owned(),
        target.get("name")?.as_str()?.to_owned(),
        target
            .get("branch")
            .and_then(Value::as_str)
            .map(str::to_owned),
    ))
}

pub async fn import(
    State(app): State<App>,
    Path((org_id, integration_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let mut state = app.0.lock();
    if let Err(response) = authorize(&state, &headers) {
        return response;
    }
    match state.org(&org_id) {
        None => return org_not_found(&org_id),
        Some(org) if !org.integrations.values().any(|id| *id == integration_id) => {
            return error(
                StatusCode::NOT_FOUND,
                &format!("Integration {integration_id} not found in org {org_id}"),
            );
        }
        Some(_) => {}
    }
    let parsed = serde_json::from_str::<Value>(&body).ok();
    let Some((owner, name, branch)) = parsed.as_ref().and_then(target) else {
        return error(StatusCode::BAD_REQUEST, "Invalid parameter format");
    };
    let key = format!("{owner}/{name}");
    *state.counters.import_posts.entry(key.clone()).or_default() += 1;
    state.counters.import_options(&key, parsed.as_ref());
    let now = Instant::now();
    if state
        .jobs
        .values()
        .any(|j| j.org_id == org_id && j.target == key && !state.is_done(j, now))
    {
        state.counters.posts_while_pending += 1;
    }
    let found = state.repo(&owner, &name).map(|(_, r)| {
        (
            state.poison(r.poison),
            r.mainbranch.is_some(),
            r.manifests(),
        )
    });
    let outcome = match found {
        None => JobOutcome::Failed {
            reason: format!("Could not find repository {key}; check the owner and name"),
        },
        Some((Some(Poison::PostRejected), _, _)) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "Failed to import {key}: the repository could not be read (sandbox poison)"
                ),
            );
        }
        Some((Some(Poison::JobFails), _, _)) => JobOutcome::Failed {
            reason: format!("Import of {key} failed (sandbox poison)"),
        },
        Some((None, true, manifests)) => JobOutcome::Complete { manifests },
        Some((None, false, _)) => JobOutcome::Complete { manifests: &[] },
    };
    let job_id = state.rng.uuid();
    let duration = state.job_duration();
    state.jobs.insert(
        job_id.clone(),
        Job {
            org_id: org_id.clone(),
            integration_id: integration_id.clone(),
            target: key,
            branch,
            started: Instant::now(),
            started_unix_ms: bb2snyk_telemetry::clock::now_unix_ms(),
            duration,
            outcome,
            polls: 0,
            pending_polls: 0,
            seen_late: None,
        },
    );
    let location = format!(
        "{}/v1/org/{org_id}/integrations/{integration_id}/import/{job_id}",
        base_url(&headers)
    );
    let mut response = StatusCode::CREATED.into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert("location", value);
    }
    response
}

pub async fn job(
    State(app): State<App>,
    Path((org_id, integration_id, job_id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut state = app.0.lock();
    if let Err(response) = authorize(&state, &headers) {
        return response;
    }
    let now = Instant::now();
    if let Some(job) = state
        .jobs
        .get_mut(&job_id)
        .filter(|j| j.org_id == org_id && j.integration_id == integration_id)
    {
        job.polls += 1;
        let finished = job.started + job.duration;
        job.pending_polls += u64::from(now < finished);
        if now >= finished && job.seen_late.is_none() {
            job.seen_late = Some(now - finished);
        }
    }
    let Some(job) = state
        .jobs
        .get(&job_id)
        .filter(|j| j.org_id == org_id && j.integration_id == integration_id)
    else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("Import job {job_id} not found"),
        );
    };
    let done = state.is_done(job, now);
    let org_slug = state
        .org(&org_id)
        .map(|o| o.slug.clone())
        .unwrap_or_default();
    let (status, projects) = match (&job.outcome, done) {
        (_, false) => ("pending", json!([])),
        (JobOutcome::Complete { manifests }, true) => {
            // The ids the projects list has: one project per target, branch and manifest.
            let projects: Vec<Value> = manifests
                .iter()
                .map(|file| {
                    let id = crate::rest::target_id(
                        &org_id,
                        &format!("{}({}):{file}", job.target, job.branch.as_deref().unwrap_or_default()),
                    );
                    json!({"targetFile": file, "success": true, "projectUrl": format!("https://app.snyk.io/org/{org_slug}/project/{id}"), "projectId": id})
                })
                .collect();
            ("complete", json!(projects))
        }
        (JobOutcome::Failed { reason }, true) => {
            ("failed", json!([{"success": false, "userMessage": reason}]))
        }
    };
    let created = "2026-11-23T09:00:00.000Z";
    Json(json!({"id": job_id, "status": status, "created": created,
                "logs": [{"name": job.target, "created": created, "status": status, "truncated": false, "projects": projects}]}))
    .into_response()
}
