//! Snyk REST `PATCH /rest/orgs/{org_id}/projects/{project_id}` (§8): a project's tags (the list replaced)
//! and its three attributes, with Snyk's validation: the JSON:API media type, tag keys of 30 and values of
//! 50 letters, digits, `-` and `_`, attribute values from Snyk's lists. What it sets shows in the projects
//! list. The v1 calls (§8) change the same: `POST …/project/{id}/tags` adds a tag, `…/tags/remove` removes
//! one, `…/attributes` replaces the three lists.

use std::collections::HashMap;

use axum::{
    Json,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header::CONTENT_TYPE},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use crate::{
    App,
    rest::{checked, error},
};

/// The first GA release of the PATCH.
const PATCH_GA: &str = "2023-11-06";

const CRITICALITY: [&str; 4] = ["critical", "high", "medium", "low"];
const ENVIRONMENT: [&str; 9] = [
    "frontend",
    "backend",
    "internal",
    "external",
    "mobile",
    "saas",
    "onprem",
    "hosted",
    "distributed",
];
const LIFECYCLE: [&str; 3] = ["production", "development", "sandbox"];

/// A project's tags and attributes, as last set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    pub tags: Vec<(String, String)>,
    pub business_criticality: Vec<String>,
    pub environment: Vec<String>,
    pub lifecycle: Vec<String>,
}

impl Metadata {
    /// The attributes a project of the list shows.
    pub(crate) fn json(&self) -> Value {
        let tags: Vec<Value> = self
            .tags
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        json!({"tags": tags, "business_criticality": self.business_criticality,
               "environment": self.environment, "lifecycle": self.lifecycle})
    }
}

fn tag_text(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.chars().count() <= max
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

pub async fn patch(
    State(app): State<App>,
    Path((org_id, project_id)): Path<(String, String)>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
    body: String,
) -> Response {
    let mut state = app.0.lock();
    if let Err(response) = checked(&state, &headers, &params, &org_id, &["version"], PATCH_GA) {
        return response;
    }
    let media = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
    if media != Some("application/vnd.api+json") {
        return error(
            StatusCode::BAD_REQUEST,
            "requests with a body must be application/vnd.api+json",
            None,
        );
    }
    if !crate::projects::rows(&state, &org_id, std::time::Instant::now())
        .iter()
        .any(|row| row.id == project_id)
    {
        return error(
            StatusCode::NOT_FOUND,
            &format!("project {project_id} not found"),
            None,
        );
    }
    let body: Value = serde_json::from_str(&body).unwrap_or_default();
    let data = &body["data"];
    if data["type"] != "project" || data["id"] != project_id.as_str() {
        return error(StatusCode::BAD_REQUEST, "data must be this project", None);
    }
    let Some(attributes) = data["attributes"].as_object() else {
        return error(StatusCode::BAD_REQUEST, "data.attributes is required", None);
    };
    let mut meta = state.metadata.get(&project_id).cloned().unwrap_or_default();
    for (name, value) in attributes {
        let listed = |allowed: &[&str]| -> Option<Vec<String>> {
            value
                .as_array()?
                .iter()
                .map(|v| {
                    v.as_str()
                        .filter(|s| allowed.contains(s))
                        .map(str::to_owned)
                })
                .collect()
        };
        let valid = match name.as_str() {
            "tags" => value
                .as_array()
                .and_then(|tags| {
                    tags.iter()
                        .map(|t| {
                            let (k, v) = (t["key"].as_str()?, t["value"].as_str()?);
                            (tag_text(k, 30) && tag_text(v, 50))
                                .then(|| (k.to_owned(), v.to_owned()))
                        })
                        .collect::<Option<Vec<_>>>()
                })
                .map(|tags| meta.tags = tags),
            "business_criticality" => listed(&CRITICALITY).map(|v| meta.business_criticality = v),
            "environment" => listed(&ENVIRONMENT).map(|v| meta.environment = v),
            "lifecycle" => listed(&LIFECYCLE).map(|v| meta.lifecycle = v),
            _ => None,
        };
        if valid.is_none() {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("data.attributes.{name} is not valid"),
                None,
            );
        }
    }
    state.counters.metadata_patches += 1;
    state.metadata.insert(project_id.clone(), meta.clone());
    let mut attributes = meta.json();
    attributes["name"] = json!(project_id);
    Json(json!({"jsonapi": {"version": "1.0"},
                "data": {"type": "project", "id": project_id, "attributes": attributes}}))
    .into_response()
}

/// A v1 tag body, `{"key", "value"}`, if Snyk takes it.
fn v1_tag(body: &str) -> Option<(String, String)> {
    let body: Value = serde_json::from_str(body).ok()?;
    let (k, v) = (body["key"].as_str()?, body["value"].as_str()?);
    (tag_text(k, 30) && tag_text(v, 50)).then(|| (k.to_owned(), v.to_owned()))
}

/// A v1 tag call: checks the project and the tag, then changes the project's tags with `change`.
fn v1_tags(
    app: &App,
    (org_id, project_id): (String, String),
    headers: &HeaderMap,
    body: &str,
    change: impl FnOnce(&mut Vec<(String, String)>, (String, String)),
) -> Response {
    let mut state = app.0.lock();
    if let Err(response) = crate::projects::v1_project(&state, headers, &org_id, &project_id) {
        return response;
    }
    let Some(tag) = v1_tag(body) else {
        return crate::snyk::error(StatusCode::BAD_REQUEST, "Invalid tag key or value");
    };
    state.counters.metadata_patches += 1;
    let meta = state.metadata.entry(project_id).or_default();
    change(&mut meta.tags, tag);
    Json(json!({"tags": meta.json()["tags"]})).into_response()
}

/// `POST /v1/org/{org_id}/project/{project_id}/tags`: adds a tag (one already there is no error).
pub async fn v1_add_tag(
    State(app): State<App>,
    Path(ids): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> Response {
    v1_tags(&app, ids, &headers, &body, |tags, tag| {
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    })
}

/// `POST /v1/org/{org_id}/project/{project_id}/tags/remove`: removes a tag.
pub async fn v1_remove_tag(
    State(app): State<App>,
    Path(ids): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> Response {
    v1_tags(&app, ids, &headers, &body, |tags, tag| {
        tags.retain(|t| *t != tag)
    })
}

/// `POST /v1/org/{org_id}/project/{project_id}/attributes`: replaces the three lists.
pub async fn v1_attributes(
    State(app): State<App>,
    Path((org_id, project_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let mut state = app.0.lock();
    if let Err(response) = crate::projects::v1_project(&state, &headers, &org_id, &project_id) {
        return response;
    }
    let body: Value = serde_json::from_str(&body).unwrap_or_default();
    let listed = |name: &str, allowed: &[&str]| -> Option<Vec<String>> {
        match body.get(name) {
            None => Some(Vec::new()),
            Some(values) => values
                .as_array()?
                .iter()
                .map(|v| {
                    v.as_str()
                        .filter(|s| allowed.contains(s))
                        .map(str::to_owned)
                })
                .collect(),
        }
    };
    let (Some(criticality), Some(environment), Some(lifecycle)) = (
        listed("criticality", &CRITICALITY),
        listed("environment", &ENVIRONMENT),
        listed("lifecycle", &LIFECYCLE),
    ) else {
        return crate::snyk::error(StatusCode::BAD_REQUEST, "Invalid attribute value");
    };
    state.counters.metadata_patches += 1;
    let meta = state.metadata.entry(project_id).or_default();
    meta.business_criticality = criticality;
    meta.environment = environment;
    meta.lifecycle = lifecycle;
    Json(
        json!({"criticality": meta.business_criticality, "environment": meta.environment,
                "lifecycle": meta.lifecycle}),
    )
    .into_response()
}
