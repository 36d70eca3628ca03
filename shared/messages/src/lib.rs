//! The messages the stages exchange (documented in `docs/messages.md`). Each is JSON with a versioned
//! `type`, a deterministic `message_id` (the same work always has the same id, so redeliveries and replays
//! are recognisable) and the run id as `correlation_id`.

use bb2snyk_broker::{Message, Publish};
pub use bb2snyk_snyk::Target;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The work queues, by short name.
pub const DISCOVERER: &str = "discoverer";
pub const ORG_CREATOR: &str = "org-creator";
pub const IMPORTER: &str = "importer";
/// Job polls have their own queue: behind thousands of import requests they would wait for all of them,
/// and no job would be seen to finish until every import was requested.
pub const IMPORTER_POLLS: &str = "importer-polls";
pub const QUEUES: [&str; 4] = [DISCOVERER, ORG_CREATOR, IMPORTER, IMPORTER_POLLS];

/// Every message body; `type` says which.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum Body {
    /// Import a whole tenant into a Snyk group (to the discoverer).
    #[serde(rename = "run.requested.v1")]
    RunRequested(RunRequested),
    /// Ensure this workspace's org (to the org-creator).
    #[serde(rename = "workspace.discovered.v1")]
    WorkspaceDiscovered(WorkspaceDiscovered),
    /// The workspace's org is ready: list its repositories (to the discoverer).
    #[serde(rename = "org.ready.v1")]
    OrgReady(OrgReady),
    /// The next page of a workspace's repositories (to the discoverer).
    #[serde(rename = "repos.page.v1")]
    ReposPage(ReposPage),
    /// Import one repository (to the importer).
    #[serde(rename = "repo.import.v1")]
    ImportRepo(ImportRepo),
    /// Poll an import job (to the importer, through a delay).
    #[serde(rename = "import.poll.v1")]
    PollImport(PollImport),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequested {
    pub run_id: String,
    pub group_id: String,
    /// A template org whose integrations and settings new orgs copy.
    #[serde(default)]
    pub source_org_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Filters>,
}

/// Repository filters a run request carries (`bb2snyk discover --include=...`) to the pages of its
/// workspaces; without them the discoverer's own `discovery.*` settings apply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filters {
    #[serde(default)]
    pub exclude_forks: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub project_keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_since: Option<String>,
}

impl Filters {
    pub fn discovery(&self) -> bb2snyk_settings::DiscoverySettings {
        bb2snyk_settings::DiscoverySettings {
            exclude_forks: self.exclude_forks,
            include: self.include.clone(),
            exclude: self.exclude.clone(),
            project_keys: self.project_keys.clone(),
            updated_since: self.updated_since.clone(),
        }
    }
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
    /// Bitbucket's `next` link, followed verbatim.
    pub next: String,
    pub page: u32,
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
        target_id(&self.org_id, &self.integration_id, &self.target)
    }
}

impl Body {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::RunRequested(_) => "run.requested.v1",
            Self::WorkspaceDiscovered(_) => "workspace.discovered.v1",
            Self::OrgReady(_) => "org.ready.v1",
            Self::ReposPage(_) => "repos.page.v1",
            Self::ImportRepo(_) => "repo.import.v1",
            Self::PollImport(_) => "import.poll.v1",
        }
    }

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

    /// The queue this message is for.
    pub fn queue(&self) -> &'static str {
        match self {
            Self::RunRequested(_) | Self::OrgReady(_) | Self::ReposPage(_) => DISCOVERER,
            Self::WorkspaceDiscovered(_) => ORG_CREATOR,
            Self::ImportRepo(_) => IMPORTER,
            Self::PollImport(_) => IMPORTER_POLLS,
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
        let digest = Sha256::digest(format!("{}|{}", self.kind(), self.identity()).as_bytes());
        digest[..16].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// As the broker carries it.
    pub fn to_message(&self) -> Message {
        Message {
            kind: self.kind().to_owned(),
            message_id: self.message_id(),
            correlation_id: self.run_id().to_owned(),
            attempt: 0,
            // Serialising plain strings and numbers cannot fail.
            body: serde_json::to_vec(self).unwrap_or_default(),
        }
    }

    /// A follow-up for the queue it belongs to.
    pub fn publish(&self) -> Publish {
        Publish::to_queue(self.queue(), self.to_message())
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
}

/// A result event for ops tools (routing key `import.completed`, `import.failed`, `repo.skipped`,
/// `org.ready`): `{"type": "<key>.v1", "run_id", "subject", ...details}`, where `subject` is the target id or
/// the workspace.
pub fn event(
    routing_key: &str,
    run_id: &str,
    subject: &str,
    details: serde_json::Value,
) -> Publish {
    let kind = format!("{routing_key}.v1");
    let mut body = serde_json::json!({"type": kind, "run_id": run_id, "subject": subject});
    if let (Some(body), serde_json::Value::Object(details)) = (body.as_object_mut(), details) {
        body.extend(details);
    }
    let digest = Sha256::digest(format!("{kind}|{run_id}|{subject}").as_bytes());
    Publish::event(
        routing_key,
        Message {
            message_id: digest[..16].iter().map(|b| format!("{b:02x}")).collect(),
            correlation_id: run_id.to_owned(),
            attempt: 0,
            body: serde_json::to_vec(&body).unwrap_or_default(),
            kind,
        },
    )
}

/// snyk-api-import's `generateTargetId` for this source, byte for byte: `orgId:integrationId:name:owner:branch`,
/// an absent part left out rather than left empty. The ledger and `imported-targets.log` are keyed by it.
pub fn target_id(org_id: &str, integration_id: &str, target: &Target) -> String {
    [
        Some(org_id),
        Some(integration_id),
        Some(target.name.as_str()),
        Some(target.owner.as_str()),
        target.branch.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(":")
}

/// A new run id: time-ordered enough to read, unique enough to never collide.
pub fn new_run_id() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("run-{}", &id[..12])
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
