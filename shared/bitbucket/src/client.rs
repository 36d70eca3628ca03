//! The 2.0 API as bb2snyk uses it: every request paced by the fleet's budget, signed by the configured
//! credential, refreshed once on a 401, paused fleet-wide on a 429, and retried with backoff on 5xx and
//! network failures.

use std::sync::Arc;

use bb2snyk_http::Call;
use bb2snyk_settings::{ConfigError, Settings};
use bb2snyk_store::{Budget, BudgetConfig, Store};
use bb2snyk_telemetry::metrics;
use reqwest::{StatusCode, header::HeaderMap};
use serde::de::DeserializeOwned;
use tracing::Instrument;
use url::Url;

use crate::{
    Authorization, BitbucketError, Credential, Page, RepoFilter, Repository, UserWorkspace,
    Workspace,
};

/// The fields bb2snyk reads from a repository; asking for only these keeps pages small.
pub const REPOSITORY_FIELDS: &str = "next,size,values.uuid,values.slug,values.name,values.full_name,values.mainbranch.name,\
values.parent.full_name,values.project.key,values.workspace.slug,values.updated_on,values.is_private,values.language";

#[derive(Debug, Clone)]
pub struct Bitbucket {
    http: reqwest::Client,
    api_base: String,
    credential: Arc<dyn Credential>,
    budget: Arc<Budget>,
    workspaces: Vec<String>,
    names: Arc<crate::names::Names>,
    /// How errors name this credential when it is one of several.
    label: Option<Arc<str>>,
}

impl Bitbucket {
    /// A client whose requests are paced by `budget`.
    pub fn new(
        http: reqwest::Client,
        api_base: &Url,
        credential: Arc<dyn Credential>,
        budget: Arc<Budget>,
    ) -> Self {
        Self {
            http,
            api_base: api_base.as_str().trim_end_matches('/').to_owned(),
            credential,
            budget,
            workspaces: Vec::new(),
            names: Arc::default(),
            label: None,
        }
    }

    /// Credential failures name this credential (one of several) with `label`.
    pub fn labelled(mut self, label: Option<String>) -> Self {
        self.label = label.map(Into::into);
        self
    }

    /// A credential failure, naming the credential when it is one of several.
    pub(crate) fn named_error(&self, e: BitbucketError) -> BitbucketError {
        match &self.label {
            Some(label)
                if e.is_credentials() && !matches!(e, BitbucketError::Credential { .. }) =>
            {
                BitbucketError::Credential {
                    credential: label.to_string(),
                    source: Box::new(e),
                }
            }
            _ => e,
        }
    }

    /// Signs in once (an OAuth exchange, or nothing for fixed credentials), to prove the credential.
    pub async fn sign_in(&self) -> Result<(), BitbucketError> {
        self.credential
            .authorization()
            .await
            .map(drop)
            .map_err(|e| self.named_error(e))
    }

    pub(crate) fn api_base(&self) -> &str {
        &self.api_base
    }

    pub(crate) fn names_seen(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Option<String>>> {
        self.names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The first credential's client, as [`crate::Tenant::from_settings`] builds it: for one credential.
    pub fn from_settings(
        settings: &Settings,
        http: reqwest::Client,
        store: Option<Store>,
    ) -> Result<Self, ConfigError> {
        Ok(crate::Tenant::from_settings(settings, http, store)?
            .first()
            .clone())
    }

    /// A client for one configured credential, with its own budget of `bitbucket.rate_budget` per
    /// `bitbucket.rate_window_secs` (Bitbucket counts per user, and each consumer acts as its own).
    pub(crate) fn for_credential(
        settings: &Settings,
        http: reqwest::Client,
        store: Option<Store>,
        configured: crate::credentials::Configured,
        for_stage: bool,
    ) -> Self {
        let budget = Budget::for_pipeline(
            store,
            BudgetConfig {
                api: "bitbucket",
                credential: configured.credential.account(),
                limit: settings.bitbucket.rate_budget,
                window: settings.bitbucket.rate_window,
            },
            &settings.pipeline,
            for_stage,
        );
        Self::new(
            http,
            &settings.bitbucket.api_base,
            configured.credential,
            Arc::new(budget),
        )
        .with_workspaces(configured.named)
        .labelled(configured.label)
    }

    /// Imports these workspaces instead of discovering them.
    pub fn with_workspaces(mut self, slugs: Vec<String>) -> Self {
        self.workspaces = slugs;
        self
    }

    pub fn credential(&self) -> &Arc<dyn Credential> {
        &self.credential
    }

    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    /// The workspaces to import, keyed by slug: the explicit list when there is one, else every page of
    /// `/user/workspaces`, falling back to `/workspaces` when Bitbucket has removed the first (404 or 410).
    pub async fn workspaces(&self) -> Result<Vec<Workspace>, BitbucketError> {
        if !self.workspaces.is_empty() {
            return Ok(self
                .workspaces
                .iter()
                .map(|slug| Workspace {
                    slug: slug.clone(),
                    name: None,
                    uuid: None,
                })
                .collect());
        }
        let first = format!("{}/user/workspaces?pagelen=100", self.api_base);
        match self
            .collect::<UserWorkspace>(Call::new("/user/workspaces", ""), first)
            .await
        {
            Ok(items) => return Ok(items.into_iter().map(|i| i.workspace).collect()),
            Err(e) if endpoint_gone(&e).is_some() => {
                tracing::info!(error = %e, "/user/workspaces is gone; trying /workspaces");
            }
            Err(e) => return Err(e),
        }
        let second = format!("{}/workspaces?pagelen=100", self.api_base);
        match self
            .collect::<Workspace>(Call::new("/workspaces", ""), second)
            .await
        {
            Err(e) => Err(match endpoint_gone(&e) {
                Some(status) => BitbucketError::WorkspacesUnlisted(status),
                None => e,
            }),
            ok => ok,
        }
    }

    /// A workspace's repositories, one page of up to 100 at a time, so memory stays flat whatever its size.
    pub fn repositories(&self, workspace: &str, filter: &RepoFilter) -> RepositoryPages<'_> {
        let mut url = format!("{}/repositories/", self.api_base);
        url.extend(url::form_urlencoded::byte_serialize(workspace.as_bytes()));
        // Sorted by the immutable uuid, so a repository deleted or created between two pages moves no
        // other across a page boundary (by page number, the default order could skip a live one).
        url.push_str("?pagelen=100&sort=uuid&fields=");
        url.extend(url::form_urlencoded::byte_serialize(
            REPOSITORY_FIELDS.as_bytes(),
        ));
        if let Some(q) = filter.query() {
            url.push_str("&q=");
            url.extend(url::form_urlencoded::byte_serialize(q.as_bytes()));
        }
        RepositoryPages {
            client: self,
            workspace: workspace.to_owned(),
            next: Some(url),
        }
    }

    /// One repository by its `{uuid}` or slug; `None` when Bitbucket answers 404 for it. Asked of the
    /// credential that lists its workspace, a 404 is the evidence a sync needs that a repository is gone; any
    /// other failure is no evidence either way.
    pub async fn repository(
        &self,
        workspace: &str,
        id: &str,
    ) -> Result<Option<Repository>, BitbucketError> {
        let mut url = format!("{}/repositories/", self.api_base);
        url.extend(url::form_urlencoded::byte_serialize(workspace.as_bytes()));
        url.push('/');
        url.extend(url::form_urlencoded::byte_serialize(id.as_bytes()));
        let about = Call::new("/repositories/{workspace}/{repo}", workspace);
        match self.get::<Repository>(about, &url).await {
            Ok(repo) => Ok(Some(repo)),
            Err(BitbucketError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every item of a list, following `next` to the end. For short lists (workspaces) only.
    pub(crate) async fn collect<T: DeserializeOwned>(
        &self,
        about: Call<'_>,
        first: String,
    ) -> Result<Vec<T>, BitbucketError> {
        let mut items = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut next = Some(first);
        while let Some(url) = next {
            // A `next` seen before, or more pages than any tenant has, ends the list instead of looping.
            if !seen.insert(url.clone()) || seen.len() > bb2snyk_http::MAX_PAGES {
                tracing::warn!(%url, pages = seen.len(), "Bitbucket's list does not end; stopping here");
                break;
            }
            let page: Page<T> = self.get(about, &url).await?;
            items.extend(page.values);
            next = page.next;
        }
        Ok(items)
    }

    /// One GET, with the budget, the credential and the retry rules above, in a span that names its
    /// workspace, endpoint and outcome. Only URLs under the configured API base are fetched: the credential
    /// never goes anywhere else.
    pub async fn get<T: DeserializeOwned>(
        &self,
        about: Call<'_>,
        url: &str,
    ) -> Result<T, BitbucketError> {
        let span = tracing::info_span!(
            "bitbucket",
            workspace = about.about,
            endpoint = about.endpoint,
            outcome = tracing::field::Empty
        );
        let answer = self
            .get_once(about.endpoint, url)
            .instrument(span.clone())
            .await;
        match &answer {
            Ok(_) => span.record("outcome", "ok"),
            Err(e) => span.record("outcome", e.kind()),
        };
        answer
    }

    async fn get_once<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        url: &str,
    ) -> Result<T, BitbucketError> {
        if !bb2snyk_http::is_within(&self.api_base, url) {
            return Err(BitbucketError::ForeignUrl {
                url: url.chars().take(200).collect(),
                base: self.api_base.clone(),
            });
        }
        let answer = self
            .budget
            .call(|| async {
                let authorization = self.credential.authorization().await?;
                let message = match self.send(endpoint, &authorization, url).await {
                    Err(BitbucketError::Unauthorized(message)) => message,
                    other => return other,
                };
                if !self.credential.rejected(&authorization).await {
                    return Err(BitbucketError::Rejected(message, self.credential.what()));
                }
                tracing::info!(%message, "Bitbucket refused the token; refreshing once");
                self.budget.acquire().await;
                let fresh = self.credential.authorization().await?;
                self.send(endpoint, &fresh, url).await
            })
            .await;
        answer.map_err(|e| self.named_error(e))
    }

    async fn send<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        authorization: &Authorization,
        url: &str,
    ) -> Result<T, BitbucketError> {
        let sent = authorization.sign(self.http.get(url)).send().await;
        metrics::http_call(
            "bitbucket",
            endpoint,
            sent.as_ref().ok().map(|r| r.status().as_u16()),
        );
        let response = sent.map_err(BitbucketError::network)?;
        let status = response.status();
        tracing::debug!(%url, %status, "bitbucket GET");
        let headers: HeaderMap = response.headers().clone();
        let text = bb2snyk_http::text(response)
            .await
            .map_err(BitbucketError::body)?;
        if !status.is_success() {
            return Err(BitbucketError::from_api(status, &headers, &text));
        }
        serde_json::from_str(&text).map_err(|_| BitbucketError::unexpected(status, &text))
    }
}

/// The status that says an endpoint no longer exists (CHANGE-2770), if that is what `e` is.
fn endpoint_gone(e: &BitbucketError) -> Option<StatusCode> {
    match e {
        BitbucketError::Gone(_) => Some(StatusCode::GONE),
        BitbucketError::NotFound(_) => Some(StatusCode::NOT_FOUND),
        _ => None,
    }
}

/// The pages of one workspace's repositories, fetched as they are asked for.
#[derive(Debug)]
pub struct RepositoryPages<'a> {
    client: &'a Bitbucket,
    workspace: String,
    next: Option<String>,
}

impl RepositoryPages<'_> {
    /// The next page, or `None` after the last.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Repository>>, BitbucketError> {
        let Some(url) = self.next.take() else {
            return Ok(None);
        };
        let about = Call::new("/repositories/{workspace}", &self.workspace);
        match self.client.get::<Page<Repository>>(about, &url).await {
            Ok(page) => {
                // A page naming itself as the next is no end: the pages after it were never read.
                if page.next.as_deref() == Some(url.as_str()) {
                    self.next = Some(url.clone());
                    return Err(BitbucketError::RepeatedPage(
                        url.chars().take(200).collect(),
                    ));
                }
                self.next = page.next;
                Ok(Some(page.values))
            }
            Err(e) => {
                // Kept, so a caller may try the same page again.
                self.next = Some(url);
                Err(e)
            }
        }
    }

    /// Where the walk resumes: hand it to [`RepositoryPages::resume`] to go on elsewhere (another delivery).
    pub fn next_url(&self) -> Option<&str> {
        self.next.as_deref()
    }

    /// Continues a walk at a `next` link Bitbucket gave earlier.
    pub fn resume<'a>(client: &'a Bitbucket, workspace: &str, next: String) -> RepositoryPages<'a> {
        RepositoryPages {
            client,
            workspace: workspace.to_owned(),
            next: Some(next),
        }
    }
}
