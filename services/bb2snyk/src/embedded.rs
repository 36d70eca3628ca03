//! The pipeline in one process: the services' own handlers on the in-memory broker and store, for
//! `bb2snyk run`, `import` and `demo`. Results become snyk-api-import's logs as they happen.

use std::{collections::BTreeMap, io::IsTerminal, path::Path, sync::Arc, time::Duration};

use bb2snyk_broker::{Message, Stage, memory::MemoryBroker};
use bb2snyk_ledger::{Ledger, Record, RunCounts, State};
use bb2snyk_messages::{Body, Event, ImportRepo, QUEUES, TargetRef};
use bb2snyk_service::CancellationToken;
use bb2snyk_settings::Settings;
use bb2snyk_store::Store;
use serde_json::json;

use crate::{
    Failure,
    files::{self, ERROR, INFO, Log},
};

/// The stages running in this process, and what they share.
pub struct Embedded {
    pub broker: MemoryBroker,
    pub ledger: Ledger,
    pub run_id: bb2snyk_messages::RunId,
    shutdown: CancellationToken,
    serving: tokio::task::JoinHandle<()>,
}

/// Which stages a command needs: `import` only the importer, `run` all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stages {
    ImporterOnly,
    All,
}

impl Embedded {
    /// Starts the stages on the short retry schedule; `done` are targetIds already imported (from
    /// `imported-targets.log`), which the importer then skips.
    pub async fn start(
        settings: &Settings,
        which: Stages,
        done: impl IntoIterator<Item = String>,
    ) -> Result<Self, Failure> {
        let mut settings = settings.clone();
        settings.pipeline.retry_tiers = settings.pipeline.embedded_retry_tiers.clone();
        let store = Store::memory();
        let ledger = Ledger::new(store.clone()).keeping_runs(settings.redis.run_ttl);
        for id in done {
            ledger
                .record(&id, &Record::new(State::Imported, "earlier"))
                .await?;
        }
        let broker = MemoryBroker::new(bb2snyk_service::topology(&settings).retry);
        let http = crate::http(&settings)?;
        let importer = bb2snyk_importer::importer(&settings, http.clone(), store.clone())?;
        let (hints, snyk) = (importer.hints.clone(), importer.snyk.clone());
        let mut stages: Vec<Stage> = bb2snyk_importer::stages(importer, &settings);
        if which == Stages::All {
            let creator = bb2snyk_org_creator::org_creator(&settings, http.clone(), store.clone())?;
            stages.extend(bb2snyk_org_creator::stages(creator));
            let discoverer = bb2snyk_discoverer::discoverer(&settings, http, store)?;
            // Wrong credentials stop the command now, with the fix, instead of parking the run later.
            bb2snyk_discoverer::prove(&discoverer.bitbucket).await?;
            let discoverer =
                bb2snyk_discoverer::with_backlog(discoverer, Arc::new(broker.clone()), &settings);
            stages.extend(bb2snyk_discoverer::stages(discoverer));
        }
        let shutdown = CancellationToken::new();
        let serving = {
            let (broker, shutdown) = (broker.clone(), shutdown.clone());
            // In-flight handlers always finish in memory: there is nothing to drain to.
            tokio::spawn(async move {
                let served =
                    bb2snyk_broker::serve_stages(&broker, &stages, &shutdown, Duration::ZERO).await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "the in-process broker stopped");
                }
            })
        };
        {
            let (broker, shutdown) = (broker.clone(), shutdown.clone());
            tokio::spawn(async move { hints.run(&snyk, &broker, &shutdown).await });
        }
        Ok(Self {
            broker,
            ledger,
            run_id: bb2snyk_messages::new_run_id(),
            shutdown,
            serving,
        })
    }

    pub fn publish(&self, body: &Body) {
        self.broker.publish(body.queue(), body.to_message());
    }

    /// Runs until every message is settled (or Ctrl-C), writing the logs as results arrive; then stops
    /// the stages and returns the summary.
    /// `total` is the number of targets when known up front (`import`); `run` counts what it discovers.
    pub async fn finish(
        self,
        logs: &mut Logs,
        label: &str,
        total: Option<u64>,
    ) -> Result<Summary, Failure> {
        let mut progress = Progress::new(label, total);
        let mut interrupted = false;
        loop {
            tokio::select! {
                () = self.broker.idle() => break,
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = tokio::signal::ctrl_c() => {
                    interrupted = true;
                    break;
                }
            }
            logs.record(self.broker.take_events())?;
            progress.show(&self.ledger.counts(&self.run_id).await?);
        }
        logs.record(self.broker.take_events())?;
        self.shutdown.cancel();
        if !interrupted {
            let _ = self.serving.await;
        }
        let counts = self.ledger.counts(&self.run_id).await?;
        progress.done(&counts);
        let mut parked = Vec::new();
        for queue in QUEUES {
            for (message, reason) in self.broker.parked(queue) {
                logs.parked(&message, &reason)?;
                let what = Body::from_message(&message).map_or_else(
                    |_| format!("message {}", message.message_id),
                    |body| body.describe(),
                );
                parked.push((what, reason));
            }
        }
        Ok(Summary {
            counts,
            imported_now: logs.completed,
            parked,
            interrupted,
        })
    }
}

/// How a command ended.
#[derive(Debug)]
pub struct Summary {
    pub counts: RunCounts,
    /// Imports that completed in this command (the rest of `imported` were done before).
    pub imported_now: u64,
    /// What was parked, with its reason.
    pub parked: Vec<(String, String)>,
    pub interrupted: bool,
}

impl Summary {
    /// Prints what happened and what still fails, and picks the exit code: 1 when anything was parked.
    pub fn report(&self) -> Result<(), Failure> {
        println!(
            "Imported {} target(s); {} were imported before; {} skipped by discovery; {} parked.",
            self.imported_now,
            self.counts.imported.saturating_sub(self.imported_now),
            self.counts.skipped,
            self.parked.len()
        );
        for (what, reason) in &self.parked {
            println!("  parked {what}: {reason}");
        }
        if self.interrupted {
            return Err(Failure::Failed(
                "interrupted; run the same command again to carry on".into(),
            ));
        }
        if !self.parked.is_empty() {
            return Err(Failure::Failed(format!(
                "{} item(s) could not be imported; the reasons are above and in the *.failed-imports.log files; \
                 running the command again retries them",
                self.parked.len()
            )));
        }
        Ok(())
    }
}

/// snyk-api-import's logs in `SNYK_LOG_PATH`, kept open for the run.
#[derive(Debug)]
pub struct Logs {
    dir: std::path::PathBuf,
    imported: Log,
    per_org: BTreeMap<String, Log>,
    /// Imports completed so far.
    pub completed: u64,
    /// What each workspace's sync found (a sync only).
    pub planned: Vec<bb2snyk_messages::SyncPlanned>,
    /// Projects a sync retired.
    pub retired: Vec<bb2snyk_messages::ProjectsRetired>,
    /// What a report found of each workspace.
    pub coverage: Vec<bb2snyk_messages::CoverageListed>,
}

impl Logs {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            imported: Log::new(dir, files::IMPORTED_TARGETS),
            per_org: BTreeMap::new(),
            completed: 0,
            planned: Vec::new(),
            retired: Vec::new(),
            coverage: Vec::new(),
        }
    }

    fn org_log(&mut self, org: &str, kind: &str) -> &mut Log {
        let name = format!("{org}.{kind}.log");
        self.per_org
            .entry(name.clone())
            .or_insert_with(|| Log::new(&self.dir, &name))
    }

    fn record(&mut self, events: Vec<(Message, String)>) -> Result<(), Failure> {
        for (message, _routing_key) in events {
            match Event::from_message(&message) {
                Ok(Event::ImportRequested(e)) => {
                    self.org_log(&e.about.org_id, "import-jobs").append(
                        INFO,
                        "Kicked off import",
                        json!({"orgId": e.about.org_id, "pollingUrl": e.job_url}),
                    )?
                }
                // Written when the job completes, not when it is requested, so a failed job is retried.
                // Listed in the log either way, so a lost log is whole again; counted as imported now only
                // when this run made it.
                Ok(Event::ImportCompleted(e)) => {
                    if !e.before {
                        self.completed += 1;
                    }
                    let TargetRef {
                        org_id,
                        integration_id,
                        target,
                    } = &e.about;
                    self.imported.append(
                        INFO,
                        "Target imported",
                        files::imported_line(
                            org_id,
                            integration_id,
                            &files::FileTarget::from(target),
                            e.job_url.as_deref().unwrap_or_default(),
                        ),
                    )?;
                }
                Ok(Event::SyncPlanned(e)) => self.planned.push(e),
                Ok(Event::ProjectsRetired(e)) => self.retired.push(e),
                Ok(Event::CoverageListed(e)) => self.coverage.push(e),
                Ok(_) => {}
                Err(reason) => tracing::warn!(%reason, "event not understood"),
            }
        }
        Ok(())
    }

    fn parked(&mut self, message: &Message, reason: &str) -> Result<(), Failure> {
        let import = match Body::from_message(message) {
            Ok(Body::ImportRepo(i)) => i,
            Ok(Body::PollImport(p)) => p.import,
            _ => return Ok(()),
        };
        let ImportRepo {
            org_id,
            integration_id,
            target,
            ..
        } = import;
        self.org_log(&org_id, "failed-imports").append(
            ERROR,
            "Failed to import target",
            json!({
                "integrationId": integration_id,
                "locationUrl": null,
                "target": target,
                "errorData": {"errorMessage": "Could not complete API import", "innerError": reason},
            }),
        )
    }
}

/// A progress bar and counts: rewritten in place on a terminal, a plain line every 10 s otherwise.
struct Progress {
    label: String,
    /// Targets to settle, when known up front (`import`); else what discovery has found so far.
    total: Option<u64>,
    terminal: bool,
    last: std::time::Instant,
}

const BAR_WIDTH: u64 = 24;

impl Progress {
    fn new(label: &str, total: Option<u64>) -> Self {
        Self {
            label: label.to_owned(),
            total,
            terminal: std::io::stderr().is_terminal(),
            last: std::time::Instant::now(),
        }
    }

    fn line(&self, counts: &RunCounts) -> String {
        // A report imports nothing: what it has read is all there is to show.
        if self.label == "report" {
            return format!(
                "report: {} orgs read, {} repositories listed",
                counts.orgs, counts.discovered
            );
        }
        let total = self.total.unwrap_or(counts.discovered);
        let settled = counts.settled().min(total);
        let filled = (settled * BAR_WIDTH).checked_div(total).unwrap_or(0);
        let bar: String = (0..BAR_WIDTH)
            .map(|i| if i < filled { '#' } else { '-' })
            .collect();
        format!(
            "{} [{bar}] {settled}/{total}: {} orgs ready, {} discovered, {} in flight, {} imported, {} retrying, {} skipped, {} parked",
            self.label,
            counts.orgs,
            counts.discovered,
            counts.requested,
            counts.imported,
            counts.failed,
            counts.skipped,
            counts.parked
        )
    }

    fn show(&mut self, counts: &RunCounts) {
        if self.terminal {
            eprint!("\r\x1b[2K{}", self.line(counts));
        } else if self.last.elapsed() >= Duration::from_secs(10) {
            self.last = std::time::Instant::now();
            eprintln!("{}", self.line(counts));
        }
    }

    fn done(&self, counts: &RunCounts) {
        if self.terminal {
            eprint!("\r\x1b[2K");
        }
        eprintln!("{}", self.line(counts));
    }
}
