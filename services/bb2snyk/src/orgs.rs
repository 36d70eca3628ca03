//! Steps 1 and 2 of the seed workflow: `orgs:data` and `orgs:create`.

use std::collections::BTreeMap;

use bb2snyk_bitbucket::{RepoFilter, Tenant};
use bb2snyk_settings::Settings;
use bb2snyk_snyk::Client as Snyk;
use serde_json::json;

use crate::{
    Failure,
    cli::{OrgsCreateArgs, OrgsDataArgs},
    files::{self, CreatedOrg, CreatedOrgsFile, ERROR, INFO, Log, OrgRequest, OrgsFile},
};

/// Every workspace, all pages (not just the first, as snyk-api-import), with its slug.
pub async fn data(settings: &Settings, args: &OrgsDataArgs) -> Result<(), Failure> {
    let dir = files::log_dir(&settings.import.log_path)?;
    let tenant = Tenant::from_settings(settings, crate::http(settings)?, None)?;
    let mut orgs = Vec::new();
    let discovery = tenant.discover().await?;
    for e in &discovery.failed {
        eprintln!("⚠ {e}; its workspaces are left out");
    }
    for slug in &discovery.unseen {
        eprintln!(
            "⚠ No credential sees workspace {slug} (named in bitbucket.workspaces); add its consumer to BITBUCKET_APP_CREDENTIALS_FILE"
        );
    }
    let (workspaces, credentials): (Vec<_>, Vec<_>) = discovery.workspaces.into_iter().unzip();
    let names = bb2snyk_bitbucket::org_names(&workspaces);
    for ((workspace, name), credential) in workspaces.into_iter().zip(names).zip(credentials) {
        if args.skip_empty_orgs {
            let bitbucket = tenant.client(credential.as_deref())?;
            let mut pages = bitbucket.repositories(&workspace.slug, &RepoFilter::default());
            if pages.next_page().await?.is_none_or(|page| page.is_empty()) {
                eprintln!("Skipping empty workspace {}", workspace.slug);
                continue;
            }
        }
        orgs.push(OrgRequest {
            name,
            group_id: args.group.group_id.to_string(),
            source_org_id: args
                .group
                .source_org_public_id
                .as_ref()
                .map(ToString::to_string),
            slug: Some(workspace.slug),
        });
    }
    let path = dir.join(format!(
        "group-{}-bitbucket-cloud-app-orgs.json",
        args.group.group_id
    ));
    let found = orgs.len();
    files::write_json(&path, &OrgsFile { orgs })?;
    if found == 0 {
        println!(
            "⚠ No workspace(s) found! Written an empty list to {}",
            path.display()
        );
    } else {
        println!(
            "Found {found} workspace(s). Written the data to file: {}",
            path.display()
        );
    }
    Ok(())
}

/// Ensures one org per entry: an org of that name already in the group is reused, never duplicated
/// (unless `--allowDuplicateNames`). Safe to run again.
pub async fn create(settings: &Settings, args: &OrgsCreateArgs) -> Result<(), Failure> {
    let dir = files::log_dir(&settings.import.log_path)?;
    let file: OrgsFile = files::read_json(&args.file, "orgs file")?;
    let snyk = Snyk::from_settings(settings, crate::http(settings)?, None)?;
    let mut by_group: BTreeMap<&str, Vec<&OrgRequest>> = BTreeMap::new();
    for org in &file.orgs {
        by_group.entry(&org.group_id).or_default().push(org);
    }
    let (mut created, mut existing, mut failed) = (Vec::new(), Vec::new(), 0);
    for (group, requests) in by_group {
        let mut created_log = Log::new(&dir, &format!("{group}.created-orgs.log"));
        let mut failed_log = Log::new(&dir, &format!("{group}.failed-to-create-orgs.log"));
        let mut in_group = snyk.group_orgs(group).await?;
        for request in requests {
            // By name; else, for a workspace, an org named after its slug (bb2snyk's naming before).
            let found = in_group
                .iter()
                .find(|o| o.name == request.name)
                .or_else(|| {
                    let slug = request.slug.as_deref()?;
                    in_group.iter().find(|o| o.name == slug)
                });
            let entry = match found {
                Some(org) if !args.allow_duplicate_names => {
                    let entry = describe(&snyk, request, &org.id, None).await;
                    existing.push(entry);
                    continue;
                }
                _ => {
                    let known: Vec<String> = in_group
                        .iter()
                        .filter(|o| o.name == request.name)
                        .map(|o| o.id.clone())
                        .collect();
                    let source = request.source_org_id.as_deref();
                    snyk.create_org_once(&request.name, group, source, &known)
                        .await
                        .map(|org| (org.id, org.created))
                }
            };
            match entry {
                Ok((id, when)) => {
                    in_group.push(bb2snyk_snyk::OrgSummary {
                        id: id.clone(),
                        name: request.name.clone(),
                        slug: None,
                    });
                    // Created is created: a failed lookup afterwards is logged, never a reason to create again.
                    let entry = describe(&snyk, request, &id, when).await;
                    if settings.snyk.quiet_notifications
                        && let Err(e) = snyk
                            .set_notification_settings(&id, &bb2snyk_snyk::quiet_notifications())
                            .await
                    {
                        eprintln!(
                            "Created org {:?} but could not quiet its notifications: {e}",
                            request.name
                        );
                    }
                    let integrations: Vec<String> = entry
                        .integrations
                        .iter()
                        .map(|(kind, id)| format!("{kind}:{id}"))
                        .collect();
                    created_log.append(
                        INFO,
                        "Created org",
                        json!({"name": request.name, "id": id, "created": entry.created, "integrations": integrations}),
                    )?;
                    created.push(entry);
                }
                Err(e) => {
                    failed += 1;
                    eprintln!("Failed to create org {:?}: {e}", request.name);
                    failed_log.append(
                        ERROR,
                        "Failed to create org",
                        json!({"origName": request.name, "groupId": group, "errorMessage": e.to_string()}),
                    )?;
                }
            }
        }
    }
    let total = file.orgs.len();
    let made = created.len();
    let reused = existing.len();
    let mut org_data = created;
    if !args.no_include_existing {
        org_data.extend(existing);
    }
    let path = dir.join("snyk-created-orgs.json");
    files::write_json(&path, &CreatedOrgsFile { org_data })?;
    println!(
        "Created {made} out of {total} organization(s); {reused} already existed and were reused. Written the data to file: {}",
        path.display()
    );
    if failed > 0 {
        return Err(Failure::Failed(format!(
            "{failed} org(s) could not be created; see the *.failed-to-create-orgs.log file and run again"
        )));
    }
    Ok(())
}

/// The created-orgs entry for an org, with its integrations (empty when they cannot be read now).
async fn describe(
    snyk: &Snyk,
    request: &OrgRequest,
    id: &str,
    created: Option<String>,
) -> CreatedOrg {
    let integrations = match snyk.integrations(id).await {
        Ok(i) => i,
        Err(e) => {
            eprintln!(
                "Could not list the integrations of org {:?}: {e}",
                request.name
            );
            BTreeMap::new()
        }
    };
    CreatedOrg {
        name: request.name.clone(),
        id: Some(id.to_owned()),
        org_id: id.to_owned(),
        integrations,
        group_id: Some(request.group_id.clone()),
        orig_name: Some(request.name.clone()),
        source_org_id: request.source_org_id.clone(),
        created,
        slug: None,
        workspace: request.slug.clone(),
    }
}
