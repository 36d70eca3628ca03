//! The Snyk v1 client against the sandbox: orgs, integrations, notification settings, import and polling,
//! each error class, and the budget under Snyk's rate limit.
//!
//! Over 400 lines on purpose: one test per call and error class, kept in one file as the client is one.

use std::time::Duration;

use bb2snyk_sandbox::{Knobs, Sandbox};
use bb2snyk_snyk::{Client, ImportOptions, JobStatus, SnykError, Target, quiet_notifications};
use bb2snyk_store::{Budget, BudgetConfig};
use bb2snyk_test_support::wait_for;
use reqwest::StatusCode;
use secrecy::SecretString;
use url::Url;

/// A client with a budget of `limit` per `window` of its own (per process, as without Redis).
fn client_with(sandbox: &Sandbox, token: &str, limit: u32, window: Duration) -> Client {
    let api = Url::parse(&format!("{}/v1", sandbox.url())).expect("URL");
    let budget = Budget::new(
        None,
        BudgetConfig {
            api: "snyk",
            credential: "test".into(),
            limit,
            window,
        },
    );
    Client::new(
        reqwest::Client::new(),
        &api,
        vec![(SecretString::from(token.to_owned()), budget)],
    )
}

fn client(sandbox: &Sandbox) -> Client {
    client_with(sandbox, "sandbox-snyk-token", 1800, Duration::from_secs(60))
}

/// A repository of the sandbox's tenant that imports cleanly (or is poisoned as asked).
fn repo(sandbox: &Sandbox, poison: Option<&str>) -> Target {
    let truth = sandbox.truth();
    for ws in truth.as_array().expect("tenant") {
        for r in ws["repos"].as_array().expect("repos") {
            let empty = r["mainbranch"].is_null();
            if !empty && r["poison"].as_str() == poison {
                return Target {
                    owner: ws["slug"].as_str().expect("slug").to_owned(),
                    name: r["slug"].as_str().expect("slug").to_owned(),
                    branch: r["mainbranch"].as_str().map(str::to_owned),
                };
            }
        }
    }
    panic!("no repository with poison {poison:?}");
}

#[tokio::test]
async fn every_org_of_the_group_across_pages() {
    let names: Vec<String> = (0..230).map(|i| format!("org-{i}")).collect();
    let sandbox = Sandbox::start(Knobs {
        existing_orgs: names,
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let orgs = client(&sandbox)
        .group_orgs(&sandbox.knobs().group_id)
        .await
        .expect("orgs");
    assert_eq!(orgs.len(), 231, "230 and the template");
    assert_eq!(sandbox.stats().requests["GET /v1/group/{group_id}/orgs"], 3);
}

#[tokio::test]
async fn an_org_is_created_with_the_app_integration_and_quiet_notifications() {
    let sandbox = Sandbox::start(Knobs::default()).await.expect("sandbox");
    let snyk = client(&sandbox);
    let group = sandbox.knobs().group_id;
    let org = snyk.create_org("acme", &group, None).await.expect("201");
    assert_eq!(org.name, "acme");
    let integration = snyk
        .app_integration(&org.id, None)
        .await
        .expect("integrations")
        .expect("the app is connected");
    assert_eq!(
        snyk.integrations(&org.id).await.expect("integrations")["bitbucket-connect-app"],
        integration
    );
    assert_eq!(
        snyk.app_integration(&org.id, Some("github"))
            .await
            .expect("integrations"),
        None
    );
    snyk.set_notification_settings(&org.id, &quiet_notifications())
        .await
        .expect("200");
    let held = sandbox.orgs();
    let stored = held.iter().find(|o| o.id == org.id).expect("org");
    assert_eq!(stored.notification_settings, Some(quiet_notifications()));

    let unnamed = snyk.create_org("", &group, None).await.expect_err("422");
    assert!(
        matches!(
            unnamed,
            SnykError::Rejected {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                ..
            }
        ),
        "{unnamed:?}"
    );
    assert!(!unnamed.is_transient());
}

#[tokio::test]
async fn an_import_is_polled_to_its_projects() {
    let sandbox = Sandbox::start(Knobs {
        job_ms: 300,
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let snyk = client(&sandbox);
    let org = snyk
        .create_org("acme", &sandbox.knobs().group_id, None)
        .await
        .expect("org");
    let integration = snyk
        .app_integration(&org.id, None)
        .await
        .expect("integrations")
        .expect("app");
    let target = repo(&sandbox, None);
    let location = snyk
        .import(&org.id, &integration, &target, &ImportOptions::default())
        .await
        .expect("201");
    assert!(
        location.starts_with("http://") && location.contains("/import/"),
        "{location}"
    );
    assert_eq!(
        snyk.job(&org.id, &location).await.expect("poll").status,
        JobStatus::Pending
    );
    let job = wait_for("the job to finish", Duration::from_secs(10), || async {
        let job = snyk.job(&org.id, &location).await.expect("poll");
        job.status.is_terminal().then_some(job)
    })
    .await;
    assert_eq!(job.status, JobStatus::Complete);
    assert!(job.projects().count() >= 1);
    assert!(job.projects().all(|p| p.success && p.project_id.is_some()));
}

#[tokio::test]
async fn poison_repositories_fail_with_their_reasons() {
    let sandbox = Sandbox::start(Knobs {
        poison_post_rate: 0.3,
        poison_job_rate: 0.3,
        job_ms: 100,
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let snyk = client(&sandbox);
    let org = snyk
        .create_org("acme", &sandbox.knobs().group_id, None)
        .await
        .expect("org");
    let integration = snyk
        .app_integration(&org.id, None)
        .await
        .expect("integrations")
        .expect("app");
    let refused = snyk
        .import(
            &org.id,
            &integration,
            &repo(&sandbox, Some("post_rejected")),
            &ImportOptions::default(),
        )
        .await
        .expect_err("400");
    assert!(matches!(
        refused,
        SnykError::Rejected {
            status: StatusCode::BAD_REQUEST,
            ..
        }
    ));
    assert!(!refused.is_transient() && !refused.is_configuration());

    let location = snyk
        .import(
            &org.id,
            &integration,
            &repo(&sandbox, Some("job_fails")),
            &ImportOptions::default(),
        )
        .await
        .expect("201");
    let job = wait_for("the job to fail", Duration::from_secs(10), || async {
        let job = snyk.job(&org.id, &location).await.expect("poll");
        job.status.is_terminal().then_some(job)
    })
    .await;
    assert_eq!(job.status, JobStatus::Failed);
    assert!(
        job.failure().contains("ended Failed: "),
        "{}",
        job.failure()
    );
}

#[tokio::test]
async fn a_rejected_token_names_snyk_token() {
    let sandbox = Sandbox::start(Knobs::default()).await.expect("sandbox");
    let error = client_with(&sandbox, "wrong", 10, Duration::from_secs(60))
        .group_orgs(&sandbox.knobs().group_id)
        .await
        .expect_err("401");
    assert!(error.is_configuration());
    assert!(error.to_string().contains("SNYK_TOKEN"));
    assert_eq!(sandbox.stats().requests_total, 1, "a 401 is not retried");
    let missing = client(&sandbox)
        .group_orgs("no-such-group")
        .await
        .expect_err("404");
    assert!(missing.to_string().contains("was not found"), "{missing}");
}

#[tokio::test]
async fn faults_are_retried_and_the_budget_keeps_under_the_limit() {
    let sandbox = Sandbox::start(Knobs {
        fault_rate: 0.2,
        snyk_rate_limit: Some(30),
        snyk_window_secs: 2,
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    // 30 per 2 s on the server; 29 per 2 s for us, the way the default keeps 1,800 under 2,000.
    let snyk = client_with(&sandbox, "sandbox-snyk-token", 29, Duration::from_secs(2));
    let group = sandbox.knobs().group_id;
    // Reads are retried through the faults.
    let template = sandbox.orgs()[0].id.clone();
    for _ in 0..30 {
        snyk.integrations(&template)
            .await
            .expect("read despite faults");
    }
    // A create that meets a 5xx may have happened (it is a POST), so it is never sent again: the error
    // goes back to the caller, who looks before creating again.
    let mut created = 0;
    for i in 0..30 {
        match snyk.create_org(&format!("org-{i}"), &group, None).await {
            Ok(_) => created += 1,
            Err(e) => assert!(matches!(e, SnykError::Server { .. }), "{e:?}"),
        }
    }
    let stats = sandbox.stats();
    assert!(stats.server_errors > 0, "faults were injected");
    assert_eq!(stats.requests["POST /v1/org"], 30, "each create sent once");
    assert_eq!(
        stats.orgs_created, created,
        "this sandbox fails before it creates"
    );
    assert_eq!(
        stats.rate_limited.get("snyk"),
        None,
        "no 429 under the budget"
    );
}

/// Every POST takes effect and is answered 502: each is tried once, its error says it may have happened,
/// and the target shows in REST once its job is done (never while it is pending).
#[tokio::test]
async fn a_ghost_write_is_not_sent_again_and_the_target_shows_once_its_job_is_done() {
    let sandbox = Sandbox::start(Knobs {
        job_ms: 300,
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let snyk = client(&sandbox);
    let group = sandbox.knobs().group_id;
    let org = snyk.create_org("acme", &group, None).await.expect("org");
    let integration = snyk
        .app_integration(&org.id, None)
        .await
        .expect("integrations")
        .expect("app");
    let target = repo(&sandbox, None);
    let name = format!("{}/{}", target.owner, target.name);
    assert!(!snyk.has_target(&org.id, &name).await.expect("REST"));

    sandbox.update(|k| k.ghost_rate = 1.0);
    let ghost = snyk
        .create_org("globex", &group, None)
        .await
        .expect_err("a 502");
    assert!(ghost.is_transient(), "{ghost}");
    let failed = snyk
        .import(&org.id, &integration, &target, &ImportOptions::default())
        .await
        .expect_err("a 502");
    assert!(matches!(failed, SnykError::Server { .. }), "{failed:?}");
    let stats = sandbox.stats();
    assert_eq!(stats.ghost_writes, 2);
    assert_eq!(
        stats.orgs_created, 2,
        "each POST sent once, and each took effect"
    );
    assert_eq!(stats.import_posts_total, 1);

    // Pending: not yet a target. Done: a target, matched exactly (a prefix of it is not).
    assert!(!snyk.has_target(&org.id, &name).await.expect("REST"));
    wait_for("the job to complete", Duration::from_secs(10), || async {
        snyk.has_target(&org.id, &name)
            .await
            .expect("REST")
            .then_some(())
    })
    .await;
    let prefix = &name[..name.len() - 1];
    assert!(!snyk.has_target(&org.id, prefix).await.expect("REST"));
}

/// A name that is a prefix of several targets, one target a page: the lookup reads every page before it
/// says no, and compares names exactly.
#[tokio::test]
async fn the_target_lookup_reads_every_page() {
    let sandbox = Sandbox::start(Knobs {
        workspaces: 1,
        repos_per_workspace: 30,
        empty_rate: 0.0,
        job_ms: 0,
        rest_page_limit: Some(1),
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let snyk = client(&sandbox);
    let template = &sandbox.orgs()[0];
    let integration = template.integrations.values().next().expect("app").clone();
    let tenant = sandbox.truth();
    let workspace = tenant[0]["slug"].as_str().expect("slug").to_owned();
    let slugs: Vec<String> = tenant[0]["repos"]
        .as_array()
        .expect("repos")
        .iter()
        .map(|r| r["slug"].as_str().expect("slug").to_owned())
        .collect();
    for slug in &slugs {
        let target = Target {
            owner: workspace.clone(),
            name: slug.clone(),
            branch: None,
        };
        snyk.import(
            &template.id,
            &integration,
            &target,
            &ImportOptions::default(),
        )
        .await
        .expect("201");
    }
    // The first letter of a slug: a name no repository has, but the prefix of several.
    let prefix = &slugs[0][..1];
    let matching = slugs.iter().filter(|s| s.starts_with(prefix)).count() as u64;
    let requests = |s: &bb2snyk_sandbox::state::Stats| {
        s.requests
            .get("GET /rest/orgs/{org_id}/targets")
            .copied()
            .unwrap_or(0)
    };
    let before = requests(&sandbox.stats());
    let name = format!("{workspace}/{prefix}");
    assert!(!snyk.has_target(&template.id, &name).await.expect("REST"));
    assert_eq!(
        requests(&sandbox.stats()) - before,
        matching,
        "one page per matching target, every page read"
    );
    assert!(
        snyk.has_target(&template.id, &format!("{workspace}/{}", slugs[0]))
            .await
            .expect("REST")
    );

    // The whole list, and what the projects say was imported (every page of one, the branch each had).
    let mut all = snyk.targets(&template.id).await.expect("REST");
    all.sort();
    let mut expected: Vec<String> = slugs.iter().map(|s| format!("{workspace}/{s}")).collect();
    expected.sort();
    assert_eq!(all, expected);
    let imported = snyk.imported(&template.id).await.expect("REST");
    assert_eq!(
        imported
            .iter()
            .map(|i| i.display_name.clone())
            .collect::<Vec<_>>(),
        expected,
        "one entry per target, however many projects it has"
    );
    assert!(
        imported.iter().all(|i| i.branch.is_none()),
        "imported with no branch named"
    );
}

/// An org list that ignores `page` (every page the first) ends at the first repeat instead of looping.
#[tokio::test]
async fn an_org_list_that_repeats_itself_ends() {
    let names: Vec<String> = (0..150).map(|i| format!("org-{i}")).collect();
    let sandbox = Sandbox::start(Knobs {
        existing_orgs: names,
        loop_pages: true,
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let orgs = client(&sandbox)
        .group_orgs(&sandbox.knobs().group_id)
        .await
        .expect("orgs");
    assert_eq!(orgs.len(), 100, "the first page, once");
    assert_eq!(sandbox.stats().requests["GET /v1/group/{group_id}/orgs"], 2);
}

/// Several tokens of one group: each pays from its own budget, so together they make as many calls in a
/// window as each one's limit allows; one Snyk refuses leaves the rotation and the calls go on with the rest.
#[tokio::test]
async fn calls_spread_over_every_token_and_a_refused_one_leaves_the_rotation() {
    let sandbox = Sandbox::start(Knobs {
        snyk_tokens: vec!["second-token".into()],
        snyk_rate_limit: Some(10),
        snyk_window_secs: 60,
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let api = Url::parse(&format!("{}/v1", sandbox.url())).expect("URL");
    let budget = |id: &str| {
        Budget::new(
            None,
            BudgetConfig {
                api: "snyk",
                credential: id.into(),
                limit: 10,
                window: Duration::from_secs(60),
            },
        )
        .holding_at_most(Duration::from_millis(200))
    };
    let tokens = ["wrong-token", "sandbox-snyk-token", "second-token"]
        .into_iter()
        .map(|t| (SecretString::from(t.to_owned()), budget(t)))
        .collect();
    let client = Client::new(reqwest::Client::new(), &api, tokens);
    let group = sandbox.knobs().group_id;
    // Twice one token's budget in one window: the wrong token's one try costs only its own budget.
    for _ in 0..20 {
        client
            .group_orgs(&group)
            .await
            .expect("a token with budget left");
    }
    assert_eq!(client.tokens_in_rotation(), (2, 3), "the wrong token left");
    let stats = sandbox.stats();
    assert_eq!(
        stats.rate_limited.get("snyk"),
        None,
        "no token went past its limit"
    );
    assert_eq!(
        stats.snyk_by_token.get("token-0"),
        Some(&10),
        "{:?}",
        stats.snyk_by_token
    );
    assert_eq!(
        stats.snyk_by_token.get("token-1"),
        Some(&10),
        "{:?}",
        stats.snyk_by_token
    );
    let spent = client
        .group_orgs(&group)
        .await
        .expect_err("every budget spent");
    assert!(spent.deferred().is_some(), "{spent}");
}

/// REST calls keep within REST's own limit per token (`snyk.rest_rate_budget`), below v1's: past it a
/// REST read waits (here, past the hold bound, it is deferred) while v1 calls go on.
#[tokio::test]
async fn rest_calls_keep_within_their_own_budget_while_v1_goes_on() {
    let sandbox = Sandbox::start(Knobs::default()).await.expect("sandbox");
    let mut env = sandbox.env();
    env.push(("BB2SNYK__SNYK__REST_RATE_BUDGET", "2".into()));
    env.push(("BB2SNYK__SNYK__EVEN_PACE", "false".into()));
    env.push(("BB2SNYK__PIPELINE__MAX_HOLD_SECS", "1".into()));
    let settings = bb2snyk_test_support::settings(env);
    let snyk = Client::for_stage(&settings, reqwest::Client::new(), None).expect("client");
    let group = sandbox.knobs().group_id;
    let org = snyk.group_orgs(&group).await.expect("orgs")[0].id.clone();
    for _ in 0..2 {
        snyk.targets(&org).await.expect("within the REST budget");
    }
    match snyk.targets(&org).await {
        Err(SnykError::Deferred { wait }) => assert!(wait > Duration::from_secs(1), "{wait:?}"),
        other => panic!("the third REST read in a minute should wait, got {other:?}"),
    }
    snyk.group_orgs(&group)
        .await
        .expect("v1 is not held by REST's budget");
}
