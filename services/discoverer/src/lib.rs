//! The discoverer service: lists Bitbucket workspaces and repositories and publishes them for the other stages.

mod backlog;
mod handler;

use std::sync::Arc;

pub use backlog::{Admission, Backlog};
use bb2snyk_bitbucket::{BitbucketError, RepoFilter, Tenant};
use bb2snyk_broker::Stage;
use bb2snyk_ledger::Ledger;
use bb2snyk_service::{CancellationToken, Infrastructure, ServiceError};
use bb2snyk_settings::Settings;
use bb2snyk_store::Store;
pub use handler::Discoverer;

/// Proves the Bitbucket credentials, then serves the discoverer's queue until `shutdown`.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<(), ServiceError> {
    bb2snyk_service::supervise("discoverer", &shutdown, || {
        serve(&settings, shutdown.clone())
    })
    .await
}

/// One life of the service, from connecting to a clean stop or a failure.
async fn serve(settings: &Settings, shutdown: CancellationToken) -> Result<(), ServiceError> {
    let infrastructure = Infrastructure::connect(settings, "discoverer").await?;
    let discoverer = discoverer(
        settings,
        infrastructure.http.clone(),
        infrastructure.store.clone(),
    )?;
    prove(&discoverer.bitbucket).await?;
    let broker = infrastructure.broker(settings, "discoverer").await?;
    let discoverer = with_backlog(discoverer, Arc::new(broker.clone()), settings);
    tracing::info!(
        credentials = discoverer.bitbucket.accounts().len(),
        "discoverer ready"
    );
    infrastructure
        .serve(&broker, &stages(discoverer), settings, &shutdown)
        .await
}

/// Paging that waits while the importer's queue holds more than `discovery.max_backlog` messages.
pub fn with_backlog(
    discoverer: Discoverer,
    broker: Arc<dyn bb2snyk_broker::Broker>,
    settings: &Settings,
) -> Discoverer {
    Discoverer {
        backlog: Some(Backlog::new(
            broker,
            settings.backlog.limit,
            settings.backlog.pause,
        )),
        ..discoverer
    }
}

/// The discoverer's queue, four deliveries (pages) at a time.
pub fn stages(discoverer: Discoverer) -> Vec<Stage> {
    vec![Stage {
        queue: bb2snyk_messages::DISCOVERER,
        handler: Arc::new(discoverer),
        concurrency: 4,
    }]
}

/// Signs in with every credential. One refused of several is logged, and its workspaces' messages are
/// parked naming it while the others go on; when none works the service stops (exit 3).
pub async fn prove(tenant: &Tenant) -> Result<(), ServiceError> {
    let mut failures = tenant.sign_in().await;
    if failures.len() == tenant.accounts().len() && !failures.is_empty() {
        return Err(bitbucket_failure(failures.swap_remove(0)));
    }
    for e in &failures {
        tracing::error!(error = %e, "a Bitbucket credential could not sign in; if it stays so, its workspaces' messages are parked naming it");
    }
    Ok(())
}

/// Credential problems exit 3, everything else (network, Bitbucket down) exits 4.
pub fn bitbucket_failure(e: BitbucketError) -> ServiceError {
    if e.is_credentials() {
        ServiceError::Credentials(e.to_string())
    } else {
        ServiceError::Unavailable(e.to_string())
    }
}

/// The discoverer's handler, on Redis for a fleet or on an in-process store for `bb2snyk run`.
pub fn discoverer(
    settings: &Settings,
    http: reqwest::Client,
    store: Store,
) -> Result<Discoverer, ServiceError> {
    Ok(Discoverer {
        filter: RepoFilter::new(&settings.discovery),
        policy: std::sync::Arc::new(bb2snyk_policy::Policy::from_settings(settings)?),
        backlog: None,
        bitbucket: Tenant::for_stage(settings, http, Some(store.clone()))?,
        ledger: Ledger::new(store).keeping_runs(settings.redis.run_ttl),
    })
}
