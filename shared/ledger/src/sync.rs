//! What a sync keeps in the store: the repositories its discovery saw (per run and org), each repository's
//! Bitbucket uuid by name (per org, kept across runs, so a rename is told from a deletion), and each
//! org's last sync (for `status`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Ledger, LedgerError};

/// How long a run's list of what it saw is kept.
const SEEN_KEPT: Duration = Duration::from_secs(24 * 3600);
/// How long a name's uuid is remembered after the last run that saw it.
const UUIDS_KEPT: Duration = Duration::from_secs(400 * 24 * 3600);

/// A repository as a sync's discovery saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenRepo {
    pub slug: String,
    #[serde(default)]
    pub branch: Option<String>,
    #[serde(default)]
    pub uuid: Option<String>,
    /// Left out by the filters, or empty: neither imported nor retired.
    #[serde(default)]
    pub skipped: bool,
    /// What the import policy asks for it, when it asks anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<bb2snyk_messages::ProjectPolicy>,
    /// Globs of the other branches the policy imports for it: their projects are never retired as a
    /// branch change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub branches: Vec<String>,
    /// Why it is skipped (the filter or policy rule), when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// An org's last sync: when, and what it changed (or would have, in a dry run).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastSync {
    pub run_id: String,
    pub workspace: String,
    /// Unix milliseconds.
    pub at_ms: u64,
    pub dry_run: bool,
    pub new: u32,
    pub renamed: u32,
    pub branch_changed: u32,
    pub deleted: u32,
    /// The brake stopped it: nothing was changed.
    #[serde(default)]
    pub braked: bool,
}

impl Ledger {
    /// Adds a page of what a sync's discovery saw of the org's workspace (`org` empty: a workspace no org
    /// serves, which a report lists too).
    pub async fn saw(
        &self,
        run: &str,
        org: &str,
        workspace: &str,
        repos: &[SeenRepo],
    ) -> Result<(), LedgerError> {
        let members: Vec<String> = repos
            .iter()
            .filter_map(|r| serde_json::to_string(r).ok())
            .collect();
        Ok(self
            .store
            .add_members(&seen_key(run, org, workspace), &members, SEEN_KEPT)
            .await?)
    }

    /// Everything the run's discovery saw of the org's workspace.
    pub async fn seen(
        &self,
        run: &str,
        org: &str,
        workspace: &str,
    ) -> Result<Vec<SeenRepo>, LedgerError> {
        let key = seen_key(run, org, workspace);
        self.store
            .members(&key)
            .await?
            .iter()
            .map(|m| {
                serde_json::from_str(m).map_err(|e| LedgerError::Corrupt {
                    key: self.store.key(&key),
                    problem: e.to_string(),
                })
            })
            .collect()
    }

    /// Remembers each repository's uuid under its full name (`workspace/slug`), for the org.
    pub async fn remember_uuids(
        &self,
        org: &str,
        names: &[(String, String)],
    ) -> Result<(), LedgerError> {
        let members: Vec<String> = names
            .iter()
            .map(|(name, uuid)| format!("{name}\t{uuid}"))
            .collect();
        if members.is_empty() {
            return Ok(());
        }
        self.store
            .add_members(&format!("repo-uuids:{org}"), &members, UUIDS_KEPT)
            .await?;
        Ok(self.store.add_member("uuid-orgs", org).await?)
    }

    /// The orgs whose repositories' uuids are remembered.
    pub async fn uuid_orgs(&self) -> Result<Vec<String>, LedgerError> {
        Ok(self.store.members("uuid-orgs").await?)
    }

    /// Every full name the org's repositories have had, with its uuid (a name reused by a new repository
    /// is listed with both).
    pub async fn uuids(&self, org: &str) -> Result<Vec<(String, String)>, LedgerError> {
        Ok(self
            .store
            .members(&format!("repo-uuids:{org}"))
            .await?
            .into_iter()
            .filter_map(|m| {
                m.split_once('\t')
                    .map(|(name, uuid)| (name.to_owned(), uuid.to_owned()))
            })
            .collect())
    }

    pub async fn set_last_sync(&self, org: &str, last: &LastSync) -> Result<(), LedgerError> {
        self.write(&format!("sync-last:{org}"), last).await?;
        if !last.dry_run {
            self.write("sync-last-success", &last.at_ms).await?;
        }
        Ok(self.store.add_member("sync-orgs", org).await?)
    }

    /// When the last sync that was not a dry run compared a workspace (Unix milliseconds), of any org.
    pub async fn last_sync_success(&self) -> Result<Option<u64>, LedgerError> {
        self.read("sync-last-success").await
    }

    /// Each synced org's last sync, by org id.
    pub async fn last_syncs(&self) -> Result<Vec<(String, LastSync)>, LedgerError> {
        let mut syncs = Vec::new();
        for org in self.store.members("sync-orgs").await? {
            if let Some(last) = self.read::<LastSync>(&format!("sync-last:{org}")).await? {
                syncs.push((org, last));
            }
        }
        syncs.sort_by(|a, b| a.1.workspace.cmp(&b.1.workspace));
        Ok(syncs)
    }
}

/// A run's listing of a workspace, under its org (or, for a workspace no org serves, its slug).
fn seen_key(run: &str, org: &str, workspace: &str) -> String {
    if org.is_empty() {
        format!("sync-seen:{run}:workspace:{workspace}")
    } else {
        format!("sync-seen:{run}:{org}")
    }
}
