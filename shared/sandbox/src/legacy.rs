//! The legacy Bitbucket Cloud integration (§8 of the API notes): an org that holds it (integration type
//! and project origin `bitbucket-cloud`), its projects carrying tags, attributes and ignores, and the v1
//! ignores calls with Snyk's validation: `GET /v1/org/{o}/project/{p}/ignores` and
//! `POST /v1/org/{o}/project/{p}/ignore/{issueId}` (an ignore of the same issue and path replaces the
//! one before; every POST is counted, so a duplicate shows).

use std::{collections::BTreeMap, time::Duration, time::Instant};

use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use crate::{
    App,
    metadata::Metadata,
    projects::{rows, v1_project},
    snyk::error,
    state::{Job, JobOutcome, State as World},
};

/// The legacy integration's type, and its projects' origin.
pub const LEGACY: &str = "bitbucket-cloud";

const REASON_TYPES: [&str; 3] = ["not-vulnerable", "wont-fix", "temporary-ignore"];

/// A project's ignores: issue id to path to the ignore.
pub type Ignores = BTreeMap<String, BTreeMap<String, Value>>;

/// A project as a test sees it.
#[derive(Debug, Clone)]
pub struct Project {
    pub org_id: String,
    pub id: String,
    pub origin: &'static str,
    /// `workspace/slug`.
    pub target: String,
    pub branch: Option<String>,
    pub file: &'static str,
    pub active: bool,
    pub metadata: Metadata,
    pub ignores: Ignores,
}

/// An org of the legacy integration holding `repos` (`workspace/slug`), each imported on its main branch
/// (on `main` for one Bitbucket no longer has), its projects with tags, attributes and two ignores each.
/// The org's id.
pub(crate) fn seed(state: &mut World, name: &str, repos: &[String]) -> String {
    let index = state.insert_org(name, None, false);
    let integration = state.rng.uuid();
    state.orgs[index]
        .integrations
        .insert(LEGACY.into(), integration.clone());
    let org_id = state.orgs[index].id.clone();
    for full in repos {
        let (owner, slug) = full.split_once('/').unwrap_or((full, ""));
        let (branch, manifests) = state
            .repo(owner, slug)
            .map_or((Some("main"), &["package.json"][..]), |(_, r)| {
                (r.mainbranch, r.manifests())
            });
        let job = Job {
            org_id: org_id.clone(),
            integration_id: integration.clone(),
            target: full.clone(),
            branch: branch.map(str::to_owned),
            started: Instant::now(),
            started_unix_ms: bb2snyk_telemetry::clock::now_unix_ms()
                .saturating_sub(86_400_000 * 400),
            duration: Duration::ZERO,
            outcome: JobOutcome::Complete { manifests },
            polls: 0,
            pending_polls: 0,
            seen_late: None,
        };
        let id = state.rng.uuid();
        state.jobs.insert(id, job);
    }
    for (n, row) in rows(state, &org_id, Instant::now()).into_iter().enumerate() {
        let workspace = row.target.split('/').next().unwrap_or_default().to_owned();
        state.metadata.insert(
            row.id.clone(),
            Metadata {
                tags: vec![
                    ("team".into(), workspace),
                    ("legacy-id".into(), format!("p{n}")),
                ],
                business_criticality: vec!["high".into()],
                environment: vec!["backend".into(), "external".into()],
                lifecycle: vec!["production".into()],
            },
        );
        let mut ignores = Ignores::new();
        ignores
            .entry(format!("SNYK-JS-LODASH-{}", 1000 + n))
            .or_default()
            .insert(
                "*".into(),
                rule(
                    "not reachable from our code",
                    "not-vulnerable",
                    false,
                    Some("2027-06-30T00:00:00.000Z"),
                ),
            );
        ignores
            .entry(format!("SNYK-JS-AXIOS-{}", 2000 + n))
            .or_default()
            .insert(
                "axios > follow-redirects".into(),
                rule("no fix yet; mitigated at the proxy", "wont-fix", true, None),
            );
        state.ignores.insert(row.id, ignores);
    }
    org_id
}

fn rule(reason: &str, reason_type: &str, disregard: bool, expires: Option<&str>) -> Value {
    let mut rule = json!({"reason": reason, "reasonType": reason_type, "created": "2025-01-15T10:00:00.000Z",
                          "disregardIfFixable": disregard,
                          "ignoredBy": {"id": "sandbox-user", "name": "Sandbox User", "email": "user@example.com"}});
    if let Some(expires) = expires {
        rule["expires"] = json!(expires);
    }
    rule
}

/// `GET /v1/org/{org_id}/project/{project_id}/ignores`: `{issueId: [{path: ignore}]}`.
pub(crate) async fn list(
    State(app): State<App>,
    Path((org_id, project_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let state = app.0.lock();
    if let Err(response) = v1_project(&state, &headers, &org_id, &project_id) {
        return response;
    }
    let ignores = state.ignores.get(&project_id).cloned().unwrap_or_default();
    let body: BTreeMap<String, Vec<Value>> = ignores
        .into_iter()
        .map(|(issue, paths)| {
            let listed = paths
                .into_iter()
                .map(|(path, rule)| json!({ path: rule }))
                .collect();
            (issue, listed)
        })
        .collect();
    Json(body).into_response()
}

/// `POST /v1/org/{org_id}/project/{project_id}/ignore/{issue_id}`: 200 with the ignore, or 400 naming
/// the field Snyk would refuse.
pub(crate) async fn add(
    State(app): State<App>,
    Path((org_id, project_id, issue_id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let mut state = app.0.lock();
    if let Err(response) = v1_project(&state, &headers, &org_id, &project_id) {
        return response;
    }
    let bad = |what: &str| error(StatusCode::BAD_REQUEST, what);
    let Ok(Value::Object(body)) = serde_json::from_str::<Value>(&body) else {
        return bad("the body must be a JSON object");
    };
    let path = match body.get("ignorePath") {
        None => "*".to_owned(),
        Some(Value::String(p)) if !p.is_empty() => p.clone(),
        Some(_) => return bad("ignorePath must be a non-empty string"),
    };
    let reason = match body.get("reason") {
        None => String::new(),
        Some(Value::String(r)) if r.len() <= 1000 => r.clone(),
        Some(_) => return bad("reason must be a string of at most 1,000 characters"),
    };
    let Some(reason_type) = body
        .get("reasonType")
        .and_then(Value::as_str)
        .filter(|t| REASON_TYPES.contains(t))
    else {
        return bad("reasonType must be one of not-vulnerable, wont-fix, temporary-ignore");
    };
    let Some(disregard) = body.get("disregardIfFixable").and_then(Value::as_bool) else {
        return bad("disregardIfFixable is required and must be a boolean");
    };
    let expires = match body.get("expires") {
        None | Some(Value::Null) => None,
        Some(Value::String(e)) if is_rfc3339(e) => Some(e.as_str()),
        Some(_) => return bad("expires must be a date-time (RFC 3339)"),
    };
    let added = rule(&reason, reason_type, disregard, expires);
    state.counters.ignore_posts += 1;
    state
        .ignores
        .entry(project_id)
        .or_default()
        .entry(issue_id)
        .or_default()
        .insert(path.clone(), added.clone());
    Json(json!({ path: added })).into_response()
}

/// `2027-06-30T00:00:00Z`, with or without fractions and with an offset: the shape, not the calendar.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && (s.ends_with('Z') || s[19..].contains(['+', '-']))
        && s[..4].bytes().all(|c| c.is_ascii_digit())
}

impl crate::Sandbox {
    /// Adds an org of the legacy Bitbucket Cloud integration holding `repos` (`workspace/slug`), their
    /// projects with tags, attributes and ignores ([`legacy::seed`]); its id.
    pub fn seed_legacy(&self, name: &str, repos: &[String]) -> String {
        seed(&mut self.app.0.lock(), name, repos)
    }

    /// Every project of every org, deleted ones left out, with its metadata and ignores.
    pub fn projects(&self) -> Vec<Project> {
        let state = self.app.0.lock();
        let now = std::time::Instant::now();
        state
            .orgs
            .iter()
            .flat_map(|org| {
                rows(&state, &org.id, now)
                    .into_iter()
                    .map(|row| Project {
                        org_id: org.id.clone(),
                        active: !state.deactivated.contains(&row.id),
                        metadata: state.metadata.get(&row.id).cloned().unwrap_or_default(),
                        ignores: state.ignores.get(&row.id).cloned().unwrap_or_default(),
                        id: row.id,
                        origin: row.origin,
                        target: row.target,
                        branch: row.branch,
                        file: row.file,
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}
