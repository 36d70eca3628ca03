//! `bb2snyk report`: which repositories of the tenant Snyk covers, and why not the others. The services'
//! own comparison runs in this process as a sync that changes nothing (`Sync::report`): one listing of each
//! workspace, one read of each org's targets and projects, Bitbucket asked about names it no longer lists.
//! The importer tells each workspace as `coverage.listed` events; this gathers them, adds the reasons
//! imports failed (the ledger in Redis, else `SNYK_LOG_PATH`'s failed-imports logs), and writes the
//! report as a table, JSON, CSV or a self-contained HTML page.

mod failures;
pub mod html;
mod model;
mod render;

use std::path::PathBuf;

use bb2snyk_messages::{Body, RunRequested};
use bb2snyk_settings::Settings;
use clap::{Args, ValueEnum};
pub use model::Report;

use crate::{
    Failure,
    embedded::{Embedded, Logs, Stages},
    files,
};

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The group whose orgs are compared with Bitbucket (or one org's workspace).
    #[command(flatten)]
    pub scope: crate::cli::Scope,
    #[command(flatten)]
    pub filters: crate::cli::Filters,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Where the report goes (stdout when absent).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Exit 1 when coverage is below this percentage (for CI).
    #[arg(long = "fail-under", alias = "failUnder", value_name = "PCT")]
    pub fail_under: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
    Html,
}

pub async fn report(settings: &Settings, args: &ReportArgs) -> Result<(), Failure> {
    if let Some(pct) = args.fail_under
        && !(0.0..=100.0).contains(&pct)
    {
        return Err(Failure::Config(format!(
            "--fail-under={pct} is not a percentage; give a number from 0 to 100"
        )));
    }
    let report = gather(settings, args).await?;
    let text = match args.format {
        Format::Table => render::table(&report),
        Format::Json => render::json(&report)?,
        Format::Csv => render::csv(&report),
        Format::Html => html::page(&report),
    };
    match &args.output {
        Some(path) => {
            write(path, &text)?;
            eprintln!("Report: {}", path.display());
        }
        None => print!("{text}"),
    }
    verdict(&report, args.fail_under)
}

pub fn write(path: &std::path::Path, text: &str) -> Result<(), Failure> {
    std::fs::write(path, text).map_err(|e| {
        Failure::Unavailable(format!(
            "cannot write the report to {}: {e}; check the directory exists and is writable",
            path.display()
        ))
    })
}

impl ReportArgs {
    /// A report of the whole group, unfiltered.
    pub fn of_group(group_id: bb2snyk_messages::GroupId) -> Self {
        Self {
            scope: crate::cli::Scope {
                group_id,
                org_id: None,
            },
            filters: Default::default(),
            format: Format::Html,
            output: None,
            fail_under: None,
        }
    }
}

/// Reads the tenant and Snyk and builds the report; nothing is written to either.
pub async fn gather(settings: &Settings, args: &ReportArgs) -> Result<Report, Failure> {
    let dir = files::log_dir(&settings.import.log_path)?;
    let pipeline = Embedded::start(settings, Stages::All, std::iter::empty()).await?;
    let run_id = pipeline.run_id.clone();
    files::load_uuids(&dir, &pipeline.ledger).await?;
    pipeline.publish(&Body::RunRequested(RunRequested {
        run_id,
        group_id: args.scope.group_id.clone(),
        source_org_id: None,
        filters: args.filters.given(),
        sync: Some(bb2snyk_messages::Sync {
            dry_run: true,
            report: true,
            org_id: args.scope.org_id.clone(),
            ..Default::default()
        }),
    }));
    let mut logs = Logs::new(&dir);
    let summary = pipeline.finish(&mut logs, "report", None).await?;
    let listed = std::mem::take(&mut logs.coverage);
    let failures = failures::Failures::read(settings, &dir, &listed).await;
    let mut report = Report::build(&args.scope.group_id, listed, &failures);
    report.incomplete.extend(
        summary
            .parked
            .iter()
            .map(|(what, reason)| format!("{what}: {reason}")),
    );
    if summary.interrupted {
        report
            .incomplete
            .push("interrupted before every workspace was read".into());
    }
    report.estimate = model::Estimate::new(settings, &report.totals);
    Ok(report)
}

/// Exit 6 when some of the tenant could not be read, 1 when coverage is below `fail_under`.
fn verdict(report: &Report, fail_under: Option<f64>) -> Result<(), Failure> {
    if !report.incomplete.is_empty() {
        return Err(Failure::Incomplete(format!(
            "the report is incomplete; what could not be read: {}; fix the cause and run it again",
            report.incomplete.join("; ")
        )));
    }
    match fail_under {
        Some(pct) if report.totals.coverage_percent < pct => Err(Failure::Failed(format!(
            "coverage is {:.1} %, below --fail-under={pct}",
            report.totals.coverage_percent
        ))),
        _ => Ok(()),
    }
}
