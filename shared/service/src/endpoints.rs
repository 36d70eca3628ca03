//! Every service's own HTTP endpoints: `/metrics` (Prometheus text), `/healthz` (the process answers) and
//! `/readyz` (RabbitMQ connected; Redis state reported). They outlive the service's lives under the
//! supervisor, so readiness follows whichever connection is current.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
};

use axum::{Json, Router, http::StatusCode, response::IntoResponse, routing::get};
use bb2snyk_store::Store;
use bb2snyk_telemetry::metrics;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// What `/readyz` looks at: the process's current connections.
struct Current {
    amqp: Option<Arc<lapin::Connection>>,
    store: Option<Store>,
}

static CURRENT: Mutex<Current> = Mutex::new(Current {
    amqp: None,
    store: None,
});

/// Makes these the connections `/readyz` reports on (each life of a service calls it).
pub fn attach(amqp: &Arc<lapin::Connection>, store: &Store) {
    let mut current = CURRENT.lock().unwrap_or_else(PoisonError::into_inner);
    current.amqp = Some(amqp.clone());
    current.store = Some(store.clone());
}

/// (AMQP connected, Redis degraded), also kept in the gauges.
fn state() -> (bool, bool) {
    let current = CURRENT.lock().unwrap_or_else(PoisonError::into_inner);
    let connected = current
        .amqp
        .as_ref()
        .is_some_and(|c| c.status().connected());
    let degraded = current.store.as_ref().is_some_and(Store::is_degraded);
    metrics::amqp_connected(connected);
    (connected, degraded)
}

/// Binds `listen` and serves until `shutdown`; returns the bound address (a port of 0 picks one).
pub async fn serve(listen: SocketAddr, shutdown: CancellationToken) -> std::io::Result<SocketAddr> {
    let handle = metrics::install();
    metrics::redis_degraded(false);
    metrics::import_jobs_in_flight(0.0);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(move || {
                let handle = handle.clone();
                async move {
                    state();
                    redis_memory().await;
                    handle.map_or_else(String::new, |h| h.render())
                }
            }),
        );
    tokio::spawn(async move {
        let stopped = shutdown.clone();
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stopped.cancelled().await })
            .await
        {
            tracing::warn!(error = %e, "the metrics endpoint stopped");
        }
    });
    tracing::info!(address = %bound, "serving /metrics, /healthz and /readyz");
    Ok(bound)
}

/// Reads Redis's memory into its gauges, once in [`MEMORY_EVERY`] at most and within a second: a scrape
/// never waits on a slow Redis.
async fn redis_memory() {
    static LAST: Mutex<Option<std::time::Instant>> = Mutex::new(None);
    let store = {
        let mut last = LAST.lock().unwrap_or_else(PoisonError::into_inner);
        if last.is_some_and(|at| at.elapsed() < MEMORY_EVERY) {
            return;
        }
        *last = Some(std::time::Instant::now());
        let current = CURRENT.lock().unwrap_or_else(PoisonError::into_inner);
        current.store.clone()
    };
    let Some(store) = store else { return };
    let read = tokio::time::timeout(std::time::Duration::from_secs(1), store.memory_use()).await;
    if let Ok(Ok(Some((used, max)))) = read {
        metrics::redis_memory(used, max);
    }
}

/// How often a scrape reads Redis's memory.
const MEMORY_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

async fn readyz() -> impl IntoResponse {
    let (connected, degraded) = state();
    let body = Json(json!({
        "amqp": if connected { "connected" } else { "disconnected" },
        // Redis down slows nothing that matters: the service works from its own state, so it stays ready.
        "redis": if degraded { "degraded" } else { "ok" },
    }));
    let status = if connected {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body)
}
