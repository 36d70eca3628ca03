use super::*;

fn seen(slug: &str, branch: &str, uuid: &str) -> SeenRepo {
    SeenRepo {
        slug: slug.into(),
        branch: Some(branch.into()),
        uuid: Some(uuid.into()),
        skipped: false,
        policy: None,
        branches: Vec::new(),
        reason: None,
    }
}

fn project(id: &str, name: &str, branch: Option<&str>, active: bool) -> OrgProject {
    OrgProject {
        id: id.into(),
        display_name: name.into(),
        branch: branch.map(Into::into),
        active,
        created: Some("2026-01-01T00:00:00.000Z".into()),
        metadata: Default::default(),
        origin: "bitbucket-connect-app".into(),
        target_file: "package.json".into(),
    }
}

fn views<'a>(
    seen: &'a [SeenRepo],
    uuids: &'a [(String, String)],
    projects: &'a [OrgProject],
    targets: &'a [String],
) -> Views<'a> {
    Views {
        workspace: "ws",
        seen,
        uuids,
        projects,
        targets,
        narrowed: false,
        started: None,
    }
}

#[test]
fn each_kind_of_change_is_found_once_and_a_second_look_finds_none() {
    let main = Some("main");
    let projects = vec![
        project("p-same", "ws/same", main, true),
        project("p-gone", "ws/gone", main, true),
        project("p-old-name", "ws/old-name", main, true),
        project("p-rebranched", "ws/rebranched", main, true),
        project("p-retired", "ws/retired-before", main, false),
        project("p-other-ws", "other/x", main, true),
    ];
    let seen = vec![
        seen("same", "main", "{1}"),
        seen("new-name", "main", "{2}"),
        seen("rebranched", "develop", "{3}"),
        seen("brand-new", "main", "{4}"),
        SeenRepo {
            skipped: true,
            ..seen("filtered-out", "main", "{5}")
        },
    ];
    let uuids = vec![
        ("ws/same".into(), "{1}".into()),
        ("ws/old-name".into(), "{2}".into()),
        ("ws/new-name".into(), "{2}".into()),
    ];
    let targets = vec!["ws/bare".to_owned()];
    let plan = plan(&views(&seen, &uuids, &projects, &targets));
    let kinds: Vec<(ChangeKind, &str, Option<&str>)> = plan
        .changes
        .iter()
        .map(|c| (c.kind, c.target.as_str(), c.was.as_deref()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (ChangeKind::New, "ws/brand-new", None),
            (ChangeKind::Renamed, "ws/new-name", Some("ws/old-name")),
            (ChangeKind::BranchChanged, "ws/rebranched", Some("main")),
        ],
        "a deletion is not a change until Bitbucket confirms it"
    );
    let imports: Vec<(&str, Option<&str>)> = plan
        .imports
        .iter()
        .map(|t| (t.name.as_str(), t.branch.as_deref()))
        .collect();
    assert_eq!(
        imports,
        vec![
            ("brand-new", Some("main")),
            ("new-name", Some("main")),
            ("rebranched", Some("develop"))
        ]
    );
    let retired: Vec<(&str, Vec<String>)> = plan
        .retire
        .iter()
        .map(|r| (r.target.as_str(), r.projects.clone()))
        .collect();
    assert_eq!(
        retired,
        vec![("ws/rebranched", vec!["p-rebranched".to_owned()])],
        "the listing itself shows the branch change"
    );
    let candidates: Vec<(&str, Option<&str>, Vec<String>)> = plan
        .candidates
        .iter()
        .map(|c| (c.name.as_str(), c.renamed_to.as_deref(), c.projects.clone()))
        .collect();
    assert_eq!(
        candidates,
        vec![
            (
                "ws/old-name",
                Some("ws/new-name"),
                vec!["p-old-name".to_owned()]
            ),
            ("ws/gone", None, vec!["p-gone".to_owned()]),
        ]
    );
    assert_eq!(plan.active, 4, "active projects of this workspace");

    // After the sync: the imports made projects, the retired ones are inactive.
    let after = vec![
        project("p-same", "ws/same", main, true),
        project("p-gone", "ws/gone", main, false),
        project("p-old-name", "ws/old-name", main, false),
        project("p-new-name", "ws/new-name", main, true),
        project("p-rebranched", "ws/rebranched", main, false),
        project("p-rebranched-2", "ws/rebranched", Some("develop"), true),
        project("p-brand-new", "ws/brand-new", main, true),
    ];
    let again = super::plan(&views(&seen, &uuids, &after, &[]));
    assert_eq!(
        (again.changes, again.retire, again.candidates),
        (vec![], vec![], vec![])
    );
}

#[test]
fn a_listing_bitbucket_filtered_yields_no_candidates() {
    let projects = vec![
        project("p-in", "ws/in-view", Some("main"), true),
        project("p-out", "ws/out-of-view", Some("main"), true),
    ];
    let seen = vec![seen("in-view", "main", "{1}")];
    let mut v = views(&seen, &[], &projects, &[]);
    assert_eq!(
        plan(&v).candidates.len(),
        1,
        "unfiltered, the absent one is a candidate"
    );
    v.narrowed = true;
    let narrowed = plan(&v);
    assert_eq!(narrowed.candidates, vec![]);
    assert_eq!(narrowed.changes, vec![]);
}

#[test]
fn a_project_with_no_target_reference_is_on_the_default_branch() {
    let projects = vec![project("p", "ws/repo", None, true)];
    let seen = vec![seen("repo", "develop", "{1}")];
    let plan = plan(&views(&seen, &[], &projects, &[]));
    assert_eq!(
        plan,
        Plan {
            active: 1,
            ..Plan::default()
        },
        "no branch change, nothing to import"
    );
}

#[test]
fn projects_created_after_the_sync_began_are_never_retired_by_it() {
    let mut fresh = project("p-fresh", "ws/gone", Some("main"), true);
    fresh.created = Some("2026-12-07T10:00:05.123Z".into());
    let projects = vec![project("p-old", "ws/gone", Some("main"), true), fresh];
    let mut v = views(&[], &[], &projects, &[]);
    v.started = Some("2026-12-07T10:00:00Z".into());
    let plan = plan(&v);
    assert_eq!(plan.candidates.len(), 1);
    assert_eq!(plan.candidates[0].projects, vec!["p-old".to_owned()]);
}

#[test]
fn a_branch_change_keeps_the_projects_of_branches_the_policy_imports() {
    let projects = vec![
        project("p-main", "ws/repo", Some("main"), true),
        project("p-release", "ws/repo", Some("release/1.0"), true),
    ];
    let mut repo = seen("repo", "develop", "{1}");
    repo.branches = vec!["release/*".into()];
    let plan = plan(&views(std::slice::from_ref(&repo), &[], &projects, &[]));
    assert_eq!(plan.retire.len(), 1);
    assert_eq!(plan.retire[0].projects, vec!["p-main".to_owned()]);
}
