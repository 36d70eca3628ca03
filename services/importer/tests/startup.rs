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

/// Replicas on one host: the default endpoints port held by another gives way to a free port, announced
/// in the log, so the second replica starts; a port that was asked for is not swapped.
#[test]
fn a_taken_default_endpoints_port_gives_way_and_a_chosen_one_does_not() {
    // Held here, as a first replica would hold it (unless something already does, which is the same).
    let _held = std::net::TcpListener::bind("0.0.0.0:9600");
    let mut command = Command::new(env!("CARGO_BIN_EXE_importer"));
    let defaulted = command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SNYK_TOKEN", "t")
        .env("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f")
        .env("BB2SNYK__AMQP__CONNECT_ATTEMPTS", "1")
        .output()
        .expect("importer runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&defaulted.stdout),
        String::from_utf8_lossy(&defaulted.stderr)
    );
    // It got as far as the broker: the endpoints were served.
    assert_eq!(defaulted.status.code(), Some(4), "{said}");
    assert!(said.contains("cannot reach RabbitMQ"), "{said}");
    assert!(
        said.contains("the default endpoints port 0.0.0.0:9600 is taken"),
        "{said}"
    );

    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let chosen = held.local_addr().expect("its address").to_string();
    let out = importer(&[("SNYK_TOKEN", "t"), ("BB2SNYK__METRICS__LISTEN", &chosen)]);
    assert_eq!(out.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot serve /metrics on {chosen}")),
        "{stderr}"
    );
}
