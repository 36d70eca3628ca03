//! Messages on the wire: versioned types, stable ids, and what a malformed or overlong one is told.

use super::*;

fn import() -> ImportRepo {
    ImportRepo {
        run_id: "run-1".parse().expect("a run id"),
        org_id: "o".parse().expect("an id"),
        integration_id: "i".parse().expect("an id"),
        target: Target {
            owner: "acme".parse().expect("an id"),
            name: "api".parse().expect("an id"),
            branch: Some("main".parse().expect("an id")),
        },
        failed_jobs: 0,
        policy: None,
    }
}

#[test]
fn round_trips_with_a_versioned_type_and_a_stable_id() {
    let body = Body::ImportRepo(import());
    let message = body.to_message();
    assert_eq!(message.kind, "repo.import.v1");
    let json: serde_json::Value = serde_json::from_slice(&message.body).expect("JSON");
    assert_eq!(json["type"], "repo.import.v1");
    assert_eq!(Body::from_message(&message), Ok(body.clone()));
    assert_eq!(body.to_message().message_id, message.message_id);
    assert_eq!(import().target_id(), "o:i:api:acme:main");
    let retried = Body::ImportRepo(ImportRepo {
        failed_jobs: 1,
        ..import()
    });
    assert_ne!(retried.message_id(), message.message_id);
}

#[test]
fn kinds_are_the_serde_names() {
    let run = RunRequested {
        run_id: "r".parse().expect("a run id"),
        group_id: "g".parse().expect("an id"),
        source_org_id: None,
        filters: None,
        sync: None,
    };
    for body in [
        Body::RunRequested(run),
        Body::ImportRepo(import()),
        Body::PollImport(PollImport {
            import: import(),
            job_url: "https://snyk/job".parse().expect("an id"),
            polls: 2,
            requested_ms: None,
            not_before_ms: None,
            hinted: false,
        }),
    ] {
        let json: serde_json::Value =
            serde_json::from_slice(&body.to_message().body).expect("JSON");
        assert_eq!(json["type"], body.kind());
        assert!(Body::KINDS.contains(&body.kind()));
    }
    // The six of a run, a sync's three, and the policy's metadata.
    assert_eq!(Body::KINDS.len(), 10);
}

#[test]
fn a_retire_names_a_bounded_number_of_projects() {
    let retire = |n: usize| RetireProjects {
        run_id: "r".parse().expect("a run id"),
        org_id: "o".parse().expect("an id"),
        target: "acme/api".parse().expect("an id"),
        projects: (0..n)
            .map(|i| format!("p-{i}").parse().expect("a project id"))
            .collect(),
        delete: false,
        reason: "gone".parse().expect("an id"),
    };
    let fits = Body::RetireProjects(retire(MAX_RETIRED)).to_message();
    assert!(Body::from_message(&fits).is_ok());
    let over = Body::RetireProjects(retire(MAX_RETIRED + 1)).to_message();
    assert_eq!(
        Body::from_message(&over),
        Err(format!(
            "malformed message (projects.retire.v1): projects names {} projects, at most {MAX_RETIRED}",
            MAX_RETIRED + 1
        ))
    );
}

#[test]
fn malformed_messages_say_why() {
    let mut message = Body::ImportRepo(import()).to_message();
    for (body, expected) in [
        (
            &b"not json"[..],
            "malformed message (repo.import.v1): expected",
        ),
        (
            br#"{"type":"repo.delete.v1"}"#,
            "unknown variant `repo.delete.v1`",
        ),
        (
            br#"{"type":"repo.import.v1","run_id":"r"}"#,
            "missing field `org_id`",
        ),
        (
            br#"{"type":"run.requested.v1","run_id":"r","group_id":"g","filters":{"exclude":["a-["]}}"#,
            "not a valid glob",
        ),
    ] {
        message.body = body.to_vec();
        let reason = Body::from_message(&message).expect_err("malformed");
        assert!(reason.contains(expected), "{reason}");
    }
    // Each id parses once, where the message is read: too long, empty, or with a control character.
    for (run_id, expected) in [
        ("r".repeat(400), "run_id is 400 bytes, at most 128"),
        (String::new(), "run_id is empty"),
        ("run\u{7}".to_owned(), "run_id holds control characters"),
    ] {
        message.body = serde_json::to_vec(&serde_json::json!({
            "type": "run.requested.v1", "run_id": run_id, "group_id": "g"
        }))
        .expect("JSON");
        let reason = Body::from_message(&message).expect_err("malformed");
        assert!(reason.contains(expected), "{reason}");
    }
    let mut wrong = Body::RunRequested(RunRequested {
        filters: None,
        run_id: "r".parse().expect("a run id"),
        group_id: "g".parse().expect("an id"),
        source_org_id: None,
        sync: None,
    })
    .to_message();
    wrong.kind = "repo.import.v1".into();
    assert!(
        Body::from_message(&wrong)
            .expect_err("mismatch")
            .contains("its type property says")
    );
}

#[test]
fn a_sync_s_imports_come_a_page_at_a_time() {
    let imports = |n: usize| SyncImports {
        run_id: "r".parse().expect("a run id"),
        org_id: "o".parse().expect("an id"),
        integration_id: "i".parse().expect("an id"),
        page: 1,
        policies: Vec::new(),
        targets: (0..n)
            .map(|i| Target {
                owner: "acme".parse().expect("an id"),
                name: format!("repo-{i}").parse().expect("a slug"),
                branch: None,
            })
            .collect(),
    };
    let read = |n| Body::from_message(&Body::SyncImports(imports(n)).to_message());
    assert!(read(MAX_SYNC_IMPORTS).is_ok());
    let refused = read(MAX_SYNC_IMPORTS + 1).expect_err("too many");
    assert!(refused.contains("at most 100"), "{refused}");
}

#[test]
fn an_import_s_policy_is_held_to_snyk_s_rules_when_read() {
    let with = |policy: ProjectPolicy| {
        Body::from_message(
            &Body::ImportRepo(ImportRepo {
                policy: Some(policy),
                ..import()
            })
            .to_message(),
        )
    };
    let good = ProjectPolicy {
        tags: [("team".to_owned(), "acme-000".to_owned())].into(),
        criticality: Some(vec!["high".into()]),
        exclusion_globs: Some("fixtures, test/data".into()),
        ..ProjectPolicy::default()
    };
    assert!(with(good.clone()).is_ok());
    let bad_tag = ProjectPolicy {
        tags: [("team".to_owned(), "a b".to_owned())].into(),
        ..good.clone()
    };
    assert!(with(bad_tag).expect_err("a space").contains("Snyk refuses"));
    let many = ProjectPolicy {
        tags: (0..51).map(|i| (format!("k{i}"), "v".to_owned())).collect(),
        ..good
    };
    assert!(with(many).expect_err("too many").contains("at most 50"));
}

/// The previous release wrote 0 for "no time" in a poll, and the estimate a probe probed (`probe_ms`,
/// no longer read): it reads, the zeros as absent, and what this release writes leaves both out.
#[test]
fn a_poll_from_the_previous_release_reads() {
    let old = br#"{"type":"import.poll.v1","import":{"run_id":"r","org_id":"o","integration_id":"i","target":{"owner":"acme","name":"api"},"failed_jobs":0},"job_url":"https://api.snyk.io/v1/job","polls":0,"requested_ms":0,"not_before_ms":0,"probe_ms":5000}"#;
    let Ok(Body::PollImport(poll)) = serde_json::from_slice::<Body>(old) else {
        panic!("the previous release's poll reads");
    };
    assert_eq!((poll.requested_ms, poll.not_before_ms), (None, None));
    let again = serde_json::to_value(Body::PollImport(poll)).expect("JSON");
    assert!(again.get("requested_ms").is_none() && again.get("not_before_ms").is_none());
    assert!(again.get("probe_ms").is_none());
}
