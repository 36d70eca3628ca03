//! `bb2snyk sync`: the services' sync in this process, then a table of what changed (or would, with
//! `--dry-run`) and a JSON report in `SNYK_LOG_PATH`.

use std::collections::BTreeMap;

use bb2snyk_messages::{Body, ChangeKind, ProjectsRetired, RunRequested, SyncPlanned};
use bb2snyk_settings::Settings;
use serde_json::json;

use crate::{
    Failure,
    cli::SyncArgs,
    embedded::{Embedded, Logs, Stages},
    files,
};

pub async fn sync(settings: &Settings, args: &SyncArgs) -> Result<(), Failure> {
    let dir = files::log_dir(&settings.import.log_path)?;
    let sync = args.sync.given().unwrap_or_default();
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
    let mut planned = std::mem::take(&mut logs.planned);
    planned.sort_by(|a, b| a.subject.cmp(&b.subject));
    print_table(&planned, &logs.retired);
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
    Ok(())
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
        "{:<32} {:>5} {:>8} {:>15} {:>8} {:>9}",
        "workspace", "new", "renamed", "branch changed", "deleted", "retired"
    );
    let mut totals = [0usize; 5];
    for p in planned {
        if p.org_id.is_empty() {
            println!("{:<32} no org: `bb2snyk run` imports it", p.subject);
            continue;
        }
        let mut row = [0usize; 5];
        for (i, kind) in KINDS.iter().enumerate() {
            row[i] = p.changes.iter().filter(|c| c.kind == *kind).count();
        }
        row[4] = retired_in.get(p.org_id.as_str()).copied().unwrap_or(0);
        for (t, n) in totals.iter_mut().zip(row) {
            *t += n;
        }
        println!(
            "{:<32} {:>5} {:>8} {:>15} {:>8} {:>9}",
            p.subject, row[0], row[1], row[2], row[3], row[4]
        );
    }
    println!(
        "{:<32} {:>5} {:>8} {:>15} {:>8} {:>9}",
        "total", totals[0], totals[1], totals[2], totals[3], totals[4]
    );
    for p in planned {
        for c in &p.changes {
            let was = c
                .was
                .as_deref()
                .map(|w| format!(" (was {w})"))
                .unwrap_or_default();
            let projects = if c.projects > 0 {
                format!(", {} project(s) to retire", c.projects)
            } else {
                String::new()
            };
            println!("  {:<15} {}{was}{projects}", c.kind.as_str(), c.target);
        }
    }
}
