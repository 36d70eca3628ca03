//! What discovery asks of the import policy and the filters for one repository: whether it is skipped
//! and why, what its import carries, and which other branches it imports.

use bb2snyk_bitbucket::{Bitbucket, BitbucketError, RepoFilter, Repository};
use bb2snyk_messages::ProjectPolicy;
use bb2snyk_policy::Decision;

/// Why `repo` is not imported (a filter, or the policy rule that skips it), if it is not.
pub(super) fn skip_reason(
    filter: &RepoFilter,
    repo: &Repository,
    decision: &Decision,
) -> Option<String> {
    match (filter.check(repo), decision.skip) {
        (Err(skip), _) => Some(skip.to_string()),
        (Ok(()), Some(rule)) => Some(format!("skipped by policy rule {rule}")),
        (Ok(()), None) => None,
    }
}

/// The branches besides the main one that the policy asks to import for `repo`: one Bitbucket listing,
/// only for a repository that is imported and a rule with `branches` matches.
pub(super) async fn extra_branches(
    bitbucket: &Bitbucket,
    workspace: &str,
    filter: &RepoFilter,
    repo: &Repository,
    decision: &Decision,
) -> Result<Vec<String>, BitbucketError> {
    let Some(globs) = decision.branches.as_ref().filter(|g| !g.is_empty()) else {
        return Ok(Vec::new());
    };
    if decision.skip.is_some() || filter.check(repo).is_err() {
        return Ok(Vec::new());
    }
    let mut branches = bitbucket.branches(workspace, &repo.slug, globs).await?;
    branches.retain(|b| Some(b.as_str()) != repo.branch());
    Ok(branches)
}

/// What an import carries of the policy's decision; `None` when it asks nothing.
pub(super) fn applied(decision: &Decision) -> Option<ProjectPolicy> {
    let applied = ProjectPolicy {
        tags: decision.tags.clone(),
        criticality: decision.criticality.clone(),
        environment: decision.environment.clone(),
        lifecycle: decision.lifecycle.clone(),
        exclusion_globs: decision.exclusion_globs.as_ref().map(|g| g.join(", ")),
    };
    (applied != ProjectPolicy::default()).then_some(applied)
}
