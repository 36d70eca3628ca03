//! The org-creator service: ensures one Snyk organization per Bitbucket workspace.

mod handler;

use std::sync::Arc;

use bb2snyk_broker::Stage;
use bb2snyk_ledger::Ledger;
use bb2snyk_service::{CancellationToken, Infrastructure, ServiceError};
use bb2snyk_settings::Settings;
use bb2snyk_snyk::Client as Snyk;
use bb2snyk_store::Store;
pub use handler::OrgCreator;

/// Serves the org-creator's queue until `shutdown`.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<(), ServiceError> {
    bb2snyk_service::supervise("org-creator", &shutdown, || {
        serve(&settings, shutdown.clone())
    })
    .await
}

/// One life of the service, from connecting to a clean stop or a failure.
async fn serve(settings: &Settings, shutdown: CancellationToken) -> Result<(), ServiceError> {
    let infrastructure = Infrastructure::connect(settings, "org-creator").await?;
    let broker = infrastructure.broker(settings, "org-creator").await?;
    let creator = org_creator(
        settings,
        infrastructure.http.clone(),
        infrastructure.store.clone(),
    )?;
    tracing::info!("org-creator ready");
    infrastructure
        .serve(&broker, &stages(creator), settings, &shutdown)
        .await
}

/// The org-creator's queue, four workspaces at a time.
pub fn stages(creator: OrgCreator) -> Vec<Stage> {
    vec![Stage {
        queue: bb2snyk_messages::ORG_CREATOR,
        handler: Arc::new(creator),
        concurrency: 4,
    }]
}

/// The org-creator's handler, on Redis for a fleet or on an in-process store for `bb2snyk run`.
pub fn org_creator(
    settings: &Settings,
    http: reqwest::Client,
    store: Store,
) -> Result<OrgCreator, ServiceError> {
    Ok(OrgCreator {
        snyk: Snyk::for_setup_stage(settings, http, Some(store.clone()))?,
        ledger: Ledger::new(store).keeping_runs(settings.redis.run_ttl),
        integration_type: settings.snyk.integration_type.clone(),
        quiet_notifications: settings.snyk.quiet_notifications,
    })
}
