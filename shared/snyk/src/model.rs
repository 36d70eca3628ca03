//! The parts of Snyk's v1 objects bb2snyk reads and sends.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct OrgSummary {
    pub id: String,
    pub name: String,
    pub slug: Option<String>,
}

/// What `POST /org` answers (201).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct CreatedOrg {
    pub id: String,
    pub name: String,
    pub slug: Option<String>,
    pub created: Option<String>,
}

/// The import body's target for Bitbucket Cloud (App): workspace slug, repository slug, optional branch.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Target {
    pub owner: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ImportOptions {
    /// Only these manifest paths, relative to the repository root.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub files: Vec<String>,
    /// Comma-separated folder names to skip (Open Source and Container only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub exclusion_globs: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Pending,
    Complete,
    Failed,
    Aborted,
}

impl JobStatus {
    pub fn is_terminal(self) -> bool {
        self != Self::Pending
    }
}

/// An import job, as polling its `Location` answers.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Job {
    pub id: String,
    pub status: JobStatus,
    #[serde(default)]
    pub logs: Vec<JobLog>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct JobLog {
    pub name: Option<String>,
    pub status: Option<JobStatus>,
    #[serde(default)]
    pub projects: Vec<Project>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Project {
    #[serde(rename = "targetFile")]
    pub target_file: Option<String>,
    #[serde(default)]
    pub success: bool,
    #[serde(rename = "projectUrl")]
    pub project_url: Option<String>,
    #[serde(rename = "projectId")]
    pub project_id: Option<String>,
    #[serde(rename = "userMessage")]
    pub user_message: Option<String>,
}

impl Job {
    /// Every project of every log.
    pub fn projects(&self) -> impl Iterator<Item = &Project> {
        self.logs.iter().flat_map(|l| l.projects.iter())
    }

    /// Why the job failed, as far as its logs say.
    pub fn failure(&self) -> String {
        let messages: Vec<&str> = self
            .projects()
            .filter(|p| !p.success)
            .filter_map(|p| p.user_message.as_deref())
            .collect();
        if messages.is_empty() {
            format!("import job {} ended {:?}", self.id, self.status)
        } else {
            format!(
                "import job {} ended {:?}: {}",
                self.id,
                self.status,
                messages.join("; ")
            )
        }
    }
}

/// The payload snyk-api-import applies to every org it creates: no notification e-mails for an import.
pub fn quiet_notifications() -> serde_json::Value {
    serde_json::json!({
        "new-issues-remediations": {"enabled": false, "issueType": "none", "issueSeverity": "high"},
        "project-imported": {"enabled": false},
        "test-limit": {"enabled": false},
        "weekly-report": {"enabled": false}
    })
}

/// A page of a REST list (`targets`, `projects`): the parts read.
#[derive(Debug, Clone, Deserialize)]
pub struct Page<T> {
    pub data: Vec<T>,
    #[serde(default)]
    pub links: Links,
}

/// A project of `GET /rest/orgs/{org_id}/projects?expand=target`: the parts read.
#[derive(Debug, Clone, Deserialize)]
pub struct RestProject {
    pub id: String,
    pub attributes: RestProjectAttributes,
    #[serde(default)]
    pub relationships: Option<ProjectRelationships>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RestProjectAttributes {
    /// `workspace/slug:file`, or `workspace/slug(branch):file`.
    pub name: String,
    /// The branch.
    #[serde(default)]
    pub target_reference: Option<String>,
    #[serde(default)]
    pub target_file: Option<String>,
    pub origin: String,
    /// `active` or `inactive`.
    #[serde(default)]
    pub status: Option<String>,
    /// When Snyk created it (RFC 3339).
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub tags: Vec<RestTag>,
    #[serde(default)]
    pub business_criticality: Vec<String>,
    #[serde(default)]
    pub environment: Vec<String>,
    #[serde(default)]
    pub lifecycle: Vec<String>,
}

/// A project tag as REST lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct RestTag {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProjectRelationships {
    pub target: ProjectTarget,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProjectTarget {
    pub data: ProjectTargetData,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProjectTargetData {
    /// Present with `expand=target`.
    #[serde(default)]
    pub attributes: Option<RestTargetAttributes>,
}

impl RestProject {
    /// The target's display name (`workspace/slug`): the expanded target's, else read off the project's
    /// name, as snyk-api-import does.
    pub fn display_name(&self) -> String {
        self.relationships
            .as_ref()
            .and_then(|r| r.target.data.attributes.as_ref())
            .map(|a| a.display_name.clone())
            .unwrap_or_else(|| {
                let name = &self.attributes.name;
                let target = name.split(':').next().unwrap_or(name);
                target.split('(').next().unwrap_or(target).to_owned()
            })
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct RestTarget {
    pub attributes: RestTargetAttributes,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RestTargetAttributes {
    pub display_name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Links {
    #[serde(default)]
    pub next: Option<Link>,
}

/// A JSON:API link: a string, or an object with `href`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Link {
    Href(String),
    Object { href: String },
}

impl Link {
    pub fn into_href(self) -> String {
        match self {
            Self::Href(href) | Self::Object { href } => href,
        }
    }
}
