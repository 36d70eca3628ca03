//! The ways bb2snyk signs in to Bitbucket, behind one trait the client calls: an OAuth consumer (tokens from
//! the shared cache), a pre-issued access token, or Basic auth with an API token or app password.

use std::sync::Arc;

use bb2snyk_settings::{BitbucketCredentials, ConfigError, Settings};
use bb2snyk_store::{Store, fingerprint};
use futures_util::future::BoxFuture;
use reqwest::RequestBuilder;
use secrecy::{ExposeSecret, SecretString};

use crate::{BitbucketError, Consumer, TokenProvider};

/// What one request is signed with. Debug shows no secret.
#[derive(Debug, Clone)]
pub enum Authorization {
    Bearer(SecretString),
    Basic {
        username: String,
        password: SecretString,
    },
}

impl Authorization {
    pub(crate) fn sign(&self, request: RequestBuilder) -> RequestBuilder {
        match self {
            Self::Bearer(token) => request.bearer_auth(token.expose_secret()),
            Self::Basic { username, password } => {
                request.basic_auth(username, Some(password.expose_secret()))
            }
        }
    }
}

/// A source of [`Authorization`]s.
pub trait Credential: Send + Sync + std::fmt::Debug {
    fn authorization(&self) -> BoxFuture<'_, Result<Authorization, BitbucketError>>;

    /// Bitbucket answered 401 to `used`. True when fresh credentials may help, so the call is tried once more.
    fn rejected<'a>(&'a self, used: &'a Authorization) -> BoxFuture<'a, bool>;

    /// What to check when Bitbucket refuses it, for the error message.
    fn what(&self) -> &'static str;

    /// Names the account Bitbucket counts requests against (a hash), so every replica shares one budget.
    fn account(&self) -> String;
}

/// A workspace, project or repository access token, or a username with an API token or app password:
/// nothing to refresh, so a 401 is final.
#[derive(Debug)]
pub struct Fixed {
    authorization: Authorization,
    what: &'static str,
    account: String,
}

impl Fixed {
    pub fn access_token(token: SecretString) -> Self {
        Self {
            account: fingerprint(&format!("access-token:{}", token.expose_secret())),
            authorization: Authorization::Bearer(token),
            what: "access token (BITBUCKET_ACCESS_TOKEN)",
        }
    }

    pub fn basic(username: String, password: SecretString) -> Self {
        Self {
            account: fingerprint(&format!("basic:{username}")),
            authorization: Authorization::Basic { username, password },
            what: "username and API token (BITBUCKET_CLOUD_USERNAME, BITBUCKET_CLOUD_PASSWORD)",
        }
    }
}

impl Credential for Fixed {
    fn authorization(&self) -> BoxFuture<'_, Result<Authorization, BitbucketError>> {
        Box::pin(async move { Ok(self.authorization.clone()) })
    }

    fn rejected<'a>(&'a self, _used: &'a Authorization) -> BoxFuture<'a, bool> {
        Box::pin(async { false })
    }

    fn what(&self) -> &'static str {
        self.what
    }

    fn account(&self) -> String {
        self.account.clone()
    }
}

impl Credential for TokenProvider {
    fn authorization(&self) -> BoxFuture<'_, Result<Authorization, BitbucketError>> {
        Box::pin(async move { Ok(Authorization::Bearer(self.token().await?)) })
    }

    fn rejected<'a>(&'a self, used: &'a Authorization) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            match used {
                Authorization::Bearer(token) => {
                    self.invalidate(token).await;
                    true
                }
                Authorization::Basic { .. } => false,
            }
        })
    }

    fn what(&self) -> &'static str {
        "OAuth consumer (BITBUCKET_APP_CLIENT_ID, BITBUCKET_APP_CLIENT_SECRET)"
    }

    fn account(&self) -> String {
        self.account()
    }
}

/// One credential of the tenant as settings give it: how it signs, the workspaces it is named for, and
/// how messages name it when there are several (`None` with the single one, whose messages stay as they were).
#[derive(Debug, Clone)]
pub struct Configured {
    pub credential: Arc<dyn Credential>,
    pub named: Vec<String>,
    pub label: Option<String>,
    /// A consumer's key, for tables.
    pub name: Option<String>,
}

/// Every credential settings give: the consumers of `BITBUCKET_APP_CREDENTIALS_FILE`, or the one
/// `bitbucket.auth` selects (named for `bitbucket.workspaces`). `store: None` keeps OAuth tokens in this
/// process only; each consumer has its own cached token either way.
pub fn from_settings(
    settings: &Settings,
    http: reqwest::Client,
    store: Option<Store>,
) -> Result<Vec<Configured>, ConfigError> {
    let oauth = |client_id: &str, client_secret: &SecretString| {
        TokenProvider::new(
            http.clone(),
            settings.bitbucket.token_url.clone(),
            Consumer {
                client_id: client_id.to_owned(),
                client_secret: client_secret.clone(),
            },
            store.clone(),
        )
    };
    let single = |credential: Arc<dyn Credential>| {
        vec![Configured {
            credential,
            named: settings.bitbucket.workspaces.clone(),
            label: None,
            name: None,
        }]
    };
    Ok(match settings.bitbucket_credentials()? {
        BitbucketCredentials::Consumers(entries) => entries
            .iter()
            .map(|entry| {
                let provider = oauth(&entry.client_id, &entry.client_secret);
                Configured {
                    label: Some(format!(
                        "OAuth consumer {} (credential {}, BITBUCKET_APP_CREDENTIALS_FILE)",
                        entry.client_id,
                        provider.account()
                    )),
                    credential: Arc::new(provider),
                    named: entry.workspaces.clone(),
                    name: Some(entry.client_id.clone()),
                }
            })
            .collect(),
        BitbucketCredentials::OAuth {
            client_id,
            client_secret,
        } => single(Arc::new(oauth(client_id, client_secret))),
        BitbucketCredentials::AccessToken(token) => {
            single(Arc::new(Fixed::access_token(token.clone())))
        }
        BitbucketCredentials::Basic { username, password } => single(Arc::new(Fixed::basic(
            username.to_owned(),
            password.clone(),
        ))),
    })
}
