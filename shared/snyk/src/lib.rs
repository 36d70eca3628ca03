//! The Snyk v1 API for bb2snyk, authenticated with `Authorization: token <SNYK_TOKEN>`: a group's orgs, org
//! creation, integrations, notification settings, import and job polling (REST targets and projects in
//! [`rest`]). Every call is paced by a budget shared by every replica, and 429s pause the whole fleet.

mod call;
mod error;
mod ignores;
mod integrations;
mod links;
mod model;
mod orgs;
mod rest;

use std::sync::Arc;

use bb2snyk_http::Call;
use bb2snyk_settings::{ConfigError, Settings};
use bb2snyk_store::{Budget, BudgetConfig, Pool, Store};
use call::{Token, parse, segment, token_id};
pub use error::SnykError;
pub use ignores::Ignore;
pub use integrations::{APP_INTEGRATION_TYPES, app_integration_in};
pub use model::{
    CreatedOrg, ImportOptions, Job, JobLog, JobStatus, OrgSummary, Project, Target,
    quiet_notifications,
};
use reqwest::{Method, StatusCode};
pub use rest::{Imported, Metadata, OrgProject};
use secrecy::SecretString;
use serde_json::{Value, json};
use url::Url;

/// The most orgs a page of `/group/{id}/orgs` holds.
const ORGS_PER_PAGE: usize = 100;

/// The longest a stage's REST call waits for REST's own budget before its delivery comes back later.
const REST_HOLD: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a refused token stays out of the rotation when settings do not say (`Client::new`).
const TOKEN_COOLDOWN: std::time::Duration = std::time::Duration::from_secs(600);

/// Creates of one org after failures that surely did not create it, before the error is returned.
const CREATE_TRIES: u32 = 3;

#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    api_base: String,
    /// Snyk's REST API beside v1: `…/v1` becomes `…/rest`.
    rest_base: String,
    /// One or more API tokens of the group, each paced by its own member of `budgets` (same index).
    tokens: Arc<[Token]>,
    budgets: Arc<Pool>,
    /// REST's own lower limit per token (same index), paid besides `budgets` by REST calls; empty: none.
    rest_budgets: Arc<[Budget]>,
}

impl Client {
    /// A client spending `tokens`, each under its own budget: every call goes out with a token whose budget
    /// has a slot (see [`Pool`]). One token is labelled `SNYK_TOKEN` in messages; several by their number
    /// and a hash.
    pub fn new(http: reqwest::Client, api_base: &Url, tokens: Vec<(SecretString, Budget)>) -> Self {
        Self::with_limits(http, api_base, tokens, Vec::new(), TOKEN_COOLDOWN)
    }

    /// As [`Client::new`], with a REST budget per token (same order) and the refused tokens' cool-down.
    fn with_limits(
        http: reqwest::Client,
        api_base: &Url,
        tokens: Vec<(SecretString, Budget)>,
        rest_budgets: Vec<Budget>,
        cooldown: std::time::Duration,
    ) -> Self {
        let api_base = api_base.as_str().trim_end_matches('/').to_owned();
        let rest_base = match api_base.strip_suffix("/v1") {
            Some(root) => format!("{root}/rest"),
            None => format!("{api_base}/rest"),
        };
        let count = tokens.len();
        let (tokens, budgets): (Vec<Token>, Vec<Budget>) = tokens
            .into_iter()
            .enumerate()
            .map(|(n, (secret, budget))| {
                let label = if count == 1 {
                    "SNYK_TOKEN".to_owned()
                } else {
                    format!("Snyk token {} of {count} ({})", n + 1, token_id(&secret))
                };
                (Token { secret, label }, budget)
            })
            .unzip();
        Self {
            http,
            api_base,
            rest_base,
            tokens: tokens.into(),
            budgets: Arc::new(Pool::new(budgets, cooldown)),
            rest_budgets: rest_budgets.into(),
        }
    }

    /// `SNYK_TOKEN` and `SNYK_API` from settings, with a budget of `snyk.rate_budget` per
    /// `snyk.rate_window_secs` shared through `store` (or per process without one).
    pub fn from_settings(
        settings: &Settings,
        http: reqwest::Client,
        store: Option<Store>,
    ) -> Result<Self, ConfigError> {
        Self::build(settings, http, store, false, false)
    }

    /// For a pipeline stage: as [`Client::from_settings`], but a call that would wait longer than
    /// `pipeline.max_hold_secs` for the budget answers [`SnykError::Deferred`] so its message comes back later
    /// instead of holding its delivery.
    pub fn for_stage(
        settings: &Settings,
        http: reqwest::Client,
        store: Option<Store>,
    ) -> Result<Self, ConfigError> {
        Self::build(settings, http, store, true, false)
    }

    /// For the org-creator: as [`Client::for_stage`], and its writes go first, as reads do (see
    /// [`Budget::going_first`]): an org's few calls unlock a workspace's imports.
    pub fn for_setup_stage(
        settings: &Settings,
        http: reqwest::Client,
        store: Option<Store>,
    ) -> Result<Self, ConfigError> {
        Self::build(settings, http, store, true, true)
    }

    fn build(
        settings: &Settings,
        http: reqwest::Client,
        store: Option<Store>,
        for_stage: bool,
        first: bool,
    ) -> Result<Self, ConfigError> {
        let budget = |api, limit, token: &SecretString| {
            Budget::for_pipeline(
                store.clone(),
                BudgetConfig {
                    api,
                    credential: token_id(token),
                    limit,
                    window: settings.snyk.rate_window,
                },
                &settings.pipeline,
                for_stage,
            )
            .evenly_paced(settings.snyk.even_pace)
            .going_first(first)
        };
        let configured = settings.snyk_tokens()?;
        let tokens = configured
            .iter()
            .map(|token| {
                (
                    (*token).clone(),
                    budget("snyk", settings.snyk.rate_budget, token),
                )
            })
            .collect();
        // A stage's REST call that finds REST's own budget spent gives its delivery back at once, rather
        // than hold one of the queue's slots while imports behind it wait for the v1 budget they could have.
        let rest = configured
            .iter()
            .map(|token| {
                let rest = budget("snyk-rest", settings.snyk.rest_rate_budget, token);
                if for_stage {
                    rest.holding_at_most(REST_HOLD)
                } else {
                    rest
                }
            })
            .collect();
        Ok(Self::with_limits(
            http,
            &settings.snyk.api_base,
            tokens,
            rest,
            settings.snyk.token_cooldown,
        ))
    }

    /// One client per configured token, each labelled as messages name it, for checking every token on its
    /// own (`doctor`); budgets are per process.
    pub fn per_token(
        settings: &Settings,
        http: reqwest::Client,
    ) -> Result<Vec<(String, Self)>, ConfigError> {
        let all = Self::from_settings(settings, http.clone(), None)?;
        Ok(all
            .tokens
            .iter()
            .map(|token| {
                let budget = Budget::new(
                    None,
                    BudgetConfig {
                        api: "snyk",
                        credential: token_id(&token.secret),
                        limit: settings.snyk.rate_budget,
                        window: settings.snyk.rate_window,
                    },
                );
                // The same token, labelled as it is known among several, under a budget of its own.
                let client = Self {
                    tokens: Arc::from([token.clone()]),
                    budgets: Arc::new(Pool::new(vec![budget], settings.snyk.token_cooldown)),
                    rest_budgets: Arc::from([]),
                    ..all.clone()
                };
                (token.label.clone(), client)
            })
            .collect())
    }

    /// Tokens Snyk has not refused, of all given.
    pub fn tokens_in_rotation(&self) -> (usize, usize) {
        (self.budgets.live_count(), self.tokens.len())
    }

    /// The org's integrations: type to integration id.
    pub async fn integrations(
        &self,
        org_id: &str,
    ) -> Result<std::collections::BTreeMap<String, String>, SnykError> {
        self.json(
            Call {
                endpoint: "/org/{org}/integrations",
                about: org_id,
            },
            Method::GET,
            &format!("/org/{}/integrations", segment(org_id)),
            None,
        )
        .await
    }

    /// The Bitbucket Cloud App integration's id: under `kind` when given, else under
    /// [`APP_INTEGRATION_TYPES`] in order. `None` when the app is not connected to this org.
    pub async fn app_integration(
        &self,
        org_id: &str,
        kind: Option<&str>,
    ) -> Result<Option<String>, SnykError> {
        Ok(app_integration_in(&self.integrations(org_id).await?, kind))
    }

    pub async fn set_notification_settings(
        &self,
        org_id: &str,
        settings: &Value,
    ) -> Result<(), SnykError> {
        let _: Value = self
            .json(
                Call {
                    endpoint: "/org/{org}/notification-settings",
                    about: org_id,
                },
                Method::PUT,
                &format!("/org/{}/notification-settings", segment(org_id)),
                Some(settings),
            )
            .await?;
        Ok(())
    }

    /// Starts an import; Snyk answers 201 with the job's absolute URL in `Location`, returned here.
    pub async fn import(
        &self,
        org_id: &str,
        integration_id: &str,
        target: &Target,
        options: &ImportOptions,
    ) -> Result<String, SnykError> {
        let mut body = json!({"target": target});
        if !options.files.is_empty() {
            body["files"] = json!(
                options
                    .files
                    .iter()
                    .map(|p| json!({"path": p}))
                    .collect::<Vec<_>>()
            );
        }
        if let Some(globs) = &options.exclusion_globs {
            body["exclusionGlobs"] = json!(globs);
        }
        let path = format!(
            "/org/{}/integrations/{}/import",
            segment(org_id),
            segment(integration_id)
        );
        let answer = self
            .request(
                Call {
                    endpoint: "/org/{org}/integrations/{integration}/import",
                    about: org_id,
                },
                Method::POST,
                &self.url(&path),
                Some(&body),
            )
            .await?;
        match answer.location {
            // Checked now, so no poll ever carries a URL Snyk's answer could have pointed anywhere.
            Some(url) if bb2snyk_http::is_within(&self.api_base, &url) => Ok(url),
            Some(url) => Err(SnykError::ForeignUrl {
                url: url.chars().take(200).collect(),
                base: self.api_base.clone(),
            }),
            None => Err(SnykError::Unexpected {
                status: StatusCode::CREATED,
                what: "Location header",
            }),
        }
    }

    /// Polls a job of `org_id` at the `Location` [`Client::import`] returned.
    pub async fn job(&self, org_id: &str, location: &str) -> Result<Job, SnykError> {
        let call = Call {
            endpoint: "/org/{org}/integrations/{integration}/import/{job}",
            about: org_id,
        };
        let answer = self.request(call, Method::GET, location, None).await?;
        parse(&answer.body)
    }
}
