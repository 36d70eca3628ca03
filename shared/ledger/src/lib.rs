//! The ledger: per target (keyed by snyk-api-import's targetId) its state, attempts, last error, job URL
//! and projects; per workspace its Snyk org; per run the sets of targets in each state, so counts stay
//! exact however often a message is redelivered.

mod sync;

use std::time::Duration;

use bb2snyk_store::{Store, StoreError};
use serde::{Deserialize, Serialize};
pub use sync::{LastSync, SeenRepo};

/// Where a target stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// The import was requested; `job_url` is being polled.
    Requested,
    Imported,
    /// The last job failed; it is being tried again.
    Failed,
    Parked,
    Skipped,
}

const STATES: [State; 5] = [
    State::Requested,
    State::Imported,
    State::Failed,
    State::Parked,
    State::Skipped,
];

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Imported => "imported",
            Self::Failed => "failed",
            Self::Parked => "parked",
            Self::Skipped => "skipped",
        }
    }
}

/// One of a run's sets: its size is a count of [`RunCounts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tally {
    /// Repositories discovery found (targetIds).
    Discovered,
    /// Workspaces whose org is ready.
    Orgs,
    /// Targets now in this state.
    In(State),
}

impl Tally {
    fn key(self, run: &str) -> String {
        let what = match self {
            Self::Discovered => "discovered",
            Self::Orgs => "orgs",
            Self::In(state) => state.as_str(),
        };
        format!("run:{run}:{what}")
    }
}

/// A run's counts, exact however often its messages were redelivered. `status --json` prints it as is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCounts {
    pub discovered: u64,
    pub orgs: u64,
    /// Import jobs in flight.
    pub requested: u64,
    pub imported: u64,
    /// Whose last job failed, being tried again.
    pub failed: u64,
    pub parked: u64,
    pub skipped: u64,
}

impl RunCounts {
    /// Targets that reached an end: imported, skipped or parked.
    pub fn settled(&self) -> u64 {
        self.imported + self.skipped + self.parked
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub state: State,
    pub run: String,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub job_url: Option<String>,
    #[serde(default)]
    pub projects: Vec<String>,
    /// An import POST failed after it may have reached Snyk (a 5xx, a timeout), or began and was never
    /// answered (its process stopped): Snyk's targets are read before posting again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub maybe_requested: bool,
    /// When an import POST began (ms since the epoch), written just before it is sent and replaced by
    /// its answer. Found later, its process stopped in between: the job it may have made is given time
    /// to finish and show in Snyk before anyone looks there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub posting_since_ms: Option<u64>,
}

impl Record {
    /// A target in `state` for `run`, with nothing else known yet.
    pub fn new(state: State, run: &str) -> Self {
        Self {
            state,
            run: run.to_owned(),
            attempts: 0,
            last_error: None,
            job_url: None,
            projects: Vec::new(),
            maybe_requested: false,
            posting_since_ms: None,
        }
    }
}

/// A workspace's org and the id of its Bitbucket Cloud App integration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgMapping {
    pub org_id: String,
    pub integration_id: String,
    pub name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A record that does not parse: never taken for absent, which would redo its work.
    #[error(
        "ledger record {key} is corrupt ({problem}); delete it (redis-cli DEL) to let bb2snyk look again"
    )]
    Corrupt { key: String, problem: String },
}

impl LedgerError {
    /// Redis may come back; a corrupt record stays corrupt until a person removes it.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Store(_))
    }
}

/// How long a run's sets are kept after its last write, unless the settings say otherwise.
pub const RUN_KEPT: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, Clone)]
pub struct Ledger {
    store: Store,
    /// A run's sets (`run:<run>:*`) expire this long after their last write.
    run_kept: Duration,
}

impl Ledger {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            run_kept: RUN_KEPT,
        }
    }

    /// A run's sets expire `kept` after their last write (`redis.run_ttl_days`).
    pub fn keeping_runs(self, kept: Duration) -> Self {
        Self {
            run_kept: kept,
            ..self
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub async fn target(&self, target_id: &str) -> Result<Option<Record>, LedgerError> {
        self.read(&format!("target:{target_id}")).await
    }

    /// Writes the target's record and files it under its state in the run's counts.
    pub async fn record(&self, target_id: &str, record: &Record) -> Result<(), LedgerError> {
        self.write(&format!("target:{target_id}"), record).await?;
        let others: Vec<String> = STATES
            .into_iter()
            .map(|s| Tally::In(s).key(&record.run))
            .collect();
        let others: Vec<&str> = others.iter().map(String::as_str).collect();
        let own = Tally::In(record.state).key(&record.run);
        Ok(self
            .store
            .move_member(&others, &own, target_id, Some(self.run_kept))
            .await?)
    }

    /// Counts `member` in one of the run's sets (once, however often it is marked).
    pub async fn mark(&self, run: &str, tally: Tally, member: &str) -> Result<(), LedgerError> {
        Ok(self
            .store
            .move_member(&[], &tally.key(run), member, Some(self.run_kept))
            .await?)
    }

    pub async fn counts(&self, run: &str) -> Result<RunCounts, LedgerError> {
        let count = |tally: Tally| async move { self.store.count(&tally.key(run)).await };
        Ok(RunCounts {
            discovered: count(Tally::Discovered).await?,
            orgs: count(Tally::Orgs).await?,
            requested: count(Tally::In(State::Requested)).await?,
            imported: count(Tally::In(State::Imported)).await?,
            failed: count(Tally::In(State::Failed)).await?,
            parked: count(Tally::In(State::Parked)).await?,
            skipped: count(Tally::In(State::Skipped)).await?,
        })
    }

    /// Members of a run's set, e.g. the targets parked.
    pub async fn members(&self, run: &str, tally: Tally) -> Result<Vec<String>, LedgerError> {
        Ok(self.store.members(&tally.key(run)).await?)
    }

    pub async fn org(
        &self,
        group: &str,
        workspace: &str,
    ) -> Result<Option<OrgMapping>, LedgerError> {
        self.read(&format!("org:{group}:{workspace}")).await
    }

    pub async fn set_org(
        &self,
        group: &str,
        workspace: &str,
        mapping: &OrgMapping,
    ) -> Result<(), LedgerError> {
        self.write(&format!("org:{group}:{workspace}"), mapping)
            .await
    }

    async fn read<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<T>, LedgerError> {
        let Some(raw) = self.store.get(name).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&raw)
            .map(Some)
            .map_err(|e| LedgerError::Corrupt {
                key: self.store.key(name),
                problem: e.to_string(),
            })
    }

    async fn write<T: Serialize>(&self, name: &str, value: &T) -> Result<(), LedgerError> {
        let raw = serde_json::to_vec(value).unwrap_or_default();
        Ok(self.store.set(name, &raw, None).await?)
    }
}
