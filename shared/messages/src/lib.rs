//! The contracts of the pipeline (documented in `docs/messages.md`, which a test checks against these
//! types): the work [`Body`] the stages send each other, and the result [`Event`]s ops tools bind to. Each is
//! JSON with a versioned `type`, a deterministic `message_id` (the same work always has the same id, so
//! redeliveries and replays are recognisable) and the run id as `correlation_id`.
//!
//! These types are ours alone: no API client's model is on the wire, so a change to one cannot change
//! what is on the queues. Conversions happen at the edges, in the handlers.

mod body;
mod coverage;
mod event;
mod ids;
mod policy;

use bb2snyk_broker::Message;
pub use bb2snyk_filters::{Date, Filters, Glob};
pub use body::{
    Body, ImportRepo, MAX_RETIRED, MAX_SYNC_IMPORTS, OrgReady, PollImport, ReposPage,
    RetireProjects, RunRequested, Sync, SyncImports, SyncWorkspace, Target, WorkspaceDiscovered,
};
pub use coverage::{Coverage, CoverageListed, MAX_COVERAGE, Orphan, RepoCoverage};
pub use event::{
    Change, ChangeKind, Checked, Event, ImportCompleted, ImportFailed, ImportRequested,
    MAX_CHANGES, OrgReadyEvent, ProjectsRetired, RepoSkipped, SyncPlanned, TargetRef, Verdict,
};
pub use ids::{
    BranchName, CredentialId, DisplayName, FullName, GroupId, IntegrationId, JobUrl, OrgId,
    PageUrl, ProjectId, Reason, RepoSlug, RunId, UnixMs, WorkspaceSlug, zero_is_none,
};
pub use policy::{MAX_TAGS, ProjectPolicy, ProjectsMetadata};
use sha2::{Digest, Sha256};

/// The work queues, by short name.
pub const DISCOVERER: &str = "discoverer";
pub const ORG_CREATOR: &str = "org-creator";
pub const IMPORTER: &str = "importer";
/// Job polls have their own queue: behind thousands of import requests they would wait for all of them,
/// and no job would be seen to finish until every import was requested.
pub const IMPORTER_POLLS: &str = "importer-polls";
pub const QUEUES: [&str; 4] = [DISCOVERER, ORG_CREATOR, IMPORTER, IMPORTER_POLLS];

/// snyk-api-import's `generateTargetId` for this source, byte for byte: `orgId:integrationId:name:owner:branch`,
/// an absent part left out rather than left empty. The ledger and `imported-targets.log` are keyed by it.
pub fn target_id(org_id: &str, integration_id: &str, target: &Target) -> String {
    target_id_of(
        org_id,
        integration_id,
        &target.name,
        &target.owner,
        target.branch.as_deref(),
    )
}

/// [`target_id`] of a target named by strings (a log line, a file, Snyk's listing).
pub fn target_id_of(
    org_id: &str,
    integration_id: &str,
    name: &str,
    owner: &str,
    branch: Option<&str>,
) -> String {
    [
        Some(org_id),
        Some(integration_id),
        Some(name),
        Some(owner),
        branch,
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(":")
}

/// A new run id, `run-` and 12 random hex digits: short enough to type, unique enough never to collide.
pub fn new_run_id() -> RunId {
    let id = uuid::Uuid::new_v4().simple().to_string();
    RunId::new(format!("run-{}", &id[..12])).expect("16 printable characters are a run id")
}

/// A message id: the first 16 bytes of SHA-256 over the type and what makes the work the same, in hex.
fn message_id(kind: &str, identity: &str) -> String {
    let digest = Sha256::digest(format!("{kind}|{identity}").as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// `body` as the broker carries it, under its type, id and run.
fn envelope<T: serde::Serialize>(kind: &str, identity: &str, run_id: &str, body: &T) -> Message {
    Message {
        kind: kind.to_owned(),
        message_id: message_id(kind, identity),
        correlation_id: run_id.to_owned(),
        attempt: 0,
        // Serialising our own types (strings, numbers, lists) cannot fail.
        body: serde_json::to_vec(body).unwrap_or_default(),
    }
}
