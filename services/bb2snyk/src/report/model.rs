//! The report's contract: the JSON document (the CSV has its `repositories`), built from the importer's
//! `coverage.listed` parts and the reasons imports failed.

use std::collections::BTreeMap;

use bb2snyk_messages::{Coverage, CoverageListed};
use bb2snyk_settings::Settings;
use serde::{Deserialize, Serialize};

use super::failures::Failures;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub group_id: String,
    pub generated_at: String,
    pub totals: Counts,
    pub workspaces: Vec<WorkspaceCounts>,
    pub repositories: Vec<Row>,
    pub orphaned: Vec<OrphanRow>,
    /// What could not be read (a workspace, an org): the report leaves it out and exits 6.
    pub incomplete: Vec<String>,
    /// Workspaces whose listing Bitbucket filtered (`--updatedSince`, one `--projectKeys`): repositories
    /// it left out are not counted.
    pub narrowed: Vec<String>,
    /// What importing the rest would take at the configured budgets.
    pub estimate: Estimate,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub repositories: u64,
    pub imported: u64,
    pub missing: u64,
    pub stale: u64,
    pub failed: u64,
    pub empty: u64,
    pub skipped: u64,
    /// imported ÷ (repositories − empty − skipped) × 100, to one decimal; 100 when nothing is to cover.
    pub coverage_percent: f64,
}

impl Counts {
    fn add(&mut self, status: Coverage) {
        self.repositories += 1;
        *match status {
            Coverage::Imported => &mut self.imported,
            Coverage::Missing => &mut self.missing,
            Coverage::Stale => &mut self.stale,
            Coverage::Failed => &mut self.failed,
            Coverage::Empty => &mut self.empty,
            Coverage::Skipped => &mut self.skipped,
        } += 1;
    }

    pub fn of(&self, status: Coverage) -> u64 {
        match status {
            Coverage::Imported => self.imported,
            Coverage::Missing => self.missing,
            Coverage::Stale => self.stale,
            Coverage::Failed => self.failed,
            Coverage::Empty => self.empty,
            Coverage::Skipped => self.skipped,
        }
    }

    fn close(&mut self) {
        let coverable = self.repositories - self.empty - self.skipped;
        self.coverage_percent = if coverable == 0 {
            100.0
        } else {
            (self.imported as f64 * 1000.0 / coverable as f64).round() / 10.0
        };
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceCounts {
    pub workspace: String,
    /// None when no org serves the workspace.
    pub org_id: Option<String>,
    #[serde(flatten)]
    pub counts: Counts,
}

/// One repository; the CSV's line has these fields in this order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    pub workspace: String,
    pub slug: String,
    pub status: Coverage,
    pub reason: Option<String>,
    pub branch: Option<String>,
    pub projects: u32,
    pub last_imported: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrphanRow {
    pub workspace: String,
    pub slug: String,
    pub org_id: String,
    pub projects: u32,
}

/// What importing the missing, failed and stale repositories would take: Snyk's requests at the
/// configured budget over every token. Snyk's own work on each job comes on top.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub imports: u64,
    pub requests: u64,
    pub tokens: u64,
    pub requests_per_minute: u64,
    pub minutes: f64,
}

/// Snyk v1 requests one import takes: its POST and the polls of its job (BENCHMARKS.md measures 2.09
/// with jobs of 5 s and 2.14 with jobs of 1-60 s).
const REQUESTS_PER_IMPORT: f64 = 2.15;

impl Estimate {
    pub fn new(settings: &Settings, totals: &Counts) -> Self {
        let imports = totals.missing + totals.failed + totals.stale;
        let tokens =
            (settings.snyk.tokens.len() + usize::from(settings.snyk.token.is_some())).max(1) as u64;
        let window = settings.snyk.rate_window.as_secs_f64().max(1.0);
        let per_minute = (f64::from(settings.snyk.rate_budget) * 60.0 / window) as u64 * tokens;
        let requests = (imports as f64 * REQUESTS_PER_IMPORT).ceil() as u64;
        Self {
            imports,
            requests,
            tokens,
            requests_per_minute: per_minute,
            minutes: (requests as f64 * 10.0 / per_minute.max(1) as f64).ceil() / 10.0,
        }
    }
}

impl Report {
    /// The report of `listed` (every part of every workspace), failed imports marked from `failures`.
    pub fn build(group_id: &str, listed: Vec<CoverageListed>, failures: &Failures) -> Self {
        let mut report = Report {
            group_id: group_id.to_owned(),
            generated_at: crate::files::now(),
            ..Report::default()
        };
        let mut by_workspace: BTreeMap<String, Vec<CoverageListed>> = BTreeMap::new();
        for part in listed {
            by_workspace
                .entry(part.subject.clone())
                .or_default()
                .push(part);
        }
        for (workspace, mut parts) in by_workspace {
            parts.sort_by_key(|p| p.part);
            parts.dedup_by_key(|p| p.part);
            let whole = parts.first().map_or(0, |p| p.parts);
            if parts.len() != whole as usize {
                report.incomplete.push(format!(
                    "workspace {workspace}: {} of {whole} parts of its listing arrived",
                    parts.len()
                ));
                continue;
            }
            let org_id = parts[0].org_id.clone();
            let mut counts = Counts::default();
            if parts.iter().any(|p| p.narrowed) {
                report.narrowed.push(workspace.clone());
            }
            for mut part in parts {
                for repo in std::mem::take(&mut part.repositories) {
                    let mut row = Row {
                        workspace: workspace.clone(),
                        slug: repo.slug,
                        status: repo.status,
                        reason: repo.reason,
                        branch: repo.branch,
                        projects: repo.projects,
                        last_imported: repo.last_imported,
                    };
                    if row.status == Coverage::Missing
                        && let Some(why) = failures.of(&part, &row)
                    {
                        row.status = Coverage::Failed;
                        row.reason = Some(why);
                    }
                    counts.add(row.status);
                    report.totals.add(row.status);
                    report.repositories.push(row);
                }
                report.orphaned.extend(part.orphaned.into_iter().map(|o| {
                    OrphanRow {
                        workspace: workspace.clone(),
                        slug: o.slug,
                        org_id: part
                            .org_id
                            .as_ref()
                            .map(ToString::to_string)
                            .unwrap_or_default(),
                        projects: o.projects,
                    }
                }));
            }
            counts.close();
            report.workspaces.push(WorkspaceCounts {
                workspace,
                org_id: org_id.map(String::from),
                counts,
            });
        }
        report.totals.close();
        report
    }
}
