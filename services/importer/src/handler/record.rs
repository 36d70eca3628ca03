//! Snyk is the record of what is imported. Before a target the ledger knows nothing of is imported, the
//! org's targets are read from Snyk: once per org and run, by one replica, and shared by the fleet through
//! the store. So a wiped Redis, a new machine or a lost `imported-targets.log` imports nothing twice; the
//! ledger stays the fast path (what this run imported is not in that read, and need not be).

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use bb2snyk_broker::Outcome;
use bb2snyk_ledger::{Record, State};
use bb2snyk_messages::{Event, ImportCompleted, ImportRepo};
use bb2snyk_store::{Store, StoreError};

use super::{Importer, about, ledger_failure, snyk_failure};

/// How long an org's targets, as read for a run, are kept: a run longer than this reads them again.
const KEPT: Duration = Duration::from_secs(24 * 3600);
/// How long one replica may take to read an org's targets before another may; the others wait that long.
const READING: Duration = Duration::from_secs(120);
/// How often a replica waiting for another's read looks whether it is done.
const LOOK_EVERY: Duration = Duration::from_millis(200);

impl Importer {
    /// `Some` when the target is in Snyk already (the outcome that settles it) or the look failed (the
    /// outcome that retries it); `None` when it is to be imported.
    pub(super) async fn in_snyk(&self, import: &ImportRepo, id: &str) -> Option<Outcome> {
        match self.org_has(&import.run_id, &import.org_id, import).await {
            Ok(false) => None,
            Ok(true) => {
                tracing::debug!(target = %id, "already in Snyk: not imported again");
                Some(self.found_in_snyk(import, id, true).await)
            }
            Err(outcome) => Some(outcome),
        }
    }

    /// The target is in Snyk: recorded as imported in this run, and told as completed (so a CLI run's
    /// `imported-targets.log` lists it again); `before` when no POST of this run made it.
    pub(super) async fn found_in_snyk(
        &self,
        import: &ImportRepo,
        id: &str,
        before: bool,
    ) -> Outcome {
        let record = Record::new(State::Imported, &import.run_id);
        if let Err(e) = self.ledger.record(id, &record).await {
            return ledger_failure(e);
        }
        let completed = Event::ImportCompleted(ImportCompleted {
            run_id: import.run_id.clone(),
            subject: id.to_owned(),
            about: about(import),
            job_url: None,
            projects: Vec::new(),
            before,
        });
        Outcome::Ack(vec![completed.publish()])
    }

    /// Whether the org, as read from Snyk for this run, holds the target on this branch: a project of
    /// it on the branch, or the target with no project at all (nothing to re-import on another branch).
    /// Read now by this replica if none has, else waited for.
    async fn org_has(&self, run: &str, org: &str, import: &ImportRepo) -> Result<bool, Outcome> {
        let store = self.ledger.store();
        let set = format!("snyk-targets:{run}:{org}");
        let read = format!("{set}:read");
        let keys = held_keys(&display_name(import), import.target.branch.as_deref());
        let deadline = Instant::now() + READING;
        loop {
            if store.get(&read).await.map_err(store_failure)?.is_some() {
                return any_member(store, &set, &keys).await;
            }
            if let Some(lock) = store
                .lock(&format!("{set}:lock"), READING)
                .await
                .map_err(store_failure)?
            {
                // Looked at again under the lock: another replica may have finished in between.
                let held = match store.get(&read).await.map_err(store_failure)? {
                    Some(_) => any_member(store, &set, &keys).await,
                    None => self
                        .read_org(store, org, &set, &read)
                        .await
                        .map(|members| members.iter().any(|m| keys.contains(m))),
                };
                if let Err(e) = lock.release().await {
                    tracing::debug!(error = %e, "targets lock left to expire");
                }
                return held;
            }
            if Instant::now() >= deadline {
                return Err(Outcome::retry(format!(
                    "org {org}'s targets are being read from Snyk by another replica"
                )));
            }
            tokio::time::sleep(LOOK_EVERY).await;
        }
    }

    /// Reads the org's targets and projects from Snyk and keeps, for the run, what says a target is held
    /// (see [`held_keys`]); the `read` key, set last, says the set is whole.
    async fn read_org(
        &self,
        store: &Store,
        org: &str,
        set: &str,
        read: &str,
    ) -> Result<Vec<String>, Outcome> {
        let targets = self.snyk.targets(org).await.map_err(snyk_failure)?;
        let projects = self.snyk.projects(org).await.map_err(snyk_failure)?;
        let with_projects: HashSet<&str> =
            projects.iter().map(|p| p.display_name.as_str()).collect();
        let mut members: Vec<String> = targets
            .iter()
            .filter(|t| !with_projects.contains(t.as_str()))
            .map(|t| format!("t\t{t}"))
            .collect();
        members.extend(projects.iter().map(|p| {
            format!(
                "p\t{}\t{}",
                p.display_name,
                p.branch.as_deref().unwrap_or_default()
            )
        }));
        store
            .add_members(set, &members, KEPT)
            .await
            .map_err(store_failure)?;
        store
            .set(read, targets.len().to_string().as_bytes(), Some(KEPT))
            .await
            .map_err(store_failure)?;
        tracing::info!(
            org,
            targets = targets.len(),
            projects = projects.len(),
            "read the org's targets from Snyk"
        );
        Ok(members)
    }
}

/// The members of an org's set that say it holds `name` on `branch`: a project on that branch, or the
/// target without projects.
fn held_keys(name: &str, branch: Option<&str>) -> [String; 2] {
    [
        format!("p\t{name}\t{}", branch.unwrap_or_default()),
        format!("t\t{name}"),
    ]
}

async fn any_member(store: &Store, set: &str, keys: &[String]) -> Result<bool, Outcome> {
    for key in keys {
        if store.is_member(set, key).await.map_err(store_failure)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// How Snyk names a repository's target: `workspace/slug`.
pub(super) fn display_name(import: &ImportRepo) -> String {
    format!("{}/{}", import.target.owner, import.target.name)
}

fn store_failure(e: StoreError) -> Outcome {
    Outcome::retry(format!("Redis: {e}"))
}
