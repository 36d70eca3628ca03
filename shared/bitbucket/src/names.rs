//! The Snyk org each workspace gets, by name. snyk-api-import names orgs after the workspace's display
//! name, so bb2snyk does too (orgs it made are reused); display names are not unique in Bitbucket, and Snyk
//! limits org names to 60 characters, so the names are made unique and short, the same way every time.

use std::collections::{BTreeMap, HashMap};

use crate::{Bitbucket, BitbucketError, Workspace};

/// Snyk's longest org name, in characters.
pub const MAX_ORG_NAME: usize = 60;

/// The org name of each workspace, in order: its display name (its slug when it has none); where several
/// share a display name, the first by slug keeps it and the others become `Name (slug)`; a name over
/// [`MAX_ORG_NAME`] is cut and ends with a hash of the whole, so it stays unique.
pub fn org_names(workspaces: &[Workspace]) -> Vec<String> {
    let base = |w: &Workspace| {
        w.name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .unwrap_or(&w.slug)
            .to_owned()
    };
    let mut first_by_name: BTreeMap<String, &str> = BTreeMap::new();
    for w in workspaces {
        let entry = first_by_name.entry(base(w)).or_insert(&w.slug);
        if w.slug.as_str() < *entry {
            *entry = &w.slug;
        }
    }
    workspaces
        .iter()
        .map(|w| {
            let name = base(w);
            let unique = if first_by_name.get(&name) == Some(&w.slug.as_str()) {
                name
            } else {
                format!("{name} ({})", w.slug)
            };
            shortened(&unique)
        })
        .collect()
}

/// The name a workspace's org takes when an org of its own name serves another workspace: `Name (slug)`,
/// shortened as [`org_names`] does.
pub fn disambiguated(name: &str, slug: &str) -> String {
    if name.ends_with(&format!(" ({slug})")) {
        return shortened(name);
    }
    shortened(&format!("{name} ({slug})"))
}

/// `name` itself when it fits, else its first characters, `-` and 8 hex digits of a hash of all of it.
fn shortened(name: &str) -> String {
    if name.chars().count() <= MAX_ORG_NAME {
        return name.to_owned();
    }
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let head: String = name.chars().take(MAX_ORG_NAME - 9).collect();
    format!("{}-{:08x}", head.trim_end(), hash & 0xffff_ffff)
}

impl Bitbucket {
    /// The workspaces with their display names: `/2.0/user/workspaces` gives none (CHANGE-2770), so each
    /// missing one is read from `GET /2.0/workspaces/{slug}`, once per process.
    pub async fn named_workspaces(&self) -> Result<Vec<Workspace>, BitbucketError> {
        let mut workspaces = self.workspaces().await?;
        for w in workspaces.iter_mut().filter(|w| w.name.is_none()) {
            w.name = self.display_name(&w.slug).await?;
        }
        Ok(workspaces)
    }

    async fn display_name(&self, slug: &str) -> Result<Option<String>, BitbucketError> {
        if let Some(name) = self.names_seen().get(slug) {
            return Ok(name.clone());
        }
        let mut url = format!("{}/workspaces/", self.api_base());
        url.extend(url::form_urlencoded::byte_serialize(slug.as_bytes()));
        let about = bb2snyk_http::Call::new("/workspaces/{workspace}", slug);
        let workspace: Workspace = self.get(about, &url).await?;
        self.names_seen()
            .insert(slug.to_owned(), workspace.name.clone());
        Ok(workspace.name)
    }
}

/// Display names read so far, by slug.
pub(crate) type Names = std::sync::Mutex<HashMap<String, Option<String>>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn ws(slug: &str, name: Option<&str>) -> Workspace {
        Workspace {
            slug: slug.into(),
            name: name.map(str::to_owned),
            uuid: None,
        }
    }

    #[test]
    fn names_are_display_names_made_unique_and_short() {
        let long = "A".repeat(70);
        let workspaces = [
            ws("north-payments", Some("North Payments")),
            ws("north-2", Some("North Payments")),
            ws("acme", None),
            ws("long-1", Some(&long)),
            ws("long-2", Some(&long)),
        ];
        let names = org_names(&workspaces);
        assert_eq!(names[0], "North Payments (north-payments)");
        assert_eq!(
            names[1], "North Payments",
            "the first by slug keeps the name"
        );
        assert_eq!(names[2], "acme");
        assert!(names.iter().all(|n| n.chars().count() <= MAX_ORG_NAME));
        let unique: std::collections::HashSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        assert_eq!(org_names(&workspaces), names, "the same every time");
    }
}
