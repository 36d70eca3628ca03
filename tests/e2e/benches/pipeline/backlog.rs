//! `BENCH_ONLY=backlog`: the discoverer's backpressure at two tenant sizes (`BENCH_BACKLOG_WORKSPACES`,
//! default 100 and 500 workspaces: 10,000 and 50,000 repositories), each with it (the default
//! `discovery.max_backlog`, or `BENCH_BACKLOG_LIMIT`) and without it (a limit no run reaches). Four Snyk
//! tokens and eight importers scale the rate so each run takes minutes; at that rate the default bound is
//! not reached, and a lower one shows it at work. `BENCH_BACKLOG_TOKENS=1` runs one token and two
//! importers, where discovery outruns the importers most. Rows go to `target/BENCHMARKS-backlog.md`.

use std::{fmt::Write as _, path::Path, time::Duration};

use bb2snyk_test_support::admin;

use super::{REPOS_PER_WORKSPACE, counts, fleet_jobs, fleet_run, lower_bound, today};

/// Snyk tokens and importers, unless `BENCH_BACKLOG_TOKENS` says otherwise (importers: twice the tokens).
const TOKENS: usize = 4;

fn tokens_and_importers() -> (usize, usize) {
    let tokens = std::env::var("BENCH_BACKLOG_TOKENS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(TOKENS);
    (tokens, 2 * tokens)
}

/// RabbitMQ's memory (MiB) as its node reports it (`mem_used`), `None` when the management API is away.
pub(super) async fn broker_memory() -> Option<f64> {
    let (http, base, user, password) = admin();
    let nodes: Vec<serde_json::Value> = http
        .get(base.join("/api/nodes").ok()?)
        .basic_auth(user, password)
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let bytes: u64 = nodes.iter().filter_map(|n| n["mem_used"].as_u64()).sum();
    Some(bytes as f64 / (1024.0 * 1024.0))
}

pub(super) async fn rows(bin: &Path) {
    let (tokens, importers) = tokens_and_importers();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Backpressure ({}): the services with {importers} importers and {tokens} Snyk tokens, jobs fixed 5 s.\n",
        today()
    );
    let _ = writeln!(
        out,
        "| repositories | backpressure | wall | of bound | importer queue peak | RabbitMQ memory at start / peak | polls per import | 429s |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    let limit = std::env::var("BENCH_BACKLOG_LIMIT").ok();
    for workspaces in counts("BENCH_BACKLOG_WORKSPACES", &[100, 500]) {
        let repos = (workspaces * REPOS_PER_WORKSPACE) as u64;
        let (_, _, bound, _) = lower_bound(workspaces as u64, repos, 1, tokens);
        let bound = bound + fleet_jobs().mean();
        let on = match &limit {
            Some(limit) => (format!("max_backlog {limit}"), limit.as_str()),
            None => ("max_backlog 5000 (default)".into(), "5000"),
        };
        let off = ("off (max_backlog 10000000)".into(), "10000000");
        for (label, bound_setting) in [on, off] {
            let extra = [("BB2SNYK__DISCOVERY__MAX_BACKLOG", bound_setting)];
            eprintln!("backlog: {repos} repositories, backpressure {label}");
            let o = fleet_run(bin, workspaces, importers, tokens, &extra).await;
            let imports = o.stats.import_posts_total.max(1) as f64;
            let r429: u64 = o.stats.rate_limited.values().sum();
            let memory = o
                .broker_memory
                .map_or("-".into(), |(a, b)| format!("{a:.0} / {b:.0} MiB"));
            let _ = writeln!(
                out,
                "| {repos} | {label} | {:.0} s | {:.0} % | {} | {memory} | {:.2} | {r429} |",
                o.wall.as_secs_f64(),
                bound.as_secs_f64() / o.wall.as_secs_f64() * 100.0,
                o.peak_backlog.unwrap_or(0),
                o.stats.jobs.polls as f64 / imports,
            );
            eprint!("{out}");
        }
    }
    println!("{out}");
    std::fs::write(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/BENCHMARKS-backlog.md"),
        out,
    )
    .expect("the benchmark file");
}
