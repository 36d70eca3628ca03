//! `bb2snyk`: snyk-api-import's four-step workflow (`orgs:data`, `orgs:create`, `import:data`, `import`),
//! the whole pipeline in one process (`run`, `demo`), and the operator commands for a fleet (`discover`,
//! `status`, `replay`, `doctor`).

mod cli;
mod doctor;
mod embedded;
mod files;
mod fleet;
mod imported;
mod migrate;
mod orgs;
mod policy;
mod report;
mod run;
mod status;
mod sync;
mod targets;

use std::process::ExitCode;

use bb2snyk_service::{ServiceError, exit};
use bb2snyk_settings::{ConfigError, Settings, Sources};
use clap::Parser;
pub use cli::Cli;
use cli::Command;

/// Why a command did not succeed; each maps to a documented exit code ([`bb2snyk_service::exit`]).
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Some targets failed or were parked (exit 1).
    #[error("{0}")]
    Failed(String),
    /// Missing or malformed input: flags, files (exit 2).
    #[error("{0}")]
    Config(String),
    /// Bitbucket or Snyk rejected the credentials (exit 3).
    #[error("{0}")]
    Credentials(String),
    /// Bitbucket or Snyk could not be reached (exit 4).
    #[error("{0}")]
    Unavailable(String),
    /// A sync stopped at its brake before acting on some org (exit 5).
    #[error("{0}")]
    Braked(String),
    /// A report could not read all of the tenant (exit 6).
    #[error("{0}")]
    Incomplete(String),
    /// Settings, RabbitMQ or Redis, as the service frame words and codes them.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// A Snyk call failed; its kind picks the exit code (credentials 3, passing 4, else 1).
    #[error(transparent)]
    Snyk(#[from] bb2snyk_snyk::SnykError),
    /// A Bitbucket call failed; its kind picks the exit code (credentials 3, passing 4, else 1).
    #[error(transparent)]
    Bitbucket(#[from] bb2snyk_bitbucket::BitbucketError),
    /// A ledger record that does not parse (exit 1); Redis itself is a [`Failure::Service`].
    #[error(transparent)]
    Ledger(bb2snyk_ledger::LedgerError),
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Failed(_) => exit::FAILURES,
            Self::Config(_) => exit::CONFIG,
            Self::Credentials(_) => exit::CREDENTIALS,
            Self::Unavailable(_) => exit::UNAVAILABLE,
            Self::Braked(_) => exit::BRAKED,
            Self::Incomplete(_) => exit::INCOMPLETE,
            Self::Service(e) => e.exit_code(),
            Self::Snyk(e) if e.is_configuration() => exit::CREDENTIALS,
            Self::Snyk(e) if e.is_transient() => exit::UNAVAILABLE,
            Self::Bitbucket(e) if e.is_credentials() => exit::CREDENTIALS,
            Self::Bitbucket(e) if e.is_transient() => exit::UNAVAILABLE,
            Self::Snyk(_) | Self::Bitbucket(_) | Self::Ledger(_) => exit::FAILURES,
        }
    }
}

/// The command's one HTTP client for Bitbucket and Snyk; building it fails only when the TLS backend cannot
/// load.
fn http(settings: &Settings) -> Result<reqwest::Client, Failure> {
    bb2snyk_http::client(&settings.http)
        .map_err(|e| Failure::Unavailable(format!("cannot build the HTTP client: {e}")))
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Self::Service(e.into())
    }
}

impl From<bb2snyk_store::StoreError> for Failure {
    fn from(e: bb2snyk_store::StoreError) -> Self {
        Self::Service(e.into())
    }
}

impl From<bb2snyk_broker::BrokerError> for Failure {
    fn from(e: bb2snyk_broker::BrokerError) -> Self {
        Self::Service(e.into())
    }
}

impl From<bb2snyk_ledger::LedgerError> for Failure {
    fn from(e: bb2snyk_ledger::LedgerError) -> Self {
        match e {
            bb2snyk_ledger::LedgerError::Store(e) => e.into(),
            corrupt => Self::Ledger(corrupt),
        }
    }
}

/// Parses the command line, runs the command, and turns its result into the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    bb2snyk_telemetry::init_quiet();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bb2snyk: cannot start: {e}");
            return ExitCode::from(exit::UNAVAILABLE);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bb2snyk: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

async fn dispatch(cli: Cli) -> Result<(), Failure> {
    let settings = || -> Result<Settings, Failure> {
        let mut settings = bb2snyk_settings::load(&Sources::from_process(cli.config.clone()))?;
        if let Some(policy) = &cli.policy {
            settings.policy_file = Some(policy.clone());
        }
        for warning in settings.warnings() {
            eprintln!("warning: {warning}");
        }
        Ok(settings)
    };
    match &cli.command {
        Command::Config => cli::config(&settings()?),
        Command::OrgsData(args) => orgs::data(&args.apply(settings()?), args).await,
        Command::OrgsCreate(args) => orgs::create(&settings()?, args).await,
        Command::ImportData(args) => targets::data(&args.apply(settings()?), args).await,
        Command::Import(args) => targets::import(&settings()?, args).await,
        Command::ListImported(args) => imported::list(&settings()?, args).await,
        Command::Run(args) => run::run(&settings()?, args).await,
        Command::Sync(args) => sync::sync(&settings()?, args).await,
        Command::Report(args) => report::report(&settings()?, args).await,
        Command::MigrateLegacy(args) => migrate::migrate(&settings()?, args).await,
        Command::Demo(args) => run::demo(settings()?, args).await,
        Command::Discover(args) => fleet::discover(&settings()?, args).await,
        Command::Status(args) => status::status(&settings()?, args).await,
        Command::Replay(args) => fleet::replay(&settings()?, args).await,
        Command::Doctor(args) => doctor::doctor(&settings()?, args).await,
        Command::Topology => fleet::topology(&settings()?).await,
        Command::Policy(cli::PolicyCommand::Check(args)) => policy::check(&settings()?, args).await,
    }
}
