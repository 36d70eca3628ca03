//! `bb2snyk doctor`: every prerequisite checked in order, one line each, with the fix when one fails. A
//! check that needs an earlier one to pass is skipped when it did not.

use bb2snyk_bitbucket::{Account, Consumer, RepoFilter, Tenant};
use bb2snyk_settings::{BitbucketAuth, Need, Settings};
use bb2snyk_snyk::Client as Snyk;
use bb2snyk_store::Store;

use crate::{Failure, cli::DoctorArgs};

/// Scopes the pipeline uses: workspaces (account) and repositories (repository).
const SCOPES: [&str; 2] = ["account", "repository"];

struct Report {
    first_failure: Option<Failure>,
}

impl Report {
    fn line(&mut self, what: &str, result: Result<String, Failure>) -> bool {
        match result {
            Ok(detail) => {
                println!("ok    {what}: {detail}");
                true
            }
            Err(e) => {
                println!("FAIL  {what}: {e}");
                self.first_failure.get_or_insert(e);
                false
            }
        }
    }

    fn skip(&self, what: &str, because: &str) {
        println!("skip  {what}: needs {because}");
    }
}

pub async fn doctor(settings: &Settings, args: &DoctorArgs) -> Result<(), Failure> {
    let mut report = Report {
        first_failure: None,
    };
    let http = crate::http(settings)?;
    let bitbucket_ready = report.line(
        "Bitbucket configuration",
        settings
            .require(&[Need::BitbucketCredentials])
            .map(|()| {
                format!(
                    "auth = {:?}, API {}",
                    settings.bitbucket.auth, settings.bitbucket.api_base
                )
            })
            .map_err(Failure::from),
    );
    let snyk_ready = report.line(
        "Snyk configuration",
        settings
            .require(&[Need::SnykToken])
            .map(|()| format!("API {}", settings.snyk.api_base))
            .map_err(Failure::from),
    );

    if bitbucket_ready {
        let tenant = Tenant::from_settings(settings, http.clone(), None)?;
        let consumers = consumers(settings);
        let several = tenant.accounts().len() > 1;
        let mut rows = Vec::new();
        for (account, consumer) in tenant.accounts().iter().zip(consumers) {
            let what = |check: &str| {
                if several {
                    format!("Bitbucket {check} [{}]", account.name)
                } else {
                    format!("Bitbucket {check}")
                }
            };
            rows.push(
                bitbucket_checks(&mut report, &what, settings, &http, account, consumer).await,
            );
        }
        if several {
            println!(
                "\n{:<70} {:<8} {:<8} {:<24} repositories",
                "credential", "sign-in", "scopes", "workspaces"
            );
            for row in &rows {
                println!("{row}");
            }
            println!();
        }
    }

    if snyk_ready {
        let snyk = Snyk::from_settings(settings, http.clone(), None)?;
        match &args.group_id {
            Some(group) => {
                // Every token on its own: each must reach the group, or it would fail its share of calls.
                let mut reachable = true;
                for (label, client) in Snyk::per_token(settings, http.clone())? {
                    reachable &= report.line(
                        &format!("{label} and group"),
                        client
                            .group_orgs(group)
                            .await
                            .map(|orgs| format!("group {group} reachable, {} orgs", orgs.len()))
                            .map_err(|e| group_failure(e, group)),
                    );
                }
                if !reachable {
                    report.skip("template org", "the group");
                }
            }
            None => report.skip("SNYK_TOKEN and group", "--groupId"),
        }
        if let Some(org) = &args.source_org_public_id {
            report.line(
                "template org's Bitbucket Cloud App",
                match snyk
                    .app_integration(org, settings.snyk.integration_type.as_deref())
                    .await
                {
                    Ok(Some(id)) => Ok(format!("integration {id}")),
                    Ok(None) => Err(Failure::Failed(format!(
                        "org {org} has no Bitbucket Cloud App integration: connect the Snyk Bitbucket Cloud App in that org (Settings → Integrations), so the orgs created from it have it too"
                    ))),
                    Err(e) => Err(Failure::from(e)),
                },
            );
        }
    }

    if args.fleet || std::env::var_os("AMQP_URL").is_some() {
        let name = format!("bb2snyk-doctor/{}", settings.amqp.prefix);
        let reconnect = bb2snyk_broker::Reconnect {
            attempts: 1,
            ..Default::default()
        };
        report.line(
            "RabbitMQ",
            match bb2snyk_broker::connect(&settings.amqp.urls, &name, reconnect).await {
                Ok(c) => {
                    let _ = c.close(200, "done".into()).await;
                    Ok(format!(
                        "reachable at {}",
                        bb2snyk_settings::redact_urls(&settings.amqp.urls)
                    ))
                }
                Err(e) => Err(Failure::from(e)),
            },
        );
    }
    if args.fleet || std::env::var_os("REDIS_URL").is_some() {
        let store = Store::connect(&settings.redis.url, &settings.redis.prefix).await;
        let reachable = report.line(
            "Redis",
            match &store {
                Ok(store) => store
                    .set("doctor", b"ok", Some(std::time::Duration::from_secs(10)))
                    .await
                    .map(|()| {
                        format!(
                            "reachable at {}",
                            bb2snyk_settings::redact_url(&settings.redis.url)
                        )
                    })
                    .map_err(Failure::from),
                Err(e) => Err(Failure::Unavailable(e.to_string())),
            },
        );
        if let (true, Ok(store)) = (reachable, &store) {
            persistence(store).await;
        }
    }
    match report.first_failure {
        Some(e) => Err(e),
        None => {
            println!("All checks passed.");
            Ok(())
        }
    }
}

/// Warns (it does not fail) when Redis keeps nothing on disk: the ledger is what keeps a second run from
/// importing everything again, and a restart without persistence forgets it.
async fn persistence(store: &Store) {
    let setting = |name: &'static str| async move {
        store
            .run(|mut c| async move {
                redis::cmd("CONFIG")
                    .arg("GET")
                    .arg(name)
                    .query_async::<Vec<String>>(&mut c)
                    .await
            })
            .await
            .ok()
            .and_then(|pair| pair.get(1).cloned())
    };
    match (setting("appendonly").await, setting("save").await) {
        (Some(aof), Some(save)) if aof == "no" && save.trim().is_empty() => println!(
            "warn  Redis persistence: off (appendonly no, no snapshots); a restart forgets the ledger and the \
             next run imports everything again: run Redis with --appendonly yes"
        ),
        (Some(aof), _) => println!("ok    Redis persistence: appendonly {aof}"),
        _ => println!(
            "warn  Redis persistence: unknown (CONFIG GET refused, as managed Redis often does); make sure it \
             persists its data"
        ),
    }
}

/// The OAuth consumer behind each account, in the tenant's order (`None` for other kinds of credential).
fn consumers(settings: &Settings) -> Vec<Option<Consumer>> {
    let b = &settings.bitbucket;
    if !b.consumers.is_empty() {
        return b
            .consumers
            .iter()
            .map(|c| {
                Some(Consumer {
                    client_id: c.client_id.clone(),
                    client_secret: c.client_secret.clone(),
                })
            })
            .collect();
    }
    match (&b.auth, &b.client_id, &b.client_secret) {
        (BitbucketAuth::OAuth, Some(id), Some(secret)) => vec![Some(Consumer {
            client_id: id.clone(),
            client_secret: secret.clone(),
        })],
        _ => vec![None],
    }
}

/// One credential's checks (sign-in, scopes, workspaces, a first page of repositories), each a line of
/// the report; returns the credential's row for the table printed when there are several.
async fn bitbucket_checks(
    report: &mut Report,
    what: &dyn Fn(&str) -> String,
    settings: &Settings,
    http: &reqwest::Client,
    account: &Account,
    consumer: Option<Consumer>,
) -> String {
    let bitbucket = &account.client;
    let mark = |ok: bool| if ok { "ok" } else { "FAIL" };
    let signed_in = report.line(
        &what("sign-in"),
        bitbucket
            .sign_in()
            .await
            .map(|()| "accepted".to_owned())
            .map_err(Failure::from),
    );
    if !signed_in {
        for check in ["scopes", "workspaces"] {
            report.skip(&what(check), "Bitbucket sign-in");
        }
        return format!(
            "{:<32} {:<16} {:<8} {:<8} {:<24} -",
            account.name, account.id, "FAIL", "-", "-"
        );
    }
    let scoped = report.line(&what("scopes"), scopes(settings, http, consumer).await);
    let workspaces = bitbucket.workspaces().await;
    let slugs: Vec<String> = workspaces
        .as_ref()
        .map(|w| w.iter().map(|w| w.slug.clone()).collect())
        .unwrap_or_default();
    let visible = report.line(
        &what("workspaces"),
        workspaces
            .map_err(Failure::from)
            .and_then(|w| match w.len() {
                0 => Err(Failure::Failed(
                    "no workspace is visible: install the OAuth consumer in each workspace to import, or set bitbucket.workspaces".into(),
                )),
                n => Ok(format!("{n} visible")),
            }),
    );
    let mut readable = "-";
    if let Some(slug) = slugs.first() {
        let mut pages = bitbucket.repositories(slug, &RepoFilter::default());
        let ok = report.line(
            &what("repositories"),
            pages
                .next_page()
                .await
                .map(|page| {
                    format!(
                        "readable ({} on the first page of {slug})",
                        page.map_or(0, |p| p.len())
                    )
                })
                .map_err(Failure::from),
        );
        readable = mark(ok);
    }
    let mut shown = slugs.iter().take(3).cloned().collect::<Vec<_>>().join(",");
    if slugs.len() > 3 {
        shown.push_str(",…");
    }
    format!(
        "{:<32} {:<16} {:<8} {:<8} {:<24} {readable}",
        account.name,
        account.id,
        "ok",
        mark(scoped),
        if visible {
            format!("{} ({shown})", slugs.len())
        } else {
            "FAIL".into()
        }
    )
}

/// The scopes an OAuth consumer was granted, from a token exchange of its own; other credentials carry
/// their own permissions, which the workspace and repository checks exercise.
async fn scopes(
    settings: &Settings,
    http: &reqwest::Client,
    consumer: Option<Consumer>,
) -> Result<String, Failure> {
    let Some(consumer) = consumer else {
        return Ok("not applicable (not an OAuth consumer)".into());
    };
    let token = bb2snyk_bitbucket::exchange(http, &settings.bitbucket.token_url, &consumer).await?;
    let missing: Vec<&str> = SCOPES
        .into_iter()
        .filter(|want| !token.scopes.iter().any(|s| grants(s, want)))
        .collect();
    if missing.is_empty() {
        Ok(token.scopes.join(" "))
    } else {
        Err(Failure::Credentials(format!(
            "the OAuth consumer lacks the scopes {}: grant Account: Read and Repositories: Read in the workspace's OAuth consumer settings (granted: {})",
            missing.join(", "),
            token.scopes.join(" ")
        )))
    }
}

/// Bitbucket's scope reference: a scope grants itself and what it implies, transitively. `repository:write`,
/// `pullrequest` and `project` imply `repository`; `repository:admin` does not (it administers without
/// reading); `account:write` implies `account`.
fn grants(granted: &str, wanted: &str) -> bool {
    const IMPLIES: [(&str, &str); 7] = [
        ("repository:write", "repository"),
        ("pullrequest", "repository"),
        ("pullrequest:write", "pullrequest"),
        ("project", "repository"),
        ("project:admin", "project"),
        ("account:write", "account"),
        ("team:write", "team"),
    ];
    granted == wanted
        || IMPLIES
            .iter()
            .any(|(from, to)| *from == granted && grants(to, wanted))
}

fn group_failure(e: bb2snyk_snyk::SnykError, group: &str) -> Failure {
    match Failure::from(e) {
        Failure::Failed(why) => Failure::Failed(format!(
            "group {group} is not reachable with SNYK_TOKEN ({why}): check the group id and that the token's user is a group admin"
        )),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::grants;

    #[test]
    fn scopes_imply_what_bitbucket_says_they_imply() {
        let reads_everything = "pipeline runner pullrequest team project account issue snippet";
        for want in super::SCOPES {
            assert!(
                reads_everything.split(' ').any(|s| grants(s, want)),
                "{want}"
            );
        }
        assert!(grants("repository:write", "repository"));
        assert!(grants("pullrequest:write", "repository"));
        assert!(grants("project:admin", "repository"));
        assert!(
            !grants("repository:admin", "repository"),
            "admin does not read"
        );
        assert!(!grants("pipeline", "repository"));
    }
}
