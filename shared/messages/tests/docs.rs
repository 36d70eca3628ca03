//! `docs/messages.md` is what ops tools and other teams read: its tables must name exactly the message
//! and event types these crates send, with exactly their fields.

use std::collections::BTreeSet;

use bb2snyk_messages::{
    Body, Change, ChangeKind, Checked, Coverage, CoverageListed, Event, Filters, ImportCompleted,
    ImportFailed, ImportRepo, ImportRequested, OrgReady, OrgReadyEvent, Orphan, PollImport,
    ProjectsMetadata, ProjectsRetired, RepoCoverage, RepoSkipped, ReposPage, RetireProjects,
    RunRequested, Sync, SyncImports, SyncPlanned, SyncWorkspace, Target, TargetRef, Verdict,
    WorkspaceDiscovered,
};

fn docs() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/messages.md");
    std::fs::read_to_string(path).expect("docs/messages.md")
}

/// The rows of the table under `heading`: each row's cells.
fn table(docs: &str, heading: &str) -> Vec<Vec<String>> {
    let section = docs
        .split("\n## ")
        .find(|s| s.starts_with(heading))
        .unwrap_or_else(|| panic!("a section {heading:?}"));
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect()
}

/// The field names a cell lists: backticked identifiers, with `?` (optional) and `[]` (list) dropped.
fn fields(cell: &str) -> BTreeSet<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(|t| t.trim_end_matches('?').trim_end_matches("[]"))
        .filter(|t| t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .map(str::to_owned)
        .collect()
}

/// The top-level keys of a value's JSON, but those in `except`.
fn keys(json: &[u8], except: &[&str]) -> BTreeSet<String> {
    let value: serde_json::Value = serde_json::from_slice(json).expect("JSON");
    value
        .as_object()
        .expect("an object")
        .keys()
        .filter(|k| !except.contains(&k.as_str()))
        .cloned()
        .collect()
}

fn target() -> Target {
    Target {
        owner: "acme".parse().expect("an id"),
        name: "api".parse().expect("an id"),
        branch: Some("main".parse().expect("an id")),
    }
}

/// One of each message, every optional field filled, so each documented field shows.
fn bodies() -> Vec<Body> {
    let filters = Some(Filters {
        exclude_forks: true,
        ..Filters::default()
    });
    let org = OrgReady {
        run_id: "r".parse().expect("a run id"),
        group_id: "g".parse().expect("an id"),
        workspace: "acme".parse().expect("an id"),
        org_id: Some("o".parse().expect("an id")),
        integration_id: Some("i".parse().expect("an id")),
        filters: filters.clone(),
        credential: Some("0123456789abcdef".parse().expect("an id")),
        sync: Some(sync()),
    };
    let import = ImportRepo {
        run_id: "r".parse().expect("a run id"),
        org_id: "o".parse().expect("an id"),
        integration_id: "i".parse().expect("an id"),
        target: target(),
        failed_jobs: 0,
        policy: Some(bb2snyk_messages::ProjectPolicy {
            exclusion_globs: Some("fixtures".into()),
            ..Default::default()
        }),
    };
    vec![
        Body::RunRequested(RunRequested {
            run_id: "r".parse().expect("a run id"),
            group_id: "g".parse().expect("an id"),
            source_org_id: Some("s".parse().expect("an id")),
            filters: filters.clone(),
            sync: Some(sync()),
        }),
        Body::WorkspaceDiscovered(WorkspaceDiscovered {
            run_id: "r".parse().expect("a run id"),
            group_id: "g".parse().expect("an id"),
            source_org_id: Some("s".parse().expect("an id")),
            workspace: "acme".parse().expect("an id"),
            name: Some("Acme".parse().expect("an id")),
            filters,
            credential: Some("0123456789abcdef".parse().expect("an id")),
            sync: Some(sync()),
        }),
        Body::OrgReady(org.clone()),
        Body::ReposPage(ReposPage {
            org,
            next: "https://api.bitbucket.org/2.0/repositories/acme?page=2"
                .parse()
                .expect("an id"),
            page: 2,
        }),
        Body::ImportRepo(import.clone()),
        Body::PollImport(PollImport {
            import,
            job_url: "https://api.snyk.io/v1/job".parse().expect("an id"),
            polls: 0,
            requested_ms: Some(bb2snyk_messages::UnixMs(1)),
            not_before_ms: Some(bb2snyk_messages::UnixMs(2)),
            hinted: true,
        }),
        Body::SyncWorkspace(SyncWorkspace {
            run_id: "r".parse().expect("a run id"),
            org_id: Some("o".parse().expect("an id")),
            integration_id: Some("i".parse().expect("an id")),
            workspace: "acme".parse().expect("an id"),
            sync: sync(),
            credential: Some("c".parse().expect("an id")),
            narrowed: true,
        }),
        Body::SyncImports(SyncImports {
            run_id: "r".parse().expect("a run id"),
            org_id: "o".parse().expect("an id"),
            integration_id: "i".parse().expect("an id"),
            page: 1,
            targets: vec![target()],
            policies: vec![None],
        }),
        Body::ProjectsMetadata(ProjectsMetadata {
            run_id: "r".parse().expect("a run id"),
            org_id: "o".parse().expect("an id"),
            target: "acme/api".parse().expect("an id"),
            projects: vec!["p".parse().expect("an id")],
            policy: Default::default(),
        }),
        Body::RetireProjects(RetireProjects {
            run_id: "r".parse().expect("a run id"),
            org_id: "o".parse().expect("an id"),
            target: "acme/api".parse().expect("an id"),
            projects: vec!["p".parse().expect("an id")],
            delete: false,
            reason: "acme/api is gone from Bitbucket".parse().expect("an id"),
        }),
    ]
}

fn sync() -> Sync {
    Sync {
        dry_run: true,
        delete: false,
        org_id: Some("o".parse().expect("an id")),
        allow_mass_retire: true,
        started_ms: Some(bb2snyk_messages::UnixMs(1)),
        report: true,
    }
}

fn events() -> Vec<Event> {
    let about = TargetRef {
        org_id: "o".parse().expect("an id"),
        integration_id: "i".parse().expect("an id"),
        target: target(),
    };
    let (run_id, subject): (bb2snyk_messages::RunId, String) = (
        "r".parse().expect("a run id"),
        "o:i:api:acme:main".to_owned(),
    );
    vec![
        Event::OrgReady(OrgReadyEvent {
            run_id: run_id.clone(),
            subject: "acme".into(),
            org_id: "o".parse().expect("an id"),
            org_name: "Acme".into(),
        }),
        Event::RepoSkipped(RepoSkipped {
            run_id: run_id.clone(),
            subject: subject.clone(),
            reason: "fork".into(),
        }),
        Event::ImportRequested(ImportRequested {
            run_id: run_id.clone(),
            subject: subject.clone(),
            about: about.clone(),
            job_url: "j".parse().expect("an id"),
        }),
        Event::ImportCompleted(ImportCompleted {
            run_id: run_id.clone(),
            subject: subject.clone(),
            about: about.clone(),
            job_url: Some("j".parse().expect("an id")),
            projects: vec!["p".parse().expect("an id")],
            before: true,
        }),
        Event::ImportFailed(ImportFailed {
            run_id: run_id.clone(),
            subject,
            about,
            error: "no manifest".into(),
            failed_jobs: 1,
        }),
        Event::SyncPlanned(SyncPlanned {
            run_id: run_id.clone(),
            subject: "acme".into(),
            org_id: Some("o".parse().expect("an id")),
            dry_run: false,
            changes: vec![Change {
                kind: ChangeKind::Renamed,
                target: "acme/api".into(),
                was: Some("acme/old".into()),
                uuid: Some("{0f3c}".into()),
                projects: 1,
            }],
            narrowed: true,
            braked: Some("it would retire 60 of 100 active projects".into()),
            checked: vec![Checked {
                target: "acme/gone".into(),
                verdict: Verdict::Gone,
                detail: "GET /2.0/repositories/acme/gone answered 404".into(),
            }],
            part: 1,
            parts: 1,
        }),
        Event::CoverageListed(CoverageListed {
            run_id: run_id.clone(),
            subject: "acme".into(),
            org_id: Some("o".parse().expect("an id")),
            integration_id: Some("i".parse().expect("an id")),
            repositories: vec![RepoCoverage {
                slug: "api".into(),
                status: Coverage::Stale,
                reason: Some("in Snyk on master only".into()),
                branch: Some("main".into()),
                projects: 2,
                last_imported: Some("2026-01-01T00:00:00Z".into()),
            }],
            orphaned: vec![Orphan {
                slug: "gone".into(),
                projects: 1,
            }],
            narrowed: true,
            part: 1,
            parts: 1,
        }),
        Event::ProjectsRetired(ProjectsRetired {
            run_id,
            subject: "acme/old".into(),
            org_id: "o".parse().expect("an id"),
            projects: vec!["p".parse().expect("an id")],
            deleted: false,
            reason: "renamed in Bitbucket to acme/api".into(),
        }),
    ]
}

#[test]
fn every_message_type_is_documented_with_its_queue_and_fields() {
    let rows = table(&docs(), "Message types");
    let bodies = bodies();
    assert_eq!(bodies.len(), Body::KINDS.len(), "a sample of each type");
    let documented: BTreeSet<String> = rows
        .iter()
        .map(|r| r[0].trim_matches('`').to_owned())
        .collect();
    let sent: BTreeSet<String> = Body::KINDS.iter().map(|k| (*k).to_owned()).collect();
    assert_eq!(
        documented, sent,
        "docs/messages.md lists exactly the message types"
    );
    for body in bodies {
        let row = rows
            .iter()
            .find(|r| r[0] == format!("`{}`", body.kind()))
            .expect("a row");
        assert_eq!(row[1], body.queue(), "{}'s queue", body.kind());
        assert_eq!(
            fields(&row[2]),
            keys(&body.to_message().body, &["type"]),
            "{}'s fields",
            body.kind()
        );
    }
}

#[test]
fn every_event_is_documented_with_its_fields() {
    let rows = table(&docs(), "Events");
    let events = events();
    assert_eq!(events.len(), Event::KINDS.len(), "a sample of each event");
    let documented: BTreeSet<String> = rows
        .iter()
        .map(|r| r[0].trim_matches('`').to_owned())
        .collect();
    let sent: BTreeSet<String> = events.iter().map(|e| e.routing_key().to_owned()).collect();
    assert_eq!(
        documented, sent,
        "docs/messages.md lists exactly the routing keys"
    );
    for event in events {
        let row = rows
            .iter()
            .find(|r| r[0] == format!("`{}`", event.routing_key()))
            .expect("a row");
        assert_eq!(
            fields(&row[1]),
            keys(&event.to_message().body, &["type", "run_id", "subject"]),
            "{}'s fields",
            event.routing_key()
        );
    }
}
