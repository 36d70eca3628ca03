//! The importer's stage: import one repository, then follow its job through delayed polls, so no import
//! slot waits on Snyk. The ledger makes it idempotent: an imported target is skipped, and a target whose
//! job was already requested is polled again, not imported again.

use std::{sync::Arc, time::Duration};

use bb2snyk_broker::{Handler, Message, Outcome, Publish, Route};
use bb2snyk_ledger::{Ledger, LedgerError, Record, State, Tally};
use bb2snyk_messages::{
    Body, Event, IMPORTER_POLLS, ImportCompleted, ImportFailed, ImportRepo, ImportRequested,
    PollImport, Target, TargetRef,
};
use bb2snyk_snyk::{Client as Snyk, ImportOptions, JobStatus, SnykError};
use futures_util::future::BoxFuture;
use tokio::sync::Semaphore;

#[derive(Debug, Clone)]
pub struct Policy {
    /// Time between two polls of a job.
    pub poll_every: Duration,
    /// Polls of one job before it counts as stuck and is parked.
    pub max_polls: u32,
    /// Failed jobs of one target before it is parked with the job's log.
    pub max_failed_jobs: u32,
    /// When a crashed holder's target lock expires; a live holder's is renewed while its request runs.
    pub import_lock: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            poll_every: Duration::from_secs(10),
            max_polls: 360,
            max_failed_jobs: 3,
            import_lock: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Importer {
    pub snyk: Snyk,
    pub ledger: Ledger,
    pub options: ImportOptions,
    pub policy: Policy,
    /// Import requests in flight in this process. Between Snyk accepting a request and the ledger recording
    /// its job, a crash leaves the import unrecorded, and its redelivery imports again: one permit bounds
    /// that to one duplicate per crash. Polls, most of an import's life, do not take it.
    pub requests: Arc<Semaphore>,
}

impl Importer {
    pub fn new(snyk: Snyk, ledger: Ledger, options: ImportOptions, policy: Policy) -> Self {
        Self {
            snyk,
            ledger,
            options,
            policy,
            requests: Arc::new(Semaphore::new(1)),
        }
    }
}

impl Handler for Importer {
    fn handle(&self, message: Message) -> BoxFuture<'_, Outcome> {
        Box::pin(async move {
            match Body::from_message(&message) {
                Ok(Body::ImportRepo(import)) => self.import(import).await,
                Ok(Body::PollImport(poll)) => self.poll(poll).await,
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
        let known = match self.ledger.target(&id).await {
            Ok(record) => record,
            Err(e) => return ledger_failure(e),
        };
        match known {
            Some(r) if r.state == State::Imported => {
                tracing::debug!(target = %id, "already imported");
                // Counted in this run too, so its status adds up.
                return match self
                    .ledger
                    .mark(&import.run_id, Tally::In(State::Imported), &id)
                    .await
                {
                    Ok(()) => Outcome::ack(),
                    Err(e) => ledger_failure(e),
                };
            }
            // A job was requested before (by a replica that then stopped): follow it instead of importing again.
            Some(Record {
                state: State::Requested,
                job_url: Some(job_url),
                ..
            }) => return Outcome::Ack(vec![self.poll_later(import, job_url, 0)]),
            _ => {}
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
                    Body::ImportRepo(import).publish_after(self.policy.poll_every),
                ]);
            }
            Err(e) => return Outcome::retry(format!("Redis: {e}")),
        };
        let outcome = self.request(import, &id).await;
        if let Err(e) = lock.release().await {
            tracing::debug!(error = %e, "import lock left to expire");
        }
        outcome
    }

    async fn request(&self, import: ImportRepo, id: &str) -> Outcome {
        let Ok(_one_at_a_time) = self.requests.acquire().await else {
            return Outcome::retry("the importer is stopping");
        };
        let job_url = match self
            .snyk
            .import(
                &import.org_id,
                &import.integration_id,
                &api_target(&import.target),
                &self.options,
            )
            .await
        {
            Ok(url) => url,
            Err(e) => {
                return self
                    .failed_call(id, &import.run_id, import.failed_jobs, e)
                    .await;
            }
        };
        let record = Record {
            attempts: import.failed_jobs,
            job_url: Some(job_url.clone()),
            ..Record::new(State::Requested, &import.run_id)
        };
        // The job exists now: losing its record would import the repository again, so a Redis restart is
        // waited out here rather than handed to the retry tiers.
        let mut tries = 0;
        while let Err(e) = self.ledger.record(id, &record).await {
            tries += 1;
            if tries >= 10 || !e.is_transient() {
                return ledger_failure(e);
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
        Outcome::Ack(vec![
            self.poll_later(import, job_url, 0),
            requested.publish(),
        ])
    }

    /// Follows a job one step; a job that ends (whatever its end) leaves the in-flight count.
    async fn poll(&self, poll: PollImport) -> Outcome {
        let outcome = self.follow(poll).await;
        let polls_again = match &outcome {
            Outcome::Ack(publishes) => publishes
                .iter()
                .any(|p| p.to == Route::Queue(IMPORTER_POLLS.into())),
            Outcome::Retry { .. } => true,
            Outcome::Park { .. } => false,
        };
        if !polls_again {
            bb2snyk_telemetry::metrics::import_jobs_in_flight(-1.0);
        }
        outcome
    }

    async fn follow(&self, poll: PollImport) -> Outcome {
        let id = poll.import.target_id();
        let job = match self.snyk.job(&poll.job_url).await {
            Ok(job) => job,
            Err(e) => {
                return self
                    .failed_call(&id, &poll.import.run_id, poll.import.failed_jobs, e)
                    .await;
            }
        };
        let mut record = Record {
            attempts: poll.import.failed_jobs,
            job_url: Some(poll.job_url.clone()),
            ..Record::new(State::Requested, &poll.import.run_id)
        };
        match job.status {
            JobStatus::Pending if poll.polls + 1 >= self.policy.max_polls => {
                let reason = format!(
                    "import job {} still pending after {} polls",
                    job.id,
                    poll.polls + 1
                );
                self.settle_parked(&id, record, reason).await
            }
            JobStatus::Pending => Outcome::Ack(vec![self.poll_later(
                poll.import,
                poll.job_url,
                poll.polls + 1,
            )]),
            JobStatus::Complete => {
                record.state = State::Imported;
                record.projects = job
                    .projects()
                    .filter(|p| p.success)
                    .filter_map(|p| p.project_id.clone())
                    .collect();
                if let Err(e) = self.ledger.record(&id, &record).await {
                    return ledger_failure(e);
                }
                let completed = Event::ImportCompleted(ImportCompleted {
                    run_id: record.run,
                    subject: id,
                    about: about(&poll.import),
                    job_url: poll.job_url,
                    projects: record.projects,
                });
                Outcome::Ack(vec![completed.publish()])
            }
            JobStatus::Failed | JobStatus::Aborted => {
                let reason = job.failure();
                let replayed = matches!(
                    self.ledger.target(&id).await,
                    Ok(Some(Record {
                        state: State::Parked,
                        ..
                    }))
                );
                let failed_jobs = if replayed {
                    0
                } else {
                    poll.import.failed_jobs + 1
                };
                if failed_jobs >= self.policy.max_failed_jobs {
                    return self
                        .settle_parked(&id, record, format!("{reason} ({failed_jobs} failed jobs)"))
                        .await;
                }
                record.state = State::Failed;
                record.attempts = failed_jobs;
                record.last_error = Some(reason.clone());
                if let Err(e) = self.ledger.record(&id, &record).await {
                    return ledger_failure(e);
                }
                let failed = Event::ImportFailed(ImportFailed {
                    run_id: record.run,
                    subject: id,
                    about: about(&poll.import),
                    error: reason,
                    failed_jobs,
                });
                let again = Body::ImportRepo(ImportRepo {
                    failed_jobs,
                    ..poll.import
                });
                Outcome::Ack(vec![
                    again.publish_after(self.policy.poll_every),
                    failed.publish(),
                ])
            }
        }
    }

    fn poll_later(&self, import: ImportRepo, job_url: String, polls: u32) -> Publish {
        Body::PollImport(PollImport {
            import,
            job_url,
            polls,
        })
        .publish_after(self.policy.poll_every)
    }

    /// A Snyk call failed: passing failures are retried; the rest park the message with Snyk's reason.
    async fn failed_call(&self, id: &str, run: &str, attempts: u32, e: SnykError) -> Outcome {
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

/// Redis trouble is retried; a corrupt record is parked with how to clear it.
fn ledger_failure(e: LedgerError) -> Outcome {
    Outcome::failed(e.is_transient(), format!("ledger: {e}"))
}

/// The wire's target as the Snyk client sends it: the two are separate types, so an API model change
/// cannot change what is on the queues.
fn api_target(target: &Target) -> bb2snyk_snyk::Target {
    bb2snyk_snyk::Target {
        owner: target.owner.clone(),
        name: target.name.clone(),
        branch: target.branch.clone(),
    }
}

/// Where the import went, as every import event says it.
fn about(import: &ImportRepo) -> TargetRef {
    TargetRef {
        org_id: import.org_id.clone(),
        integration_id: import.integration_id.clone(),
        target: import.target.clone(),
    }
}

#[cfg(test)]
mod tests;
