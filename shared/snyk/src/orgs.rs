//! The group's orgs: listing them, and creating one, never two.

use bb2snyk_http::Call;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use crate::{CREATE_TRIES, Client, CreatedOrg, ORGS_PER_PAGE, OrgSummary, SnykError, segment};

impl Client {
    /// Every org in the group: pages of 100 until a short one, as the API has no next link.
    pub async fn group_orgs(&self, group_id: &str) -> Result<Vec<OrgSummary>, SnykError> {
        #[derive(Deserialize)]
        struct Page {
            orgs: Vec<OrgSummary>,
        }
        let group = segment(group_id);
        let mut all = Vec::new();
        for page in 1..=bb2snyk_http::MAX_PAGES {
            let batch: Page = self
                .json(
                    Call {
                        endpoint: "/group/{group}/orgs",
                        about: group_id,
                    },
                    Method::GET,
                    &format!("/group/{group}/orgs?perPage={ORGS_PER_PAGE}&page={page}"),
                    None,
                )
                .await?;
            let short = batch.orgs.len() < ORGS_PER_PAGE;
            // A page that repeats the one before means the API ignores `page`: stop, or it never ends.
            let repeated = batch
                .orgs
                .first()
                .is_some_and(|first| all.iter().any(|o: &OrgSummary| o.id == first.id));
            if repeated {
                tracing::warn!(page, "Snyk's org list repeats a page; stopping here");
                break;
            }
            all.extend(batch.orgs);
            if short {
                break;
            }
        }
        Ok(all)
    }

    /// `POST /org`; Snyk answers 201. `source_org_id` copies that org's integrations and settings.
    pub async fn create_org(
        &self,
        name: &str,
        group_id: &str,
        source_org_id: Option<&str>,
    ) -> Result<CreatedOrg, SnykError> {
        let mut body = json!({"name": name, "groupId": group_id});
        if let Some(source) = source_org_id {
            body["sourceOrgId"] = json!(source);
        }
        let call = Call {
            endpoint: "/org",
            about: group_id,
        };
        self.json(call, Method::POST, "/org", Some(&body)).await
    }

    /// Creates an org, never two. After a failure that may have happened (a 5xx or timeout once the request
    /// was sent), the group is listed: an org of that name whose id is not among `known` (those of that name
    /// before the call) is the one this call made. Only when there is none is the create sent again.
    pub async fn create_org_once(
        &self,
        name: &str,
        group_id: &str,
        source_org_id: Option<&str>,
        known: &[String],
    ) -> Result<CreatedOrg, SnykError> {
        let mut tries = 0;
        loop {
            let error = match self.create_org(name, group_id, source_org_id).await {
                Err(e) if e.may_have_happened() => e,
                done => return done,
            };
            let made = self
                .group_orgs(group_id)
                .await?
                .into_iter()
                .find(|o| o.name == name && !known.contains(&o.id));
            if let Some(org) = made {
                tracing::info!(org = %org.id, %name, "an org creation whose answer was lost had happened");
                return Ok(CreatedOrg {
                    id: org.id,
                    name: org.name,
                    slug: org.slug,
                    created: None,
                });
            }
            tries += 1;
            if tries >= CREATE_TRIES {
                return Err(error);
            }
        }
    }
}
