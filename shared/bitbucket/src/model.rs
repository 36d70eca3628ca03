//! The parts of Bitbucket's objects bb2snyk reads. Unknown fields are ignored, missing optional ones are `None`.

use serde::Deserialize;

/// Bitbucket's paginated envelope. `next` is absent on the last page.
#[derive(Debug, Deserialize)]
pub struct Page<T> {
    #[serde(default = "Vec::new")]
    pub values: Vec<T>,
    pub next: Option<String>,
    pub size: Option<u64>,
}

/// An item of `/2.0/user/workspaces`.
#[derive(Debug, Deserialize)]
pub struct UserWorkspace {
    pub workspace: Workspace,
}

/// A workspace, from either list. `/user/workspaces` carries no name.
#[derive(Debug, Clone, Deserialize)]
pub struct Workspace {
    pub slug: String,
    pub name: Option<String>,
    pub uuid: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Repository {
    /// Bitbucket's immutable id, kept through renames and transfers: how a sync tells a rename.
    #[serde(default)]
    pub uuid: Option<String>,
    pub slug: String,
    pub name: Option<String>,
    pub full_name: Option<String>,
    pub mainbranch: Option<Named>,
    pub parent: Option<Parent>,
    pub project: Option<Project>,
    pub workspace: Option<WorkspaceRef>,
    pub updated_on: Option<String>,
    pub is_private: Option<bool>,
    /// Lower case, e.g. `rust`; may be empty.
    #[serde(default)]
    pub language: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Named {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Parent {
    pub full_name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Project {
    pub key: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WorkspaceRef {
    pub slug: String,
}

impl Repository {
    /// Only forks carry `parent`; `fork_policy` says nothing about it.
    pub fn is_fork(&self) -> bool {
        self.parent.is_some()
    }

    /// An empty repository has no main branch, so there is nothing to import.
    pub fn is_empty(&self) -> bool {
        self.mainbranch.is_none()
    }

    pub fn branch(&self) -> Option<&str> {
        self.mainbranch.as_ref().map(|b| b.name.as_str())
    }

    /// What the import policy matches this repository of `workspace` on.
    pub fn facts(&self, workspace: &str) -> bb2snyk_policy::Facts {
        bb2snyk_policy::Facts {
            workspace: workspace.to_owned(),
            slug: self.slug.clone(),
            project_key: self.project.as_ref().map(|p| p.key.clone()),
            language: self.language.clone().filter(|l| !l.is_empty()),
            private: self.is_private,
        }
    }
}
