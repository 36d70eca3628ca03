//! Completion hints against the sandbox, on the in-memory broker: jobs that end long before their own
//! first polls are seen done through one listing of their org's new targets, each polled once.

use std::time::{Duration, Instant};

use bb2snyk_broker::memory::MemoryBroker;
use bb2snyk_ledger::{Ledger, State};
use bb2snyk_messages::{Body, IMPORTER, ImportRepo, Target};
use bb2snyk_sandbox::{Knobs, Sandbox};
use bb2snyk_store::Store;
use tokio_util::sync::CancellationToken;

/// Up to `n` importable repositories of the tenant, as import requests into the first org.
fn imports(sandbox: &Sandbox, n: usize) -> Vec<ImportRepo> {
    let org = &sandbox.orgs()[0];
    let integration_id = org.integrations.values().next().expect("an integration");
    let tenant = sandbox.truth();
    let mut found = Vec::new();
    for ws in tenant.as_array().into_iter().flatten() {
        let owner = ws["slug"].as_str().unwrap_or_default();
        for repo in ws["repos"].as_array().into_iter().flatten() {
            if repo["mainbranch"].is_null() || found.len() == n {
                continue;
            }
            found.push(ImportRepo {
                run_id: "run-1".parse().expect("a run id"),
                org_id: org.id.parse().expect("an org id"),
                integration_id: integration_id.parse().expect("an integration id"),
                target: Target::new(
                    owner,
                    repo["slug"].as_str().unwrap_or_default(),
                    repo["mainbranch"].as_str(),
                )
                .expect("a target"),
                failed_jobs: 0,
                policy: None,
            });
        }
    }
    found
}

#[tokio::test]
async fn jobs_done_long_before_their_first_polls_are_seen_through_their_org_s_new_targets() {
    // Jobs of 1 s whose own first polls wait 60 s (the prior): only hints can see them sooner.
    let sandbox = Sandbox::start(Knobs {
        job_ms: 1_000,
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let mut env = sandbox.env();
    env.push(("BB2SNYK__IMPORT__POLL_FIRST_SECS", "60".into()));
    let settings = bb2snyk_test_support::settings(env);
    let store = Store::memory();
    let importer = bb2snyk_importer::importer(&settings, reqwest::Client::new(), store.clone())
        .expect("importer");
    // The importer has seen jobs done at 1 s before (it needs some outcomes to expect anything).
    for _ in 0..30 {
        importer.hints.seen_done(Duration::from_secs(1));
    }
    let (hints, snyk) = (importer.hints.clone(), importer.snyk.clone());
    let broker = MemoryBroker::new(bb2snyk_service::topology(&settings).retry);
    let stages = bb2snyk_importer::stages(importer, &settings);
    let shutdown = CancellationToken::new();
    let serving = tokio::spawn({
        let (broker, shutdown) = (broker.clone(), shutdown.clone());
        async move { bb2snyk_broker::serve_stages(&broker, &stages, &shutdown, Duration::ZERO).await }
    });
    let hinting = tokio::spawn({
        let (broker, shutdown) = (broker.clone(), shutdown.clone());
        async move { hints.run(&snyk, &broker, &shutdown).await }
    });

    let imports = imports(&sandbox, 12);
    assert!(imports.len() >= 8, "the tenant has repositories to import");
    for import in &imports {
        broker.publish(IMPORTER, Body::ImportRepo(import.clone()).to_message());
    }
    // Well before the first own poll is due (60 s), every one is recorded imported.
    let ledger = Ledger::new(store);
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let mut imported = 0;
        for import in &imports {
            let state = ledger.target(&import.target_id()).await.expect("ledger");
            imported += usize::from(state.is_some_and(|r| r.state == State::Imported));
        }
        if imported == imports.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{imported} of {} imported before their own polls",
            imports.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stats = sandbox.stats();
    assert_eq!(
        stats.jobs.polls,
        imports.len() as u64,
        "each job polled once, by its hint"
    );
    let listings: u64 = stats
        .requests
        .iter()
        .filter(|(k, _)| k.starts_with("GET") && k.ends_with("/targets"))
        .map(|(_, n)| n)
        .sum();
    assert!(
        (1..imports.len() as u64).contains(&listings),
        "fewer listings than jobs: {listings}"
    );
    shutdown.cancel();
    let _ = serving.await;
    let _ = hinting.await;
}
