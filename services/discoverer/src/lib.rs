//! The discoverer service: lists Bitbucket workspaces and repositories and publishes them for the other stages.

use bb2snyk_service::{CancellationToken, Infrastructure, ServiceError};
use bb2snyk_settings::Settings;

/// Connects to RabbitMQ and Redis and serves until `shutdown` is cancelled.
///
/// The stage's handlers arrive with the pipeline issue; until then the service proves its configuration and
/// its connections, then waits.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<(), ServiceError> {
    let infrastructure = Infrastructure::connect(&settings, "discoverer").await?;
    tracing::info!("discoverer ready");
    shutdown.cancelled().await;
    infrastructure.close().await;
    Ok(())
}
