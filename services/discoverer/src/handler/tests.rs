//! The discoverer's handler on the in-process store against the sandbox.

use bb2snyk_broker::{Handler, Outcome, Publish};
use bb2snyk_ledger::Ledger;
use bb2snyk_messages::{Body, Event, Filters, OrgReady, RunRequested};
use bb2snyk_sandbox::{Knobs, Sandbox};
use bb2snyk_store::Store;

use super::Discoverer;

async fn rig(knobs: Knobs) -> (Sandbox, Discoverer, Ledger) {
    let sandbox = Sandbox::start(knobs).await.expect("sandbox");
    let settings = bb2snyk_test_support::settings(sandbox.env());
    let store = Store::memory();
    let discoverer =
        crate::discoverer(&settings, reqwest::Client::new(), store.clone()).expect("discoverer");
    (sandbox, discoverer, Ledger::new(store))
}

fn publishes(outcome: Outcome) -> Vec<Publish> {
    match outcome {
        Outcome::Ack(publishes) => publishes,
        other => panic!("expected an ack, got {other:?}"),
    }
}

fn org(workspace: &str, filters: Option<Filters>) -> OrgReady {
    OrgReady {
        run_id: "run-1".parse().expect("a run id"),
        group_id: "g".parse().expect("an id"),
        workspace: workspace.parse().expect("a workspace"),
        org_id: Some("o".parse().expect("an id")),
        integration_id: Some("i".parse().expect("an id")),
        filters,
        credential: None,
        sync: None,
    }
}

/// The follow-ups of one delivery, sorted by kind: work messages and events.
fn split(publishes: &[Publish]) -> (Vec<Body>, Vec<Event>) {
    let mut bodies = Vec::new();
    let mut events = Vec::new();
    for p in publishes {
        match Body::from_message(&p.message) {
            Ok(body) => bodies.push(body),
            Err(_) => events.push(Event::from_message(&p.message).expect("an event")),
        }
    }
    (bodies, events)
}

#[tokio::test]
async fn a_run_becomes_one_message_per_workspace() {
    let (sandbox, discoverer, _) = rig(Knobs {
        workspaces: 4,
        ..Knobs::default()
    })
    .await;
    let run = Body::RunRequested(RunRequested {
        run_id: "run-1".parse().expect("a run id"),
        group_id: "g".parse().expect("an id"),
        source_org_id: None,
        filters: None,
        sync: None,
    });
    let (bodies, events) = split(&publishes(discoverer.handle(run.to_message()).await));
    assert!(events.is_empty());
    let workspaces: Vec<String> = bodies
        .iter()
        .map(|b| match b {
            Body::WorkspaceDiscovered(w) => w.workspace.to_string(),
            other => panic!("expected workspace.discovered, got {other:?}"),
        })
        .collect();
    let tenant = sandbox.truth();
    let expected: Vec<String> = tenant
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w["slug"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(workspaces, expected);
}

#[tokio::test]
async fn pages_become_imports_skips_and_the_next_page() {
    let (sandbox, discoverer, ledger) = rig(Knobs {
        workspaces: 1,
        repos_per_workspace: 150,
        empty_rate: 0.1,
        ..Knobs::default()
    })
    .await;
    let truth = sandbox.stats().truth;
    let workspace = sandbox.truth()[0]["slug"]
        .as_str()
        .expect("slug")
        .to_owned();
    let mut message = Body::OrgReady(org(&workspace, None)).to_message();
    let (mut imports, mut skipped, mut pages) = (0, 0, 0);
    loop {
        pages += 1;
        let (bodies, events) = split(&publishes(discoverer.handle(message).await));
        skipped += events.len() as u64;
        let mut next = None;
        for body in bodies {
            match body {
                Body::ImportRepo(_) => imports += 1,
                Body::ReposPage(page) => next = Some(Body::ReposPage(page).to_message()),
                other => panic!("unexpected {other:?}"),
            }
        }
        match next {
            Some(page) => message = page,
            None => break,
        }
    }
    assert!(pages > 1, "150 repositories take more than one page");
    assert_eq!(
        skipped, truth.empty,
        "empty repositories skipped with an event"
    );
    assert_eq!(imports + skipped, truth.repositories);
    let counts = ledger.counts("run-1").await.expect("counts");
    assert_eq!(
        (counts.discovered, counts.skipped),
        (truth.repositories, truth.empty)
    );
}

#[tokio::test]
async fn a_run_s_own_filters_skip_with_their_reason() {
    let (sandbox, discoverer, _) = rig(Knobs {
        workspaces: 1,
        repos_per_workspace: 10,
        empty_rate: 0.0,
        ..Knobs::default()
    })
    .await;
    let workspace = sandbox.truth()[0]["slug"]
        .as_str()
        .expect("slug")
        .to_owned();
    let everything = Filters {
        exclude: vec!["*".parse().expect("a glob")],
        ..Filters::default()
    };
    let ready = Body::OrgReady(org(&workspace, Some(everything)));
    let (bodies, events) = split(&publishes(discoverer.handle(ready.to_message()).await));
    assert!(bodies.is_empty(), "nothing to import");
    assert_eq!(events.len(), 10);
    for event in events {
        match event {
            Event::RepoSkipped(e) => {
                assert!(e.reason.contains("discovery.exclude"), "{}", e.reason)
            }
            other => panic!("expected repo.skipped, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_next_link_to_another_host_is_parked_and_never_fetched() {
    let (sandbox, discoverer, _) = rig(Knobs::default()).await;
    let foreign = bb2snyk_test_support::Tripwire::start().await;
    let workspace = sandbox.truth()[0]["slug"]
        .as_str()
        .expect("slug")
        .to_owned();
    let page = Body::ReposPage(bb2snyk_messages::ReposPage {
        org: org(&workspace, None),
        next: format!("{}/2.0/repositories/{workspace}?page=2", foreign.url())
            .parse()
            .expect("a page URL"),
        page: 2,
    });
    match discoverer.handle(page.to_message()).await {
        Outcome::Park { reason } => assert!(
            reason.contains("refused to send the Bitbucket credential")
                && reason.contains(&foreign.url()),
            "{reason}"
        ),
        other => panic!("expected it parked, got {other:?}"),
    }
    assert_eq!(foreign.hits(), 0, "nothing was sent to the foreign host");
}

#[tokio::test]
async fn workspaces_are_named_once_each_and_uniquely() {
    let (sandbox, discoverer, _) = rig(Knobs {
        workspaces: 4,
        shared_names: 1,
        ..Knobs::default()
    })
    .await;
    let run = Body::RunRequested(RunRequested {
        run_id: "run-1".parse().expect("a run id"),
        group_id: "g".parse().expect("an id"),
        source_org_id: None,
        filters: None,
        sync: None,
    });
    let named = |outcome| -> Vec<String> {
        split(&publishes(outcome))
            .0
            .into_iter()
            .filter_map(|b| match b {
                Body::WorkspaceDiscovered(w) => w.name.map(String::from),
                _ => None,
            })
            .collect()
    };
    let names = named(discoverer.handle(run.to_message()).await);
    assert_eq!(names.len(), 4);
    let unique: std::collections::HashSet<&String> = names.iter().collect();
    assert_eq!(
        unique.len(),
        4,
        "two workspaces share a display name, not an org: {names:?}"
    );
    assert!(names.iter().any(|n| n == "Acme Engineering 0"), "{names:?}");
    // A second run reads no display name again.
    let again = named(discoverer.handle(run.to_message()).await);
    assert_eq!(again, names);
    let reads = sandbox.stats().requests["GET /2.0/workspaces/{workspace}"];
    assert_eq!(reads, 4, "one read per workspace, for the process's life");
}

#[tokio::test]
async fn paging_waits_while_the_importer_s_queue_is_full() {
    let (sandbox, discoverer, _) = rig(Knobs::default()).await;
    let broker = bb2snyk_broker::memory::MemoryBroker::new(Default::default());
    let discoverer = super::Discoverer {
        backlog: Some(crate::Backlog::new(
            std::sync::Arc::new(broker.clone()),
            5,
            std::time::Duration::from_secs(5),
        )),
        ..discoverer
    };
    let workspace = sandbox.truth()[0]["slug"]
        .as_str()
        .expect("slug")
        .to_owned();
    let ready = Body::OrgReady(org(&workspace, None)).to_message();
    // Six imports wait, over the limit of five: the page comes back later, and nothing is fetched.
    for i in 0..6 {
        broker.publish(bb2snyk_messages::IMPORTER, ready_message(i));
    }
    let before = sandbox.stats().requests_total;
    match discoverer.handle(ready.clone()).await {
        Outcome::Defer { after } => assert_eq!(after, std::time::Duration::from_secs(5)),
        other => panic!("expected the page deferred, got {other:?}"),
    }
    assert_eq!(sandbox.stats().requests_total, before, "no page fetched");
    // Under the limit (counted again a second later), paging goes on.
    let fresh = bb2snyk_broker::memory::MemoryBroker::new(Default::default());
    let discoverer = super::Discoverer {
        backlog: Some(crate::Backlog::new(
            std::sync::Arc::new(fresh),
            5,
            std::time::Duration::from_secs(5),
        )),
        ..discoverer
    };
    let (bodies, _) = split(&publishes(discoverer.handle(ready).await));
    assert!(!bodies.is_empty(), "the page was read");
}

fn ready_message(i: u32) -> bb2snyk_broker::Message {
    bb2snyk_broker::Message {
        kind: "placeholder.v1".into(), // only the queue's depth matters here
        message_id: format!("m{i}"),
        correlation_id: "run-1".into(),
        attempt: 0,
        body: b"{}".to_vec(),
    }
}

#[tokio::test]
async fn a_sync_s_imports_wait_for_room_like_pages_then_go_on_as_imports() {
    let (_sandbox, discoverer, _) = rig(Knobs::default()).await;
    let broker = bb2snyk_broker::memory::MemoryBroker::new(Default::default());
    let backlog = |broker: &bb2snyk_broker::memory::MemoryBroker| {
        Some(crate::Backlog::new(
            std::sync::Arc::new(broker.clone()),
            5,
            std::time::Duration::from_secs(5),
        ))
    };
    let imports = Body::SyncImports(bb2snyk_messages::SyncImports {
        run_id: "run-1".parse().expect("a run id"),
        org_id: "o".parse().expect("an id"),
        integration_id: "i".parse().expect("an id"),
        page: 1,
        policies: Vec::new(),
        targets: (0..3)
            .map(|i| bb2snyk_messages::Target {
                owner: "acme".parse().expect("an id"),
                name: format!("new-{i}").parse().expect("a slug"),
                branch: Some("main".parse().expect("an id")),
            })
            .collect(),
    })
    .to_message();
    for i in 0..6 {
        broker.publish(bb2snyk_messages::IMPORTER, ready_message(i));
    }
    let full = super::Discoverer {
        backlog: backlog(&broker),
        ..discoverer.clone()
    };
    match full.handle(imports.clone()).await {
        Outcome::Defer { after } => assert_eq!(after, std::time::Duration::from_secs(5)),
        other => panic!("expected the imports deferred, got {other:?}"),
    }
    let room = super::Discoverer {
        backlog: backlog(&bb2snyk_broker::memory::MemoryBroker::new(
            Default::default(),
        )),
        ..discoverer
    };
    let (bodies, _) = split(&publishes(room.handle(imports).await));
    let names: Vec<String> = bodies
        .iter()
        .map(|b| match b {
            Body::ImportRepo(i) => i.target.name.to_string(),
            other => panic!("expected imports, got {other:?}"),
        })
        .collect();
    assert_eq!(names, ["new-0", "new-1", "new-2"]);
}
