//! A sync compares a workspace, as its discovery saw it, with the org in Snyk, and acts on the
//! differences: new repositories are imported; renamed ones (the same Bitbucket uuid under a new name)
//! are imported under the new name and the old name's projects retired; a changed default branch is
//! imported and the old branch's projects retired; deleted repositories' projects are retired. Retired
//! means deactivated, or deleted with `--delete`. Only active projects are retired, so a second sync
//! finds nothing to do.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bb2snyk_broker::{Outcome, Publish};
use bb2snyk_ledger::{LastSync, SeenRepo};
use bb2snyk_messages::{
    Body, Change, ChangeKind, Event, ImportRepo, MAX_RETIRED, ProjectsRetired, RetireProjects,
    SyncPlanned, SyncWorkspace, Target,
};
use bb2snyk_snyk::OrgProject;

use super::{Importer, ledger_failure, snyk_failure};

/// What a sync does for one workspace.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub changes: Vec<Change>,
    /// Repositories to import (new, renamed, on a new branch).
    pub imports: Vec<Target>,
    /// Targets whose active projects to retire, and why.
    pub retire: Vec<(String, Vec<String>, String)>,
}

/// A target's projects in Snyk by branch: (project id, active).
type Branches<'a> = BTreeMap<&'a str, Vec<(&'a str, bool)>>;

/// The plan for `workspace` from what discovery saw, the uuids its repositories have had (full name,
/// uuid), and the org's Bitbucket Cloud projects and targets in Snyk.
pub fn plan(
    workspace: &str,
    seen: &[SeenRepo],
    uuids: &[(String, String)],
    projects: &[OrgProject],
    targets: &[String],
) -> Plan {
    let prefix = format!("{workspace}/");
    // Snyk's view: name -> branch -> (project id, active).
    let mut snyk: BTreeMap<&str, Branches<'_>> = BTreeMap::new();
    for p in projects
        .iter()
        .filter(|p| p.display_name.starts_with(&prefix))
    {
        snyk.entry(&p.display_name)
            .or_default()
            .entry(p.branch.as_deref().unwrap_or_default())
            .or_default()
            .push((&p.id, p.active));
    }
    let bare: BTreeSet<&str> = targets
        .iter()
        .map(String::as_str)
        .filter(|t| t.starts_with(&prefix) && !snyk.contains_key(t))
        .collect();
    let mut seen: Vec<&SeenRepo> = seen.iter().collect();
    seen.sort_by(|a, b| a.slug.cmp(&b.slug));
    let live: BTreeSet<String> = seen.iter().map(|r| format!("{prefix}{}", r.slug)).collect();
    let mut names_of: HashMap<&str, Vec<&str>> = HashMap::new();
    for (name, uuid) in uuids {
        names_of.entry(uuid).or_default().push(name);
    }
    let active = |branches: &Branches<'_>, except: Option<&str>| -> Vec<String> {
        branches
            .iter()
            .filter(|(branch, _)| Some(**branch) != except)
            .flat_map(|(_, ids)| {
                ids.iter()
                    .filter(|(_, on)| *on)
                    .map(|(id, _)| (*id).to_owned())
            })
            .collect()
    };
    let mut plan = Plan::default();
    let mut claimed: BTreeSet<&str> = BTreeSet::new();
    for repo in seen.iter().filter(|r| !r.skipped) {
        let name = format!("{prefix}{}", repo.slug);
        let branch = repo.branch.as_deref().unwrap_or_default();
        let (kind, was, retire) = match snyk.get(name.as_str()) {
            Some(branches) if branches.contains_key(branch) => continue,
            Some(branches) => {
                let old: Vec<&str> = branches.keys().copied().collect();
                (
                    ChangeKind::BranchChanged,
                    Some(old.join(", ")),
                    active(branches, Some(branch)),
                )
            }
            None if bare.contains(name.as_str()) => continue,
            None => {
                // A name Snyk has, that Bitbucket no longer shows, which had this repository's uuid.
                let renamed_from = repo.uuid.as_deref().and_then(|uuid| {
                    names_of.get(uuid)?.iter().copied().find(|old| {
                        *old != name
                            && !live.contains(*old)
                            && snyk.contains_key(old)
                            && !claimed.contains(old)
                    })
                });
                match renamed_from {
                    Some(old) => {
                        claimed.insert(old);
                        (
                            ChangeKind::Renamed,
                            Some(old.to_owned()),
                            active(&snyk[old], None),
                        )
                    }
                    None => (ChangeKind::New, None, Vec::new()),
                }
            }
        };
        plan.imports.push(Target {
            owner: workspace.to_owned(),
            name: repo.slug.clone(),
            branch: repo.branch.clone(),
        });
        if !retire.is_empty() {
            // The old name's projects for a rename; the other branches' of this name for a branch change.
            let (old, reason) = match (kind, &was) {
                (ChangeKind::Renamed, Some(old)) => {
                    (old.clone(), format!("renamed in Bitbucket to {name}"))
                }
                _ => (
                    name.clone(),
                    format!("the default branch of {name} is now {branch}"),
                ),
            };
            plan.retire.push((old, retire.clone(), reason));
        }
        plan.changes.push(Change {
            kind,
            target: name,
            was,
            uuid: repo.uuid.clone(),
            projects: u32::try_from(retire.len()).unwrap_or(u32::MAX),
        });
    }
    for (name, branches) in &snyk {
        if live.contains(*name) || claimed.contains(name) {
            continue;
        }
        let retire = active(branches, None);
        if retire.is_empty() {
            continue;
        }
        let uuid = uuids
            .iter()
            .find(|(old, _)| old == name)
            .map(|(_, uuid)| uuid.clone());
        plan.changes.push(Change {
            kind: ChangeKind::Deleted,
            target: (*name).to_owned(),
            was: None,
            uuid,
            projects: u32::try_from(retire.len()).unwrap_or(u32::MAX),
        });
        plan.retire.push((
            (*name).to_owned(),
            retire,
            format!("{name} is gone from Bitbucket"),
        ));
    }
    plan
}

impl Importer {
    /// Compares the workspace with the org and acts: imports and retirements as messages of their own,
    /// so each is retried and parked on its own; in a dry run, only the plan is told.
    pub(super) async fn sync(&self, s: SyncWorkspace) -> Outcome {
        let (seen, uuids) = match (
            self.ledger.seen(&s.run_id, &s.org_id).await,
            self.ledger.uuids(&s.org_id).await,
        ) {
            (Ok(seen), Ok(uuids)) => (seen, uuids),
            (Err(e), _) | (_, Err(e)) => return ledger_failure(e),
        };
        let projects = match self.snyk.projects(&s.org_id).await {
            Ok(projects) => projects,
            Err(e) => return snyk_failure(e),
        };
        let targets = match self.snyk.targets(&s.org_id).await {
            Ok(targets) => targets,
            Err(e) => return snyk_failure(e),
        };
        let plan = plan(&s.workspace, &seen, &uuids, &projects, &targets);
        let count = |kind| {
            u32::try_from(plan.changes.iter().filter(|c| c.kind == kind).count())
                .unwrap_or(u32::MAX)
        };
        let last = LastSync {
            run_id: s.run_id.clone(),
            workspace: s.workspace.clone(),
            at_ms: crate::schedule::now_ms(),
            dry_run: s.sync.dry_run,
            new: count(ChangeKind::New),
            renamed: count(ChangeKind::Renamed),
            branch_changed: count(ChangeKind::BranchChanged),
            deleted: count(ChangeKind::Deleted),
        };
        if let Err(e) = self.ledger.set_last_sync(&s.org_id, &last).await {
            return ledger_failure(e);
        }
        if !s.sync.dry_run {
            bb2snyk_telemetry::metrics::synced(last.at_ms);
        }
        tracing::info!(workspace = %s.workspace, org = %s.org_id, changes = plan.changes.len(), dry_run = s.sync.dry_run, "synced");
        let mut publishes: Vec<Publish> = vec![
            Event::SyncPlanned(SyncPlanned {
                run_id: s.run_id.clone(),
                subject: s.workspace.clone(),
                org_id: s.org_id.clone(),
                dry_run: s.sync.dry_run,
                changes: plan.changes,
            })
            .publish(),
        ];
        if s.sync.dry_run {
            return Outcome::Ack(publishes);
        }
        publishes.extend(plan.imports.into_iter().map(|target| {
            Body::ImportRepo(ImportRepo {
                run_id: s.run_id.clone(),
                org_id: s.org_id.clone(),
                integration_id: s.integration_id.clone(),
                target,
                failed_jobs: 0,
            })
            .publish()
        }));
        for (target, projects, reason) in plan.retire {
            for chunk in projects.chunks(MAX_RETIRED) {
                publishes.push(
                    Body::RetireProjects(RetireProjects {
                        run_id: s.run_id.clone(),
                        org_id: s.org_id.clone(),
                        target: target.clone(),
                        projects: chunk.to_vec(),
                        delete: s.sync.delete,
                        reason: reason.clone(),
                    })
                    .publish(),
                );
            }
        }
        Outcome::Ack(publishes)
    }

    /// Deactivates (or deletes) each project; done again, it changes nothing more.
    pub(super) async fn retire(&self, r: RetireProjects) -> Outcome {
        for id in &r.projects {
            let done = if r.delete {
                self.snyk.delete_project(&r.org_id, id).await
            } else {
                self.snyk.deactivate_project(&r.org_id, id).await
            };
            if let Err(e) = done {
                return snyk_failure(e);
            }
        }
        tracing::info!(target = %r.target, projects = r.projects.len(), deleted = r.delete, reason = %r.reason, "retired projects");
        Outcome::Ack(vec![
            Event::ProjectsRetired(ProjectsRetired {
                run_id: r.run_id,
                subject: r.target,
                org_id: r.org_id,
                projects: r.projects,
                deleted: r.delete,
                reason: r.reason,
            })
            .publish(),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(slug: &str, branch: &str, uuid: &str) -> SeenRepo {
        SeenRepo {
            slug: slug.into(),
            branch: Some(branch.into()),
            uuid: Some(uuid.into()),
            skipped: false,
        }
    }

    fn project(id: &str, name: &str, branch: &str, active: bool) -> OrgProject {
        OrgProject {
            id: id.into(),
            display_name: name.into(),
            branch: Some(branch.into()),
            active,
        }
    }

    #[test]
    fn each_kind_of_change_is_found_once_and_a_second_look_finds_none() {
        let projects = vec![
            project("p-same", "ws/same", "main", true),
            project("p-gone", "ws/gone", "main", true),
            project("p-old-name", "ws/old-name", "main", true),
            project("p-rebranched", "ws/rebranched", "main", true),
            project("p-retired", "ws/retired-before", "main", false),
            project("p-other-ws", "other/x", "main", true),
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
        let plan = plan("ws", &seen, &uuids, &projects, &["ws/bare".into()]);
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
                (ChangeKind::Deleted, "ws/gone", None),
            ]
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
            .map(|(t, ids, _)| (t.as_str(), ids.clone()))
            .collect();
        assert_eq!(
            retired,
            vec![
                ("ws/old-name", vec!["p-old-name".to_owned()]),
                ("ws/rebranched", vec!["p-rebranched".to_owned()]),
                ("ws/gone", vec!["p-gone".to_owned()]),
            ]
        );

        // After the sync: the imports made projects, the retired ones are inactive.
        let after = vec![
            project("p-same", "ws/same", "main", true),
            project("p-gone", "ws/gone", "main", false),
            project("p-old-name", "ws/old-name", "main", false),
            project("p-new-name", "ws/new-name", "main", true),
            project("p-rebranched", "ws/rebranched", "main", false),
            project("p-rebranched-2", "ws/rebranched", "develop", true),
            project("p-brand-new", "ws/brand-new", "main", true),
        ];
        assert_eq!(plan_of(&seen, &uuids, &after), Plan::default());
    }

    fn plan_of(seen: &[SeenRepo], uuids: &[(String, String)], projects: &[OrgProject]) -> Plan {
        plan("ws", seen, uuids, projects, &[])
    }
}
