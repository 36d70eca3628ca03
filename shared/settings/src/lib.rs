//! bb2snyk settings: built-in defaults, then an optional TOML file, then snyk-api-import's variables
//! (`SNYK_TOKEN`, `BITBUCKET_APP_CLIENT_ID`, ...), then `BB2SNYK__SECTION__KEY`. Each later layer wins.
//!
//! Every value is checked when loaded; a value a stage needs but that has no default (`SNYK_TOKEN`, the
//! OAuth consumer) is checked by [`Settings::require`], so each binary asks only for what it uses.
//!
//! Over 400 lines on purpose: the settings types, one per section, are the documented contract and read
//! best as one list (loading is in `load.rs`, the key table in `keys.rs`).

mod consumers;
mod keys;
mod load;
mod reference;

use std::{path::PathBuf, time::Duration};

pub use bb2snyk_filters::Filters;
pub use consumers::{ConsumerEntry, loose_permissions};
pub use keys::{KEYS, Key};
pub use load::{Sources, load};
pub use reference::reference;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

#[derive(Debug, Clone)]
pub struct Settings {
    pub bitbucket: BitbucketSettings,
    /// Which repositories discovery hands on (`discovery.*`), when a run request carries no filters.
    pub discovery: Filters,
    /// How far discovery runs ahead of the importers (`discovery.max_backlog`, `discovery.backlog_pause_secs`).
    pub backlog: BacklogSettings,
    pub snyk: SnykSettings,
    pub amqp: AmqpSettings,
    pub pipeline: PipelineSettings,
    pub redis: RedisSettings,
    pub import: ImportSettings,
    /// How a sync may retire projects (`sync.*`).
    pub sync: SyncSettings,
    /// The import policy file (`policy.file`, `--policy`): tags, attributes, exclusion globs, branches and
    /// skips by rule; none when absent.
    pub policy_file: Option<PathBuf>,
    pub http: HttpSettings,
    pub metrics: MetricsSettings,
}

#[derive(Debug, Clone)]
pub struct BitbucketSettings {
    pub api_base: Url,
    pub token_url: Url,
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
    /// `BITBUCKET_APP_CREDENTIALS_FILE`, and the consumers read from it (empty without it).
    pub credentials_file: Option<std::path::PathBuf>,
    pub consumers: Vec<ConsumerEntry>,
    pub auth: BitbucketAuth,
    pub access_token: Option<SecretString>,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    /// Explicit workspace slugs; empty means discover them.
    pub workspaces: Vec<String>,
    pub rate_budget: u32,
    pub rate_window: Duration,
}

/// How bb2snyk signs in to Bitbucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BitbucketAuth {
    /// A private OAuth consumer, exchanged for Bearer tokens with client_credentials.
    OAuth,
    /// A pre-issued workspace, project or repository access token.
    AccessToken,
    /// A username or e-mail with an API token or app password.
    Basic,
}

/// The credential in force, as [`Settings::bitbucket_credentials`] resolves it.
#[derive(Debug, Clone, Copy)]
pub enum BitbucketCredentials<'a> {
    /// Several OAuth consumers, from the credentials file.
    Consumers(&'a [ConsumerEntry]),
    OAuth {
        client_id: &'a str,
        client_secret: &'a SecretString,
    },
    AccessToken(&'a SecretString),
    Basic {
        username: &'a str,
        password: &'a SecretString,
    },
}

/// Discovery pauses a workspace's paging while the importer's queue holds more than `limit` messages.
#[derive(Debug, Clone, Copy)]
pub struct BacklogSettings {
    pub limit: u64,
    pub pause: Duration,
}

#[derive(Debug, Clone)]
pub struct SnykSettings {
    pub api_base: Url,
    pub token: Option<SecretString>,
    /// `SNYK_TOKENS`: more tokens of the same group.
    pub tokens: Vec<SecretString>,
    pub rate_budget: u32,
    pub rate_window: Duration,
    /// REST requests per window per token, within `rate_budget`: REST's own limit is lower than v1's.
    pub rest_rate_budget: u32,
    /// Spread requests evenly over the window (at most a second's share in any second) instead of
    /// spending a window's budget at once and waiting out the rest of it.
    pub even_pace: bool,
    /// How long a token Snyk refused stays out of the rotation before it is tried again.
    pub token_cooldown: Duration,
    /// Where each org lists the Bitbucket Cloud App; `None` tries the known keys.
    pub integration_type: Option<String>,
    pub quiet_notifications: bool,
}

#[derive(Debug, Clone)]
pub struct AmqpSettings {
    /// One URL per node of a cluster, tried in order on connect and on recovery; never empty. Secret:
    /// each usually carries the broker password.
    pub urls: Vec<SecretString>,
    pub prefix: String,
    pub connect_attempts: u32,
    /// Queues are deleted after this long unused; `None` keeps them.
    pub expires: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// Waits before retry 1, 2, ...; the last repeats.
    pub retry_tiers: Vec<Duration>,
    /// The tiers `bb2snyk run`, `import` and `demo` use instead.
    pub embedded_retry_tiers: Vec<Duration>,
    pub max_attempts: u32,
    /// The largest message body a stage reads.
    pub max_message_bytes: usize,
    /// The longest a stage waits for a rate budget while holding a delivery.
    pub max_hold: Duration,
    /// Processes that share the rate budgets.
    pub fleet_size: u32,
    pub drain: Duration,
}

#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// Secret: it may carry the Redis password.
    pub url: SecretString,
    pub prefix: String,
    /// A run's counts (`run:<run>:*`) are kept this long after the run's last write.
    pub run_ttl: Duration,
}

#[derive(Debug, Clone)]
pub struct ImportSettings {
    pub concurrent_imports: u32,
    /// The first polls' wait, before any job was seen.
    pub poll_first: Duration,
    pub poll_floor: Duration,
    pub poll_max: Duration,
    pub poll_growth_percent: u32,
    /// Jobs of an org expected done since its last listing that make its next listing worth a request;
    /// 0: no listings.
    pub hint_yield: u32,
    pub log_path: PathBuf,
}

/// The brake on a sync that would retire much of an org, and how long a run's sets are kept.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// A sync that would retire more than this share of an org's active projects stops before acting.
    pub max_retire_percent: u32,
    /// A sync that would retire more than this many projects of one org stops before acting.
    pub max_retire_count: u32,
    /// Lets every sync pass the brake (`--allow-mass-retire` for one sync).
    pub allow_mass_retire: bool,
}

/// The service endpoints: `/metrics`, `/healthz`, `/readyz`.
#[derive(Debug, Clone)]
pub struct MetricsSettings {
    /// `None` turns them off.
    pub listen: Option<std::net::SocketAddr>,
    /// Whether `listen` was set (file or environment) rather than left at its default: a default port
    /// another replica on the host holds gives way to a free one; a port asked for does not.
    pub fixed: bool,
}

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub timeout: Duration,
    pub connect_timeout: Duration,
}

/// What a binary needs beyond the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    SnykToken,
    /// Whatever `bitbucket.auth` asks for: the OAuth consumer, an access token, or a username and password.
    BitbucketCredentials,
}

/// A setting that is missing or malformed. Its `Display` is one line naming the variable and how to set it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is not set: {how}")]
    Missing { name: &'static str, how: String },
    #[error("{name} is invalid ({problem}): {how}")]
    Invalid {
        name: &'static str,
        problem: String,
        how: String,
    },
    #[error("config file {path}: {problem}")]
    File { path: String, problem: String },
}

impl ConfigError {
    pub(crate) fn missing(key: &Key) -> Self {
        Self::Missing {
            name: key.name(),
            how: key.how_to_set(),
        }
    }

    pub(crate) fn invalid(key: &Key, problem: impl Into<String>) -> Self {
        Self::Invalid {
            name: key.name(),
            problem: problem.into(),
            how: key.how_to_set(),
        }
    }
}

impl Settings {
    /// Fails with the first thing in `needs` that is not configured.
    pub fn require(&self, needs: &[Need]) -> Result<(), ConfigError> {
        for need in needs {
            match need {
                Need::SnykToken => {
                    self.snyk_tokens()?;
                }
                Need::BitbucketCredentials => {
                    self.bitbucket_credentials()?;
                }
            }
        }
        Ok(())
    }

    /// Every Snyk token: `SNYK_TOKEN` first, then `SNYK_TOKENS`, each once. At least one.
    pub fn snyk_tokens(&self) -> Result<Vec<&SecretString>, ConfigError> {
        let mut tokens: Vec<&SecretString> = Vec::new();
        for token in self.snyk.token.iter().chain(&self.snyk.tokens) {
            if !tokens
                .iter()
                .any(|t| t.expose_secret() == token.expose_secret())
            {
                tokens.push(token);
            }
        }
        if tokens.is_empty() {
            let key = keys::key("snyk.token");
            return Err(ConfigError::Missing {
                name: key.name(),
                how: format!(
                    "{}; SNYK_TOKENS takes several, comma-separated",
                    key.how_to_set()
                ),
            });
        }
        Ok(tokens)
    }

    /// What is set but unwise, to say once at start: a credentials file other users can read.
    pub fn warnings(&self) -> Vec<String> {
        self.bitbucket
            .credentials_file
            .as_deref()
            .and_then(loose_permissions)
            .into_iter()
            .collect()
    }

    /// The credential `bitbucket.auth` selects, or the first part of it that is missing.
    pub fn bitbucket_credentials(&self) -> Result<BitbucketCredentials<'_>, ConfigError> {
        let b = &self.bitbucket;
        let missing = |path| ConfigError::missing(keys::key(path));
        if !b.consumers.is_empty() {
            return Ok(BitbucketCredentials::Consumers(&b.consumers));
        }
        Ok(match b.auth {
            BitbucketAuth::OAuth => {
                let (client_id, client_secret) = self.bitbucket_consumer()?;
                BitbucketCredentials::OAuth {
                    client_id,
                    client_secret,
                }
            }
            BitbucketAuth::AccessToken => BitbucketCredentials::AccessToken(
                b.access_token
                    .as_ref()
                    .ok_or_else(|| missing("bitbucket.access_token"))?,
            ),
            BitbucketAuth::Basic => BitbucketCredentials::Basic {
                username: b
                    .username
                    .as_deref()
                    .ok_or_else(|| missing("bitbucket.username"))?,
                password: b
                    .password
                    .as_ref()
                    .ok_or_else(|| missing("bitbucket.password"))?,
            },
        })
    }

    /// The OAuth consumer's key and secret.
    pub fn bitbucket_consumer(&self) -> Result<(&str, &SecretString), ConfigError> {
        let id = self
            .bitbucket
            .client_id
            .as_deref()
            .ok_or_else(|| ConfigError::missing(keys::key("bitbucket.client_id")))?;
        let secret = self
            .bitbucket
            .client_secret
            .as_ref()
            .ok_or_else(|| ConfigError::missing(keys::key("bitbucket.client_secret")))?;
        Ok((id, secret))
    }
}

/// A URL with its password replaced, for logs and messages: the user info's password, and any query value
/// whose key names a password (`?pass=`, `?password=`, as Redis's `unix://` URLs carry it). A URL that
/// cannot be read as host and path (`amqp:user:pw@host`, no `//`) is not shown at all.
pub fn redact_url(secret_url: &SecretString) -> String {
    let Ok(mut url) = Url::parse(secret_url.expose_secret()) else {
        return "<unparseable URL>".to_owned();
    };
    if url.cannot_be_a_base() {
        return format!("<a {}: URL without //, not shown>", url.scheme());
    }
    if url.password().is_some() {
        // Only fails for URLs that cannot have a password, which this one just showed it has.
        let _ = url.set_password(Some("***"));
    }
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let hidden = k.to_ascii_lowercase().contains("pass");
                (
                    k.into_owned(),
                    if hidden {
                        "***".to_owned()
                    } else {
                        v.into_owned()
                    },
                )
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

/// Several URLs (a cluster's nodes) redacted as [`redact_url`] does, comma-separated.
pub fn redact_urls(urls: &[SecretString]) -> String {
    urls.iter().map(redact_url).collect::<Vec<_>>().join(",")
}

impl Settings {
    /// Every key with the value in force, secrets shown only as set or not: what `bb2snyk config` prints.
    pub fn describe(&self) -> Vec<(&'static Key, String)> {
        let secret =
            |s: &Option<SecretString>| if s.is_some() { "(set)" } else { "(not set)" }.to_owned();
        let text = |s: &Option<String>| s.clone().unwrap_or_else(|| "(not set)".to_owned());
        fn list<T: ToString>(l: &[T], none: &str) -> String {
            if l.is_empty() {
                none.to_owned()
            } else {
                l.iter().map(T::to_string).collect::<Vec<_>>().join(",")
            }
        }
        KEYS.iter()
            .map(|k| {
                let value = match k.path {
                    "bitbucket.api_base" => self.bitbucket.api_base.to_string(),
                    "bitbucket.token_url" => self.bitbucket.token_url.to_string(),
                    "bitbucket.client_id" => text(&self.bitbucket.client_id),
                    "bitbucket.client_secret" => secret(&self.bitbucket.client_secret),
                    "bitbucket.credentials_file" => match &self.bitbucket.credentials_file {
                        Some(path) => format!(
                            "{} ({} consumers: {})",
                            path.display(),
                            self.bitbucket.consumers.len(),
                            self.bitbucket
                                .consumers
                                .iter()
                                .map(|c| c.client_id.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        None => "(not set)".to_owned(),
                    },
                    "bitbucket.auth" => match self.bitbucket.auth {
                        BitbucketAuth::OAuth => "oauth",
                        BitbucketAuth::AccessToken => "access-token",
                        BitbucketAuth::Basic => "basic",
                    }
                    .to_owned(),
                    "bitbucket.access_token" => secret(&self.bitbucket.access_token),
                    "bitbucket.username" => text(&self.bitbucket.username),
                    "bitbucket.password" => secret(&self.bitbucket.password),
                    "bitbucket.workspaces" => list(&self.bitbucket.workspaces, "(discover)"),
                    "bitbucket.rate_budget" => self.bitbucket.rate_budget.to_string(),
                    "bitbucket.rate_window_secs" => {
                        self.bitbucket.rate_window.as_secs().to_string()
                    }
                    "discovery.exclude_forks" => self.discovery.exclude_forks.to_string(),
                    "discovery.include" => list(&self.discovery.include, "(all)"),
                    "discovery.exclude" => list(&self.discovery.exclude, "(none)"),
                    "discovery.project_keys" => list(&self.discovery.project_keys, "(all)"),
                    "discovery.max_backlog" => self.backlog.limit.to_string(),
                    "discovery.backlog_pause_secs" => self.backlog.pause.as_secs().to_string(),
                    "discovery.updated_since" => self
                        .discovery
                        .updated_since
                        .as_ref()
                        .map_or_else(|| "(not set)".to_owned(), ToString::to_string),
                    "snyk.api_base" => self.snyk.api_base.to_string(),
                    "snyk.token" => secret(&self.snyk.token),
                    "snyk.tokens" => match self.snyk.tokens.len() {
                        0 => "(not set)".to_owned(),
                        n => format!("({n} set)"),
                    },
                    "snyk.rate_budget" => self.snyk.rate_budget.to_string(),
                    "snyk.rate_window_secs" => self.snyk.rate_window.as_secs().to_string(),
                    "snyk.integration_type" => text(&self.snyk.integration_type),
                    "snyk.quiet_notifications" => self.snyk.quiet_notifications.to_string(),
                    "amqp.url" => redact_urls(&self.amqp.urls),
                    "amqp.prefix" => self.amqp.prefix.clone(),
                    "amqp.connect_attempts" => self.amqp.connect_attempts.to_string(),
                    "amqp.expires_secs" => self
                        .amqp
                        .expires
                        .map(|d| d.as_secs().to_string())
                        .unwrap_or_else(|| "(never)".to_owned()),
                    "pipeline.retry_tiers_secs" => seconds(&self.pipeline.retry_tiers),
                    "pipeline.embedded_retry_tiers_secs" => {
                        seconds(&self.pipeline.embedded_retry_tiers)
                    }
                    "pipeline.max_attempts" => self.pipeline.max_attempts.to_string(),
                    "pipeline.max_message_bytes" => self.pipeline.max_message_bytes.to_string(),
                    "pipeline.max_hold_secs" => self.pipeline.max_hold.as_secs().to_string(),
                    "pipeline.fleet_size" => self.pipeline.fleet_size.to_string(),
                    "pipeline.drain_secs" => self.pipeline.drain.as_secs().to_string(),
                    "redis.url" => redact_url(&self.redis.url),
                    "redis.prefix" => self.redis.prefix.clone(),
                    "import.concurrent_imports" => self.import.concurrent_imports.to_string(),
                    "import.poll_first_secs" => self.import.poll_first.as_secs().to_string(),
                    "import.poll_floor_secs" => self.import.poll_floor.as_secs().to_string(),
                    "import.poll_max_secs" => self.import.poll_max.as_secs().to_string(),
                    "import.poll_growth_percent" => self.import.poll_growth_percent.to_string(),
                    "import.hint_yield" => self.import.hint_yield.to_string(),
                    "import.poll_quantile_percent" | "import.poll_margin_percent" => {
                        "(retired)".to_owned()
                    }
                    "import.log_path" => self.import.log_path.display().to_string(),
                    "http.timeout_secs" => self.http.timeout.as_secs().to_string(),
                    "http.connect_timeout_secs" => self.http.connect_timeout.as_secs().to_string(),
                    "metrics.listen" => self
                        .metrics
                        .listen
                        .map_or_else(|| "(off)".to_owned(), |a| a.to_string()),
                    other => format!("(no description for {other})"),
                };
                (k, value)
            })
            .collect()
    }
}

/// Durations as the comma-separated seconds they were set with.
fn seconds(tiers: &[Duration]) -> String {
    tiers
        .iter()
        .map(|d| d.as_secs().to_string())
        .collect::<Vec<_>>()
        .join(",")
}
