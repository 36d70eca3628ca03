//! What a migration moves: every legacy project (origin `bitbucket-cloud`) of the group, grouped by
//! repository and branch, and what Bitbucket says of each repository. A repository Bitbucket answers 404
//! for, or that no credential can see, is left as it is.

use std::collections::BTreeMap;

use bb2snyk_bitbucket::{Bitbucket, RepoFilter, Tenant, Workspace};
use bb2snyk_snyk::{Client as Snyk, OrgProject};

use super::MIGRATED_TAG;
use crate::Failure;

/// The legacy integration's origin.
pub const LEGACY: &str = "bitbucket-cloud";

/// A legacy project, in the org that holds it.
#[derive(Debug, Clone)]
pub struct Legacy {
    pub org_id: String,
    pub org_name: String,
    pub project: OrgProject,
}

impl Legacy {
    /// The App project a migration copied this one onto, once it did (its mark).
    pub fn migrated_to(&self) -> Option<&str> {
        self.project
            .metadata
            .tags
            .iter()
            .find(|(key, _)| key == MIGRATED_TAG)
            .map(|(_, value)| value.as_str())
    }
}

/// One repository on one branch, with its legacy projects (of one org or several).
#[derive(Debug, Clone)]
pub struct Move {
    pub workspace: String,
    pub slug: String,
    pub branch: Option<String>,
    pub projects: Vec<Legacy>,
    /// Why it stays as it is, when it does.
    pub left: Option<String>,
}

impl Move {
    pub fn target(&self) -> String {
        format!("{}/{}", self.workspace, self.slug)
    }
}

/// The legacy projects to move (active ones; with `delete`, also those a migration marked): of `org`
/// alone, else of every org in the group.
pub async fn moves(
    snyk: &Snyk,
    group_id: &str,
    org: Option<&str>,
    delete: bool,
) -> Result<Vec<Move>, Failure> {
    let orgs: Vec<(String, String)> = snyk
        .group_orgs(group_id)
        .await?
        .into_iter()
        .filter(|o| org.is_none_or(|only| only == o.id))
        .map(|o| (o.id, o.name))
        .collect();
    if let Some(only) = org
        && orgs.is_empty()
    {
        return Err(Failure::Config(format!(
            "org {only} is not in group {group_id}; check --orgId and --groupId"
        )));
    }
    let mut by_repo: BTreeMap<(String, Option<String>), Vec<Legacy>> = BTreeMap::new();
    for (org_id, org_name) in orgs {
        for project in snyk.projects(&org_id).await? {
            let legacy = Legacy {
                org_id: org_id.clone(),
                org_name: org_name.clone(),
                project,
            };
            let wanted = legacy.project.origin == LEGACY
                && (legacy.project.active || (delete && legacy.migrated_to().is_some()));
            if wanted {
                let key = (
                    legacy.project.display_name.clone(),
                    legacy.project.branch.clone(),
                );
                by_repo.entry(key).or_default().push(legacy);
            }
        }
    }
    Ok(by_repo
        .into_iter()
        .map(|((name, branch), projects)| {
            let (workspace, slug) = name.split_once('/').unwrap_or((&name, ""));
            Move {
                workspace: workspace.to_owned(),
                slug: slug.to_owned(),
                branch,
                projects,
                left: None,
            }
        })
        .collect())
}

/// The workspaces the credentials see, with the org name a run gives each and the credential that sees it.
pub struct Workspaces {
    pub tenant: Tenant,
    pub found: BTreeMap<String, (Workspace, String, Option<String>)>,
}

impl Workspaces {
    pub async fn discover(tenant: Tenant) -> Result<Self, Failure> {
        let discovery = tenant.discover().await?;
        let (workspaces, credentials): (Vec<_>, Vec<_>) = discovery.workspaces.into_iter().unzip();
        let names = bb2snyk_bitbucket::org_names(&workspaces);
        let found = workspaces
            .into_iter()
            .zip(names)
            .zip(credentials)
            .map(|((w, name), credential)| (w.slug.clone(), (w, name, credential)))
            .collect();
        Ok(Self { tenant, found })
    }

    fn client(&self, workspace: &str) -> Option<Result<&Bitbucket, Failure>> {
        let (_, _, credential) = self.found.get(workspace)?;
        Some(
            self.tenant
                .client(credential.as_deref())
                .map_err(Failure::from),
        )
    }
}

/// Leaves each move whose repository Bitbucket does not confirm: a 404, a workspace no credential sees,
/// a failed request (no evidence either way), or one the filters leave out.
pub async fn check(moves: &mut [Move], workspaces: &Workspaces, filter: &RepoFilter) {
    for m in moves.iter_mut() {
        let request = format!("GET /2.0/repositories/{}/{}", m.workspace, m.slug);
        m.left = match workspaces.client(&m.workspace) {
            None => Some(format!(
                "no Bitbucket credential sees workspace {}: add its consumer, then migrate again",
                m.workspace
            )),
            Some(Err(e)) => Some(e.to_string()),
            Some(Ok(client)) => match client.repository(&m.workspace, &m.slug).await {
                Ok(None) => Some(format!(
                    "gone from Bitbucket: {request} answered 404; its legacy projects are left as they are"
                )),
                Err(e) => Some(format!("{request} failed, so it is left for now: {e}")),
                Ok(Some(repo)) => filter
                    .check(&repo)
                    .err()
                    .map(|skip| format!("left out by the filters: {skip}")),
            },
        };
    }
}
