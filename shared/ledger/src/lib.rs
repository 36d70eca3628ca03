//! The ledger: per target (keyed by snyk-api-import's targetId) its state, attempts, last error, job URL
//! and projects; per workspace its Snyk org; per run the sets of targets in each state, so counts stay
//! exact however often a message is redelivered.

use std::collections::BTreeMap;

use bb2snyk_store::{Store, StoreError};
use serde::{Deserialize, Serialize};

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
}

/// A workspace's org and the id of its Bitbucket Cloud App integration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgMapping {
    pub org_id: String,
    pub integration_id: String,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct Ledger {
    store: Store,
}

impl Ledger {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub async fn target(&self, target_id: &str) -> Result<Option<Record>, StoreError> {
        self.read(&format!("target:{target_id}")).await
    }

    /// Writes the target's record and files it under its state in the run's counts.
    pub async fn record(&self, target_id: &str, record: &Record) -> Result<(), StoreError> {
        self.write(&format!("target:{target_id}"), record).await?;
        let set = |state: State| format!("run:{}:{}", record.run, state.as_str());
        let others: Vec<String> = STATES.into_iter().map(set).collect();
        let others: Vec<&str> = others.iter().map(String::as_str).collect();
        self.store
            .move_member(&others, &set(record.state), target_id)
            .await
    }

    /// Marks something seen in a run (`discovered`, `orgs`): the set's size is the count.
    pub async fn mark(&self, run: &str, what: &str, member: &str) -> Result<(), StoreError> {
        self.store
            .add_member(&format!("run:{run}:{what}"), member)
            .await
    }

    /// Every count of a run: `discovered`, `orgs`, and one per [`State`].
    pub async fn counts(&self, run: &str) -> Result<BTreeMap<String, u64>, StoreError> {
        let mut counts = BTreeMap::new();
        for what in ["discovered", "orgs"]
            .into_iter()
            .chain(STATES.map(State::as_str))
        {
            let n = self.store.count(&format!("run:{run}:{what}")).await?;
            counts.insert(what.to_owned(), n);
        }
        Ok(counts)
    }

    /// Members of a run's set, e.g. the targets parked.
    pub async fn members(&self, run: &str, what: &str) -> Result<Vec<String>, StoreError> {
        self.store.members(&format!("run:{run}:{what}")).await
    }

    pub async fn org(
        &self,
        group: &str,
        workspace: &str,
    ) -> Result<Option<OrgMapping>, StoreError> {
        self.read(&format!("org:{group}:{workspace}")).await
    }

    pub async fn set_org(
        &self,
        group: &str,
        workspace: &str,
        mapping: &OrgMapping,
    ) -> Result<(), StoreError> {
        self.write(&format!("org:{group}:{workspace}"), mapping)
            .await
    }

    async fn read<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<T>, StoreError> {
        Ok(self
            .store
            .get(name)
            .await?
            .and_then(|raw| serde_json::from_slice(&raw).ok()))
    }

    async fn write<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StoreError> {
        let raw = serde_json::to_vec(value).unwrap_or_default();
        self.store.set(name, &raw, None).await
    }
}
