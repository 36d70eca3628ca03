//! Which repositories discovery hands on, and why each other one is skipped.

use bb2snyk_filters::{Date, Filters, Glob};
use globset::{GlobSet, GlobSetBuilder};

use crate::Repository;

#[derive(Debug, Clone, Default)]
pub struct RepoFilter {
    exclude_forks: bool,
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
    project_keys: Vec<String>,
    updated_since: Option<Date>,
}

/// Why a repository is not imported; its Display is the reason recorded for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Skip {
    #[error("empty repository (no main branch): nothing to import")]
    Empty,
    #[error("fork (discovery.exclude_forks is on)")]
    Fork,
    #[error("slug matches no discovery.include glob")]
    NotIncluded,
    #[error("slug matches a discovery.exclude glob")]
    Excluded,
    #[error("project {0:?} is not in discovery.project_keys")]
    OtherProject(String),
    #[error("not updated since discovery.updated_since")]
    NotUpdated,
}

impl RepoFilter {
    /// The filters' globs were checked where they entered (flags, settings or a message).
    pub fn new(filters: &Filters) -> Self {
        Self {
            exclude_forks: filters.exclude_forks,
            include: globs(&filters.include),
            exclude: globs(&filters.exclude),
            project_keys: filters.project_keys.clone(),
            updated_since: filters.updated_since.clone(),
        }
    }

    /// The BBQL `q=` that lets Bitbucket drop what we would skip, so fewer pages cross the wire. BBQL has
    /// no OR in our sandbox's subset, so several project keys are filtered here instead.
    pub fn query(&self) -> Option<String> {
        let mut clauses = Vec::new();
        if let Some(since) = &self.updated_since {
            clauses.push(format!("updated_on>={since}"));
        }
        if let [key] = self.project_keys.as_slice() {
            clauses.push(format!("project.key=\"{}\"", key.replace('"', "")));
        }
        (!clauses.is_empty()).then(|| clauses.join(" AND "))
    }

    /// `Ok` for a repository to import, else why not.
    pub fn check(&self, repo: &Repository) -> Result<(), Skip> {
        if repo.is_empty() {
            return Err(Skip::Empty);
        }
        if self.exclude_forks && repo.is_fork() {
            return Err(Skip::Fork);
        }
        if self
            .include
            .as_ref()
            .is_some_and(|g| !g.is_match(&repo.slug))
        {
            return Err(Skip::NotIncluded);
        }
        if self
            .exclude
            .as_ref()
            .is_some_and(|g| g.is_match(&repo.slug))
        {
            return Err(Skip::Excluded);
        }
        if !self.project_keys.is_empty() {
            let key = repo.project.as_ref().map(|p| p.key.as_str()).unwrap_or("");
            if !self.project_keys.iter().any(|k| k == key) {
                return Err(Skip::OtherProject(key.to_owned()));
            }
        }
        if let Some(since) = &self.updated_since {
            // ISO-8601 in UTC compares as text; `2024-01-31` sorts before any time on that day.
            if repo
                .updated_on
                .as_deref()
                .is_none_or(|u| u < since.as_str())
            {
                return Err(Skip::NotUpdated);
            }
        }
        Ok(())
    }
}

fn globs(patterns: &[Glob]) -> Option<GlobSet> {
    if patterns.is_empty() {
        return None;
    }
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        builder.add(pattern.matcher().clone());
    }
    match builder.build() {
        Ok(set) => Some(set),
        // Each glob compiled on its own; a set of them only fails past regex size limits.
        Err(e) => {
            tracing::error!(error = %e, "the globs together are too large; no glob filter applies");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(slug: &str, fork: bool, empty: bool, project: &str, updated: &str) -> Repository {
        serde_json::from_value(serde_json::json!({
            "slug": slug,
            "mainbranch": (!empty).then(|| serde_json::json!({"name": "main"})),
            "parent": fork.then(|| serde_json::json!({"full_name": "up/stream"})),
            "project": {"key": project},
            "updated_on": updated,
        }))
        .expect("repository JSON")
    }

    fn glob(s: &str) -> Glob {
        s.parse().expect("a valid glob")
    }

    fn filter(change: impl FnOnce(&mut Filters)) -> RepoFilter {
        let mut settings = Filters::default();
        change(&mut settings);
        RepoFilter::new(&settings)
    }

    #[test]
    fn each_filter_skips_with_its_reason() {
        let plain = repo(
            "api-core",
            false,
            false,
            "PRJ1",
            "2024-03-01T10:00:00.000000+00:00",
        );
        assert_eq!(RepoFilter::default().check(&plain), Ok(()));
        assert_eq!(
            RepoFilter::default().check(&repo("x", false, true, "P", "2024-01-01")),
            Err(Skip::Empty)
        );
        let fork = repo("x", true, false, "P", "2024-01-01");
        assert_eq!(RepoFilter::default().check(&fork), Ok(()));
        assert_eq!(
            filter(|s| s.exclude_forks = true).check(&fork),
            Err(Skip::Fork)
        );
        let include = filter(|s| s.include = vec![glob("api-*"), glob("web")]);
        assert_eq!(include.check(&plain), Ok(()));
        assert_eq!(
            include.check(&repo("lib", false, false, "P", "2024")),
            Err(Skip::NotIncluded)
        );
        assert_eq!(
            filter(|s| s.exclude = vec![glob("*-core")]).check(&plain),
            Err(Skip::Excluded)
        );
        let projects = filter(|s| s.project_keys = vec!["PRJ2".into(), "PRJ3".into()]);
        assert_eq!(
            projects.check(&plain),
            Err(Skip::OtherProject("PRJ1".into()))
        );
        assert_eq!(projects.query(), None);
        let since = filter(|s| s.updated_since = Some("2024-03-01".parse().expect("date")));
        assert_eq!(since.check(&plain), Ok(()));
        assert_eq!(
            since.check(&repo("x", false, false, "P", "2024-02-29T23:59:59+00:00")),
            Err(Skip::NotUpdated)
        );
    }

    #[test]
    fn the_query_carries_what_bitbucket_can_filter() {
        assert_eq!(RepoFilter::default().query(), None);
        let f = filter(|s| {
            s.updated_since = Some("2024-01-31".parse().expect("date"));
            s.project_keys = vec!["PRJ1".into()];
        });
        assert_eq!(
            f.query().as_deref(),
            Some("updated_on>=2024-01-31 AND project.key=\"PRJ1\"")
        );
    }
}
