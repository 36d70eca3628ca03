//! The Snyk v1 API for bb2snyk, authenticated with `Authorization: token <SNYK_TOKEN>`: a group's orgs, org
//! creation, integrations, notification settings, import and job polling. Every call is paced by a budget
//! shared by every replica, and 429s pause the whole fleet.

mod error;
mod model;

use std::sync::Arc;

use bb2snyk_settings::{ConfigError, Settings};
use bb2snyk_store::{Budget, BudgetConfig, Pool, Store, fingerprint};
pub use error::SnykError;
pub use model::{
    CreatedOrg, ImportOptions, Job, JobLog, JobStatus, OrgSummary, Project, Target,
    quiet_notifications,
};
use reqwest::{
    Method, StatusCode,
    header::{AUTHORIZATION, HeaderValue, LOCATION},
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Value, json};
use url::Url;

/// The most orgs a page of `/group/{id}/orgs` holds.
const ORGS_PER_PAGE: usize = 100;

/// Where the Bitbucket Cloud App integration is listed: Snyk's own key first, then the source's name.
pub const APP_INTEGRATION_TYPES: [&str; 2] = ["bitbucket-connect-app", "bitbucket-cloud-app"];

/// The Bitbucket Cloud App integration's id among an org's `integrations` (type to id): under `kind` when
/// given, else under [`APP_INTEGRATION_TYPES`] in order. The CLI's files and the org-creator both pick with
/// this, so they cannot choose different integrations for one org.
pub fn app_integration_in(
    integrations: &std::collections::BTreeMap<String, String>,
    kind: Option<&str>,
) -> Option<String> {
    match kind {
        Some(kind) => integrations.get(kind),
        None => APP_INTEGRATION_TYPES
            .iter()
            .find_map(|k| integrations.get(*k)),
    }
    .cloned()
}

/// Creates of one org after failures that surely did not create it, before the error is returned.
const CREATE_TRIES: u32 = 3;
/// The REST release the targets endpoint is read at (GA since 2024-02-21).
const REST_VERSION: &str = "2024-10-15";
/// Pages of targets read for one name before giving up (a server that keeps answering `next`).
const MAX_TARGET_PAGES: usize = 50;
/// Pages of an org's whole target list read at most: 100,000 targets, a few MiB of names.
const MAX_ORG_TARGET_PAGES: usize = 1000;
/// The REST release the projects endpoint is read at (GA).
const PROJECTS_VERSION: &str = "2024-05-31";
/// The origins Snyk reports for projects imported from Bitbucket Cloud: the app (reported as the connect
/// app), and the legacy integration.
const BITBUCKET_CLOUD_ORIGINS: [&str; 3] = [
    "bitbucket-connect-app",
    "bitbucket-cloud-app",
    "bitbucket-cloud",
];

/// A project imported from Bitbucket Cloud, as a sync needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgProject {
    pub id: String,
    /// The target's display name, `workspace/slug`.
    pub display_name: String,
    pub branch: Option<String>,
    /// False once deactivated.
    pub active: bool,
}

/// A 404 for a project means it is already gone: what a retire wants.
fn gone_is_done<T>(answer: Result<T, SnykError>) -> Result<(), SnykError> {
    match answer {
        Ok(_) => Ok(()),
        Err(SnykError::Rejected {
            status: StatusCode::NOT_FOUND,
            ..
        }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// A target as Snyk's projects show it imported: `workspace/slug` and the branch.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Imported {
    pub display_name: String,
    pub branch: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    api_base: String,
    /// Snyk's REST API beside v1: `…/v1` becomes `…/rest`.
    rest_base: String,
    /// One or more API tokens of the group, each paced by its own member of `budgets` (same index).
    tokens: Arc<[Token]>,
    budgets: Arc<Pool>,
}

/// One API token and how messages name it: never the token itself.
#[derive(Debug, Clone)]
struct Token {
    secret: SecretString,
    label: String,
}

/// A successful answer: its status, its `Location`, its body.
struct Answer {
    location: Option<String>,
    body: String,
}

impl Client {
    /// A client spending `tokens`, each under its own budget: every call goes out with a token whose budget
    /// has a slot (see [`Pool`]). One token is labelled `SNYK_TOKEN` in messages; several by their number
    /// and a hash.
    pub fn new(http: reqwest::Client, api_base: &Url, tokens: Vec<(SecretString, Budget)>) -> Self {
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
            budgets: Arc::new(Pool::new(budgets)),
        }
    }

    /// `SNYK_TOKEN` and `SNYK_API` from settings, with a budget of `snyk.rate_budget` per
    /// `snyk.rate_window_secs` shared through `store` (or per process without one).
    pub fn from_settings(
        settings: &Settings,
        http: reqwest::Client,
        store: Option<Store>,
    ) -> Result<Self, ConfigError> {
        Self::build(settings, http, store, false)
    }

    /// For a pipeline stage: as [`Client::from_settings`], but a call that would wait longer than
    /// `pipeline.max_hold_secs` for the budget answers [`SnykError::Deferred`] so its message comes back later
    /// instead of holding its delivery.
    pub fn for_stage(
        settings: &Settings,
        http: reqwest::Client,
        store: Option<Store>,
    ) -> Result<Self, ConfigError> {
        Self::build(settings, http, store, true)
    }

    fn build(
        settings: &Settings,
        http: reqwest::Client,
        store: Option<Store>,
        for_stage: bool,
    ) -> Result<Self, ConfigError> {
        let tokens = settings
            .snyk_tokens()?
            .into_iter()
            .map(|token| {
                let budget = Budget::for_pipeline(
                    store.clone(),
                    BudgetConfig {
                        api: "snyk",
                        credential: token_id(token),
                        limit: settings.snyk.rate_budget,
                        window: settings.snyk.rate_window,
                    },
                    &settings.pipeline,
                    for_stage,
                );
                (token.clone(), budget)
            })
            .collect();
        Ok(Self::new(http, &settings.snyk.api_base, tokens))
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
                    budgets: Arc::new(Pool::new(vec![budget])),
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

    /// Every org in the group: pages of 100 until a short one, as the API has no next link.
    pub async fn group_orgs(&self, group_id: &str) -> Result<Vec<OrgSummary>, SnykError> {
        #[derive(Deserialize)]
        struct Page {
            orgs: Vec<OrgSummary>,
        }
        let group = segment(group_id);
        let mut all = Vec::new();
        for page in 1..=bb2snyk_http::MAX_PAGES {
            let batch: Page = self
                .json(
                    Method::GET,
                    &format!("/group/{group}/orgs?perPage={ORGS_PER_PAGE}&page={page}"),
                    None,
                )
                .await?;
            let short = batch.orgs.len() < ORGS_PER_PAGE;
            // A page that repeats the one before means the API ignores `page`: stop, or it never ends.
            let repeated = batch
                .orgs
                .first()
                .is_some_and(|first| all.iter().any(|o: &OrgSummary| o.id == first.id));
            if repeated {
                tracing::warn!(page, "Snyk's org list repeats a page; stopping here");
                break;
            }
            all.extend(batch.orgs);
            if short {
                break;
            }
        }
        Ok(all)
    }

    /// `POST /org`; Snyk answers 201. `source_org_id` copies that org's integrations and settings.
    pub async fn create_org(
        &self,
        name: &str,
        group_id: &str,
        source_org_id: Option<&str>,
    ) -> Result<CreatedOrg, SnykError> {
        let mut body = json!({"name": name, "groupId": group_id});
        if let Some(source) = source_org_id {
            body["sourceOrgId"] = json!(source);
        }
        self.json(Method::POST, "/org", Some(&body)).await
    }

    /// Creates an org, never two. After a failure that may have happened (a 5xx or timeout once the request
    /// was sent), the group is listed: an org of that name whose id is not among `known` (those of that name
    /// before the call) is the one this call made. Only when there is none is the create sent again.
    pub async fn create_org_once(
        &self,
        name: &str,
        group_id: &str,
        source_org_id: Option<&str>,
        known: &[String],
    ) -> Result<CreatedOrg, SnykError> {
        let mut tries = 0;
        loop {
            let error = match self.create_org(name, group_id, source_org_id).await {
                Err(e) if e.may_have_happened() => e,
                done => return done,
            };
            let made = self
                .group_orgs(group_id)
                .await?
                .into_iter()
                .find(|o| o.name == name && !known.contains(&o.id));
            if let Some(org) = made {
                tracing::info!(org = %org.id, %name, "an org creation whose answer was lost had happened");
                return Ok(CreatedOrg {
                    id: org.id,
                    name: org.name,
                    slug: org.slug,
                    created: None,
                });
            }
            tries += 1;
            if tries >= CREATE_TRIES {
                return Err(error);
            }
        }
    }

    /// The org's integrations: type to integration id.
    pub async fn integrations(
        &self,
        org_id: &str,
    ) -> Result<std::collections::BTreeMap<String, String>, SnykError> {
        self.json(
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
            .request(Method::POST, &self.url(&path), Some(&body))
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

    /// Whether the org already has `display_name` (`workspace/slug`) as a target: REST targets, every page,
    /// compared exactly (the filter is a prefix match). A target appears once its import job has completed.
    pub async fn has_target(&self, org_id: &str, display_name: &str) -> Result<bool, SnykError> {
        let mut found = false;
        self.each_target(
            org_id,
            &format!("&display_name={}", segment(display_name)),
            MAX_TARGET_PAGES,
            |name| {
                found |= name == display_name;
                !found
            },
        )
        .await?;
        Ok(found)
    }

    /// The display names (`workspace/slug`) of every target the org has, of any source: what Snyk already
    /// holds, so nothing in it is imported again whatever a ledger remembers. At most
    /// `MAX_ORG_TARGET_PAGES` pages of 100; a longer list is an error rather than a silent part.
    pub async fn targets(&self, org_id: &str) -> Result<Vec<String>, SnykError> {
        let mut names = Vec::new();
        let whole = self
            .each_target(org_id, "", MAX_ORG_TARGET_PAGES, |name| {
                names.push(name.to_owned());
                true
            })
            .await?;
        if !whole {
            return Err(SnykError::Unexpected {
                status: StatusCode::OK,
                what: "end of the org's targets (more pages than bb2snyk reads)",
            });
        }
        Ok(names)
    }

    /// Every Bitbucket Cloud target the org's projects were imported from, with the branch, once each:
    /// what snyk-api-import's `list:imported` reads (REST projects, inactive ones included).
    pub async fn imported(&self, org_id: &str) -> Result<Vec<Imported>, SnykError> {
        let found: std::collections::BTreeSet<Imported> = self
            .projects(org_id)
            .await?
            .into_iter()
            .map(|p| Imported {
                display_name: p.display_name,
                branch: p.branch,
            })
            .collect();
        Ok(found.into_iter().collect())
    }

    /// The org's projects imported from Bitbucket Cloud (the app's and the legacy origins; inactive ones
    /// included), each with its target's display name and branch. At most `MAX_ORG_TARGET_PAGES` pages of
    /// 100; a longer list is an error rather than a silent part.
    pub async fn projects(&self, org_id: &str) -> Result<Vec<OrgProject>, SnykError> {
        let mut found = Vec::new();
        let url = format!(
            "{}/orgs/{}/projects?version={PROJECTS_VERSION}&limit=100&expand=target",
            self.rest_base,
            segment(org_id),
        );
        let whole = self
            .each_item(url, MAX_ORG_TARGET_PAGES, |project: model::RestProject| {
                if BITBUCKET_CLOUD_ORIGINS.contains(&project.attributes.origin.as_str()) {
                    found.push(OrgProject {
                        display_name: project.display_name(),
                        active: project.attributes.status.as_deref() != Some("inactive"),
                        branch: project.attributes.target_reference,
                        id: project.id,
                    });
                }
                true
            })
            .await?;
        if !whole {
            return Err(SnykError::Unexpected {
                status: StatusCode::OK,
                what: "end of the org's projects (more pages than bb2snyk reads)",
            });
        }
        Ok(found)
    }

    /// Deactivates a project (v1; Snyk stops testing it and keeps its history). Done again, or for a
    /// project that is gone, it is no error.
    pub async fn deactivate_project(
        &self,
        org_id: &str,
        project_id: &str,
    ) -> Result<(), SnykError> {
        let path = format!(
            "/org/{}/project/{}/deactivate",
            segment(org_id),
            segment(project_id)
        );
        gone_is_done(
            self.request(Method::POST, &self.url(&path), Some(&json!({})))
                .await,
        )
    }

    /// Deletes a project (REST). A project already gone is no error.
    pub async fn delete_project(&self, org_id: &str, project_id: &str) -> Result<(), SnykError> {
        let url = format!(
            "{}/orgs/{}/projects/{}?version={PROJECTS_VERSION}",
            self.rest_base,
            segment(org_id),
            segment(project_id)
        );
        gone_is_done(self.request(Method::DELETE, &url, None).await)
    }

    /// Calls `visit` with each target's display name, page by page, until it returns false or the pages
    /// end; true when every page was read (or `visit` stopped), false when `max_pages` ran out first.
    async fn each_target(
        &self,
        org_id: &str,
        filter: &str,
        max_pages: usize,
        mut visit: impl FnMut(&str) -> bool,
    ) -> Result<bool, SnykError> {
        let url = format!(
            "{}/orgs/{}/targets?version={REST_VERSION}&limit=100&exclude_empty=false{filter}",
            self.rest_base,
            segment(org_id),
        );
        self.each_item(url, max_pages, |target: model::RestTarget| {
            visit(&target.attributes.display_name)
        })
        .await
    }

    /// Calls `visit` with each item of a REST list, page by page, until it returns false or the pages
    /// end; true when every page was read (or `visit` stopped), false when `max_pages` ran out first.
    async fn each_item<T: DeserializeOwned>(
        &self,
        mut url: String,
        max_pages: usize,
        mut visit: impl FnMut(T) -> bool,
    ) -> Result<bool, SnykError> {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..max_pages {
            let page: model::Page<T> = parse(&self.request(Method::GET, &url, None).await?.body)?;
            for item in page.data {
                if !visit(item) {
                    return Ok(true);
                }
            }
            // `next` is relative to the REST base; anything else (another host) is not followed.
            match page.links.next.map(model::Link::into_href) {
                Some(next) if next.starts_with("/orgs/") && seen.insert(next.clone()) => {
                    url = format!("{}{next}", self.rest_base);
                }
                _ => return Ok(true),
            }
        }
        Ok(false)
    }

    /// Polls a job at the `Location` [`Client::import`] returned.
    pub async fn job(&self, location: &str) -> Result<Job, SnykError> {
        let answer = self.request(Method::GET, location, None).await?;
        parse(&answer.body)
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.api_base)
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<T, SnykError> {
        let answer = self
            .request(method, &self.url(path_and_query), body)
            .await?;
        parse(&answer.body)
    }

    /// One call under the budget and its retry rules. A POST creates something (an org, an import job), so
    /// it is never sent again after a failure that may have happened: the caller looks first.
    async fn request(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Answer, SnykError> {
        if !bb2snyk_http::is_within(&self.api_base, url)
            && !bb2snyk_http::is_within(&self.rest_base, url)
        {
            return Err(SnykError::ForeignUrl {
                url: url.chars().take(200).collect(),
                base: self.api_base.clone(),
            });
        }
        let method = &method;
        let call = |index: usize| async move {
            let token = &self.tokens[index];
            let mut request = self
                .http
                .request(method.clone(), url)
                .header(AUTHORIZATION, authorization(token)?);
            if let Some(body) = body {
                request = request.json(body);
            }
            let sent = request.send().await;
            bb2snyk_telemetry::metrics::http_call(
                "snyk",
                url,
                sent.as_ref().ok().map(|r| r.status().as_u16()),
            );
            let response = sent.map_err(SnykError::network)?;
            let status = response.status();
            tracing::debug!(%method, %url, %status, "snyk call");
            let retry_after = bb2snyk_http::retry_after(response.headers());
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(str::to_owned);
            let body = bb2snyk_http::text(response)
                .await
                .map_err(SnykError::body)?;
            if status.is_success() {
                Ok(Answer { location, body })
            } else {
                Err(SnykError::from_status(
                    status,
                    retry_after,
                    &body,
                    &token.label,
                ))
            }
        };
        if method == Method::POST {
            self.budgets.call_write(call).await
        } else {
            self.budgets.call(call).await
        }
    }
}

/// `token <TOKEN>`, marked sensitive so no debug output of the request shows it.
fn authorization(token: &Token) -> Result<HeaderValue, SnykError> {
    let mut value = HeaderValue::from_str(&format!("token {}", token.secret.expose_secret()))
        .map_err(|_| SnykError::BadToken {
            token: token.label.clone(),
        })?;
    value.set_sensitive(true);
    Ok(value)
}

/// Names a token in Redis keys and messages without revealing it.
fn token_id(token: &SecretString) -> String {
    fingerprint(&format!("snyk:{}", token.expose_secret()))
}

fn parse<T: DeserializeOwned>(body: &str) -> Result<T, SnykError> {
    serde_json::from_str(body).map_err(|_| SnykError::Unexpected {
        status: StatusCode::OK,
        what: "JSON body",
    })
}

/// A path segment, percent-encoded.
fn segment(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
