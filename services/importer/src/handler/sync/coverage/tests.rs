use bb2snyk_messages::{Change, ChangeKind, Coverage};

use super::*;

fn seen(slug: &str, branch: Option<&str>) -> SeenRepo {
    SeenRepo {
        slug: slug.into(),
        branch: branch.map(Into::into),
        uuid: None,
        skipped: false,
        policy: None,
        branches: Vec::new(),
        reason: None,
    }
}

fn project(name: &str, branch: Option<&str>, active: bool, created: &str) -> OrgProject {
    OrgProject {
        id: format!("p-{name}-{created}"),
        display_name: name.into(),
        branch: branch.map(Into::into),
        active,
        created: Some(created.into()),
        metadata: Default::default(),
        origin: "bitbucket-connect-app".into(),
        target_file: "package.json".into(),
    }
}

fn status_of(rows: &[RepoCoverage], slug: &str) -> (Coverage, u32, Option<String>) {
    let row = rows.iter().find(|r| r.slug == slug).expect(slug);
    (row.status, row.projects, row.last_imported.clone())
}

/// Each status comes from what Snyk holds against what the listing showed, and a rename from the
/// sync's judged plan.
#[test]
fn each_repository_gets_the_status_snyk_gives_it() {
    let main = Some("main");
    let seen = vec![
        seen("imported", main),
        seen("unbranched-project", main),
        seen("rebranched", Some("develop")),
        seen("new-name", main),
        seen("new", main),
        seen("deactivated", main),
        seen("bare", main),
        seen("empty", None),
        SeenRepo {
            skipped: true,
            reason: Some("skipped by policy rule 2".into()),
            ..seen("skipped", main)
        },
    ];
    let projects = vec![
        project("ws/imported", main, true, "2026-01-01T00:00:00Z"),
        project("ws/imported", main, true, "2026-02-01T00:00:00Z"),
        project("ws/imported", Some("release"), true, "2026-03-01T00:00:00Z"),
        project("ws/unbranched-project", None, true, "2026-01-01T00:00:00Z"),
        project("ws/rebranched", main, true, "2026-01-01T00:00:00Z"),
        project("ws/old-name", main, true, "2026-01-01T00:00:00Z"),
        project("ws/deactivated", main, false, "2026-01-01T00:00:00Z"),
    ];
    let targets = vec!["ws/bare".to_owned()];
    let changes = vec![Change {
        kind: ChangeKind::Renamed,
        target: "ws/new-name".into(),
        was: Some("ws/old-name".into()),
        uuid: None,
        projects: 0,
    }];
    let rows = rows("ws", true, &seen, &projects, &targets, &changes);
    assert_eq!(rows.len(), 9);
    assert_eq!(
        status_of(&rows, "imported"),
        (Coverage::Imported, 2, Some("2026-02-01T00:00:00Z".into())),
        "two projects on main, the newest one's date; the release branch's is not counted"
    );
    assert_eq!(status_of(&rows, "unbranched-project").0, Coverage::Imported);
    assert_eq!(status_of(&rows, "rebranched").0, Coverage::Stale);
    assert_eq!(status_of(&rows, "new-name").0, Coverage::Stale);
    assert_eq!(status_of(&rows, "new").0, Coverage::Missing);
    assert_eq!(status_of(&rows, "deactivated").0, Coverage::Missing);
    assert_eq!(status_of(&rows, "bare").0, Coverage::Missing);
    assert_eq!(status_of(&rows, "empty").0, Coverage::Empty);
    assert_eq!(status_of(&rows, "skipped").0, Coverage::Skipped);
    let reason = |slug: &str| {
        rows.iter()
            .find(|r| r.slug == slug)
            .and_then(|r| r.reason.clone())
    };
    assert_eq!(reason("imported"), None);
    assert!(
        reason("rebranched").is_some_and(|r| r.contains("main only")),
        "{:?}",
        reason("rebranched")
    );
    assert!(reason("new-name").is_some_and(|r| r.contains("ws/old-name")));
    assert!(reason("deactivated").is_some_and(|r| r.contains("deactivated")));
    assert!(reason("bare").is_some_and(|r| r.contains("no manifest")));
    assert_eq!(
        reason("skipped").as_deref(),
        Some("skipped by policy rule 2")
    );
    let slugs: Vec<&str> = rows.iter().map(|r| r.slug.as_str()).collect();
    let mut sorted = slugs.clone();
    sorted.sort_unstable();
    assert_eq!(slugs, sorted, "in slug order");
}

/// A workspace no org serves: every repository that could be imported is missing, and says why.
#[test]
fn a_workspace_without_an_org_is_missing_throughout() {
    let rows = rows(
        "ws",
        false,
        &[seen("a", Some("main")), seen("b", None)],
        &[],
        &[],
        &[],
    );
    assert_eq!(rows[0].status, Coverage::Missing);
    assert!(
        rows[0]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("bb2snyk run"))
    );
    assert_eq!(rows[1].status, Coverage::Empty);
}

/// 2,500 repositories and 3 orphans go out as three events of at most 1,000 repositories each.
#[test]
fn a_large_workspace_is_listed_in_parts() {
    let s = SyncWorkspace {
        run_id: "r".parse().expect("a run id"),
        org_id: Some("o".parse().expect("an id")),
        integration_id: Some("i".parse().expect("an id")),
        workspace: "ws".parse().expect("an id"),
        sync: Default::default(),
        credential: None,
        narrowed: false,
    };
    let seen: Vec<SeenRepo> = (0..2500)
        .map(|i| seen(&format!("r{i:04}"), Some("main")))
        .collect();
    let gone = |slug: &str| Change {
        kind: ChangeKind::Deleted,
        target: format!("ws/{slug}"),
        was: None,
        uuid: None,
        projects: 2,
    };
    let changes = vec![gone("x"), gone("y"), gone("z")];
    let parts: Vec<CoverageListed> = listed(&s, &seen, &[], &[], &changes)
        .iter()
        .map(|p| match Event::from_message(&p.message) {
            Ok(Event::CoverageListed(c)) => c,
            other => panic!("expected coverage.listed, got {other:?}"),
        })
        .collect();
    let sizes: Vec<(u32, u32, usize, usize)> = parts
        .iter()
        .map(|p| (p.part, p.parts, p.repositories.len(), p.orphaned.len()))
        .collect();
    assert_eq!(sizes, [(1, 3, 1000, 3), (2, 3, 1000, 0), (3, 3, 500, 0)]);
    assert_eq!(parts[0].orphaned[0].slug, "x");
}
