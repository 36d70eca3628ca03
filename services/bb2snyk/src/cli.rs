//! The command line: snyk-api-import's verbs and camelCase flags (each with a kebab-case alias), and ours.

use std::path::PathBuf;

pub use bb2snyk_filters::Filters;
use bb2snyk_messages::{GroupId, OrgId};
use bb2snyk_settings::{Need, Settings};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::Failure;

/// Brings every repository of a Bitbucket Cloud tenant into Snyk.
///
/// Start with `bb2snyk demo` to see the whole flow against a simulated tenant, `bb2snyk doctor` to check a
/// real one, then `bb2snyk run --groupId=G` (one process) or the services with `bb2snyk discover`.
#[derive(Debug, Parser)]
#[command(name = "bb2snyk", version)]
pub struct Cli {
    /// TOML settings file (see config/example.toml); also BB2SNYK_CONFIG.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The import policy (docs/policy.md), over the `policy.file` setting.
    #[arg(long, global = true, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print every setting with the value in force (secrets as set or not set), and check that what the
    /// pipeline needs is there: exits 2 naming the first missing variable.
    Config,
    /// Step 1: list every Bitbucket workspace into group-<G>-bitbucket-cloud-app-orgs.json.
    #[command(name = "orgs:data")]
    OrgsData(OrgsDataArgs),
    /// Step 2: ensure one Snyk org per workspace (an existing name is reused) into snyk-created-orgs.json.
    #[command(name = "orgs:create")]
    OrgsCreate(OrgsCreateArgs),
    /// Step 3: list every repository of each org's workspace into bitbucket-cloud-app-import-targets.json.
    #[command(name = "import:data")]
    ImportData(ImportDataArgs),
    /// Step 4: import the targets, skipping those in imported-targets.log; exits 1 when some failed.
    Import(ImportArgs),
    /// What Snyk already holds, as imported-targets.log lines (snyk-api-import's `list:imported`), so
    /// `import` resumes from Snyk when the log is lost.
    #[command(name = "list:imported")]
    ListImported(ListImportedArgs),
    /// Bring Snyk in step with Bitbucket, in this process: import new, renamed and re-branched
    /// repositories, retire the projects of deleted ones; --dry-run reports and changes nothing.
    Sync(SyncArgs),
    /// Which repositories Snyk covers, and why not the others: a table, JSON, CSV or an HTML page.
    /// Reads only; exits 6 when some of the tenant could not be read, 1 below --fail-under.
    Report(crate::report::ReportArgs),
    /// Move the projects of the legacy Bitbucket Cloud integration to the App, with their tags,
    /// attributes and ignores; --dry-run prints the plan and changes nothing.
    #[command(name = "migrate:legacy")]
    MigrateLegacy(crate::migrate::MigrateArgs),
    /// The whole pipeline in this process, no RabbitMQ or Redis needed; a second run skips what is done.
    Run(RunArgs),
    /// Start a simulated Bitbucket and Snyk in this process and `run` against a generated tenant.
    Demo(DemoArgs),
    /// Ask the services (on RabbitMQ) to import a group: publishes a run request and prints its run id.
    Discover(DiscoverArgs),
    /// Queues, parked messages and their reasons, and a run's progress, from RabbitMQ and Redis.
    Status(StatusArgs),
    /// Move parked messages back to their work queue, attempts reset.
    Replay(ReplayArgs),
    /// Check configuration, credentials, scopes, Snyk and the infrastructure, one line each, with the fix.
    Doctor(DoctorArgs),
    /// Check an import policy: its rules, and with --groupId what each repository of the tenant would get.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Declare the queues, retry tiers, parking queues and events exchange on RabbitMQ, then exit (each
    /// service also does it at start; a deployment's topology job runs this first).
    Topology,
}

/// The source systems snyk-api-import knows; bb2snyk speaks the Bitbucket Cloud App one.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Source {
    #[value(name = "bitbucket-cloud-app")]
    BitbucketCloudApp,
}

/// The Snyk group to import into, and the org new orgs are made from.
#[derive(Debug, Args)]
pub struct Group {
    /// The Snyk group the orgs belong to.
    #[arg(long = "groupId", alias = "group-id", env = "SNYK_GROUP_ID")]
    pub group_id: GroupId,
    /// A template org whose settings and integrations new orgs copy.
    #[arg(long = "sourceOrgPublicId", alias = "source-org-public-id")]
    pub source_org_public_id: Option<OrgId>,
}

/// A Snyk group, or one org of it.
#[derive(Debug, Args)]
pub struct Scope {
    /// The Snyk group.
    #[arg(long = "groupId", alias = "group-id", env = "SNYK_GROUP_ID")]
    pub group_id: GroupId,
    /// This org alone.
    #[arg(long = "orgId", alias = "org-id")]
    pub org_id: Option<OrgId>,
}

#[derive(Debug, Args)]
pub struct ListImportedArgs {
    /// Every org of this Snyk group.
    #[arg(long = "groupId", alias = "group-id")]
    pub group_id: Option<String>,
    /// This org alone.
    #[arg(long = "orgId", alias = "org-id")]
    pub org_id: Option<String>,
    /// snyk-api-import's integration type; bb2snyk lists the Bitbucket Cloud App's targets.
    #[arg(long = "integrationType", alias = "integration-type", value_enum)]
    pub integration_type: Option<Source>,
}

#[derive(Debug, Args)]
pub struct OrgsDataArgs {
    #[arg(long, value_enum)]
    pub source: Source,
    #[command(flatten)]
    pub group: Group,
    /// Leave out workspaces without repositories.
    #[arg(long = "skipEmptyOrgs", alias = "skip-empty-orgs")]
    pub skip_empty_orgs: bool,
    /// Bitbucket API base, as snyk-api-import reads it (else BITBUCKET_APP_API_BASE).
    #[arg(long = "sourceUrl", alias = "source-url")]
    pub source_url: Option<url::Url>,
}

impl OrgsDataArgs {
    pub fn apply(&self, mut settings: Settings) -> Settings {
        if let Some(url) = &self.source_url {
            settings.bitbucket.api_base = url.clone();
        }
        settings
    }
}

#[derive(Debug, Args)]
pub struct OrgsCreateArgs {
    /// The orgs file written by orgs:data.
    #[arg(long)]
    pub file: PathBuf,
    /// Accepted for compatibility: bb2snyk never creates a second org with an existing name unless
    /// --allowDuplicateNames is given.
    #[arg(long = "noDuplicateNames", alias = "no-duplicate-names")]
    pub no_duplicate_names: bool,
    /// Create an org even when one of that name exists (snyk-api-import's old default).
    #[arg(
        long = "allowDuplicateNames",
        alias = "allow-duplicate-names",
        conflicts_with = "no_duplicate_names"
    )]
    pub allow_duplicate_names: bool,
    /// List only the orgs created by this call in snyk-created-orgs.json, not the existing ones reused.
    #[arg(
        long = "no-includeExistingOrgsInOutput",
        alias = "no-include-existing-orgs-in-output"
    )]
    pub no_include_existing: bool,
    /// The default: existing orgs are listed too.
    #[arg(
        long = "includeExistingOrgsInOutput",
        alias = "include-existing-orgs-in-output",
        conflicts_with = "no_include_existing"
    )]
    pub include_existing: bool,
}

#[derive(Debug, Args)]
pub struct ImportDataArgs {
    /// The created-orgs file written by orgs:create.
    #[arg(long = "orgsData", alias = "orgs-data")]
    pub orgs_data: PathBuf,
    #[arg(long, value_enum)]
    pub source: Source,
    /// Bitbucket API base (else BITBUCKET_APP_API_BASE).
    #[arg(long = "sourceUrl", alias = "source-url")]
    pub source_url: Option<url::Url>,
    #[command(flatten)]
    pub filters: Filters,
}

impl ImportDataArgs {
    /// The flags over the settings: each filter given replaces its `discovery.*` setting.
    pub fn apply(&self, mut settings: Settings) -> Settings {
        settings.discovery = self.filters.over(&settings.discovery);
        if let Some(url) = &self.source_url {
            settings.bitbucket.api_base = url.clone();
        }
        settings
    }
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The targets file (else SNYK_IMPORT_PATH: a .json file, or a directory holding import-projects.json).
    #[arg(long)]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub group: Group,
    #[command(flatten)]
    pub filters: Filters,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The Snyk group whose orgs are synced.
    #[arg(long = "groupId", alias = "group-id", env = "SNYK_GROUP_ID")]
    pub group_id: GroupId,
    #[command(flatten)]
    pub filters: Filters,
    #[command(flatten)]
    pub sync: SyncFlags,
    /// Undo the sync a report (`sync-<run>.json`) tells of: reactivate every project it deactivated.
    #[arg(long, value_name = "REPORT")]
    pub undo: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Workspaces in the generated tenant.
    #[arg(long, default_value_t = 5)]
    pub workspaces: usize,
    /// Repositories per workspace.
    #[arg(long, default_value_t = 8)]
    pub repos: usize,
}

#[derive(Debug, Args)]
pub struct DiscoverArgs {
    #[command(flatten)]
    pub group: Group,
    /// Sent with the run request; without any, the discoverer's `discovery.*` settings apply.
    #[command(flatten)]
    pub filters: Filters,
    #[command(flatten)]
    pub sync: SyncFlags,
}

/// How a sync runs; `--sync` asks the services for one instead of a run (the CronJob does).
#[derive(Debug, Args)]
pub struct SyncFlags {
    /// A sync rather than a run: import what is new, retire the projects of what is gone.
    #[arg(long)]
    pub sync: bool,
    /// Report what would change; change nothing (implies a sync).
    #[arg(long = "dry-run", alias = "dryRun")]
    pub dry_run: bool,
    /// Delete retired projects instead of deactivating them (implies a sync).
    #[arg(long)]
    pub delete: bool,
    /// This org alone (implies a sync).
    #[arg(long = "orgId", alias = "org-id")]
    pub org_id: Option<OrgId>,
    /// Let this sync retire more of an org than `sync.max_retire_percent` and `sync.max_retire_count`
    /// allow (implies a sync).
    #[arg(long = "allow-mass-retire")]
    pub allow_mass_retire: bool,
}

impl SyncFlags {
    /// The sync these flags ask for, if any; `sync.allow_mass_retire` in `settings` passes the brake too.
    pub fn given(&self, settings: &bb2snyk_settings::Settings) -> Option<bb2snyk_messages::Sync> {
        let asked = self.sync
            || self.dry_run
            || self.delete
            || self.org_id.is_some()
            || self.allow_mass_retire;
        asked.then(|| self.sync(settings))
    }

    /// The sync these flags describe, asked for now.
    pub fn sync(&self, settings: &bb2snyk_settings::Settings) -> bb2snyk_messages::Sync {
        bb2snyk_messages::Sync {
            dry_run: self.dry_run,
            delete: self.delete,
            org_id: self.org_id.clone(),
            allow_mass_retire: self.allow_mass_retire || settings.sync.allow_mass_retire,
            started_ms: Some(bb2snyk_messages::UnixMs(
                bb2snyk_telemetry::clock::now_unix_ms(),
            )),
            report: false,
        }
    }
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Also show this run's counts from the ledger in Redis.
    #[arg(long)]
    pub run: Option<String>,
    /// One JSON document instead of text.
    #[arg(long)]
    pub json: bool,
    /// Print again every few seconds until interrupted.
    #[arg(long)]
    pub watch: bool,
    /// Exit 1 when anything is parked (for cron and alerting).
    #[arg(long = "fail-on-parked", alias = "failOnParked")]
    pub fail_on_parked: bool,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Only messages of this run.
    #[arg(long)]
    pub run: Option<String>,
    /// Only this work queue's parking (discoverer, org-creator, importer, importer-polls); all by default.
    #[arg(long)]
    pub queue: Option<String>,
    /// Only messages whose JSON body has this field value (e.g. workspace=acme, target.name=api); repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// Move at most this many.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Show what would move; move nothing.
    #[arg(long = "dry-run", alias = "dryRun")]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Check that this Snyk group is reachable with SNYK_TOKEN.
    #[arg(long = "groupId", alias = "group-id")]
    pub group_id: Option<String>,
    /// Check that this template org has the Bitbucket Cloud App integration.
    #[arg(long = "sourceOrgPublicId", alias = "source-org-public-id")]
    pub source_org_public_id: Option<String>,
    /// Also check RabbitMQ and Redis (on by default when AMQP_URL or REDIS_URL is set).
    #[arg(long)]
    pub fleet: bool,
}

/// `bb2snyk config`.
pub fn config(settings: &Settings) -> Result<(), Failure> {
    for (key, value) in settings.describe() {
        println!("{:<36} {:<40} {}", key.path, value, key.env.unwrap_or(""));
    }
    let policy = bb2snyk_policy::Policy::from_settings(settings)?;
    match &settings.policy_file {
        Some(file) => println!(
            "policy in force: {} ({} rules)",
            file.display(),
            policy.rules()
        ),
        None => println!("policy in force: none"),
    }
    settings.require(&[Need::SnykToken, Need::BitbucketCredentials])?;
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check FILE against Snyk's rules; with --groupId, print what each repository of the tenant would
    /// get (read from Bitbucket, nothing written anywhere).
    Check(PolicyCheckArgs),
}

#[derive(Debug, Args)]
pub struct PolicyCheckArgs {
    /// The policy file.
    pub file: PathBuf,
    /// The tenant's group: list its workspaces' repositories from Bitbucket and show each one's decision.
    #[arg(long = "groupId", alias = "group-id")]
    pub group_id: Option<String>,
    /// A sample repository instead, `workspace/slug`, with what else the rules may match on.
    #[arg(long, value_name = "WORKSPACE/SLUG", conflicts_with = "group_id")]
    pub repo: Option<String>,
    /// The sample's Bitbucket project key.
    #[arg(long, requires = "repo")]
    pub project: Option<String>,
    /// The sample's language.
    #[arg(long, requires = "repo")]
    pub language: Option<String>,
    /// The sample is private (true) or public (false).
    #[arg(long, requires = "repo")]
    pub private: Option<bool>,
}
