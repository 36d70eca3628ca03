//! The Snyk v1 API for bb2snyk, authenticated with `Authorization: token <SNYK_TOKEN>`.

use std::time::Duration;

use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

/// The most orgs a page of `/group/{id}/orgs` holds.
const ORGS_PER_PAGE: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum SnykError {
    #[error(
        "Snyk rejected SNYK_TOKEN (401 Not authorised): set a valid API token with admin rights on the group"
    )]
    Unauthorized,
    #[error("Snyk: {message} ({status})")]
    Rejected { status: StatusCode, message: String },
    #[error("Snyk's rate limit was reached; retry after {retry_after:?}")]
    RateLimited { retry_after: Option<Duration> },
    #[error("Snyk answered {status}; this is usually passing, and is retried")]
    Server { status: StatusCode },
    #[error("cannot reach Snyk: {0}")]
    Network(String),
}

#[derive(Debug, Clone, Deserialize)]
pub struct OrgSummary {
    pub id: String,
    pub name: String,
    pub slug: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    api_base: String,
    token: SecretString,
}

impl Client {
    pub fn new(http: reqwest::Client, api_base: &Url, token: SecretString) -> Self {
        Self {
            http,
            api_base: api_base.as_str().trim_end_matches('/').to_owned(),
            token,
        }
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path_and_query: &str,
    ) -> Result<T, SnykError> {
        let url = format!("{}{path_and_query}", self.api_base);
        let response = self
            .http
            .get(&url)
            .header(
                "authorization",
                format!("token {}", self.token.expose_secret()),
            )
            .send()
            .await
            .map_err(|e| SnykError::Network(e.to_string()))?;
        let status = response.status();
        tracing::debug!(%url, %status, "snyk GET");
        let retry_after = bb2snyk_http::retry_after(response.headers());
        let text = response
            .text()
            .await
            .map_err(|e| SnykError::Network(e.to_string()))?;
        match status {
            s if s.is_success() => serde_json::from_str(&text).map_err(|e| SnykError::Rejected {
                status,
                message: format!("unexpected body ({e})"),
            }),
            StatusCode::UNAUTHORIZED => Err(SnykError::Unauthorized),
            StatusCode::TOO_MANY_REQUESTS => Err(SnykError::RateLimited { retry_after }),
            s if s.is_server_error() => Err(SnykError::Server { status }),
            _ => Err(SnykError::Rejected {
                status,
                message: message_of(&text),
            }),
        }
    }

    /// Every org in the group: pages of 100 until a short one, as the API has no next link.
    pub async fn group_orgs(&self, group_id: &str) -> Result<Vec<OrgSummary>, SnykError> {
        #[derive(Deserialize)]
        struct Page {
            orgs: Vec<OrgSummary>,
        }
        let group: String = url::form_urlencoded::byte_serialize(group_id.as_bytes()).collect();
        let mut all = Vec::new();
        for page in 1.. {
            let batch: Page = self
                .get(&format!(
                    "/group/{group}/orgs?perPage={ORGS_PER_PAGE}&page={page}"
                ))
                .await?;
            let short = batch.orgs.len() < ORGS_PER_PAGE;
            all.extend(batch.orgs);
            if short {
                break;
            }
        }
        Ok(all)
    }
}

/// The human part of a Snyk error body, whichever of its shapes it has.
fn message_of(body: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    value["message"]
        .as_str()
        .or_else(|| value["error"]["message"].as_str())
        .or_else(|| value["error"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| body.chars().take(200).collect())
}
