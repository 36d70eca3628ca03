//! `bb2snyk policy check FILE [--groupId=G | --repo=WS/SLUG …]`: the policy checked against Snyk's rules,
//! and for a tenant (read from Bitbucket alone) or a sample repository, which rules match each repository
//! and what it would get. Nothing is written anywhere.

use bb2snyk_bitbucket::{RepoFilter, Tenant};
use bb2snyk_policy::{Decision, Facts, Policy};
use bb2snyk_settings::Settings;

use crate::{Failure, cli::PolicyCheckArgs};

pub async fn check(settings: &Settings, args: &PolicyCheckArgs) -> Result<(), Failure> {
    let policy = Policy::read(&args.file).map_err(|e| Failure::Config(e.to_string()))?;
    println!(
        "{}: {} rule(s), valid for Snyk",
        args.file.display(),
        policy.rules()
    );
    if let Some(sample) = &args.repo {
        let Some((workspace, slug)) = sample.split_once('/') else {
            return Err(Failure::Config(format!(
                "--repo {sample:?}: give the sample as workspace/slug"
            )));
        };
        let decision = policy.decide(&Facts {
            workspace: workspace.to_owned(),
            slug: slug.to_owned(),
            project_key: args.project.clone(),
            language: args.language.clone(),
            private: args.private,
        });
        println!("{sample}: {}", describe(&decision));
        return Ok(());
    }
    if args.group_id.is_none() {
        return Ok(());
    }
    let tenant = Tenant::from_settings(settings, crate::http(settings)?, None)?;
    let discovery = tenant.discover().await?;
    let filter = RepoFilter::new(&settings.discovery);
    let (mut repositories, mut skipped, mut with_metadata) = (0usize, 0usize, 0usize);
    for (workspace, credential) in discovery.workspaces {
        let client = tenant.client(credential.as_deref())?;
        let mut pages = client.repositories(&workspace.slug, &filter);
        while let Some(page) = pages.next_page().await? {
            for repo in page.into_iter().filter(|r| !r.is_empty()) {
                let decision = policy.decide(&repo.facts(&workspace.slug));
                repositories += 1;
                skipped += usize::from(decision.skip.is_some());
                with_metadata += usize::from(!decision.tags.is_empty());
                println!("{}/{}: {}", workspace.slug, repo.slug, describe(&decision));
            }
        }
    }
    println!(
        "{repositories} repositories: {skipped} skipped by the policy, {with_metadata} with tags"
    );
    Ok(())
}

/// A decision in one line.
fn describe(d: &Decision) -> String {
    let rules: Vec<String> = d.rules.iter().map(usize::to_string).collect();
    let matched = if rules.is_empty() {
        "no rule".to_owned()
    } else {
        format!("rules {}", rules.join(","))
    };
    if let Some(rule) = d.skip {
        return format!("{matched}: skipped (rule {rule})");
    }
    let mut parts: Vec<String> = Vec::new();
    if !d.tags.is_empty() {
        let tags: Vec<String> = d.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        parts.push(format!("tags {}", tags.join(",")));
    }
    for (name, values) in [
        ("criticality", &d.criticality),
        ("environment", &d.environment),
        ("lifecycle", &d.lifecycle),
        ("exclusion globs", &d.exclusion_globs),
    ] {
        if let Some(values) = values {
            parts.push(format!("{name} {}", values.join(",")));
        }
    }
    if let Some(branches) = &d.branches {
        let globs: Vec<&str> = branches.iter().map(|g| g.as_str()).collect();
        parts.push(format!("branches {}", globs.join(",")));
    }
    if parts.is_empty() {
        format!("{matched}: imported, nothing more")
    } else {
        format!("{matched}: {}", parts.join("; "))
    }
}
