//! The OAuth2 client_credentials exchange with Bitbucket's token endpoint.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::BitbucketError;

/// What Bitbucket documents when a token response leaves `expires_in` out.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(7200);

/// A Bearer token and what came with it. Debug shows neither the token nor anything derived from it.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub secret: SecretString,
    pub lifetime: Duration,
    /// Granted scopes, from `scopes` (before 2026-05) or `scope` (after).
    pub scopes: Vec<String>,
}

/// The OAuth consumer's key and secret.
#[derive(Debug, Clone)]
pub struct Consumer {
    pub client_id: String,
    pub client_secret: SecretString,
}

/// POSTs `grant_type=client_credentials` with Basic auth, and reads either form of the answer.
pub async fn exchange(
    http: &reqwest::Client,
    token_url: &Url,
    consumer: &Consumer,
) -> Result<AccessToken, BitbucketError> {
    #[derive(serde::Deserialize)]
    struct Answer {
        access_token: Option<String>,
        expires_in: Option<u64>,
        scopes: Option<String>,
        scope: Option<String>,
        error: Option<String>,
        error_description: Option<String>,
    }
    let response = http
        .post(token_url.clone())
        .basic_auth(
            &consumer.client_id,
            Some(consumer.client_secret.expose_secret()),
        )
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await;
    bb2snyk_telemetry::metrics::http_call(
        "bitbucket",
        "/site/oauth2/access_token",
        response.as_ref().ok().map(|r| r.status().as_u16()),
    );
    let response = response.map_err(BitbucketError::network)?;
    let status = response.status();
    tracing::debug!(url = %token_url, %status, "bitbucket token exchange");
    if status == StatusCode::TOO_MANY_REQUESTS {
        // Passing: the exchange is tried again after the wait, never parked.
        let retry_after = bb2snyk_http::retry_after(response.headers());
        return Err(BitbucketError::RateLimited { retry_after });
    }
    let text = bb2snyk_http::text(response)
        .await
        .map_err(BitbucketError::body)?;
    let answer: Answer = match serde_json::from_str(&text) {
        Ok(answer) => answer,
        Err(_) if status.is_server_error() => return Err(BitbucketError::Server { status }),
        // The body may hold a token: it is never quoted, only measured.
        Err(_) => {
            return Err(BitbucketError::Unexpected {
                status,
                body: format!(
                    "a token endpoint body that is not JSON ({} bytes, withheld)",
                    text.len()
                ),
            });
        }
    };
    match (status, answer.access_token) {
        (StatusCode::OK, Some(token)) => Ok(AccessToken {
            secret: SecretString::from(token),
            lifetime: answer
                .expires_in
                .filter(|s| *s > 0)
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_TOKEN_LIFETIME),
            scopes: answer
                .scopes
                .or(answer.scope)
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
        }),
        _ => Err(BitbucketError::from_oauth(
            status,
            answer.error.as_deref(),
            answer.error_description.as_deref(),
        )),
    }
}

/// [`exchange`], retrying network failures and 5xx with backoff and jitter until `deadline` is spent.
/// Credential errors are final at once: retrying a wrong secret only locks the consumer out.
pub async fn exchange_patiently(
    http: &reqwest::Client,
    token_url: &Url,
    consumer: &Consumer,
    deadline: Duration,
) -> Result<AccessToken, BitbucketError> {
    let backoff = ExponentialBuilder::default()
        .with_jitter()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .without_max_times()
        .with_total_delay(Some(deadline));
    (|| exchange(http, token_url, consumer))
        .retry(backoff)
        .when(BitbucketError::is_transient)
        .notify(|e, wait| tracing::warn!(error = %e, ?wait, "token exchange failed; retrying"))
        .await
}
