//! The import policy's tags and attributes, set on the projects an import made. Each project is read
//! first (one REST read for up to 100): one already carrying what the policy asks gets no call, so doing it
//! again changes nothing. The policy owns the tag keys it names and the attributes it sets; every other
//! tag a project carries is kept.

use bb2snyk_broker::Outcome;
use bb2snyk_ledger::SeenRepo;
use bb2snyk_messages::{ProjectPolicy, ProjectsMetadata};
use bb2snyk_snyk::{Metadata, OrgProject};

use super::{Importer, snyk_failure};

/// `current` with the policy's tags and attributes: tags of keys the policy names take its value (one
/// each), other tags stay; an attribute the policy sets is replaced, the others stay.
pub fn wanted(current: &Metadata, policy: &ProjectPolicy) -> Metadata {
    let mut tags: Vec<(String, String)> = current
        .tags
        .iter()
        .filter(|(key, _)| !policy.tags.contains_key(key))
        .cloned()
        .collect();
    tags.extend(policy.tags.iter().map(|(k, v)| (k.clone(), v.clone())));
    let set = |own: &Option<Vec<String>>, current: &Vec<String>| {
        own.clone().unwrap_or_else(|| current.clone())
    };
    Metadata {
        tags,
        criticality: set(&policy.criticality, &current.criticality),
        environment: set(&policy.environment, &current.environment),
        lifecycle: set(&policy.lifecycle, &current.lifecycle),
    }
}

/// Whether two sets of metadata say the same (tags in any order).
pub fn same(a: &Metadata, b: &Metadata) -> bool {
    let sorted = |m: &Metadata| {
        let mut tags = m.tags.clone();
        tags.sort();
        tags
    };
    sorted(a) == sorted(b)
        && a.criticality == b.criticality
        && a.environment == b.environment
        && a.lifecycle == b.lifecycle
}

/// For a sync: each repository of `workspace` whose active projects' tags or attributes differ from what
/// the policy asks, with the policy and those projects' ids.
pub fn out_of_step(
    workspace: &str,
    seen: &[SeenRepo],
    projects: &[OrgProject],
) -> Vec<(String, ProjectPolicy, Vec<String>)> {
    let mut out = Vec::new();
    for repo in seen.iter().filter(|r| !r.skipped) {
        let Some(policy) = repo.policy.as_ref().filter(|p| p.has_metadata()) else {
            continue;
        };
        let name = format!("{workspace}/{}", repo.slug);
        let ids: Vec<String> = projects
            .iter()
            .filter(|p| p.active && p.display_name == name)
            .filter(|p| !same(&wanted(&p.metadata, policy), &p.metadata))
            .map(|p| p.id.clone())
            .collect();
        if !ids.is_empty() {
            out.push((name, policy.clone(), ids));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

impl Importer {
    pub(super) async fn set_metadata(&self, m: ProjectsMetadata) -> Outcome {
        let ids: Vec<String> = m.projects.iter().map(ToString::to_string).collect();
        let projects = match self.snyk.projects_by_ids(&m.org_id, &ids).await {
            Ok(projects) => projects,
            Err(e) => return snyk_failure(e),
        };
        let mut set = 0;
        for project in &projects {
            let wanted = wanted(&project.metadata, &m.policy);
            if same(&wanted, &project.metadata) {
                continue;
            }
            if let Err(e) = self
                .snyk
                .set_metadata(&m.org_id, &project.id, &wanted)
                .await
            {
                return snyk_failure(e);
            }
            set += 1;
        }
        tracing::info!(target = %m.target, projects = projects.len(), set, "set the policy's tags and attributes");
        Outcome::ack()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_owns_its_keys_and_attributes_and_nothing_else() {
        let current = Metadata {
            tags: vec![
                ("team".into(), "old".into()),
                ("team".into(), "older".into()),
                ("owner".into(), "alice".into()),
            ],
            criticality: vec!["low".into()],
            environment: vec!["internal".into()],
            lifecycle: vec![],
        };
        let policy = ProjectPolicy {
            tags: [("team".to_owned(), "payments".to_owned())].into(),
            criticality: Some(vec!["high".into()]),
            ..ProjectPolicy::default()
        };
        let wanted = wanted(&current, &policy);
        assert_eq!(
            wanted.tags,
            vec![
                ("owner".to_owned(), "alice".to_owned()),
                ("team".to_owned(), "payments".to_owned())
            ],
            "a key the policy names has its one value; other tags stay"
        );
        assert_eq!(wanted.criticality, vec!["high".to_owned()]);
        assert_eq!(
            wanted.environment,
            vec!["internal".to_owned()],
            "not the policy's"
        );
        assert!(!same(&wanted, &current));
        assert!(
            same(&super::wanted(&wanted, &policy), &wanted),
            "a second time, nothing"
        );
    }
}
