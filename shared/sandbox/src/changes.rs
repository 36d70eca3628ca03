//! Changes to the tenant between runs, as a sync must notice them: repositories added, deleted, renamed
//! (the same uuid under a new slug, as Bitbucket keeps it) and default branches changed. Over HTTP:
//! `POST /_sandbox/tenant` with `{"add": {"<workspace>": n}, "delete": ["ws/slug"],
//! "rename": {"ws/old": "new"}, "branch": {"ws/slug": "develop"}}`; it answers the added repositories'
//! full names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    state::State,
    tenant::{BRANCHES, Repo},
};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantChange {
    /// New repositories per workspace slug, each with a default branch and a manifest.
    #[serde(default)]
    pub add: BTreeMap<String, usize>,
    /// `workspace/slug` of repositories to delete.
    #[serde(default)]
    pub delete: Vec<String>,
    /// `workspace/slug` to its new slug.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// `workspace/slug` to its new default branch (one of `main`, `master`, `develop`).
    #[serde(default)]
    pub branch: BTreeMap<String, String>,
}

/// Applies `change`; the full names of the repositories added. Nothing changes when any part names a
/// workspace, repository or branch that does not exist.
pub fn apply(state: &mut State, change: &TenantChange) -> Result<Vec<String>, String> {
    let mut tenant = state.tenant.clone();
    let find = |tenant: &mut Vec<crate::tenant::Workspace>, full: &str| {
        let (ws, slug) = full
            .split_once('/')
            .ok_or_else(|| format!("{full}: expected workspace/slug"))?;
        let w = tenant
            .iter()
            .position(|w| w.slug == ws)
            .ok_or_else(|| format!("no workspace {ws}"))?;
        let r = tenant[w]
            .repos
            .iter()
            .position(|r| r.slug == slug)
            .ok_or_else(|| format!("no repository {full}"))?;
        Ok::<_, String>((w, r))
    };
    for (full, branch) in &change.branch {
        let branch = BRANCHES
            .iter()
            .find(|b| **b == branch.as_str())
            .ok_or_else(|| format!("branch {branch}: one of {BRANCHES:?}"))?;
        let (w, r) = find(&mut tenant, full)?;
        tenant[w].repos[r].mainbranch = Some(branch);
    }
    for (full, new) in &change.rename {
        let (w, r) = find(&mut tenant, full)?;
        if tenant[w].repos.iter().any(|other| other.slug == *new) {
            return Err(format!("{full}: the workspace already has {new}"));
        }
        tenant[w].repos[r].slug.clone_from(new);
    }
    for full in &change.delete {
        let (w, r) = find(&mut tenant, full)?;
        tenant[w].repos.remove(r);
    }
    let mut added = Vec::new();
    for (ws, count) in &change.add {
        let w = tenant
            .iter()
            .position(|w| w.slug == *ws)
            .ok_or_else(|| format!("no workspace {ws}"))?;
        for _ in 0..*count {
            let index = tenant[w].repos.len();
            let slug = format!("added-{index}-{:04x}", state.rng.below(0x10000));
            added.push(format!("{ws}/{slug}"));
            tenant[w].repos.push(Repo {
                name: slug.clone(),
                slug,
                uuid: format!("{{{}}}", state.rng.uuid()),
                project_key: "PRJ0".into(),
                language: "javascript",
                is_private: true,
                created_on: "2026-11-30T09:00:00.000000+00:00".into(),
                updated_on: "2026-11-30T09:00:00.000000+00:00".into(),
                parent: None,
                mainbranch: Some(BRANCHES[0]),
                poison: None,
            });
        }
    }
    state.tenant = tenant;
    Ok(added)
}

/// A change of each kind, `counts` of them (`[add, delete, rename, branch]`), on distinct repositories
/// that import cleanly (a default branch, no poison), spread over the workspaces in turn: what a test of
/// a sync applies between two runs.
pub fn drift(state: &State, counts: [usize; 4]) -> TenantChange {
    // Round the workspaces: the first clean repository of each, then the second of each, and so on.
    let mut clean: Vec<(usize, usize, String, String, Option<&'static str>)> = Vec::new();
    for (w, ws) in state.tenant.iter().enumerate() {
        let repos = ws
            .repos
            .iter()
            .filter(|r| r.mainbranch.is_some() && r.poison.is_none());
        for (i, r) in repos.enumerate() {
            clean.push((i, w, ws.slug.clone(), r.slug.clone(), r.mainbranch));
        }
    }
    clean.sort_by_key(|c| (c.0, c.1));
    let mut candidates = clean
        .into_iter()
        .map(|(_, _, ws, slug, branch)| (ws, slug, branch));
    let mut change = TenantChange::default();
    let workspaces = state.tenant.len().max(1);
    for i in 0..counts[0] {
        *change
            .add
            .entry(state.tenant[i % workspaces].slug.clone())
            .or_default() += 1;
    }
    for _ in 0..counts[1] {
        if let Some((ws, slug, _)) = candidates.next() {
            change.delete.push(format!("{ws}/{slug}"));
        }
    }
    for _ in 0..counts[2] {
        if let Some((ws, slug, _)) = candidates.next() {
            change
                .rename
                .insert(format!("{ws}/{slug}"), format!("{slug}-renamed"));
        }
    }
    for _ in 0..counts[3] {
        if let Some((ws, slug, branch)) = candidates.next() {
            let other = BRANCHES
                .iter()
                .find(|b| Some(**b) != branch)
                .unwrap_or(&BRANCHES[0]);
            change
                .branch
                .insert(format!("{ws}/{slug}"), (*other).to_owned());
        }
    }
    change
}
