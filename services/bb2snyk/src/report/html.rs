//! The report as one self-contained HTML page: styles and script inline, no request when opened (its
//! Content-Security-Policy forbids any), readable printed. Everything is rendered here, so the page is
//! whole without script; the script only sorts and filters the table of repositories not imported.

use std::fmt::Write;

use bb2snyk_messages::Coverage;

use super::model::{Counts, Report};

const STYLE: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");

/// What a person reads first: the share of the tenant covered, then each status.
const TOTALS: [(&str, &str); 7] = [
    ("repositories", "Repositories"),
    ("imported", "Imported"),
    ("stale", "Stale"),
    ("missing", "Missing"),
    ("failed", "Failed"),
    ("empty", "Empty"),
    ("skipped", "Skipped"),
];

pub fn page(report: &Report) -> String {
    let mut out = String::with_capacity(64 * 1024 + report.repositories.len() * 256);
    let group = escape(&report.group_id);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n\
         <title>Snyk coverage of group {group}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n\
         <header>\n<h1>Snyk coverage of Bitbucket</h1>\n\
         <p class=\"meta\">Group <code>{group}</code>, read at {}</p>\n</header>\n<main>\n",
        escape(&report.generated_at)
    );
    totals(&mut out, &report.totals);
    workspaces(&mut out, report);
    repositories(&mut out, report);
    orphaned(&mut out, report);
    notes(&mut out, report);
    let _ = write!(
        out,
        "</main>\n<script>\n{SCRIPT}</script>\n</body>\n</html>\n"
    );
    out
}

fn totals(out: &mut String, t: &Counts) {
    let _ = write!(
        out,
        "<section aria-labelledby=\"totals-h\">\n<h2 id=\"totals-h\">Totals</h2>\n<dl class=\"totals\" id=\"totals\">\n\
         <div class=\"headline\"><dt>Coverage</dt><dd data-field=\"coverage_percent\">{:.1} %</dd></div>\n",
        t.coverage_percent
    );
    let value = |field: &str| match field {
        "repositories" => t.repositories,
        status => Coverage::ALL
            .iter()
            .find(|s| s.as_str() == status)
            .map_or(0, |s| t.of(*s)),
    };
    for (field, label) in TOTALS {
        let _ = writeln!(
            out,
            "<div><dt>{label}</dt><dd data-field=\"{field}\">{}</dd></div>",
            value(field)
        );
    }
    let _ = write!(
        out,
        "</dl>\n<p>Coverage is imported ÷ (repositories − empty − skipped).</p>\n</section>\n"
    );
}

/// A bar per workspace, each status's share in its colour and, beside it, in words.
fn bar(c: &Counts) -> String {
    let mut spans = String::new();
    let mut words = Vec::new();
    for status in Coverage::ALL {
        let n = c.of(status);
        if n == 0 {
            continue;
        }
        let share = n as f64 * 100.0 / c.repositories.max(1) as f64;
        let _ = write!(
            spans,
            "<span class=\"s-{0}\" style=\"width:{share:.2}%\" title=\"{n} {0}\"></span>",
            status.as_str()
        );
        words.push(format!("{n} {}", status.as_str()));
    }
    let words = words.join(" · ");
    format!(
        "<div class=\"bar\" role=\"img\" aria-label=\"{words}\">{spans}</div><span class=\"legend\">{words}</span>"
    )
}

fn workspaces(out: &mut String, report: &Report) {
    let _ = write!(
        out,
        "<section aria-labelledby=\"ws-h\">\n<h2 id=\"ws-h\">Workspaces</h2>\n<table class=\"workspaces\" id=\"workspaces\">\n\
         <caption>{} workspace(s), each with its Snyk org</caption>\n<thead><tr><th scope=\"col\">Workspace</th>\
         <th scope=\"col\">Org</th><th scope=\"col\" class=\"num\">Repositories</th><th scope=\"col\" class=\"num\">Coverage</th>\
         <th scope=\"col\">Imported / stale / missing / failed / empty / skipped</th></tr></thead>\n<tbody>\n",
        report.workspaces.len()
    );
    for w in &report.workspaces {
        let _ = writeln!(
            out,
            "<tr data-workspace=\"{0}\"><th scope=\"row\">{0}</th><td>{1}</td><td class=\"num\">{2}</td>\
             <td class=\"num\">{3:.1} %</td><td>{4}</td></tr>",
            escape(&w.workspace),
            w.org_id
                .as_deref()
                .map_or_else(|| "no org".to_owned(), escape),
            w.counts.repositories,
            w.counts.coverage_percent,
            bar(&w.counts)
        );
    }
    let _ = write!(out, "</tbody>\n</table>\n</section>\n");
}

const COLUMNS: [(&str, &str, bool); 7] = [
    ("workspace", "Workspace", false),
    ("slug", "Repository", false),
    ("status", "Status", false),
    ("reason", "Reason", false),
    ("branch", "Branch", false),
    ("projects", "Projects", true),
    ("last_imported", "Last imported", false),
];

fn repositories(out: &mut String, report: &Report) {
    let rows: Vec<_> = report
        .repositories
        .iter()
        .filter(|r| r.status != Coverage::Imported)
        .collect();
    let _ = write!(
        out,
        "<section aria-labelledby=\"repos-h\">\n<h2 id=\"repos-h\">Repositories not imported</h2>\n\
         <form class=\"controls\" role=\"search\" onsubmit=\"return false\">\n\
         <div><label for=\"f-workspace\">Workspace</label><select id=\"f-workspace\"><option value=\"\">All</option>"
    );
    for w in &report.workspaces {
        let _ = write!(out, "<option>{}</option>", escape(&w.workspace));
    }
    let _ = write!(
        out,
        "</select></div>\n<div><label for=\"f-status\">Status</label><select id=\"f-status\"><option value=\"\">All</option>"
    );
    for status in Coverage::ALL.iter().filter(|s| **s != Coverage::Imported) {
        let _ = write!(out, "<option>{}</option>", status.as_str());
    }
    let _ = write!(
        out,
        "</select></div>\n<output id=\"shown\" aria-live=\"polite\">{0} of {0} shown</output>\n</form>\n\
         <table id=\"repos\">\n<caption>Each repository Bitbucket holds that Snyk does not cover on its main branch, and why; \
         select a column's title to sort by it</caption>\n<thead><tr>",
        rows.len()
    );
    for (key, label, numeric) in COLUMNS {
        let class = if numeric { " class=\"num\"" } else { "" };
        let _ = write!(
            out,
            "<th scope=\"col\"{class} data-key=\"{key}\" aria-sort=\"none\"><button type=\"button\">{label}</button></th>"
        );
    }
    let _ = write!(out, "</tr></thead>\n<tbody>\n");
    for r in rows {
        let status = r.status.as_str();
        let _ = writeln!(
            out,
            "<tr data-workspace=\"{0}\" data-status=\"{status}\"><td>{0}</td><td>{1}</td>\
             <td><span class=\"badge s-{status}\">{status}</span></td><td>{2}</td><td>{3}</td>\
             <td class=\"num\">{4}</td><td>{5}</td></tr>",
            escape(&r.workspace),
            escape(&r.slug),
            escape(r.reason.as_deref().unwrap_or_default()),
            escape(r.branch.as_deref().unwrap_or_default()),
            r.projects,
            escape(r.last_imported.as_deref().unwrap_or_default()),
        );
    }
    let _ = write!(out, "</tbody>\n</table>\n</section>\n");
}

fn orphaned(out: &mut String, report: &Report) {
    if report.orphaned.is_empty() {
        return;
    }
    let _ = write!(
        out,
        "<section aria-labelledby=\"orphans-h\">\n<h2 id=\"orphans-h\">In Snyk, gone from Bitbucket</h2>\n\
         <table id=\"orphaned\">\n<caption>Bitbucket answered 404 for each; <code>bb2snyk sync</code> retires their projects</caption>\n\
         <thead><tr><th scope=\"col\">Workspace</th><th scope=\"col\">Repository</th><th scope=\"col\">Org</th>\
         <th scope=\"col\" class=\"num\">Projects</th></tr></thead>\n<tbody>\n"
    );
    for o in &report.orphaned {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
            escape(&o.workspace),
            escape(&o.slug),
            escape(&o.org_id),
            o.projects
        );
    }
    let _ = write!(out, "</tbody>\n</table>\n</section>\n");
}

fn notes(out: &mut String, report: &Report) {
    let e = &report.estimate;
    let _ = write!(
        out,
        "<section aria-labelledby=\"plan-h\">\n<h2 id=\"plan-h\">Importing the rest</h2>\n<p id=\"estimate\">{} repositories to import \
         (missing, failed and stale): about {} Snyk requests, {:.1} minutes at {} requests a minute over {} token(s), \
         besides Snyk's own time on each job.</p>\n",
        e.imports, e.requests, e.minutes, e.requests_per_minute, e.tokens
    );
    if !report.narrowed.is_empty() {
        let _ = writeln!(
            out,
            "<p>Bitbucket filtered the listing of {}: repositories it left out are not counted.</p>",
            escape(&report.narrowed.join(", "))
        );
    }
    for what in &report.incomplete {
        let _ = writeln!(
            out,
            "<p class=\"incomplete\"><strong>Incomplete:</strong> {}</p>",
            escape(what)
        );
    }
    out.push_str("</section>\n");
}

/// Text as HTML: nothing a repository's name or a reason holds can become markup.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::model::Row;

    #[test]
    fn names_and_reasons_never_become_markup() {
        let report = Report {
            group_id: "g".into(),
            repositories: vec![Row {
                workspace: "ws".into(),
                slug: "<script>alert(1)</script>".into(),
                status: Coverage::Failed,
                reason: Some("\"><img src=x onerror=alert(1)>".into()),
                branch: Some("main".into()),
                projects: 0,
                last_imported: None,
            }],
            ..Report::default()
        };
        let page = page(&report);
        assert!(!page.contains("<script>alert"));
        assert!(!page.contains("<img"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "no remote address"
        );
    }
}
