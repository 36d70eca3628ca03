//! `coverage.listed.v1`: what a report found of one workspace, repository by repository. The importer
//! tells it from the same comparison a sync makes; `bb2snyk report` gathers the parts.

use serde::{Deserialize, Serialize};

use crate::{IntegrationId, OrgId, RunId};

/// The most repositories (and orphans) one `coverage.listed.v1` carries.
pub const MAX_COVERAGE: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoverageListed {
    pub run_id: RunId,
    /// The workspace slug.
    pub subject: String,
    /// The org; none when no org serves the workspace (every repository is then missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<OrgId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration_id: Option<IntegrationId>,
    pub repositories: Vec<RepoCoverage>,
    /// Snyk projects of repositories Bitbucket confirmed gone (a 404).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orphaned: Vec<Orphan>,
    /// The listing was filtered by Bitbucket: repositories it left out are not in the report.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub narrowed: bool,
    /// This event's part and how many there are (at most [`MAX_COVERAGE`] repositories each).
    pub part: u32,
    pub parts: u32,
}

/// One repository Bitbucket holds, and how Snyk covers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoCoverage {
    pub slug: String,
    pub status: Coverage,
    /// Why it is not imported, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Its main branch; none for an empty repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Its active Snyk projects on that branch (for a stale one: on the branch or name Snyk has).
    pub projects: u32,
    /// When Snyk created the newest of those projects (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_imported: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Coverage {
    /// Active projects on its main branch.
    Imported,
    /// In Snyk, but only on another branch or under an old name.
    Stale,
    /// Not in Snyk.
    Missing,
    /// Not in Snyk, and an import of it failed (the reason says why).
    Failed,
    /// No main branch: nothing to import.
    Empty,
    /// Left out by the filters or the import policy (the reason names which).
    Skipped,
}

impl Coverage {
    pub const ALL: [Coverage; 6] = [
        Self::Imported,
        Self::Stale,
        Self::Missing,
        Self::Failed,
        Self::Empty,
        Self::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Imported => "imported",
            Self::Stale => "stale",
            Self::Missing => "missing",
            Self::Failed => "failed",
            Self::Empty => "empty",
            Self::Skipped => "skipped",
        }
    }
}

/// Projects Snyk holds of a repository Bitbucket answered 404 for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Orphan {
    pub slug: String,
    pub projects: u32,
}
