//! Prometheus metrics: every name in one place, recorded through the `metrics` facade (so library code
//! records without plumbing) and rendered as Prometheus text by the service's `/metrics` endpoint.
//! Nothing is recorded until a process installs the recorder; libraries pay nothing in tests.

use std::{sync::OnceLock, time::Duration};

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Messages per queue, type and outcome (`consumed`, `acked`, `retried`, `parked`).
pub const MESSAGES: &str = "bb2snyk_messages_total";
/// Handler time per queue and type, in seconds.
pub const HANDLER_SECONDS: &str = "bb2snyk_handler_duration_seconds";
/// HTTP calls per API (`bitbucket`, `snyk`), endpoint (a path template) and status (`error` when none).
pub const HTTP_REQUESTS: &str = "bb2snyk_http_requests_total";
/// 429 answers per API.
pub const RATE_LIMITED: &str = "bb2snyk_rate_limited_total";
/// Time each request waited for the rate budget, per API, in seconds.
pub const LIMITER_WAIT: &str = "bb2snyk_limiter_wait_seconds";
/// Bitbucket token exchanges (client_credentials grants).
pub const TOKEN_EXCHANGES: &str = "bb2snyk_token_exchanges_total";
/// Token look-ups per result: `hit` (in-process), `shared` (Redis), `miss` (an exchange followed).
pub const TOKEN_CACHE: &str = "bb2snyk_token_cache_total";
/// 1 while Redis is unreachable and this process works from its own state.
pub const REDIS_DEGRADED: &str = "bb2snyk_redis_degraded";
/// Redis commands that failed.
pub const REDIS_FAILURES: &str = "bb2snyk_redis_failures_total";
/// Import jobs requested and not yet finished; sum it over the fleet (a job may finish on another replica).
pub const IMPORT_JOBS_IN_FLIGHT: &str = "bb2snyk_import_jobs_in_flight";
/// 1 while the RabbitMQ connection is up.
pub const AMQP_CONNECTED: &str = "bb2snyk_amqp_connected";
/// When the last sync that changed Snyk (not a dry run) compared a workspace, as Unix seconds, as the
/// ledger says (any replica's); `time() - max(...)` is the time since.
pub const SYNC_LAST_SUCCESS: &str = "bb2snyk_sync_last_success_timestamp_seconds";

/// Redis's memory in use and its `maxmemory` (0: unbounded), in bytes, as a scrape last read them: the
/// ledger must never be evicted, so Redis runs with `noeviction` and an alert fires well before the bound.
pub const REDIS_USED_MEMORY: &str = "bb2snyk_redis_used_memory_bytes";
pub const REDIS_MAX_MEMORY: &str = "bb2snyk_redis_maxmemory_bytes";

/// Import job polls per kind (`first`, `probe`, `hinted`, `safety_net`, `repeat`) and what they found
/// (`done`, `pending`, `failed`).
pub const POLLS: &str = "bb2snyk_polls_total";
/// Listings of an org's new targets asked of Snyk, by result (`told`: of followed jobs done; `nothing`).
pub const LISTINGS: &str = "bb2snyk_listings_total";
/// Import jobs this importer follows for completion hints.
pub const FOLLOWED_JOBS: &str = "bb2snyk_followed_jobs";

/// Every metric name, for docs/operations.md and the dashboard test.
pub const NAMES: [&str; 17] = [
    MESSAGES,
    HANDLER_SECONDS,
    HTTP_REQUESTS,
    RATE_LIMITED,
    LIMITER_WAIT,
    TOKEN_EXCHANGES,
    TOKEN_CACHE,
    REDIS_DEGRADED,
    REDIS_FAILURES,
    IMPORT_JOBS_IN_FLIGHT,
    AMQP_CONNECTED,
    SYNC_LAST_SUCCESS,
    REDIS_USED_MEMORY,
    REDIS_MAX_MEMORY,
    POLLS,
    LISTINGS,
    FOLLOWED_JOBS,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once; the handle renders `/metrics`. `None` when another recorder
/// was installed first.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let buckets = [0.005, 0.025, 0.1, 0.25, 1.0, 2.5, 10.0, 30.0, 120.0];
            let handle = PrometheusBuilder::new()
                .set_buckets(&buckets)
                .ok()?
                .install_recorder()
                .ok()?;
            describe();
            Some(handle)
        })
        .clone()
}

fn describe() {
    describe_counter!(MESSAGES, "messages per queue, type and outcome");
    describe_histogram!(
        HANDLER_SECONDS,
        Unit::Seconds,
        "handler time per queue and type"
    );
    describe_counter!(HTTP_REQUESTS, "HTTP calls per API, endpoint and status");
    describe_counter!(RATE_LIMITED, "429 answers per API");
    describe_histogram!(
        LIMITER_WAIT,
        Unit::Seconds,
        "time each request waited for the rate budget"
    );
    describe_counter!(TOKEN_EXCHANGES, "Bitbucket token exchanges");
    describe_counter!(TOKEN_CACHE, "token look-ups: hit, shared or miss");
    describe_gauge!(REDIS_DEGRADED, "1 while Redis is unreachable");
    describe_counter!(REDIS_FAILURES, "Redis commands that failed");
    describe_gauge!(
        IMPORT_JOBS_IN_FLIGHT,
        "import jobs requested and not finished (sum over the fleet)"
    );
    describe_gauge!(AMQP_CONNECTED, "1 while the RabbitMQ connection is up");
    describe_gauge!(REDIS_USED_MEMORY, "Redis's memory in use, in bytes");
    describe_gauge!(
        REDIS_MAX_MEMORY,
        "Redis's maxmemory, in bytes (0: unbounded)"
    );
    describe_counter!(POLLS, "import job polls per kind and result");
    describe_counter!(
        LISTINGS,
        "listings of an org's new targets per source and result"
    );
    describe_gauge!(FOLLOWED_JOBS, "import jobs this importer follows for hints");
    describe_gauge!(
        SYNC_LAST_SUCCESS,
        "when the last sync that changed Snyk compared a workspace (Unix seconds)"
    );
}

pub fn message(queue: &str, kind: &str, outcome: &'static str) {
    counter!(MESSAGES, "queue" => queue.to_owned(), "type" => kind.to_owned(), "outcome" => outcome)
        .increment(1);
}

pub fn handled(queue: &str, kind: &str, took: Duration) {
    histogram!(HANDLER_SECONDS, "queue" => queue.to_owned(), "type" => kind.to_owned())
        .record(took.as_secs_f64());
}

/// Records one HTTP call to `endpoint` (a path template its caller names, so ids never become label
/// values).
pub fn http_call(api: &'static str, endpoint: &'static str, status: Option<u16>) {
    if status == Some(429) {
        counter!(RATE_LIMITED, "api" => api).increment(1);
    }
    let status = status.map_or_else(|| "error".to_owned(), |s| s.to_string());
    counter!(HTTP_REQUESTS, "api" => api, "endpoint" => endpoint, "status" => status).increment(1);
}

pub fn limiter_waited(api: &'static str, waited: Duration) {
    histogram!(LIMITER_WAIT, "api" => api).record(waited.as_secs_f64());
}

pub fn token_exchanged() {
    counter!(TOKEN_EXCHANGES).increment(1);
}

pub fn token_lookup(result: &'static str) {
    counter!(TOKEN_CACHE, "result" => result).increment(1);
}

pub fn redis_degraded(down: bool) {
    gauge!(REDIS_DEGRADED).set(if down { 1.0 } else { 0.0 });
}

pub fn redis_memory(used: u64, max: u64) {
    gauge!(REDIS_USED_MEMORY).set(used as f64);
    gauge!(REDIS_MAX_MEMORY).set(max as f64);
}

pub fn redis_failed() {
    counter!(REDIS_FAILURES).increment(1);
}

pub fn import_jobs_in_flight(change: f64) {
    gauge!(IMPORT_JOBS_IN_FLIGHT).increment(change);
}

/// A sync that changed Snyk compared a workspace at `at_ms` (Unix milliseconds).
pub fn synced(at_ms: u64) {
    gauge!(SYNC_LAST_SUCCESS).set(at_ms as f64 / 1000.0);
}

pub fn amqp_connected(up: bool) {
    gauge!(AMQP_CONNECTED).set(if up { 1.0 } else { 0.0 });
}

/// One poll of an import job: its kind and what it found.
pub fn polled(kind: &'static str, result: &'static str) {
    counter!(POLLS, "kind" => kind, "result" => result).increment(1);
}

/// One listing of an org's new targets, and whether it told of followed jobs done.
pub fn listed(told: bool) {
    let result = if told { "told" } else { "nothing" };
    counter!(LISTINGS, "result" => result).increment(1);
}

pub fn followed_jobs(count: usize) {
    gauge!(FOLLOWED_JOBS).set(count as f64);
}
