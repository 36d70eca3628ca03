//! The dry run: per legacy org, each repository, the org it goes to, its projects, tags, attributes and
//! ignores; only reads.

use std::collections::BTreeMap;

use bb2snyk_snyk::Client as Snyk;

use super::{
    Entry, MIGRATED_TAG, copy, entry,
    find::{self, Move, Workspaces},
};
use crate::Failure;

/// The dry run: per legacy org, each repository, the org it goes to, its projects and ignores.
pub async fn plan(
    snyk: &Snyk,
    group_id: &str,
    moves: &[Move],
    workspaces: &Workspaces,
) -> Result<Vec<Entry>, Failure> {
    let orgs = snyk.group_orgs(group_id).await?;
    let mut by_org: BTreeMap<(String, String), Vec<(&Move, &find::Legacy)>> = BTreeMap::new();
    for m in moves {
        for legacy in &m.projects {
            by_org
                .entry((legacy.org_name.clone(), legacy.org_id.clone()))
                .or_default()
                .push((m, legacy));
        }
    }
    let mut entries = Vec::new();
    for ((name, id), projects) in by_org {
        println!("\nLegacy org {name} ({id}): {} project(s)", projects.len());
        for (m, legacy) in projects {
            let what = format!(
                "  {} ({}) {}",
                m.target(),
                m.branch.as_deref().unwrap_or("default branch"),
                legacy.project.target_file
            );
            if let Some(why) = &m.left {
                println!("{what}: left: {why}");
                entries.push(entry(m, legacy, "left", Some(why.clone())));
                continue;
            }
            let org_name = workspaces
                .found
                .get(&m.workspace)
                .map(|(_, n, _)| n.clone());
            let to = match orgs
                .iter()
                .find(|o| Some(&o.name) == org_name.as_ref() || o.name == m.workspace)
            {
                Some(org) => format!("org {} ({})", org.name, org.id),
                None => format!("a new org {}", org_name.as_deref().unwrap_or(&m.workspace)),
            };
            let (ignores, expired) = copy::legacy_ignores(snyk, legacy).await?;
            let meta = &legacy.project.metadata;
            println!(
                "{what} -> {to}: {} tag(s), {} attribute(s), {} ignore(s) to copy{}, then {}",
                meta.tags.iter().filter(|(k, _)| k != MIGRATED_TAG).count(),
                meta.criticality.len() + meta.environment.len() + meta.lifecycle.len(),
                ignores.len(),
                if expired > 0 {
                    format!(" ({expired} expired, not copied)")
                } else {
                    String::new()
                },
                if legacy.migrated_to().is_some() {
                    "delete it"
                } else {
                    "retire it"
                }
            );
            let mut e = entry(m, legacy, "planned", Some(to));
            e.ignores_copied = u32::try_from(ignores.len()).unwrap_or(u32::MAX);
            entries.push(e);
        }
    }
    Ok(entries)
}
