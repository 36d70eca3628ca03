//! What the end-to-end tests and the benchmark share: a fleet of the services' own stages against the
//! sandbox ([`TestFleet`]), the service binaries, free ports, and starting a run the way `bb2snyk discover`
//! does. It lives here rather than in `tests/support` because it runs the services, and the services' own
//! tests use `tests/support`.

use std::{collections::HashMap, path::PathBuf};

use bb2snyk_ledger::Ledger;
use bb2snyk_messages::{Body, DISCOVERER, RunRequested, new_run_id};
use bb2snyk_sandbox::{Knobs, Sandbox};
use bb2snyk_service::{CancellationToken, Infrastructure};
use bb2snyk_settings::Settings;
use bb2snyk_store::Store;
use tokio::task::JoinHandle;

/// A stage of the pipeline, as a fleet runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Discoverer,
    OrgCreator,
    Importer,
}

pub const ALL: [Service; 3] = [Service::Discoverer, Service::OrgCreator, Service::Importer];

/// The sandbox with a generated tenant, the settings that point the services at it (on the local RabbitMQ
/// and Redis, under names of the test's own), and the replicas started so far, each running the service's
/// own `run` on a connection of its own, as separate processes would.
#[derive(Debug)]
pub struct TestFleet {
    /// Shared, so a test's chaos task can watch it.
    pub sandbox: std::sync::Arc<Sandbox>,
    /// The variables the settings came from, for child processes (`bb2snyk`, a service binary).
    pub env: HashMap<String, String>,
    pub settings: Settings,
    shutdown: CancellationToken,
    replicas: Vec<JoinHandle<()>>,
}

impl TestFleet {
    /// Starts the sandbox with `knobs`; `what` names the test's queues and keys, and `env` adds or
    /// overrides variables. No replica runs yet: see [`TestFleet::spawn`].
    pub async fn start(knobs: Knobs, what: &str, env: &[(&str, &str)]) -> Self {
        let sandbox = Sandbox::start(knobs).await.expect("the sandbox starts");
        let base = sandbox.env();
        Self::on(sandbox, base, what, env)
    }

    /// As [`TestFleet::start`] for a tenant of workspace-owned consumers (`knobs.consumers`): a
    /// credentials file (each consumer named for its workspaces when `named`) instead of the single pair,
    /// and every Snyk token of the knobs.
    pub async fn with_consumers(
        knobs: Knobs,
        what: &str,
        env: &[(&str, &str)],
        named: bool,
    ) -> Self {
        let sandbox = Sandbox::start(knobs).await.expect("the sandbox starts");
        let path = std::env::temp_dir().join(format!(
            "{}.toml",
            bb2snyk_test_support::unique("consumers")
        ));
        std::fs::write(&path, sandbox.credentials_file(named)).expect("the credentials file");
        let base = sandbox.env_with_credentials_file(&path);
        Self::on(sandbox, base, what, env)
    }

    fn on(
        sandbox: Sandbox,
        base: Vec<(&'static str, String)>,
        what: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let sandbox = std::sync::Arc::new(sandbox);
        let mut vars = bb2snyk_test_support::pipeline_env(base, what);
        for (k, v) in env {
            vars.insert((*k).to_owned(), (*v).to_owned());
        }
        let settings = bb2snyk_test_support::settings(vars.clone());
        Self {
            sandbox,
            env: vars,
            settings,
            shutdown: CancellationToken::new(),
            replicas: Vec::new(),
        }
    }

    /// A fleet of no replica yet against the same sandbox, on a store and queues of its own: a new machine
    /// with an empty Redis, or one wiped between two runs.
    pub fn afresh(&self, what: &str) -> Self {
        let mut vars = self.env.clone();
        vars.insert(
            "BB2SNYK__AMQP__PREFIX".into(),
            bb2snyk_test_support::unique(what),
        );
        vars.insert(
            "BB2SNYK__REDIS__PREFIX".into(),
            format!("{}:", bb2snyk_test_support::unique(what)),
        );
        Self {
            sandbox: self.sandbox.clone(),
            settings: bb2snyk_test_support::settings(vars.clone()),
            env: vars,
            shutdown: CancellationToken::new(),
            replicas: Vec::new(),
        }
    }

    /// Starts `replicas` more of each of `services`.
    pub fn spawn(&mut self, services: &[Service], replicas: usize) {
        for _ in 0..replicas {
            for service in services {
                let (settings, stop) = (self.settings.clone(), self.shutdown.clone());
                let service = *service;
                self.replicas.push(tokio::spawn(async move {
                    let served = match service {
                        Service::Discoverer => bb2snyk_discoverer::run(settings, stop).await,
                        Service::OrgCreator => bb2snyk_org_creator::run(settings, stop).await,
                        Service::Importer => bb2snyk_importer::run(settings, stop).await,
                    };
                    if let Err(e) = served {
                        panic!("{service:?} failed: {e}");
                    }
                }));
            }
        }
    }

    /// Requests a run of the sandbox's group, as `bb2snyk discover` does.
    pub async fn request_run(&self) -> Run {
        Run::request(&self.settings, &self.sandbox.knobs().group_id).await
    }

    /// Publishes a run request and waits until every discovered target is imported, skipped or parked;
    /// returns the run id.
    pub async fn run_to_the_end(&self, expected_targets: u64) -> String {
        let run = self.request_run().await;
        let started = std::time::Instant::now();
        let told = std::cell::Cell::new(started);
        bb2snyk_test_support::wait_for(
            "every target settled",
            std::time::Duration::from_secs(120),
            || async {
                let counts = run.ledger.counts(&run.id).await.ok()?;
                // A line every ten seconds, shown with a failure: where a slow run waits.
                if told.get().elapsed() >= std::time::Duration::from_secs(10) {
                    told.set(std::time::Instant::now());
                    eprintln!("{}", self.progress(started, &counts));
                }
                (counts.discovered == expected_targets && counts.settled() == expected_targets)
                    .then_some(())
            },
        )
        .await;
        eprintln!(
            "{}",
            self.progress(
                started,
                &run.ledger.counts(&run.id).await.unwrap_or_default()
            )
        );
        run.id
    }

    /// One line on a run under way: the ledger's counts and what the sandbox saw.
    fn progress(&self, started: std::time::Instant, counts: &bb2snyk_ledger::RunCounts) -> String {
        let stats = self.sandbox.stats();
        format!(
            "{} {:>5.1} s: discovered {} settled {} (imported {} skipped {} parked {}); \
             snyk requests {} import POSTs {} jobs pending {} complete {} polls {} 429s {:?}",
            self.settings.amqp.prefix,
            started.elapsed().as_secs_f64(),
            counts.discovered,
            counts.settled(),
            counts.imported,
            counts.skipped,
            counts.parked,
            stats.snyk_by_token.values().sum::<u64>(),
            stats.import_posts_total,
            stats.jobs.pending,
            stats.jobs.complete,
            stats.jobs.polls,
            stats.rate_limited,
        )
    }

    /// The ledger the replicas keep, on its own connection.
    pub async fn ledger(&self) -> Ledger {
        let store = Store::connect(&self.settings.redis.url, &self.settings.redis.prefix)
            .await
            .expect("Redis");
        Ledger::new(store)
    }

    /// Import POSTs beyond the first, over every repository.
    pub fn duplicate_imports(&self) -> u64 {
        self.sandbox
            .stats()
            .import_posts
            .values()
            .map(|n| n - 1)
            .sum()
    }

    /// Stops every replica; each must end cleanly.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for replica in self.replicas {
            replica.await.expect("a replica stopped cleanly");
        }
    }
}

/// The service binaries (and `bb2snyk`), built when missing or stale; returns the directory holding them.
pub fn binaries(release: bool) -> PathBuf {
    let mut cargo = std::process::Command::new(env!("CARGO"));
    cargo.args(["build", "--quiet", "--bins"]).args([
        "-pbb2snyk-discoverer",
        "-pbb2snyk-org-creator",
        "-pbb2snyk-importer",
        "-pbb2snyk",
    ]);
    if release {
        cargo.arg("--release");
    }
    let status = cargo.status().expect("cargo runs");
    assert!(status.success(), "the binaries build");
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    );
    target.join(if release { "release" } else { "debug" })
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A run requested for `group_id`, as `bb2snyk discover` requests one, and the ledger to follow it by.
#[derive(Debug)]
pub struct Run {
    pub id: String,
    pub ledger: Ledger,
    pub infrastructure: Infrastructure,
}

impl Run {
    pub async fn request(settings: &Settings, group_id: &str) -> Self {
        Self::request_with(settings, group_id, None, None).await
    }

    /// A run request that is a sync (`bb2snyk discover --sync`) when `sync` is given, with the run's own
    /// filters when `filters` are.
    pub async fn request_with(
        settings: &Settings,
        group_id: &str,
        sync: Option<bb2snyk_messages::Sync>,
        filters: Option<bb2snyk_messages::Filters>,
    ) -> Self {
        let infrastructure = Infrastructure::connect(settings, "e2e-run")
            .await
            .expect("infrastructure");
        let broker = infrastructure
            .broker(settings, "e2e-run")
            .await
            .expect("broker");
        let id = new_run_id();
        let request = Body::RunRequested(RunRequested {
            run_id: id.clone(),
            group_id: group_id.parse().expect("a group id"),
            source_org_id: None,
            filters,
            sync,
        });
        broker
            .publish(DISCOVERER, &request.to_message())
            .await
            .expect("published");
        Self {
            id: id.to_string(),
            ledger: Ledger::new(infrastructure.store.clone()),
            infrastructure,
        }
    }

    /// Targets imported, skipped or parked so far.
    pub async fn settled(&self) -> u64 {
        let counts = self.ledger.counts(&self.id).await.unwrap_or_default();
        counts.settled()
    }
}

/// A log writer that keeps everything written to it, for tests that read what was logged.
#[derive(Debug, Clone, Default)]
pub struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.lock()).into_owned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
