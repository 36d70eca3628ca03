//! Snyk's REST API beside v1: an org's targets (what is already imported, so an ambiguous import is not
//! posted again) and its projects (what a sync compares with Bitbucket), and retiring projects.

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::json;

use bb2snyk_http::Call;

use crate::{Client, SnykError, links::next_url, model, parse, segment};

/// The REST release the targets endpoint is read at (GA since 2024-02-21).
const REST_VERSION: &str = "2024-10-15";
/// Pages of targets read for one name before giving up (a server that keeps answering `next`).
const MAX_TARGET_PAGES: usize = 50;
/// Pages of an org's whole target list read at most: 100,000 targets, a few MiB of names.
const MAX_ORG_TARGET_PAGES: usize = 1000;
/// Pages of an org's new targets read for completion hints: 1,000 targets.
const MAX_NEW_TARGET_PAGES: usize = 10;
/// The REST release the projects endpoint is read at (GA).
const PROJECTS_VERSION: &str = "2024-05-31";
/// The origins Snyk reports for projects imported from Bitbucket Cloud: the app (reported as the connect
/// app), and the legacy integration.
const BITBUCKET_CLOUD_ORIGINS: [&str; 3] = [
    "bitbucket-connect-app",
    "bitbucket-cloud-app",
    "bitbucket-cloud",
];

/// A project imported from Bitbucket Cloud, as a sync needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgProject {
    pub id: String,
    /// The target's display name, `workspace/slug`.
    pub display_name: String,
    pub branch: Option<String>,
    /// False once deactivated.
    pub active: bool,
    /// When Snyk created it (RFC 3339), if it said.
    pub created: Option<String>,
    pub metadata: Metadata,
    /// `bitbucket-connect-app` for the App's, `bitbucket-cloud` for the legacy integration's.
    pub origin: String,
    /// The manifest it tests (`package.json`, `src/App/App.csproj`), empty when Snyk did not say.
    pub target_file: String,
}

/// A project's tags and attributes, as REST lists and sets them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    /// (key, value), in Snyk's order.
    pub tags: Vec<(String, String)>,
    pub criticality: Vec<String>,
    pub environment: Vec<String>,
    pub lifecycle: Vec<String>,
}

impl From<model::RestProject> for OrgProject {
    fn from(project: model::RestProject) -> Self {
        let display_name = project.display_name();
        let a = project.attributes;
        Self {
            display_name,
            active: a.status.as_deref() != Some("inactive"),
            branch: a.target_reference,
            created: a.created,
            origin: a.origin,
            target_file: a.target_file.unwrap_or_default(),
            metadata: Metadata {
                tags: a.tags.into_iter().map(|t| (t.key, t.value)).collect(),
                criticality: a.business_criticality,
                environment: a.environment,
                lifecycle: a.lifecycle,
            },
            id: project.id,
        }
    }
}

fn projects_call(org_id: &str) -> Call<'_> {
    Call {
        endpoint: "/orgs/{org}/projects",
        about: org_id,
    }
}

/// A 404 for a project means it is already gone: what a retire wants.
fn gone_is_done<T>(answer: Result<T, SnykError>) -> Result<(), SnykError> {
    match answer {
        Ok(_) => Ok(()),
        Err(SnykError::Rejected {
            status: StatusCode::NOT_FOUND,
            ..
        }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// A target as Snyk's projects show it imported: `workspace/slug` and the branch.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Imported {
    pub display_name: String,
    pub branch: Option<String>,
}

impl Client {
    /// Whether the org already has `display_name` (`workspace/slug`) as a target: REST targets, every page,
    /// compared exactly (the filter is a prefix match). A target appears once its import job has completed.
    pub async fn has_target(&self, org_id: &str, display_name: &str) -> Result<bool, SnykError> {
        let mut found = false;
        self.each_target(
            org_id,
            &format!("&display_name={}", segment(display_name)),
            MAX_TARGET_PAGES,
            |name| {
                found |= name == display_name;
                !found
            },
        )
        .await?;
        Ok(found)
    }

    /// The display names of the org's targets with projects created at `since_ms` (Unix ms) or later: the
    /// targets whose import jobs have lately made projects, which tells of many jobs in one request that
    /// they are (nearly) done. Only a hint: at most `MAX_NEW_TARGET_PAGES` pages are read, and a longer
    /// list is cut there.
    pub async fn new_targets(&self, org_id: &str, since_ms: u64) -> Result<Vec<String>, SnykError> {
        let url = format!(
            "{}/orgs/{}/targets?version={REST_VERSION}&limit=100&created_gte={}",
            self.rest_base,
            segment(org_id),
            bb2snyk_telemetry::clock::rfc3339_secs(since_ms),
        );
        let mut names = Vec::new();
        let call = Call {
            endpoint: "/orgs/{org}/targets",
            about: org_id,
        };
        self.each_item(
            call,
            url,
            MAX_NEW_TARGET_PAGES,
            |target: model::RestTarget| {
                names.push(target.attributes.display_name);
                true
            },
        )
        .await?;
        Ok(names)
    }

    /// The display names (`workspace/slug`) of every target the org has, of any source: what Snyk already
    /// holds, so nothing in it is imported again whatever a ledger remembers. At most
    /// `MAX_ORG_TARGET_PAGES` pages of 100; a longer list is an error rather than a silent part.
    pub async fn targets(&self, org_id: &str) -> Result<Vec<String>, SnykError> {
        let mut names = Vec::new();
        let whole = self
            .each_target(org_id, "", MAX_ORG_TARGET_PAGES, |name| {
                names.push(name.to_owned());
                true
            })
            .await?;
        if !whole {
            return Err(SnykError::Unexpected {
                status: StatusCode::OK,
                what: "end of the org's targets (more pages than bb2snyk reads)",
            });
        }
        Ok(names)
    }

    /// Every Bitbucket Cloud target the org's projects were imported from, with the branch, once each:
    /// what snyk-api-import's `list:imported` reads (REST projects, inactive ones included).
    pub async fn imported(&self, org_id: &str) -> Result<Vec<Imported>, SnykError> {
        let found: std::collections::BTreeSet<Imported> = self
            .projects(org_id)
            .await?
            .into_iter()
            .map(|p| Imported {
                display_name: p.display_name,
                branch: p.branch,
            })
            .collect();
        Ok(found.into_iter().collect())
    }

    /// The org's projects imported from Bitbucket Cloud (the app's and the legacy origins; inactive ones
    /// included), each with its target's display name and branch. At most `MAX_ORG_TARGET_PAGES` pages of
    /// 100; a longer list is an error rather than a silent part.
    pub async fn projects(&self, org_id: &str) -> Result<Vec<OrgProject>, SnykError> {
        let mut found = Vec::new();
        let url = format!(
            "{}/orgs/{}/projects?version={PROJECTS_VERSION}&limit=100&expand=target",
            self.rest_base,
            segment(org_id),
        );
        let whole = self
            .each_item(
                projects_call(org_id),
                url,
                MAX_ORG_TARGET_PAGES,
                |project: model::RestProject| {
                    if BITBUCKET_CLOUD_ORIGINS.contains(&project.attributes.origin.as_str()) {
                        found.push(OrgProject::from(project));
                    }
                    true
                },
            )
            .await?;
        if !whole {
            return Err(SnykError::Unexpected {
                status: StatusCode::OK,
                what: "end of the org's projects (more pages than bb2snyk reads)",
            });
        }
        Ok(found)
    }

    /// The org's Bitbucket Cloud projects among `ids` (at most 100 a call), with their metadata.
    pub async fn projects_by_ids(
        &self,
        org_id: &str,
        ids: &[String],
    ) -> Result<Vec<OrgProject>, SnykError> {
        let mut found = Vec::new();
        for chunk in ids.chunks(100) {
            let ids: Vec<String> = chunk.iter().map(|id| segment(id)).collect();
            let url = format!(
                "{}/orgs/{}/projects?version={PROJECTS_VERSION}&limit=100&expand=target&ids={}",
                self.rest_base,
                segment(org_id),
                ids.join(","),
            );
            self.each_item(
                projects_call(org_id),
                url,
                2,
                |project: model::RestProject| {
                    if BITBUCKET_CLOUD_ORIGINS.contains(&project.attributes.origin.as_str()) {
                        found.push(OrgProject::from(project));
                    }
                    true
                },
            )
            .await?;
        }
        Ok(found)
    }

    /// Sets a project's tags (the whole list) and attributes (REST `PATCH`; one call, the same again
    /// changes nothing).
    pub async fn set_metadata(
        &self,
        org_id: &str,
        project_id: &str,
        metadata: &Metadata,
    ) -> Result<(), SnykError> {
        let url = format!(
            "{}/orgs/{}/projects/{}?version={PROJECTS_VERSION}",
            self.rest_base,
            segment(org_id),
            segment(project_id)
        );
        let tags: Vec<serde_json::Value> = metadata
            .tags
            .iter()
            .map(|(key, value)| json!({"key": key, "value": value}))
            .collect();
        let body = json!({"data": {"type": "project", "id": project_id, "attributes": {
            "tags": tags,
            "business_criticality": metadata.criticality,
            "environment": metadata.environment,
            "lifecycle": metadata.lifecycle,
        }}});
        let call = Call {
            endpoint: "/orgs/{org}/projects/{project}",
            about: org_id,
        };
        self.request(call, Method::PATCH, &url, Some(&body))
            .await
            .map(drop)
    }

    /// Deactivates a project (v1; Snyk stops testing it and keeps its history). Done again, or for a
    /// project that is gone, it is no error.
    pub async fn deactivate_project(
        &self,
        org_id: &str,
        project_id: &str,
    ) -> Result<(), SnykError> {
        let path = format!(
            "/org/{}/project/{}/deactivate",
            segment(org_id),
            segment(project_id)
        );
        let call = Call {
            endpoint: "/org/{org}/project/{project}/deactivate",
            about: org_id,
        };
        gone_is_done(
            self.request(call, Method::POST, &self.url(&path), Some(&json!({})))
                .await,
        )
    }

    /// Activates a deactivated project again (v1): what undoes a sync's retirement. An active project
    /// stays so.
    pub async fn activate_project(&self, org_id: &str, project_id: &str) -> Result<(), SnykError> {
        let path = format!(
            "/org/{}/project/{}/activate",
            segment(org_id),
            segment(project_id)
        );
        let call = Call {
            endpoint: "/org/{org}/project/{project}/activate",
            about: org_id,
        };
        self.request(call, Method::POST, &self.url(&path), Some(&json!({})))
            .await
            .map(drop)
    }

    /// Deletes a project (REST). A project already gone is no error.
    pub async fn delete_project(&self, org_id: &str, project_id: &str) -> Result<(), SnykError> {
        let url = format!(
            "{}/orgs/{}/projects/{}?version={PROJECTS_VERSION}",
            self.rest_base,
            segment(org_id),
            segment(project_id)
        );
        let call = Call {
            endpoint: "/orgs/{org}/projects/{project}",
            about: org_id,
        };
        gone_is_done(self.request(call, Method::DELETE, &url, None).await)
    }

    /// Calls `visit` with each target's display name, page by page, until it returns false or the pages
    /// end; true when every page was read (or `visit` stopped), false when `max_pages` ran out first.
    async fn each_target(
        &self,
        org_id: &str,
        filter: &str,
        max_pages: usize,
        mut visit: impl FnMut(&str) -> bool,
    ) -> Result<bool, SnykError> {
        let url = format!(
            "{}/orgs/{}/targets?version={REST_VERSION}&limit=100&exclude_empty=false{filter}",
            self.rest_base,
            segment(org_id),
        );
        let call = Call {
            endpoint: "/orgs/{org}/targets",
            about: org_id,
        };
        self.each_item(call, url, max_pages, |target: model::RestTarget| {
            visit(&target.attributes.display_name)
        })
        .await
    }

    /// Calls `visit` with each item of a REST list, page by page, until it returns false or the pages
    /// end; true when every page was read (or `visit` stopped), false when `max_pages` ran out first.
    async fn each_item<T: DeserializeOwned>(
        &self,
        call: Call<'_>,
        mut url: String,
        max_pages: usize,
        mut visit: impl FnMut(T) -> bool,
    ) -> Result<bool, SnykError> {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..max_pages {
            let page: model::Page<T> =
                parse(&self.request(call, Method::GET, &url, None).await?.body)?;
            for item in page.data {
                if !visit(item) {
                    return Ok(true);
                }
            }
            match page.links.next.map(model::Link::into_href) {
                None => return Ok(true),
                Some(next) if next.is_empty() => return Ok(true),
                Some(next) => {
                    let follow = next_url(&self.rest_base, &next)?;
                    if !seen.insert(follow.clone()) {
                        return Err(SnykError::Unfollowable {
                            link: next.chars().take(200).collect(),
                            why: "it names a page already read",
                        });
                    }
                    url = follow;
                }
            }
        }
        Ok(false)
    }
}
