//! Positive evidence before anything is retired. Each name Snyk has that the listing did not show is
//! asked of Bitbucket, with the credential that listed its workspace: only a 404 for the repository (by
//! its name, and by its uuid when one was ever seen) retires its projects. A 200 means it lives; a 403, a
//! refused credential or anything else is no evidence, and the name is left as it is and reported. A
//! passing failure (5xx, the budget) fails the whole comparison, to be tried again. Then the brake: a
//! sync that would retire more of an org than `sync.max_retire_percent` or `sync.max_retire_count` allow
//! changes nothing unless the operator allowed it.

use bb2snyk_bitbucket::{Bitbucket, BitbucketError};
use bb2snyk_messages::{Change, ChangeKind, Checked, MAX_CHANGES, Verdict};

use super::plan::{Candidate, Plan, Retire, count};

/// The brake on mass retirement, per org.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Brake {
    /// Retiring more than this share (percent) of the org's active projects stops the sync.
    pub percent: u32,
    /// Retiring more than this many projects stops the sync.
    pub count: u32,
}

impl Default for Brake {
    fn default() -> Self {
        Self {
            percent: 10,
            count: 50,
        }
    }
}

impl Brake {
    /// Why retiring `retiring` of the org's `active` projects stops the sync, if it does.
    pub fn trips(&self, retiring: usize, active: usize) -> Option<String> {
        let share = retiring as f64 * 100.0 / active.max(1) as f64;
        if retiring > self.count as usize {
            Some(format!(
                "it would retire {retiring} projects, more than sync.max_retire_count ({})",
                self.count
            ))
        } else if share > f64::from(self.percent) {
            Some(format!(
                "it would retire {retiring} of {active} active projects ({share:.0} %), more than \
                 sync.max_retire_percent ({} %)",
                self.percent
            ))
        } else {
            None
        }
    }
}

/// A plan once Bitbucket was asked about its candidates.
#[derive(Debug, Default)]
pub struct Judged {
    pub changes: Vec<Change>,
    pub imports: Vec<bb2snyk_messages::Target>,
    pub retire: Vec<Retire>,
    pub checked: Vec<Checked>,
    /// Why nothing is done for this org, when the brake stopped it.
    pub braked: Option<String>,
}

/// Asks Bitbucket about each of `plan`'s candidates (none without a client) and applies the brake
/// unless `allow_mass_retire`. The error is a passing failure of one question: the caller tries it all
/// again later.
pub async fn judge(
    bitbucket: Option<&Bitbucket>,
    workspace: &str,
    plan: Plan,
    brake: Brake,
    allow_mass_retire: bool,
) -> Result<Judged, BitbucketError> {
    let Plan {
        mut changes,
        imports,
        mut retire,
        candidates,
        active,
    } = plan;
    let mut checked = Vec::new();
    let retiring = |retire: &[Retire]| retire.iter().map(|r| r.projects.len()).sum::<usize>();
    for (asked, candidate) in candidates.into_iter().enumerate() {
        let not_asked = if asked >= MAX_CHANGES {
            Some(format!(
                "not asked: one sync asks about at most {MAX_CHANGES} repositories of a workspace; the next sync goes on"
            ))
        } else if !allow_mass_retire && brake.trips(retiring(&retire), active).is_some() {
            Some("not asked: the brake had already stopped this org's sync".to_owned())
        } else if bitbucket.is_none() {
            Some("not asked: this importer has no Bitbucket credential".to_owned())
        } else {
            None
        };
        let (verdict, detail) = match (not_asked, bitbucket) {
            (None, Some(client)) => ask(client, workspace, &candidate).await?,
            (why, _) => (Verdict::Unchecked, why.unwrap_or_default()),
        };
        if verdict == Verdict::Gone && !candidate.projects.is_empty() {
            let reason = match &candidate.renamed_to {
                Some(new) => format!("renamed in Bitbucket to {new}: {detail}"),
                None => format!("{} is gone from Bitbucket: {detail}", candidate.name),
            };
            let retired = count(candidate.projects.len());
            match &candidate.renamed_to {
                Some(new) => {
                    if let Some(change) = changes.iter_mut().find(|c| &c.target == new) {
                        change.projects = retired;
                    }
                }
                None => changes.push(Change {
                    kind: ChangeKind::Deleted,
                    target: candidate.name.clone(),
                    was: None,
                    uuid: candidate.uuid.clone(),
                    projects: retired,
                }),
            }
            retire.push(Retire {
                target: candidate.name.clone(),
                projects: candidate.projects,
                reason,
            });
        }
        checked.push(Checked {
            target: candidate.name,
            verdict,
            detail,
        });
    }
    let braked = if allow_mass_retire {
        None
    } else {
        brake.trips(retiring(&retire), active)
    };
    Ok(Judged {
        changes,
        imports,
        retire,
        checked,
        braked,
    })
}

/// What Bitbucket says of one candidate, in words that name the request and its answer.
async fn ask(
    client: &Bitbucket,
    workspace: &str,
    candidate: &Candidate,
) -> Result<(Verdict, String), BitbucketError> {
    let slug = candidate
        .name
        .strip_prefix(&format!("{workspace}/"))
        .unwrap_or(&candidate.name);
    let by_name = format!("GET /2.0/repositories/{workspace}/{slug}");
    let found = match client.repository(workspace, slug).await {
        Err(e) => return no_evidence(e, &by_name),
        Ok(found) => found,
    };
    let verdict = match (found, &candidate.renamed_to, &candidate.uuid) {
        (Some(repo), Some(new), _) if repo.full_name.as_deref() == Some(new.as_str()) => (
            Verdict::Gone,
            format!("{by_name} answered the repository now named {new}"),
        ),
        (Some(repo), _, _) => (
            Verdict::Alive,
            format!(
                "{by_name} answered 200 ({})",
                repo.full_name.as_deref().unwrap_or(&candidate.name)
            ),
        ),
        (None, Some(new), _) => (
            Verdict::Gone,
            format!("{by_name} answered 404; the listing shows its uuid as {new}"),
        ),
        (None, None, Some(uuid)) => {
            let by_uuid = format!("GET /2.0/repositories/{workspace}/{uuid}");
            match client.repository(workspace, uuid).await {
                Err(e) => return no_evidence(e, &by_uuid),
                Ok(None) => (
                    Verdict::Gone,
                    format!("{by_name} and {by_uuid} answered 404"),
                ),
                Ok(Some(repo)) => (
                    Verdict::Alive,
                    format!(
                        "{by_uuid} answered 200: renamed or moved to {}",
                        repo.full_name.as_deref().unwrap_or("another name")
                    ),
                ),
            }
        }
        (None, None, None) => (Verdict::Gone, format!("{by_name} answered 404")),
    };
    Ok(verdict)
}

/// A passing failure is the caller's to retry; anything else leaves the candidate unchecked.
fn no_evidence(e: BitbucketError, request: &str) -> Result<(Verdict, String), BitbucketError> {
    if e.is_transient() {
        return Err(e);
    }
    Ok((
        Verdict::Unchecked,
        format!("{request} failed, which is no evidence: {e}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::Brake;

    #[test]
    fn the_brake_trips_past_its_share_or_its_count() {
        let brake = Brake::default();
        assert_eq!(brake.trips(0, 0), None);
        assert_eq!(brake.trips(10, 100), None, "10 % is not more than 10 %");
        assert!(brake.trips(11, 100).is_some());
        assert!(
            brake
                .trips(20, 100)
                .is_some_and(|why| why.contains("20 of 100"))
        );
        assert_eq!(brake.trips(50, 1000), None);
        assert!(
            brake
                .trips(51, 1000)
                .is_some_and(|why| why.contains("max_retire_count"))
        );
    }
}
