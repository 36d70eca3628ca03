//! Why an import failed, for repositories Snyk does not hold: the ledger in Redis knows it where the
//! services ran; `run` and `import` leave it in `SNYK_LOG_PATH`'s `<org>.failed-imports.log` files.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    path::Path,
};

use bb2snyk_ledger::{Ledger, State};
use bb2snyk_messages::{Coverage, CoverageListed, target_id_of};
use bb2snyk_settings::Settings;
use bb2snyk_store::Store;
use serde_json::Value;

use super::model::Row;

const FAILED_IMPORTS: &str = ".failed-imports.log";

/// Failure reasons by org and `workspace/slug` (the logs), and by targetId (the ledger).
#[derive(Debug, Default)]
pub struct Failures {
    logged: HashMap<(String, String), String>,
    recorded: HashMap<String, String>,
}

impl Failures {
    /// The reasons the logs in `dir` and, when Redis answers, the ledger give for the repositories
    /// `listed` has as missing. Neither is required: without them a repository is missing, not failed.
    pub async fn read(settings: &Settings, dir: &Path, listed: &[CoverageListed]) -> Self {
        let mut failures = Self::default();
        failures.read_logs(dir);
        if let Ok(store) = Store::connect(&settings.redis.url, &settings.redis.prefix).await {
            failures.read_ledger(&Ledger::new(store), listed).await;
        }
        failures
    }

    /// Why the import of `row` failed, when a ledger or a log says so; a workspace no org serves has no
    /// import to have failed.
    pub fn of(&self, part: &CoverageListed, row: &Row) -> Option<String> {
        let id = ledger_id(part, &row.slug, row.branch.as_deref())?;
        let org_id = part.org_id.as_ref()?;
        self.recorded
            .get(&id)
            .or_else(|| {
                self.logged.get(&(
                    org_id.to_string(),
                    format!("{}/{}", row.workspace, row.slug),
                ))
            })
            .cloned()
    }

    fn read_logs(&mut self, dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(org) = name.strip_suffix(FAILED_IMPORTS) else {
                continue;
            };
            let Ok(file) = std::fs::File::open(entry.path()) else {
                continue;
            };
            // Later lines are later attempts: the last reason stands.
            for line in BufReader::new(file).lines().map_while(Result::ok) {
                if let Some((repo, reason)) = logged_failure(&line) {
                    self.logged.insert((org.to_owned(), repo), reason);
                }
            }
        }
    }

    async fn read_ledger(&mut self, ledger: &Ledger, listed: &[CoverageListed]) {
        for part in listed {
            for repo in part
                .repositories
                .iter()
                .filter(|r| r.status == Coverage::Missing)
            {
                let Some(id) = ledger_id(part, &repo.slug, repo.branch.as_deref()) else {
                    continue;
                };
                if let Ok(Some(record)) = ledger.target(&id).await
                    && matches!(record.state, State::Parked | State::Failed)
                    && let Some(error) = record.last_error
                {
                    self.recorded.insert(id, error);
                }
            }
        }
    }
}

/// The ledger's key (snyk-api-import's targetId) of a repository of `part`'s workspace; none when no org
/// serves it, so no import of it can have failed.
fn ledger_id(part: &CoverageListed, slug: &str, branch: Option<&str>) -> Option<String> {
    let (org_id, integration_id) = (part.org_id.as_ref()?, part.integration_id.as_ref()?);
    Some(target_id_of(
        org_id,
        integration_id,
        slug,
        &part.subject,
        branch,
    ))
}

/// The repository (`owner/name`) and reason of one failed-imports line, ours or snyk-api-import's.
fn logged_failure(line: &str) -> Option<(String, String)> {
    let value: Value = serde_json::from_str(line).ok()?;
    let target = value.get("target")?;
    let repo = format!(
        "{}/{}",
        target.get("owner")?.as_str()?,
        target.get("name")?.as_str()?
    );
    let error = value.get("errorData");
    let reason = [
        error.and_then(|e| e.get("innerError")),
        error.and_then(|e| e.get("errorMessage")),
        value.get("errorMessage"),
        value.get("msg"),
    ]
    .into_iter()
    .flatten()
    .find_map(Value::as_str)?;
    Some((repo, reason.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_imports_line_gives_its_repository_and_reason() {
        let ours = r#"{"integrationId":"i","target":{"owner":"ws","name":"api","branch":"main"},"errorData":{"errorMessage":"Could not complete API import","innerError":"no manifest"},"level":50}"#;
        assert_eq!(
            logged_failure(ours),
            Some(("ws/api".into(), "no manifest".into()))
        );
        let theirs = r#"{"target":{"owner":"ws","name":"web"},"errorMessage":"Not found"}"#;
        assert_eq!(
            logged_failure(theirs),
            Some(("ws/web".into(), "Not found".into()))
        );
        assert_eq!(logged_failure("not json"), None);
        assert_eq!(logged_failure(r#"{"target":{"owner":1}}"#), None);
    }
}
