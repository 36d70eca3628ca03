//! The import policy in the services (2 replicas per stage): on 6 workspaces x 20 repositories, a policy of
//! five rules (tags for all with `{workspace}`; an `*-api-*` rule with a tag and all three attributes; a
//! project-key rule with exclusion globs; a skip rule; a workspace rule with `branches = ["release/*"]`):
//! every active project carries exactly its rules' tags and attributes, the exclusion globs are in exactly
//! the matching imports, no skipped repository is imported, release branches only in that workspace; a
//! second run makes no import and no metadata call.
//!
//! A test binary of its own, as `record.rs`: its fleets run whole tenants.

use bb2snyk_e2e::{ALL, TestFleet};
use bb2snyk_sandbox::Knobs;

const POLICY: &str = r#"
[[rule]]
tags = { team = "{workspace}" }

[[rule]]
repos = ["*-api-*"]
tags = { tier = "api" }
criticality = ["high"]
environment = ["backend"]
lifecycle = ["production"]

[[rule]]
projects = ["PRJ1"]
exclusion_globs = ["fixtures"]

[[rule]]
repos = ["*-docs"]
skip = true

[[rule]]
workspaces = ["acme-*"]
branches = ["release/*"]
"#;

#[tokio::test]
async fn the_services_apply_a_policy_of_five_rules_and_a_second_run_calls_nothing() {
    let dir = std::env::temp_dir().join(bb2snyk_test_support::unique("policy"));
    std::fs::create_dir_all(&dir).expect("a folder");
    let file = dir.join("policy.toml");
    std::fs::write(&file, POLICY).expect("policy written");
    let knobs = Knobs {
        workspaces: 6,
        repos_per_workspace: 20,
        empty_rate: 0.0,
        docs_every: 5,
        job_ms: 50,
        ..Knobs::default()
    };
    let path = file.display().to_string();
    let mut fleet = TestFleet::start(knobs, "policy", &[("BB2SNYK__POLICY__FILE", &path)]).await;
    fleet.spawn(&ALL, 2);
    let truth = fleet.sandbox.truth();
    let mut expected = 0u64;
    let mut skipped = Vec::new();
    for ws in truth.as_array().expect("workspaces") {
        let workspace = ws["slug"].as_str().expect("slug");
        for repo in ws["repos"].as_array().expect("repos") {
            let name = format!("{workspace}/{}", repo["slug"].as_str().expect("slug"));
            expected += 1;
            if name.ends_with("-docs") {
                skipped.push(name);
                continue;
            }
            if workspace.starts_with("acme-") {
                let branches = fleet.sandbox.branches(&name);
                expected += branches
                    .iter()
                    .filter(|b| b.starts_with("release/"))
                    .count() as u64;
            }
        }
    }
    fleet.run_to_the_end(expected).await;
    let stats = fleet.sandbox.stats();
    assert!(!skipped.is_empty());
    for name in &skipped {
        assert!(!stats.import_posts.contains_key(name), "{name} was skipped");
    }
    // Metadata goes on as work of its own: done when every project carries it.
    let projects = bb2snyk_test_support::wait_for(
        "every project's metadata set",
        std::time::Duration::from_secs(60),
        || async {
            let projects = fleet.sandbox.project_metadata();
            projects
                .iter()
                .all(|(_, _, m)| !m.tags.is_empty())
                .then_some(projects)
        },
    )
    .await;
    for (target, branch, meta) in &projects {
        let (workspace, slug) = target.split_once('/').expect("ws/slug");
        let api = slug.contains("-api-");
        let mut want = vec![("team".to_owned(), workspace.to_owned())];
        if api {
            want.push(("tier".to_owned(), "api".to_owned()));
        }
        let mut tags = meta.tags.clone();
        tags.sort();
        want.sort();
        assert_eq!(tags, want, "{target}");
        assert_eq!(meta.business_criticality.is_empty(), !api, "{target}");
        assert_eq!(meta.environment.is_empty(), !api, "{target}");
        assert_eq!(meta.lifecycle.is_empty(), !api, "{target}");
        if branch.as_deref().is_some_and(|b| b.starts_with("release/")) {
            assert!(workspace.starts_with("acme-"), "{target} {branch:?}");
        }
    }
    let patches = fleet.sandbox.stats().metadata_patches;
    assert_eq!(patches as usize, projects.len(), "one call per project");
    let globbed: Vec<&String> = stats.exclusion_globs.keys().collect();
    assert!(!globbed.is_empty());
    for name in globbed {
        let (workspace, slug) = name.split_once('/').expect("ws/slug");
        let key = truth
            .as_array()
            .expect("workspaces")
            .iter()
            .find(|w| w["slug"] == workspace)
            .and_then(|w| w["repos"].as_array()?.iter().find(|r| r["slug"] == slug))
            .map(|r| r["project_key"].clone());
        assert_eq!(key, Some("PRJ1".into()), "{name}");
    }

    // A second run: nothing to import, nothing to set.
    fleet.run_to_the_end(expected).await;
    let again = fleet.sandbox.stats();
    assert_eq!(again.import_posts_total, stats.import_posts_total);
    assert_eq!(again.metadata_patches, patches);
    fleet.stop().await;
}
