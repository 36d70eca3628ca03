//! The real `importer` binary refuses to start without what it needs, with the documented exit codes.

use std::process::Command;

fn importer(env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_importer"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        // Tests run side by side: each takes a free port for its endpoints.
        .env("BB2SNYK__METRICS__LISTEN", "127.0.0.1:0");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("importer runs")
}

#[test]
fn without_snyk_token_it_exits_2_naming_it() {
    let out = importer(&[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("importer: SNYK_TOKEN is not set"),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_broker_exits_4_naming_amqp_url() {
    let out = importer(&[
        ("SNYK_TOKEN", "t"),
        ("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f"),
        ("BB2SNYK__AMQP__CONNECT_ATTEMPTS", "1"),
    ]);
    assert_eq!(out.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot reach RabbitMQ") && stderr.contains("AMQP_URL"),
        "{stderr}"
    );
}
