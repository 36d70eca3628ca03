//! Following an import job: pending, polled again later; complete, recorded with its projects; failed,
//! imported again up to `max_failed_jobs`, then parked with the job's log.

use bb2snyk_broker::{Outcome, Publish, Route};
use bb2snyk_ledger::{Record, State};
use bb2snyk_messages::{
    Body, Event, IMPORTER_POLLS, ImportCompleted, ImportFailed, ImportRepo, JobUrl, MAX_RETIRED,
    PollImport, ProjectsMetadata, UnixMs,
};
use bb2snyk_snyk::{Job, JobStatus};

use std::time::Duration;

use super::{Importer, about, ledger_failure, project_ids};

mod counted;
use crate::schedule::{now_ms, wait_until};
use crate::tuning::TUNING;

/// How long a job's completion may take to record before another delivery may record it.
const DONE_LOCK: Duration = Duration::from_secs(30);

impl Importer {
    /// Follows a job one step; a job that ends (whatever its end) leaves the in-flight count. A poll that
    /// comes back before it is due (its delay queue is the longest not over the wait) waits out the rest.
    pub(super) async fn poll(&self, poll: PollImport) -> Outcome {
        if poll.hinted {
            return self.hinted(poll).await;
        }
        let wait = wait_until(poll.due_ms());
        // A hint may have seen the job done meanwhile: then its poll ends as it passes, not when due.
        if let Some(wait) = wait.filter(|_| !self.hints.enabled()) {
            return Outcome::defer(wait);
        }
        let import = poll.import.clone();
        // A job the ledger already records imported needs no request: a hinted poll saw it done, or
        // this poll was delivered twice.
        let outcome = match (self.imported_record(&poll).await, wait) {
            (Some(_), _) => Outcome::ack(),
            (None, Some(wait)) => return Outcome::defer(wait.min(TUNING.pass_every)),
            (None, None) => self.follow(poll).await,
        };
        let polls_again = match &outcome {
            Outcome::Ack(publishes) => publishes
                .iter()
                .any(|p| p.to == Route::Queue(IMPORTER_POLLS.into())),
            Outcome::Retry { .. } | Outcome::Defer { .. } => true,
            Outcome::Park { .. } => false,
        };
        if !polls_again {
            self.hints.forget(&import);
            bb2snyk_telemetry::metrics::import_jobs_in_flight(-1.0);
        }
        outcome
    }

    /// A poll made because Snyk listed the job's target as new: a completed job is recorded as its own
    /// poll would record it. Anything else (still pending, failed, an error) is left to the job's own
    /// polls, so a hint never parks, retries or polls again.
    async fn hinted(&self, poll: PollImport) -> Outcome {
        // Its own poll may have recorded it since (in a fleet, often another importer's): no request then.
        if self.imported_record(&poll).await.is_some() {
            return Outcome::ack();
        }
        let found = self.snyk.job(&poll.import.org_id, &poll.job_url).await;
        if let Ok(job) = &found {
            counted::polled_hinted(job.status);
        }
        match found {
            Ok(job) if job.status == JobStatus::Complete => {
                self.hints.seen_done(age(&poll));
                self.completed(poll, &job).await
            }
            Ok(job) => {
                tracing::debug!(job = %job.id, status = ?job.status, "a hinted job is not complete; its own poll follows it");
                Outcome::ack()
            }
            Err(e) => match e.deferred() {
                // No budget in sight: it comes back later, as any poll would.
                Some(wait) => Outcome::defer(wait),
                None => {
                    tracing::debug!(error = %e, "a hinted poll failed; the job is followed for the next hint");
                    self.hints.follow(&PollImport {
                        hinted: false,
                        ..poll
                    });
                    Outcome::ack()
                }
            },
        }
    }

    /// The ledger's record of the poll's target, when it records it imported in the poll's run (another
    /// run's record counts for that run only: this poll records it for its own, as before).
    async fn imported_record(&self, poll: &PollImport) -> Option<Record> {
        let record = self.ledger.target(&poll.import.target_id()).await.ok()??;
        (record.state == State::Imported && record.run == poll.import.run_id).then_some(record)
    }

    async fn follow(&self, poll: PollImport) -> Outcome {
        let id = poll.import.target_id();
        let job = match self.snyk.job(&poll.import.org_id, &poll.job_url).await {
            Ok(job) => job,
            Err(e) => {
                return self
                    .failed_call(&id, &poll.import.run_id, poll.import.failed_jobs, e)
                    .await;
            }
        };
        counted::polled(&poll, job.status, self.hints.trusted());
        let mut record = Record {
            attempts: poll.import.failed_jobs,
            job_url: Some(poll.job_url.to_string()),
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
            JobStatus::Pending => {
                let age = age(&poll);
                let wait = self.timing.next_poll(age, self.hints.trusted());
                tracing::debug!(polls = poll.polls, ?age, ?wait, "job pending");
                Outcome::Ack(vec![self.poll_after(
                    PollImport {
                        polls: poll.polls.saturating_add(1),
                        ..poll
                    },
                    wait,
                )])
            }
            JobStatus::Complete => {
                self.hints.seen_done(age(&poll));
                self.completed(poll, &job).await
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
                    run_id: poll.import.run_id.clone(),
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
                    again.publish_after(self.policy.requeue_after),
                    failed.publish(),
                ])
            }
        }
    }

    /// Records a completed job with its projects and tells of it, once: a job's own poll and a hinted one
    /// may find it complete at the same moment, and only the first to take the target's lock records it.
    async fn completed(&self, poll: PollImport, job: &Job) -> Outcome {
        let id = poll.import.target_id();
        let lock = match self
            .ledger
            .store()
            .lock(&format!("done-lock:{id}"), DONE_LOCK)
            .await
        {
            Ok(Some(lock)) => lock,
            // Another delivery is recording this job now: a hint leaves it to that one; a job's own
            // poll (perhaps another run's) comes back to record it for its run if that one did not.
            Ok(None) if poll.hinted => return Outcome::ack(),
            Ok(None) => return Outcome::defer(Duration::from_secs(1)),
            Err(e) => return Outcome::retry(format!("Redis: {e}")),
        };
        let outcome = self.record_completed(poll, job, &id).await;
        if let Err(e) = lock.release().await {
            tracing::debug!(error = %e, "done lock left to expire");
        }
        outcome
    }

    async fn record_completed(&self, poll: PollImport, job: &Job, id: &str) -> Outcome {
        match self.ledger.target(id).await {
            Ok(Some(done))
                if done.state == State::Imported
                    && done.run == poll.import.run_id
                    && done.job_url.as_deref() == Some(poll.job_url.as_str()) =>
            {
                return Outcome::ack();
            }
            Ok(_) => {}
            Err(e) => return ledger_failure(e),
        }
        let record = Record {
            attempts: poll.import.failed_jobs,
            job_url: Some(poll.job_url.to_string()),
            projects: job
                .projects()
                .filter(|p| p.success)
                .filter_map(|p| p.project_id.clone())
                .collect(),
            ..Record::new(State::Imported, &poll.import.run_id)
        };
        if let Err(e) = self.ledger.record(id, &record).await {
            return ledger_failure(e);
        }
        // The policy's tags and attributes go on the projects as work of its own: retried and parked on
        // its own, while the import counts as done.
        let metadata = poll
            .import
            .policy
            .as_ref()
            .filter(|p| p.has_metadata())
            .into_iter()
            .flat_map(|policy| {
                record.projects.chunks(MAX_RETIRED).map(|chunk| {
                    Body::ProjectsMetadata(ProjectsMetadata {
                        run_id: poll.import.run_id.clone(),
                        org_id: poll.import.org_id.clone(),
                        target: poll.import.target.full_name(),
                        projects: project_ids(chunk),
                        policy: policy.clone(),
                    })
                    .publish()
                })
            })
            .collect::<Vec<_>>();
        let completed = Event::ImportCompleted(ImportCompleted {
            run_id: poll.import.run_id.clone(),
            subject: id.to_owned(),
            about: about(&poll.import),
            projects: project_ids(&record.projects),
            job_url: Some(poll.job_url),
            before: false,
        });
        let mut publishes = vec![completed.publish()];
        publishes.extend(metadata);
        Outcome::Ack(publishes)
    }

    /// The first poll of a job Snyk just accepted (or one found in the ledger): a safety net where
    /// listings work and tell of many jobs at once.
    pub(super) fn first_poll(&self, import: ImportRepo, job_url: JobUrl) -> Publish {
        let poll = PollImport {
            import,
            job_url,
            polls: 0,
            requested_ms: Some(UnixMs(now_ms())),
            not_before_ms: None,
            hinted: false,
        };
        let by_listings = self.hints.trusted() && self.hints.followed() >= TUNING.many_followed;
        self.poll_after(poll, self.timing.first_poll(by_listings))
    }

    /// A poll for a job the ledger recorded (its requester stopped): its age is unknown, so it is polled
    /// soon.
    pub(super) fn follow_recorded(&self, import: ImportRepo, job_url: JobUrl) -> Publish {
        let poll = PollImport {
            import,
            job_url,
            polls: 1,
            requested_ms: Some(UnixMs(now_ms())),
            not_before_ms: None,
            hinted: false,
        };
        self.poll_after(poll, self.timing.next_poll(Duration::ZERO, false))
    }

    /// `poll`, due `wait` from now; its job is followed for hints until then.
    fn poll_after(&self, poll: PollImport, wait: Duration) -> Publish {
        let poll = PollImport {
            not_before_ms: Some(UnixMs(
                now_ms().saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)),
            )),
            ..poll
        };
        self.hints.follow(&poll);
        // With hints, a poll passes by at least every `pass_every` to see whether one recorded its job,
        // rather than waiting out the longest delay queue (32 s for a minute's wait).
        let hop = if self.hints.enabled() {
            wait.min(TUNING.pass_every)
        } else {
            wait
        };
        Body::PollImport(poll).publish_after(hop)
    }
}

/// How long ago Snyk accepted the poll's job.
fn age(poll: &PollImport) -> Duration {
    let now = now_ms();
    Duration::from_millis(now.saturating_sub(poll.requested_at(now)))
}
