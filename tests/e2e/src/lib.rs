//! What the end-to-end tests and the benchmark share: the service binaries, free ports, and starting a run
//! the way `bb2snyk discover` does.

use std::path::PathBuf;

use bb2snyk_ledger::Ledger;
use bb2snyk_messages::{Body, DISCOVERER, RunRequested, new_run_id};
use bb2snyk_service::Infrastructure;
use bb2snyk_settings::Settings;

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
            group_id: group_id.to_owned(),
            source_org_id: None,
            filters: None,
        });
        broker
            .publish(DISCOVERER, &request.to_message())
            .await
            .expect("published");
        Self {
            id,
            ledger: Ledger::new(infrastructure.store.clone()),
            infrastructure,
        }
    }

    /// Targets imported, skipped or parked so far.
    pub async fn settled(&self) -> u64 {
        let counts = self.ledger.counts(&self.id).await.unwrap_or_default();
        ["imported", "skipped", "parked"]
            .iter()
            .map(|k| counts.get(*k).copied().unwrap_or(0))
            .sum()
    }
}
