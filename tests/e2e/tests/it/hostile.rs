//! Messages as an attacker (or a bad deployment) would publish them, on every queue of a running fleet: each
//! is parked with its reason within seconds, no credential leaves for a host named in one, and a normal run
//! started afterwards completes.

use std::time::Duration;

use bb2snyk_broker::Message;
use bb2snyk_messages::{
    Body, ImportRepo, OrgReady, PollImport, ReposPage, RunRequested, Target, WorkspaceDiscovered,
};
use bb2snyk_sandbox::Knobs;
use bb2snyk_service::Infrastructure;
use bb2snyk_test_support::{Tripwire, wait_for};

use crate::pipeline::{FAST, fleet, run_to_the_end};

/// A valid message whose run id is 400 characters; its AMQP correlation id is short, as a publisher
/// would set it, so only the body is hostile.
fn long_id(body: Body) -> Message {
    Message {
        correlation_id: "hostile".into(),
        ..body.to_message()
    }
}

/// `body` as the broker carries it, its run id made 400 bytes long: what no `RunId` can hold, so only
/// a hostile publisher sends it.
fn long_run_id(body: Body) -> Message {
    let mut message = long_id(body);
    let mut json: serde_json::Value = serde_json::from_slice(&message.body).expect("JSON");
    let long = serde_json::Value::from("r".repeat(400));
    match json.get_mut("import") {
        Some(import) => import["run_id"] = long,
        None => json["run_id"] = long,
    }
    message.body = serde_json::to_vec(&json).expect("JSON");
    message
}

#[tokio::test]
async fn hostile_messages_are_parked_and_the_stages_go_on() {
    let fleet = fleet(
        Knobs {
            workspaces: 2,
            repos_per_workspace: 5,
            empty_rate: 0.0,
            job_ms: 100,
            ..Knobs::default()
        },
        &[FAST],
    )
    .await;
    let settings = &fleet.settings;
    let foreign = Tripwire::start().await;
    let org = OrgReady {
        run_id: "run-hostile".parse().expect("a run id"),
        group_id: "g".parse().expect("an id"),
        workspace: "acme-000".parse().expect("an id"),
        org_id: Some("o".parse().expect("an id")),
        integration_id: Some("i".parse().expect("an id")),
        filters: None,
        credential: None,
        sync: None,
    };
    let import = ImportRepo {
        run_id: "run-hostile".parse().expect("a run id"),
        org_id: "o".parse().expect("an id"),
        integration_id: "i".parse().expect("an id"),
        target: Target {
            owner: "acme-000".parse().expect("an id"),
            name: "api".parse().expect("an id"),
            branch: None,
        },
        failed_jobs: 0,
        policy: None,
    };
    // (queue, message, what its reason must say)
    let cases: Vec<(&str, Message, &str)> = vec![
        (
            "discoverer",
            long_run_id(Body::RunRequested(RunRequested {
                run_id: "run-hostile".parse().expect("a run id"),
                group_id: "g".parse().expect("an id"),
                source_org_id: None,
                filters: None,
                sync: None,
            })),
            "run_id is 400 bytes",
        ),
        (
            "discoverer",
            Body::ReposPage(ReposPage {
                org: org.clone(),
                next: format!("{}/2.0/repositories/acme-000?page=2", foreign.url())
                    .parse()
                    .expect("a page URL"),
                page: 2,
            })
            .to_message(),
            "refused to send the Bitbucket credential",
        ),
        (
            "org-creator",
            long_run_id(Body::WorkspaceDiscovered(WorkspaceDiscovered {
                run_id: "run-hostile".parse().expect("a run id"),
                group_id: "g".parse().expect("an id"),
                source_org_id: None,
                workspace: "acme-000".parse().expect("an id"),
                name: None,
                filters: None,
                credential: None,
                sync: None,
            })),
            "run_id is 400 bytes",
        ),
        (
            "importer",
            long_run_id(Body::ImportRepo(import.clone())),
            "run_id is 400 bytes",
        ),
        (
            "importer-polls",
            long_run_id(Body::PollImport(PollImport {
                import: import.clone(),
                job_url: "https://api.snyk.io/v1/job".parse().expect("an id"),
                polls: 0,
                requested_ms: None,
                not_before_ms: None,
                hinted: false,
            })),
            "run_id is 400 bytes",
        ),
        (
            "importer-polls",
            Body::PollImport(PollImport {
                import,
                job_url: format!("{}/v1/org/o/integrations/i/import/j", foreign.url())
                    .parse()
                    .expect("a job URL"),
                polls: 0,
                requested_ms: None,
                not_before_ms: None,
                hinted: false,
            })
            .to_message(),
            "refused to send SNYK_TOKEN",
        ),
    ];
    let infrastructure = Infrastructure::connect(settings, "e2e-hostile")
        .await
        .expect("infrastructure");
    let broker = infrastructure
        .broker(settings, "e2e-hostile")
        .await
        .expect("broker");
    for (queue, message, _) in &cases {
        broker.publish(queue, message).await.expect("published");
    }
    let channel = infrastructure.amqp.create_channel().await.expect("channel");
    let reasons: std::sync::Mutex<Vec<(String, String)>> = Default::default();
    wait_for(
        "every hostile message parked",
        Duration::from_secs(20),
        || async {
            for queue in bb2snyk_messages::QUEUES {
                let parked = broker.topology().parked(queue);
                while let Ok(Some(got)) = channel
                    .basic_get(
                        parked.as_str().into(),
                        lapin::options::BasicGetOptions { no_ack: true },
                    )
                    .await
                {
                    let reason = bb2snyk_broker::parked_reason(&got.delivery);
                    let mut reasons = reasons.lock().expect("reasons");
                    reasons.push((queue.to_owned(), reason));
                }
            }
            (reasons.lock().expect("reasons").len() >= cases.len()).then_some(())
        },
    )
    .await;
    let reasons = reasons.into_inner().expect("reasons");
    for (queue, _, expected) in &cases {
        assert!(
            reasons
                .iter()
                .any(|(q, r)| q == queue && r.contains(expected)),
            "{queue}: no reason says {expected:?} in {reasons:?}"
        );
    }
    assert_eq!(foreign.hits(), 0, "no request reached the foreign host");
    // The stages went on: a normal run completes.
    let truth = fleet.sandbox.stats().truth;
    run_to_the_end(&fleet, truth.repositories).await;
    infrastructure.close().await;
    fleet.stop().await;
}
