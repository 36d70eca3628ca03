//! The importer's stage: import one repository, then follow its job through delayed polls, so no import
//! slot waits on Snyk. The ledger makes it idempotent: an imported target is skipped, and a target whose
//! job was already requested is polled again, not imported again.

use std::{sync::Arc, time::Duration};

use bb2snyk_broker::{Handler, Message, Outcome, Publish};
use bb2snyk_ledger::{Ledger, Record, State};
use bb2snyk_messages::{Body, ImportRepo, PollImport, event};
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
    /// How long one import request may hold its target's lock; a crashed holder's lock expires after it.
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
            Err(e) => return Outcome::retry(format!("ledger: {e}")),
        };
        match known {
            Some(r) if r.state == State::Imported => {
                tracing::debug!(target = %id, "already imported");
                // Counted in this run too, so its status adds up.
                return match self.ledger.mark(&import.run_id, "imported", &id).await {
                    Ok(()) => Outcome::ack(),
                    Err(e) => Outcome::retry(format!("ledger: {e}")),
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
        let store = self.ledger.store();
        let lock = format!("import-lock:{id}");
        let owner = uuid::Uuid::new_v4().to_string();
        match store
            .set_nx_px(&lock, owner.as_bytes(), self.policy.import_lock)
            .await
        {
            Ok(true) => {}
            // Not a failure, so it spends no attempt: the same message comes back after a poll interval.
            Ok(false) => {
                let again = Body::ImportRepo(import);
                return Outcome::Ack(vec![Publish {
                    delay: Some(self.policy.poll_every),
                    ..again.publish()
                }]);
            }
            Err(e) => return Outcome::retry(format!("Redis: {e}")),
        }
        let outcome = self.request(import, &id).await;
        if let Err(e) = store.compare_and_delete(&lock, owner.as_bytes()).await {
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
                &import.target,
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
            state: State::Requested,
            run: import.run_id.clone(),
            attempts: import.failed_jobs,
            last_error: None,
            job_url: Some(job_url.clone()),
            projects: Vec::new(),
        };
        // The job exists now: losing its record would import the repository again, so a Redis restart is
        // waited out here rather than handed to the retry tiers.
        let mut tries = 0;
        while let Err(e) = self.ledger.record(id, &record).await {
            tries += 1;
            if tries >= 10 {
                return Outcome::retry(format!("ledger: {e}"));
            }
            tokio::time::sleep(bb2snyk_http::backoff(tries, Duration::from_secs(5))).await;
        }
        let requested = event(
            "import.requested",
            &import.run_id,
            id,
            about(&import, serde_json::json!({"job_url": job_url})),
        );
        bb2snyk_telemetry::metrics::import_jobs_in_flight(1.0);
        Outcome::Ack(vec![self.poll_later(import, job_url, 0), requested])
    }

    /// Follows a job one step; a job that ends (whatever its end) leaves the in-flight count.
    async fn poll(&self, poll: PollImport) -> Outcome {
        let outcome = self.follow(poll).await;
        let polls_again = match &outcome {
            Outcome::Ack(publishes) => publishes.iter().any(|p| p.message.kind == "import.poll.v1"),
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
            state: State::Requested,
            run: poll.import.run_id.clone(),
            attempts: poll.import.failed_jobs,
            last_error: None,
            job_url: Some(poll.job_url.clone()),
            projects: Vec::new(),
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
                    return Outcome::retry(format!("ledger: {e}"));
                }
                let details = about(
                    &poll.import,
                    serde_json::json!({"projects": record.projects, "job_url": poll.job_url}),
                );
                Outcome::Ack(vec![event("import.completed", &record.run, &id, details)])
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
                record.last_error = Some(reason);
                if let Err(e) = self.ledger.record(&id, &record).await {
                    return Outcome::retry(format!("ledger: {e}"));
                }
                let details = about(
                    &poll.import,
                    serde_json::json!({"error": record.last_error, "failed_jobs": failed_jobs}),
                );
                let again = Body::ImportRepo(ImportRepo {
                    failed_jobs,
                    ..poll.import
                });
                Outcome::Ack(vec![
                    Publish {
                        delay: Some(self.policy.poll_every),
                        ..again.publish()
                    },
                    event("import.failed", &record.run, &id, details),
                ])
            }
        }
    }

    fn poll_later(&self, import: ImportRepo, job_url: String, polls: u32) -> Publish {
        let body = Body::PollImport(PollImport {
            import,
            job_url,
            polls,
        });
        Publish {
            delay: Some(self.policy.poll_every),
            ..body.publish()
        }
    }

    /// A Snyk call failed: passing failures are retried; the rest park the message with Snyk's reason.
    async fn failed_call(&self, id: &str, run: &str, attempts: u32, e: SnykError) -> Outcome {
        if e.is_transient() {
            return Outcome::retry(e.to_string());
        }
        let record = Record {
            state: State::Parked,
            run: run.to_owned(),
            attempts,
            last_error: None,
            job_url: None,
            projects: Vec::new(),
        };
        self.settle_parked(id, record, e.to_string()).await
    }

    async fn settle_parked(&self, id: &str, mut record: Record, reason: String) -> Outcome {
        record.state = State::Parked;
        record.last_error = Some(reason.clone());
        match self.ledger.record(id, &record).await {
            Ok(()) => Outcome::park(reason),
            Err(e) => Outcome::retry(format!("ledger: {e}")),
        }
    }
}

/// An event's details about the target it concerns, so ops tools (and `bb2snyk import`'s logs) need no lookup.
fn about(import: &ImportRepo, mut details: serde_json::Value) -> serde_json::Value {
    if let serde_json::Value::Object(map) = &mut details {
        map.insert("org_id".into(), import.org_id.clone().into());
        map.insert(
            "integration_id".into(),
            import.integration_id.clone().into(),
        );
        map.insert(
            "target".into(),
            serde_json::to_value(&import.target).unwrap_or_default(),
        );
    }
    details
}
