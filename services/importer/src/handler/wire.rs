//! Between the wire's types and the Snyk client's: each side keeps its own model, so a change to one
//! cannot change the other.

use bb2snyk_messages::{ImportRepo, ProjectId, Target, TargetRef};

/// The wire's target as the Snyk client sends it: the two are separate types, so an API model change
/// cannot change what is on the queues.
pub(super) fn api_target(target: &Target) -> bb2snyk_snyk::Target {
    bb2snyk_snyk::Target {
        owner: target.owner.to_string(),
        name: target.name.to_string(),
        branch: target.branch.as_ref().map(ToString::to_string),
    }
}

/// Where the import went, as every import event says it.
pub(super) fn about(import: &ImportRepo) -> TargetRef {
    TargetRef {
        org_id: import.org_id.clone(),
        integration_id: import.integration_id.clone(),
        target: import.target.clone(),
    }
}

/// Snyk's project ids as messages carry them; one that no message can carry (Snyk's answer is input) is
/// left out, and said so.
pub(super) fn project_ids<'a>(ids: impl IntoIterator<Item = &'a String>) -> Vec<ProjectId> {
    ids.into_iter()
        .filter_map(|id| match ProjectId::new(id.clone()) {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::warn!(error = %e, "a project id from Snyk that no message can carry; left out");
                None
            }
        })
        .collect()
}
