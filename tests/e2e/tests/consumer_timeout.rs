//! A delivery is never held past RabbitMQ's `consumer_timeout`: with a Snyk budget that has no slot for
//! seconds, the stages give their deliveries back (deferred through a retry tier) instead of holding them,
//! and RabbitMQ closes no channel.
//!
//! A test binary of its own: RabbitMQ 3.10 sets `consumer_timeout` for the whole broker, so it is lowered
//! only while nothing else runs (cargo runs test binaries one at a time), and restored after.

use std::time::Duration;

use bb2snyk_e2e::{ALL, Captured, TestFleet};
use bb2snyk_sandbox::Knobs;
use bb2snyk_test_support::wait_for;
use futures_util::StreamExt;
use tracing_subscriber::EnvFilter;

/// The broker's consumer timeout lowered to `millis` (and checked every second) until dropped.
struct Lowered;

fn rabbitmqctl_eval(expression: &str) -> bool {
    std::process::Command::new("rabbitmqctl")
        .args(["eval", expression])
        .output()
        .is_ok_and(|o| o.status.success())
}

impl Lowered {
    fn to(millis: u64) -> Self {
        assert!(
            rabbitmqctl_eval(&format!(
                "application:set_env(rabbit, consumer_timeout, {millis}), \
                 application:set_env(rabbit, channel_tick_interval, 500)."
            )),
            "this test lowers RabbitMQ's consumer_timeout with `rabbitmqctl eval`, which failed: run it where \
             rabbitmqctl reaches the broker (the README's test command, .ci/run, does)"
        );
        Self
    }
}

impl Drop for Lowered {
    fn drop(&mut self) {
        rabbitmqctl_eval(
            "application:set_env(rabbit, consumer_timeout, 1800000), \
             application:set_env(rabbit, channel_tick_interval, 60000).",
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_wait_past_the_bound_gives_the_delivery_back_and_no_channel_is_closed() {
    let captured = Captured::default();
    let subscriber = bb2snyk_telemetry::subscriber(
        EnvFilter::new("warn,bb2snyk_broker=info"),
        bb2snyk_telemetry::Format::Human,
        captured.clone(),
        false,
    );
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    let _lowered = Lowered::to(3000);

    // The control: a delivery held past 3 s does get its channel closed, so the setting is in force.
    let url = bb2snyk_test_support::amqp_url();
    let control = bb2snyk_broker::connect(
        std::slice::from_ref(&url),
        "bb2snyk-test-timeout",
        Default::default(),
    )
    .await
    .expect("RabbitMQ");
    let channel = control.create_channel().await.expect("channel");
    let queue = bb2snyk_test_support::unique("held");
    let options = lapin::options::QueueDeclareOptions {
        auto_delete: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue.as_str().into(), options, Default::default())
        .await
        .expect("queue");
    channel
        .basic_publish(
            "".into(),
            queue.as_str().into(),
            Default::default(),
            b"held",
            Default::default(),
        )
        .await
        .expect("published");
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "holder".into(),
            Default::default(),
            Default::default(),
        )
        .await
        .expect("consumer");
    let held = consumer
        .next()
        .await
        .expect("a delivery")
        .expect("delivered");
    wait_for(
        "RabbitMQ to close the holding channel",
        Duration::from_secs(30),
        || async { (!channel.status().connected()).then_some(()) },
    )
    .await;
    drop(held);
    let _ = control.close(200, "done".into()).await;

    // Snyk: 4 calls per 8 s, and a delivery may wait 1 s for one. Without the bound, deliveries would wait
    // up to 8 s for the budget, past the 3 s timeout.
    let knobs = Knobs {
        workspaces: 2,
        repos_per_workspace: 4,
        empty_rate: 0.0,
        fork_rate: 0.0,
        job_ms: 100,
        ..Knobs::default()
    };
    let env = [
        ("BB2SNYK__SNYK__RATE_BUDGET", "4"),
        ("BB2SNYK__SNYK__RATE_WINDOW_SECS", "8"),
        ("BB2SNYK__PIPELINE__MAX_HOLD_SECS", "1"),
    ];
    let before = captured.text().len();
    let mut fleet = TestFleet::start(knobs, "timeout", &env).await;
    fleet.spawn(&ALL, 1);
    let truth = fleet.sandbox.stats().truth;
    let run = fleet.request_run().await;
    // The budget (4 Snyk calls per 8 s) makes the run slow on purpose, and how slow depends on how its
    // polls and listings fall: 60 to 204 s on this machine for the same commit. The deadline only stops a
    // run that would never end.
    wait_for(
        "every repository imported",
        Duration::from_secs(480),
        || async { (run.settled().await == truth.repositories).then_some(()) },
    )
    .await;
    let logs = captured.text()[before..].to_owned();
    assert!(
        logs.contains("deferred"),
        "deliveries were given back while the budget had no slot"
    );
    for closed in [
        "consumer interrupted",
        "could not ack",
        "PRECONDITION_FAILED",
    ] {
        assert!(
            !logs.contains(closed),
            "a channel was closed ({closed}):\n{logs}"
        );
    }
    let counts = run.ledger.counts(&run.id).await.expect("counts");
    assert_eq!(counts.imported, truth.repositories);
    fleet.stop().await;
}
