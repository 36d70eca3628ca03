//! The real `bb2snyk` binary, run as a user would.

use std::process::{Command, Output};

fn bb2snyk(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bb2snyk"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("bb2snyk runs")
}

#[test]
fn help_and_version() {
    let help = bb2snyk(&["--help"], &[]);
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("Bitbucket Cloud tenant into Snyk"));
    let version = bb2snyk(&["--version"], &[]);
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("bb2snyk {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_missing_snyk_token_exits_2_naming_it() {
    let out = bb2snyk(
        &["config"],
        &[
            ("BITBUCKET_APP_CLIENT_ID", "id"),
            ("BITBUCKET_APP_CLIENT_SECRET", "s3cr3t"),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SNYK_TOKEN is not set"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
}

#[test]
fn config_shows_values_but_not_secrets() {
    let env = [
        ("BITBUCKET_APP_CLIENT_ID", "my-consumer"),
        ("BITBUCKET_APP_CLIENT_SECRET", "consumer-s3cr3t"),
        ("SNYK_TOKEN", "snyk-s3cr3t"),
        ("CONCURRENT_IMPORTS", "20"),
        ("AMQP_URL", "amqp://bb:amqp-s3cr3t@mq:5672/%2f"),
    ];
    let out = bb2snyk(&["config"], &env);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("my-consumer")
            && stdout.contains("20")
            && stdout.contains("amqp://bb:***@mq:5672/%2f"),
        "{stdout}"
    );
    assert!(!stdout.contains("s3cr3t"), "{stdout}");
}

#[test]
fn a_malformed_value_exits_2_naming_it() {
    let out = bb2snyk(&["config"], &[("CONCURRENT_IMPORTS", "lots")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("bb2snyk: CONCURRENT_IMPORTS is invalid")
    );
}
