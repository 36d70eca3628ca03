//! The coverage page in headless Chromium: its totals, and its filters and sorting driven through the
//! address, as a person's bookmark would.

use std::path::Path;

use serde_json::Value;

use crate::common::workdir;

/// The DOM once the page's script has run, opened at `fragment`.
fn render(page: &Path, fragment: &str) -> String {
    let profile = workdir("chromium-profile");
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            &format!("--user-data-dir={}", profile.display()),
            "--virtual-time-budget=3000",
            "--dump-dom",
            &format!("file://{}#{fragment}", page.display()),
        ])
        .output()
        .expect("chromium runs: install Debian's chromium (`.ci/run` does)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn field(dom: &str, name: &str) -> String {
    let start = format!("data-field=\"{name}\">");
    let from = dom
        .find(&start)
        .unwrap_or_else(|| panic!("{name} in the page"))
        + start.len();
    dom[from..].split('<').next().unwrap_or_default().to_owned()
}

/// The repository table's rows the browser shows: (workspace, slug, status), in order.
fn shown(dom: &str) -> Vec<(String, String, String)> {
    let body = dom
        .split("<table id=\"repos\">")
        .nth(1)
        .expect("the table")
        .split("</tbody>")
        .next()
        .expect("present");
    body.split("<tr ")
        .skip(1)
        .filter(|row| !row.split('>').next().unwrap_or_default().contains("hidden"))
        .map(|row| {
            let cells: Vec<String> = row
                .split("<td")
                .skip(1)
                .map(|c| {
                    let inner = c.split_once('>').map_or("", |(_, t)| t);
                    text(inner.split("</td").next().unwrap_or_default())
                })
                .collect();
            (cells[0].clone(), cells[1].clone(), cells[2].clone())
        })
        .collect()
}

/// Markup's text, tags left out.
fn text(markup: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in markup.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

pub fn check(page: &Path, report: &Value) {
    let dom = render(page, "");
    let t = &report["totals"];
    assert_eq!(
        field(&dom, "coverage_percent"),
        format!("{:.1} %", t["coverage_percent"].as_f64().expect("present"))
    );
    for key in [
        "repositories",
        "imported",
        "stale",
        "missing",
        "failed",
        "empty",
        "skipped",
    ] {
        assert_eq!(field(&dom, key), t[key].to_string(), "{key}");
    }
    let rows: Vec<&Value> = report["repositories"]
        .as_array()
        .expect("present")
        .iter()
        .filter(|r| r["status"] != "imported")
        .collect();
    assert_eq!(
        shown(&dom).len(),
        rows.len(),
        "every repository not imported"
    );

    // Filtered to one status and sorted by slug, descending.
    let dom = render(page, "status=failed&sort=slug&dir=desc");
    let failed = shown(&dom);
    let want = rows.iter().filter(|r| r["status"] == "failed").count();
    assert_eq!(failed.len(), want, "{failed:?}");
    assert!(failed.iter().all(|(_, _, s)| s == "failed"), "{failed:?}");
    let slugs: Vec<&String> = failed.iter().map(|(_, slug, _)| slug).collect();
    let mut sorted = slugs.clone();
    sorted.sort_by_key(|s| std::cmp::Reverse(s.to_lowercase()));
    assert_eq!(slugs, sorted, "sorted by slug, descending");
    assert!(
        dom.contains(&format!("{want} of {} shown", rows.len())),
        "the count shown"
    );

    // Filtered to one workspace, sorted by status.
    let ws = rows[0]["workspace"].as_str().expect("present");
    let dom = render(page, &format!("workspace={ws}&sort=status"));
    let of_ws = shown(&dom);
    assert_eq!(
        of_ws.len(),
        rows.iter().filter(|r| r["workspace"] == ws).count()
    );
    assert!(of_ws.iter().all(|(w, _, _)| w == ws), "{of_ws:?}");
    let statuses: Vec<&String> = of_ws.iter().map(|(_, _, s)| s).collect();
    let mut sorted = statuses.clone();
    sorted.sort();
    assert_eq!(statuses, sorted, "sorted by status, ascending");
}
