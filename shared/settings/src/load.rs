//! Loading settings: the layers merged by `config`, each value checked into its type with an error that
//! names the key or variable and how to fix it.
//!
//! Over 400 lines on purpose: one check per setting, in the order of the key table.

use std::{collections::HashMap, ops::RangeInclusive, path::PathBuf, time::Duration};

use config::{Config, Environment, FileFormat, Map, Source, ValueKind};
use secrecy::SecretString;
use url::Url;

use seed_env::SeedEnv;

use crate::{
    AmqpSettings, BacklogSettings, BitbucketAuth, BitbucketSettings, ConfigError, Filters,
    HttpSettings, ImportSettings, MetricsSettings, PipelineSettings, RedisSettings, Settings,
    SnykSettings, SyncSettings,
    keys::{KEYS, key},
};

const STRUCTURED_PREFIX: &str = "BB2SNYK__";

/// Where settings come from. Tests build one by hand instead of touching the process environment.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub file: Option<PathBuf>,
    pub env: HashMap<String, String>,
}

impl Sources {
    /// The process environment, and the file given by `--config` or else `BB2SNYK_CONFIG`.
    pub fn from_process(config_flag: Option<PathBuf>) -> Self {
        let env: HashMap<String, String> = std::env::vars().collect();
        let file = config_flag.or_else(|| {
            env.get("BB2SNYK_CONFIG")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
        });
        Self { file, env }
    }
}

pub fn load(sources: &Sources) -> Result<Settings, ConfigError> {
    let mut builder = Config::builder();
    for k in KEYS {
        if let Some(default) = k.default {
            builder = builder
                .set_default(k.path, default)
                .map_err(|e| ConfigError::invalid(k, e.to_string()))?;
        }
    }
    if let Some(path) = &sources.file {
        builder = builder.add_source(checked_file(path)?);
    }
    check_structured_env(&sources.env)?;
    let structured: Map<String, String> = sources
        .env
        .iter()
        .filter(|(k, _)| k.starts_with(STRUCTURED_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let config = builder
        .add_source(SeedEnv::new(&sources.env))
        .add_source(
            Environment::with_prefix("BB2SNYK")
                .prefix_separator("__")
                .separator("__")
                .source(Some(structured)),
        )
        .build()
        .map_err(|e| ConfigError::File {
            path: "<settings>".into(),
            problem: e.to_string(),
        })?;
    let mut settings = read(&Reader(config), sources.env.get("HOME").map(PathBuf::from))?;
    settings.metrics.fixed = sources.env.contains_key("BB2SNYK__METRICS__LISTEN")
        || match &sources.file {
            Some(path) => Config::builder()
                .add_source(checked_file(path)?)
                .build()
                .is_ok_and(|file| file.get_string("metrics.listen").is_ok()),
            None => false,
        };
    consumers(&mut settings)?;
    Ok(settings)
}

/// Reads the credentials file, if one is set: it replaces the single consumer, so setting both is refused
/// rather than one silently ignored.
fn consumers(settings: &mut Settings) -> Result<(), ConfigError> {
    let b = &mut settings.bitbucket;
    let Some(path) = &b.credentials_file else {
        return Ok(());
    };
    let file = key("bitbucket.credentials_file");
    if b.client_id.is_some() || b.client_secret.is_some() {
        return Err(ConfigError::invalid(
            file,
            "BITBUCKET_APP_CREDENTIALS_FILE and BITBUCKET_APP_CLIENT_ID/BITBUCKET_APP_CLIENT_SECRET are both set; \
             put that consumer in the file as a [[consumer]] table and unset the pair",
        ));
    }
    if b.auth != BitbucketAuth::OAuth {
        return Err(ConfigError::invalid(
            file,
            "the credentials file holds OAuth consumers, but bitbucket.auth is not oauth",
        ));
    }
    b.consumers = crate::consumers::read(path)?;
    Ok(())
}

fn read(r: &Reader, home: Option<PathBuf>) -> Result<Settings, ConfigError> {
    Ok(Settings {
        bitbucket: BitbucketSettings {
            api_base: r.http_url("bitbucket.api_base")?,
            token_url: r.http_url("bitbucket.token_url")?,
            client_id: r.text("bitbucket.client_id")?,
            client_secret: r.text("bitbucket.client_secret")?.map(SecretString::from),
            credentials_file: r.text("bitbucket.credentials_file")?.map(PathBuf::from),
            consumers: Vec::new(),
            auth: r.auth("bitbucket.auth")?,
            access_token: r.text("bitbucket.access_token")?.map(SecretString::from),
            username: r.text("bitbucket.username")?,
            password: r.text("bitbucket.password")?.map(SecretString::from),
            workspaces: r.list("bitbucket.workspaces")?,
            rate_budget: r.number("bitbucket.rate_budget", 1..=100_000)? as u32,
            rate_window: Duration::from_secs(r.number("bitbucket.rate_window_secs", 1..=86_400)?),
        },
        discovery: Filters {
            exclude_forks: r.flag("discovery.exclude_forks")?,
            include: r.parsed("discovery.include")?,
            exclude: r.parsed("discovery.exclude")?,
            project_keys: r.list("discovery.project_keys")?,
            updated_since: r.date("discovery.updated_since")?,
        },
        backlog: BacklogSettings {
            limit: r.number("discovery.max_backlog", 100..=10_000_000)?,
            pause: Duration::from_secs(r.number("discovery.backlog_pause_secs", 1..=3600)?),
        },
        snyk: SnykSettings {
            api_base: r.http_url("snyk.api_base")?,
            token: r.text("snyk.token")?.map(SecretString::from),
            tokens: r
                .list("snyk.tokens")?
                .into_iter()
                .map(SecretString::from)
                .collect(),
            rate_budget: r.number("snyk.rate_budget", 1..=100_000)? as u32,
            rate_window: Duration::from_secs(r.number("snyk.rate_window_secs", 1..=3600)?),
            rest_rate_budget: r.number("snyk.rest_rate_budget", 1..=100_000)? as u32,
            even_pace: r.flag("snyk.even_pace")?,
            token_cooldown: Duration::from_secs(r.number("snyk.token_cooldown_secs", 1..=86_400)?),
            integration_type: r.text("snyk.integration_type")?,
            quiet_notifications: r.flag("snyk.quiet_notifications")?,
        },
        amqp: AmqpSettings {
            urls: r.urls("amqp.url", &["amqp", "amqps"])?,
            prefix: r.name("amqp.prefix")?,
            connect_attempts: r.number("amqp.connect_attempts", 1..=100)? as u32,
            expires: match r.text("amqp.expires_secs")? {
                None => None,
                Some(_) => Some(Duration::from_secs(
                    r.number("amqp.expires_secs", 10..=604_800)?,
                )),
            },
        },
        pipeline: PipelineSettings {
            retry_tiers: r.durations("pipeline.retry_tiers_secs")?,
            embedded_retry_tiers: r.durations("pipeline.embedded_retry_tiers_secs")?,
            max_attempts: r.number("pipeline.max_attempts", 1..=100)? as u32,
            max_message_bytes: r.number("pipeline.max_message_bytes", 1024..=16 * 1024 * 1024)?
                as usize,
            max_hold: Duration::from_secs(r.number("pipeline.max_hold_secs", 1..=1500)?),
            fleet_size: r.number("pipeline.fleet_size", 1..=1000)? as u32,
            drain: Duration::from_secs(r.number("pipeline.drain_secs", 1..=3600)?),
        },
        redis: RedisSettings {
            url: SecretString::from(
                r.url("redis.url", &["redis", "rediss", "unix"])?
                    .to_string(),
            ),
            prefix: r.name("redis.prefix")?,
            run_ttl: Duration::from_secs(r.number("redis.run_ttl_days", 1..=3650)? * 24 * 3600),
        },
        import: ImportSettings {
            concurrent_imports: r.number("import.concurrent_imports", 1..=50)? as u32,
            poll_first: Duration::from_secs(r.number("import.poll_first_secs", 1..=3600)?),
            poll_floor: Duration::from_secs(r.number("import.poll_floor_secs", 1..=600)?),
            poll_max: Duration::from_secs(r.number("import.poll_max_secs", 1..=3600)?),
            poll_growth_percent: r.number("import.poll_growth_percent", 10..=400)? as u32,
            hint_yield: r.number("import.hint_yield", 0..=100)? as u32,
            log_path: expand_home(&r.required("import.log_path")?, home),
        },
        sync: SyncSettings {
            max_retire_percent: r.number("sync.max_retire_percent", 0..=100)? as u32,
            max_retire_count: r.number("sync.max_retire_count", 0..=1_000_000)? as u32,
            allow_mass_retire: r.flag("sync.allow_mass_retire")?,
        },
        policy_file: r.text("policy.file")?.map(PathBuf::from),
        metrics: MetricsSettings {
            listen: r.address("metrics.listen")?,
            fixed: false,
        },
        http: HttpSettings {
            timeout: Duration::from_secs(r.number("http.timeout_secs", 1..=600)?),
            connect_timeout: Duration::from_secs(r.number("http.connect_timeout_secs", 1..=120)?),
        },
    })
}

/// Reads typed values and words each failure for the person who has to fix it.
struct Reader(Config);

/// `raw` as a URL of one of `schemes`; errors call it `which` when the key is secret (never echo a value
/// that may hold a password), else quote it.
fn parse_url(
    k: &'static crate::Key,
    raw: &str,
    which: &str,
    schemes: &[&str],
) -> Result<Url, ConfigError> {
    let shown = if k.secret {
        which.to_owned()
    } else {
        format!("{raw:?}")
    };
    let url = Url::parse(raw)
        .map_err(|e| ConfigError::invalid(k, format!("{shown} is not a URL: {e}")))?;
    if !schemes.contains(&url.scheme()) || url.cannot_be_a_base() {
        return Err(ConfigError::invalid(
            k,
            format!("{shown} must start with {}://", schemes.join("://, ")),
        ));
    }
    Ok(url)
}

impl Reader {
    /// A value, or `None` when it is absent or blank.
    fn text(&self, path: &str) -> Result<Option<String>, ConfigError> {
        match self.0.get_string(path) {
            Ok(s) if s.trim().is_empty() => Ok(None),
            Ok(s) => Ok(Some(s.trim().to_owned())),
            Err(config::ConfigError::NotFound(_)) => Ok(None),
            Err(e) => Err(ConfigError::invalid(key(path), e.to_string())),
        }
    }

    fn required(&self, path: &str) -> Result<String, ConfigError> {
        self.text(path)?
            .ok_or_else(|| ConfigError::missing(key(path)))
    }

    fn url(&self, path: &str, schemes: &[&str]) -> Result<Url, ConfigError> {
        let raw = self.required(path)?;
        parse_url(key(path), &raw, "the value", schemes)
    }

    /// One URL or several, comma-separated (a cluster's nodes), each checked as [`Self::url`] checks one.
    fn urls(&self, path: &str, schemes: &[&str]) -> Result<Vec<SecretString>, ConfigError> {
        /// More is a mistake: a cluster has a handful of nodes.
        const MAX: usize = 16;
        let raw = self.required(path)?;
        let parts: Vec<&str> = raw.split(',').map(str::trim).collect();
        if parts.len() > MAX {
            return Err(ConfigError::invalid(
                key(path),
                format!("it holds {} URLs; at most {MAX}, one per node", parts.len()),
            ));
        }
        let mut urls = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let which = match parts.len() {
                1 => "the value".to_owned(),
                n => format!("URL {} of {n}", i + 1),
            };
            let url = parse_url(key(path), part, &which, schemes)?;
            urls.push(SecretString::from(url.to_string()));
        }
        Ok(urls)
    }

    /// `host:port`, or nothing (empty) to turn the feature off.
    fn address(&self, path: &str) -> Result<Option<std::net::SocketAddr>, ConfigError> {
        self.text(path)?
            .map(|raw| {
                raw.parse().map_err(|_| {
                    ConfigError::invalid(
                        key(path),
                        format!("{raw:?} is not host:port, like 0.0.0.0:9600"),
                    )
                })
            })
            .transpose()
    }

    /// A comma-separated list, blanks dropped.
    fn list(&self, path: &str) -> Result<Vec<String>, ConfigError> {
        Ok(self
            .text(path)?
            .map(|s| {
                s.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Whole seconds, comma-separated, at least one, each from 1 s to a day.
    fn durations(&self, path: &str) -> Result<Vec<Duration>, ConfigError> {
        let items = self.list(path)?;
        let parsed: Option<Vec<Duration>> = items
            .iter()
            .map(|s| {
                s.parse::<u64>()
                    .ok()
                    .filter(|n| (1..=86_400).contains(n))
                    .map(Duration::from_secs)
            })
            .collect();
        match parsed {
            Some(tiers) if !tiers.is_empty() => Ok(tiers),
            _ => Err(ConfigError::invalid(
                key(path),
                format!(
                    "{:?} is not a list of seconds like 10,60,600",
                    items.join(",")
                ),
            )),
        }
    }

    /// Each item parsed by `T`'s own rules (globs and dates are [`Filters`]' types), its error kept.
    fn parsed<T: std::str::FromStr<Err = String>>(
        &self,
        path: &str,
    ) -> Result<Vec<T>, ConfigError> {
        self.list(path)?
            .iter()
            .map(|item| item.parse().map_err(|e| ConfigError::invalid(key(path), e)))
            .collect()
    }

    fn flag(&self, path: &str) -> Result<bool, ConfigError> {
        match self.required(path)?.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            other => Err(ConfigError::invalid(
                key(path),
                format!("{other:?} is not true or false"),
            )),
        }
    }

    /// `YYYY-MM-DD`, the form Bitbucket's `updated_on` begins with.
    fn date(&self, path: &str) -> Result<Option<bb2snyk_filters::Date>, ConfigError> {
        self.text(path)?
            .map(|value| {
                value
                    .parse()
                    .map_err(|e| ConfigError::invalid(key(path), e))
            })
            .transpose()
    }

    fn auth(&self, path: &str) -> Result<BitbucketAuth, ConfigError> {
        match self.required(path)?.to_ascii_lowercase().as_str() {
            "oauth" => Ok(BitbucketAuth::OAuth),
            "access-token" | "access_token" => Ok(BitbucketAuth::AccessToken),
            "basic" => Ok(BitbucketAuth::Basic),
            other => Err(ConfigError::invalid(
                key(path),
                format!("{other:?} is not oauth, access-token or basic"),
            )),
        }
    }

    fn http_url(&self, path: &str) -> Result<Url, ConfigError> {
        self.url(path, &["https", "http"])
    }

    /// A prefix for queue or key names: printable, no spaces.
    fn name(&self, path: &str) -> Result<String, ConfigError> {
        let value = self.required(path)?;
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ConfigError::invalid(
                key(path),
                format!("{value:?} must not contain spaces"),
            ));
        }
        Ok(value)
    }

    fn number(&self, path: &str, range: RangeInclusive<u64>) -> Result<u64, ConfigError> {
        let raw = self.required(path)?;
        let out_of_range = || {
            ConfigError::invalid(
                key(path),
                format!(
                    "{raw:?} is not a whole number from {} to {}",
                    range.start(),
                    range.end()
                ),
            )
        };
        let n: u64 = raw.parse().map_err(|_| out_of_range())?;
        if range.contains(&n) {
            Ok(n)
        } else {
            Err(out_of_range())
        }
    }
}

fn expand_home(path: &str, home: Option<PathBuf>) -> PathBuf {
    match (path.strip_prefix('~'), home) {
        (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with('/') => {
            home.join(rest.trim_start_matches('/'))
        }
        _ => PathBuf::from(path),
    }
}

/// The file as a source, after checking that it exists, parses, and names only keys we know.
fn checked_file(
    path: &std::path::Path,
) -> Result<config::File<config::FileSourceFile, FileFormat>, ConfigError> {
    let shown = path.display().to_string();
    let file_error = |problem: String| ConfigError::File {
        path: shown.clone(),
        problem,
    };
    if !path.is_file() {
        return Err(file_error(
            "not found: pass an existing TOML file with --config or BB2SNYK_CONFIG".into(),
        ));
    }
    let source = config::File::from(path)
        .format(FileFormat::Toml)
        .required(true);
    // The parser's own message quotes the offending line, which may hold a secret: only its place is told.
    let text = std::fs::read_to_string(path).map_err(|e| file_error(format!("unreadable: {e}")))?;
    if let Err(e) = toml::from_str::<toml::Table>(&text) {
        let at = e.span().map_or_else(String::new, |span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!(" at line {line}, column {column}")
        });
        return Err(file_error(format!(
            "not valid TOML{at}; the parser's words are withheld because they quote the line, which may hold a secret"
        )));
    }
    let table = source
        .collect()
        .map_err(|_| file_error("not valid TOML".into()))?;
    for (section, value) in table {
        let entries = match value.kind {
            ValueKind::Table(entries) => entries,
            _ => {
                return Err(file_error(format!(
                    "`{section}` must be a [section]; see config/example.toml"
                )));
            }
        };
        for name in entries.keys() {
            let path = format!("{section}.{name}");
            if !KEYS.iter().any(|k| k.path == path) {
                return Err(file_error(format!(
                    "unknown key `{path}`; see config/example.toml for every key"
                )));
            }
        }
    }
    Ok(source)
}

/// A misspelt `BB2SNYK__` variable would otherwise be ignored without a word.
fn check_structured_env(env: &HashMap<String, String>) -> Result<(), ConfigError> {
    for name in env.keys().filter(|k| k.starts_with(STRUCTURED_PREFIX)) {
        if !KEYS.iter().any(|k| k.structured_env() == *name) {
            return Err(ConfigError::File {
                path: "environment".into(),
                problem: format!("unknown variable {name}; see config/example.toml for every key"),
            });
        }
    }
    Ok(())
}

mod seed_env;
#[cfg(test)]
mod tests;
