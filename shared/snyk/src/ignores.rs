//! A project's ignores (v1, §8 of the API notes): what a security team decided about an issue, with its
//! reason and expiry. Read from one project and added to another when projects move to the App.

use std::collections::BTreeMap;

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use bb2snyk_http::Call;

use crate::{Client, SnykError, parse, segment};

/// The most ignores read from one project: more is an error rather than a silent part.
const MAX_IGNORES: usize = 10_000;
/// The longest issue id, path and reason accepted from Snyk.
const MAX_ID: usize = 200;
const MAX_TEXT: usize = 4000;

/// One ignore of an issue on one path (`*`: every path).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ignore {
    pub issue_id: String,
    pub path: String,
    pub reason: String,
    /// `not-vulnerable`, `wont-fix` or `temporary-ignore`.
    pub reason_type: String,
    pub disregard_if_fixable: bool,
    /// RFC 3339; none for an ignore that does not expire.
    pub expires: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    reason: String,
    reason_type: String,
    #[serde(default)]
    disregard_if_fixable: bool,
    #[serde(default)]
    expires: Option<String>,
}

impl Client {
    /// The project's ignores, by issue and path (`GET …/project/{id}/ignores`).
    pub async fn ignores(&self, org_id: &str, project_id: &str) -> Result<Vec<Ignore>, SnykError> {
        let path = format!(
            "/org/{}/project/{}/ignores",
            segment(org_id),
            segment(project_id)
        );
        let call = Call {
            endpoint: "/org/{org}/project/{project}/ignores",
            about: org_id,
        };
        let answer = self
            .request(call, Method::GET, &self.url(&path), None)
            .await?;
        let listed: BTreeMap<String, Vec<BTreeMap<String, Value>>> = parse(&answer.body)?;
        let unreadable = |what| SnykError::Unexpected {
            status: StatusCode::OK,
            what,
        };
        let mut ignores = Vec::new();
        for (issue_id, paths) in listed {
            for (path, rule) in paths.into_iter().flatten() {
                let rule: Rule = serde_json::from_value(rule)
                    .map_err(|_| unreadable("an ignore with reasonType and its fields"))?;
                let fits = |s: &str, max: usize| s.len() <= max && !s.chars().any(char::is_control);
                if !fits(&issue_id, MAX_ID)
                    || !fits(&path, MAX_TEXT)
                    || !fits(&rule.reason, MAX_TEXT)
                    || !fits(&rule.reason_type, MAX_ID)
                    || !rule.expires.as_deref().is_none_or(|e| fits(e, MAX_ID))
                {
                    return Err(unreadable("an ignore within bb2snyk's bounds"));
                }
                ignores.push(Ignore {
                    issue_id: issue_id.clone(),
                    path,
                    reason: rule.reason,
                    reason_type: rule.reason_type,
                    disregard_if_fixable: rule.disregard_if_fixable,
                    expires: rule.expires,
                });
                if ignores.len() > MAX_IGNORES {
                    return Err(unreadable("at most 10,000 ignores on a project"));
                }
            }
        }
        ignores.sort();
        Ok(ignores)
    }

    /// Ignores `ignore.issue_id` on `ignore.path` of the project, with its reason and expiry
    /// (`POST …/project/{id}/ignore/{issueId}`). Snyk keeps one ignore per issue and path: the same again
    /// replaces it, so a repeat after a lost answer does no harm.
    pub async fn add_ignore(
        &self,
        org_id: &str,
        project_id: &str,
        ignore: &Ignore,
    ) -> Result<(), SnykError> {
        let path = format!(
            "/org/{}/project/{}/ignore/{}",
            segment(org_id),
            segment(project_id),
            segment(&ignore.issue_id)
        );
        let mut body = json!({
            "ignorePath": ignore.path,
            "reason": ignore.reason,
            "reasonType": ignore.reason_type,
            "disregardIfFixable": ignore.disregard_if_fixable,
        });
        if let Some(expires) = &ignore.expires {
            body["expires"] = json!(expires);
        }
        let call = Call {
            endpoint: "/org/{org}/project/{project}/ignore/{issue}",
            about: org_id,
        };
        self.request(call, Method::POST, &self.url(&path), Some(&body))
            .await
            .map(drop)
    }
}
