//! Everything about the sandbox that a test, a benchmark or a rehearsing user may want to turn. The same
//! struct is the `sandbox` command line, the `PATCH /_sandbox/knobs` body and what tests set in code.
//! Tenant knobs (seed, sizes, rates) apply when the sandbox starts; the others apply at once.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
#[serde(default)]
pub struct Knobs {
    /// Seed of the generated tenant: the same seed gives the same workspaces and repositories.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Number of workspaces.
    #[arg(long, default_value_t = 3)]
    pub workspaces: usize,
    /// Repositories in each workspace (see --repo-counts for uneven tenants).
    #[arg(long, default_value_t = 12)]
    pub repos_per_workspace: usize,
    /// Repositories per workspace, comma-separated, cycled over the workspaces; overrides --repos-per-workspace.
    #[arg(long, value_delimiter = ',')]
    pub repo_counts: Vec<usize>,
    /// Pairs of workspaces that share one display name (workspace 1 takes 0's, 3 takes 2's, ...).
    #[arg(long, default_value_t = 0)]
    pub shared_names: usize,
    /// Share of repositories that are forks (they carry `parent`).
    #[arg(long, default_value_t = 0.1)]
    pub fork_rate: f64,
    /// Share of repositories that are empty (no `mainbranch`).
    #[arg(long, default_value_t = 0.05)]
    pub empty_rate: f64,
    /// Share of non-empty repositories whose import POST answers 400.
    #[arg(long, default_value_t = 0.0)]
    pub poison_post_rate: f64,
    /// Share of non-empty repositories whose import job ends `failed`.
    #[arg(long, default_value_t = 0.0)]
    pub poison_job_rate: f64,
    /// Stop poisoning: poison repositories import normally while this is set.
    #[arg(long)]
    pub poison_paused: bool,

    /// The OAuth consumer's key.
    #[arg(long, default_value = "sandbox-client-id")]
    pub client_id: String,
    /// The OAuth consumer's secret.
    #[arg(long, default_value = "sandbox-client-secret")]
    pub client_secret: String,
    /// Workspace-owned consumers besides the main one: consumer i is `<client-id>-i` / `<client-secret>-i`
    /// and sees only the workspaces whose index is i modulo this (as a consumer of a personal workspace
    /// does since 2026-05-04), with a Bitbucket rate limit of its own.
    #[arg(long, default_value_t = 0)]
    pub consumers: usize,
    /// Workspace-owned consumers that were revoked: their secret and tokens are refused.
    #[arg(long, value_delimiter = ',')]
    pub revoked_consumers: Vec<usize>,
    /// Make the consumer public, so client_credentials fails as it does on Bitbucket.
    #[arg(long)]
    pub public_consumer: bool,
    /// Scopes granted to the consumer, space-separated.
    #[arg(long, default_value = "account repository project team")]
    pub scopes: String,
    /// Lifetime of issued Bearer tokens, in seconds.
    #[arg(long, default_value_t = 7200)]
    pub token_expires_in: u64,
    /// Token response form: `legacy` (scopes + refresh_token) or `2026` (scope, no refresh_token).
    #[arg(long, default_value = "legacy")]
    pub token_format: String,
    /// Pre-issued Bearer access tokens (workspace, project or repository tokens) that never expire.
    #[arg(long = "access-token")]
    pub access_tokens: Vec<String>,
    /// `user:password` pairs accepted with Basic auth (API tokens, app passwords).
    #[arg(long = "basic-credential")]
    pub basic_credentials: Vec<String>,
    /// `/2.0/user/workspaces` answers 410 (CHANGE-2770).
    #[arg(long)]
    pub user_workspaces_gone: bool,
    /// `/2.0/workspaces` answers 410 (CHANGE-2770).
    #[arg(long)]
    pub workspaces_gone: bool,

    /// The Snyk API token the sandbox accepts.
    #[arg(long, default_value = "sandbox-snyk-token")]
    pub snyk_token: String,
    /// More Snyk API tokens of the same group, each with a rate limit of its own.
    #[arg(long, value_delimiter = ',')]
    pub snyk_tokens: Vec<String>,
    /// The Snyk group's id.
    #[arg(long, default_value = "00000000-0000-4000-8000-00000000a11a")]
    pub group_id: String,
    /// Orgs that exist in the group before anything runs, by name.
    #[arg(long = "existing-org")]
    pub existing_orgs: Vec<String>,
    /// New orgs get no Bitbucket Cloud App integration (the app is not connected).
    #[arg(long)]
    pub orgs_without_app_integration: bool,
    /// Time from import to a finished job, in milliseconds: every job's (`--job-spread fixed`), the low end
    /// (`uniform`), or the median (`long-tail`).
    #[arg(long, default_value_t = 2000)]
    pub job_ms: u64,
    /// How job durations spread: `fixed` (all `job_ms`), `uniform` (between `job_ms` and `job_max_ms`), or
    /// `long-tail` (log-normal around `job_ms`: most near it, a few many times longer, capped at `job_max_ms`).
    #[arg(long, default_value = "fixed")]
    pub job_spread: String,
    /// The longest job, for `uniform` and `long-tail`, in milliseconds.
    #[arg(long, default_value_t = 60_000)]
    pub job_max_ms: u64,

    /// Added to every API response, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Share of API requests answered with a 5xx.
    #[arg(long, default_value_t = 0.0)]
    pub fault_rate: f64,
    /// Lists never end: every Bitbucket list names its own page as `next`, and Snyk's org list ignores `page`.
    #[arg(long)]
    pub loop_pages: bool,
    /// Bytes of padding added to every Bitbucket list answer (an oversized body).
    #[arg(long, default_value_t = 0)]
    pub padding_bytes: usize,
    /// Every this-many-th repository of a workspace is documentation (`<noun>-<n>-docs`), for policies that
    /// skip it; 0, none (the rest of the tenant is generated as without it).
    #[arg(long, default_value_t = 0)]
    pub docs_every: usize,
    /// Repositories (`workspace/slug`) no token sees: left out of listings, and a GET of one answers 403,
    /// as to a credential that sees only part of a workspace.
    #[arg(long, value_delimiter = ',')]
    pub hidden_repos: Vec<String>,
    /// The form of REST `next` links: `relative` (`/orgs/…`, as documented), `prefixed` (`/rest/orgs/…`, as
    /// Snyk has also answered), or `per-org` (each org one or the other, by its id).
    #[arg(long, default_value = "relative")]
    pub rest_links: String,
    /// REST pages hold at most this many items, whatever `limit` asks (unlimited when absent).
    #[arg(long)]
    pub rest_page_limit: Option<usize>,
    /// Share of Snyk POSTs (org creation, import) answered 502 after they took effect: a ghost write, as
    /// when a proxy times out after Snyk committed.
    #[arg(long, default_value_t = 0.0)]
    pub ghost_rate: f64,
    /// Share of token requests answered 503 (the exchange is retried by a careful client).
    #[arg(long, default_value_t = 0.0)]
    pub token_fault_rate: f64,
    /// Share of token requests answered 429 (with `Retry-After: 1`).
    #[arg(long, default_value_t = 0.0)]
    pub token_429_rate: f64,
    /// Bitbucket API requests allowed per window for the consumer (unlimited when absent).
    #[arg(long)]
    pub bitbucket_rate_limit: Option<u32>,
    /// Bitbucket's rolling window, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub bitbucket_window_secs: u64,
    /// Snyk API requests allowed per window (unlimited when absent).
    #[arg(long)]
    pub snyk_rate_limit: Option<u32>,
    /// Snyk's rolling window, in seconds.
    #[arg(long, default_value_t = 60)]
    pub snyk_window_secs: u64,
    /// Send 429s without `Retry-After` (Atlassian does not document the header).
    #[arg(long)]
    pub omit_retry_after: bool,
    /// Send Bitbucket's 429 body as plain text instead of the JSON envelope.
    #[arg(long)]
    pub plain_text_429: bool,
}

#[derive(clap::Parser)]
struct Defaults {
    #[command(flatten)]
    knobs: Knobs,
}

impl Default for Knobs {
    fn default() -> Self {
        use clap::Parser;
        // The defaults are the command line's, so the two cannot disagree.
        Defaults::try_parse_from(["sandbox"])
            .map(|d| d.knobs)
            .unwrap_or_else(|e| panic!("sandbox defaults: {e}"))
    }
}

impl Knobs {
    pub fn repo_count(&self, workspace: usize) -> usize {
        match self.repo_counts.as_slice() {
            [] => self.repos_per_workspace,
            counts => counts[workspace % counts.len()],
        }
    }

    /// The workspace-owned consumer `index`'s key and secret.
    pub fn consumer(&self, index: usize) -> (String, String) {
        (
            format!("{}-{index}", self.client_id),
            format!("{}-{index}", self.client_secret),
        )
    }

    /// Whether a token of `consumer` (`None`: the main one, which sees every workspace) sees workspace
    /// number `workspace`.
    pub fn sees(&self, consumer: Option<usize>, workspace: usize) -> bool {
        match consumer {
            None => true,
            Some(c) => self.consumers > 0 && workspace % self.consumers == c,
        }
    }

    /// The Snyk token's number (0 for `snyk_token`, then `snyk_tokens` in order), if it is accepted.
    pub fn snyk_token_index(&self, sent: &str) -> Option<usize> {
        std::iter::once(&self.snyk_token)
            .chain(&self.snyk_tokens)
            .position(|t| t == sent)
    }

    /// Whether REST `next` links for `org_id` carry the `/rest` prefix.
    pub fn prefixed_links(&self, org_id: &str) -> bool {
        match self.rest_links.as_str() {
            "prefixed" => true,
            "per-org" => {
                org_id
                    .bytes()
                    .fold(0u32, |h, b| h.wrapping_add(u32::from(b)))
                    % 2
                    == 1
            }
            _ => false,
        }
    }

    pub fn legacy_tokens(&self) -> bool {
        self.token_format != "2026"
    }
}
