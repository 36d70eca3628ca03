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
repos = ["*-web-*"]
skip = true
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_skips_and_excludes_by_rule_and_a_bad_one_stops_before_any_request() {
    let sandbox = Sandbox::start(Knobs {
        workspaces: 3,
        repos_per_workspace: 20,
        empty_rate: 0.0,
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
        stdout(&checked).contains("4 rule(s), valid for Snyk"),
        "{}",
        stdout(&checked)
    );
    let writes = sandbox.stats().import_posts_total + sandbox.stats().orgs_created;
    assert_eq!(writes, 0, "policy check writes nothing");

    let run = bb2snyk(&["run", &group, &with_policy], env.clone(), &dir).await;
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let truth = sandbox.truth();
    let stats = sandbox.stats();
    let (mut web, mut prj1) = (0, 0);
    for ws in truth.as_array().expect("workspaces") {
        let workspace = ws["slug"].as_str().expect("slug");
        for repo in ws["repos"].as_array().expect("repos") {
            let slug = repo["slug"].as_str().expect("slug");
            let name = format!("{workspace}/{slug}");
            let skipped = slug.contains("-web-");
            web += usize::from(skipped);
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
        web > 0 && prj1 > 0,
        "the tenant has both kinds: {web} {prj1}"
    );
    assert!(
        stdout(&run).contains(&format!("; {web} skipped")),
        "the skipped are counted: {}",
        stdout(&run)
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
