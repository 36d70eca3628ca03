//! The importer's stage: import one repository, then follow its job through delayed polls, so no import
//! slot waits on Snyk. The ledger makes it idempotent: an imported target is skipped, and a target whose
//! job was already requested is polled again, not imported again.

use std::{sync::Arc, time::Duration};

use bb2snyk_broker::{Handler, Message, Outcome};
use bb2snyk_ledger::{Ledger, LedgerError, Record, State, Tally};
use bb2snyk_messages::{Body, Event, ImportRepo, ImportRequested, JobUrl};
use bb2snyk_snyk::{Client as Snyk, ImportOptions, SnykError};
use futures_util::future::BoxFuture;

use bb2snyk_bitbucket::Tenant;
pub use sync::Brake;

use crate::hints::Hints;
use crate::schedule::PollTiming;

#[derive(Debug, Clone)]
pub struct Policy {
    /// When a request that met a busy target lock, or a failed job's new import, comes back.
    pub requeue_after: Duration,
    /// Polls of one job before it counts as stuck and is parked.
    pub max_polls: u32,
    /// Failed jobs of one target before it is parked with the job's log.
    pub max_failed_jobs: u32,
    /// When a crashed holder's target lock expires; a live holder's is renewed while its request runs.
    pub import_lock: Duration,
    /// How much of an org one sync may retire.
    pub brake: Brake,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            requeue_after: Duration::from_secs(10),
            max_polls: 360,
            max_failed_jobs: 3,
            import_lock: Duration::from_secs(60),
            brake: Brake::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Importer {
    pub snyk: Snyk,
    pub ledger: Ledger,
    pub options: ImportOptions,
    pub policy: Policy,
    /// When to poll each job.
    pub timing: PollTiming,
    /// The jobs followed for completion hints (none unless [`Importer::with_hints`]).
    pub hints: Arc<Hints>,
    /// Bitbucket, to confirm a repository is gone before a sync retires its projects (none unless
    /// [`Importer::with_bitbucket`]: then nothing is retired but branch changes).
    pub bitbucket: Option<Tenant>,
}

impl Importer {
    pub fn new(
        snyk: Snyk,
        ledger: Ledger,
        options: ImportOptions,
        policy: Policy,
        timing: PollTiming,
    ) -> Self {
        Self {
            snyk,
            ledger,
            options,
            policy,
            timing,
            hints: Arc::new(Hints::new(0)),
            bitbucket: None,
        }
    }

    /// Asks `tenant` whether a repository is gone before a sync retires its projects.
    pub fn with_bitbucket(self, tenant: Tenant) -> Self {
        Self {
            bitbucket: Some(tenant),
            ..self
        }
    }

    /// Lists an org's new targets once `least_yield` of its jobs are expected done (see [`Hints`]); 0
    /// lists nothing.
    pub fn with_hints(self, least_yield: u32) -> Self {
        Self {
            hints: Arc::new(Hints::new(least_yield)),
            ..self
        }
    }
}

impl Handler for Importer {
    fn handle(&self, message: Message) -> BoxFuture<'_, Outcome> {
        Box::pin(async move {
            match Body::from_message(&message) {
                Ok(Body::ImportRepo(import)) => self.import(import).await,
                Ok(Body::PollImport(poll)) => self.poll(poll).await,
                Ok(Body::SyncWorkspace(sync)) => self.sync(sync).await,
                Ok(Body::RetireProjects(retire)) => self.retire(retire).await,
                Ok(Body::ProjectsMetadata(m)) => self.set_metadata(m).await,
                Ok(other) => Outcome::park(format!(
                    "{} does not belong on the importer's queue",
                    other.kind()
                )),
                Err(reason) => Outcome::park(reason),
            }
        })
    }
}

impl Importer {
    async fn import(&self, import: ImportRepo) -> Outcome {
        let id = import.target_id();
        // The common cases need no lock: already imported (a second run), or a job to follow.
        match self.settled(&import, &id).await {
            Ok(Some(outcome)) => return outcome,
            Ok(None) => {}
            Err(e) => return ledger_failure(e),
        }
        // Nothing in the ledger: Snyk may still hold it (a wiped Redis, a new machine).
        if let Some(outcome) = self.in_snyk(&import, &id).await {
            return outcome;
        }
        // While one delivery is between its POST and its ledger record, a redelivery of the same message
        // (after a broker reconnect) must not POST again: it comes back later and finds the job.
        let lock = format!("import-lock:{id}");
        let lock = match self
            .ledger
            .store()
            .lock(&lock, self.policy.import_lock)
            .await
        {
            Ok(Some(lock)) => lock,
            // Not a failure, so it spends no attempt: the same message comes back after a poll interval.
            Ok(None) => {
                return Outcome::Ack(vec![
                    Body::ImportRepo(import).publish_after(self.policy.requeue_after),
                ]);
            }
            Err(e) => return Outcome::retry(format!("Redis: {e}")),
        };
        // Read again under the lock: another delivery may have finished while this one waited.
        let outcome = match self.settled(&import, &id).await {
            Ok(Some(outcome)) => outcome,
            Ok(None) => self.request(import, &id).await,
            Err(e) => ledger_failure(e),
        };
        if let Err(e) = lock.release().await {
            tracing::debug!(error = %e, "import lock left to expire");
        }
        outcome
    }

    /// What the ledger (and, after an ambiguous failure, Snyk) says is already done for this target:
    /// `None` when it still has to be imported.
    async fn settled(&self, import: &ImportRepo, id: &str) -> Result<Option<Outcome>, LedgerError> {
        let record = self.ledger.target(id).await?;
        // A POST began and its process stopped before the answer: the job it may have made is given time
        // to finish (and show in Snyk) before anyone looks there.
        if let Some(Record {
            maybe_requested: true,
            posting_since_ms: Some(since),
            ..
        }) = &record
            && let Some(wait) = self.posting_grace(*since)
        {
            let later = Body::ImportRepo(import.clone()).publish_after(wait);
            return Ok(Some(Outcome::Ack(vec![later])));
        }
        match record {
            Some(r) if r.state == State::Imported => {
                tracing::debug!(target = %id, "already imported");
                // Counted in this run too, so its status adds up.
                self.ledger
                    .mark(&import.run_id, Tally::In(State::Imported), id)
                    .await?;
                Ok(Some(Outcome::ack()))
            }
            // A job was requested before (by a replica that then stopped): follow it instead of importing again.
            Some(Record {
                state: State::Requested,
                job_url: Some(url),
                ..
            }) => match JobUrl::new(url) {
                Ok(job_url) => Ok(Some(Outcome::Ack(vec![
                    self.follow_recorded(import.clone(), job_url),
                ]))),
                // The ledger is input too: a URL no message can carry is no job to follow; Snyk's record
                // tells whether the import happened.
                Err(_) => Ok(self.look_in_snyk(import, id).await),
            },
            // An earlier POST failed in a way that may have reached Snyk: look before posting again.
            Some(r) if r.maybe_requested => Ok(self.look_in_snyk(import, id).await),
            _ => Ok(None),
        }
    }

    /// After an ambiguous POST: if Snyk shows the target, the import happened (its job is done); else it is
    /// posted again, which duplicates it only when the first job is still pending.
    async fn look_in_snyk(&self, import: &ImportRepo, id: &str) -> Option<Outcome> {
        match self
            .snyk
            .has_target(&import.org_id, &record::display_name(import))
            .await
        {
            Ok(false) => None,
            Ok(true) => {
                tracing::info!(target = %id, "an import whose answer was lost had happened");
                Some(self.found_in_snyk(import, id, false).await)
            }
            Err(e) => Some(snyk_failure(e)),
        }
    }

    /// How much longer a POST that began at `since_ms` and was never answered is given before Snyk is
    /// asked about it: twice the wait before a job's first poll, at least `requeue_after`. `None` once
    /// that has passed.
    fn posting_grace(&self, since_ms: u64) -> Option<Duration> {
        let grace = (self.timing.first_poll(false) * 2).max(self.policy.requeue_after);
        let due = since_ms.saturating_add(u64::try_from(grace.as_millis()).unwrap_or(u64::MAX));
        crate::wait_until(due)
    }

    async fn request(&self, import: ImportRepo, id: &str) -> Outcome {
        // Recorded before the POST: should this process stop before the answer is recorded, the redelivery
        // finds it and looks in Snyk instead of posting again. So several requests may be in flight at once
        // without a crash duplicating them.
        let posting = Record {
            attempts: import.failed_jobs,
            maybe_requested: true,
            posting_since_ms: Some(crate::now_ms()),
            ..Record::new(State::Requested, &import.run_id)
        };
        if let Err(e) = self.ledger.record(id, &posting).await {
            return ledger_failure(e);
        }
        // The policy's exclusion globs for this repository, else the importer's own options.
        let options = match import
            .policy
            .as_ref()
            .and_then(|p| p.exclusion_globs.clone())
        {
            Some(globs) => ImportOptions {
                exclusion_globs: Some(globs),
                ..self.options.clone()
            },
            None => self.options.clone(),
        };
        let job_url = match self
            .snyk
            .import(
                &import.org_id,
                &import.integration_id,
                &api_target(&import.target),
                &options,
            )
            .await
        {
            Ok(url) => match JobUrl::new(url) {
                Ok(url) => url,
                // The job exists; its URL cannot travel in a message. Snyk's record shows the target once
                // the job is done, and the next attempt looks there before posting.
                Err(e) => {
                    return Outcome::park(format!(
                        "Snyk's job URL for {id} cannot be followed: {e}"
                    ));
                }
            },
            Err(e) if e.may_have_happened() => return self.ambiguous(&import, id, e).await,
            Err(e) => {
                // Surely not sent (or refused): nothing to look for later.
                let unsent = Record {
                    maybe_requested: false,
                    posting_since_ms: None,
                    ..posting
                };
                if let Err(e) = self.ledger.record(id, &unsent).await {
                    return ledger_failure(e);
                }
                return self
                    .failed_call(id, &import.run_id, import.failed_jobs, e)
                    .await;
            }
        };
        let record = Record {
            attempts: import.failed_jobs,
            job_url: Some(job_url.to_string()),
            ..Record::new(State::Requested, &import.run_id)
        };
        // The job exists now: its poll carries its URL whatever happens to the ledger, so a Redis outage
        // cannot make a retry post it again. The poll records it when the job is done.
        let mut tries = 0;
        while let Err(e) = self.ledger.record(id, &record).await {
            tries += 1;
            if tries >= 10 || !e.is_transient() {
                tracing::warn!(error = %e, target = %id, "job not recorded; its poll follows it");
                break;
            }
            tokio::time::sleep(bb2snyk_http::backoff(tries, Duration::from_secs(5))).await;
        }
        let requested = Event::ImportRequested(ImportRequested {
            run_id: import.run_id.clone(),
            subject: id.to_owned(),
            about: about(&import),
            job_url: job_url.clone(),
        });
        bb2snyk_telemetry::metrics::import_jobs_in_flight(1.0);
        Outcome::Ack(vec![self.first_poll(import, job_url), requested.publish()])
    }

    /// The POST failed after it may have reached Snyk: recorded as such, and retried through the tiers,
    /// where [`Importer::settled`] looks in Snyk before posting again.
    async fn ambiguous(&self, import: &ImportRepo, id: &str, e: SnykError) -> Outcome {
        let record = Record {
            attempts: import.failed_jobs,
            maybe_requested: true,
            last_error: Some(e.to_string()),
            ..Record::new(State::Failed, &import.run_id)
        };
        if let Err(e) = self.ledger.record(id, &record).await {
            return ledger_failure(e);
        }
        Outcome::retry(format!(
            "{e}; Snyk may have accepted the import, so its targets are read before posting again"
        ))
    }

    /// A Snyk call failed: passing failures are retried; the rest park the message with Snyk's reason.
    async fn failed_call(&self, id: &str, run: &str, attempts: u32, e: SnykError) -> Outcome {
        if let Some(wait) = e.deferred() {
            return Outcome::defer(wait);
        }
        if e.is_transient() {
            return Outcome::retry(e.to_string());
        }
        let record = Record {
            attempts,
            ..Record::new(State::Parked, run)
        };
        self.settle_parked(id, record, e.to_string()).await
    }

    async fn settle_parked(&self, id: &str, mut record: Record, reason: String) -> Outcome {
        record.state = State::Parked;
        record.last_error = Some(reason.clone());
        match self.ledger.record(id, &record).await {
            Ok(()) => Outcome::park(reason),
            Err(e) => ledger_failure(e),
        }
    }
}

/// A Snyk read that failed: deferred while the budget has no slot, retried while it may pass, else parked.
fn snyk_failure(e: SnykError) -> Outcome {
    match e.deferred() {
        Some(wait) => Outcome::defer(wait),
        None => Outcome::failed(e.is_transient(), e.to_string()),
    }
}

/// Redis trouble is retried; a corrupt record is parked with how to clear it.
fn ledger_failure(e: LedgerError) -> Outcome {
    Outcome::failed(e.is_transient(), format!("ledger: {e}"))
}

mod metadata;
mod poll;
mod wire;
use wire::{about, api_target, project_ids};
mod record;
mod sync;
#[cfg(test)]
mod tests;
