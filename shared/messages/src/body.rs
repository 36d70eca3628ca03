//! The work messages: what each stage asks of the next. Each field is a type that checks itself where a
//! message is read (`ids.rs`); what is left here is the bound on how many items a list carries.
//!
//! Over 400 lines on purpose: every work message in one place, so what a queue may carry reads at once
//! (the tests are in `body/tests.rs`).

use bb2snyk_broker::{Message, Publish};
use bb2snyk_filters::Filters;
use serde::{Deserialize, Serialize};

use crate::{
    BranchName, CredentialId, DISCOVERER, DisplayName, FullName, GroupId, IMPORTER, IMPORTER_POLLS,
    IntegrationId, JobUrl, ORG_CREATOR, OrgId, PageUrl, ProjectId, ProjectPolicy, ProjectsMetadata,
    Reason, RepoSlug, RunId, UnixMs, WorkspaceSlug,
};

/// Projects one retire message names at most.
pub const MAX_RETIRED: usize = 1000;
/// Repositories one `sync.imports.v1` names at most: a page's worth, what the backlog admits at once.
pub const MAX_SYNC_IMPORTS: usize = 100;

/// Declares [`Body`] from one list: each variant's wire `type` is written once, and serde, [`Body::kind`]
/// and [`Body::KINDS`] all read it from there.
macro_rules! bodies {
    ($($(#[doc = $doc:literal])* $variant:ident = $kind:literal for $queue:ident,)+) => {
        /// Every work message; its `type` says which.
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(tag = "type")]
        pub enum Body {
            $($(#[doc = $doc])* #[serde(rename = $kind)] $variant($variant),)+
        }

        impl Body {
            /// Every message type, as on the wire.
            pub const KINDS: &[&str] = &[$($kind),+];

            /// The versioned type, e.g. `repo.import.v1`.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => $kind,)+
                }
            }

            /// The work queue this message is for.
            pub fn queue(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => $queue,)+
                }
            }
        }
    };
}

bodies! {
    /// Import a whole tenant into a Snyk group (to the discoverer).
    RunRequested = "run.requested.v1" for DISCOVERER,
    /// Ensure this workspace's org (to the org-creator).
    WorkspaceDiscovered = "workspace.discovered.v1" for ORG_CREATOR,
    /// The workspace's org is ready: list its repositories (to the discoverer).
    OrgReady = "org.ready.v1" for DISCOVERER,
    /// The next page of a workspace's repositories (to the discoverer).
    ReposPage = "repos.page.v1" for DISCOVERER,
    /// Import one repository (to the importer).
    ImportRepo = "repo.import.v1" for IMPORTER,
    /// Poll an import job (to the importer's polls queue, through a delay).
    PollImport = "import.poll.v1" for IMPORTER_POLLS,
    /// A sync has seen the whole workspace: compare it with the org in Snyk and act (to the importer).
    SyncWorkspace = "sync.workspace.v1" for IMPORTER,
    /// Deactivate (or delete) the projects of a target Bitbucket no longer has as it was (to the importer).
    RetireProjects = "projects.retire.v1" for IMPORTER,
    /// A sync's imports, a page at a time, sent on as `repo.import.v1` once the importer's queue has room
    /// (to the discoverer, which keeps that bound).
    SyncImports = "sync.imports.v1" for DISCOVERER,
    /// Set the import policy's tags and attributes on an import's projects (to the importer).
    ProjectsMetadata = "projects.metadata.v1" for IMPORTER,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncImports {
    pub run_id: RunId,
    pub org_id: OrgId,
    pub integration_id: IntegrationId,
    /// Which page of the sync's imports of this org, from 1.
    pub page: u32,
    /// At most [`MAX_SYNC_IMPORTS`].
    pub targets: Vec<Target>,
    /// The import policy's decision for each of `targets` (same order; absent or shorter: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<Option<ProjectPolicy>>,
}

/// A run that brings Snyk in step with Bitbucket (`bb2snyk sync`) instead of importing every repository:
/// new repositories are imported, and the projects of deleted, renamed or re-branched ones retired.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sync {
    /// Plan only: report what would change, change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Delete retired projects instead of deactivating them.
    #[serde(default)]
    pub delete: bool,
    /// This org alone (`--orgId`); every org bb2snyk manages when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<OrgId>,
    /// Pass the brake on retiring much of an org (`--allow-mass-retire`); left out of the JSON when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_mass_retire: bool,
    /// When the sync was asked for (Unix ms): projects Snyk created after it are never retired by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<UnixMs>,
    /// A coverage report (`bb2snyk report`): the comparison is told as `coverage.listed` events, nothing
    /// is changed, and a workspace without an org is listed too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub report: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncWorkspace {
    pub run_id: RunId,
    /// None for a workspace no org serves, which only a report lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<OrgId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration_id: Option<IntegrationId>,
    pub workspace: WorkspaceSlug,
    pub sync: Sync,
    /// The workspace's Bitbucket credential (as in `org.ready.v1`): the one that checks a repository is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<CredentialId>,
    /// Bitbucket filtered the listing (`q=`): what it left out is no sign of anything, so nothing is taken
    /// for deleted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub narrowed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetireProjects {
    pub run_id: RunId,
    pub org_id: OrgId,
    /// The target's display name, `workspace/slug`.
    pub target: FullName,
    /// Snyk project ids, at most [`MAX_RETIRED`].
    pub projects: Vec<ProjectId>,
    /// Delete them rather than deactivate them.
    #[serde(default)]
    pub delete: bool,
    /// Why: deleted, renamed or re-branched in Bitbucket.
    pub reason: Reason,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRequested {
    pub run_id: RunId,
    pub group_id: GroupId,
    /// A template org whose integrations and settings new orgs copy.
    #[serde(default)]
    pub source_org_id: Option<OrgId>,
    /// Repository filters (`bb2snyk discover --include=...`) for every page of the run's workspaces;
    /// without them the discoverer's own `discovery.*` settings apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Filters>,
    /// A sync rather than an import of everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<Sync>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceDiscovered {
    pub run_id: RunId,
    pub group_id: GroupId,
    #[serde(default)]
    pub source_org_id: Option<OrgId>,
    pub workspace: WorkspaceSlug,
    /// The org's name: the workspace's display name, made unique over the tenant and at most 60 characters
    /// (`bb2snyk_bitbucket::org_names`); the slug when absent.
    #[serde(default)]
    pub name: Option<DisplayName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Filters>,
    /// Which Bitbucket credential serves this workspace (a hash, never a secret), when several are
    /// configured; absent with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<CredentialId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<Sync>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgReady {
    pub run_id: RunId,
    pub group_id: GroupId,
    pub workspace: WorkspaceSlug,
    /// None for a workspace no org serves, which only a report lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<OrgId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration_id: Option<IntegrationId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Filters>,
    /// The workspace's Bitbucket credential, copied from its `workspace.discovered.v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<CredentialId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<Sync>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReposPage {
    pub org: OrgReady,
    /// Bitbucket's `next` link.
    pub next: PageUrl,
    pub page: u32,
}

/// A repository to import, as the wire names it: workspace slug, repository slug, branch.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Target {
    pub owner: WorkspaceSlug,
    pub name: RepoSlug,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<BranchName>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportRepo {
    pub run_id: RunId,
    pub org_id: OrgId,
    pub integration_id: IntegrationId,
    pub target: Target,
    /// Import attempts that ended in a failed job so far.
    #[serde(default)]
    pub failed_jobs: u32,
    /// What the import policy asks for this repository (left out when nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<ProjectPolicy>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollImport {
    pub import: ImportRepo,
    pub job_url: JobUrl,
    pub polls: u32,
    /// When Snyk accepted the import: the job's age decides the next poll (absent: not known, as for a
    /// job found in the ledger).
    #[serde(
        default,
        deserialize_with = "crate::zero_is_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub requested_ms: Option<UnixMs>,
    /// Not to be polled before this: a poll that comes back early waits out the rest (absent: due now).
    #[serde(
        default,
        deserialize_with = "crate::zero_is_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub not_before_ms: Option<UnixMs>,
    /// A poll made now because Snyk listed the job's target as new (a hint that it is done), beside the
    /// job's own scheduled poll: it only records a completed job, and never polls again (left out of the
    /// JSON when false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hinted: bool,
}

impl Target {
    /// `slug` of `owner` on `branch`, or why no message can carry them.
    pub fn new(owner: &str, slug: &str, branch: Option<&str>) -> Result<Self, String> {
        Ok(Self {
            owner: WorkspaceSlug::new(owner)?,
            name: RepoSlug::new(slug)?,
            branch: branch.map(BranchName::new).transpose()?,
        })
    }
}

impl Target {
    /// `workspace/slug`.
    pub fn full_name(&self) -> FullName {
        FullName::from_parts(&self.owner, &self.name)
    }
}

impl PollImport {
    /// When Snyk accepted the import (Unix ms); `now_ms` when that is not known.
    pub fn requested_at(&self, now_ms: u64) -> u64 {
        self.requested_ms.map_or(now_ms, UnixMs::get)
    }

    /// When the poll is due (Unix ms); 0: now.
    pub fn due_ms(&self) -> u64 {
        self.not_before_ms.map_or(0, UnixMs::get)
    }
}

impl ImportRepo {
    /// snyk-api-import's targetId, `orgId:integrationId:name:owner:branch`, so ledgers and logs line up.
    pub fn target_id(&self) -> String {
        crate::target_id(&self.org_id, &self.integration_id, &self.target)
    }
}

impl Body {
    pub fn run_id(&self) -> &str {
        match self {
            Self::RunRequested(m) => &m.run_id,
            Self::WorkspaceDiscovered(m) => &m.run_id,
            Self::OrgReady(m) => &m.run_id,
            Self::ReposPage(m) => &m.org.run_id,
            Self::ImportRepo(m) => &m.run_id,
            Self::PollImport(m) => &m.import.run_id,
            Self::SyncWorkspace(m) => &m.run_id,
            Self::RetireProjects(m) => &m.run_id,
            Self::SyncImports(m) => &m.run_id,
            Self::ProjectsMetadata(m) => &m.run_id,
        }
    }

    /// What makes this message the same work as another: the id is a hash of it.
    fn identity(&self) -> String {
        match self {
            Self::RunRequested(m) => m.run_id.to_string(),
            Self::WorkspaceDiscovered(m) => format!("{}|{}", m.run_id, m.workspace),
            Self::OrgReady(m) => format!("{}|{}", m.run_id, m.workspace),
            Self::ReposPage(m) => format!("{}|{}|{}", m.org.run_id, m.org.workspace, m.page),
            Self::ImportRepo(m) => format!("{}|{}|{}", m.run_id, m.target_id(), m.failed_jobs),
            Self::PollImport(m) if m.hinted => format!("{}|{}|hinted", m.job_url, m.polls),
            Self::PollImport(m) => format!("{}|{}", m.job_url, m.polls),
            Self::SyncWorkspace(m) => format!("{}|{}", m.run_id, m.workspace),
            Self::RetireProjects(m) => format!(
                "{}|{}|{}|{}",
                m.run_id,
                m.org_id,
                m.target,
                m.projects.first().map_or("", ProjectId::as_str)
            ),
            Self::SyncImports(m) => format!("{}|{}|{}", m.run_id, m.org_id, m.page),
            Self::ProjectsMetadata(m) => format!(
                "{}|{}|{}",
                m.run_id,
                m.org_id,
                m.projects.first().map_or("", ProjectId::as_str)
            ),
        }
    }

    pub fn message_id(&self) -> String {
        crate::message_id(self.kind(), &self.identity())
    }

    /// As the broker carries it.
    pub fn to_message(&self) -> Message {
        crate::envelope(self.kind(), &self.identity(), self.run_id(), self)
    }

    /// A follow-up for the queue it belongs to, at once.
    pub fn publish(&self) -> Publish {
        Publish::to_queue(self.queue(), self.to_message())
    }

    /// A follow-up that waits at least `delay` first (polls, pacing, lock contention).
    pub fn publish_after(&self, delay: std::time::Duration) -> Publish {
        Publish {
            delay: Some(delay),
            ..self.publish()
        }
    }

    /// Reads a delivery; the error is the reason to park it with. Every field is bounded here, before a
    /// stage acts on it or copies it into what it sends (a run id becomes an AMQP property).
    pub fn from_message(message: &Message) -> Result<Self, String> {
        let body: Self = serde_json::from_slice(&message.body)
            .map_err(|e| format!("malformed message ({}): {e}", message.kind))?;
        body.check()
            .map_err(|e| format!("malformed message ({}): {e}", body.kind()))?;
        if !message.kind.is_empty() && message.kind != body.kind() {
            return Err(format!(
                "malformed message: its type property says {} but its body is {}",
                message.kind,
                body.kind()
            ));
        }
        Ok(body)
    }

    /// Each field within its bound, with no control characters.
    fn check(&self) -> Result<(), String> {
        if let Self::RetireProjects(r) = self
            && r.projects.len() > MAX_RETIRED
        {
            return Err(format!(
                "projects names {} projects, at most {MAX_RETIRED}",
                r.projects.len()
            ));
        }
        let policy = match self {
            Self::ImportRepo(i) => i.policy.as_ref(),
            Self::PollImport(p) => p.import.policy.as_ref(),
            Self::ProjectsMetadata(m) => Some(&m.policy),
            _ => None,
        };
        if let Self::ProjectsMetadata(m) = self
            && m.projects.len() > MAX_RETIRED
        {
            return Err(format!(
                "projects names {} projects, at most {MAX_RETIRED}",
                m.projects.len()
            ));
        }
        if let Some(policy) = policy {
            policy.check()?;
        }
        if let Self::SyncImports(i) = self
            && i.targets.len() > MAX_SYNC_IMPORTS
        {
            return Err(format!(
                "targets names {} repositories, at most {MAX_SYNC_IMPORTS}",
                i.targets.len()
            ));
        }
        Ok(())
    }

    /// What the message is about, in words: the repository, workspace or run.
    pub fn describe(&self) -> String {
        match self {
            Self::ImportRepo(i) => format!("{}/{}", i.target.owner, i.target.name),
            Self::PollImport(p) => format!("{}/{}", p.import.target.owner, p.import.target.name),
            Self::WorkspaceDiscovered(w) => format!("workspace {}", w.workspace),
            Self::OrgReady(o) => format!("workspace {}", o.workspace),
            Self::ReposPage(p) => format!("workspace {} page {}", p.org.workspace, p.page),
            Self::RunRequested(r) => format!("run {}", r.run_id),
            Self::SyncWorkspace(s) => format!("sync of workspace {}", s.workspace),
            Self::RetireProjects(r) => format!("{}'s projects", r.target),
            Self::SyncImports(i) => {
                format!("a sync's imports into org {} (page {})", i.org_id, i.page)
            }
            Self::ProjectsMetadata(m) => format!("{}'s projects' tags and attributes", m.target),
        }
    }
}

#[cfg(test)]
mod tests;
