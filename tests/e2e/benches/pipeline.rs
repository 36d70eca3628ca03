//! The benchmark: the service binaries on real RabbitMQ and Redis against the sandbox, measured against the
//! rate-limit lower bound, for 1, 2 and 4 importer replicas and for the embedded `bb2snyk run`; plus the
//! discoverer's memory at two tenant sizes and the broker's fan-out rate. Prints a table and writes it to
//! BENCHMARKS.md.
//!
//!     cargo bench -p bb2snyk-e2e --bench pipeline
//!
//! `BENCH_WORKSPACES` (default 100) scales the tenant down for a quick try (100 repositories each).

use std::{
    collections::HashMap,
    fmt::Write as _,
    path::Path,
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use bb2snyk_broker::{AmqpBroker, Handler, Message, Outcome};
use bb2snyk_e2e::{Run, binaries, free_port};
use bb2snyk_sandbox::{Knobs, Sandbox, Stats};
use bb2snyk_service::{CancellationToken, Infrastructure};
use bb2snyk_settings::{Settings, Sources};
use bb2snyk_test_support::{pipeline_env, wait_for};
use futures_util::future::BoxFuture;
use tokio::process::{Child, Command};

#[path = "pipeline/backlog.rs"]
mod backlog;
#[path = "pipeline/report.rs"]
mod report;

const SNYK_PER_MINUTE: u32 = 6000;
const BITBUCKET_PER_MINUTE: u32 = 1000;
const REPOS_PER_WORKSPACE: usize = 100;

/// How long import jobs take in a row: the sandbox's `job_spread` with its bounds.
#[derive(Debug, Clone, Copy)]
struct Jobs {
    label: &'static str,
    spread: &'static str,
    ms: u64,
    max_ms: u64,
}

/// The fleet's rows: the jobs of the issue's targets (and of its first report).
const FIXED_5S: Jobs = Jobs {
    label: "fixed 5 s",
    spread: "fixed",
    ms: 5000,
    max_ms: 5000,
};

/// The job-duration rows: each with the embedded run, whose one process shows the schedule alone.
const SPREADS: [Jobs; 3] = [
    FIXED_5S,
    Jobs {
        label: "uniform 1–60 s",
        spread: "uniform",
        ms: 1000,
        max_ms: 60_000,
    },
    Jobs {
        label: "long tail (median 5 s, max 120 s)",
        spread: "long-tail",
        ms: 5000,
        max_ms: 120_000,
    },
];

impl Jobs {
    /// A job's mean duration: the bound adds one, since the last imports' jobs run after their POSTs.
    fn mean(self) -> Duration {
        let mean_ms = match self.spread {
            "uniform" => (self.ms + self.max_ms) / 2,
            // Log-normal with sigma 1: the mean is e^(1/2) times the median.
            "long-tail" => self.ms * 165 / 100,
            _ => self.ms,
        };
        Duration::from_millis(mean_ms)
    }
}

fn knobs(workspaces: usize, jobs: Jobs, tokens: usize) -> Knobs {
    Knobs {
        snyk_tokens: (1..tokens)
            .map(|n| format!("bench-snyk-token-{n}"))
            .collect(),
        workspaces,
        repos_per_workspace: REPOS_PER_WORKSPACE,
        empty_rate: 0.0,
        latency_ms: 20,
        job_ms: jobs.ms,
        job_spread: jobs.spread.into(),
        job_max_ms: jobs.max_ms,
        snyk_rate_limit: Some(SNYK_PER_MINUTE),
        snyk_window_secs: 60,
        bitbucket_rate_limit: Some(BITBUCKET_PER_MINUTE),
        bitbucket_window_secs: 60,
        ..Knobs::default()
    }
}

/// The environment for every process: our budgets at 95 % of the sandbox's limits, polls after 3 s.
fn environment(sandbox: &Sandbox) -> HashMap<String, String> {
    let mut env = pipeline_env(sandbox.env(), "bench");
    let more = sandbox.knobs().snyk_tokens;
    if !more.is_empty() {
        env.insert("SNYK_TOKENS".into(), more.join(","));
    }
    for (k, v) in [
        (
            "BB2SNYK__SNYK__RATE_BUDGET",
            (SNYK_PER_MINUTE * 95 / 100).to_string(),
        ),
        ("BB2SNYK__SNYK__RATE_WINDOW_SECS", "60".into()),
        (
            "BB2SNYK__BITBUCKET__RATE_BUDGET",
            (BITBUCKET_PER_MINUTE * 95 / 100).to_string(),
        ),
        ("BB2SNYK__BITBUCKET__RATE_WINDOW_SECS", "60".into()),
        ("BB2SNYK__PIPELINE__RETRY_TIERS_SECS", "3,10,60".into()),
        (
            "BB2SNYK__PIPELINE__EMBEDDED_RETRY_TIERS_SECS",
            "3,10,60".into(),
        ),
        ("BB2SNYK__PIPELINE__MAX_ATTEMPTS", "6".into()),
        // Longer than any run: a delay queue has no consumer, so RabbitMQ counts it unused however many
        // messages pass through it, and would delete it, messages and all, mid-run (the bench deletes
        // its queues when a run ends).
        ("BB2SNYK__AMQP__EXPIRES_SECS", "7200".into()),
        // As in production (the test environment turns it off).
        ("BB2SNYK__SNYK__EVEN_PACE", "true".into()),
        ("RUST_LOG", "warn".into()),
    ] {
        env.insert(k.into(), v);
    }
    // BENCH_CONCURRENT_IMPORTS tries another importer concurrency; BENCH_SET="KEY=value,..." any setting.
    if let Ok(n) = std::env::var("BENCH_CONCURRENT_IMPORTS") {
        env.insert("CONCURRENT_IMPORTS".into(), n);
    }
    for pair in std::env::var("BENCH_SET").unwrap_or_default().split(',') {
        if let Some((k, v)) = pair.split_once('=') {
            env.insert(k.trim().to_owned(), v.trim().to_owned());
        }
    }
    env
}

/// Peak RSS (MiB) and CPU seconds of a running process, from /proc.
fn usage(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let peak_kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some((peak_kib / 1024.0, ticks / 100.0))
}

struct Process {
    name: String,
    child: Child,
    metrics_port: Option<u16>,
    last: (f64, f64),
}

impl Process {
    fn spawn(
        bin: &Path,
        name: &str,
        args: &[&str],
        env: &HashMap<String, String>,
        metrics: bool,
    ) -> Self {
        let port = metrics.then(free_port);
        let mut command = Command::new(bin.join(name.split('#').next().unwrap_or(name)));
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            .env(
                "BB2SNYK__METRICS__LISTEN",
                port.map_or_else(String::new, |p| format!("127.0.0.1:{p}")),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        Self {
            name: name.to_owned(),
            child: command.spawn().expect("starts"),
            metrics_port: port,
            last: (0.0, 0.0),
        }
    }

    fn sample(&mut self) {
        if let Some(now) = self.child.id().and_then(usage) {
            self.last = now;
        }
    }

    async fn consumed(&self) -> f64 {
        let Some(port) = self.metrics_port else {
            return 0.0;
        };
        let Ok(response) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await else {
            return 0.0;
        };
        let text = response.text().await.unwrap_or_default();
        text.lines()
            .filter(|l| {
                l.starts_with("bb2snyk_messages_total") && l.contains("outcome=\"consumed\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    async fn stop(&mut self) {
        self.sample();
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(40), self.child.wait()).await;
    }
}

struct Measured {
    label: String,
    wall: Duration,
    stats: Stats,
    usage: Vec<(String, f64, f64)>,
    messages_per_import: Option<f64>,
    /// The importer queue's deepest, sampled every half second (services only).
    peak_backlog: Option<u64>,
    /// RabbitMQ's memory (MiB) when the run began and at its peak (services only).
    broker_memory: Option<(f64, f64)>,
    jobs: Jobs,
    /// Snyk tokens the run spent: the bound divides by them.
    tokens: usize,
}

/// Requests a run needs at the least, per API; the time they take at the limits' rates (requests ÷ rate);
/// and the floor a rolling window allows, where a first window's burst is spent at once:
/// (⌈requests ÷ limit⌉ − 1) windows.
fn lower_bound(
    workspaces: u64,
    repos: u64,
    org_pages: u64,
    tokens: usize,
) -> (u64, u64, Duration, Duration) {
    let snyk_per_minute = SNYK_PER_MINUTE * tokens as u32;
    // Snyk: per workspace the org lookup (org pages), create, integrations, notification settings, and
    // the Snyk record's reads of the org's targets and projects (a page each per 100); per repository one
    // import and one poll. Bitbucket: a token, workspace pages, repository pages.
    let record = 2 * (REPOS_PER_WORKSPACE as u64).div_ceil(100);
    let snyk = workspaces * (org_pages + 3 + record) + 2 * repos;
    let bitbucket =
        1 + workspaces.div_ceil(100) + workspaces * (REPOS_PER_WORKSPACE as u64).div_ceil(100);
    let minutes = (snyk as f64 / f64::from(snyk_per_minute))
        .max(bitbucket as f64 / f64::from(BITBUCKET_PER_MINUTE));
    let windows = snyk
        .div_ceil(u64::from(snyk_per_minute))
        .max(bitbucket.div_ceil(u64::from(BITBUCKET_PER_MINUTE)));
    (
        snyk,
        bitbucket,
        Duration::from_secs_f64(minutes * 60.0),
        Duration::from_secs(60 * windows.saturating_sub(1)),
    )
}

/// The services on a tenant of `workspaces` × 100, with `importers` importers and `tokens` Snyk tokens;
/// `extra` settings over the bench's own.
async fn fleet_run(
    bin: &Path,
    workspaces: usize,
    importers: usize,
    tokens: usize,
    extra: &[(&str, &str)],
) -> Measured {
    // The broker's memory is read from the management API: without it, say so at once.
    bb2snyk_test_support::require_management().await;
    let jobs = fleet_jobs();
    let sandbox = Sandbox::start(knobs(workspaces, jobs, tokens))
        .await
        .expect("sandbox");
    let mut env = environment(&sandbox);
    if tokens > 1 && std::env::var("BENCH_CONCURRENT_IMPORTS").is_err() {
        env.insert("CONCURRENT_IMPORTS".into(), "40".into());
    }
    for (k, v) in extra {
        env.insert((*k).into(), (*v).into());
    }
    let settings = bb2snyk_settings::load(&Sources {
        file: None,
        env: env.clone(),
    })
    .expect("settings");
    let mut processes = vec![
        Process::spawn(bin, "discoverer", &[], &env, true),
        Process::spawn(bin, "org-creator", &[], &env, true),
    ];
    for i in 0..importers {
        let mut p = Process::spawn(bin, "importer", &[], &env, true);
        p.name = format!("importer#{}", i + 1);
        processes.push(p);
    }
    let total = sandbox.stats().truth.repositories;
    let started = Instant::now();
    let run = Run::request(&settings, &sandbox.knobs().group_id).await;
    let broker = run
        .infrastructure
        .broker(&settings, "bench-depth")
        .await
        .expect("broker");
    let mut peak_backlog = 0;
    let broker_start = backlog::broker_memory().await;
    let mut broker_peak = broker_start.unwrap_or(0.0);
    let mut last_print = Instant::now();
    let mut last_memory = Instant::now();
    loop {
        for p in &mut processes {
            p.sample();
        }
        peak_backlog = peak_backlog.max(broker.waiting("importer").await.unwrap_or(0));
        if last_memory.elapsed() > Duration::from_secs(2) {
            last_memory = Instant::now();
            if let Some(mib) = backlog::broker_memory().await {
                broker_peak = broker_peak.max(mib);
            }
        }
        let done = run.settled().await;
        if done >= total {
            break;
        }
        if last_print.elapsed() > Duration::from_secs(10) {
            last_print = Instant::now();
            let stats = sandbox.stats();
            eprintln!(
                "  {importers} importer(s): {done}/{total} after {:?}; POSTs {}, jobs done {} (pending {}), polls {}, queued imports {}, queued polls {}, orgs created {}, queued workspaces {}",
                started.elapsed(),
                stats.import_posts_total,
                stats.jobs.complete,
                stats.jobs.pending,
                stats.jobs.polls,
                broker.waiting("importer").await.unwrap_or(0),
                broker.waiting("importer-polls").await.unwrap_or(0),
                stats.orgs_created,
                broker.waiting("org-creator").await.unwrap_or(0),
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(3600),
            "the run stalled"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let wall = started.elapsed();
    let mut consumed = 0.0;
    for p in &processes {
        consumed += p.consumed().await;
    }
    let mut usage = Vec::new();
    for p in &mut processes {
        p.stop().await;
        usage.push((p.name.clone(), p.last.0, p.last.1));
    }
    // Its close once waited forever for the broker's answer after a 4-importer run, and the rows measured
    // before it were lost: the run is measured, so the close is bounded.
    let _ = tokio::time::timeout(Duration::from_secs(10), run.infrastructure.close()).await;
    let label = if tokens == 1 {
        format!("services, {importers} importer(s)")
    } else {
        format!(
            "services, {importers} importer(s) × {} concurrent imports, {tokens} Snyk tokens",
            env.get("CONCURRENT_IMPORTS").map_or("15", String::as_str)
        )
    };
    Measured {
        label: if jobs.spread == FIXED_5S.spread {
            label
        } else {
            format!("{label}, jobs {}", jobs.label)
        },
        tokens,
        wall,
        stats: sandbox.stats(),
        usage,
        messages_per_import: Some(consumed / total as f64),
        peak_backlog: Some(peak_backlog),
        broker_memory: broker_start.map(|start| (start, broker_peak)),
        jobs,
    }
}

/// The fleet's jobs: fixed 5 s, or the spread `BENCH_FLEET_JOBS` names (`uniform`, `long-tail`). A name
/// it does not know stops the bench rather than measuring the wrong jobs.
fn fleet_jobs() -> Jobs {
    let Ok(named) = std::env::var("BENCH_FLEET_JOBS") else {
        return FIXED_5S;
    };
    SPREADS
        .into_iter()
        .find(|jobs| jobs.spread == named.trim())
        .unwrap_or_else(|| panic!("BENCH_FLEET_JOBS={named}: name fixed, uniform or long-tail"))
}

async fn embedded_run(bin: &Path, workspaces: usize, jobs: Jobs) -> Measured {
    let sandbox = Sandbox::start(knobs(workspaces, jobs, 1))
        .await
        .expect("sandbox");
    let mut env = environment(&sandbox);
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(bb2snyk_test_support::unique("bench-run"));
    std::fs::create_dir_all(&dir).expect("log dir");
    env.insert("SNYK_LOG_PATH".into(), dir.display().to_string());
    let group = format!("--groupId={}", sandbox.knobs().group_id);
    let started = Instant::now();
    let mut p = Process::spawn(bin, "bb2snyk", &["run", &group], &env, false);
    let mut last_print = Instant::now();
    loop {
        p.sample();
        if let Ok(Some(_)) = p.child.try_wait() {
            break;
        }
        if last_print.elapsed() > Duration::from_secs(10) {
            last_print = Instant::now();
            let stats = sandbox.stats();
            eprintln!(
                "  run: after {:?}; POSTs {}, jobs done {} (pending {}), polls {} ({} found pending), Snyk requests {}",
                started.elapsed(),
                stats.import_posts_total,
                stats.jobs.complete,
                stats.jobs.pending,
                stats.jobs.polls,
                stats.jobs.pending_polls,
                stats.snyk_by_token.values().sum::<u64>(),
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // What an import policy (BENCH_SET="BB2SNYK__POLICY__FILE=…") cost: metadata calls per project.
    let stats = sandbox.stats();
    let requests = |endpoint: &str| stats.requests.get(endpoint).copied().unwrap_or(0);
    eprintln!(
        "  run: {} projects, {} metadata PATCHes, {} project reads, {} Snyk requests in all",
        sandbox.project_metadata().len(),
        requests("PATCH /rest/orgs/{org_id}/projects/{project_id}"),
        requests("GET /rest/orgs/{org_id}/projects"),
        stats.snyk_by_token.values().sum::<u64>(),
    );
    Measured {
        label: format!("embedded `bb2snyk run`, jobs {}", jobs.label),
        wall: started.elapsed(),
        stats: sandbox.stats(),
        usage: vec![("bb2snyk run".into(), p.last.0, p.last.1)],
        messages_per_import: None,
        peak_backlog: None,
        broker_memory: None,
        jobs,
        tokens: 1,
    }
}

/// Publish with confirms, then consume and ack, on a queue of its own: messages per second each way.
async fn fan_out(settings: &Settings, n: usize) -> (f64, f64) {
    struct Count(Arc<std::sync::atomic::AtomicUsize>);
    impl Handler for Count {
        fn handle(&self, _: Message) -> BoxFuture<'_, Outcome> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Box::pin(async { Outcome::ack() })
        }
    }
    let infrastructure = Infrastructure::connect(settings, "bench-fanout")
        .await
        .expect("infrastructure");
    let broker: Arc<AmqpBroker> = Arc::new(
        infrastructure
            .broker(settings, "bench-fanout")
            .await
            .expect("broker"),
    );
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let per_task = n / 32;
    for t in 0..32 {
        let broker = broker.clone();
        tasks.spawn(async move {
            for i in 0..per_task {
                let message = Message {
                    kind: "bench.v1".into(),
                    message_id: format!("{t}-{i}"),
                    correlation_id: "bench".into(),
                    attempt: 0,
                    body: br#"{"type":"bench.v1"}"#.to_vec(),
                };
                broker
                    .publish("importer", &message)
                    .await
                    .expect("confirmed");
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let published = (per_task * 32) as f64 / started.elapsed().as_secs_f64();
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let shutdown = CancellationToken::new();
    let consumer = {
        let broker = broker.clone();
        let handler = Arc::new(Count(count.clone()));
        let stop = shutdown.clone();
        tokio::spawn(async move {
            broker
                .serve("importer", handler, 64, stop, Duration::from_secs(5))
                .await
        })
    };
    let started = Instant::now();
    wait_for(
        "every message consumed",
        Duration::from_secs(300),
        || async {
            (count.load(std::sync::atomic::Ordering::Relaxed) >= per_task * 32).then_some(())
        },
    )
    .await;
    let consumed = (per_task * 32) as f64 / started.elapsed().as_secs_f64();
    shutdown.cancel();
    let _ = consumer.await;
    (published, consumed)
}

/// The discoverer's peak RSS over a discovery of `workspaces` × 100 repositories (orgs and imports run too).
async fn discoverer_peak(bin: &Path, workspaces: usize) -> f64 {
    let outcome = fleet_run(bin, workspaces, 1, 1, &[]).await;
    outcome
        .usage
        .iter()
        .find(|(n, _, _)| n == "discoverer")
        .map_or(0.0, |u| u.1)
}

fn row(out: &mut String, o: &Measured, workspaces: u64, repos: u64) {
    let (_, _, bound, floor) = lower_bound(workspaces, repos, 1, o.tokens);
    let (bound, floor) = (bound + o.jobs.mean(), floor + o.jobs.mean());
    let ratio = bound.as_secs_f64() / o.wall.as_secs_f64() * 100.0;
    let of_floor = floor.as_secs_f64() / o.wall.as_secs_f64() * 100.0;
    let r429: u64 = o.stats.rate_limited.values().sum();
    let imports = o.stats.import_posts_total.max(1) as f64;
    let snyk_requests: u64 = o
        .stats
        .requests
        .iter()
        .filter(|(k, _)| k.contains(" /v1/") || k.contains(" /rest/"))
        .map(|(_, n)| n)
        .sum();
    let seen = |ms: Option<u64>| ms.map_or("-".into(), |ms| format!("{:.1} s", ms as f64 / 1000.0));
    let jobs = &o.stats.jobs;
    let in_time = if jobs.seen == 0 {
        "-".into()
    } else {
        format!(
            "{:.0} %",
            jobs.seen_in_time as f64 * 100.0 / jobs.seen as f64
        )
    };
    let usage = o
        .usage
        .iter()
        .map(|(n, rss, cpu)| format!("{n}: {rss:.1} MiB, {cpu:.1} s"))
        .collect::<Vec<_>>()
        .join("; ");
    let _ = writeln!(
        out,
        "| {} | {:.0} s | {:.0} % | {:.0} % | {:.2} | {:.2} | {} / {} | {} | {} | {} | {} | {} | {} | {} |",
        o.label,
        o.wall.as_secs_f64(),
        ratio,
        of_floor,
        jobs.polls as f64 / imports,
        snyk_requests as f64 / imports,
        seen(jobs.seen_late_p50_ms),
        seen(jobs.seen_late_p95_ms),
        in_time,
        r429,
        o.stats.token_exchanges,
        o.stats.import_posts_total,
        o.messages_per_import
            .map_or("-".into(), |m| format!("{m:.1}")),
        o.peak_backlog.map_or("-".into(), |n| n.to_string()),
        usage
    );
}

fn today() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// The comma-separated numbers in the variable `name`, else `default`.
fn counts(name: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(name).map_or_else(
        |_| default.to_vec(),
        |v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect(),
    )
}

#[tokio::main]
async fn main() {
    let workspaces: usize = std::env::var("BENCH_WORKSPACES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let bin = binaries(true);
    let repos = (workspaces * REPOS_PER_WORKSPACE) as u64;
    let (snyk, bitbucket, bound, floor) = lower_bound(workspaces as u64, repos, 1, 1);
    eprintln!("tenant {workspaces} × {REPOS_PER_WORKSPACE}; lower bound {bound:?}");
    // BENCH_ONLY=fleet runs just the services with 1, 2 and 4 importers (BENCH_FLEET_JOBS=uniform with
    // jobs of 1-60 s); =spreads just the job-duration rows (the embedded run, one per spread); =tokens
    // just the rows with 2 and 4 Snyk tokens; =backlog the backpressure rows; =report the coverage report's cost.
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let only_spreads = only == "spreads";
    if only == "backlog" {
        backlog::rows(&bin).await;
        return;
    }
    if only == "report" {
        report::rows(&bin, workspaces).await;
        return;
    }
    let mut outcomes = Vec::new();
    if only.is_empty() || only == "fleet" {
        // BENCH_IMPORTERS="1,4" picks the fleet sizes.
        for importers in counts("BENCH_IMPORTERS", &[1, 2, 4]) {
            eprintln!("running the services with {importers} importer(s)");
            outcomes.push(fleet_run(&bin, workspaces, importers, 1, &[]).await);
        }
    }
    if only.is_empty() || only == "tokens" {
        // More tokens need more importers to spend them: two per token, of 40 imports each, unless
        // BENCH_TOKEN_IMPORTERS and BENCH_CONCURRENT_IMPORTS say otherwise.
        let importers = std::env::var("BENCH_TOKEN_IMPORTERS")
            .ok()
            .and_then(|v| v.parse().ok());
        for tokens in counts("BENCH_TOKENS", &[2, 4]) {
            let importers = importers.unwrap_or(2 * tokens);
            eprintln!("running the services with {importers} importers and {tokens} Snyk tokens");
            outcomes.push(fleet_run(&bin, workspaces, importers, tokens, &[]).await);
        }
    }
    if only.is_empty() || only_spreads {
        // BENCH_SPREADS="uniform,long-tail" picks the spreads.
        let picked = std::env::var("BENCH_SPREADS").ok();
        let picked = |jobs: &Jobs| {
            picked
                .as_deref()
                .is_none_or(|list| list.split(',').any(|p| p.trim() == jobs.spread))
        };
        for jobs in SPREADS.into_iter().filter(picked) {
            eprintln!("running the embedded `bb2snyk run`, jobs {}", jobs.label);
            outcomes.push(embedded_run(&bin, workspaces, jobs).await);
        }
    }
    let small = (workspaces / 10).max(1);
    let (small_peak, large_peak) = if !only.is_empty() {
        (0.0, 0.0)
    } else {
        eprintln!("discoverer memory at {small} × 100");
        let small_peak = discoverer_peak(&bin, small).await;
        let large_peak = outcomes[0]
            .usage
            .iter()
            .find(|(n, _, _)| n == "discoverer")
            .map_or(0.0, |u| u.1);
        (small_peak, large_peak)
    };
    let settings = {
        let sandbox = Sandbox::start(knobs(1, FIXED_5S, 1))
            .await
            .expect("sandbox");
        bb2snyk_settings::load(&Sources {
            file: None,
            env: environment(&sandbox),
        })
        .expect("settings")
    };
    // The broker's fan-out belongs to a whole run; a partial run's rows are about the pipeline.
    let (published, consumed) = if only.is_empty() {
        fan_out(&settings, 20_000).await
    } else {
        (0.0, 0.0)
    };

    let mut out = String::new();
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "Produced by `cargo bench -p bb2snyk-e2e --bench pipeline` on this machine ({} cores), {}.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        today()
    );
    let _ = writeln!(
        out,
        "Tenant: {workspaces} workspaces × {REPOS_PER_WORKSPACE} repositories ({repos}); sandbox latency 20 ms; import jobs take 5 s unless the row says otherwise; \
         sandbox limits Snyk {SNYK_PER_MINUTE}/min and Bitbucket {BITBUCKET_PER_MINUTE}/min (rolling); bb2snyk's budgets 95 % of those; \
         real RabbitMQ and Redis on localhost; release binaries.\n"
    );
    let _ = writeln!(
        out,
        "Rate-limit lower bound: at least {snyk} Snyk requests (per repository an import and a poll; per workspace 4 org calls and 2 reads of what the org holds) \
         at {SNYK_PER_MINUTE}/min and {bitbucket} Bitbucket requests at {BITBUCKET_PER_MINUTE}/min: **{:.0} s** \
         (requests ÷ rate; a row with k Snyk tokens divides the Snyk part by k, as each token has its own limit; each row adds one mean job duration, since the last jobs run after their POSTs; \"of bound\" is that bound ÷ wall time). Both limits count over a rolling minute, which lets \
         a client spend a whole minute's budget at once, so the true floor is {:.0} s (⌈requests ÷ limit⌉ − 1 windows; \
         \"of floor\"), and beating the first bound is possible.\n",
        bound.as_secs_f64(),
        floor.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "| pipeline | wall | of bound | of floor | polls per import | Snyk requests per import | completion seen after (p50 / p95) | seen in time | 429s | token exchanges | import POSTs | broker messages per import | importer queue peak | peak RSS, CPU per process |"
    );
    let _ = writeln!(
        out,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for o in &outcomes {
        row(&mut out, o, workspaces as u64, repos);
    }
    for o in outcomes.iter().filter(|o| o.tokens > 1) {
        let (_, _, bound, _) = lower_bound(workspaces as u64, repos, 1, o.tokens);
        let bound = bound + o.jobs.mean();
        let _ = writeln!(
            out,
            "\nWith {} Snyk tokens: {:.1} imports/s; the bound for {} tokens ({} × one token's rate) allows {:.1}/s: {:.0} %.",
            o.tokens,
            repos as f64 / o.wall.as_secs_f64(),
            o.tokens,
            o.tokens,
            repos as f64 / bound.as_secs_f64(),
            bound.as_secs_f64() / o.wall.as_secs_f64() * 100.0
        );
    }
    let _ = writeln!(
        out,
        "\nDiscoverer peak RSS: {small_peak:.1} MiB at {} repositories, {large_peak:.1} MiB at {repos}.\n",
        small * REPOS_PER_WORKSPACE
    );
    let _ = writeln!(
        out,
        "Broker fan-out (20,000 persistent messages, quorum queue, 32 publishers with confirms; one consumer, prefetch 64): \
         {published:.0} published/s, {consumed:.0} consumed and acked/s.\n"
    );
    let _ = writeln!(
        out,
        "Targets: ≥ 90 % of the bound (≥ 85 % for jobs of 1-60 s), ≤ 1.3 polls per import for jobs of 5 s (≤ 2.5 for jobs of 1-60 s), \
         half the jobs or more seen in time (within a quarter of their duration and a second of their end), \
         0 steady-state 429s, 1 token exchange per lifetime for the fleet, ≤ 40 MiB peak RSS per service, \
         a flat discoverer RSS from 1,000 to 10,000 repositories."
    );
    println!("{out}");
    // A partial run (BENCH_ONLY) leaves BENCHMARKS.md alone: its rows go beside it, to be merged by hand.
    let file = if only.is_empty() {
        "BENCHMARKS.md".to_owned()
    } else {
        format!("target/BENCHMARKS-{only}.md")
    };
    std::fs::write(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(&file),
        out,
    )
    .expect("the benchmark file");
}
