//! The importer's handler on the in-process store against the sandbox: what it answers for each message,
//! what it records, and what it asks of Snyk.
//!
//! Over 400 lines on purpose: one test per outcome of the handler, each short, sharing the set-up above them.

use std::time::Duration;

use bb2snyk_broker::{Handler, Outcome, Publish, Route};
use bb2snyk_ledger::{Ledger, Record, State};
use bb2snyk_messages::{Body, Event, IMPORTER_POLLS, ImportRepo, Target};
use bb2snyk_sandbox::{Knobs, Sandbox};
use bb2snyk_store::Store;

use super::Importer;

struct Rig {
    sandbox: Sandbox,
    importer: Importer,
    ledger: Ledger,
}

async fn rig(knobs: Knobs) -> Rig {
    rig_with(knobs, &[]).await
}

async fn rig_with(knobs: Knobs, vars: &[(&'static str, &str)]) -> Rig {
    let sandbox = Sandbox::start(knobs).await.expect("sandbox");
    let mut env = sandbox.env();
    env.extend(vars.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let settings = bb2snyk_test_support::settings(env);
    let store = Store::memory();
    let importer =
        crate::importer(&settings, reqwest::Client::new(), store.clone()).expect("importer");
    Rig {
        sandbox,
        importer,
        ledger: Ledger::new(store),
    }
}

/// The first non-empty repository of the tenant, to be imported into the template org.
fn import(sandbox: &Sandbox) -> ImportRepo {
    let org = &sandbox.orgs()[0];
    let integration_id = org
        .integrations
        .values()
        .next()
        .expect("an integration")
        .clone();
    let tenant = sandbox.truth();
    let (owner, repo) = tenant
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|ws| {
            let owner = ws["slug"].as_str().unwrap_or_default().to_owned();
            ws["repos"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |r| (owner.clone(), r.clone()))
        })
        .find(|(_, r)| !r["mainbranch"].is_null())
        .expect("a repository with a branch");
    ImportRepo {
        run_id: "run-1".parse().expect("a run id"),
        org_id: org.id.parse().expect("an org id"),
        integration_id: integration_id.parse().expect("an integration id"),
        target: Target::new(
            &owner,
            repo["slug"].as_str().unwrap_or_default(),
            repo["mainbranch"].as_str(),
        )
        .expect("a target"),
        failed_jobs: 0,
        policy: None,
    }
}

/// A poll as the broker brings it back once it is due.
fn due(message: &bb2snyk_broker::Message) -> bb2snyk_broker::Message {
    match Body::from_message(message) {
        Ok(Body::PollImport(poll)) => Body::PollImport(bb2snyk_messages::PollImport {
            not_before_ms: None,
            ..poll
        })
        .to_message(),
        other => panic!("expected a poll, got {other:?}"),
    }
}

fn publishes(outcome: Outcome) -> Vec<Publish> {
    match outcome {
        Outcome::Ack(publishes) => publishes,
        other => panic!("expected an ack, got {other:?}"),
    }
}

fn events(publishes: &[Publish]) -> Vec<Event> {
    publishes
        .iter()
        .filter(|p| matches!(p.to, Route::Event(_)))
        .map(|p| Event::from_message(&p.message).expect("an event"))
        .collect()
}

#[tokio::test]
async fn an_import_is_requested_once_and_followed_to_completion() {
    let rig = rig(Knobs {
        job_ms: 0,
        ..Knobs::default()
    })
    .await;
    let import = import(&rig.sandbox);
    let id = import.target_id();
    let request = Body::ImportRepo(import.clone()).to_message();

    let first = publishes(rig.importer.handle(request.clone()).await);
    let poll = first
        .iter()
        .find(|p| p.to == Route::Queue(IMPORTER_POLLS.into()))
        .expect("a poll on the polls queue");
    assert!(poll.delay.is_some(), "the poll waits");
    assert!(matches!(events(&first)[..], [Event::ImportRequested(_)]));
    let record = rig
        .ledger
        .target(&id)
        .await
        .expect("read")
        .expect("recorded");
    assert_eq!(record.state, State::Requested);
    assert!(record.job_url.is_some());

    // Redelivered before the job is seen done: followed, not posted again.
    let again = publishes(rig.importer.handle(request.clone()).await);
    assert!(
        again
            .iter()
            .all(|p| p.to == Route::Queue(IMPORTER_POLLS.into()))
    );
    assert_eq!(rig.sandbox.stats().import_posts_total, 1);

    // Taken before it is due, the poll waits out the rest; the broker brings it back when due.
    match rig.importer.handle(poll.message.clone()).await {
        Outcome::Defer { after } => assert!(after > Duration::from_secs(1), "{after:?}"),
        other => panic!("expected the early poll deferred, got {other:?}"),
    }
    let done = publishes(rig.importer.handle(due(&poll.message)).await);
    match &events(&done)[..] {
        [Event::ImportCompleted(e)] => {
            assert_eq!(e.subject, id);
            assert!(!e.projects.is_empty(), "the job's projects");
        }
        other => panic!("expected import.completed, got {other:?}"),
    }
    assert_eq!(
        rig.ledger.target(&id).await.expect("read").map(|r| r.state),
        Some(State::Imported)
    );

    // Imported: a later request (another run) posts nothing and counts it in its run.
    let later = ImportRepo {
        run_id: "run-2".parse().expect("a run id"),
        ..import
    };
    assert!(
        publishes(
            rig.importer
                .handle(Body::ImportRepo(later).to_message())
                .await
        )
        .is_empty()
    );
    assert_eq!(rig.sandbox.stats().import_posts_total, 1);
    assert_eq!(
        rig.ledger.counts("run-2").await.expect("counts").imported,
        1
    );
}

#[tokio::test]
async fn with_the_ledger_lost_snyk_is_the_record_and_its_targets_are_read_once_per_org_and_run() {
    let rig = rig(Knobs {
        job_ms: 0,
        ..Knobs::default()
    })
    .await;
    let import = import(&rig.sandbox);
    let first = publishes(
        rig.importer
            .handle(Body::ImportRepo(import.clone()).to_message())
            .await,
    );
    let poll = first
        .iter()
        .find(|p| p.to == Route::Queue(IMPORTER_POLLS.into()))
        .expect("a poll");
    publishes(rig.importer.handle(due(&poll.message)).await);
    assert_eq!(rig.sandbox.stats().import_posts_total, 1);

    // A new machine: an importer on an empty store, in a new run.
    let settings = bb2snyk_test_support::settings(rig.sandbox.env());
    let store = Store::memory();
    let fresh =
        crate::importer(&settings, reqwest::Client::new(), store.clone()).expect("importer");
    let ledger = Ledger::new(store);
    let again = ImportRepo {
        run_id: "run-2".parse().expect("a run id"),
        ..import.clone()
    };
    let reads = |stats: &bb2snyk_sandbox::Stats| {
        stats
            .requests
            .get("GET /rest/orgs/{org_id}/targets")
            .copied()
            .unwrap_or(0)
    };
    let before = reads(&rig.sandbox.stats());
    let done = publishes(
        fresh
            .handle(Body::ImportRepo(again.clone()).to_message())
            .await,
    );
    match &events(&done)[..] {
        [Event::ImportCompleted(e)] => {
            assert_eq!(e.subject, import.target_id());
            assert!(e.before, "told as held before this run");
        }
        other => panic!("expected import.completed for what Snyk holds, got {other:?}"),
    }
    assert_eq!(
        rig.sandbox.stats().import_posts_total,
        1,
        "nothing posted again"
    );
    assert_eq!(ledger.counts("run-2").await.expect("counts").imported, 1);
    assert_eq!(
        ledger
            .target(&import.target_id())
            .await
            .expect("read")
            .map(|r| r.state),
        Some(State::Imported)
    );
    // Another repository of the same org in the same run: the targets read is not repeated, and a
    // repository Snyk does not hold is imported.
    let other = ImportRepo {
        target: Target {
            name: format!("{}-not-in-snyk", import.target.name)
                .parse()
                .expect("a slug"),
            ..import.target.clone()
        },
        ..again
    };
    fresh.handle(Body::ImportRepo(other).to_message()).await;
    assert_eq!(
        reads(&rig.sandbox.stats()) - before,
        1,
        "one read per org and run"
    );
    assert_eq!(rig.sandbox.stats().import_posts_total, 2);
}

#[tokio::test]
async fn a_pending_job_is_polled_again_and_a_refused_import_is_parked() {
    let slow = rig(Knobs {
        job_ms: 60_000,
        ..Knobs::default()
    })
    .await;
    let request = Body::ImportRepo(import(&slow.sandbox)).to_message();
    let first = publishes(slow.importer.handle(request).await);
    let poll = &first[0].message;
    let next = publishes(slow.importer.handle(due(poll)).await);
    match &next[..] {
        [p] => match Body::from_message(&p.message) {
            Ok(Body::PollImport(again)) => assert_eq!(again.polls, 1),
            other => panic!("expected a second poll, got {other:?}"),
        },
        other => panic!("expected one follow-up, got {other:?}"),
    }

    let refused = rig(Knobs {
        poison_post_rate: 1.0,
        ..Knobs::default()
    })
    .await;
    let import = import(&refused.sandbox);
    let id = import.target_id();
    match refused
        .importer
        .handle(Body::ImportRepo(import).to_message())
        .await
    {
        Outcome::Park { reason } => assert!(reason.contains("400"), "{reason}"),
        other => panic!("expected it parked, got {other:?}"),
    }
    let record = refused
        .ledger
        .target(&id)
        .await
        .expect("read")
        .expect("recorded");
    assert_eq!(record.state, State::Parked);
}

#[tokio::test]
async fn a_corrupt_record_or_a_stray_message_is_parked_and_nothing_is_posted() {
    let rig = rig(Knobs::default()).await;
    let import = import(&rig.sandbox);
    rig.ledger
        .store()
        .set(&format!("target:{}", import.target_id()), b"{garbage", None)
        .await
        .expect("write");
    match rig
        .importer
        .handle(Body::ImportRepo(import).to_message())
        .await
    {
        Outcome::Park { reason } => assert!(reason.contains("is corrupt"), "{reason}"),
        other => panic!("expected it parked, got {other:?}"),
    }
    let stray = Body::RunRequested(bb2snyk_messages::RunRequested {
        run_id: "r".parse().expect("a run id"),
        group_id: "g".parse().expect("an id"),
        source_org_id: None,
        filters: None,
        sync: None,
    });
    match rig.importer.handle(stray.to_message()).await {
        Outcome::Park { reason } => assert!(reason.contains("does not belong"), "{reason}"),
        other => panic!("expected it parked, got {other:?}"),
    }
    assert_eq!(rig.sandbox.stats().import_posts_total, 0);
}

#[tokio::test]
async fn after_a_ghost_import_snyk_is_read_before_posting_again() {
    // The job is done at once: by the retry, Snyk shows the target, and nothing is posted again.
    let fast = rig(Knobs {
        job_ms: 0,
        ghost_rate: 1.0,
        ..Knobs::default()
    })
    .await;
    let target = import(&fast.sandbox);
    let id = target.target_id();
    let request = Body::ImportRepo(target).to_message();
    match fast.importer.handle(request.clone()).await {
        Outcome::Retry { reason } => assert!(reason.contains("may have accepted"), "{reason}"),
        other => panic!("expected a retry, got {other:?}"),
    }
    let record = fast
        .ledger
        .target(&id)
        .await
        .expect("read")
        .expect("recorded");
    assert!(record.maybe_requested);
    let done = publishes(fast.importer.handle(request).await);
    assert!(matches!(events(&done)[..], [Event::ImportCompleted(_)]));
    assert_eq!(
        fast.sandbox.stats().import_posts_total,
        1,
        "not posted again"
    );
    assert_eq!(
        fast.ledger
            .target(&id)
            .await
            .expect("read")
            .map(|r| r.state),
        Some(State::Imported)
    );

    // The job still runs at the retry: Snyk shows nothing yet, so it is posted again; the sandbox counts
    // that duplicate as one no client could avoid.
    let slow = rig(Knobs {
        job_ms: 60_000,
        ghost_rate: 1.0,
        ..Knobs::default()
    })
    .await;
    let request = Body::ImportRepo(import(&slow.sandbox)).to_message();
    assert!(matches!(
        slow.importer.handle(request.clone()).await,
        Outcome::Retry { .. }
    ));
    slow.sandbox.update(|k| k.ghost_rate = 0.0);
    let again = publishes(slow.importer.handle(request).await);
    assert!(matches!(events(&again)[..], [Event::ImportRequested(_)]));
    let stats = slow.sandbox.stats();
    assert_eq!(
        (stats.import_posts_total, stats.posts_while_pending),
        (2, 1)
    );
}

#[tokio::test]
async fn a_job_url_on_another_host_is_parked_and_never_polled() {
    let rig = rig(Knobs::default()).await;
    let foreign = bb2snyk_test_support::Tripwire::start().await;
    let import = import(&rig.sandbox);
    let job_url = format!(
        "{}/v1/org/{}/integrations/x/import/job",
        foreign.url(),
        import.org_id
    );
    // From a message.
    let poll = Body::PollImport(bb2snyk_messages::PollImport {
        import: import.clone(),
        job_url: job_url.parse().expect("a job URL"),
        polls: 0,
        requested_ms: None,
        not_before_ms: None,
        hinted: false,
    });
    match rig.importer.handle(poll.to_message()).await {
        Outcome::Park { reason } => {
            assert!(reason.contains("refused to send SNYK_TOKEN"), "{reason}")
        }
        other => panic!("expected it parked, got {other:?}"),
    }
    // From the ledger: the import follows the recorded job, whose poll is then parked the same way.
    let record = bb2snyk_ledger::Record {
        job_url: Some(job_url),
        ..bb2snyk_ledger::Record::new(State::Requested, "run-0")
    };
    rig.ledger
        .record(&import.target_id(), &record)
        .await
        .expect("write");
    let follow = publishes(
        rig.importer
            .handle(Body::ImportRepo(import).to_message())
            .await,
    );
    assert!(matches!(
        rig.importer.handle(due(&follow[0].message)).await,
        Outcome::Park { .. }
    ));
    assert_eq!(foreign.hits(), 0, "nothing was sent to the foreign host");
    assert_eq!(rig.sandbox.stats().import_posts_total, 0);
}

#[tokio::test]
async fn with_no_budget_slot_in_sight_the_message_comes_back_later_without_holding_its_delivery() {
    // Three Snyk calls a minute (the org's targets and projects, and the import), and a delivery may
    // wait one second.
    let rig = rig_with(
        Knobs::default(),
        &[
            ("BB2SNYK__SNYK__RATE_BUDGET", "3"),
            ("BB2SNYK__SNYK__RATE_WINDOW_SECS", "60"),
            ("BB2SNYK__PIPELINE__MAX_HOLD_SECS", "1"),
        ],
    )
    .await;
    let request = Body::ImportRepo(import(&rig.sandbox)).to_message();
    let first = publishes(rig.importer.handle(request).await);
    match rig.importer.handle(due(&first[0].message)).await {
        Outcome::Defer { after } => assert!(after > Duration::from_secs(1), "{after:?}"),
        other => panic!("expected the poll deferred, got {other:?}"),
    }
    assert_eq!(
        rig.sandbox.stats().requests_total,
        3,
        "only the org's targets and projects read and the import were sent"
    );
}

#[tokio::test]
async fn a_post_whose_process_stopped_before_the_answer_is_looked_up_in_snyk_after_a_grace() {
    let rig = rig(Knobs {
        job_ms: 0,
        ..Knobs::default()
    })
    .await;
    let target = import(&rig.sandbox);
    let id = target.target_id();
    let request = Body::ImportRepo(target).to_message();
    publishes(rig.importer.handle(request.clone()).await);
    assert_eq!(rig.sandbox.stats().import_posts_total, 1);
    // The process stopped between Snyk's answer and its record: the ledger still says a POST began.
    let began = |ago_ms: u64| Record {
        maybe_requested: true,
        posting_since_ms: Some(crate::now_ms() - ago_ms),
        ..Record::new(State::Requested, "run-1")
    };
    rig.ledger.record(&id, &began(0)).await.expect("recorded");
    // Just begun: the redelivery comes back after the grace instead of posting.
    match publishes(rig.importer.handle(request.clone()).await).as_slice() {
        [
            Publish {
                to: Route::Queue(queue),
                delay: Some(wait),
                ..
            },
        ] => {
            assert_eq!(queue, bb2snyk_messages::IMPORTER);
            assert!(*wait >= Duration::from_secs(9), "{wait:?}");
        }
        other => panic!("expected the import back later, got {other:?}"),
    }
    // The grace over: Snyk shows the target, so the import is done and nothing is posted again.
    rig.ledger
        .record(&id, &began(3_600_000))
        .await
        .expect("recorded");
    let done = publishes(rig.importer.handle(request).await);
    assert!(
        matches!(events(&done)[..], [Event::ImportCompleted(_)]),
        "{done:?}"
    );
    assert_eq!(
        rig.sandbox.stats().import_posts_total,
        1,
        "not posted again"
    );
}

/// The tenant's first repository imported: its targetId and its job's own first poll.
async fn requested(rig: &Rig) -> (String, bb2snyk_broker::Message) {
    let import = import(&rig.sandbox);
    let id = import.target_id();
    let first = publishes(
        rig.importer
            .handle(Body::ImportRepo(import).to_message())
            .await,
    );
    (id, first[0].message.clone())
}

/// The job's own poll, and a hinted copy of it (what a listing of the org's new targets publishes).
fn hinted(message: &bb2snyk_broker::Message) -> bb2snyk_broker::Message {
    match Body::from_message(message) {
        Ok(Body::PollImport(poll)) => Body::PollImport(bb2snyk_messages::PollImport {
            hinted: true,
            ..poll
        })
        .to_message(),
        other => panic!("expected a poll, got {other:?}"),
    }
}

#[tokio::test]
async fn a_hinted_poll_records_a_done_job_once_and_its_own_poll_then_asks_nothing() {
    let rig = rig(Knobs {
        job_ms: 0,
        ..Knobs::default()
    })
    .await;
    let (id, own) = requested(&rig).await;
    let own = &own;
    assert_eq!(rig.importer.hints.followed(), 1, "followed until its poll");

    // Hinted: polled now, not when due; recorded and told once.
    let done = publishes(rig.importer.handle(hinted(own)).await);
    assert!(matches!(&events(&done)[..], [Event::ImportCompleted(e)] if e.subject == id));
    assert_eq!(
        rig.ledger.target(&id).await.expect("read").map(|r| r.state),
        Some(State::Imported)
    );
    assert_eq!(rig.sandbox.stats().jobs.polls, 1);

    // A second hint (a duplicate delivery, or another importer's listing) finds the record: no request.
    assert!(publishes(rig.importer.handle(hinted(own)).await).is_empty());

    // The job's own poll, when due, finds the record: no request, no second event.
    assert!(publishes(rig.importer.handle(due(own)).await).is_empty());
    assert_eq!(
        rig.sandbox.stats().jobs.polls,
        1,
        "only the first hinted poll asked Snyk"
    );
    assert_eq!(rig.importer.hints.followed(), 0, "its own poll ended it");
}

#[tokio::test]
async fn a_hinted_poll_of_a_pending_job_leaves_it_to_its_own_polls() {
    let rig = rig(Knobs {
        job_ms: 60_000,
        ..Knobs::default()
    })
    .await;
    let (id, own) = requested(&rig).await;
    let own = &own;
    // Real Snyk may list a target before its job is done: the hint then asks once and does nothing else.
    assert!(publishes(rig.importer.handle(hinted(own)).await).is_empty());
    assert_eq!(
        rig.ledger.target(&id).await.expect("read").map(|r| r.state),
        Some(State::Requested)
    );
    // The job's own poll goes on as before: pending, polled again.
    let next = publishes(rig.importer.handle(due(own)).await);
    assert!(
        matches!(&next[..], [p] if p.to == Route::Queue(IMPORTER_POLLS.into())),
        "{next:?}"
    );
    assert_eq!(rig.sandbox.stats().jobs.polls, 2);
}
