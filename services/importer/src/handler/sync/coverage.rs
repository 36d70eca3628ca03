//! A report's view of one workspace: each repository the listing showed, and how Snyk covers it. It
//! reads what a sync compares (the listing, the org's projects and targets) and takes from the sync's
//! judged plan what needs Bitbucket's word: a rename, and which names are confirmed gone (orphans).

use std::collections::{BTreeSet, HashMap};

use bb2snyk_broker::Publish;
use bb2snyk_ledger::SeenRepo;
use bb2snyk_messages::{
    Change, ChangeKind, Coverage, CoverageListed, Event, MAX_COVERAGE, Orphan, RepoCoverage,
    SyncWorkspace,
};
use bb2snyk_snyk::OrgProject;

use super::{part, plan::count};

/// What Snyk holds, by target name (`workspace/slug`).
struct Held<'a> {
    projects: HashMap<&'a str, Vec<&'a OrgProject>>,
    targets: BTreeSet<&'a str>,
}

/// The workspace's coverage as `coverage.listed.v1` events, in parts of at most [`MAX_COVERAGE`].
pub fn listed(
    s: &SyncWorkspace,
    seen: &[SeenRepo],
    projects: &[OrgProject],
    targets: &[String],
    changes: &[Change],
) -> Vec<Publish> {
    let repositories = rows(
        &s.workspace,
        s.org_id.is_some(),
        seen,
        projects,
        targets,
        changes,
    );
    let prefix = format!("{}/", s.workspace);
    let orphaned: Vec<Orphan> = changes
        .iter()
        .filter(|c| c.kind == ChangeKind::Deleted)
        .map(|c| Orphan {
            slug: c
                .target
                .strip_prefix(&prefix)
                .unwrap_or(&c.target)
                .to_owned(),
            projects: c.projects,
        })
        .collect();
    let parts = repositories
        .len()
        .max(orphaned.len())
        .div_ceil(MAX_COVERAGE)
        .max(1);
    (0..parts)
        .map(|n| {
            Event::CoverageListed(CoverageListed {
                run_id: s.run_id.clone(),
                subject: s.workspace.to_string(),
                org_id: s.org_id.clone(),
                integration_id: s.integration_id.clone(),
                repositories: part(&repositories, n, MAX_COVERAGE),
                orphaned: part(&orphaned, n, MAX_COVERAGE),
                narrowed: s.narrowed,
                part: count(n + 1),
                parts: count(parts),
            })
            .publish()
        })
        .collect()
}

/// Each repository of the listing, in slug order, with its status; `served`: an org serves the workspace.
pub fn rows(
    workspace: &str,
    served: bool,
    seen: &[SeenRepo],
    projects: &[OrgProject],
    targets: &[String],
    changes: &[Change],
) -> Vec<RepoCoverage> {
    let mut held = Held {
        projects: HashMap::new(),
        targets: targets.iter().map(String::as_str).collect(),
    };
    for p in projects {
        held.projects.entry(&p.display_name).or_default().push(p);
    }
    let renamed: HashMap<&str, &str> = changes
        .iter()
        .filter(|c| c.kind == ChangeKind::Renamed)
        .filter_map(|c| Some((c.target.as_str(), c.was.as_deref()?)))
        .collect();
    let mut rows: Vec<RepoCoverage> = seen
        .iter()
        .map(|repo| {
            let name = format!("{workspace}/{}", repo.slug);
            row(
                repo,
                &name,
                served,
                &held,
                renamed.get(name.as_str()).copied(),
            )
        })
        .collect();
    rows.sort_by(|a, b| a.slug.cmp(&b.slug));
    rows.dedup_by(|a, b| a.slug == b.slug);
    rows
}

fn row(
    repo: &SeenRepo,
    name: &str,
    served: bool,
    held: &Held<'_>,
    renamed_from: Option<&str>,
) -> RepoCoverage {
    let mut row = RepoCoverage {
        slug: repo.slug.clone(),
        status: Coverage::Missing,
        reason: None,
        branch: repo.branch.clone(),
        projects: 0,
        last_imported: None,
    };
    let Some(branch) = repo.branch.as_deref() else {
        row.status = Coverage::Empty;
        row.reason = Some(
            repo.reason
                .clone()
                .unwrap_or_else(|| "no main branch".into()),
        );
        return row;
    };
    if repo.skipped {
        row.status = Coverage::Skipped;
        row.reason = Some(
            repo.reason
                .clone()
                .unwrap_or_else(|| "left out by the filters or the import policy".into()),
        );
        return row;
    }
    let all = held
        .projects
        .get(name)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let active = |on_main: bool| -> Vec<&OrgProject> {
        all.iter()
            .copied()
            .filter(|p| p.active)
            .filter(|p| p.branch.as_deref().is_none_or(|b| b == branch) == on_main)
            .collect()
    };
    let (main, other) = (active(true), active(false));
    let old = renamed_from
        .and_then(|old| held.projects.get(old))
        .map(|ps| ps.iter().copied().filter(|p| p.active).collect::<Vec<_>>())
        .unwrap_or_default();
    let (status, reason, counted) = if !main.is_empty() {
        (Coverage::Imported, None, main)
    } else if !old.is_empty() {
        let old_name = renamed_from.unwrap_or_default();
        let reason = format!("in Snyk under its old name {old_name}; a sync imports it anew");
        (Coverage::Stale, Some(reason), old)
    } else if !other.is_empty() {
        let mut branches: Vec<&str> = other.iter().filter_map(|p| p.branch.as_deref()).collect();
        branches.sort_unstable();
        branches.dedup();
        let reason = format!(
            "in Snyk on {} only; its main branch is {branch}; a sync imports it there",
            branches.join(", ")
        );
        (Coverage::Stale, Some(reason), other)
    } else {
        let reason = if !served {
            "no Snyk org serves this workspace: `bb2snyk run` creates one and imports it"
        } else if !all.is_empty() {
            "its projects in Snyk are deactivated"
        } else if held.targets.contains(name) {
            "Snyk holds the target but no project: it found no manifest it tests"
        } else {
            "not in Snyk"
        };
        (Coverage::Missing, Some(reason.to_owned()), Vec::new())
    };
    row.status = status;
    row.reason = reason;
    row.projects = count(counted.len());
    row.last_imported = counted.iter().filter_map(|p| p.created.clone()).max();
    row
}

#[cfg(test)]
mod tests;
