//! The real `importer` binary, two replicas beside in-process discoverers and org-creators, on real
//! RabbitMQ and Redis: killed with SIGKILL mid-run and restarted, or stopped with SIGTERM, it loses nothing.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use bb2snyk_e2e::{Service, TestFleet};
use bb2snyk_sandbox::Knobs;
use bb2snyk_test_support::wait_for;
use tokio::process::{Child, Command};

/// Two in-process discoverers and org-creators; importers are real processes, started by the test.
struct Rig {
    fleet: TestFleet,
}

impl Rig {
    async fn start() -> Self {
        let knobs = Knobs {
            workspaces: 10,
            repos_per_workspace: 20,
            job_ms: 500,
            ..Knobs::default()
        };
        let env = [
            ("BB2SNYK__HTTP__TIMEOUT_SECS", "5"),
            // 10 Snyk calls a second after a burst of 100: the run lasts long enough to be interrupted.
            ("BB2SNYK__SNYK__RATE_BUDGET", "100"),
            ("BB2SNYK__SNYK__RATE_WINDOW_SECS", "10"),
            ("RUST_LOG", "warn"),
        ];
        let mut fleet = TestFleet::start(knobs, "crash", &env).await;
        fleet.spawn(&[Service::Discoverer, Service::OrgCreator], 2);
        Self { fleet }
    }

    fn importer(&self) -> Child {
        Command::new(env!("CARGO_BIN_EXE_importer"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&self.fleet.env)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("importer starts")
    }

    async fn request_run(&self) -> String {
        self.fleet.request_run().await.id
    }

    async fn imports_reach(&self, n: u64) -> u64 {
        let sandbox = self.fleet.sandbox.clone();
        wait_for("imports under way", Duration::from_secs(60), || async {
            let posts = sandbox.stats().import_posts_total;
            (posts >= n).then_some(posts)
        })
        .await
    }

    /// Waits until every repository is imported (this tenant has no poison), and returns the duplicates.
    async fn finish(self, run_id: &str) -> u64 {
        let truth = self.fleet.sandbox.stats().truth;
        let ledger = self.fleet.ledger().await;
        wait_for(
            "every repository imported",
            Duration::from_secs(180),
            || async {
                let c = ledger.counts(run_id).await.ok()?;
                (c.imported == truth.repositories - truth.empty && c.skipped == truth.empty)
                    .then_some(())
            },
        )
        .await;
        let counts = ledger.counts(run_id).await.expect("counts");
        assert_eq!(counts.parked, 0, "nothing parked");
        let duplicates = self.fleet.duplicate_imports();
        self.fleet.stop().await;
        duplicates
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
    let expected =
        rig.fleet.sandbox.stats().truth.repositories - rig.fleet.sandbox.stats().truth.empty;
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
