//! `BENCH_ONLY=report`: what `bb2snyk report` costs on the benchmark's tenant. A `run` imports it (jobs of
//! 1 s), the tenant then changes (100 repositories added, 20 deleted, 20 re-branched), and the report is
//! timed: wall, requests to each API, peak RSS. Rows go to `target/BENCHMARKS-report.md`.

use std::{fmt::Write as _, path::Path, time::Instant};

use bb2snyk_sandbox::Sandbox;

use super::{Jobs, Process, REPOS_PER_WORKSPACE, environment, knobs, today};

const QUICK_JOBS: Jobs = Jobs {
    label: "fixed 1 s",
    spread: "fixed",
    ms: 1000,
    max_ms: 1000,
};

/// Runs `bb2snyk` with `args` to its end; its wall time and peak RSS (MiB).
async fn timed(
    bin: &Path,
    args: &[&str],
    env: &std::collections::HashMap<String, String>,
) -> (f64, f64) {
    let started = Instant::now();
    let mut p = Process::spawn(bin, "bb2snyk", args, env, false);
    loop {
        p.sample();
        if let Ok(Some(_)) = p.child.try_wait() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    (started.elapsed().as_secs_f64(), p.last.0)
}

pub(super) async fn rows(bin: &Path, workspaces: usize) {
    let sandbox = Sandbox::start(knobs(workspaces, QUICK_JOBS, 1))
        .await
        .expect("sandbox");
    let mut env = environment(&sandbox);
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(bb2snyk_test_support::unique("bench-report"));
    std::fs::create_dir_all(&dir).expect("log dir");
    env.insert("SNYK_LOG_PATH".into(), dir.display().to_string());
    let group = format!("--groupId={}", sandbox.knobs().group_id);
    eprintln!("importing the tenant for the report");
    let (run_wall, _) = timed(bin, &["run", &group], &env).await;
    sandbox.drift([100, 20, 0, 20]);
    let before = sandbox.stats();
    let output = dir.join("coverage.json");
    eprintln!("reporting");
    let (wall, peak) = timed(
        bin,
        &[
            "report",
            &group,
            "--format=json",
            &format!("--output={}", output.display()),
        ],
        &env,
    )
    .await;
    let asked = sandbox.stats().requests_since(&before);
    let of = |prefix: &[&str]| -> u64 {
        asked
            .iter()
            .filter(|(endpoint, _)| {
                prefix.iter().any(|p| {
                    endpoint
                        .split(' ')
                        .nth(1)
                        .is_some_and(|path| path.starts_with(p))
                })
            })
            .map(|(_, n)| n)
            .sum()
    };
    let writes: u64 = asked
        .iter()
        .filter(|(e, _)| !e.starts_with("GET ") && !e.contains("access_token"))
        .map(|(_, n)| n)
        .sum();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&output).expect("the report")).expect("JSON");
    let totals = &report["totals"];
    let mut out = String::new();
    let repos = workspaces * REPOS_PER_WORKSPACE;
    let _ = writeln!(
        out,
        "Coverage report ({}): {workspaces} workspaces × {REPOS_PER_WORKSPACE} repositories imported by `run` ({run_wall:.0} s, jobs of 1 s), then 100 added, 20 deleted, 20 re-branched; `bb2snyk report --format=json`.\n",
        today()
    );
    let _ = writeln!(
        out,
        "| repositories | wall | Bitbucket requests | Snyk requests | write requests | peak RSS | imported / stale / missing / orphaned | coverage |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    let _ = writeln!(
        out,
        "| {} | {wall:.1} s | {} | {} | {writes} | {peak:.1} MiB | {} / {} / {} / {} | {} % |",
        repos + 80,
        of(&["/2.0/"]),
        of(&["/v1/", "/rest/"]),
        totals["imported"],
        totals["stale"],
        totals["missing"],
        report["orphaned"].as_array().map_or(0, Vec::len),
        totals["coverage_percent"],
    );
    let _ = writeln!(out, "\nRequests by endpoint: {asked:?}");
    println!("{out}");
    std::fs::write(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/BENCHMARKS-report.md"),
        out,
    )
    .expect("the benchmark file");
}
