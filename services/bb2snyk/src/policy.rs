//! `bb2snyk policy check FILE [--groupId=G]`: the policy checked against Snyk's rules, and with a tenant,
//! what each repository would get, read from Bitbucket alone (nothing is written anywhere).

use bb2snyk_bitbucket::{RepoFilter, Tenant};
use bb2snyk_policy::{Decision, Policy};
use bb2snyk_settings::Settings;

use crate::{Failure, cli::PolicyCheckArgs};

pub async fn check(settings: &Settings, args: &PolicyCheckArgs) -> Result<(), Failure> {
    let policy = Policy::read(&args.file).map_err(|e| Failure::Config(e.to_string()))?;
    println!(
        "{}: {} rule(s), valid for Snyk",
        args.file.display(),
        policy.rules()
    );
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
    if let Some(rule) = d.skip {
        return format!("skipped (rule {rule})");
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
        "imported, nothing more".to_owned()
    } else {
        parts.join("; ")
    }
}
