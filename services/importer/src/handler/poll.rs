//! Following an import job: pending, polled again later; complete, recorded with its projects; failed,
//! imported again up to `max_failed_jobs`, then parked with the job's log.

use bb2snyk_broker::{Outcome, Publish, Route};
use bb2snyk_ledger::{Record, State};
use bb2snyk_messages::{
    Body, Event, IMPORTER_POLLS, ImportCompleted, ImportFailed, ImportRepo, PollImport,
};
use bb2snyk_snyk::JobStatus;

use super::{Importer, about, ledger_failure};

impl Importer {
    /// Follows a job one step; a job that ends (whatever its end) leaves the in-flight count.
    pub(super) async fn poll(&self, poll: PollImport) -> Outcome {
        let outcome = self.follow(poll).await;
        let polls_again = match &outcome {
            Outcome::Ack(publishes) => publishes
                .iter()
                .any(|p| p.to == Route::Queue(IMPORTER_POLLS.into())),
            Outcome::Retry { .. } | Outcome::Defer { .. } => true,
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
            JobStatus::Pending if poll.polls.saturating_add(1) >= self.policy.max_polls => {
                let reason = format!(
                    "import job {} still pending after {} polls",
                    job.id,
                    poll.polls.saturating_add(1)
                );
                self.settle_parked(&id, record, reason).await
            }
            JobStatus::Pending => Outcome::Ack(vec![self.poll_later(
                poll.import,
                poll.job_url,
                poll.polls.saturating_add(1),
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
                    poll.import.failed_jobs.saturating_add(1)
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

    pub(super) fn poll_later(&self, import: ImportRepo, job_url: String, polls: u32) -> Publish {
        Body::PollImport(PollImport {
            import,
            job_url,
            polls,
        })
        .publish_after(self.policy.poll_every)
    }
}
