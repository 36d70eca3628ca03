//! Bitbucket Cloud for bb2snyk: the OAuth2 client_credentials exchange, and the 2.0 API's workspace and
//! repository lists, with every failure worded for the person who has to fix it.

mod error;
mod model;

use std::time::Duration;

pub use error::BitbucketError;
pub use model::{Page, Repository, UserWorkspace, Workspace};
use reqwest::{StatusCode, header::HeaderMap};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use url::Url;

/// What Bitbucket documents when a token response leaves `expires_in` out.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(7200);

/// The fields bb2snyk reads from a repository; asking for only these keeps pages small.
pub const REPOSITORY_FIELDS: &str = "next,size,values.slug,values.name,values.full_name,values.mainbranch.name,\
values.parent.full_name,values.project.key,values.workspace.slug,values.updated_on,values.is_private";

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
        .await
        .map_err(BitbucketError::network)?;
    let status = response.status();
    tracing::debug!(url = %token_url, %status, "bitbucket token exchange");
    let text = response.text().await.map_err(BitbucketError::network)?;
    let answer: Answer =
        serde_json::from_str(&text).map_err(|_| BitbucketError::unexpected(status, &text))?;
    match (status, answer.access_token) {
        (StatusCode::OK, Some(token)) => Ok(AccessToken {
            secret: SecretString::from(token),
            lifetime: answer
                .expires_in
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

/// The 2.0 API, authenticated by the token each call is given.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    api_base: String,
}

impl Client {
    pub fn new(http: reqwest::Client, api_base: &Url) -> Self {
        Self {
            http,
            api_base: api_base.as_str().trim_end_matches('/').to_owned(),
        }
    }

    /// The first page of `/user/workspaces`, at the largest page size.
    pub fn user_workspaces_url(&self) -> String {
        format!("{}/user/workspaces?pagelen=100", self.api_base)
    }

    /// The first page of a workspace's repositories, at the largest page size and only the fields we read.
    pub fn repositories_url(&self, workspace: &str) -> String {
        let mut url = format!("{}/repositories/", self.api_base);
        url.extend(url::form_urlencoded::byte_serialize(workspace.as_bytes()));
        url.push_str("?pagelen=100&fields=");
        url.extend(url::form_urlencoded::byte_serialize(
            REPOSITORY_FIELDS.as_bytes(),
        ));
        url
    }

    /// One page; follow `next` verbatim for the rest.
    pub async fn page<T: DeserializeOwned>(
        &self,
        token: &SecretString,
        url: &str,
    ) -> Result<Page<T>, BitbucketError> {
        let response = self
            .http
            .get(url)
            .bearer_auth(token.expose_secret())
            .send()
            .await
            .map_err(BitbucketError::network)?;
        let status = response.status();
        tracing::debug!(%url, %status, "bitbucket GET");
        let headers: HeaderMap = response.headers().clone();
        let text = response.text().await.map_err(BitbucketError::network)?;
        if !status.is_success() {
            return Err(BitbucketError::from_api(status, &headers, &text));
        }
        serde_json::from_str(&text).map_err(|_| BitbucketError::unexpected(status, &text))
    }

    /// Every repository of a workspace, page by page; `on_page` sees each page as it arrives.
    pub async fn walk_repositories(
        &self,
        token: &SecretString,
        workspace: &str,
        mut on_page: impl FnMut(Vec<Repository>),
    ) -> Result<usize, BitbucketError> {
        let mut next = Some(self.repositories_url(workspace));
        let mut pages = 0;
        while let Some(url) = next {
            let page: Page<Repository> = self.page(token, &url).await?;
            pages += 1;
            next = page.next;
            on_page(page.values);
        }
        Ok(pages)
    }
}
