//! `run`: the whole pipeline in this process; `demo`: the same against a simulated tenant.

use bb2snyk_messages::{Body, RunRequested};
use bb2snyk_sandbox::{Knobs, Sandbox};
use bb2snyk_settings::{BitbucketAuth, Settings};
use secrecy::SecretString;

use crate::{
    Failure,
    cli::{DemoArgs, Filters, Group, RunArgs},
    embedded::{Embedded, Logs, Stages},
    files,
};

/// Discovers, creates orgs and imports in one process on the embedded broker and store. Targets in
/// `SNYK_LOG_PATH/imported-targets.log` are skipped, so a second run imports nothing new.
pub async fn run(settings: &Settings, args: &RunArgs) -> Result<(), Failure> {
    let dir = files::log_dir(&settings.import.log_path)?;
    let (done, unreadable) = files::imported_targets(&dir)?;
    if unreadable > 0 {
        eprintln!(
            "{unreadable} line(s) of imported-targets.log could not be read and were ignored"
        );
    }
    let pipeline = Embedded::start(settings, Stages::All, done).await?;
    let ledger = pipeline.ledger.clone();
    files::load_uuids(&dir, &ledger).await?;
    println!("Run {} for group {}", pipeline.run_id, args.group.group_id);
    pipeline.publish(&Body::RunRequested(RunRequested {
        run_id: pipeline.run_id.clone(),
        group_id: args.group.group_id.clone(),
        source_org_id: args.group.source_org_public_id.clone(),
        // Carried by the request, as `discover` does for the services.
        filters: args.filters.given(),
        sync: None,
    }));
    let mut logs = Logs::new(&dir);
    let summary = pipeline.finish(&mut logs, "run", None).await?;
    files::save_uuids(&dir, &ledger).await?;
    summary.report()?;
    println!("Logs are in {}", dir.display());
    Ok(())
}

/// Starts the sandbox on a free port with a generated tenant and runs twice: the first run imports every
/// repository, the second finds nothing new; then the tenant changes and the demo writes the coverage
/// report's HTML page.
pub async fn demo(mut settings: Settings, args: &DemoArgs) -> Result<(), Failure> {
    let knobs = Knobs {
        workspaces: args.workspaces,
        repos_per_workspace: args.repos,
        job_ms: 1000,
        ..Knobs::default()
    };
    let sandbox = Sandbox::start(knobs.clone())
        .await
        .map_err(|e| Failure::Unavailable(format!("cannot start the sandbox: {e}")))?;
    let url = sandbox.url();
    let parse = |s: String| url::Url::parse(&s).map_err(|e| Failure::Config(e.to_string()));
    settings.bitbucket.api_base = parse(format!("{url}/2.0"))?;
    settings.bitbucket.token_url = parse(format!("{url}/site/oauth2/access_token"))?;
    settings.bitbucket.auth = BitbucketAuth::OAuth;
    settings.bitbucket.client_id = Some(knobs.client_id.clone());
    settings.bitbucket.client_secret = Some(SecretString::from(knobs.client_secret.clone()));
    settings.bitbucket.workspaces.clear();
    settings.snyk.api_base = parse(format!("{url}/v1"))?;
    settings.snyk.token = Some(SecretString::from(knobs.snyk_token.clone()));
    if std::env::var_os("SNYK_LOG_PATH").is_none() {
        settings.import.log_path = "bb2snyk-demo".into();
    }
    let truth = sandbox.stats().truth;
    println!(
        "Sandbox on {url}: {} workspaces, {} repositories ({} empty, {} forks)",
        truth.workspaces, truth.repositories, truth.empty, truth.forks
    );
    let group_id: bb2snyk_messages::GroupId = knobs.group_id.parse().map_err(Failure::Config)?;
    let args = RunArgs {
        group: Group {
            group_id: group_id.clone(),
            source_org_public_id: None,
        },
        filters: Filters::default(),
    };
    for attempt in ["first run", "second run: nothing new to do"] {
        println!("\n== {attempt}");
        run(&settings, &args).await?;
        let stats = sandbox.stats();
        println!(
            "Sandbox saw: {} orgs created, {} import requests, {} token exchange(s), {} requests in all",
            stats.orgs_created,
            stats.import_posts_total,
            stats.token_exchanges,
            stats.requests_total
        );
    }
    // A month passes: repositories are added, one is deleted and one changes its default branch.
    let drift = sandbox.drift([2, 1, 0, 1]);
    println!(
        "\n== a month later: {} added, {} deleted ({}), {} re-branched ({})",
        drift.add.values().sum::<usize>(),
        drift.delete.len(),
        drift.delete.join(", "),
        drift.branch.len(),
        drift.branch.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    println!("\n== coverage report");
    let report =
        crate::report::gather(&settings, &crate::report::ReportArgs::of_group(group_id)).await?;
    let path = files::log_dir(&settings.import.log_path)?.join("coverage.html");
    crate::report::write(&path, &crate::report::html::page(&report))?;
    println!(
        "{} of {} repositories imported ({:.1} % coverage); the report is {}",
        report.totals.imported,
        report.totals.repositories,
        report.totals.coverage_percent,
        path.display()
    );
    Ok(())
}
