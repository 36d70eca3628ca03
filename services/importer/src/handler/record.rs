//! Snyk is the record of what is imported. Before a target the ledger knows nothing of is imported, the
//! org's targets are read from Snyk: once per org and run, by one replica, and shared by the fleet through
//! the store. So a wiped Redis, a new machine or a lost `imported-targets.log` imports nothing twice; the
//! ledger stays the fast path (what this run imported is not in that read, and need not be).

use std::time::{Duration, Instant};

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
        let name = display_name(import);
        match self.org_has(&import.run_id, &import.org_id, &name).await {
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
            job_url: String::new(),
            projects: Vec::new(),
            before,
        });
        Outcome::Ack(vec![completed.publish()])
    }

    /// Whether the org's targets, as read for this run, hold `name`: read now by this replica if none
    /// has, else waited for.
    async fn org_has(&self, run: &str, org: &str, name: &str) -> Result<bool, Outcome> {
        let store = self.ledger.store();
        let set = format!("snyk-targets:{run}:{org}");
        let read = format!("{set}:read");
        let deadline = Instant::now() + READING;
        loop {
            if store.get(&read).await.map_err(store_failure)?.is_some() {
                return store.is_member(&set, name).await.map_err(store_failure);
            }
            if let Some(lock) = store
                .lock(&format!("{set}:lock"), READING)
                .await
                .map_err(store_failure)?
            {
                // Looked at again under the lock: another replica may have finished in between.
                let held = match store.get(&read).await.map_err(store_failure)? {
                    Some(_) => store.is_member(&set, name).await.map_err(store_failure),
                    None => self
                        .read_org(store, org, &set, &read)
                        .await
                        .map(|names| names.iter().any(|n| n == name)),
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

    /// Reads every target of the org from Snyk and keeps their names for the run; the `read` key, set last,
    /// says the set is whole.
    async fn read_org(
        &self,
        store: &Store,
        org: &str,
        set: &str,
        read: &str,
    ) -> Result<Vec<String>, Outcome> {
        let names = self.snyk.targets(org).await.map_err(snyk_failure)?;
        store
            .add_members(set, &names, KEPT)
            .await
            .map_err(store_failure)?;
        store
            .set(read, names.len().to_string().as_bytes(), Some(KEPT))
            .await
            .map_err(store_failure)?;
        tracing::info!(
            org,
            targets = names.len(),
            "read the org's targets from Snyk"
        );
        Ok(names)
    }
}

/// How Snyk names a repository's target: `workspace/slug`.
pub(super) fn display_name(import: &ImportRepo) -> String {
    format!("{}/{}", import.target.owner, import.target.name)
}

fn store_failure(e: StoreError) -> Outcome {
    Outcome::retry(format!("Redis: {e}"))
}
