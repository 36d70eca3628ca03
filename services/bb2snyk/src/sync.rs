//! `bb2snyk sync`: the services' sync in this process, then a table of what changed (or would, with
//! `--dry-run`), what Bitbucket said of each repository Snyk has and the listing did not show, and a JSON
//! report in `SNYK_LOG_PATH` that `sync --undo` reads back.

mod undo;

use std::collections::BTreeMap;

use bb2snyk_messages::{Body, ChangeKind, ProjectsRetired, RunRequested, SyncPlanned, Verdict};
use bb2snyk_settings::Settings;
use serde_json::json;

use crate::{
    Failure,
    cli::SyncArgs,
    embedded::{Embedded, Logs, Stages},
    files,
};

pub async fn sync(settings: &Settings, args: &SyncArgs) -> Result<(), Failure> {
    if let Some(report) = &args.undo {
        return undo::undo(settings, report).await;
    }
    let dir = files::log_dir(&settings.import.log_path)?;
    let sync = args.sync.sync(settings);
    // Snyk, not a log, is the record a sync compares with.
    let pipeline = Embedded::start(settings, Stages::All, std::iter::empty()).await?;
    let run_id = pipeline.run_id.clone();
    let ledger = pipeline.ledger.clone();
    files::load_uuids(&dir, &ledger).await?;
    println!(
        "Sync {run_id} of group {}{}",
        args.group_id,
        if sync.dry_run {
            " (dry run: nothing is changed)"
        } else {
            ""
        }
    );
    pipeline.publish(&Body::RunRequested(RunRequested {
        run_id: run_id.clone(),
        group_id: args.group_id.clone(),
        source_org_id: None,
        filters: args.filters.given(),
        sync: Some(sync.clone()),
    }));
    let mut logs = Logs::new(&dir);
    let summary = pipeline.finish(&mut logs, "sync", None).await?;
    files::save_uuids(&dir, &ledger).await?;
    let planned = merged(std::mem::take(&mut logs.planned));
    print_table(&planned, &logs.retired);
    print_evidence(&planned);
    let path = dir.join(format!("sync-{run_id}.json"));
    files::write_json(
        &path,
        &json!({
            "run_id": run_id,
            "group_id": args.group_id,
            "dry_run": sync.dry_run,
            "delete": sync.delete,
            "finished": files::now(),
            "workspaces": planned,
            "retired": logs.retired,
        }),
    )?;
    println!("Report: {}", path.display());
    if !summary.parked.is_empty() || summary.interrupted {
        summary.report()?;
    }
    let braked: Vec<String> = planned
        .iter()
        .filter_map(|p| Some(format!("{} ({})", p.subject, p.braked.as_deref()?)))
        .collect();
    if !braked.is_empty() {
        return Err(Failure::Braked(format!(
            "the sync stopped before acting on {} org(s), and changed nothing there: {}; check the plan above, \
             then run it again with --allow-mass-retire to confirm",
            braked.len(),
            braked.join("; ")
        )));
    }
    Ok(())
}

/// One plan per workspace, its parts joined, in workspace order.
fn merged(parts: Vec<SyncPlanned>) -> Vec<SyncPlanned> {
    let mut by_workspace: BTreeMap<(String, String), SyncPlanned> = BTreeMap::new();
    for part in parts {
        let org = part
            .org_id
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        match by_workspace.entry((part.subject.clone(), org)) {
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(part);
            }
            std::collections::btree_map::Entry::Occupied(mut e) => {
                let whole = e.get_mut();
                whole.changes.extend(part.changes);
                whole.checked.extend(part.checked);
            }
        }
    }
    by_workspace.into_values().collect()
}

/// Repositories found alive or left unchecked that the output names; the report has them all.
const SHOWN: usize = 20;

/// What Bitbucket said of each repository Snyk has that the listings did not show.
fn print_evidence(planned: &[SyncPlanned]) {
    let narrowed = planned.iter().filter(|p| p.narrowed).count();
    if narrowed > 0 {
        println!(
            "Bitbucket filtered the listing of {narrowed} workspace(s) (--updatedSince or one --projectKeys): \
             nothing outside it was taken for deleted. Retiring the projects of deleted repositories needs a \
             sync without those filters."
        );
    }
    let checked: Vec<_> = planned.iter().flat_map(|p| &p.checked).collect();
    if checked.is_empty() {
        return;
    }
    let of = |v| checked.iter().filter(|c| c.verdict == v).count();
    println!(
        "In Snyk but not in the listing: {} confirmed gone (Bitbucket answered 404), {} found alive, {} left unchecked",
        of(Verdict::Gone),
        of(Verdict::Alive),
        of(Verdict::Unchecked)
    );
    let kept: Vec<_> = checked
        .iter()
        .filter(|c| c.verdict != Verdict::Gone)
        .collect();
    for c in kept.iter().take(SHOWN) {
        let verdict = match c.verdict {
            Verdict::Alive => "alive",
            _ => "unchecked",
        };
        println!("  {verdict:<15} {}: {}", c.target, c.detail);
    }
    if kept.len() > SHOWN {
        println!(
            "  ... and {} more, each with its evidence in the report",
            kept.len() - SHOWN
        );
    }
}

const KINDS: [ChangeKind; 4] = [
    ChangeKind::New,
    ChangeKind::Renamed,
    ChangeKind::BranchChanged,
    ChangeKind::Deleted,
];

fn print_table(planned: &[SyncPlanned], retired: &[ProjectsRetired]) {
    let mut retired_in: BTreeMap<&str, usize> = BTreeMap::new();
    for r in retired {
        *retired_in.entry(r.org_id.as_str()).or_default() += r.projects.len();
    }
    println!(
        "{:<32} {:>5} {:>8} {:>15} {:>8} {:>9} {:>9}",
        "workspace", "new", "renamed", "branch changed", "deleted", "retired", "metadata"
    );
    let mut totals = [0usize; 6];
    for p in planned {
        let Some(org_id) = &p.org_id else {
            println!("{:<32} no org: `bb2snyk run` imports it", p.subject);
            continue;
        };
        let mut row = [0usize; 6];
        for (i, kind) in KINDS.iter().enumerate() {
            row[i] = p.changes.iter().filter(|c| c.kind == *kind).count();
        }
        row[4] = retired_in.get(org_id.as_str()).copied().unwrap_or(0);
        // Projects whose tags or attributes the policy sets again.
        row[5] = p
            .changes
            .iter()
            .filter(|c| c.kind == ChangeKind::Metadata)
            .map(|c| c.projects as usize)
            .sum();
        for (t, n) in totals.iter_mut().zip(row) {
            *t += n;
        }
        println!(
            "{:<32} {:>5} {:>8} {:>15} {:>8} {:>9} {:>9}",
            p.subject, row[0], row[1], row[2], row[3], row[4], row[5]
        );
    }
    println!(
        "{:<32} {:>5} {:>8} {:>15} {:>8} {:>9} {:>9}",
        "total", totals[0], totals[1], totals[2], totals[3], totals[4], totals[5]
    );
    for p in planned {
        for c in &p.changes {
            let was = c
                .was
                .as_deref()
                .map(|w| format!(" (was {w})"))
                .unwrap_or_default();
            let projects = match (c.kind, c.projects) {
                (_, 0) => String::new(),
                (ChangeKind::Metadata, n) => format!(", {n} project(s) to set"),
                (_, n) => format!(", {n} project(s) to retire"),
            };
            println!("  {:<15} {}{was}{projects}", c.kind.as_str(), c.target);
        }
    }
}
