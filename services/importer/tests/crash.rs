//! The real `importer` binary, two replicas beside in-process discoverers and org-creators, on real
//! RabbitMQ and Redis: killed with SIGKILL mid-run and restarted, or stopped with SIGTERM, it loses nothing.

use std::{
    collections::HashMap,
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use bb2snyk_ledger::Ledger;
use bb2snyk_sandbox::{Knobs, Sandbox};
use bb2snyk_service::CancellationToken;
use bb2snyk_settings::{Settings, Sources};
use bb2snyk_test_support::{pipeline_env, wait_for};
use tokio::process::{Child, Command};

struct Rig {
    sandbox: Arc<Sandbox>,
    env: HashMap<String, String>,
    settings: Settings,
    shutdown: CancellationToken,
    stages: Vec<tokio::task::JoinHandle<()>>,
}

impl Rig {
    async fn start() -> Self {
        let sandbox = Arc::new(
            Sandbox::start(Knobs {
                workspaces: 10,
                repos_per_workspace: 20,
                job_ms: 500,
                ..Knobs::default()
            })
            .await
            .expect("sandbox"),
        );
        let mut env = pipeline_env(sandbox.env(), "crash");
        for (k, v) in [
            ("BB2SNYK__HTTP__TIMEOUT_SECS", "5"),
            // 10 Snyk calls a second after a burst of 100: the run lasts long enough to be interrupted.
            ("BB2SNYK__SNYK__RATE_BUDGET", "100"),
            ("BB2SNYK__SNYK__RATE_WINDOW_SECS", "10"),
            ("RUST_LOG", "warn"),
        ] {
            env.insert(k.to_owned(), v.to_owned());
        }
        let settings = bb2snyk_settings::load(&Sources {
            file: None,
            env: env.clone(),
        })
        .expect("settings");
        let shutdown = CancellationToken::new();
        let mut stages = Vec::new();
        for _ in 0..2 {
            let (s, stop) = (settings.clone(), shutdown.clone());
            stages.push(tokio::spawn(async move {
                bb2snyk_discoverer::run(s, stop).await.expect("discoverer");
            }));
            let (s, stop) = (settings.clone(), shutdown.clone());
            stages.push(tokio::spawn(async move {
                bb2snyk_org_creator::run(s, stop)
                    .await
                    .expect("org-creator");
            }));
        }
        Self {
            sandbox,
            env,
            settings,
            shutdown,
            stages,
        }
    }

    fn importer(&self) -> Child {
        Command::new(env!("CARGO_BIN_EXE_importer"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&self.env)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("importer starts")
    }

    async fn request_run(&self) -> String {
        bb2snyk_e2e::Run::request(&self.settings, &self.sandbox.knobs().group_id)
            .await
            .id
    }

    async fn imports_reach(&self, n: u64) -> u64 {
        let sandbox = self.sandbox.clone();
        wait_for("imports under way", Duration::from_secs(60), || async {
            let posts = sandbox.stats().import_posts_total;
            (posts >= n).then_some(posts)
        })
        .await
    }

    /// Waits until every repository is imported (this tenant has no poison), and returns the duplicates.
    async fn finish(self, run_id: &str) -> u64 {
        let truth = self.sandbox.stats().truth;
        let store =
            bb2snyk_store::Store::connect(&self.settings.redis.url, &self.settings.redis.prefix)
                .await
                .expect("Redis");
        let ledger = Ledger::new(store);
        wait_for(
            "every repository imported",
            Duration::from_secs(180),
            || async {
                let c = ledger.counts(run_id).await.ok()?;
                (c["imported"] == truth.repositories - truth.empty && c["skipped"] == truth.empty)
                    .then_some(())
            },
        )
        .await;
        let counts = ledger.counts(run_id).await.expect("counts");
        assert_eq!(counts["parked"], 0, "nothing parked");
        self.shutdown.cancel();
        for stage in self.stages {
            stage.await.expect("a stage stopped cleanly");
        }
        self.sandbox
            .stats()
            .import_posts
            .values()
            .map(|n| n - 1)
            .sum()
    }
}

#[tokio::test]
async fn an_importer_killed_mid_run_and_restarted_loses_nothing() {
    let rig = Rig::start().await;
    let mut first = rig.importer();
    let _second = rig.importer();
    let run_id = rig.request_run().await;
    let at_kill = rig.imports_reach(40).await;
    first.start_kill().expect("SIGKILL");
    first.wait().await.expect("reaped");
    let _restarted = rig.importer();
    let expected = rig.sandbox.stats().truth.repositories - rig.sandbox.stats().truth.empty;
    assert!(
        at_kill < expected,
        "killed mid-run ({at_kill} of {expected})"
    );
    let duplicates = rig.finish(&run_id).await;
    assert!(
        duplicates <= 1,
        "{duplicates} duplicate import POSTs for 1 kill"
    );
}

#[tokio::test]
async fn sigterm_drains_within_the_deadline_and_loses_nothing() {
    let rig = Rig::start().await;
    let first = rig.importer();
    let _second = rig.importer();
    let run_id = rig.request_run().await;
    rig.imports_reach(40).await;
    let pid = first.id().expect("running").to_string();
    let asked = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = first.wait_with_output().await.expect("exits");
    let took = asked.elapsed();
    assert_eq!(exit.status.code(), Some(0), "a clean stop");
    assert!(
        took < Duration::from_secs(5 + 3),
        "stopped within the 5 s drain: {took:?}"
    );
    let duplicates = rig.finish(&run_id).await;
    assert_eq!(duplicates, 0, "a drained importer leaves nothing half-done");
}
