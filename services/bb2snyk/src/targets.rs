//! Steps 3 and 4 of the seed workflow: `import:data` and `import`.

use std::{collections::HashSet, path::PathBuf};

use bb2snyk_bitbucket::{RepoFilter, Route, Tenant};
use bb2snyk_messages::{Body, ImportRepo, ProjectPolicy};
use bb2snyk_policy::{Facts, Policy};
use bb2snyk_settings::Settings;
use bb2snyk_snyk::Client as Snyk;

use crate::{
    Failure,
    cli::{ImportArgs, ImportDataArgs},
    embedded::{Embedded, Logs, Stages},
    files::{self, CreatedOrg, CreatedOrgsFile, FileTarget, ImportTarget, TargetsFile},
};

/// Every repository of each org's workspace, fetched by slug, all pages; empty repositories (and what the
/// filters leave out) are skipped with their reason.
pub async fn data(settings: &Settings, args: &ImportDataArgs) -> Result<(), Failure> {
    let dir = files::log_dir(&settings.import.log_path)?;
    let policy = Policy::from_settings(settings)?;
    let file: CreatedOrgsFile = files::read_json(&args.orgs_data, "created-orgs file")?;
    if file.org_data.is_empty() {
        return Err(Failure::Config(format!(
            "{} lists no orgs: run orgs:create first",
            args.orgs_data.display()
        )));
    }
    let http = crate::http(settings)?;
    let bitbucket = Tenant::from_settings(settings, http.clone(), None)?
        .route()
        .await?;
    let snyk = Snyk::from_settings(settings, http, None)?;
    let filter = RepoFilter::new(&settings.discovery);
    let mut seen = HashSet::new();
    let (mut targets, mut skipped, mut failed) = (Vec::new(), 0usize, 0usize);
    for org in file
        .org_data
        .iter()
        .filter(|o| seen.insert(o.org_id.clone()))
    {
        match org_targets(&bitbucket, &snyk, settings, (&filter, &policy), org).await {
            Ok((found, skips)) => {
                targets.extend(found);
                skipped += skips;
            }
            Err(e) => {
                failed += 1;
                eprintln!("Failed to generate import data for org {:?}: {e}", org.name);
            }
        }
    }
    if targets.is_empty() && failed > 0 {
        return Err(Failure::Failed(
            "No targets could be generated; the errors above say why".into(),
        ));
    }
    let path = dir.join("bitbucket-cloud-app-import-targets.json");
    let found = targets.len();
    files::write_json(&path, &TargetsFile { targets })?;
    println!(
        "Found {found} target(s) to import ({skipped} skipped: empty or filtered). Written the data to file: {}",
        path.display()
    );
    if failed > 0 {
        return Err(Failure::Failed(format!(
            "{failed} org(s) failed; fix what the errors above say and run import:data again"
        )));
    }
    Ok(())
}

async fn org_targets(
    bitbucket: &Route,
    snyk: &Snyk,
    settings: &Settings,
    (filter, policy): (&RepoFilter, &Policy),
    org: &CreatedOrg,
) -> Result<(Vec<ImportTarget>, usize), Failure> {
    let kind = settings.snyk.integration_type.as_deref();
    let integration_id = match bb2snyk_snyk::app_integration_in(&org.integrations, kind) {
        Some(id) => id,
        None => snyk
            .app_integration(&org.org_id, kind)
            .await?
            .ok_or_else(|| {
                Failure::Failed(format!(
                    "org {} has no Bitbucket Cloud App integration: connect the Snyk Bitbucket Cloud App for this workspace in that org",
                    org.org_id
                ))
            })?,
    };
    // Files from snyk-api-import carry only the name; it is the slug when the workspace was named so.
    let workspace = org.workspace.as_deref().unwrap_or(&org.name);
    let mut pages = bitbucket.client(workspace)?.repositories(workspace, filter);
    let (mut targets, mut skipped) = (Vec::new(), 0);
    while let Some(page) = pages.next_page().await? {
        for repo in page {
            if let Err(why) = filter.check(&repo) {
                tracing::info!(repository = %repo.slug, reason = %why, "skipped");
                skipped += 1;
                continue;
            }
            let decision = policy.decide(&repo.facts(workspace));
            if let Some(rule) = decision.skip {
                tracing::info!(repository = %repo.slug, rule, "skipped by policy");
                skipped += 1;
                continue;
            }
            targets.push(ImportTarget {
                target: FileTarget {
                    fork: Some(repo.parent.is_some()),
                    full_name: Some(format!("{workspace}/{}", repo.slug)),
                    owner: workspace.to_owned(),
                    branch: repo.mainbranch.map(|b| b.name),
                    name: repo.slug,
                },
                integration_id: Some(integration_id.clone()),
                org_id: org.org_id.clone(),
                files: Vec::new(),
                exclusion_globs: decision.exclusion_globs.map(|g| g.join(", ")),
            });
        }
    }
    Ok((targets, skipped))
}

/// Imports the targets with the importer's own handler on the in-memory broker: each target retried on
/// its own, parked with its reason when retries run out. `imported-targets.log` is written when a job
/// completes; targets already in it are skipped.
pub async fn import(settings: &Settings, args: &ImportArgs) -> Result<(), Failure> {
    let dir = files::log_dir(&settings.import.log_path)?;
    let policy = Policy::from_settings(settings)?;
    let path = import_path(args)?;
    let file: TargetsFile = files::read_json(&path, "targets file")?;
    println!(
        "Loaded {} target(s) to import | {}",
        file.targets.len(),
        files::now()
    );
    let (done, unreadable) = files::imported_targets(&dir)?;
    if unreadable > 0 {
        eprintln!(
            "{unreadable} line(s) of imported-targets.log could not be read and were ignored"
        );
    }
    let pipeline = Embedded::start(settings, Stages::ImporterOnly, []).await?;
    let (mut queued, mut skipped, mut by_policy) = (0u64, 0u64, 0u64);
    for entry in file.targets {
        let Some(integration_id) = entry.integration_id.clone() else {
            return Err(Failure::Config(format!(
                "target {}/{} in {} has no integrationId; run import:data again",
                entry.target.owner,
                entry.target.name,
                path.display()
            )));
        };
        let ids = (
            bb2snyk_messages::OrgId::new(entry.org_id.clone()),
            bb2snyk_messages::IntegrationId::new(integration_id.clone()),
        );
        let (org_id, integration_id) = match ids {
            (Ok(org), Ok(integration)) => (org, integration),
            (Err(e), _) | (_, Err(e)) => {
                return Err(Failure::Config(format!(
                    "target {}/{} in {}: {e}; run import:data again",
                    entry.target.owner,
                    entry.target.name,
                    path.display()
                )));
            }
        };
        let target = entry.target.to_target().map_err(|e| {
            Failure::Config(format!(
                "target {}/{} in {}: {e}",
                entry.target.owner,
                entry.target.name,
                path.display()
            ))
        })?;
        if done.contains(&files::target_id(&org_id, &integration_id, &target)) {
            skipped += 1;
            continue;
        }
        // A targets file names only the workspace and the repository: rules that match on those apply.
        let decision = policy.decide(&Facts {
            workspace: target.owner.to_string(),
            slug: target.name.to_string(),
            ..Facts::default()
        });
        if decision.skip.is_some() {
            by_policy += 1;
            continue;
        }
        let wanted = ProjectPolicy {
            tags: decision.tags,
            criticality: decision.criticality,
            environment: decision.environment,
            lifecycle: decision.lifecycle,
            // The file's exclusion globs, as snyk-api-import sends them; else the policy's.
            exclusion_globs: entry
                .exclusion_globs
                .or_else(|| decision.exclusion_globs.map(|g| g.join(", "))),
        };
        pipeline.publish(&Body::ImportRepo(ImportRepo {
            run_id: pipeline.run_id.clone(),
            org_id,
            integration_id,
            target,
            failed_jobs: 0,
            policy: (wanted != ProjectPolicy::default()).then_some(wanted),
        }));
        queued += 1;
    }
    println!(
        "Skipped previously imported {skipped}/{} target(s)",
        skipped + queued
    );
    if by_policy > 0 {
        println!("Skipped {by_policy} target(s) by the import policy");
    }
    let mut logs = Logs::new(&dir);
    let summary = pipeline.finish(&mut logs, "import", Some(queued)).await?;
    summary.report()?;
    println!("Check the logs in {}", dir.display());
    Ok(())
}

/// `--file`, else `SNYK_IMPORT_PATH` (a `.json` file, or a directory holding `import-projects.json`).
fn import_path(args: &ImportArgs) -> Result<PathBuf, Failure> {
    if let Some(file) = &args.file {
        return Ok(file.clone());
    }
    match std::env::var("SNYK_IMPORT_PATH") {
        Ok(p) if p.ends_with(".json") => Ok(PathBuf::from(p)),
        Ok(p) if !p.is_empty() => Ok(PathBuf::from(p).join("import-projects.json")),
        _ => Err(Failure::Config(
            "no targets file: pass --file=bitbucket-cloud-app-import-targets.json or set SNYK_IMPORT_PATH"
                .into(),
        )),
    }
}
