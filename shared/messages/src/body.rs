//! The work messages: what each stage asks of the next.

use bb2snyk_broker::{Message, Publish};
use bb2snyk_filters::Filters;
use serde::{Deserialize, Serialize};

use crate::{DISCOVERER, IMPORTER, IMPORTER_POLLS, ORG_CREATOR};

/// Declares [`Body`] from one list: each variant's wire `type` is written once, and serde, [`Body::kind`]
/// and [`Body::KINDS`] all read it from there.
macro_rules! bodies {
    ($($(#[doc = $doc:literal])* $variant:ident = $kind:literal for $queue:ident,)+) => {
        /// Every work message; its `type` says which.
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(tag = "type", deny_unknown_fields)]
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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequested {
    pub run_id: String,
    pub group_id: String,
    /// A template org whose integrations and settings new orgs copy.
    #[serde(default)]
    pub source_org_id: Option<String>,
    /// Repository filters (`bb2snyk discover --include=...`) for every page of the run's workspaces;
    /// without them the discoverer's own `discovery.*` settings apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Filters>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceDiscovered {
    pub run_id: String,
    pub group_id: String,
    #[serde(default)]
    pub source_org_id: Option<String>,
    pub workspace: String,
    /// The display name, when Bitbucket gave one; the org is named after it (else after the slug).
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Filters>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgReady {
    pub run_id: String,
    pub group_id: String,
    pub workspace: String,
    pub org_id: String,
    pub integration_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Filters>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReposPage {
    pub org: OrgReady,
    /// Bitbucket's `next` link.
    pub next: String,
    pub page: u32,
}

/// A repository to import, as the wire names it: workspace slug, repository slug, branch.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub owner: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportRepo {
    pub run_id: String,
    pub org_id: String,
    pub integration_id: String,
    pub target: Target,
    /// Import attempts that ended in a failed job so far.
    #[serde(default)]
    pub failed_jobs: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollImport {
    pub import: ImportRepo,
    pub job_url: String,
    pub polls: u32,
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
        }
    }

    /// What makes this message the same work as another: the id is a hash of it.
    fn identity(&self) -> String {
        match self {
            Self::RunRequested(m) => m.run_id.clone(),
            Self::WorkspaceDiscovered(m) => format!("{}|{}", m.run_id, m.workspace),
            Self::OrgReady(m) => format!("{}|{}", m.run_id, m.workspace),
            Self::ReposPage(m) => format!("{}|{}|{}", m.org.run_id, m.org.workspace, m.page),
            Self::ImportRepo(m) => format!("{}|{}|{}", m.run_id, m.target_id(), m.failed_jobs),
            Self::PollImport(m) => format!("{}|{}", m.job_url, m.polls),
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

    /// Reads a delivery; the error is the reason to park it with.
    pub fn from_message(message: &Message) -> Result<Self, String> {
        let body: Self = serde_json::from_slice(&message.body)
            .map_err(|e| format!("malformed message ({}): {e}", message.kind))?;
        if !message.kind.is_empty() && message.kind != body.kind() {
            return Err(format!(
                "malformed message: its type property says {} but its body is {}",
                message.kind,
                body.kind()
            ));
        }
        Ok(body)
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn import() -> ImportRepo {
        ImportRepo {
            run_id: "run-1".into(),
            org_id: "o".into(),
            integration_id: "i".into(),
            target: Target {
                owner: "acme".into(),
                name: "api".into(),
                branch: Some("main".into()),
            },
            failed_jobs: 0,
        }
    }

    #[test]
    fn round_trips_with_a_versioned_type_and_a_stable_id() {
        let body = Body::ImportRepo(import());
        let message = body.to_message();
        assert_eq!(message.kind, "repo.import.v1");
        let json: serde_json::Value = serde_json::from_slice(&message.body).expect("JSON");
        assert_eq!(json["type"], "repo.import.v1");
        assert_eq!(Body::from_message(&message), Ok(body.clone()));
        assert_eq!(body.to_message().message_id, message.message_id);
        assert_eq!(import().target_id(), "o:i:api:acme:main");
        let retried = Body::ImportRepo(ImportRepo {
            failed_jobs: 1,
            ..import()
        });
        assert_ne!(retried.message_id(), message.message_id);
    }

    #[test]
    fn kinds_are_the_serde_names() {
        let run = RunRequested {
            run_id: "r".into(),
            group_id: "g".into(),
            source_org_id: None,
            filters: None,
        };
        for body in [
            Body::RunRequested(run),
            Body::ImportRepo(import()),
            Body::PollImport(PollImport {
                import: import(),
                job_url: "https://snyk/job".into(),
                polls: 2,
            }),
        ] {
            let json: serde_json::Value =
                serde_json::from_slice(&body.to_message().body).expect("JSON");
            assert_eq!(json["type"], body.kind());
            assert!(Body::KINDS.contains(&body.kind()));
        }
        assert_eq!(Body::KINDS.len(), 6);
    }

    #[test]
    fn malformed_messages_say_why() {
        let mut message = Body::ImportRepo(import()).to_message();
        for (body, expected) in [
            (
                &b"not json"[..],
                "malformed message (repo.import.v1): expected",
            ),
            (
                br#"{"type":"repo.delete.v1"}"#,
                "unknown variant `repo.delete.v1`",
            ),
            (
                br#"{"type":"repo.import.v1","run_id":"r"}"#,
                "missing field `org_id`",
            ),
            (
                br#"{"type":"run.requested.v1","run_id":"r","group_id":"g","filters":{"exclude":["a-["]}}"#,
                "not a valid glob",
            ),
        ] {
            message.body = body.to_vec();
            let reason = Body::from_message(&message).expect_err("malformed");
            assert!(reason.contains(expected), "{reason}");
        }
        let mut wrong = Body::RunRequested(RunRequested {
            filters: None,
            run_id: "r".into(),
            group_id: "g".into(),
            source_org_id: None,
        })
        .to_message();
        wrong.kind = "repo.import.v1".into();
        assert!(
            Body::from_message(&wrong)
                .expect_err("mismatch")
                .contains("its type property says")
        );
    }
}
