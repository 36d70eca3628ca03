//! Each service binary's `/metrics`, `/healthz` and `/readyz` during a run on real RabbitMQ and Redis:
//! counters move, and `/readyz` fails while the importer's broker connection is down, then recovers.

use std::{collections::HashMap, process::Stdio, time::Duration};

use bb2snyk_e2e::{Run, binaries, free_port};
use bb2snyk_sandbox::{Knobs, Sandbox};
use bb2snyk_settings::Sources;
use bb2snyk_test_support::{TcpProxy, pipeline_env, wait_for};
use secrecy::ExposeSecret;
use tokio::process::{Child, Command};

const SERVICES: [&str; 3] = ["discoverer", "org-creator", "importer"];

/// A sample's total for `name` over every label set whose labels contain all of `labels`.
fn total(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| {
            let rest = &l[name.len()..];
            (rest.starts_with('{') || rest.starts_with(' ')) && labels.iter().all(|x| l.contains(x))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let response = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_and_readiness_follows_the_broker() {
    let sandbox = Sandbox::start(Knobs {
        workspaces: 4,
        repos_per_workspace: 30,
        job_ms: 300,
        latency_ms: 5,
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let env = pipeline_env(sandbox.env(), "endpoints");
    let settings = bb2snyk_settings::load(&Sources {
        file: None,
        env: env.clone(),
    })
    .expect("settings");
    let amqp = url::Url::parse(settings.amqp.urls[0].expose_secret()).expect("AMQP URL");
    let broker_at = format!(
        "{}:{}",
        amqp.host_str().unwrap_or("127.0.0.1"),
        amqp.port().unwrap_or(5672)
    );
    let proxy = TcpProxy::start(&broker_at).await;
    let bin = binaries(false);

    let mut ports = HashMap::new();
    let mut children: Vec<Child> = Vec::new();
    for service in SERVICES {
        let port = free_port();
        ports.insert(service, port);
        let mut env = env.clone();
        env.insert(
            "BB2SNYK__METRICS__LISTEN".into(),
            format!("127.0.0.1:{port}"),
        );
        if service == "importer" {
            // The importer reaches RabbitMQ through the proxy, so the test can cut it off alone.
            let mut through = amqp.clone();
            let _ = through.set_port(Some(proxy.addr().port()));
            env.insert("AMQP_URL".into(), through.to_string());
        }
        children.push(
            Command::new(bin.join(service))
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .envs(&env)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .expect("the service starts"),
        );
    }
    for service in SERVICES {
        let port = ports[service];
        wait_for(
            &format!("{service} ready"),
            Duration::from_secs(30),
            || async {
                let (status, _) = get(port, "/readyz").await?;
                (status == 200).then_some(())
            },
        )
        .await;
        assert_eq!(get(port, "/healthz").await.map(|r| r.0), Some(200));
    }

    let run = Run::request(&settings, &sandbox.knobs().group_id).await;

    // Every service's counters move while the run goes on.
    let importer = ports["importer"];
    let acked = |m: &str| {
        total(
            m,
            "bb2snyk_messages_total",
            &["queue=\"importer\"", "outcome=\"acked\""],
        )
    };
    let first = wait_for(
        "the importer's first imports",
        Duration::from_secs(60),
        || async {
            let (_, m) = get(importer, "/metrics").await?;
            (acked(&m) > 0.0).then(|| acked(&m))
        },
    )
    .await;
    wait_for(
        "the importer's counters to move",
        Duration::from_secs(60),
        || async {
            let (_, m) = get(importer, "/metrics").await?;
            let posts = total(
                &m,
                "bb2snyk_http_requests_total",
                &["api=\"snyk\"", "status=\"201\""],
            );
            (acked(&m) > first
                && posts > 0.0
                && m.contains("bb2snyk_handler_duration_seconds_bucket"))
            .then_some(())
        },
    )
    .await;
    let (_, discoverer) = get(ports["discoverer"], "/metrics").await.expect("metrics");
    assert!(
        total(&discoverer, "bb2snyk_token_exchanges_total", &[]) >= 1.0,
        "{discoverer}"
    );
    assert!(
        total(
            &discoverer,
            "bb2snyk_http_requests_total",
            &[
                "api=\"bitbucket\"",
                "endpoint=\"/repositories/{workspace}\""
            ]
        ) > 0.0,
        "{discoverer}"
    );
    assert_eq!(total(&discoverer, "bb2snyk_amqp_connected", &[]), 1.0);
    let (_, creator) = get(ports["org-creator"], "/metrics")
        .await
        .expect("metrics");
    assert!(
        total(
            &creator,
            "bb2snyk_messages_total",
            &["queue=\"org-creator\"", "outcome=\"acked\""]
        ) >= 4.0,
        "{creator}"
    );

    // The importer's broker goes away: not ready; it comes back: ready again, and the run completes.
    proxy.stop();
    wait_for(
        "the importer to report not ready",
        Duration::from_secs(30),
        || async {
            let (status, body) = get(importer, "/readyz").await?;
            (status == 503 && body.contains("disconnected")).then_some(())
        },
    )
    .await;
    assert_eq!(
        get(importer, "/healthz").await.map(|r| r.0),
        Some(200),
        "alive all along"
    );
    proxy.resume().await;
    wait_for(
        "the importer to be ready again",
        Duration::from_secs(60),
        || async {
            let (status, _) = get(importer, "/readyz").await?;
            (status == 200).then_some(())
        },
    )
    .await;
    let truth = sandbox.stats().truth;
    wait_for("the run to complete", Duration::from_secs(120), || async {
        (run.settled().await == truth.repositories).then_some(())
    })
    .await;
    // The importer's decisions: each import's job was polled and found done, by its own poll or a
    // hinted one; the jobs it follows for hints are a gauge; each call names its endpoint.
    let (_, m) = get(importer, "/metrics").await.expect("metrics");
    let done = total(&m, "bb2snyk_polls_total", &["result=\"done\""]);
    assert!(
        done >= truth.repositories as f64 - truth.empty as f64,
        "{done}: {m}"
    );
    assert!(m.contains("bb2snyk_followed_jobs "), "{m}");
    assert!(
        total(
            &m,
            "bb2snyk_http_requests_total",
            &["endpoint=\"/org/{org}/integrations/{integration}/import/{job}\""]
        ) > 0.0,
        "{m}"
    );

    for child in &mut children {
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
    }
    for child in &mut children {
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .expect("stops within the drain")
            .expect("exit status");
        assert!(status.success(), "{status:?}");
    }
    run.infrastructure.close().await;
}
