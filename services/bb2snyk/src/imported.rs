//! `list:imported`: what Snyk already holds, as snyk-api-import's command of that name writes it, so this
//! tool's `import` (or snyk-api-import's) resumes from Snyk itself rather than from a log that was lost.

use bb2snyk_settings::Settings;
use bb2snyk_snyk::Client as Snyk;

use crate::{
    Failure,
    cli::ListImportedArgs,
    files::{self, INFO, Log},
};

/// Appends a line to `imported-targets.log` for every Bitbucket Cloud target of the org (or of each org of
/// the group) that Snyk's projects show imported, under the org's Bitbucket Cloud App integration and
/// with the project's branch, so the target ids match the ones `import` computes.
pub async fn list(settings: &Settings, args: &ListImportedArgs) -> Result<(), Failure> {
    let dir = files::log_dir(&settings.import.log_path)?;
    let snyk = Snyk::from_settings(settings, crate::http(settings)?, None)?;
    let orgs: Vec<String> = match (&args.group_id, &args.org_id) {
        (Some(group), None) => snyk
            .group_orgs(group)
            .await?
            .into_iter()
            .map(|o| o.id)
            .collect(),
        (None, Some(org)) => vec![org.clone()],
        _ => {
            return Err(Failure::Config(
                "list:imported reads one group or one org: pass --groupId=<id> or --orgId=<id>"
                    .into(),
            ));
        }
    };
    let mut log = Log::new(&dir, files::IMPORTED_TARGETS);
    let (mut listed, mut without_app) = (0usize, 0usize);
    for org in &orgs {
        let Some(integration_id) = snyk.app_integration(org, None).await? else {
            without_app += 1;
            continue;
        };
        for found in snyk.imported(org).await? {
            let Some((owner, name)) = found.display_name.split_once('/') else {
                continue;
            };
            let target = files::FileTarget::named(owner, name, found.branch);
            log.append(
                INFO,
                "Target exists in Snyk",
                files::imported_line(org, &integration_id, &target, ""),
            )?;
            listed += 1;
        }
    }
    println!(
        "Found {listed} imported target(s) in {} org(s){}; written to {}",
        orgs.len(),
        if without_app > 0 {
            format!(" ({without_app} without the Bitbucket Cloud App integration, skipped)")
        } else {
            String::new()
        },
        dir.join(files::IMPORTED_TARGETS).display()
    );
    Ok(())
}
