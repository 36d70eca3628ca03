//! What moves with a legacy project onto its App counterpart (the App project of the same repository,
//! branch and manifest): its tags and attributes (one implementation of setting a project's metadata, the
//! Snyk client's), its ignores that have not expired, and then the mark and the retirement of the legacy
//! project. Each step looks first, so a step done before (an interrupted run) is not done again.

use bb2snyk_snyk::{Client as Snyk, Ignore, Metadata, OrgProject, SnykError};

use super::{MIGRATED_TAG, find::Legacy};

/// What one legacy project's move did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    pub metadata_set: bool,
    pub ignores_copied: u32,
    pub ignores_expired: u32,
    pub retired: bool,
}

/// `app`'s metadata with `legacy`'s added: its tags (but the migration's mark) and its attributes.
pub fn merged(app: &Metadata, legacy: &Metadata) -> Metadata {
    let mut out = app.clone();
    for tag in legacy.tags.iter().filter(|(key, _)| key != MIGRATED_TAG) {
        if !out.tags.contains(tag) {
            out.tags.push(tag.clone());
        }
    }
    for (into, from) in [
        (&mut out.criticality, &legacy.criticality),
        (&mut out.environment, &legacy.environment),
        (&mut out.lifecycle, &legacy.lifecycle),
    ] {
        for value in from {
            if !into.contains(value) {
                into.push(value.clone());
            }
        }
    }
    out
}

fn same(a: &Metadata, b: &Metadata) -> bool {
    let sorted = |m: &Metadata| {
        let mut m = m.clone();
        m.tags.sort();
        m.criticality.sort();
        m.environment.sort();
        m.lifecycle.sort();
        m
    };
    sorted(a) == sorted(b)
}

/// The ignores of `legacy` still in force (an ignore past its expiry no longer applies: it is not
/// carried), and how many had expired.
pub async fn legacy_ignores(snyk: &Snyk, legacy: &Legacy) -> Result<(Vec<Ignore>, u32), SnykError> {
    let now = crate::files::now();
    let all = snyk.ignores(&legacy.org_id, &legacy.project.id).await?;
    let (live, expired): (Vec<Ignore>, Vec<Ignore>) = all.into_iter().partition(|i| {
        i.expires
            .as_deref()
            .is_none_or(|e| e.get(..19).unwrap_or(e) > now.get(..19).unwrap_or(&now))
    });
    Ok((live, u32::try_from(expired.len()).unwrap_or(u32::MAX)))
}

/// Moves `legacy` onto `app` (in `app_org`), then marks and retires it (`delete`: deletes it).
pub async fn move_project(
    snyk: &Snyk,
    legacy: &Legacy,
    app_org: &str,
    app: &OrgProject,
    delete: bool,
) -> Result<Copied, SnykError> {
    let mut copied = Copied::default();
    let wanted = merged(&app.metadata, &legacy.project.metadata);
    if !same(&wanted, &app.metadata) {
        snyk.set_metadata(app_org, &app.id, &wanted).await?;
        copied.metadata_set = true;
    }
    let (ignores, expired) = legacy_ignores(snyk, legacy).await?;
    copied.ignores_expired = expired;
    if !ignores.is_empty() {
        let present = snyk.ignores(app_org, &app.id).await?;
        for ignore in &ignores {
            let there = present
                .iter()
                .any(|p| p.issue_id == ignore.issue_id && p.path == ignore.path);
            if !there {
                snyk.add_ignore(app_org, &app.id, ignore).await?;
                copied.ignores_copied += 1;
            }
        }
    }
    // The mark is Snyk's record that this project was moved, and to which: what `--delete` trusts.
    if legacy.migrated_to() != Some(app.id.as_str()) {
        let mut marked = legacy.project.metadata.clone();
        marked.tags.retain(|(key, _)| key != MIGRATED_TAG);
        marked.tags.push((MIGRATED_TAG.to_owned(), app.id.clone()));
        snyk.set_metadata(&legacy.org_id, &legacy.project.id, &marked)
            .await?;
    }
    if delete {
        snyk.delete_project(&legacy.org_id, &legacy.project.id)
            .await?;
        copied.retired = true;
    } else if legacy.project.active {
        snyk.deactivate_project(&legacy.org_id, &legacy.project.id)
            .await?;
        copied.retired = true;
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(tags: &[(&str, &str)], criticality: &[&str]) -> Metadata {
        Metadata {
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            criticality: criticality.iter().map(|c| (*c).to_owned()).collect(),
            ..Metadata::default()
        }
    }

    #[test]
    fn the_legacy_metadata_is_added_to_the_apps_but_the_mark() {
        let app = meta(&[("team", "web")], &["low"]);
        let legacy = meta(
            &[("team", "web"), ("cost", "7"), (MIGRATED_TAG, "x")],
            &["high"],
        );
        let out = merged(&app, &legacy);
        assert_eq!(
            out,
            meta(&[("team", "web"), ("cost", "7")], &["low", "high"])
        );
        assert!(
            same(&merged(&out, &legacy), &out),
            "merging again changes nothing"
        );
    }
}
