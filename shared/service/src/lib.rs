//! The frame around every bb2snyk service: read `--config`, load and check settings, start logging, turn
//! SIGTERM and Ctrl-C into a cancellation, run the stage, and exit with the documented code.

pub mod endpoints;

use std::{future::Future, path::PathBuf, process::ExitCode, sync::Arc};

use bb2snyk_broker::{AmqpBroker, BrokerError, Reconnect, RetryPolicy, Stage, Topology};
use bb2snyk_settings::{ConfigError, Need, Settings, Sources};
use bb2snyk_store::{Store, StoreError};
use clap::Parser;
pub use tokio_util::sync::CancellationToken;

/// Exit codes shared by every bb2snyk binary, the services and the CLI (documented in the README and docs/commands.md).
pub mod exit {
    /// Some targets failed or were parked.
    pub const FAILURES: u8 = 1;
    /// Missing or malformed configuration.
    pub const CONFIG: u8 = 2;
    /// Bitbucket or Snyk rejected the credentials.
    pub const CREDENTIALS: u8 = 3;
    /// RabbitMQ, Redis, Bitbucket or Snyk could not be reached.
    pub const UNAVAILABLE: u8 = 4;
    /// A sync stopped at its brake: it would have retired more of an org than the settings allow.
    pub const BRAKED: u8 = 5;
    /// A report could not read all of the tenant (a workspace's listing, an org's projects).
    pub const INCOMPLETE: u8 = 6;
}

/// Why a service (or a CLI command) stopped before its time; each maps to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Credentials(String),
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ServiceError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) => exit::CONFIG,
            Self::Credentials(_) => exit::CREDENTIALS,
            Self::Broker(_) | Self::Store(_) | Self::Unavailable(_) => exit::UNAVAILABLE,
        }
    }
}

#[derive(Debug, Parser)]
struct Args {
    /// TOML settings file (see config/example.toml); also BB2SNYK_CONFIG.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

/// Runs a service to completion. `needs` are the settings without defaults this service cannot start without.
pub async fn main<F, Fut>(
    name: &'static str,
    about: &'static str,
    needs: &[Need],
    run: F,
) -> ExitCode
where
    F: FnOnce(Settings, CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), ServiceError>>,
{
    let command = <Args as clap::CommandFactory>::command()
        .name(name)
        .about(about)
        .version(env!("CARGO_PKG_VERSION"));
    let args = match command
        .try_get_matches()
        .and_then(|m| <Args as clap::FromArgMatches>::from_arg_matches(&m))
    {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::CONFIG } else { 0 });
        }
    };
    bb2snyk_telemetry::init();
    let settings = match bb2snyk_settings::load(&Sources::from_process(args.config))
        .and_then(|s| s.require(needs).map(|()| s))
    {
        Ok(s) => s,
        Err(e) => return fail(name, &ServiceError::Config(e)),
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    if let Some(listen) = settings.metrics.listen
        && let Err(e) = serve_endpoints(listen, settings.metrics.fixed, &shutdown).await
    {
        let why = format!(
            "cannot serve /metrics on {listen}: {e}; set BB2SNYK__METRICS__LISTEN to a free host:port (or empty to turn it off)"
        );
        return fail(name, &ServiceError::Unavailable(why));
    }
    tracing::info!(
        service = name,
        version = env!("CARGO_PKG_VERSION"),
        "starting"
    );
    for warning in settings.warnings() {
        tracing::warn!(service = name, "{warning}");
    }
    match run(settings, shutdown).await {
        Ok(()) => {
            tracing::info!(service = name, "stopped");
            ExitCode::SUCCESS
        }
        Err(e) => fail(name, &e),
    }
}

fn fail(name: &str, error: &ServiceError) -> ExitCode {
    // One plain line on stderr whatever the log format, so a person sees it first.
    eprintln!("{name}: {error}");
    tracing::error!(service = name, error = %error, "exiting");
    ExitCode::from(error.exit_code())
}

/// Serves the endpoints on `listen`. The default port taken (a second replica on one host) gives way to a
/// free port on the same address, announced in the log; a port that was asked for (`fixed`) does not.
async fn serve_endpoints(
    listen: std::net::SocketAddr,
    fixed: bool,
    shutdown: &CancellationToken,
) -> std::io::Result<std::net::SocketAddr> {
    match endpoints::serve(listen, shutdown.clone()).await {
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && !fixed => {
            let bound =
                endpoints::serve(std::net::SocketAddr::new(listen.ip(), 0), shutdown.clone())
                    .await?;
            tracing::warn!(
                %bound,
                "the default endpoints port {listen} is taken (another replica on this host?): serving /metrics, \
                 /healthz and /readyz on {bound} instead; set BB2SNYK__METRICS__LISTEN per replica for a fixed port"
            );
            Ok(bound)
        }
        served => served,
    }
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutdown requested");
    shutdown.cancel();
}

/// Broker failures lapin could not recover from, in a row, before the service gives up (exit 4).
const RESTARTS: u32 = 5;
/// Serving this long before a failure counts as healthy: the failure starts a new row.
const HEALTHY: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs `serve` until it returns without error, rebuilding everything after a broker failure that lapin's
/// own recovery could not mend (a hard connection error, say), with backoff. An unreachable broker or any
/// other error ends the service with its exit code, as does the sixth failure in a row.
pub async fn supervise<F, Fut>(
    service: &str,
    shutdown: &CancellationToken,
    mut serve: F,
) -> Result<(), ServiceError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), ServiceError>>,
{
    let mut failures = 0;
    loop {
        let started = tokio::time::Instant::now();
        match serve().await {
            Err(ServiceError::Broker(e @ (BrokerError::Amqp(_) | BrokerError::Stalled(_))))
                if failures < RESTARTS && !shutdown.is_cancelled() =>
            {
                // A service that served for a while before failing starts a new row of failures.
                if started.elapsed() >= HEALTHY {
                    failures = 0;
                }
                let wait = bb2snyk_http::backoff(failures, std::time::Duration::from_secs(30));
                tracing::warn!(service, error = %e, ?wait, "the broker connection failed; starting again");
                failures += 1;
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.cancelled() => return Ok(()),
                }
            }
            other => return other,
        }
    }
}

/// The RabbitMQ connection, the Redis store and the HTTP client every stage works with.
#[derive(Debug)]
pub struct Infrastructure {
    pub amqp: Arc<lapin::Connection>,
    /// How lapin recovers `amqp`; serving stops when a recovery outlasts it.
    reconnect: Reconnect,
    pub store: Store,
    /// The process's one HTTP client for Bitbucket and Snyk; clone it.
    pub http: reqwest::Client,
}

/// The queues, retry tiers and parking of the pipeline, as settings name them.
pub fn topology(settings: &Settings) -> Topology {
    Topology {
        prefix: settings.amqp.prefix.clone(),
        queues: bb2snyk_messages::QUEUES
            .iter()
            .map(|q| (*q).to_owned())
            .collect(),
        retry: RetryPolicy {
            tiers: settings.pipeline.retry_tiers.clone(),
            max_attempts: settings.pipeline.max_attempts,
            max_body: settings.pipeline.max_message_bytes,
            // Job polls come back when a job is expected done, not at the next retry tier.
            delayed: vec![bb2snyk_messages::IMPORTER_POLLS.to_owned()],
        },
        expires: settings.amqp.expires,
    }
}

impl Infrastructure {
    pub async fn connect(settings: &Settings, service: &str) -> Result<Self, ServiceError> {
        let reconnect = Reconnect {
            attempts: settings.amqp.connect_attempts as usize,
            ..Reconnect::default()
        };
        // The prefix tells deployments (and tests) apart in the management UI.
        let name = format!("{service}/{}", settings.amqp.prefix);
        let amqp = bb2snyk_broker::connect(&settings.amqp.urls, &name, reconnect).await?;
        let store = Store::connect(&settings.redis.url, &settings.redis.prefix).await?;
        let amqp = Arc::new(amqp);
        endpoints::attach(&amqp, &store);
        tracing::info!(
            amqp = %bb2snyk_settings::redact_urls(&settings.amqp.urls),
            redis = %bb2snyk_settings::redact_url(&settings.redis.url),
            "connected to RabbitMQ and Redis"
        );
        let http = bb2snyk_http::client(&settings.http)
            .map_err(|e| ServiceError::Unavailable(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            amqp,
            reconnect: reconnect.per_connection(settings.amqp.urls.len()),
            store,
            http,
        })
    }

    /// The pipeline's broker, its topology declared.
    pub async fn broker(
        &self,
        settings: &Settings,
        service: &str,
    ) -> Result<AmqpBroker, ServiceError> {
        Ok(AmqpBroker::new(self.amqp.clone(), topology(settings), service).await?)
    }

    /// Serves `stages` on `broker` until `shutdown` or a failure, then closes the connection.
    pub async fn serve(
        self,
        broker: &AmqpBroker,
        stages: &[Stage],
        settings: &Settings,
        shutdown: &CancellationToken,
    ) -> Result<(), ServiceError> {
        let served = tokio::select! {
            served = bb2snyk_broker::serve_stages(broker, stages, shutdown, settings.pipeline.drain) => served,
            stalled = bb2snyk_broker::stalled(&self.amqp, self.reconnect.budget()) => Err(stalled),
        };
        self.close().await;
        Ok(served?)
    }

    /// Closes the RabbitMQ connection, waiting 5 s at most: a connection whose recovery hangs may never answer.
    pub async fn close(self) {
        let closing = self.amqp.close(200, "shutdown".into());
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), closing).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn broker_failure() -> ServiceError {
        ServiceError::Broker(BrokerError::Amqp(
            lapin::ErrorKind::ChannelsLimitReached.into(),
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn a_broker_failure_restarts_the_service_until_it_serves() {
        let calls = AtomicU32::new(0);
        let result = supervise("test", &CancellationToken::new(), || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0..3 => Err(broker_failure()),
                _ => Ok(()),
            }
        })
        .await;
        assert!(result.is_ok());
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn the_sixth_failure_in_a_row_ends_the_service_with_exit_4() {
        let calls = AtomicU32::new(0);
        let result = supervise("test", &CancellationToken::new(), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(broker_failure())
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), RESTARTS + 1);
        assert_eq!(result.map_err(|e| e.exit_code()), Err(exit::UNAVAILABLE));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_after_healthy_service_start_a_new_row() {
        let calls = AtomicU32::new(0);
        let result = supervise("test", &CancellationToken::new(), || async {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            if n == 12 {
                return Ok(());
            }
            // Every third life is a long healthy one.
            if n % 3 == 2 {
                tokio::time::sleep(HEALTHY).await;
            }
            Err(broker_failure())
        })
        .await;
        assert!(result.is_ok(), "never {RESTARTS} failures in a row");
        assert_eq!(calls.load(Ordering::SeqCst), 13);
    }

    #[tokio::test(start_paused = true)]
    async fn other_errors_and_shutdown_are_not_restarted() {
        let calls = AtomicU32::new(0);
        let result = supervise("test", &CancellationToken::new(), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(ServiceError::Unavailable("redis".into()))
        })
        .await;
        assert!(matches!(result, Err(ServiceError::Unavailable(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let cancelled = CancellationToken::new();
        cancelled.cancel();
        let result = supervise("test", &cancelled, || async {
            Err::<(), _>(broker_failure())
        })
        .await;
        assert!(
            result.is_err(),
            "a failure during shutdown is reported, not retried"
        );
    }
}
