//! `bb2snyk migrate:legacy`: projects of the legacy Bitbucket Cloud integration moved to the Bitbucket
//! Cloud App. No API moves a target between integrations, so each repository is imported again under the
//! App, in its workspace's org (found or created as `run` does), on the branch its legacy projects test;
//! then each legacy project's tags, attributes and ignores go onto the App project of the same manifest,
//! the legacy project is marked (the tag `bb2snyk-migrated` names its App project) and deactivated, or
//! deleted with `--delete`. Snyk's record says what is done: a second run finds nothing to do, and an
//! interrupted one carries on where it stopped.

mod copy;
mod find;
mod plan;

use std::collections::HashMap;

use bb2snyk_bitbucket::{RepoFilter, Tenant};
use bb2snyk_messages::{
    Body, DisplayName, GroupId, ImportRepo, IntegrationId, OrgId, Target, WorkspaceDiscovered,
    WorkspaceSlug,
};
use bb2snyk_settings::Settings;
use bb2snyk_snyk::{Client as Snyk, OrgProject};
use clap::Args;
use serde::Serialize;

use crate::{
    Failure,
    embedded::{Embedded, Logs, Stages},
    files,
};
use find::{LEGACY, Move, Workspaces};

/// The tag a migrated legacy project carries: its App project's id.
pub const MIGRATED_TAG: &str = "bb2snyk-migrated";

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The group whose legacy Bitbucket Cloud projects move to the App (or one legacy org's).
    #[command(flatten)]
    pub scope: crate::cli::Scope,
    #[command(flatten)]
    pub filters: crate::cli::Filters,
    /// Print the plan; change nothing.
    #[arg(long = "dry-run", alias = "dryRun")]
    pub dry_run: bool,
    /// Delete the migrated legacy projects instead of deactivating them (those an earlier run
    /// deactivated too).
    #[arg(long)]
    pub delete: bool,
}

/// What happened to one legacy project.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Entry {
    legacy_org: String,
    legacy_project: String,
    target: String,
    branch: Option<String>,
    file: String,
    /// `moved`, `left`, `failed`, or `planned` in a dry run.
    outcome: &'static str,
    reason: Option<String>,
    app_org: Option<String>,
    app_project: Option<String>,
    pub(crate) ignores_copied: u32,
    metadata_set: bool,
}

pub async fn migrate(settings: &Settings, args: &MigrateArgs) -> Result<(), Failure> {
    let dir = files::log_dir(&settings.import.log_path)?;
    let http = crate::http(settings)?;
    let snyk = Snyk::from_settings(settings, http.clone(), None)?;
    let mut moves = find::moves(
        &snyk,
        &args.scope.group_id,
        args.scope.org_id.as_deref(),
        args.delete,
    )
    .await?;
    let workspaces =
        Workspaces::discover(Tenant::from_settings(settings, http.clone(), None)?).await?;
    let filters = args.filters.over(&settings.discovery);
    find::check(&mut moves, &workspaces, &RepoFilter::new(&filters)).await;
    let run_id = bb2snyk_messages::new_run_id();
    println!(
        "Migration {run_id} of group {}'s legacy Bitbucket Cloud projects to the App{}",
        args.scope.group_id,
        if args.dry_run {
            " (dry run: nothing is changed)"
        } else {
            ""
        }
    );
    let entries = if args.dry_run {
        plan::plan(&snyk, &args.scope.group_id, &moves, &workspaces).await?
    } else {
        let orgs = app_orgs(settings, http, &args.scope.group_id, &moves, &workspaces).await?;
        let parked = import(settings, &dir, &moves, &orgs).await?;
        carry(&snyk, &moves, &orgs, &parked, args.delete).await?
    };
    let path = dir.join(format!("migrate-legacy-{run_id}.json"));
    let count = |outcome: &str| entries.iter().filter(|e| e.outcome == outcome).count();
    files::write_json(
        &path,
        &serde_json::json!({
            "run_id": run_id,
            "group_id": args.scope.group_id,
            "dry_run": args.dry_run,
            "delete": args.delete,
            "finished": files::now(),
            "counts": {
                "moved": count("moved"), "left": count("left"), "failed": count("failed"),
                "planned": count("planned"),
                "ignores_copied": entries.iter().map(|e| e.ignores_copied).sum::<u32>(),
            },
            "projects": entries,
        }),
    )?;
    println!(
        "{} moved, {} left as they are, {} failed{}; the report is {}",
        count("moved"),
        count("left"),
        count("failed"),
        if args.dry_run {
            format!(", {} planned", count("planned"))
        } else {
            String::new()
        },
        path.display()
    );
    if count("failed") > 0 {
        return Err(Failure::Failed(format!(
            "{} legacy project(s) could not be moved; the reasons are in {}; running the same command again carries on",
            count("failed"),
            path.display()
        )));
    }
    Ok(())
}

pub(crate) fn entry(
    m: &Move,
    legacy: &find::Legacy,
    outcome: &'static str,
    reason: Option<String>,
) -> Entry {
    Entry {
        legacy_org: legacy.org_id.clone(),
        legacy_project: legacy.project.id.clone(),
        target: m.target(),
        branch: m.branch.clone(),
        file: legacy.project.target_file.clone(),
        outcome,
        reason,
        app_org: None,
        app_project: None,
        ignores_copied: 0,
        metadata_set: false,
    }
}

/// A workspace's App org and integration, or why there is none.
type AppOrg = Result<(OrgId, IntegrationId), String>;

/// Each workspace's App org and integration, found or created as `run` does.
async fn app_orgs(
    settings: &Settings,
    http: reqwest::Client,
    group_id: &GroupId,
    moves: &[Move],
    workspaces: &Workspaces,
) -> Result<HashMap<String, AppOrg>, Failure> {
    let creator = bb2snyk_org_creator::org_creator(settings, http, bb2snyk_store::Store::memory())?;
    let mut orgs = HashMap::new();
    for m in moves.iter().filter(|m| m.left.is_none()) {
        if orgs.contains_key(&m.workspace) {
            continue;
        }
        let Some((_, name, credential)) = workspaces.found.get(&m.workspace) else {
            continue;
        };
        let workspace = match WorkspaceSlug::new(m.workspace.as_str()) {
            Ok(workspace) => workspace,
            Err(e) => {
                orgs.insert(m.workspace.clone(), Err(e));
                continue;
            }
        };
        let w = WorkspaceDiscovered {
            run_id: bb2snyk_messages::new_run_id(),
            group_id: group_id.clone(),
            source_org_id: None,
            workspace,
            name: DisplayName::new(name.as_str()).ok(),
            filters: None,
            credential: credential.clone().and_then(|c| c.parse().ok()),
            sync: None,
        };
        let found = creator.org_for(&w).await.and_then(|mapping| {
            Ok((
                OrgId::new(mapping.org_id)?,
                IntegrationId::new(mapping.integration_id)?,
            ))
        });
        orgs.insert(m.workspace.clone(), found);
    }
    Ok(orgs)
}

/// Imports each repository under the App on its legacy branch, through the importer's own handler (it
/// skips what Snyk already holds); the targets whose import was parked, with why.
async fn import(
    settings: &Settings,
    dir: &std::path::Path,
    moves: &[Move],
    orgs: &HashMap<String, AppOrg>,
) -> Result<HashMap<String, String>, Failure> {
    let pipeline = Embedded::start(settings, Stages::ImporterOnly, std::iter::empty()).await?;
    let mut queued = 0;
    for m in moves.iter().filter(|m| m.left.is_none()) {
        let Some(Ok((org_id, integration_id))) = orgs.get(&m.workspace) else {
            continue;
        };
        // Snyk's names are input: one no message can carry is not imported, and its projects stay.
        let Ok(target) = Target::new(&m.workspace, &m.slug, m.branch.as_deref()) else {
            continue;
        };
        pipeline.publish(&Body::ImportRepo(ImportRepo {
            run_id: pipeline.run_id.clone(),
            org_id: org_id.clone(),
            integration_id: integration_id.clone(),
            target,
            failed_jobs: 0,
            policy: None,
        }));
        queued += 1;
    }
    let mut logs = Logs::new(dir);
    let summary = pipeline.finish(&mut logs, "import", Some(queued)).await?;
    if summary.interrupted {
        return Err(Failure::Failed(
            "interrupted; run the same command again to carry on".into(),
        ));
    }
    Ok(summary.parked.into_iter().collect())
}

/// Carries each legacy project over to its App counterpart, then marks and retires it.
async fn carry(
    snyk: &Snyk,
    moves: &[Move],
    orgs: &HashMap<String, AppOrg>,
    parked: &HashMap<String, String>,
    delete: bool,
) -> Result<Vec<Entry>, Failure> {
    let mut app_projects: HashMap<OrgId, Vec<OrgProject>> = HashMap::new();
    let mut entries = Vec::new();
    for m in moves {
        let org = match (&m.left, orgs.get(&m.workspace)) {
            (Some(why), _) => Err(("left", why.clone())),
            (None, Some(Ok((org_id, _)))) => Ok(org_id.clone()),
            (None, Some(Err(why))) => Err(("failed", why.clone())),
            (None, None) => Err((
                "failed",
                format!("no org found for workspace {}", m.workspace),
            )),
        };
        let org_id = match org {
            Ok(org_id) => org_id,
            Err((outcome, why)) => {
                entries.extend(
                    m.projects
                        .iter()
                        .map(|l| entry(m, l, outcome, Some(why.clone()))),
                );
                continue;
            }
        };
        if let Some(why) = parked.get(&m.target()) {
            let why = format!("the App's import failed: {why}");
            entries.extend(
                m.projects
                    .iter()
                    .map(|l| entry(m, l, "failed", Some(why.clone()))),
            );
            continue;
        }
        if !app_projects.contains_key(&org_id) {
            app_projects.insert(org_id.clone(), snyk.projects(&org_id).await?);
        }
        let found = &app_projects[&org_id];
        for legacy in &m.projects {
            let counterpart = found.iter().find(|p| {
                p.origin != LEGACY
                    && p.active
                    && p.display_name == legacy.project.display_name
                    && p.branch == legacy.project.branch
                    && p.target_file == legacy.project.target_file
            });
            let Some(app) = counterpart else {
                let why = if org_id == legacy.org_id {
                    // The importer takes a target Snyk lists in the org for imported, whatever its origin.
                    format!(
                        "the workspace's App org is this legacy org, where Snyk already lists {}: bb2snyk does \
                         not import it there again; connect the App to a new org for workspace {} (or rename this \
                         one), then migrate again",
                        m.target(),
                        m.workspace
                    )
                } else {
                    format!(
                        "the App's import made no project for {} on {}: left as it is",
                        legacy.project.target_file,
                        m.branch.as_deref().unwrap_or("the default branch")
                    )
                };
                entries.push(entry(m, legacy, "left", Some(why)));
                continue;
            };
            let mut e = entry(m, legacy, "moved", None);
            e.app_org = Some(org_id.to_string());
            e.app_project = Some(app.id.clone());
            match copy::move_project(snyk, legacy, &org_id, app, delete).await {
                Ok(copied) => {
                    e.ignores_copied = copied.ignores_copied;
                    e.metadata_set = copied.metadata_set;
                    if copied.ignores_expired > 0 {
                        e.reason = Some(format!(
                            "{} expired ignore(s) not copied",
                            copied.ignores_expired
                        ));
                    }
                    println!(
                        "  moved {} {} -> {}: {} ignore(s) copied{}",
                        m.target(),
                        legacy.project.target_file,
                        app.id,
                        copied.ignores_copied,
                        if copied.metadata_set {
                            ", tags and attributes set"
                        } else {
                            ""
                        }
                    );
                }
                Err(e_) => {
                    e.outcome = "failed";
                    e.reason = Some(e_.to_string());
                }
            }
            entries.push(e);
        }
    }
    Ok(entries)
}
