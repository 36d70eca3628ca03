//! The import policy at import, with the real binary against the sandbox: a skip rule leaves its
//! repositories out (reported as skipped by policy), exclusion globs reach exactly the matching
//! repositories' import bodies, `policy check` shows each repository's decision, and a bad policy stops
//! every command before any request, naming the file, the rule and the value.

use bb2snyk_sandbox::{Knobs, Sandbox};

use crate::common::{GROUP, bb2snyk, stderr, stdout, workdir};

const POLICY: &str = r#"
[[rule]]
tags = { team = "{workspace}" }

[[rule]]
projects = ["PRJ1"]
exclusion_globs = ["fixtures", "test/data"]

[[rule]]
repos = ["*-api-*"]
tags = { tier = "api" }
criticality = ["high"]
environment = ["backend", "external"]
lifecycle = ["production"]

[[rule]]
repos = ["*-docs"]
skip = true

[[rule]]
workspaces = ["acme-*"]
branches = ["release/*"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_skips_and_excludes_by_rule_and_a_bad_one_stops_before_any_request() {
    let sandbox = Sandbox::start(Knobs {
        workspaces: 3,
        repos_per_workspace: 20,
        empty_rate: 0.0,
        docs_every: 5,
        job_ms: 50,
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let dir = workdir("policy");
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, POLICY).expect("policy written");
    let mut env = sandbox.env();
    env.push(("SNYK_LOG_PATH", dir.display().to_string()));
    let group = format!("--groupId={GROUP}");
    let with_policy = format!("--policy={}", policy.display());

    let checked = bb2snyk(
        &["policy", "check", &policy.display().to_string(), &group],
        env.clone(),
        &dir,
    )
    .await;
    assert_eq!(checked.status.code(), Some(0), "{}", stderr(&checked));
    assert!(
        stdout(&checked).contains("5 rule(s), valid for Snyk"),
        "{}",
        stdout(&checked)
    );
    let sample = bb2snyk(
        &[
            "policy",
            "check",
            &policy.display().to_string(),
            "--repo=acme-000/billing-api-7",
            "--project=PRJ1",
        ],
        env.clone(),
        &dir,
    )
    .await;
    assert_eq!(sample.status.code(), Some(0), "{}", stderr(&sample));
    assert!(
        stdout(&sample)
            .contains("acme-000/billing-api-7: rules 1,2,3,5: tags team=acme-000,tier=api"),
        "{}",
        stdout(&sample)
    );
    let writes = sandbox.stats().import_posts_total + sandbox.stats().orgs_created;
    assert_eq!(writes, 0, "policy check writes nothing");

    let run = bb2snyk(&["run", &group, &with_policy], env.clone(), &dir).await;
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let truth = sandbox.truth();
    let stats = sandbox.stats();
    let (mut docs, mut prj1) = (0, 0);
    for ws in truth.as_array().expect("workspaces") {
        let workspace = ws["slug"].as_str().expect("slug");
        for repo in ws["repos"].as_array().expect("repos") {
            let slug = repo["slug"].as_str().expect("slug");
            let name = format!("{workspace}/{slug}");
            let skipped = slug.ends_with("-docs");
            docs += usize::from(skipped);
            assert_eq!(
                stats.import_posts.contains_key(&name),
                !skipped,
                "{name}: only the skip rule's repositories are left out"
            );
            let in_prj1 = repo["project_key"] == "PRJ1" && !skipped;
            prj1 += usize::from(in_prj1);
            assert_eq!(
                stats.exclusion_globs.get(&name).map(String::as_str),
                in_prj1.then_some("fixtures, test/data"),
                "{name}: exclusion globs in exactly the matching imports"
            );
        }
    }
    assert!(
        docs > 0 && prj1 > 0,
        "the tenant has both kinds: {docs} {prj1}"
    );
    assert!(
        stdout(&run).contains(&format!("; {docs} skipped")),
        "the skipped are counted: {}",
        stdout(&run)
    );

    // Every project carries exactly its rules' tags and attributes.
    let projects = sandbox.project_metadata();
    assert!(!projects.is_empty());
    let mut apis = 0;
    for (target, _, meta) in &projects {
        let (workspace, slug) = target.split_once('/').expect("ws/slug");
        let api = slug.contains("-api-");
        apis += usize::from(api);
        let mut want = vec![("team".to_owned(), workspace.to_owned())];
        if api {
            want.push(("tier".to_owned(), "api".to_owned()));
        }
        let mut tags = meta.tags.clone();
        tags.sort();
        want.sort();
        assert_eq!(tags, want, "{target}");
        let attributes = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let (criticality, environment, lifecycle) = if api {
            (
                attributes(&["high"]),
                attributes(&["backend", "external"]),
                attributes(&["production"]),
            )
        } else {
            (vec![], vec![], vec![])
        };
        assert_eq!(
            (
                &meta.business_criticality,
                &meta.environment,
                &meta.lifecycle
            ),
            (&criticality, &environment, &lifecycle),
            "{target}"
        );
    }
    assert!(apis > 0, "some api repositories");
    // Release branches are imported in the acme workspace only, and only there.
    let release: Vec<&str> = projects
        .iter()
        .filter(|(_, b, _)| b.as_deref().is_some_and(|b| b.starts_with("release/")))
        .map(|(t, _, _)| t.as_str())
        .collect();
    assert!(!release.is_empty(), "some release branches imported");
    assert!(
        release.iter().all(|t| t.starts_with("acme-")),
        "{release:?}"
    );
    assert!(
        !projects
            .iter()
            .any(|(_, b, _)| b.as_deref().is_some_and(|b| b.starts_with("feature/"))),
        "no other branch"
    );
    let patches = sandbox.stats().metadata_patches;
    assert_eq!(patches as usize, projects.len(), "one call per project");

    // A second run: no import, no metadata call.
    let again = bb2snyk(&["run", &group, &with_policy], env.clone(), &dir).await;
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    let after = sandbox.stats();
    assert_eq!(after.import_posts_total, stats.import_posts_total);
    assert_eq!(after.metadata_patches, patches);

    // The policy changes a tag's value: a dry run lists exactly the projects to change, a sync changes
    // those, a second sync nothing.
    let changed = dir.join("changed.toml");
    std::fs::write(
        &changed,
        POLICY.replace("tier = \"api\"", "tier = \"edge\""),
    )
    .expect("written");
    let with_changed = format!("--policy={}", changed.display());
    let total_metadata = |out: &str| -> u64 {
        out.lines()
            .find(|l| l.starts_with("total "))
            .and_then(|l| l.split_whitespace().last()?.parse().ok())
            .unwrap_or_else(|| panic!("a total row in {out}"))
    };
    let apis = projects
        .iter()
        .filter(|(t, _, _)| t.contains("-api-"))
        .count() as u64;
    let dry = bb2snyk(
        &["sync", &group, &with_changed, "--dry-run"],
        env.clone(),
        &dir,
    )
    .await;
    assert_eq!(dry.status.code(), Some(0), "{}", stderr(&dry));
    assert_eq!(total_metadata(&stdout(&dry)), apis, "{}", stdout(&dry));
    assert_eq!(
        sandbox.stats().metadata_patches,
        patches,
        "a dry run sets nothing"
    );
    let synced = bb2snyk(&["sync", &group, &with_changed], env.clone(), &dir).await;
    assert_eq!(synced.status.code(), Some(0), "{}", stderr(&synced));
    assert_eq!(sandbox.stats().metadata_patches, patches + apis);
    for (target, _, meta) in sandbox.project_metadata() {
        let tier = meta
            .tags
            .iter()
            .find(|(k, _)| k == "tier")
            .map(|(_, v)| v.as_str());
        assert_eq!(tier, target.contains("-api-").then_some("edge"), "{target}");
    }
    let again = bb2snyk(&["sync", &group, &with_changed], env.clone(), &dir).await;
    assert_eq!(total_metadata(&stdout(&again)), 0, "{}", stdout(&again));
    assert_eq!(sandbox.stats().metadata_patches, patches + apis);

    // The branches rule now covers every workspace: a sync imports the release branches Snyk lacks.
    let wider = dir.join("wider.toml");
    std::fs::write(
        &wider,
        std::fs::read_to_string(&changed)
            .expect("policy")
            .replace("workspaces = [\"acme-*\"]", "workspaces = [\"*\"]"),
    )
    .expect("written");
    let with_wider = format!("--policy={}", wider.display());
    let release_missing: usize = sandbox
        .truth()
        .as_array()
        .expect("workspaces")
        .iter()
        .filter(|w| !w["slug"].as_str().unwrap_or_default().starts_with("acme-"))
        .flat_map(|w| {
            let ws = w["slug"].as_str().unwrap_or_default().to_owned();
            w["repos"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(move |r| Some(format!("{ws}/{}", r["slug"].as_str()?)))
        })
        .filter(|name| !name.ends_with("-docs"))
        .map(|name| {
            sandbox
                .branches(&name)
                .iter()
                .filter(|b| b.starts_with("release/"))
                .count()
        })
        .sum();
    assert!(release_missing > 0);
    let posts = sandbox.stats().import_posts_total;
    let widened = bb2snyk(&["sync", &group, &with_wider], env.clone(), &dir).await;
    assert_eq!(widened.status.code(), Some(0), "{}", stderr(&widened));
    assert_eq!(
        sandbox.stats().import_posts_total - posts,
        release_missing as u64,
        "{}",
        stdout(&widened)
    );
    let settled = bb2snyk(&["sync", &group, &with_wider], env.clone(), &dir).await;
    assert_eq!(
        sandbox.stats().import_posts_total - posts,
        release_missing as u64,
        "{}",
        stdout(&settled)
    );

    // A bad policy: exit 2 naming the file, the rule and the value, and not one request.
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[[rule]]\ntags = { a = \"b\" }\n[[rule]]\ncriticality = [\"urgent\"]\n",
    )
    .expect("bad policy written");
    let before = sandbox.stats().requests_total;
    for command in ["run", "sync"] {
        let refused = bb2snyk(
            &[command, &group, &format!("--policy={}", bad.display())],
            env.clone(),
            &dir,
        )
        .await;
        assert_eq!(
            refused.status.code(),
            Some(2),
            "{command}: {}",
            stderr(&refused)
        );
        let said = stderr(&refused);
        assert!(
            said.contains("bad.toml") && said.contains("rule 2") && said.contains("\"urgent\""),
            "{command}: {said}"
        );
    }
    assert_eq!(
        sandbox.stats().requests_total,
        before,
        "no request was made"
    );
}
