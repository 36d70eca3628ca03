//! Bitbucket Cloud: the OAuth2 token endpoint and the 2.0 API's workspace and repository lists.
//!
//! Over 400 lines on purpose: the token endpoint and the two lists share the fault, limit and paging
//! rules written here, and read in the order `bitbucket-and-snyk-apis.md` gives them.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use axum::{
    Json,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, StatusCode, header::AUTHORIZATION},
    response::{IntoResponse, Response},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::{Value, json};

use crate::{
    App, Knobs, base_url,
    query::{self, DEFAULT_PAGELEN, Filter, MAX_PAGELEN},
    state::{State as World, Token},
    tenant::Workspace,
};

/// The 2.0 API's error envelope.
pub fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"type": "error", "error": {"message": message}})),
    )
        .into_response()
}

/// RFC 6749's shape, which the token endpoint uses instead of the envelope.
fn oauth_error(error: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error_description": description, "error": error})),
    )
        .into_response()
}

fn gone() -> Response {
    let data = json!({"announcement_url": "https://developer.atlassian.com/cloud/bitbucket/changelog#CHANGE-2770"});
    let body = json!({
        "type": "error",
        "error": {"message": "CHANGE-2770 - Functionality has been deprecated",
                  "detail": "Please read the changelog entry for more details.", "data": data},
        "data": data
    });
    (StatusCode::GONE, Json(body)).into_response()
}

pub async fn token(State(app): State<App>, headers: HeaderMap, body: String) -> Response {
    let mut state = app.0.lock();
    if state.knobs.token_fault_rate > 0.0 && state.rng.unit() < state.knobs.token_fault_rate {
        state.counters.server_errors += 1;
        return (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response();
    }
    if state.knobs.token_429_rate > 0.0 && state.rng.unit() < state.knobs.token_429_rate {
        *state.counters.rate_limited.entry("token").or_default() += 1;
        let mut response = (
            StatusCode::TOO_MANY_REQUESTS,
            "Rate limit for this resource has been exceeded",
        )
            .into_response();
        response
            .headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        return response;
    }
    let outcome = exchange(&mut state, &headers, &body);
    match &outcome {
        Ok(_) => state.counters.token_exchanges += 1,
        Err(_) => state.counters.token_failures += 1,
    }
    outcome.unwrap_or_else(|e| e)
}

fn exchange(state: &mut World, headers: &HeaderMap, body: &str) -> Result<Response, Response> {
    let unauthenticated = || {
        oauth_error(
            "unauthorized_client",
            "Requests must be authenticated using OAuth client credentials",
        )
    };
    let encoded = headers
        .get(AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Basic "))
        .ok_or_else(unauthenticated)?;
    let decoded = STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(unauthenticated)?;
    let (id, secret) = decoded.split_once(':').ok_or_else(unauthenticated)?;
    let consumer = if id == state.knobs.client_id && secret == state.knobs.client_secret {
        None
    } else {
        let known = (0..state.knobs.consumers)
            .find(|i| state.knobs.consumer(*i) == (id.to_owned(), secret.to_owned()))
            .filter(|i| !state.knobs.revoked_consumers.contains(i));
        match known {
            Some(i) => Some(i),
            None => {
                return Err(oauth_error(
                    "unauthorized_client",
                    "Invalid OAuth client credentials",
                ));
            }
        }
    };
    let form: HashMap<String, String> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        other => {
            return Err(oauth_error(
                "invalid_grant",
                &format!("Unsupported grant type: {}", other.unwrap_or("None")),
            ));
        }
    }
    if state.knobs.public_consumer {
        return Err(oauth_error(
            "invalid_grant",
            "Cannot use client_credentials with a consumer marked as \"public\". Calls for auto generated consumers should use urn:bitbucket:oauth2:jwt instead.",
        ));
    }
    let access_token = format!(
        "sbx{:016x}{:016x}{:016x}",
        state.rng.next_u64(),
        state.rng.next_u64(),
        state.rng.next_u64()
    );
    let expires_in = state.knobs.token_expires_in;
    state.tokens.insert(
        access_token.clone(),
        Token {
            expires_at: Instant::now() + Duration::from_secs(expires_in),
            revoked: false,
            consumer,
        },
    );
    let key = state.consumer_key(consumer);
    *state.counters.exchanges_by_consumer.entry(key).or_default() += 1;
    let mut body = json!({"access_token": access_token, "expires_in": expires_in, "token_type": "bearer", "state": "client_credentials"});
    if state.knobs.legacy_tokens() {
        body["scopes"] = json!(state.knobs.scopes);
        body["refresh_token"] = json!(format!("rt{:016x}", state.rng.next_u64()));
    } else {
        body["scope"] = json!(state.knobs.scopes);
    }
    Ok(Json(body).into_response())
}

/// Checks the Bearer token (or Basic credential) and that the consumer holds `scope`. Returns the
/// workspace-owned consumer the token belongs to (`None`: one that sees every workspace).
fn authorize(state: &World, headers: &HeaderMap, scope: &str) -> Result<Option<usize>, Response> {
    let mut consumer = None;
    let header = headers
        .get(AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if let Some(token) = header.strip_prefix("Bearer ") {
        let token = token.trim();
        if !state.knobs.access_tokens.iter().any(|t| t == token) {
            match state.tokens.get(token) {
                None => return Err(error(StatusCode::UNAUTHORIZED, "Invalid credentials.")),
                Some(t) if t.revoked => {
                    return Err(error(
                        StatusCode::UNAUTHORIZED,
                        "Token is invalid, expired, or not supported for this endpoint.",
                    ));
                }
                Some(t) if Instant::now() >= t.expires_at => {
                    return Err(error(StatusCode::UNAUTHORIZED, "Access token expired."));
                }
                Some(t)
                    if t.consumer
                        .is_some_and(|c| state.knobs.revoked_consumers.contains(&c)) =>
                {
                    return Err(error(
                        StatusCode::UNAUTHORIZED,
                        "Token is invalid, expired, or not supported for this endpoint.",
                    ));
                }
                Some(t) => consumer = t.consumer,
            }
        }
    } else if let Some(encoded) = header.strip_prefix("Basic ") {
        let decoded = STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default();
        if !state.knobs.basic_credentials.contains(&decoded) {
            return Err(error(StatusCode::UNAUTHORIZED, "Invalid credentials."));
        }
    } else {
        return Err(error(StatusCode::UNAUTHORIZED, "Invalid credentials."));
    }
    let granted: Vec<&str> = state.knobs.scopes.split_whitespace().collect();
    if !granted.contains(&scope) {
        let body = json!({"type": "error", "error": {
            "message": "Your credentials lack one or more required privilege scopes.",
            "detail": {"granted": granted, "required": [scope]}}});
        return Err((StatusCode::FORBIDDEN, Json(body)).into_response());
    }
    Ok(consumer)
}

/// The workspace `identifier` names, by slug or uuid, as `consumer` may see it: one it does not own is
/// answered as Bitbucket does a workspace it hides (404), and counted.
fn visible<'a>(
    state: &'a mut World,
    consumer: Option<usize>,
    identifier: &str,
) -> Result<&'a Workspace, Response> {
    let not_found = || {
        error(
            StatusCode::NOT_FOUND,
            &format!("No workspace with identifier '{identifier}'."),
        )
    };
    let index = state
        .tenant
        .iter()
        .position(|w| w.slug == identifier || w.uuid == identifier)
        .ok_or_else(not_found)?;
    if !state.knobs.sees(consumer, index) {
        state.counters.foreign_requests += 1;
        return Err(not_found());
    }
    Ok(&state.tenant[index])
}

/// `page` and `pagelen` from the query, with Bitbucket's limits.
fn paging(params: &HashMap<String, String>) -> Result<(usize, usize), Response> {
    let pagelen = match params.get("pagelen") {
        None => DEFAULT_PAGELEN,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGELEN).contains(&n) => n,
            _ => return Err(error(StatusCode::BAD_REQUEST, "Invalid pagelen")),
        },
    };
    let page = match params.get("page") {
        None => 1,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|p| *p >= 1)
            .ok_or_else(|| error(StatusCode::BAD_REQUEST, "Invalid page"))?,
    };
    Ok((page, pagelen))
}

/// The request's own URL without `page`, so `next` keeps `pagelen`, `q`, `sort` and `fields`.
fn self_url(headers: &HeaderMap, path: &str, raw: Option<&str>) -> String {
    let kept: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .into_owned()
        .filter(|(k, _)| k != "page")
        .collect();
    let base = format!("{}{path}", base_url(headers));
    if kept.is_empty() {
        return base;
    }
    format!(
        "{base}?{}",
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(kept)
            .finish()
    )
}

fn params(raw: Option<&str>) -> HashMap<String, String> {
    form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// Filter, sort, page and project a list the way every 2.0 list endpoint does.
fn list(items: Vec<Value>, headers: &HeaderMap, path: &str, raw: Option<&str>) -> Response {
    let params = params(raw);
    let (page, pagelen) = match paging(&params) {
        Ok(p) => p,
        Err(response) => return response,
    };
    let filter = match params.get("q").map(|q| Filter::parse(q)).transpose() {
        Ok(f) => f.unwrap_or_default(),
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let mut items: Vec<Value> = items.into_iter().filter(|i| filter.matches(i)).collect();
    if let Some(by) = params.get("sort") {
        query::sort(&mut items, by);
    }
    let body = query::page(items, page, pagelen, &self_url(headers, path, raw));
    let body = match params.get("fields") {
        Some(fields) => query::project(&body, fields),
        None => body,
    };
    Json(body).into_response()
}

pub async fn user_workspaces(
    State(app): State<App>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    workspace_list(
        &app,
        &headers,
        raw.as_deref(),
        "/2.0/user/workspaces",
        |k| k.user_workspaces_gone,
        Workspace::access_json,
    )
}

pub async fn workspaces(
    State(app): State<App>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    workspace_list(
        &app,
        &headers,
        raw.as_deref(),
        "/2.0/workspaces",
        |k| k.workspaces_gone,
        Workspace::json,
    )
}

/// `GET /2.0/workspaces/{workspace}`: one workspace, with its display name (CHANGE-2770 keeps this one).
pub async fn workspace(
    State(app): State<App>,
    Path(workspace): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut state = app.0.lock();
    let consumer = match authorize(&state, &headers, "account") {
        Ok(consumer) => consumer,
        Err(response) => return response,
    };
    match visible(&mut state, consumer, &workspace) {
        Ok(w) => Json(w.json(&base_url(&headers))).into_response(),
        Err(response) => response,
    }
}

/// Both workspace lists: the same checks and paging, items shaped by `item`.
fn workspace_list(
    app: &App,
    headers: &HeaderMap,
    raw: Option<&str>,
    path: &str,
    gone: impl Fn(&Knobs) -> bool,
    item: impl Fn(&Workspace, &str) -> Value,
) -> Response {
    let items = {
        let state = app.0.lock();
        if gone(&state.knobs) {
            return self::gone();
        }
        let consumer = match authorize(&state, headers, "account") {
            Ok(consumer) => consumer,
            Err(response) => return response,
        };
        let base = base_url(headers);
        state
            .tenant
            .iter()
            .enumerate()
            .filter(|(i, _)| state.knobs.sees(consumer, *i))
            .map(|(_, w)| item(w, &base))
            .collect()
    };
    list(items, headers, path, raw)
}

pub async fn repositories(
    State(app): State<App>,
    Path(workspace): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let items = {
        let mut state = app.0.lock();
        let consumer = match authorize(&state, &headers, "repository") {
            Ok(consumer) => consumer,
            Err(response) => return response,
        };
        let hidden = state.knobs.hidden_repos.clone();
        let ws = match visible(&mut state, consumer, &workspace) {
            Ok(ws) => ws,
            Err(response) => return response,
        };
        let base = base_url(&headers);
        ws.repos
            .iter()
            .filter(|r| !hidden.contains(&r.full_name(ws)))
            .map(|r| r.json(ws, &base))
            .collect()
    };
    list(
        items,
        &headers,
        &format!("/2.0/repositories/{workspace}"),
        raw.as_deref(),
    )
}

/// The repository `repo` (slug or `{uuid}`) of `workspace`, as the credential may see it: 404 when the
/// workspace has none such, 403 for one it may not see (`Knobs::hidden_repos`).
fn one_repository<'a>(
    state: &'a mut World,
    headers: &HeaderMap,
    workspace: &str,
    repo: &str,
) -> Result<(&'a Workspace, &'a crate::tenant::Repo), Response> {
    let consumer = authorize(state, headers, "repository")?;
    let hidden = state.knobs.hidden_repos.clone();
    let ws = visible(state, consumer, workspace)?;
    let found = ws
        .repos
        .iter()
        .find(|r| r.slug == repo || r.uuid == repo)
        .ok_or_else(|| {
            error(
                StatusCode::NOT_FOUND,
                &format!("Repository {workspace}/{repo} not found"),
            )
        })?;
    if hidden.contains(&found.full_name(ws)) {
        return Err(error(
            StatusCode::FORBIDDEN,
            "You may not have access to this repository or it no longer exists in this workspace.",
        ));
    }
    Ok((ws, found))
}

/// `GET /2.0/repositories/{workspace}/{repo_slug}`: one repository (see [`one_repository`]).
pub async fn repository(
    State(app): State<App>,
    Path((workspace, repo)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut state = app.0.lock();
    match one_repository(&mut state, &headers, &workspace, &repo) {
        Ok((ws, found)) => Json(found.json(ws, &base_url(&headers))).into_response(),
        Err(response) => response,
    }
}

/// `GET /2.0/repositories/{workspace}/{repo_slug}/refs/branches`: a repository's branches, filtered
/// (`q=name~"release/"`), sorted and paged like every 2.0 list.
pub async fn branches(
    State(app): State<App>,
    Path((workspace, repo)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let items = {
        let mut state = app.0.lock();
        let found = match one_repository(&mut state, &headers, &workspace, &repo) {
            Ok((_, found)) => found,
            Err(response) => return response,
        };
        found
            .branches()
            .into_iter()
            .map(|name| {
                json!({"type": "branch", "name": name,
                       "target": {"type": "commit", "hash": "0123456789abcdef", "date": found.updated_on}})
            })
            .collect()
    };
    list(
        items,
        &headers,
        &format!("/2.0/repositories/{workspace}/{repo}/refs/branches"),
        raw.as_deref(),
    )
}
