//! Every setting bb2snyk reads, in one table: its path in the TOML file, the snyk-api-import variable that
//! also sets it, its default and what it means. Defaults, error messages and `config/example.toml` all come
//! from here, so they cannot drift apart.
//!
//! Over 400 lines on purpose: one entry per setting, the whole table in one place.

#[derive(Debug)]
pub struct Key {
    /// `section.key`, as in the TOML file.
    pub path: &'static str,
    /// The variable snyk-api-import users already set (or one we added in the same style).
    pub env: Option<&'static str>,
    pub default: Option<&'static str>,
    pub secret: bool,
    pub help: &'static str,
}

impl Key {
    /// `BB2SNYK__SECTION__KEY`, the structured form that works for every key.
    pub fn structured_env(&self) -> String {
        format!("BB2SNYK__{}", self.path.replace('.', "__").to_uppercase())
    }

    /// How a person sets this key, for error messages: the familiar variable first.
    pub fn how_to_set(&self) -> String {
        let structured = self.structured_env();
        match self.env {
            Some(env) => format!(
                "set {env} (or {structured}, or {} in the config file)",
                self.path
            ),
            None => format!("set {structured} (or {} in the config file)", self.path),
        }
    }

    /// The name to show first when this key is wrong.
    pub fn name(&self) -> &'static str {
        self.env.unwrap_or(self.path)
    }
}

pub const KEYS: &[Key] = &[
    Key {
        path: "bitbucket.api_base",
        env: Some("BITBUCKET_APP_API_BASE"),
        default: Some("https://api.bitbucket.org/2.0"),
        secret: false,
        help: "Bitbucket Cloud REST API base URL",
    },
    Key {
        path: "bitbucket.token_url",
        env: Some("BITBUCKET_APP_TOKEN_URL"),
        default: Some("https://bitbucket.org/site/oauth2/access_token"),
        secret: false,
        help: "OAuth2 token endpoint for the client_credentials grant",
    },
    Key {
        path: "bitbucket.client_id",
        env: Some("BITBUCKET_APP_CLIENT_ID"),
        default: None,
        secret: false,
        help: "key of the private Bitbucket OAuth consumer",
    },
    Key {
        path: "bitbucket.client_secret",
        env: Some("BITBUCKET_APP_CLIENT_SECRET"),
        default: None,
        secret: true,
        help: "secret of the private Bitbucket OAuth consumer",
    },
    Key {
        path: "bitbucket.credentials_file",
        env: Some("BITBUCKET_APP_CREDENTIALS_FILE"),
        default: None,
        secret: false,
        help: "TOML file of several OAuth consumers ([[consumer]] client_id, client_secret, workspaces), one per workspace-owned consumer; replaces BITBUCKET_APP_CLIENT_ID/_SECRET",
    },
    Key {
        path: "bitbucket.auth",
        env: None,
        default: Some("oauth"),
        secret: false,
        help: "how bb2snyk signs in: oauth (a private OAuth consumer), access-token, or basic",
    },
    Key {
        path: "bitbucket.access_token",
        env: Some("BITBUCKET_ACCESS_TOKEN"),
        default: None,
        secret: true,
        help: "workspace, project or repository access token, for auth = access-token",
    },
    Key {
        path: "bitbucket.username",
        env: Some("BITBUCKET_CLOUD_USERNAME"),
        default: None,
        secret: false,
        help: "username or e-mail, for auth = basic",
    },
    Key {
        path: "bitbucket.password",
        env: Some("BITBUCKET_CLOUD_PASSWORD"),
        default: None,
        secret: true,
        help: "API token or app password, for auth = basic",
    },
    Key {
        path: "bitbucket.workspaces",
        env: None,
        default: None,
        secret: false,
        help: "workspace slugs to import, comma-separated; skips workspace discovery",
    },
    Key {
        path: "bitbucket.rate_budget",
        env: None,
        default: Some("950"),
        secret: false,
        help: "Bitbucket requests per window for the whole fleet (Bitbucket allows 1,000 an hour)",
    },
    Key {
        path: "bitbucket.rate_window_secs",
        env: None,
        default: Some("3600"),
        secret: false,
        help: "the rolling window Bitbucket counts requests over, in seconds",
    },
    Key {
        path: "snyk.api_base",
        env: Some("SNYK_API"),
        default: Some("https://api.snyk.io/v1"),
        secret: false,
        help: "Snyk v1 API base URL (api.eu.snyk.io, api.au.snyk.io for other regions)",
    },
    Key {
        path: "snyk.token",
        env: Some("SNYK_TOKEN"),
        default: None,
        secret: true,
        help: "Snyk API token with admin rights on the group",
    },
    Key {
        path: "snyk.tokens",
        env: Some("SNYK_TOKENS"),
        default: None,
        secret: true,
        help: "several Snyk API tokens of the same group, comma-separated (with SNYK_TOKEN: their union); each has its own rate limit",
    },
    Key {
        path: "snyk.rate_budget",
        env: None,
        default: Some("1800"),
        secret: false,
        help: "Snyk requests per window for the whole fleet (Snyk allows 2,000 a minute)",
    },
    Key {
        path: "snyk.rate_window_secs",
        env: None,
        default: Some("60"),
        secret: false,
        help: "the rolling window Snyk counts requests over, in seconds",
    },
    Key {
        path: "snyk.rest_rate_budget",
        env: None,
        default: Some("1450"),
        secret: false,
        help: "Snyk REST requests (targets, projects, retiring) per rolling window per token for the whole fleet, within rate_budget; Snyk allows 1,620 a minute per token on REST",
    },
    Key {
        path: "snyk.token_cooldown_secs",
        env: None,
        default: Some("600"),
        secret: false,
        help: "how long a Snyk token that was refused (401) stays out of the rotation before it is tried again; the last token in rotation is never taken out",
    },
    Key {
        path: "snyk.even_pace",
        env: None,
        default: Some("true"),
        secret: false,
        help: "spread Snyk requests evenly over the window (at most rate_budget / rate_window_secs in any second), so polls of finished jobs never wait out a window spent in its first seconds",
    },
    Key {
        path: "snyk.integration_type",
        env: None,
        default: None,
        secret: false,
        help: "integration type of the Bitbucket Cloud App in each org (default: bitbucket-connect-app, then bitbucket-cloud-app)",
    },
    Key {
        path: "snyk.quiet_notifications",
        env: None,
        default: Some("true"),
        secret: false,
        help: "turn off notification e-mails in every org bb2snyk ensures, as snyk-api-import does",
    },
    Key {
        path: "discovery.exclude_forks",
        env: None,
        default: Some("false"),
        secret: false,
        help: "skip forks (repositories with a parent)",
    },
    Key {
        path: "discovery.include",
        env: None,
        default: None,
        secret: false,
        help: "import only repository slugs matching one of these globs, comma-separated",
    },
    Key {
        path: "discovery.exclude",
        env: None,
        default: None,
        secret: false,
        help: "skip repository slugs matching any of these globs, comma-separated",
    },
    Key {
        path: "discovery.project_keys",
        env: None,
        default: None,
        secret: false,
        help: "import only repositories in these Bitbucket projects, by key, comma-separated",
    },
    Key {
        path: "discovery.updated_since",
        env: None,
        default: None,
        secret: false,
        help: "import only repositories updated on or after this date (YYYY-MM-DD)",
    },
    Key {
        path: "discovery.max_backlog",
        env: None,
        default: Some("5000"),
        secret: false,
        help: "discovery pauses a workspace's paging while the importer's queue holds more than this many messages, so the queue stays flat however large the tenant",
    },
    Key {
        path: "discovery.backlog_pause_secs",
        env: None,
        default: Some("5"),
        secret: false,
        help: "how long a paused page waits before it looks at the importer's queue again",
    },
    Key {
        path: "amqp.url",
        env: Some("AMQP_URL"),
        default: Some("amqp://guest:guest@127.0.0.1:5672/%2f"),
        secret: true,
        help: "RabbitMQ URL (amqp:// or amqps://, vhost URL-encoded); a cluster's nodes as several, comma-separated, tried in order",
    },
    Key {
        path: "amqp.prefix",
        env: None,
        default: Some("bb2snyk"),
        secret: false,
        help: "prefix of every exchange and queue name",
    },
    Key {
        path: "amqp.connect_attempts",
        env: None,
        default: Some("8"),
        secret: false,
        help: "TCP attempts, with backoff, before RabbitMQ counts as unreachable (start-up and recovery)",
    },
    Key {
        path: "amqp.expires_secs",
        env: None,
        default: None,
        secret: false,
        help: "queues of this deployment are deleted after this long unused (for rehearsals and tests; not in production); longer than the longest run, as queues without consumers (retry tiers, delays, parking) count as unused while messages pass through them",
    },
    Key {
        path: "pipeline.retry_tiers_secs",
        env: None,
        default: Some("10,60,600,3600"),
        secret: false,
        help: "waits before each retry of a message, in seconds, comma-separated; the last repeats",
    },
    Key {
        path: "pipeline.embedded_retry_tiers_secs",
        env: None,
        default: Some("2,10,30"),
        secret: false,
        help: "retry waits for the one-process commands (run, import, demo), so they end in minutes; what still fails is retried by the next run",
    },
    Key {
        path: "pipeline.max_attempts",
        env: None,
        default: Some("6"),
        secret: false,
        help: "tries of one message, the first included, before it is parked with its reason",
    },
    Key {
        path: "pipeline.max_message_bytes",
        env: None,
        default: Some("1048576"),
        secret: false,
        help: "the largest message body a stage reads; a larger one is parked unread",
    },
    Key {
        path: "pipeline.max_hold_secs",
        env: None,
        default: Some("300"),
        secret: false,
        help: "the longest a stage waits for a rate budget (or a 429 pause) while holding a delivery; past it the message comes back later through a retry tier (keep it well under RabbitMQ's consumer_timeout, 30 min by default)",
    },
    Key {
        path: "pipeline.fleet_size",
        env: None,
        default: Some("4"),
        secret: false,
        help: "processes that share the rate budgets (discoverers, org-creators, importers); while Redis is away each keeps to its share, so the fleet stays under the APIs' limits",
    },
    Key {
        path: "pipeline.drain_secs",
        env: None,
        default: Some("30"),
        secret: false,
        help: "on SIGTERM, how long in-flight messages may take to finish before the service exits",
    },
    Key {
        path: "redis.url",
        env: Some("REDIS_URL"),
        default: Some("redis://127.0.0.1:6379"),
        secret: true,
        help: "Redis URL (redis:// or rediss://)",
    },
    Key {
        path: "redis.prefix",
        env: None,
        default: Some("bb2snyk:"),
        secret: false,
        help: "prefix of every Redis key",
    },
    Key {
        path: "redis.run_ttl_days",
        env: None,
        default: Some("30"),
        secret: false,
        help: "a run's counts in Redis (run:<run>:*) are kept this many days after the run's last write",
    },
    Key {
        path: "import.concurrent_imports",
        env: Some("CONCURRENT_IMPORTS"),
        default: Some("15"),
        secret: false,
        help: "imports in flight per importer (1 to 50)",
    },
    Key {
        path: "import.poll_first_secs",
        env: None,
        default: Some("5"),
        secret: false,
        help: "the wait before an import job's first poll, unless listings tell of jobs' ends and the importer follows 160 jobs or more (then it is a safety net at `poll_max_secs`); later polls come as the job ages",
    },
    Key {
        path: "import.poll_floor_secs",
        env: None,
        default: Some("1"),
        secret: false,
        help: "the shortest wait between two polls of one import job",
    },
    Key {
        path: "import.poll_max_secs",
        env: None,
        default: Some("60"),
        secret: false,
        help: "the longest wait between two polls of one import job; while listings tell of jobs' ends, every poll of a job is a safety net this long after the last",
    },
    Key {
        path: "import.poll_growth_percent",
        env: None,
        default: Some("50"),
        secret: false,
        help: "a pending job is polled again when its age has grown by this much (50: at 1.5 times its age)",
    },
    Key {
        path: "import.poll_quantile_percent",
        env: None,
        default: None,
        secret: false,
        help: "retired: no longer read (first polls come at `poll_first_secs`); accepted so that older files still load",
    },
    Key {
        path: "import.poll_margin_percent",
        env: None,
        default: None,
        secret: false,
        help: "retired: no longer read (first polls come at `poll_first_secs`); accepted so that older files still load",
    },
    Key {
        path: "import.hint_yield",
        env: None,
        default: Some("12"),
        secret: false,
        help: "list an org's new Snyk targets (one request telling which jobs are done) once this many of its jobs are expected done since the last listing; 0 turns listing off",
    },
    Key {
        path: "import.log_path",
        env: Some("SNYK_LOG_PATH"),
        default: Some("."),
        secret: false,
        help: "folder for the seed workflow's files and logs (a leading ~ expands)",
    },
    Key {
        path: "sync.max_retire_percent",
        env: None,
        default: Some("10"),
        secret: false,
        help: "a sync that would retire more than this share of an org's active projects stops before acting (exit 5) unless --allow-mass-retire",
    },
    Key {
        path: "sync.max_retire_count",
        env: None,
        default: Some("50"),
        secret: false,
        help: "a sync that would retire more than this many projects of one org stops before acting (exit 5) unless --allow-mass-retire",
    },
    Key {
        path: "policy.file",
        env: None,
        default: None,
        secret: false,
        help: "the import policy, a TOML file of [[rule]] tables: tags, attributes, exclusion globs, extra branches and skips by rule (docs/policy.md); --policy=FILE for one command",
    },
    Key {
        path: "sync.allow_mass_retire",
        env: None,
        default: Some("false"),
        secret: false,
        help: "let every sync pass the brake of sync.max_retire_percent and sync.max_retire_count (the CronJob leaves it off)",
    },
    Key {
        path: "http.timeout_secs",
        env: None,
        default: Some("30"),
        secret: false,
        help: "whole-request timeout for Bitbucket and Snyk calls, in seconds",
    },
    Key {
        path: "metrics.listen",
        env: None,
        default: Some("0.0.0.0:9600"),
        secret: false,
        help: "where each service serves /metrics, /healthz and /readyz (host:port; empty turns them off; the default gives way to a free port when another replica on the host holds it)",
    },
    Key {
        path: "http.connect_timeout_secs",
        env: None,
        default: Some("5"),
        secret: false,
        help: "TCP and TLS connect timeout, in seconds",
    },
];

pub fn key(path: &str) -> &'static Key {
    KEYS.iter()
        .find(|k| k.path == path)
        .unwrap_or_else(|| panic!("settings key {path} is not in KEYS"))
}
