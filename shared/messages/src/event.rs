//! Result events, for ops tools that bind a queue to the events exchange (and for `bb2snyk run`, which
//! turns them into snyk-api-import's logs). Each body has `type`, `run_id` and `subject` (the targetId, or
//! the workspace for `org.ready`), then its own fields.

use bb2snyk_broker::{Message, Publish};
use serde::{Deserialize, Serialize};

use crate::{CoverageListed, IntegrationId, JobUrl, OrgId, ProjectId, RunId, Target};

/// Declares [`Event`] from one list, so each wire `type` is written once.
macro_rules! events {
    ($($(#[doc = $doc:literal])* $variant:ident($body:ident) = $kind:literal,)+) => {
        /// Every result event; its `type` says which, and its routing key is that type without the version.
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(tag = "type")]
        pub enum Event {
            $($(#[doc = $doc])* #[serde(rename = $kind)] $variant($body),)+
        }

        impl Event {
            /// Every event type, as on the wire.
            pub const KINDS: &[&str] = &[$($kind),+];

            /// The versioned type, e.g. `import.completed.v1`.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => $kind,)+
                }
            }

            pub fn run_id(&self) -> &str {
                match self {
                    $(Self::$variant(e) => &e.run_id,)+
                }
            }

            /// The targetId, or the workspace slug for `org.ready`.
            pub fn subject(&self) -> &str {
                match self {
                    $(Self::$variant(e) => &e.subject,)+
                }
            }
        }
    };
}

events! {
    /// A workspace's org exists and has the app integration.
    OrgReady(OrgReadyEvent) = "org.ready.v1",
    /// Discovery left a repository out, and why.
    RepoSkipped(RepoSkipped) = "repo.skipped.v1",
    /// Snyk accepted an import; its job is being followed.
    ImportRequested(ImportRequested) = "import.requested.v1",
    /// The import job completed.
    ImportCompleted(ImportCompleted) = "import.completed.v1",
    /// The import job failed; it is tried again, or parked after too many failed jobs.
    ImportFailed(ImportFailed) = "import.failed.v1",
    /// A sync compared a workspace with its org: what changes (or would, in a dry run).
    SyncPlanned(SyncPlanned) = "sync.planned.v1",
    /// A target's projects were deactivated (or deleted).
    ProjectsRetired(ProjectsRetired) = "projects.retired.v1",
    /// A report's view of a workspace: how Snyk covers each repository.
    CoverageListed(CoverageListed) = "coverage.listed.v1",
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncPlanned {
    pub run_id: RunId,
    /// The workspace slug.
    pub subject: String,
    /// The org; none when bb2snyk manages no org for the workspace (a `run` imports it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<OrgId>,
    pub dry_run: bool,
    pub changes: Vec<Change>,
    /// The listing was filtered by Bitbucket, so no repository was taken for deleted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub narrowed: bool,
    /// Why the sync stopped before acting on this org (the brake on mass retirement); nothing was changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub braked: Option<String>,
    /// Each repository Snyk has but the listing did not show, and what Bitbucket said of it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checked: Vec<Checked>,
    /// This event's part of the plan and how many parts there are (a plan goes out in parts of at most
    /// `MAX_CHANGES` changes): 1 of 1 for most.
    #[serde(default = "one")]
    pub part: u32,
    #[serde(default = "one")]
    pub parts: u32,
}

fn one() -> u32 {
    1
}

/// The most changes (and checks) one `sync.planned.v1` carries.
pub const MAX_CHANGES: usize = 1000;

/// What Bitbucket said of a repository Snyk has and the listing did not show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checked {
    /// `workspace/slug`, as Snyk has it.
    pub target: String,
    pub verdict: Verdict,
    /// The evidence in words: the request and its answer, or why none was asked.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Bitbucket answered 404 for it: its projects are retired.
    Gone,
    /// Bitbucket still has it (perhaps under another name): nothing is retired.
    Alive,
    /// Not asked, or no answer that is evidence: nothing is retired.
    Unchecked,
}

/// One difference between Bitbucket and Snyk, and what a sync does about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub kind: ChangeKind,
    /// The repository as Bitbucket has it now (`workspace/slug`), or as Snyk had it when deleted.
    pub target: String,
    /// For a rename, the old name; for a branch change, the old branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub was: Option<String>,
    /// The repository's Bitbucket uuid, which survives renames and transfers (when known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Projects retired (or to be).
    pub projects: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// New in Bitbucket: imported.
    New,
    /// Renamed or moved (the same uuid): imported under the new name, the old name's projects retired.
    Renamed,
    /// Its default branch changed: imported on the new branch, the old branch's projects retired.
    BranchChanged,
    /// Gone from Bitbucket: its projects retired.
    Deleted,
    /// Its projects' tags or attributes differ from the import policy's: set again.
    Metadata,
    /// A workspace with no org bb2snyk manages: left to `run`.
    Unmanaged,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Renamed => "renamed",
            Self::BranchChanged => "branch changed",
            Self::Deleted => "deleted",
            Self::Metadata => "metadata",
            Self::Unmanaged => "no org",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectsRetired {
    pub run_id: RunId,
    /// The target's display name, `workspace/slug`.
    pub subject: String,
    pub org_id: OrgId,
    pub projects: Vec<ProjectId>,
    /// Deleted rather than deactivated.
    pub deleted: bool,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgReadyEvent {
    pub run_id: RunId,
    /// The workspace slug.
    pub subject: String,
    pub org_id: OrgId,
    pub org_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoSkipped {
    pub run_id: RunId,
    /// The targetId.
    pub subject: String,
    pub reason: String,
}

/// Where an import went: every import event carries it, so ops tools (and `bb2snyk import`'s logs) need
/// no lookup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRef {
    pub org_id: OrgId,
    pub integration_id: IntegrationId,
    pub target: Target,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportRequested {
    pub run_id: RunId,
    /// The targetId.
    pub subject: String,
    #[serde(flatten)]
    pub about: TargetRef,
    pub job_url: JobUrl,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportCompleted {
    pub run_id: RunId,
    /// The targetId.
    pub subject: String,
    #[serde(flatten)]
    pub about: TargetRef,
    /// The job that imported it; absent when Snyk was found to hold the target instead (see `before`, or a
    /// POST of this run whose answer was lost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_url: Option<JobUrl>,
    /// The ids of the projects the job made.
    pub projects: Vec<ProjectId>,
    /// Snyk held the target before this run (an earlier run, another tool): nothing was imported now.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub before: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportFailed {
    pub run_id: RunId,
    /// The targetId.
    pub subject: String,
    #[serde(flatten)]
    pub about: TargetRef,
    /// The job's log, in short.
    pub error: String,
    pub failed_jobs: u32,
}

impl Event {
    /// The key it is published under on the events exchange: its type without the version
    /// (`import.completed`).
    pub fn routing_key(&self) -> &'static str {
        let kind = self.kind();
        kind.rsplit_once('.').map_or(kind, |(key, _version)| key)
    }

    /// What makes two events the same: one of each type per run and subject.
    /// The run and subject; a plan's later parts and a target's later retirements add what tells them
    /// apart, so no consumer that drops repeated ids drops them.
    fn identity(&self) -> String {
        let base = format!("{}|{}", self.run_id(), self.subject());
        match self {
            Self::SyncPlanned(p) if p.part > 1 => format!("{base}|{}", p.part),
            Self::CoverageListed(c) if c.part > 1 => format!("{base}|{}", c.part),
            Self::ProjectsRetired(r) => {
                format!(
                    "{base}|{}",
                    r.projects.first().map_or("", ProjectId::as_str)
                )
            }
            _ => base,
        }
    }

    pub fn to_message(&self) -> Message {
        crate::envelope(self.kind(), &self.identity(), self.run_id(), self)
    }

    /// To the events exchange, under [`Event::routing_key`].
    pub fn publish(&self) -> Publish {
        Publish::event(self.routing_key(), self.to_message())
    }

    /// Reads an event heard on the exchange; the error says what is wrong with it.
    pub fn from_message(message: &Message) -> Result<Self, String> {
        serde_json::from_slice(&message.body)
            .map_err(|e| format!("malformed event ({}): {e}", message.kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn completed() -> Event {
        Event::ImportCompleted(ImportCompleted {
            run_id: "run-1".parse().expect("a run id"),
            subject: "o:i:api:acme".into(),
            about: TargetRef {
                org_id: "o".parse().expect("an id"),
                integration_id: "i".parse().expect("an id"),
                target: Target {
                    owner: "acme".parse().expect("an id"),
                    name: "api".parse().expect("an id"),
                    branch: None,
                },
            },
            job_url: Some("https://snyk/job/1".parse().expect("an id")),
            projects: vec!["p1".parse().expect("an id")],
            before: false,
        })
    }

    #[test]
    fn events_are_flat_json_under_their_routing_key() {
        let event = completed();
        let publish = event.publish();
        assert_eq!(
            publish.to,
            bb2snyk_broker::Route::Event("import.completed".into())
        );
        let json: serde_json::Value = serde_json::from_slice(&publish.message.body).expect("JSON");
        assert_eq!(json["type"], "import.completed.v1");
        assert_eq!(json["org_id"], "o");
        assert_eq!(json["target"]["name"], "api");
        assert_eq!(json["subject"], "o:i:api:acme");
        assert_eq!(Event::from_message(&publish.message), Ok(event));
        assert_eq!(publish.message.correlation_id, "run-1");
    }
}
