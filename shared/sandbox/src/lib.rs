//! A faithful local simulator of Bitbucket Cloud (OAuth token endpoint, workspaces, repositories) and the
//! Snyk v1 API (orgs, integrations, notification settings, import and job polling), following
//! `bitbucket-and-snyk-apis.md`. It adds what tests and rehearsals need: a deterministic tenant, latency,
//! 5xx faults, rolling-window rate limits with 429 + `Retry-After`, poison repositories, token revocation,
//! and `/_sandbox/stats` with the ground truth to check a run against.
//!
//! Over 400 lines on purpose: the knobs, the router and the control endpoints form one public surface
//! that tests and the benchmark read together.

#![allow(
    clippy::result_large_err,
    reason = "handlers short-circuit with a ready axum Response"
)]

mod bitbucket;
pub mod changes;
pub mod knobs;
pub mod legacy;
mod metadata;
mod projects;
pub mod query;
mod rest;
mod snyk;
pub mod state;
pub mod tenant;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::{MatchedPath, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header::RETRY_AFTER},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
pub use changes::TenantChange;
pub use knobs::Knobs;
pub use metadata::Metadata;
use serde_json::{Value, json};
pub use state::{Stats, TruthSummary};
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub(crate) struct App(Arc<state::Shared>);

/// A running sandbox. Dropping it stops the server.
#[derive(Debug)]
pub struct Sandbox {
    addr: SocketAddr,
    app: App,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Sandbox {
    /// Starts on 127.0.0.1 and a free port.
    pub async fn start(knobs: Knobs) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        Self::on(listener, knobs)
    }

    pub fn on(listener: TcpListener, knobs: Knobs) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let app = App(Arc::new(state::Shared::new(knobs)));
        let router = router(app.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "sandbox server stopped");
            }
        });
        Ok(Self { addr, app, server })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The variables that point bb2snyk (or snyk-api-import) at this sandbox, with its credentials.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let knobs = self.knobs();
        let url = self.url();
        vec![
            ("BITBUCKET_APP_CLIENT_ID", knobs.client_id),
            ("BITBUCKET_APP_CLIENT_SECRET", knobs.client_secret),
            ("BITBUCKET_APP_API_BASE", format!("{url}/2.0")),
            (
                "BITBUCKET_APP_TOKEN_URL",
                format!("{url}/site/oauth2/access_token"),
            ),
            ("SNYK_TOKEN", knobs.snyk_token),
            ("SNYK_API", format!("{url}/v1")),
        ]
    }

    /// A `BITBUCKET_APP_CREDENTIALS_FILE` for the workspace-owned consumers (`knobs.consumers`); with
    /// `named`, each lists the workspaces it owns, else each lists them itself.
    pub fn credentials_file(&self, named: bool) -> String {
        let state = self.app.0.lock();
        let knobs = &state.knobs;
        let mut file = String::new();
        for consumer in 0..knobs.consumers {
            let (id, secret) = knobs.consumer(consumer);
            file.push_str(&format!(
                "[[consumer]]\nclient_id = \"{id}\"\nclient_secret = \"{secret}\"\n"
            ));
            if named {
                let owned: Vec<String> = (0..state.tenant.len())
                    .filter(|w| knobs.sees(Some(consumer), *w))
                    .map(|w| format!("\"{}\"", state.tenant[w].slug))
                    .collect();
                file.push_str(&format!("workspaces = [{}]\n", owned.join(", ")));
            }
            file.push('\n');
        }
        file
    }

    /// [`Sandbox::env`] for a tenant of workspace-owned consumers: the credentials file at `path` instead of
    /// the single pair, and every Snyk token.
    pub fn env_with_credentials_file(&self, path: &std::path::Path) -> Vec<(&'static str, String)> {
        let knobs = self.knobs();
        let mut env: Vec<_> = self
            .env()
            .into_iter()
            .filter(|(k, _)| !k.starts_with("BITBUCKET_APP_CLIENT_"))
            .collect();
        env.push(("BITBUCKET_APP_CREDENTIALS_FILE", path.display().to_string()));
        if !knobs.snyk_tokens.is_empty() {
            env.push(("SNYK_TOKENS", knobs.snyk_tokens.join(",")));
        }
        env
    }

    /// Revokes workspace-owned consumer `index`: its secret and every token it was issued are refused.
    pub fn revoke_consumer(&self, index: usize) {
        self.app.0.lock().knobs.revoked_consumers.push(index);
    }

    pub fn stats(&self) -> Stats {
        self.app.0.lock().stats(std::time::Instant::now())
    }

    pub fn knobs(&self) -> Knobs {
        self.app.0.lock().knobs.clone()
    }

    /// Changes behaviour knobs at once (tenant knobs only apply at start).
    pub fn update(&self, change: impl FnOnce(&mut Knobs)) {
        change(&mut self.app.0.lock().knobs);
    }

    /// Changes the tenant between runs (repositories added, deleted, renamed, branches changed); the full
    /// names of the repositories added.
    pub fn change_tenant(&self, change: &changes::TenantChange) -> Result<Vec<String>, String> {
        changes::apply(&mut self.app.0.lock(), change)
    }

    /// Applies [`changes::drift`]: `counts` repositories added, deleted, renamed and re-branched; the
    /// change applied.
    pub fn drift(&self, counts: [usize; 4]) -> changes::TenantChange {
        let mut state = self.app.0.lock();
        let change = changes::drift(&state, counts);
        changes::apply(&mut state, &change).expect("a drift names what exists");
        change
    }

    /// Every Bearer token issued so far stops working.
    pub fn revoke_tokens(&self) -> usize {
        revoke(&mut self.app.0.lock())
    }

    /// The generated tenant, with each repository's poison, as `/_sandbox/truth` serves it.
    pub fn truth(&self) -> Value {
        json!(self.app.0.lock().tenant)
    }

    /// Every project of every org: its target (`workspace/slug`), its branch, and the tags and attributes
    /// set on it.
    pub fn project_metadata(&self) -> Vec<(String, Option<String>, Metadata)> {
        let state = self.app.0.lock();
        let now = std::time::Instant::now();
        state
            .orgs
            .iter()
            .flat_map(|org| projects::rows(&state, &org.id, now))
            .map(|row| {
                let meta = state.metadata.get(&row.id).cloned().unwrap_or_default();
                (row.target, row.branch, meta)
            })
            .collect()
    }

    /// The branches of `workspace/slug`, as its `refs/branches` lists them (none for an unknown one).
    pub fn branches(&self, full_name: &str) -> Vec<String> {
        let state = self.app.0.lock();
        let Some((ws, slug)) = full_name.split_once('/') else {
            return Vec::new();
        };
        state
            .repo(ws, slug)
            .map(|(_, r)| r.branches())
            .unwrap_or_default()
    }

    /// Snyk orgs in the group, as the sandbox holds them.
    pub fn orgs(&self) -> Vec<state::Org> {
        self.app.0.lock().orgs.clone()
    }
}

fn revoke(state: &mut state::State) -> usize {
    state
        .tokens
        .values_mut()
        .filter(|t| !t.revoked)
        .map(|t| t.revoked = true)
        .count()
}

fn router(app: App) -> Router {
    let apis = Router::new()
        .route("/site/oauth2/access_token", post(bitbucket::token))
        .route("/2.0/user/workspaces", get(bitbucket::user_workspaces))
        .route("/2.0/workspaces", get(bitbucket::workspaces))
        .route("/2.0/workspaces/{workspace}", get(bitbucket::workspace))
        .route(
            "/2.0/repositories/{workspace}",
            get(bitbucket::repositories),
        )
        .route(
            "/2.0/repositories/{workspace}/{repo_slug}",
            get(bitbucket::repository),
        )
        .route(
            "/2.0/repositories/{workspace}/{repo_slug}/refs/branches",
            get(bitbucket::branches),
        )
        .route("/v1/group/{group_id}/orgs", get(snyk::group_orgs))
        .route("/v1/org", post(snyk::create_org))
        .route("/v1/org/{org_id}/integrations", get(snyk::integrations))
        .route(
            "/v1/org/{org_id}/integrations/{kind}",
            get(snyk::integration),
        )
        .route(
            "/v1/org/{org_id}/notification-settings",
            axum::routing::put(snyk::notification_settings),
        )
        .route(
            "/v1/org/{org_id}/integrations/{integration_id}/import",
            post(snyk::import),
        )
        .route(
            "/v1/org/{org_id}/integrations/{integration_id}/import/{job_id}",
            get(snyk::job),
        )
        .route("/rest/orgs/{org_id}/targets", get(rest::targets))
        .route("/rest/orgs/{org_id}/projects", get(projects::projects))
        .route(
            "/rest/orgs/{org_id}/projects/{project_id}",
            axum::routing::delete(projects::delete).patch(metadata::patch),
        )
        .route(
            "/v1/org/{org_id}/project/{project_id}/deactivate",
            post(projects::deactivate),
        )
        .route(
            "/v1/org/{org_id}/project/{project_id}/activate",
            post(projects::activate),
        )
        .route(
            "/v1/org/{org_id}/project/{project_id}/tags",
            post(metadata::v1_add_tag),
        )
        .route(
            "/v1/org/{org_id}/project/{project_id}/tags/remove",
            post(metadata::v1_remove_tag),
        )
        .route(
            "/v1/org/{org_id}/project/{project_id}/attributes",
            post(metadata::v1_attributes),
        )
        .route(
            "/v1/org/{org_id}/project/{project_id}/ignores",
            get(legacy::list),
        )
        .route(
            "/v1/org/{org_id}/project/{project_id}/ignore/{issue_id}",
            post(legacy::add),
        )
        .route_layer(middleware::from_fn_with_state(app.clone(), gate));
    let admin = Router::new()
        .route("/_sandbox/stats", get(admin_stats))
        .route("/_sandbox/truth", get(admin_truth))
        .route("/_sandbox/revoke-tokens", post(admin_revoke))
        .route("/_sandbox/tenant", post(admin_change_tenant))
        .route("/_sandbox/knobs", get(admin_knobs).patch(admin_patch_knobs));
    apis.merge(admin).fallback(no_api).with_state(app)
}

/// Counts the request, then applies latency, the rate limits and fault injection, in that order.
async fn gate(
    State(app): State<App>,
    matched: MatchedPath,
    request: Request,
    next: Next,
) -> Response {
    let path = matched.as_str();
    let api = if path.starts_with("/2.0/") {
        Some("bitbucket")
    } else if path.starts_with("/v1/") || path.starts_with("/rest/") {
        Some("snyk")
    } else {
        None
    };
    let latency = {
        let mut state = app.0.lock();
        *state
            .counters
            .requests
            .entry(format!("{} {path}", request.method()))
            .or_default() += 1;
        Duration::from_millis(state.knobs.latency_ms)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let refused = {
        let mut guard = app.0.lock();
        let state = &mut *guard;
        let now = std::time::Instant::now();
        let authorization = request
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok());
        // Each consumer acts as its own user, and each Snyk token is limited on its own.
        let limited = match api {
            Some("bitbucket") => {
                let consumer = state.bearer_consumer(authorization);
                let key = state.consumer_key(consumer);
                *state.counters.bitbucket_by_consumer.entry(key).or_default() += 1;
                state.bitbucket_window.entry(consumer).or_default().take(
                    state.knobs.bitbucket_rate_limit,
                    Duration::from_secs(state.knobs.bitbucket_window_secs),
                    now,
                )
            }
            Some(_) => {
                let token = authorization
                    .and_then(|h| h.strip_prefix("token "))
                    .and_then(|t| state.knobs.snyk_token_index(t.trim()));
                if let Some(n) = token {
                    *state
                        .counters
                        .snyk_by_token
                        .entry(format!("token-{n}"))
                        .or_default() += 1;
                }
                state.snyk_window.entry(token).or_default().take(
                    state.knobs.snyk_rate_limit,
                    Duration::from_secs(state.knobs.snyk_window_secs),
                    now,
                )
            }
            None => Ok(()),
        };
        match limited {
            Err(wait) => {
                *state
                    .counters
                    .rate_limited
                    .entry(api.unwrap_or("token"))
                    .or_default() += 1;
                Some(too_many(api, wait, &state.knobs))
            }
            Ok(()) if state.knobs.fault_rate > 0.0 && state.rng.unit() < state.knobs.fault_rate => {
                state.counters.server_errors += 1;
                let status = [
                    StatusCode::INTERNAL_SERVER_ERROR,
                    StatusCode::BAD_GATEWAY,
                    StatusCode::SERVICE_UNAVAILABLE,
                ][state.rng.below(3)];
                Some(server_error(api, status))
            }
            Ok(()) => None,
        }
    };
    if let Some(response) = refused {
        return response;
    }
    let write = api == Some("snyk") && request.method() == axum::http::Method::POST;
    let own_url = format!("{}{}", base_url(request.headers()), request.uri());
    let response = next.run(request).await;
    let (loop_pages, padding) = {
        let state = app.0.lock();
        (state.knobs.loop_pages, state.knobs.padding_bytes)
    };
    if api == Some("bitbucket") && (loop_pages || padding > 0) {
        return misbehave(response, &own_url, loop_pages, padding).await;
    }
    let mut state = app.0.lock();
    let ghost = write
        && response.status().is_success()
        && state.knobs.ghost_rate > 0.0
        && state.rng.unit() < state.knobs.ghost_rate;
    if !ghost {
        return response;
    }
    // It happened; the client is told it failed.
    state.counters.ghost_writes += 1;
    state.counters.server_errors += 1;
    server_error(api, StatusCode::BAD_GATEWAY)
}

/// A Bitbucket list answer as a broken server would send it: naming itself as `next`, or padded.
async fn misbehave(
    response: Response,
    own_url: &str,
    loop_pages: bool,
    padding: usize,
) -> Response {
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let Ok(mut json) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    };
    if loop_pages && json.get("values").is_some() {
        json["next"] = json!(own_url);
    }
    if padding > 0 {
        json["padding"] = json!("x".repeat(padding));
    }
    let mut response = Json(json).into_response();
    *response.status_mut() = parts.status;
    response
}

fn too_many(api: Option<&str>, wait: Duration, knobs: &Knobs) -> Response {
    let mut response = match api {
        Some("snyk") => snyk::error(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests, please try again later",
        ),
        _ if knobs.plain_text_429 => (
            StatusCode::TOO_MANY_REQUESTS,
            "Rate limit for this resource has been exceeded",
        )
            .into_response(),
        _ => bitbucket::error(
            StatusCode::TOO_MANY_REQUESTS,
            "Rate limit for this resource has been exceeded",
        ),
    };
    if !knobs.omit_retry_after {
        // Whole seconds, rounded up, so a client that waits exactly this long is let in.
        let seconds = wait.as_millis().div_ceil(1000).max(1);
        if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(RETRY_AFTER, value);
        }
    }
    response
}

fn server_error(api: Option<&str>, status: StatusCode) -> Response {
    match api {
        Some("snyk") => (status, Json(json!({"statusCode": status.as_u16(), "error": {"message": "Error calling Snyk api"}})))
            .into_response(),
        _ => bitbucket::error(status, "Something went wrong"),
    }
}

async fn no_api() -> Response {
    bitbucket::error(StatusCode::NOT_FOUND, "There is no API hosted at this URL.")
}

async fn admin_stats(State(app): State<App>) -> Json<Stats> {
    Json(app.0.lock().stats(std::time::Instant::now()))
}

async fn admin_truth(State(app): State<App>) -> Json<Value> {
    Json(json!(app.0.lock().tenant))
}

async fn admin_revoke(State(app): State<App>) -> Json<Value> {
    Json(json!({"revoked": revoke(&mut app.0.lock())}))
}

async fn admin_change_tenant(
    State(app): State<App>,
    Json(change): Json<changes::TenantChange>,
) -> Response {
    match changes::apply(&mut app.0.lock(), &change) {
        Ok(added) => Json(json!({"added": added})).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, Json(json!({"error": e}))).into_response(),
    }
}

async fn admin_knobs(State(app): State<App>) -> Json<Knobs> {
    Json(app.0.lock().knobs.clone())
}

/// Merges a partial knobs object into the current knobs.
async fn admin_patch_knobs(State(app): State<App>, Json(patch): Json<Value>) -> Response {
    let mut state = app.0.lock();
    let mut current = json!(state.knobs);
    let (Value::Object(target), Value::Object(changes)) = (&mut current, patch) else {
        return (
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object of knobs",
        )
            .into_response();
    };
    target.extend(changes);
    match serde_json::from_value::<Knobs>(current) {
        Ok(knobs) => {
            state.knobs = knobs.clone();
            Json(knobs).into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("invalid knobs: {e}")).into_response(),
    }
}

/// `http://host:port` as the client addressed us, for absolute links.
pub(crate) fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}
