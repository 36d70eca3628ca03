use super::*;

const FIVE_RULES: &str = r#"
# Every repository: its workspace, as a tag.
[[rule]]
tags = { team = "{workspace}", managed-by = "bb2snyk" }

[[rule]]
repos = ["*-api"]
tags = { tier = "api" }
criticality = ["high"]
environment = ["backend", "external"]
lifecycle = ["production"]

[[rule]]
projects = ["PRJ1"]
exclusion_globs = ["fixtures", "test/data"]

[[rule]]
repos = ["*-docs"]
skip = true

[[rule]]
workspaces = ["acme-*"]
branches = ["release/*"]
tags = { team = "acme-platform" }
"#;

fn facts(workspace: &str, slug: &str, project: &str) -> Facts {
    Facts {
        workspace: workspace.into(),
        slug: slug.into(),
        project_key: Some(project.into()),
        language: Some("Rust".into()),
        private: Some(true),
    }
}

fn policy(text: &str) -> Policy {
    Policy::parse("policy.toml", text).expect("a valid policy")
}

#[test]
fn every_matching_rule_applies_and_the_last_to_set_a_field_wins() {
    let policy = policy(FIVE_RULES);
    assert_eq!(policy.rules(), 5);

    let api = policy.decide(&facts("globex", "billing-api", "PRJ1"));
    assert_eq!(api.skip, None);
    assert_eq!(
        api.tags,
        BTreeMap::from([
            ("managed-by".to_owned(), "bb2snyk".to_owned()),
            ("team".to_owned(), "globex".to_owned()),
            ("tier".to_owned(), "api".to_owned()),
        ])
    );
    assert_eq!(api.criticality, Some(vec!["high".to_owned()]));
    assert_eq!(
        api.environment,
        Some(vec!["backend".to_owned(), "external".to_owned()])
    );
    assert_eq!(api.lifecycle, Some(vec!["production".to_owned()]));
    assert_eq!(
        api.exclusion_globs,
        Some(vec!["fixtures".to_owned(), "test/data".to_owned()])
    );
    assert_eq!(api.branches, None);

    assert_eq!(api.rules, vec![1, 2, 3]);
    let docs = policy.decide(&facts("acme-web", "handbook-docs", "PRJ2"));
    assert_eq!(docs.rules, vec![1, 4, 5]);
    assert_eq!(docs.skip, Some(4));
    assert_eq!(docs.tags["team"], "acme-platform", "the later rule's value");
    assert_eq!(docs.exclusion_globs, None);
    assert_eq!(
        docs.branches
            .map(|b| b.iter().map(|g| g.as_str().to_owned()).collect::<Vec<_>>()),
        Some(vec!["release/*".to_owned()])
    );
}

#[test]
fn match_fields_narrow_and_a_rule_without_them_matches_everything() {
    let policy = policy(
        r#"
[[rule]]
languages = ["rust"]
private = false
tags = { open = "yes" }
"#,
    );
    let public = Facts {
        private: Some(false),
        ..facts("w", "r", "P")
    };
    assert_eq!(
        policy.decide(&public).tags["open"],
        "yes",
        "languages match in any case"
    );
    assert!(
        policy.decide(&facts("w", "r", "P")).tags.is_empty(),
        "a private one"
    );
    assert_eq!(Policy::default().decide(&public), Decision::default());
    assert!(policy.decide(&facts("w", "r", "P")).rules.is_empty());
}

#[test]
fn placeholders_are_filled_and_cleaned_to_fit_snyk() {
    let policy = policy(
        r#"
[[rule]]
tags = { where = "{workspace}_{repo}", key = "{project_key}", lang = "{language}" }
"#,
    );
    let long = "r".repeat(80);
    let decision = policy.decide(&Facts {
        workspace: "acme corp".into(),
        slug: long,
        project_key: None,
        language: None,
        private: None,
    });
    assert_eq!(decision.tags["where"].len(), 50);
    assert!(decision.tags["where"].starts_with("acme-corp_rrr"));
    assert_eq!(decision.tags["key"], "none", "an empty value");
    assert!(
        decision
            .tags
            .values()
            .all(|v| v.chars().all(snyk::tag_char))
    );
}

#[test]
fn a_bad_policy_names_the_file_the_rule_and_the_value() {
    let cases = [
        (
            "[[rule]]\ncriticality = [\"urgent\"]\n",
            Some(1),
            "\"urgent\" is not one of Snyk's",
        ),
        (
            "[[rule]]\ntags = { a = \"b\" }\n[[rule]]\ncolour = \"red\"\n",
            Some(2),
            "unknown field `colour`",
        ),
        (
            &format!("[[rule]]\ntags = {{ {} = \"x\" }}\n", "k".repeat(31)),
            Some(1),
            "must be 1 to 30",
        ),
        (
            "[[rule]]\ntags = { t = \"a b\" }\n",
            Some(1),
            "tag t = \"a b\"",
        ),
        (
            &format!("[[rule]]\ntags = {{ t = \"{}\" }}\n", "v".repeat(51)),
            Some(1),
            "1 to 50",
        ),
        (
            "[[rule]]\ntags = { t = \"{owner}\" }\n",
            Some(1),
            "placeholder",
        ),
        ("[[rule]]\nrepos = [\"[\"]\n", Some(1), "not a valid glob"),
        (
            "[[rule]]\nexclusion_globs = [\"a,b\"]\n",
            Some(1),
            "without commas",
        ),
        ("rules = 1\n", None, "unknown field `rules`"),
        ("[[rule]\n", None, "not TOML"),
    ];
    for (text, rule, says) in cases {
        let e = Policy::parse("team.toml", text).expect_err(text);
        assert_eq!(e.rule, rule, "{text}: {e}");
        assert!(e.to_string().starts_with("policy team.toml"), "{e}");
        assert!(e.to_string().contains(says), "{text}: {e}");
    }
}
