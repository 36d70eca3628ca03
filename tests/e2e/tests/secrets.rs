//! Secrets never reach the logs: at trace level, for every target (ours, reqwest, hyper, the sandbox), in
//! both log formats, across a token exchange, both APIs and their error paths.

use std::{
    collections::HashMap,
    io::Write,
    sync::{Arc, Mutex, PoisonError},
};

use bb2snyk_bitbucket::{Client as Bitbucket, Consumer, Page, UserWorkspace, exchange};
use bb2snyk_sandbox::{Knobs, Sandbox};
use bb2snyk_settings::{Settings, Sources};
use bb2snyk_snyk::Client as Snyk;
use bb2snyk_telemetry::Format;
use secrecy::{ExposeSecret, SecretString};
use tracing_subscriber::EnvFilter;

const CLIENT_SECRET: &str = "cs-4f8a1d7e9b2c6a30-very-secret";
const SNYK_TOKEN: &str = "st-0c1b2a3d4e5f6a7b-very-secret";

/// Everything written to it, kept for inspection.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Runs a whole session: settings from the environment, token, Bitbucket, Snyk, and failures of each.
/// Returns the Bearer token it used and the Debug text of everything it held.
async fn session(sandbox: &Sandbox) -> (String, String) {
    let env: HashMap<String, String> = sandbox
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let settings: Settings =
        bb2snyk_settings::load(&Sources { file: None, env }).expect("settings load");
    let mut debug = format!("{settings:?}\n");
    let http = bb2snyk_http::client(&settings.http).expect("HTTP client");
    let (client_id, client_secret) = settings.bitbucket_consumer().expect("consumer");
    let consumer = Consumer {
        client_id: client_id.to_owned(),
        client_secret: client_secret.clone(),
    };
    let token = exchange(&http, &settings.bitbucket.token_url, &consumer)
        .await
        .expect("token");
    debug += &format!("{token:?} {consumer:?}\n");

    let bitbucket = Bitbucket::new(http.clone(), &settings.bitbucket.api_base);
    let page: Page<UserWorkspace> = bitbucket
        .page(&token.secret, &bitbucket.user_workspaces_url())
        .await
        .expect("workspaces");
    for ws in page.values {
        bitbucket
            .walk_repositories(&token.secret, &ws.workspace.slug, |_| {})
            .await
            .expect("repositories");
    }
    let snyk = Snyk::new(
        http.clone(),
        &settings.snyk.api_base,
        settings.snyk_token().expect("token").clone(),
    );
    snyk.group_orgs(&sandbox.knobs().group_id)
        .await
        .expect("orgs");
    debug += &format!("{snyk:?} {bitbucket:?}\n");

    // The error paths: a revoked Bearer token, a wrong consumer secret, a rejected Snyk token.
    sandbox.revoke_tokens();
    let revoked = bitbucket
        .walk_repositories(&token.secret, "acme-000", |_| {})
        .await
        .expect_err("revoked");
    let wrong = Consumer {
        client_id: client_id.to_owned(),
        client_secret: SecretString::from(format!("{CLIENT_SECRET}-wrong")),
    };
    let refused = exchange(&http, &settings.bitbucket.token_url, &wrong)
        .await
        .expect_err("wrong secret");
    let bad_snyk = Snyk::new(
        http,
        &settings.snyk.api_base,
        SecretString::from(format!("{SNYK_TOKEN}-wrong")),
    );
    let unauthorised = bad_snyk
        .group_orgs(&sandbox.knobs().group_id)
        .await
        .expect_err("401");
    debug +=
        &format!("{revoked:?} {revoked} {refused:?} {refused} {unauthorised:?} {unauthorised}\n");
    (token.secret.expose_secret().to_owned(), debug)
}

async fn captured_session(format: Format) {
    let knobs = Knobs {
        client_secret: CLIENT_SECRET.into(),
        snyk_token: SNYK_TOKEN.into(),
        ..Knobs::default()
    };
    let sandbox = Sandbox::start(knobs).await.expect("sandbox");
    let captured = Captured::default();
    let subscriber =
        bb2snyk_telemetry::subscriber(EnvFilter::new("trace"), format, captured.clone(), false);
    let guard = tracing::subscriber::set_default(subscriber);
    let (bearer, debug) = session(&sandbox).await;
    drop(guard);
    let logs = captured.text();

    // The capture is real: it saw our calls and the HTTP stack's trace output.
    assert!(
        logs.contains("bitbucket token exchange") && logs.contains("snyk GET"),
        "our debug lines are missing"
    );
    assert!(
        logs.contains("/2.0/repositories/acme-000"),
        "request URLs are missing"
    );
    assert!(
        logs.lines().count() > 50,
        "trace output from the HTTP stack is missing ({} lines)",
        logs.lines().count()
    );
    assert!(bearer.len() > 20);

    for (name, secret) in [
        ("client secret", CLIENT_SECRET),
        ("Snyk token", SNYK_TOKEN),
        ("Bearer token", bearer.as_str()),
    ] {
        assert!(
            !logs.contains(secret),
            "the {name} appears in the {format:?} logs"
        );
        assert!(
            !debug.contains(secret),
            "the {name} appears in Debug or Display output"
        );
    }
}

#[tokio::test]
async fn no_secret_in_human_logs_at_trace_level() {
    captured_session(Format::Human).await;
}

#[tokio::test]
async fn no_secret_in_json_logs_at_trace_level() {
    captured_session(Format::Json).await;
}
