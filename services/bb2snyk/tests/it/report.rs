//! `bb2snyk report` against a tenant after `run`, then changed: 5 workspaces of 24 repositories with
//! poison ones, then 3 added, 2 deleted and 2 re-branched. Every repository gets its status, the deleted
//! ones are orphaned, JSON, CSV and HTML agree, nothing is written to either API, and `--fail-under`
//! exits by the threshold. The HTML page is opened in headless Chromium: its totals are the JSON's, and
//! its filters and sorting work.

use std::collections::{BTreeMap, BTreeSet};

use bb2snyk_sandbox::{Knobs, Sandbox};
use serde_json::Value;

use crate::common::{GROUP, bb2snyk, stderr, stdout, workdir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_tells_each_repository_status_in_every_format() {
    let sandbox = Sandbox::start(Knobs {
        workspaces: 5,
        repos_per_workspace: 24,
        job_ms: 50,
        poison_post_rate: 0.04,
        poison_job_rate: 0.04,
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let dir = workdir("report");
    let mut env = sandbox.env();
    env.push(("SNYK_LOG_PATH", dir.display().to_string()));
    // No ledger: the failed-imports logs give the reasons.
    env.push(("REDIS_URL", "redis://127.0.0.1:1".into()));
    let group = format!("--groupId={GROUP}");
    let run = bb2snyk(&["run", &group], env.clone(), &dir).await;
    assert_eq!(
        run.status.code(),
        Some(1),
        "poison repositories are parked: {}",
        stderr(&run)
    );

    let change = sandbox.drift([3, 2, 0, 2]);
    let truth = sandbox.truth();
    let before = sandbox.stats();
    let json_path = dir.join("coverage.json");
    let json = bb2snyk(
        &[
            "report",
            &group,
            "--format=json",
            &format!("--output={}", json_path.display()),
        ],
        env.clone(),
        &dir,
    )
    .await;
    assert_eq!(json.status.code(), Some(0), "{}", stderr(&json));
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).expect("json"))
        .expect("the report is JSON");

    // Every repository Bitbucket holds, with the status it must have.
    let added: BTreeSet<String> = change.add.keys().cloned().collect();
    let rebranched: BTreeSet<&String> = change.branch.keys().collect();
    let mut expected: BTreeMap<String, &str> = BTreeMap::new();
    let mut poisoned = BTreeSet::new();
    for ws in truth.as_array().expect("workspaces") {
        let ws_slug = ws["slug"].as_str().expect("slug");
        for repo in ws["repos"].as_array().expect("repos") {
            let name = format!("{ws_slug}/{}", repo["slug"].as_str().expect("slug"));
            let status = if repo["mainbranch"].is_null() {
                "empty"
            } else if repo["slug"]
                .as_str()
                .is_some_and(|s| s.starts_with("added-"))
            {
                "missing"
            } else if rebranched.contains(&name) {
                "stale"
            } else if !repo["poison"].is_null() {
                poisoned.insert(name.clone());
                "poison"
            } else {
                "imported"
            };
            expected.insert(name, status);
        }
    }
    assert_eq!(
        added.len(),
        3,
        "3 repositories added over the workspaces: {change:?}"
    );
    assert!(!poisoned.is_empty(), "the tenant has poison repositories");
    let rows = report["repositories"].as_array().expect("repositories");
    let got: BTreeMap<String, &str> = rows
        .iter()
        .map(|r| {
            (
                format!("{}/{}", str_of(&r["workspace"]), str_of(&r["slug"])),
                str_of(&r["status"]),
            )
        })
        .collect();
    assert_eq!(
        got.len(),
        expected.len(),
        "one row per repository Bitbucket holds"
    );
    let mut failed = 0;
    for (name, want) in &expected {
        let status = got.get(name).copied().unwrap_or("absent");
        match *want {
            "poison" => {
                assert!(matches!(status, "failed" | "missing"), "{name}: {status}");
                failed += u64::from(status == "failed");
            }
            want => assert_eq!(status, want, "{name}"),
        }
    }
    assert!(
        failed > 0,
        "the parked imports' reasons make some repositories failed"
    );
    for r in rows.iter().filter(|r| r["status"] != "imported") {
        assert!(
            r["reason"].as_str().is_some_and(|s| !s.is_empty()),
            "a reason for {r}"
        );
    }
    let orphans: BTreeSet<String> = report["orphaned"]
        .as_array()
        .expect("orphaned")
        .iter()
        .map(|o| format!("{}/{}", str_of(&o["workspace"]), str_of(&o["slug"])))
        .collect();
    let deleted: BTreeSet<String> = change.delete.iter().cloned().collect();
    assert_eq!(
        orphans, deleted,
        "the deleted repositories, and only they, are orphaned"
    );

    // The totals follow the rows and the formula, per workspace and in all.
    let t = &report["totals"];
    let n = |v: &Value, k: &str| v[k].as_u64().expect(k);
    let count = |status: &str| got.values().filter(|s| **s == status).count() as u64;
    for status in ["imported", "stale", "missing", "failed", "empty", "skipped"] {
        assert_eq!(n(t, status), count(status), "{status}");
    }
    assert_eq!(n(t, "repositories"), expected.len() as u64);
    let formula = |v: &Value| {
        let coverable = n(v, "repositories") - n(v, "empty") - n(v, "skipped");
        (n(v, "imported") as f64 * 1000.0 / coverable as f64).round() / 10.0
    };
    assert_eq!(t["coverage_percent"].as_f64(), Some(formula(t)));
    let workspaces = report["workspaces"].as_array().expect("workspaces");
    assert_eq!(workspaces.len(), 5);
    for w in workspaces {
        assert_eq!(w["coverage_percent"].as_f64(), Some(formula(w)), "{w}");
    }
    let coverage = t["coverage_percent"].as_f64().expect("coverage");
    assert!(coverage > 50.0 && coverage < 100.0, "{coverage}");
    assert!(
        n(&report["estimate"], "imports") >= 5,
        "the missing, failed and stale ones"
    );

    // The CSV says what the JSON says.
    let csv = bb2snyk(&["report", &group, "--format=csv"], env.clone(), &dir).await;
    assert_eq!(csv.status.code(), Some(0), "{}", stderr(&csv));
    let csv = stdout(&csv);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("workspace,slug,status,reason,branch,projects,last_imported")
    );
    let from_csv: BTreeMap<String, (String, String)> = lines
        .map(|line| {
            let fields = csv_fields(line);
            (
                format!("{}/{}", fields[0], fields[1]),
                (fields[2].clone(), fields[5].clone()),
            )
        })
        .collect();
    let from_json: BTreeMap<String, (String, String)> = rows
        .iter()
        .map(|r| {
            (
                format!("{}/{}", str_of(&r["workspace"]), str_of(&r["slug"])),
                (str_of(&r["status"]).to_owned(), r["projects"].to_string()),
            )
        })
        .collect();
    assert_eq!(from_csv, from_json);

    // The HTML page: every workspace, nothing fetched from elsewhere, and in a browser the JSON's totals.
    let html_path = dir.join("coverage.html");
    let html = bb2snyk(
        &[
            "report",
            &group,
            "--format=html",
            &format!("--output={}", html_path.display()),
        ],
        env.clone(),
        &dir,
    )
    .await;
    assert_eq!(html.status.code(), Some(0), "{}", stderr(&html));
    let page = std::fs::read_to_string(&html_path).expect("html");
    for w in workspaces {
        assert!(page.contains(str_of(&w["workspace"])), "{w}");
    }
    for remote in ["http://", "https://", " src=", " href=", "@import", "url("] {
        assert!(!page.contains(remote), "the page holds {remote}");
    }
    browser::check(&html_path, &report);

    // The table and --fail-under.
    let table = bb2snyk(&["report", &group], env.clone(), &dir).await;
    assert_eq!(table.status.code(), Some(0), "{}", stderr(&table));
    assert!(stdout(&table).contains("total"), "{}", stdout(&table));
    let above = format!("--fail-under={}", coverage + 0.1);
    let below = format!("--fail-under={}", coverage - 0.1);
    let strict = bb2snyk(&["report", &group, &above], env.clone(), &dir).await;
    assert_eq!(strict.status.code(), Some(1), "{}", stderr(&strict));
    assert!(
        stderr(&strict).contains("below --fail-under"),
        "{}",
        stderr(&strict)
    );
    let lenient = bb2snyk(&["report", &group, &below], env.clone(), &dir).await;
    assert_eq!(lenient.status.code(), Some(0), "{}", stderr(&lenient));

    let writes = sandbox.stats().writes_since(&before);
    assert_eq!(writes, BTreeMap::new(), "a report writes nothing");
}

fn str_of(value: &Value) -> &str {
    value.as_str().expect("a string")
}

/// A CSV line's fields (RFC 4180 quoting).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().expect("present").push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(String::new()),
            (c, _) => fields.last_mut().expect("present").push(c),
        }
    }
    fields
}

/// The page in headless Chromium (installed by `.ci/run`).
mod browser;

/// Where the services ran, the ledger in Redis knows why an import failed: a repository Snyk does not
/// hold that the ledger has parked is `failed`, with the ledger's reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_gives_the_reason_an_import_failed() {
    let sandbox = Sandbox::start(Knobs {
        workspaces: 1,
        repos_per_workspace: 6,
        empty_rate: 0.0,
        job_ms: 20,
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let dir = workdir("report-ledger");
    let mut env = sandbox.env();
    env.push(("SNYK_LOG_PATH", dir.display().to_string()));
    let group = format!("--groupId={GROUP}");
    let run = bb2snyk(&["run", &group], env.clone(), &dir).await;
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let change = sandbox.drift([1, 0, 0, 0]);
    let (workspace, _) = change.add.iter().next().expect("one added");
    // The workspace's org, as a first report names it.
    let first = bb2snyk(&["report", &group, "--format=json"], env.clone(), &dir).await;
    let first: Value = serde_json::from_str(&stdout(&first)).expect("JSON");
    let org_id = first["workspaces"][0]["org_id"].clone();
    let org = sandbox
        .orgs()
        .into_iter()
        .find(|o| org_id == o.id.as_str())
        .expect("the workspace's org");
    let integration = org
        .integrations
        .get("bitbucket-connect-app")
        .expect("the App integration")
        .clone();
    let added = sandbox.truth()[0]["repos"]
        .as_array()
        .expect("repos")
        .iter()
        .filter_map(|r| r["slug"].as_str())
        .find(|s| s.starts_with("added-"))
        .expect("the added repository")
        .to_owned();
    let redis = std::env::var("BB2SNYK_TEST_REDIS_URL").unwrap_or("redis://127.0.0.1:6379".into());
    let prefix = format!("{}:", bb2snyk_test_support::unique("report"));
    let store = bb2snyk_store::Store::connect(&redis.clone().into(), &prefix)
        .await
        .expect("Redis");
    let id = bb2snyk_messages::target_id_of(&org.id, &integration, &added, workspace, Some("main"));
    let record = bb2snyk_ledger::Record {
        last_error: Some("Snyk answered 400: the ledger's reason".into()),
        ..bb2snyk_ledger::Record::new(bb2snyk_ledger::State::Parked, "run-1")
    };
    bb2snyk_ledger::Ledger::new(store)
        .record(&id, &record)
        .await
        .expect("recorded");

    env.push(("REDIS_URL", redis));
    env.push(("BB2SNYK__REDIS__PREFIX", prefix));
    let out = bb2snyk(&["report", &group, "--format=json"], env, &dir).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    let row = report["repositories"]
        .as_array()
        .expect("repositories")
        .iter()
        .find(|r| r["slug"] == added.as_str())
        .expect("the added repository's row");
    assert_eq!(row["status"], "failed", "{row}");
    assert_eq!(row["reason"], "Snyk answered 400: the ledger's reason");
    assert_eq!(report["totals"]["failed"], 1);
    assert_eq!(report["totals"]["missing"], 0);
}

/// A workspace whose org cannot serve it (an org of its name without the Bitbucket Cloud App) cannot be
/// read: the report still tells the rest, names what it left out, and exits 6.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_that_cannot_read_a_workspace_names_it_and_exits_6() {
    let sandbox = Sandbox::start(Knobs {
        workspaces: 2,
        repos_per_workspace: 3,
        empty_rate: 0.0,
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let truth = sandbox.truth();
    let (blocked, other) = (str_of(&truth[0]["slug"]), str_of(&truth[1]["slug"]));
    // The org a run would take for the first workspace, by its name, without the App.
    sandbox.seed_legacy(str_of(&truth[0]["name"]), &[]);
    let dir = workdir("report-incomplete");
    let mut env = sandbox.env();
    env.push(("SNYK_LOG_PATH", dir.display().to_string()));
    env.push(("REDIS_URL", "redis://127.0.0.1:1".into()));
    let group = format!("--groupId={GROUP}");
    let out = bb2snyk(&["report", &group, "--format=json"], env, &dir).await;
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("workspace {blocked}")),
        "{}",
        stderr(&out)
    );
    let report: Value = serde_json::from_str(&stdout(&out)).expect("the rest, as JSON");
    let workspaces: Vec<&str> = report["workspaces"]
        .as_array()
        .expect("workspaces")
        .iter()
        .map(|w| str_of(&w["workspace"]))
        .collect();
    assert_eq!(workspaces, [other], "the readable workspace is reported");
    assert_eq!(report["totals"]["missing"], 3, "no org serves it yet");
    assert!(
        report["incomplete"].as_array().is_some_and(|i| i
            .iter()
            .any(|w| w.as_str().is_some_and(|w| w.contains(blocked)))),
        "{report}"
    );
}
