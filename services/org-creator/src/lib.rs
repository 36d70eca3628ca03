//! The org-creator service: ensures one Snyk organization per Bitbucket workspace.

use bb2snyk_service::{CancellationToken, Infrastructure, ServiceError};
use bb2snyk_settings::Settings;

/// Connects to RabbitMQ and Redis and serves until `shutdown` is cancelled.
///
/// The stage's handlers arrive with the pipeline issue; until then the service proves its configuration and
/// its connections, then waits.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<(), ServiceError> {
    let infrastructure = Infrastructure::connect(&settings, "org-creator").await?;
    tracing::info!("org-creator ready");
    shutdown.cancelled().await;
    infrastructure.close().await;
    Ok(())
}
