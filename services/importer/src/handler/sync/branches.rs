//! The branches an import policy imports besides a repository's main one (`branches = ["release/*"]`): a
//! sync lists them (one Bitbucket request per repository such a rule matches) and imports those Snyk has
//! no project of yet, so a release branch cut since the last run is brought in.

use bb2snyk_bitbucket::{Bitbucket, BitbucketError};
use bb2snyk_filters::Glob;
use bb2snyk_ledger::SeenRepo;
use bb2snyk_messages::{Change, ChangeKind, Target};
use bb2snyk_snyk::OrgProject;

use super::evidence::Judged;

/// Each branch the policy imports that Snyk has no project of, as the change and the import.
pub async fn missing(
    bitbucket: &Bitbucket,
    workspace: &str,
    seen: &[SeenRepo],
    projects: &[OrgProject],
) -> Result<Vec<(Change, Target)>, BitbucketError> {
    let mut missing = Vec::new();
    for repo in seen.iter().filter(|r| !r.skipped && !r.branches.is_empty()) {
        let globs: Vec<Glob> = repo
            .branches
            .iter()
            .filter_map(|g| g.parse().ok())
            .collect();
        if globs.is_empty() {
            continue;
        }
        let name = format!("{workspace}/{}", repo.slug);
        for branch in bitbucket.branches(workspace, &repo.slug, &globs).await? {
            let held = projects
                .iter()
                .any(|p| p.display_name == name && p.branch.as_deref() == Some(branch.as_str()));
            if held || Some(&branch) == repo.branch.as_ref() {
                continue;
            }
            let Ok(target) = Target::new(workspace, &repo.slug, Some(&branch)) else {
                tracing::warn!(%name, %branch, "a branch no message can name; not imported");
                continue;
            };
            missing.push((
                Change {
                    kind: ChangeKind::New,
                    target: format!("{name} ({branch})"),
                    was: None,
                    uuid: repo.uuid.clone(),
                    projects: 0,
                },
                target,
            ));
        }
    }
    Ok(missing)
}

impl Judged {
    /// The plan with the policy's missing branches imported too.
    pub fn with_branches(mut self, branches: Vec<(Change, Target)>) -> Self {
        for (change, target) in branches {
            self.changes.push(change);
            self.imports.push(target);
        }
        self
    }
}
