//! `bb2snyk sync --undo=REPORT`: reactivates every project the sync of REPORT deactivated. Deleted
//! projects cannot come back and are reported so. Each org's projects are read once first, so a project
//! already active is left alone: a second undo changes nothing.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
};

use bb2snyk_messages::ProjectsRetired;
use bb2snyk_settings::Settings;
use bb2snyk_snyk::Client as Snyk;
use serde::Deserialize;

use crate::Failure;

/// The largest report read: a sync of a million projects' ids.
const MAX_REPORT: u64 = 256 * 1024 * 1024;

#[derive(Debug, Deserialize)]
struct Report {
    run_id: String,
    #[serde(default)]
    retired: Vec<ProjectsRetired>,
}

/// What undo did with each retired project.
#[derive(Debug, Default)]
struct Tally {
    reactivated: usize,
    already_active: usize,
    deleted: usize,
    not_found: usize,
}

pub async fn undo(settings: &Settings, path: &Path) -> Result<(), Failure> {
    let report = read(path)?;
    let snyk = Snyk::from_settings(settings, crate::http(settings)?, None)?;
    let mut by_org: BTreeMap<&str, Vec<&ProjectsRetired>> = BTreeMap::new();
    for retired in &report.retired {
        by_org.entry(&retired.org_id).or_default().push(retired);
    }
    println!(
        "Undo of sync {}: {} retirement(s) in {} org(s)",
        report.run_id,
        report.retired.len(),
        by_org.len()
    );
    let mut tally = Tally::default();
    for (org, retirements) in by_org {
        let active: HashMap<String, bool> = snyk
            .projects(org)
            .await?
            .into_iter()
            .map(|p| (p.id, p.active))
            .collect();
        for retired in retirements {
            for id in &retired.projects {
                match (retired.deleted, active.get(id.as_str())) {
                    (true, _) => tally.deleted += 1,
                    (false, None) => tally.not_found += 1,
                    (false, Some(true)) => tally.already_active += 1,
                    (false, Some(false)) => {
                        snyk.activate_project(org, id).await?;
                        tally.reactivated += 1;
                    }
                }
            }
        }
    }
    println!(
        "reactivated {}, already active {}, deleted (not recoverable) {}, no longer in Snyk {}",
        tally.reactivated, tally.already_active, tally.deleted, tally.not_found
    );
    Ok(())
}

fn read(path: &Path) -> Result<Report, Failure> {
    let bad = |problem: String| {
        Failure::Config(format!(
            "--undo {}: {problem}; give the sync-<run>.json report a sync wrote in SNYK_LOG_PATH",
            path.display()
        ))
    };
    let size = std::fs::metadata(path)
        .map_err(|e| bad(e.to_string()))?
        .len();
    if size > MAX_REPORT {
        return Err(bad(format!("{size} bytes, more than a report holds")));
    }
    let text = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    serde_json::from_slice(&text).map_err(|e| bad(format!("not a sync report ({e})")))
}
