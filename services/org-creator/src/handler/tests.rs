//! The org-creator's handler on the in-process store against the sandbox.

use std::time::Duration;

use bb2snyk_broker::{Handler, Outcome, Publish, Route};
use bb2snyk_ledger::Ledger;
use bb2snyk_messages::{Body, DISCOVERER, Event, ORG_CREATOR, WorkspaceDiscovered};
use bb2snyk_sandbox::{Knobs, Sandbox};
use bb2snyk_store::Store;

use super::OrgCreator;

async fn rig(knobs: Knobs) -> (Sandbox, OrgCreator, Ledger) {
    let sandbox = Sandbox::start(knobs).await.expect("sandbox");
    let settings = bb2snyk_test_support::settings(sandbox.env());
    let store = Store::memory();
    let creator =
        crate::org_creator(&settings, reqwest::Client::new(), store.clone()).expect("org-creator");
    (sandbox, creator, Ledger::new(store))
}

fn discovered(sandbox: &Sandbox, workspace: &str, name: Option<&str>) -> Body {
    Body::WorkspaceDiscovered(WorkspaceDiscovered {
        run_id: "run-1".parse().expect("a run id"),
        group_id: sandbox.knobs().group_id.parse().expect("a group id"),
        source_org_id: None,
        workspace: workspace.parse().expect("a workspace"),
        name: name.map(|n| n.parse().expect("a name")),
        filters: None,
        credential: None,
        sync: None,
    })
}

fn publishes(outcome: Outcome) -> Vec<Publish> {
    match outcome {
        Outcome::Ack(publishes) => publishes,
        other => panic!("expected an ack, got {other:?}"),
    }
}

/// The org id the ready message names, after checking the event beside it agrees.
fn ready_org(publishes: &[Publish]) -> String {
    let [ready, event] = publishes else {
        panic!("expected org.ready and its event, got {publishes:?}");
    };
    assert_eq!(ready.to, Route::Queue(DISCOVERER.into()));
    let Ok(Body::OrgReady(ready)) = Body::from_message(&ready.message) else {
        panic!("expected org.ready.v1");
    };
    match Event::from_message(&event.message) {
        Ok(Event::OrgReady(e)) => assert_eq!(Some(e.org_id), ready.org_id),
        other => panic!("expected the org.ready event, got {other:?}"),
    }
    assert!(ready.integration_id.is_some());
    ready.org_id.expect("an org").to_string()
}

#[tokio::test]
async fn one_org_per_workspace_made_once_and_an_existing_name_reused() {
    let (sandbox, creator, ledger) = rig(Knobs {
        existing_orgs: vec!["Globex".into()],
        ..Knobs::default()
    })
    .await;
    let acme = discovered(&sandbox, "acme", Some("Acme"));
    let first = ready_org(&publishes(creator.handle(acme.to_message()).await));
    let again = ready_org(&publishes(creator.handle(acme.to_message()).await));
    assert_eq!(first, again, "the ledger's mapping, not a second org");
    assert_eq!(sandbox.stats().orgs_created, 1);
    let group = sandbox.knobs().group_id;
    assert_eq!(
        ledger
            .org(&group, "acme")
            .await
            .expect("read")
            .map(|m| m.org_id),
        Some(first)
    );
    assert_eq!(ledger.counts("run-1").await.expect("counts").orgs, 1);

    let globex = discovered(&sandbox, "globex", Some("Globex"));
    let reused = ready_org(&publishes(creator.handle(globex.to_message()).await));
    assert_eq!(sandbox.stats().orgs_created, 1, "Globex existed");
    assert!(
        sandbox
            .orgs()
            .iter()
            .any(|o| o.id == reused && o.name == "Globex")
    );
}

#[tokio::test]
async fn a_workspace_being_ensured_elsewhere_comes_back_later_without_spending_an_attempt() {
    let (sandbox, creator, ledger) = rig(Knobs::default()).await;
    let group = sandbox.knobs().group_id;
    let held = ledger
        .store()
        .lock(&format!("org-lock:{group}:acme"), Duration::from_secs(60))
        .await
        .expect("store")
        .expect("free");
    let message = discovered(&sandbox, "acme", None).to_message();
    match &publishes(creator.handle(message.clone()).await)[..] {
        [again] => {
            assert_eq!(again.to, Route::Queue(ORG_CREATOR.into()));
            assert_eq!(again.delay, Some(Duration::ZERO));
            assert_eq!(
                again.message, message,
                "the same message, attempts untouched"
            );
        }
        other => panic!("expected the message back, got {other:?}"),
    }
    assert_eq!(sandbox.stats().orgs_created, 0);
    held.release().await.expect("store");
    ready_org(&publishes(creator.handle(message).await));
    assert_eq!(sandbox.stats().orgs_created, 1);
}

#[tokio::test]
async fn an_org_created_behind_a_502_is_found_not_made_again() {
    let (sandbox, creator, _) = rig(Knobs {
        ghost_rate: 1.0,
        ..Knobs::default()
    })
    .await;
    let acme = discovered(&sandbox, "acme", Some("Acme"));
    let org = ready_org(&publishes(creator.handle(acme.to_message()).await));
    let stats = sandbox.stats();
    assert_eq!((stats.ghost_writes, stats.orgs_created), (1, 1));
    assert_eq!(stats.duplicate_org_names, 0);
    assert!(
        sandbox
            .orgs()
            .iter()
            .any(|o| o.id == org && o.name == "Acme")
    );
}

#[tokio::test]
async fn an_org_of_the_same_name_that_serves_another_workspace_is_not_reused() {
    let (sandbox, creator, _) = rig(Knobs {
        workspaces: 2,
        repos_per_workspace: 2,
        empty_rate: 0.0,
        existing_orgs: vec!["Shared Name".into()],
        job_ms: 10,
        ..Knobs::default()
    })
    .await;
    let truth = sandbox.truth();
    let slug = |w: usize| truth[w]["slug"].as_str().expect("slug").to_owned();
    let (mine, theirs) = (slug(0), slug(1));
    let repo = truth[1]["repos"][0]["slug"]
        .as_str()
        .expect("repo")
        .to_owned();
    // The existing org holds a repository of the other workspace.
    let shared = sandbox
        .orgs()
        .into_iter()
        .find(|o| o.name == "Shared Name")
        .expect("the existing org");
    let integration = creator
        .snyk
        .app_integration(&shared.id, None)
        .await
        .expect("integrations")
        .expect("the app");
    let target = bb2snyk_snyk::Target {
        owner: theirs.clone(),
        name: repo,
        branch: Some("main".into()),
    };
    creator
        .snyk
        .import(&shared.id, &integration, &target, &Default::default())
        .await
        .expect("imported");
    bb2snyk_test_support::wait_for("the job done", Duration::from_secs(10), || async {
        let projects = creator.snyk.projects(&shared.id).await.ok()?;
        (!projects.is_empty()).then_some(())
    })
    .await;

    let message = discovered(&sandbox, &mine, Some("Shared Name"));
    let org = ready_org(&publishes(creator.handle(message.to_message()).await));
    assert_ne!(org, shared.id, "another workspace's org was reused");
    assert!(
        sandbox
            .orgs()
            .iter()
            .any(|o| o.id == org && o.name == format!("Shared Name ({mine})")),
        "the workspace's own org takes the disambiguated name"
    );
    assert_eq!(sandbox.stats().orgs_created, 1);
}

#[tokio::test]
async fn a_holder_whose_lock_lapsed_records_no_org() {
    let (sandbox, creator, ledger) = rig(Knobs {
        latency_ms: 300,
        ..Knobs::default()
    })
    .await;
    let group = sandbox.knobs().group_id;
    let message = discovered(&sandbox, "acme", Some("Acme")).to_message();
    let handling = tokio::spawn({
        let creator = creator.clone();
        async move { creator.handle(message).await }
    });
    // While the holder talks to Snyk, its lock lapses and another delivery takes it.
    let lock = format!("org-lock:{group}:acme");
    bb2snyk_test_support::wait_for("the lock taken", Duration::from_secs(5), || async {
        ledger.store().get(&lock).await.ok()?.map(drop)
    })
    .await;
    ledger
        .store()
        .set(&lock, b"another delivery", None)
        .await
        .expect("store");
    match handling.await.expect("handled") {
        Outcome::Retry { .. } => {}
        other => panic!("expected a retry, got {other:?}"),
    }
    assert_eq!(
        ledger.org(&group, "acme").await.expect("read"),
        None,
        "an org recorded without the lock"
    );
}
