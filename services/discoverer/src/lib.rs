//! The discoverer service: lists Bitbucket workspaces and repositories and publishes them for the other stages.

use bb2snyk_bitbucket::{Bitbucket, BitbucketError};
use bb2snyk_service::{CancellationToken, Infrastructure, ServiceError};
use bb2snyk_settings::Settings;

/// Connects to RabbitMQ and Redis, proves the Bitbucket credentials, and serves until `shutdown` is cancelled.
///
/// The stage's handlers arrive with the pipeline issue; until then the service proves its configuration,
/// its connections and its credentials, then waits.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<(), ServiceError> {
    let infrastructure = Infrastructure::connect(&settings, "discoverer").await?;
    let http = bb2snyk_http::client(&settings.http)
        .map_err(|e| ServiceError::Unavailable(format!("cannot build the HTTP client: {e}")))?;
    let bitbucket = Bitbucket::from_settings(&settings, http, Some(infrastructure.store.clone()))?;
    bitbucket
        .credential()
        .authorization()
        .await
        .map_err(bitbucket_failure)?;
    tracing::info!(
        credential = bitbucket.credential().what(),
        "discoverer ready"
    );
    shutdown.cancelled().await;
    infrastructure.close().await;
    Ok(())
}

/// Credential problems exit 3, everything else (network, Bitbucket down) exits 4.
fn bitbucket_failure(e: BitbucketError) -> ServiceError {
    if e.is_credentials() {
        ServiceError::Credentials(e.to_string())
    } else {
        ServiceError::Unavailable(e.to_string())
    }
}
