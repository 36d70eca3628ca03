//! Snyk REST: `GET /rest/orgs/{org_id}/targets`, as §7.1 of the API notes describes it. A target appears
//! once an import job for it has completed (never while its job is pending), so a client that looks before
//! it posts again can still duplicate an import whose job had not finished. Its `created_at` is when its
//! first job finished, and `created_gte` filters on it. (Real Snyk may list a target as its first projects
//! appear, before its job is done: a client takes a new target as a hint, not as the job's end.)

use std::{
    collections::{BTreeMap, HashMap},
    time::Instant,
};

use axum::{
    Json,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use crate::{App, state::JobOutcome};

/// The first GA release of the targets endpoint; an earlier date finds no version (404).
const GA: &str = "2024-02-21";
const KNOWN: [&str; 11] = [
    "source_types",
    "version",
    "limit",
    "starting_after",
    "ending_before",
    "count",
    "is_private",
    "exclude_empty",
    "url",
    "display_name",
    "created_gte",
];

/// A JSON:API error, in REST's shape.
pub(crate) fn error(status: StatusCode, detail: &str, parameter: Option<&str>) -> Response {
    let mut e = json!({"status": status.as_u16().to_string(), "detail": detail});
    if let Some(p) = parameter {
        e["source"] = json!({"parameter": p});
    }
    (
        status,
        Json(json!({"jsonapi": {"version": "1.0"}, "errors": [e]})),
    )
        .into_response()
}

pub async fn targets(
    State(app): State<App>,
    Path(org_id): Path<String>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let state = app.0.lock();
    if let Err(response) = checked(&state, &headers, &params, &org_id, &KNOWN, GA) {
        return response;
    }
    let Some(limit) = page_size(&state, &params, |n| (1..=100).contains(&n)) else {
        return error(
            StatusCode::BAD_REQUEST,
            "limit must be 1 to 100",
            Some("limit"),
        );
    };
    let exclude_empty = params.get("exclude_empty").is_none_or(|v| v != "false");
    let prefix = params.get("display_name").cloned().unwrap_or_default();
    // The one shape of date-time the sandbox reads; it sorts as text.
    let since = params.get("created_gte").map(String::as_str);
    if since.is_some_and(|t| !bb2snyk_telemetry::clock::is_rfc3339_secs(t)) {
        return error(
            StatusCode::BAD_REQUEST,
            "created_gte must be a date-time such as 2024-05-01T10:00:00Z",
            Some("created_gte"),
        );
    }
    // Each target once, by name, with whether any completed job gave it projects, and when the first did.
    let now = Instant::now();
    let mut found: BTreeMap<&str, (bool, String)> = BTreeMap::new();
    for job in state
        .jobs
        .values()
        .filter(|j| j.org_id == org_id && state.is_done(j, now))
    {
        if let JobOutcome::Complete { manifests } = &job.outcome {
            let finished = crate::state::State::finished_at(job);
            let entry = found
                .entry(job.target.as_str())
                .or_insert_with(|| (false, finished.clone()));
            entry.0 |= !manifests.is_empty();
            if finished < entry.1 {
                entry.1 = finished;
            }
        }
    }
    let matching: Vec<(&str, String)> = found
        .into_iter()
        .filter(|(name, (projects, created))| {
            name.starts_with(&prefix)
                && (*projects || !exclude_empty)
                && since.is_none_or(|t| created.as_str() >= t)
        })
        .map(|(name, (_, created))| (name, created))
        .collect();
    let start = start(&params);
    let page: Vec<Value> = matching
        .iter()
        .skip(start)
        .take(limit)
        .map(|(name, created)| {
            json!({"type": "target", "id": target_id(&org_id, name),
                   "attributes": {"display_name": name, "url": format!("https://bitbucket.org/{name}"),
                                  "is_private": true, "created_at": created},
                   "relationships": {"integration": {"data": {"type": "integration", "id": null,
                                                              "attributes": {"integration_type": "bitbucket-connect-app"}}},
                                     "organization": {"data": {"type": "organization", "id": org_id}}}})
        })
        .collect();
    let mut links = json!({});
    if start + limit < matching.len() {
        links["next"] = json!(next(
            &state.knobs,
            &org_id,
            &format!("/orgs/{org_id}/targets"),
            &params,
            start + limit
        ));
    }
    Json(json!({"jsonapi": {"version": "1.0"}, "data": page, "links": links, "meta": {"count": matching.len()}}))
        .into_response()
}

/// A stable id per org and target name.
pub(crate) fn target_id(org_id: &str, name: &str) -> String {
    let hash = format!("{org_id}/{name}")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("00000000-0000-4000-8000-{:012x}", hash & 0xffff_ffff_ffff)
}

/// The `next` link of a page, carrying every parameter: relative to the REST base, without `/rest`, as
/// documented, or with the `/rest` prefix Snyk has also answered (`Knobs::rest_links`).
pub(crate) fn next(
    knobs: &crate::Knobs,
    org_id: &str,
    path: &str,
    params: &HashMap<String, String>,
    start: usize,
) -> String {
    let mut query: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k.as_str() != "starting_after")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    query.sort();
    query.push(("starting_after".into(), format!("v1.{start}")));
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(query)
        .finish();
    let prefix = if knobs.prefixed_links(org_id) {
        "/rest"
    } else {
        ""
    };
    format!("{prefix}{path}?{query}")
}

/// Where a page starts: the `starting_after` cursor this sandbox hands out.
pub(crate) fn start(params: &HashMap<String, String>) -> usize {
    params
        .get("starting_after")
        .and_then(|c| c.strip_prefix("v1."))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0)
}

/// What every REST list checks first, in Snyk's order: the token, the query's parameters (`known` only),
/// a `version` on or after the endpoint's first GA release `ga`, and the org.
pub(crate) fn checked(
    state: &crate::state::State,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
    org_id: &str,
    known: &[&str],
    ga: &str,
) -> Result<(), Response> {
    crate::snyk::authorize(state, headers)?;
    if let Some(unknown) = params.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            &format!("Unknown query parameter '{unknown}'"),
            Some(unknown),
        ));
    }
    match params.get("version") {
        None => Err(error(
            StatusCode::BAD_REQUEST,
            "version is required",
            Some("version"),
        )),
        Some(v) if v.get(..10).is_none_or(|date| date < ga) => Err(error(
            StatusCode::NOT_FOUND,
            "no version of this endpoint on or before that date",
            None,
        )),
        Some(_) if state.org(org_id).is_none() => Err(error(
            StatusCode::NOT_FOUND,
            &format!("org {org_id} not found"),
            None,
        )),
        Some(_) => Ok(()),
    }
}

/// The page size asked for (10 when none), if `valid`, capped by the `rest_page_limit` knob.
pub(crate) fn page_size(
    state: &crate::state::State,
    params: &HashMap<String, String>,
    valid: impl Fn(usize) -> bool,
) -> Option<usize> {
    let limit = match params.get("limit").map(|l| l.parse::<usize>()) {
        None => 10,
        Some(Ok(n)) if valid(n) => n,
        Some(_) => return None,
    };
    Some(
        state
            .knobs
            .rest_page_limit
            .map_or(limit, |cap| limit.min(cap.max(1))),
    )
}
