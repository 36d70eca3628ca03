//! The report as text: a table for people, JSON and CSV for tools.

use std::fmt::Write;

use bb2snyk_messages::Coverage;

use super::model::{Counts, Report, Row};
use crate::Failure;

/// Repositories not imported that the table names; the other formats have them all.
const SHOWN: usize = 50;

pub fn json(report: &Report) -> Result<String, Failure> {
    serde_json::to_string_pretty(report)
        .map(|mut s| {
            s.push('\n');
            s
        })
        .map_err(|e| Failure::Failed(format!("cannot write the report as JSON: {e}")))
}

/// One line per repository, the fields of the JSON's `repositories[]` in order (RFC 4180 quoting).
pub fn csv(report: &Report) -> String {
    let mut out = String::from("workspace,slug,status,reason,branch,projects,last_imported\r\n");
    for r in &report.repositories {
        let fields = [
            cell(&r.workspace),
            cell(&r.slug),
            r.status.as_str().to_owned(),
            cell(r.reason.as_deref().unwrap_or_default()),
            cell(r.branch.as_deref().unwrap_or_default()),
            r.projects.to_string(),
            cell(r.last_imported.as_deref().unwrap_or_default()),
        ];
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    out
}

/// A CSV field: quoted when it holds a comma, quote or line break; a leading `=`, `+`, `-` or `@` (a
/// branch name can start so) is prefixed with `'` so no spreadsheet takes it for a formula.
fn cell(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let header = "workspace                        repos imported  stale missing failed  empty skipped coverage";
    let _ = writeln!(
        out,
        "Coverage of group {} at {}",
        report.group_id, report.generated_at
    );
    let _ = writeln!(out, "{header}");
    for w in &report.workspaces {
        let _ = writeln!(out, "{}", line(&w.workspace, &w.counts));
    }
    let _ = writeln!(out, "{}", line("total", &report.totals));
    let not_imported: Vec<&Row> = report
        .repositories
        .iter()
        .filter(|r| !matches!(r.status, Coverage::Imported))
        .collect();
    if !not_imported.is_empty() {
        let _ = writeln!(out, "\nNot imported:");
        for r in not_imported.iter().take(SHOWN) {
            let _ = writeln!(
                out,
                "  {:<8} {}/{}: {}",
                r.status.as_str(),
                r.workspace,
                r.slug,
                r.reason.as_deref().unwrap_or_default()
            );
        }
        if not_imported.len() > SHOWN {
            let _ = writeln!(
                out,
                "  ... and {} more (--format=csv, json or html lists them all)",
                not_imported.len() - SHOWN
            );
        }
    }
    if !report.orphaned.is_empty() {
        let _ = writeln!(
            out,
            "\nIn Snyk, gone from Bitbucket (a 404): `bb2snyk sync` retires them"
        );
        for o in &report.orphaned {
            let _ = writeln!(
                out,
                "  {}/{}: {} project(s) in org {}",
                o.workspace, o.slug, o.projects, o.org_id
            );
        }
    }
    let e = &report.estimate;
    if e.imports > 0 {
        let _ = writeln!(
            out,
            "\nImporting the {} missing, failed and stale repositories takes about {} Snyk requests: {:.1} min at {} requests a minute ({} token(s)), besides Snyk's own time on each job.",
            e.imports, e.requests, e.minutes, e.requests_per_minute, e.tokens
        );
    }
    if !report.narrowed.is_empty() {
        let _ = writeln!(
            out,
            "\nBitbucket filtered the listing of {} (--updatedSince or one --projectKeys): repositories it left out are not counted.",
            report.narrowed.join(", ")
        );
    }
    for what in &report.incomplete {
        let _ = writeln!(out, "\nIncomplete: {what}");
    }
    out
}

fn line(name: &str, c: &Counts) -> String {
    format!(
        "{name:<32} {:>5} {:>8} {:>6} {:>7} {:>6} {:>6} {:>7} {:>7.1} %",
        c.repositories,
        c.imported,
        c.stale,
        c.missing,
        c.failed,
        c.empty,
        c.skipped,
        c.coverage_percent
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csv_cell_is_quoted_and_never_a_formula() {
        assert_eq!(cell("plain"), "plain");
        assert_eq!(cell("a, b"), "\"a, b\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(cell("-x,y"), "\"'-x,y\"");
    }
}
