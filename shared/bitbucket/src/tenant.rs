//! A tenant spread over several credentials: since 2026-05-04 an OAuth consumer owned by a personal
//! workspace sees only that workspace, so a tenant of forty workspaces may need forty consumers. Each
//! credential has its own client (its own cached token and rate budget); discovery takes the union of
//! what they see, and each workspace is served by exactly one of them, whose id its messages carry.

use std::{collections::BTreeMap, sync::Arc};

use bb2snyk_settings::{ConfigError, Settings};
use bb2snyk_store::Store;

use crate::{Bitbucket, BitbucketError, Workspace, credentials};

/// One credential of the tenant.
#[derive(Debug, Clone)]
pub struct Account {
    /// What messages carry to name it: a hash of its key, never a secret.
    pub id: String,
    /// How a table names it: the consumer's key, or the single credential's kind.
    pub name: String,
    pub client: Bitbucket,
    /// Workspaces it is named for (`workspaces = [...]` in the file); empty means those it lists.
    pub named: Vec<String>,
}

/// Every credential of the tenant; at least one.
#[derive(Debug, Clone)]
pub struct Tenant {
    accounts: Arc<[Account]>,
    /// `bitbucket.workspaces`: with several credentials, the tenant is limited to these.
    explicit: Vec<String>,
}

/// What discovery found: each workspace once, with the credential that serves it.
#[derive(Debug, Default)]
pub struct Discovery {
    /// In slug order, each with the id of its credential for messages (`None` with a single credential).
    pub workspaces: Vec<(Workspace, Option<String>)>,
    /// Workspaces `bitbucket.workspaces` names that no credential sees: reported, never silently dropped.
    pub unseen: Vec<String>,
    /// Credentials that could not list their workspaces, with why (their own workspaces go missing).
    pub failed: Vec<BitbucketError>,
}

impl Tenant {
    /// Every credential settings give, with budgets shared through `store` (or per process without one).
    pub fn from_settings(
        settings: &Settings,
        http: reqwest::Client,
        store: Option<Store>,
    ) -> Result<Self, ConfigError> {
        Self::build(settings, http, store, false)
    }

    /// For a pipeline stage: calls that would wait past `pipeline.max_hold_secs` for a budget answer
    /// [`BitbucketError::Deferred`], so their message comes back later instead of holding its delivery.
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
        let accounts: Vec<Account> =
            credentials::from_settings(settings, http.clone(), store.clone())?
                .into_iter()
                .map(|configured| {
                    let id = configured.credential.account();
                    let named = configured.named.clone();
                    let name = configured
                        .name
                        .clone()
                        .unwrap_or_else(|| configured.credential.what().to_owned());
                    let client = Bitbucket::for_credential(
                        settings,
                        http.clone(),
                        store.clone(),
                        configured,
                        for_stage,
                    );
                    Account {
                        id,
                        name,
                        client,
                        named,
                    }
                })
                .collect();
        Ok(Self {
            accounts: accounts.into(),
            explicit: settings.bitbucket.workspaces.clone(),
        })
    }

    pub fn accounts(&self) -> &[Account] {
        &self.accounts
    }

    /// The first credential's client (the only one, unless a credentials file names several).
    pub fn first(&self) -> &Bitbucket {
        &self.accounts[0].client
    }

    /// The id messages should carry for a workspace served by `account`: none with a single credential, so
    /// its messages stay as they always were.
    fn message_id(&self, account: &Account) -> Option<String> {
        (self.accounts.len() > 1).then(|| account.id.clone())
    }

    /// The client a message's `credential` names. With a single credential, that one whatever the message
    /// says; with several, the named one, and a message naming none or another is refused (it came from a
    /// deployment with other credentials, or was forged).
    pub fn client(&self, credential: Option<&str>) -> Result<&Bitbucket, BitbucketError> {
        if let [only] = &*self.accounts {
            return Ok(&only.client);
        }
        let id = credential.unwrap_or_default();
        self.accounts
            .iter()
            .find(|a| a.id == id)
            .map(|a| &a.client)
            .ok_or_else(|| BitbucketError::UnknownCredential(id.chars().take(64).collect()))
    }

    /// Every workspace of the tenant, each once, with the credential that serves it: a credential named
    /// for a workspace beats one that only lists it, and among equals the first in the file wins. A
    /// credential that is refused is reported in [`Discovery::failed`] while the others go on; any other
    /// failure (Bitbucket down, a rate limit) fails the whole discovery, to be tried again, so no workspace
    /// is left out for a passing reason. With one credential, its failure is the error.
    pub async fn discover(&self) -> Result<Discovery, BitbucketError> {
        let mut chosen: BTreeMap<String, (Workspace, usize, bool)> = BTreeMap::new();
        let mut discovery = Discovery::default();
        for (index, account) in self.accounts.iter().enumerate() {
            let seen = match account.client.named_workspaces().await {
                Ok(seen) => seen,
                Err(e) if self.accounts.len() > 1 && e.is_credentials() => {
                    discovery.failed.push(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let named = !account.named.is_empty();
            for workspace in seen {
                let better = chosen
                    .get(&workspace.slug)
                    .is_none_or(|(_, _, was_named)| named && !was_named);
                if better {
                    chosen.insert(workspace.slug.clone(), (workspace, index, named));
                }
            }
        }
        if discovery.failed.len() == self.accounts.len()
            && let Some(first) = discovery.failed.drain(..).next()
        {
            return Err(first);
        }
        if self.accounts.len() > 1 && !self.explicit.is_empty() {
            chosen.retain(|slug, _| self.explicit.contains(slug));
            discovery.unseen = self
                .explicit
                .iter()
                .filter(|slug| !chosen.contains_key(*slug))
                .cloned()
                .collect();
        }
        discovery.workspaces = chosen
            .into_values()
            .map(|(workspace, index, _)| (workspace, self.message_id(&self.accounts[index])))
            .collect();
        Ok(discovery)
    }

    /// The client serving each workspace, for callers that hold only slugs (the seed workflow's files):
    /// with one credential, that one for every slug; with several, what [`Tenant::discover`] chose.
    pub async fn route(&self) -> Result<Route, BitbucketError> {
        if let [only] = &*self.accounts {
            return Ok(Route::Single(only.client.clone()));
        }
        let discovery = self.discover().await?;
        for e in &discovery.failed {
            tracing::error!(error = %e, "a Bitbucket credential was refused; its workspaces are left out");
        }
        let mut by_slug = std::collections::HashMap::new();
        for (workspace, id) in discovery.workspaces {
            by_slug.insert(workspace.slug, self.client(id.as_deref())?.clone());
        }
        Ok(Route::Several(by_slug))
    }

    /// Signs every credential in once; the failures, each naming its credential. The caller decides
    /// whether some working is enough.
    pub async fn sign_in(&self) -> Vec<BitbucketError> {
        let mut failures = Vec::new();
        for account in self.accounts.iter() {
            if let Err(e) = account.client.sign_in().await {
                failures.push(e);
            }
        }
        failures
    }
}

/// Which client serves a workspace, from [`Tenant::route`].
#[derive(Debug, Clone)]
pub enum Route {
    Single(Bitbucket),
    Several(std::collections::HashMap<String, Bitbucket>),
}

impl Route {
    /// The client for `slug`, or an error naming the workspace when no credential sees it.
    pub fn client(&self, slug: &str) -> Result<&Bitbucket, BitbucketError> {
        match self {
            Self::Single(client) => Ok(client),
            Self::Several(by_slug) => by_slug.get(slug).ok_or_else(|| {
                BitbucketError::NotFound(format!(
                    "no credential of BITBUCKET_APP_CREDENTIALS_FILE sees workspace {slug}; add its consumer to the file"
                ))
            }),
        }
    }
}
