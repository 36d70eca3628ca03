//! What a sync would do for one workspace, from what the listing showed and what Snyk holds: imports for
//! what is new, renamed or re-branched, retirements for what the listing itself proves changed (a branch),
//! and candidates for everything else that would retire projects. A candidate is only a question for
//! Bitbucket ([`super::evidence`]); nothing absent from a listing is retired on that alone.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bb2snyk_ledger::SeenRepo;
use bb2snyk_messages::{Change, ChangeKind, Target};
use bb2snyk_snyk::OrgProject;

/// What a sync does for one workspace, before Bitbucket is asked about the candidates.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub changes: Vec<Change>,
    /// Repositories to import (new, renamed, on a new branch).
    pub imports: Vec<Target>,
    /// Retirements the listing proves: projects on a branch that is no longer the default.
    pub retire: Vec<Retire>,
    /// Names Snyk has that the listing does not show (deleted, or renamed away): each is asked of
    /// Bitbucket before its projects are retired.
    pub candidates: Vec<Candidate>,
    /// The org's active Bitbucket projects: what the brake's share is of.
    pub active: usize,
}

/// Projects of one target to retire, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retire {
    /// `workspace/slug`, as Snyk has it.
    pub target: String,
    pub projects: Vec<String>,
    pub reason: String,
}

/// A name Snyk has and the listing does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// `workspace/slug`, as Snyk has it.
    pub name: String,
    /// The uuid a listing once saw under this name.
    pub uuid: Option<String>,
    /// The listing shows the same uuid under this name now.
    pub renamed_to: Option<String>,
    /// Its active projects that Snyk created before the sync began.
    pub projects: Vec<String>,
}

/// A target's projects in Snyk by branch (`""` for a project with no `target_reference`, which is on
/// the default branch, whichever it is): (project id, retirable).
type Branches<'a> = BTreeMap<&'a str, Vec<(&'a str, bool)>>;

/// What a sync compares.
#[derive(Debug)]
pub struct Views<'a> {
    pub workspace: &'a str,
    /// What the listing showed, filtered-out and empty repositories included.
    pub seen: &'a [SeenRepo],
    /// Every full name the org's repositories have had, with its uuid.
    pub uuids: &'a [(String, String)],
    pub projects: &'a [OrgProject],
    pub targets: &'a [String],
    /// Bitbucket filtered the listing: nothing it left out is a candidate.
    pub narrowed: bool,
    /// When the sync began (RFC 3339 in seconds): projects created since are never retired by it.
    pub started: Option<String>,
}

pub fn plan(v: &Views<'_>) -> Plan {
    let prefix = format!("{}/", v.workspace);
    // Projects Snyk created once the sync had begun came from an import running beside it.
    let retirable = |p: &OrgProject| {
        p.active
            && match (&v.started, &p.created) {
                (Some(started), Some(created)) => {
                    created.get(..19).unwrap_or(created) < started.get(..19).unwrap_or(started)
                }
                _ => true,
            }
    };
    let mut snyk: BTreeMap<&str, Branches<'_>> = BTreeMap::new();
    let mut active = 0;
    for p in v
        .projects
        .iter()
        .filter(|p| p.display_name.starts_with(&prefix))
    {
        active += usize::from(p.active);
        snyk.entry(&p.display_name)
            .or_default()
            .entry(p.branch.as_deref().unwrap_or_default())
            .or_default()
            .push((&p.id, retirable(p)));
    }
    let bare: BTreeSet<&str> = v
        .targets
        .iter()
        .map(String::as_str)
        .filter(|t| t.starts_with(&prefix) && !snyk.contains_key(t))
        .collect();
    let mut seen: Vec<&SeenRepo> = v.seen.iter().collect();
    seen.sort_by(|a, b| a.slug.cmp(&b.slug));
    let live: BTreeSet<String> = seen.iter().map(|r| format!("{prefix}{}", r.slug)).collect();
    let mut names_of: HashMap<&str, Vec<&str>> = HashMap::new();
    for (name, uuid) in v.uuids {
        names_of.entry(uuid).or_default().push(name);
    }
    let retirable_in = |branches: &Branches<'_>, except: &[&str]| -> Vec<String> {
        branches
            .iter()
            .filter(|(branch, _)| !except.contains(branch))
            .flat_map(|(_, ids)| {
                ids.iter()
                    .filter(|(_, r)| *r)
                    .map(|(id, _)| (*id).to_owned())
            })
            .collect()
    };
    let mut plan = Plan {
        active,
        ..Plan::default()
    };
    let mut claimed: BTreeSet<&str> = BTreeSet::new();
    for repo in seen.iter().filter(|r| !r.skipped) {
        let name = format!("{prefix}{}", repo.slug);
        let branch = repo.branch.as_deref().unwrap_or_default();
        let (kind, was) = match snyk.get(name.as_str()) {
            Some(b) if b.contains_key(branch) || b.contains_key("") => continue,
            Some(branches) => {
                let old: Vec<&str> = branches.keys().copied().collect();
                // Branches the policy imports as well stay.
                let kept: Vec<&str> = branches
                    .keys()
                    .copied()
                    .filter(|b| *b == branch || policy_branch(repo, b))
                    .collect();
                let retire = retirable_in(branches, &kept);
                if !retire.is_empty() {
                    plan.retire.push(Retire {
                        target: name.clone(),
                        reason: format!(
                            "the default branch of {name} is now {branch} (Bitbucket's listing)"
                        ),
                        projects: retire.clone(),
                    });
                }
                plan.changes.push(Change {
                    kind: ChangeKind::BranchChanged,
                    target: name.clone(),
                    was: Some(old.join(", ")),
                    uuid: repo.uuid.clone(),
                    projects: count(retire.len()),
                });
                plan.imports.extend(target(v.workspace, repo));
                continue;
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
                        plan.candidates.push(Candidate {
                            name: old.to_owned(),
                            uuid: repo.uuid.clone(),
                            renamed_to: Some(name.clone()),
                            projects: retirable_in(&snyk[old], &[]),
                        });
                        (ChangeKind::Renamed, Some(old.to_owned()))
                    }
                    None => (ChangeKind::New, None),
                }
            }
        };
        plan.imports.extend(target(v.workspace, repo));
        plan.changes.push(Change {
            kind,
            target: name,
            was,
            uuid: repo.uuid.clone(),
            projects: 0,
        });
    }
    if v.narrowed {
        return plan;
    }
    for (name, branches) in &snyk {
        if live.contains(*name) || claimed.contains(name) {
            continue;
        }
        let projects = retirable_in(branches, &[]);
        if projects.is_empty() {
            continue;
        }
        let uuid = v
            .uuids
            .iter()
            .find(|(old, _)| old == name)
            .map(|(_, uuid)| uuid.clone());
        plan.candidates.push(Candidate {
            name: (*name).to_owned(),
            uuid,
            renamed_to: None,
            projects,
        });
    }
    plan
}

/// Whether the policy imports `branch` of `repo` besides its main branch.
fn policy_branch(repo: &SeenRepo, branch: &str) -> bool {
    repo.branches
        .iter()
        .any(|glob| globset::Glob::new(glob).is_ok_and(|g| g.compile_matcher().is_match(branch)))
}

/// The repository to import; none when its names cannot travel (discovery keeps none such).
fn target(workspace: &str, repo: &SeenRepo) -> Option<Target> {
    Target::new(workspace, &repo.slug, repo.branch.as_deref()).ok()
}

pub(super) fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests;
