//! `bb2snyk`: the operator command. It grows the seed workflow, `run`, `status`, `replay`, `doctor` and
//! `demo` with the CLI issue; today it shows the configuration bb2snyk resolves and checks it is complete.

use std::{path::PathBuf, process::ExitCode};

use bb2snyk_settings::{Need, Sources, exit};
use clap::{Parser, Subcommand};

/// Brings every repository of a Bitbucket Cloud tenant into Snyk.
#[derive(Debug, Parser)]
#[command(name = "bb2snyk", version)]
struct Cli {
    /// TOML settings file (see config/example.toml); also BB2SNYK_CONFIG.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print every setting with the value in force (secrets as set or not set), and check that what the
    /// pipeline needs is there: exits 2 naming the first missing variable.
    Config,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    bb2snyk_telemetry::init();
    match cli.command {
        Command::Config => config(cli.config),
    }
}

fn config(file: Option<PathBuf>) -> ExitCode {
    let settings = match bb2snyk_settings::load(&Sources::from_process(file)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bb2snyk: {e}");
            return ExitCode::from(exit::CONFIG);
        }
    };
    for (key, value) in settings.describe() {
        println!("{:<28} {:<40} {}", key.path, value, key.env.unwrap_or(""));
    }
    match settings.require(&[Need::SnykToken, Need::BitbucketCredentials]) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bb2snyk: {e}");
            ExitCode::from(exit::CONFIG)
        }
    }
}
