//! The importer service: imports each repository into Snyk and follows its import job.

mod handler;
mod hints;
mod schedule;
mod tuning;

use std::sync::Arc;

use bb2snyk_broker::Stage;
use bb2snyk_ledger::Ledger;
use bb2snyk_service::{CancellationToken, Infrastructure, ServiceError};
use bb2snyk_settings::Settings;
use bb2snyk_snyk::{Client as Snyk, ImportOptions};
use bb2snyk_store::Store;
pub use handler::{Brake, Importer, Policy};
pub use hints::Hints;
pub use schedule::{PollTiming, now_ms, wait_until};

/// Serves the importer's queues (import requests, and job polls) with `CONCURRENT_IMPORTS` deliveries in
/// flight on each, until `shutdown`.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<(), ServiceError> {
    bb2snyk_service::supervise("importer", &shutdown, || serve(&settings, shutdown.clone())).await
}

/// One life of the service, from connecting to a clean stop or a failure.
async fn serve(settings: &Settings, shutdown: CancellationToken) -> Result<(), ServiceError> {
    let infrastructure = Infrastructure::connect(settings, "importer").await?;
    let broker = infrastructure.broker(settings, "importer").await?;
    let importer = importer(
        settings,
        infrastructure.http.clone(),
        infrastructure.store.clone(),
    )?;
    // The time since the last sync is the fleet's, not this process's: carried on from the ledger.
    if let Ok(Some(at_ms)) = bb2snyk_ledger::Ledger::new(infrastructure.store.clone())
        .last_sync_success()
        .await
    {
        bb2snyk_telemetry::metrics::synced(at_ms);
    }
    tracing::info!("importer ready");
    let (hints, snyk) = (importer.hints.clone(), importer.snyk.clone());
    // Either queue failing ends this life (and the hints with it); the supervisor starts the next.
    let stop_hints = shutdown.child_token();
    let serving = async {
        let served = infrastructure
            .serve(&broker, &stages(importer, settings), settings, &shutdown)
            .await;
        stop_hints.cancel();
        served
    };
    let (served, ()) = tokio::join!(serving, hints.run(&snyk, &broker, &stop_hints));
    served
}

/// Import requests and job polls, each `import.concurrent_imports` deliveries at a time.
pub fn stages(importer: Importer, settings: &Settings) -> Vec<Stage> {
    let concurrency = u16::try_from(settings.import.concurrent_imports).unwrap_or(u16::MAX);
    let handler: Arc<dyn bb2snyk_broker::Handler> = Arc::new(importer);
    [bb2snyk_messages::IMPORTER, bb2snyk_messages::IMPORTER_POLLS]
        .into_iter()
        .map(|queue| Stage {
            queue,
            handler: handler.clone(),
            concurrency,
        })
        .collect()
}

/// The importer's handler, on Redis for a fleet or on an in-process store for `bb2snyk run` and `import`.
pub fn importer(
    settings: &Settings,
    http: reqwest::Client,
    store: Store,
) -> Result<Importer, ServiceError> {
    let importer = Importer::new(
        Snyk::for_stage(settings, http.clone(), Some(store.clone()))?,
        Ledger::new(store.clone()).keeping_runs(settings.redis.run_ttl),
        ImportOptions::default(),
        Policy {
            requeue_after: settings
                .pipeline
                .retry_tiers
                .first()
                .copied()
                .unwrap_or_default(),
            // An import request lasts at most about two whole-request timeouts.
            import_lock: settings.http.timeout * 2,
            brake: Brake {
                percent: settings.sync.max_retire_percent,
                count: settings.sync.max_retire_count,
            },
            ..Policy::default()
        },
        PollTiming {
            first: settings.import.poll_first,
            floor: settings.import.poll_floor,
            max: settings.import.poll_max,
            growth: f64::from(settings.import.poll_growth_percent) / 100.0,
        },
    )
    .with_hints(settings.import.hint_yield);
    // Only a sync's retirements need Bitbucket; without a credential a sync retires nothing it cannot prove.
    Ok(
        match bb2snyk_bitbucket::Tenant::for_stage(settings, http, Some(store)) {
            Ok(tenant) => importer.with_bitbucket(tenant),
            Err(e) => {
                tracing::warn!(error = %e, "no Bitbucket credential: a sync will retire no project of a repository it cannot confirm gone");
                importer
            }
        },
    )
}
