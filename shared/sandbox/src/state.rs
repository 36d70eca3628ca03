//! The sandbox's mutable world. One mutex: handlers lock, change, unlock, and never await while holding it.
//!
//! Over 400 lines on purpose: every counter and rule the control endpoints report or change lives under
//! the one mutex, so the state that must change together is written together.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use serde::Serialize;

use crate::{
    knobs::Knobs,
    tenant::{self, Poison, Rng, Workspace},
};

#[derive(Debug)]
pub struct Shared(Mutex<State>);

impl Shared {
    pub fn new(knobs: Knobs) -> Self {
        Self(Mutex::new(State::new(knobs)))
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A handler that panicked left nothing half-written that matters to a simulator.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug)]
pub struct State {
    pub knobs: Knobs,
    pub tenant: Vec<Workspace>,
    pub rng: Rng,
    pub tokens: HashMap<String, Token>,
    pub orgs: Vec<Org>,
    pub jobs: HashMap<String, Job>,
    /// Per consumer (`None`: the main one, and requests no token names): each user has its own limit.
    pub bitbucket_window: HashMap<Option<usize>, SlidingWindow>,
    /// Per Snyk token number (`None`: a token the sandbox does not know).
    pub snyk_window: HashMap<Option<usize>, SlidingWindow>,
    pub counters: Counters,
    /// Projects deactivated (`POST /v1/org/{org}/project/{id}/deactivate`): listed as `inactive`.
    pub deactivated: std::collections::BTreeSet<String>,
    /// Projects deleted (REST or v1 `DELETE`): listed no more.
    pub deleted: std::collections::BTreeSet<String>,
    /// Projects' tags and attributes, as `PATCH` last set them.
    pub metadata: HashMap<String, crate::metadata::Metadata>,
    /// Projects' ignores (v1), by project id.
    pub ignores: HashMap<String, crate::legacy::Ignores>,
}

#[derive(Debug)]
pub struct Token {
    pub expires_at: Instant,
    pub revoked: bool,
    /// The workspace-owned consumer it was issued to; `None` for the main one.
    pub consumer: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Org {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub created: String,
    pub source_org_id: Option<String>,
    /// Integration type to integration id.
    pub integrations: BTreeMap<String, String>,
    pub notification_settings: Option<serde_json::Value>,
}

#[derive(Debug)]
pub struct Job {
    pub org_id: String,
    pub integration_id: String,
    /// `workspace/slug`
    pub target: String,
    /// The branch the import named, if any: its projects' `target_reference`.
    pub branch: Option<String>,
    pub started: Instant,
    /// When it started, in Unix ms: its target's `created_at` is when it finished.
    pub started_unix_ms: u64,
    /// How long it runs, drawn when it starts (`job_spread`).
    pub duration: Duration,
    pub outcome: JobOutcome,
    /// Polls of this job so far, and those that found it still pending.
    pub polls: u64,
    pub pending_polls: u64,
    /// How long after it finished a poll first saw it finished.
    pub seen_late: Option<Duration>,
}

#[derive(Debug, Clone)]
pub enum JobOutcome {
    Complete { manifests: &'static [&'static str] },
    Failed { reason: String },
}

#[derive(Debug, Default)]
pub struct Counters {
    pub token_exchanges: u64,
    pub token_failures: u64,
    pub requests: BTreeMap<String, u64>,
    pub rate_limited: BTreeMap<&'static str, u64>,
    pub server_errors: u64,
    pub orgs_created: u64,
    pub import_posts: BTreeMap<String, u64>,
    pub ghost_writes: u64,
    pub posts_while_pending: u64,
    pub exchanges_by_consumer: BTreeMap<String, u64>,
    pub bitbucket_by_consumer: BTreeMap<String, u64>,
    pub foreign_requests: u64,
    pub snyk_by_token: BTreeMap<String, u64>,
    pub projects_activated: u64,
    pub metadata_patches: u64,
    /// `POST …/ignore/{issueId}` calls that added or replaced an ignore.
    pub ignore_posts: u64,
    /// The last import body's `exclusionGlobs` per `workspace/slug`, for those that had them.
    pub exclusion_globs: BTreeMap<String, String>,
    /// The last import body's `files` paths per `workspace/slug`, for those that had them.
    pub import_files: BTreeMap<String, Vec<String>>,
}

impl Counters {
    /// Keeps an import body's `exclusionGlobs` and `files` for `key` (`workspace/slug`), when it has them.
    pub fn import_options(&mut self, key: &str, body: Option<&serde_json::Value>) {
        let Some(body) = body else { return };
        if let Some(globs) = body.get("exclusionGlobs").and_then(|g| g.as_str()) {
            self.exclusion_globs
                .insert(key.to_owned(), globs.to_owned());
        }
        let files: Vec<String> = body
            .get("files")
            .and_then(|f| f.as_array())
            .into_iter()
            .flatten()
            .filter_map(|f| f.get("path")?.as_str().map(str::to_owned))
            .collect();
        if !files.is_empty() {
            self.import_files.insert(key.to_owned(), files);
        }
    }
}

/// Requests accepted in the last `window`; Bitbucket and Snyk both count a rolling window.
#[derive(Debug, Default)]
pub struct SlidingWindow(VecDeque<Instant>);

impl SlidingWindow {
    /// Takes one request, or says how long until one would be allowed.
    pub fn take(
        &mut self,
        limit: Option<u32>,
        window: Duration,
        now: Instant,
    ) -> Result<(), Duration> {
        let Some(limit) = limit else { return Ok(()) };
        while self
            .0
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            self.0.pop_front();
        }
        if self.0.len() >= limit as usize {
            let oldest = self.0.front().copied().unwrap_or(now);
            return Err(window.saturating_sub(now.duration_since(oldest)));
        }
        self.0.push_back(now);
        Ok(())
    }
}

impl State {
    /// The consumer key a token was issued to, for stats.
    pub fn consumer_key(&self, consumer: Option<usize>) -> String {
        match consumer {
            None => self.knobs.client_id.clone(),
            Some(i) => self.knobs.consumer(i).0,
        }
    }

    /// The consumer whose Bearer token `authorization` carries, if it is one the sandbox issued.
    pub fn bearer_consumer(&self, authorization: Option<&str>) -> Option<usize> {
        let token = authorization?.strip_prefix("Bearer ")?.trim();
        self.tokens.get(token)?.consumer
    }
}

pub const APP_INTEGRATION: &str = "bitbucket-connect-app";
pub const TEMPLATE_ORG: &str = "bb2snyk-template";
/// A job seen finished within a quarter of its duration and this much of its end was seen in time.
const IN_TIME_SLACK: Duration = Duration::from_secs(1);

impl State {
    fn new(knobs: Knobs) -> Self {
        let tenant = tenant::generate(&knobs);
        let mut state = Self {
            rng: Rng::new(knobs.seed ^ 0x5eed),
            tenant,
            tokens: HashMap::new(),
            orgs: Vec::new(),
            jobs: HashMap::new(),
            bitbucket_window: HashMap::new(),
            snyk_window: HashMap::new(),
            counters: Counters::default(),
            deactivated: Default::default(),
            deleted: Default::default(),
            metadata: Default::default(),
            ignores: Default::default(),
            knobs,
        };
        // The template org a user names with --sourceOrgPublicId; it has the app and a second integration.
        let template = state.insert_org(TEMPLATE_ORG, None, true);
        state.orgs[template]
            .integrations
            .insert("bitbucket-cloud".into(), state.rng.uuid());
        for name in state.knobs.existing_orgs.clone() {
            state.insert_org(&name, None, true);
        }
        state
    }

    /// Adds an org and returns its index.
    pub fn insert_org(&mut self, name: &str, source: Option<&Org>, app: bool) -> usize {
        let mut integrations = BTreeMap::new();
        if let Some(source) = source {
            for kind in source.integrations.keys().filter(|k| *k != APP_INTEGRATION) {
                integrations.insert(kind.clone(), self.rng.uuid());
            }
        }
        if app {
            integrations.insert(APP_INTEGRATION.to_owned(), self.rng.uuid());
        }
        let slug: String = name
            .to_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        self.orgs.push(Org {
            id: self.rng.uuid(),
            name: name.to_owned(),
            slug,
            created: "2026-11-23T09:00:00.000Z".to_owned(),
            source_org_id: source.map(|s| s.id.clone()),
            integrations,
            notification_settings: None,
        });
        self.orgs.len() - 1
    }

    pub fn org(&self, id: &str) -> Option<&Org> {
        self.orgs.iter().find(|o| o.id == id)
    }

    /// The workspace and repository a Snyk target names, if the tenant has it.
    pub fn repo(&self, owner: &str, name: &str) -> Option<(&Workspace, &tenant::Repo)> {
        let ws = self.tenant.iter().find(|w| w.slug == owner)?;
        ws.repos.iter().find(|r| r.slug == name).map(|r| (ws, r))
    }

    /// True once `job` has run its course.
    /// When the job finished (or will), as REST writes a time (`created_at`).
    pub fn finished_at(job: &Job) -> String {
        let ms = u64::try_from(job.duration.as_millis()).unwrap_or(u64::MAX);
        bb2snyk_telemetry::clock::rfc3339_secs(job.started_unix_ms.saturating_add(ms))
    }

    pub fn is_done(&self, job: &Job, now: Instant) -> bool {
        now.duration_since(job.started) >= job.duration
    }

    /// A new job's duration, drawn from `job_spread`.
    pub fn job_duration(&mut self) -> Duration {
        let (low, high) = (
            self.knobs.job_ms,
            self.knobs.job_max_ms.max(self.knobs.job_ms),
        );
        let millis = match self.knobs.job_spread.as_str() {
            "uniform" => low + (self.rng.unit() * (high - low) as f64) as u64,
            "long-tail" => {
                // Log-normal with sigma 1: median `low`, one job in ten over 3.6 times it.
                let (u1, u2) = (self.rng.unit().max(1e-12), self.rng.unit());
                let normal = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                ((low as f64) * normal.exp()).min(high as f64) as u64
            }
            _ => low,
        };
        Duration::from_millis(millis)
    }

    pub fn poison(&self, poison: Option<Poison>) -> Option<Poison> {
        poison.filter(|_| !self.knobs.poison_paused)
    }

    pub fn stats(&self, now: Instant) -> Stats {
        let mut names: HashMap<&str, u64> = HashMap::new();
        for org in &self.orgs {
            *names.entry(org.name.as_str()).or_default() += 1;
        }
        let mut jobs = JobStats::default();
        let mut late: Vec<u64> = Vec::new();
        for job in self.jobs.values() {
            jobs.polls += job.polls;
            jobs.pending_polls += job.pending_polls;
            if let Some(seen_late) = job.seen_late {
                late.push(seen_late.as_millis() as u64);
                jobs.seen += 1;
                jobs.seen_in_time += u64::from(seen_late <= job.duration / 4 + IN_TIME_SLACK);
            }
            match (&job.outcome, self.is_done(job, now)) {
                (_, false) => jobs.pending += 1,
                (JobOutcome::Complete { .. }, true) => jobs.complete += 1,
                (JobOutcome::Failed { .. }, true) => jobs.failed += 1,
            }
        }
        late.sort_unstable();
        let at = |q: f64| {
            late.get(((late.len() as f64 - 1.0) * q).round() as usize)
                .copied()
        };
        jobs.seen_late_p50_ms = at(0.5);
        jobs.seen_late_p95_ms = at(0.95);
        let c = &self.counters;
        Stats {
            token_exchanges: c.token_exchanges,
            token_failures: c.token_failures,
            requests: c.requests.clone(),
            requests_total: c.requests.values().sum(),
            rate_limited: c
                .rate_limited
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            server_errors: c.server_errors,
            orgs: self.orgs.len() as u64,
            orgs_created: c.orgs_created,
            duplicate_org_names: names.values().filter(|n| **n > 1).count() as u64,
            import_posts: c.import_posts.clone(),
            import_posts_total: c.import_posts.values().sum(),
            ghost_writes: c.ghost_writes,
            posts_while_pending: c.posts_while_pending,
            exchanges_by_consumer: c.exchanges_by_consumer.clone(),
            bitbucket_by_consumer: c.bitbucket_by_consumer.clone(),
            foreign_requests: c.foreign_requests,
            snyk_by_token: c.snyk_by_token.clone(),
            projects_deactivated: self.deactivated.len() as u64,
            projects_deleted: self.deleted.len() as u64,
            projects_activated: c.projects_activated,
            exclusion_globs: c.exclusion_globs.clone(),
            import_files: c.import_files.clone(),
            metadata_patches: c.metadata_patches,
            ignore_posts: c.ignore_posts,
            jobs,
            truth: self.truth_summary(),
        }
    }

    fn truth_summary(&self) -> TruthSummary {
        let repos = || self.tenant.iter().flat_map(|w| &w.repos);
        let count = |f: &dyn Fn(&tenant::Repo) -> bool| repos().filter(|r| f(r)).count() as u64;
        TruthSummary {
            workspaces: self.tenant.len() as u64,
            repositories: count(&|_| true),
            forks: count(&|r| r.parent.is_some()),
            empty: count(&|r| r.mainbranch.is_none()),
            poison_post: count(&|r| r.poison == Some(Poison::PostRejected)),
            poison_job: count(&|r| r.poison == Some(Poison::JobFails)),
        }
    }
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Stats {
    /// Successful client_credentials exchanges.
    pub token_exchanges: u64,
    pub token_failures: u64,
    /// Requests per endpoint, as `METHOD /path/{param}`.
    pub requests: BTreeMap<String, u64>,
    pub requests_total: u64,
    /// 429s sent, per API (`bitbucket`, `snyk`).
    pub rate_limited: BTreeMap<String, u64>,
    /// 5xx sent by fault injection.
    pub server_errors: u64,
    /// Orgs in the group, the template and pre-existing ones included.
    pub orgs: u64,
    /// Orgs created through `POST /org`.
    pub orgs_created: u64,
    /// Names borne by more than one org in the group.
    pub duplicate_org_names: u64,
    /// Import POSTs per `workspace/slug`, so duplicates show.
    pub import_posts: BTreeMap<String, u64>,
    pub import_posts_total: u64,
    /// POSTs that took effect but were answered 502 (`ghost_rate`).
    #[serde(default)]
    pub ghost_writes: u64,
    /// Import POSTs for a target of an org that already had a job for it still pending: the duplicates no
    /// client can avoid by looking first, since Snyk shows a target only once its job is done.
    #[serde(default)]
    pub posts_while_pending: u64,
    /// Successful exchanges per consumer key (the main one included).
    #[serde(default)]
    pub exchanges_by_consumer: BTreeMap<String, u64>,
    /// Bitbucket API requests per consumer key, by the token they carried.
    #[serde(default)]
    pub bitbucket_by_consumer: BTreeMap<String, u64>,
    /// Requests a workspace-owned consumer made for a workspace it does not own (answered 404).
    #[serde(default)]
    pub foreign_requests: u64,
    /// Snyk API requests per accepted token, as `token-0` (`snyk_token`), `token-1`, ...
    #[serde(default)]
    pub snyk_by_token: BTreeMap<String, u64>,
    /// Projects deactivated and deleted so far (each once, however often asked).
    #[serde(default)]
    pub projects_deactivated: u64,
    #[serde(default)]
    pub projects_deleted: u64,
    /// Inactive projects made active again (`POST …/activate`); asking for an active one counts nothing.
    #[serde(default)]
    pub projects_activated: u64,
    /// The last import body's `exclusionGlobs` per `workspace/slug`, for those that had them.
    #[serde(default)]
    pub exclusion_globs: BTreeMap<String, String>,
    /// The last import body's `files` paths per `workspace/slug`, for those that had them.
    #[serde(default)]
    pub import_files: BTreeMap<String, Vec<String>>,
    /// Projects' metadata set: REST `PATCH`es and v1 tag and attribute calls that Snyk accepted.
    #[serde(default)]
    pub metadata_patches: u64,
    #[serde(default)]
    pub ignore_posts: u64,
    pub jobs: JobStats,
    pub truth: TruthSummary,
}

impl Stats {
    /// Requests since `earlier` that change something in Bitbucket or Snyk, per endpoint: every one but a
    /// GET and the OAuth exchange. What a read-only command must leave empty.
    pub fn writes_since(&self, earlier: &Stats) -> BTreeMap<String, u64> {
        self.requests_since(earlier)
            .into_iter()
            .filter(|(endpoint, _)| {
                !endpoint.starts_with("GET ") && !endpoint.contains("access_token")
            })
            .collect()
    }

    /// Requests per endpoint since `earlier` (a snapshot of the same sandbox), the endpoints asked at all:
    /// what one step of a test cost.
    pub fn requests_since(&self, earlier: &Stats) -> BTreeMap<String, u64> {
        self.requests
            .iter()
            .map(|(endpoint, n)| {
                let before = earlier.requests.get(endpoint).copied().unwrap_or(0);
                (endpoint.clone(), n.saturating_sub(before))
            })
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct JobStats {
    pub pending: u64,
    pub complete: u64,
    pub failed: u64,
    /// Polls of every job, in all, and those that found their job still pending.
    #[serde(default)]
    pub polls: u64,
    #[serde(default)]
    pub pending_polls: u64,
    /// Jobs a poll saw finished, and those it saw within a quarter of the job's duration and a second
    /// of its end (the polling target asks that of half of them).
    #[serde(default)]
    pub seen: u64,
    #[serde(default)]
    pub seen_in_time: u64,
    /// How long after a job finished a poll first saw it, over the jobs seen finished (median, 95th).
    #[serde(default)]
    pub seen_late_p50_ms: Option<u64>,
    #[serde(default)]
    pub seen_late_p95_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct TruthSummary {
    pub workspaces: u64,
    pub repositories: u64,
    pub forks: u64,
    pub empty: u64,
    pub poison_post: u64,
    pub poison_job: u64,
}

#[cfg(test)]
mod tests;
