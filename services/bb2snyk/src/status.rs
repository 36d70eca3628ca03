//! `bb2snyk status`: every queue's depth, the parked total with its most frequent reasons, and a run's
//! counts from the ledger; as text, or as one JSON document (`--json`) of [`StatusReport`].

use std::{collections::BTreeMap, io::IsTerminal, time::Duration};

use bb2snyk_broker::admin::QueueStatus;
use bb2snyk_ledger::{LastSync, Ledger, RunCounts};
use bb2snyk_settings::Settings;
use bb2snyk_store::Store;
use serde::Serialize;

use crate::{Failure, cli::StatusArgs};

/// Parked messages read for the reason tally; the count itself is exact.
const REASON_SAMPLE: usize = 200;
/// Reasons shown, most frequent first.
const TOP_REASONS: usize = 5;

#[derive(Debug, Serialize)]
pub struct StatusReport {
    /// Where the numbers came from: with or without the management API.
    pub source: String,
    pub queues: Vec<QueueStatus>,
    pub parked: Parked,
    /// The run's counts, when `--run` was given.
    pub run: Option<RunStatus>,
    /// Each synced org's last sync, from Redis (empty when none ran, or Redis did not answer).
    pub syncs: Vec<SyncStatus>,
}

#[derive(Debug, Serialize)]
pub struct SyncStatus {
    pub org_id: String,
    #[serde(flatten)]
    pub last: LastSync,
}

#[derive(Debug, Serialize)]
pub struct Parked {
    pub total: u64,
    pub reasons: Vec<ReasonCount>,
}

#[derive(Debug, Serialize)]
pub struct ReasonCount {
    pub reason: String,
    pub count: u64,
}

#[derive(Debug, Serialize)]
pub struct RunStatus {
    pub id: String,
    pub counts: RunCounts,
}

pub async fn status(settings: &Settings, args: &StatusArgs) -> Result<(), Failure> {
    loop {
        let report = snapshot(settings, args).await?;
        if args.json {
            let json = serde_json::to_string(&report)
                .map_err(|e| Failure::Failed(format!("cannot write the report: {e}")))?;
            println!("{json}");
        } else {
            if args.watch && std::io::stdout().is_terminal() {
                print!("\x1b[2J\x1b[H");
            }
            print(&report);
        }
        if !args.watch {
            if args.fail_on_parked && report.parked.total > 0 {
                return Err(Failure::Failed(format!(
                    "{} message(s) parked",
                    report.parked.total
                )));
            }
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

async fn snapshot(settings: &Settings, args: &StatusArgs) -> Result<StatusReport, Failure> {
    let admin = crate::fleet::admin(settings).await?;
    let parked_queues: Vec<String> = admin
        .topology()
        .queues
        .iter()
        .map(|q| admin.topology().parked(q))
        .collect();
    let mut queues = Vec::new();
    let mut managed = true;
    let mut total = 0;
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    for name in admin.queue_names() {
        let (status, answered) = admin.queue(&name).await?;
        managed &= answered;
        if parked_queues.contains(&name) {
            total += status.ready + status.unacked.unwrap_or(0);
            for reason in admin.parked_reasons(&name, REASON_SAMPLE).await? {
                *reasons.entry(reason).or_default() += 1;
            }
        }
        queues.push(status);
    }
    admin.close().await;
    let mut reasons: Vec<ReasonCount> = reasons
        .into_iter()
        .map(|(reason, count)| ReasonCount { reason, count })
        .collect();
    reasons.sort_by(|a, b| b.count.cmp(&a.count).then(a.reason.cmp(&b.reason)));
    reasons.truncate(TOP_REASONS);
    // One connection for the ledger. The run's counts need it; each org's last sync is shown when Redis
    // answers, since the queues are worth showing without it.
    let ledger = match Store::connect(&settings.redis.url, &settings.redis.prefix).await {
        Ok(store) => Some(Ledger::new(store)),
        Err(e) if args.run.is_some() => return Err(e.into()),
        Err(_) => None,
    };
    let run = match (&args.run, &ledger) {
        (Some(run), Some(ledger)) => Some(RunStatus {
            id: run.clone(),
            counts: ledger.counts(run).await?,
        }),
        _ => None,
    };
    let syncs = match &ledger {
        Some(ledger) => ledger
            .last_syncs()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|(org_id, last)| SyncStatus { org_id, last })
            .collect(),
        None => Vec::new(),
    };
    let source = if managed {
        "broker and management API"
    } else {
        "passive declare (management API unreachable: no unacked counts or rates)"
    };
    Ok(StatusReport {
        source: source.to_owned(),
        queues,
        parked: Parked { total, reasons },
        run,
        syncs,
    })
}

fn print(report: &StatusReport) {
    println!("Queues ({})", report.source);
    println!(
        "  {:<44} {:>8} {:>8} {:>9} {:>9} {:>9}",
        "queue", "ready", "unacked", "consumers", "in/s", "acked/s"
    );
    let count = |n: Option<u64>| n.map_or_else(|| "-".to_owned(), |n| n.to_string());
    let rate = |r: Option<f64>| r.map_or_else(|| "-".to_owned(), |r| format!("{r:.1}"));
    for q in &report.queues {
        println!(
            "  {:<44} {:>8} {:>8} {:>9} {:>9} {:>9}",
            q.name,
            q.ready,
            count(q.unacked),
            q.consumers,
            rate(q.publish_rate),
            rate(q.ack_rate),
        );
    }
    println!("Parked: {}", report.parked.total);
    for r in &report.parked.reasons {
        println!("  {:>5} × {}", r.count, r.reason);
    }
    if !report.syncs.is_empty() {
        println!("Last sync of each org");
        println!(
            "  {:<32} {:<38} {:>9} {:>5} {:>8} {:>7} {:>8}",
            "workspace", "org", "ago", "new", "renamed", "branch", "deleted"
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        for s in &report.syncs {
            let l = &s.last;
            let ago = Duration::from_millis(now.saturating_sub(l.at_ms));
            println!(
                "  {:<32} {:<38} {:>8}m {:>5} {:>8} {:>7} {:>8}{}",
                l.workspace,
                s.org_id,
                ago.as_secs() / 60,
                l.new,
                l.renamed,
                l.branch_changed,
                l.deleted,
                if l.dry_run { "  (dry run)" } else { "" }
            );
        }
    }
    if let Some(run) = &report.run {
        let c = &run.counts;
        println!(
            "Run {}: {} discovered, {} orgs ready, {} imported, {} failed (retrying), {} parked, {} in flight, {} skipped",
            run.id, c.discovered, c.orgs, c.imported, c.failed, c.parked, c.requested, c.skipped,
        );
    }
}
