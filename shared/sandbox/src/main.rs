//! `sandbox`: the Bitbucket + Snyk simulator as a server, for rehearsing a run without touching a real tenant.

use std::net::SocketAddr;

use bb2snyk_sandbox::{Knobs, Sandbox};
use clap::Parser;

/// A faithful local simulator of Bitbucket Cloud and the Snyk v1 API.
///
/// Prints the variables that point bb2snyk (or snyk-api-import) at it, then serves until Ctrl-C.
/// Control endpoints: GET /_sandbox/stats, GET /_sandbox/truth, POST /_sandbox/revoke-tokens,
/// GET and PATCH /_sandbox/knobs.
#[derive(Debug, Parser)]
#[command(name = "sandbox", version)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8089")]
    listen: SocketAddr,
    #[command(flatten)]
    knobs: Knobs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    bb2snyk_telemetry::init();
    let cli = Cli::parse();
    let listener = match tokio::net::TcpListener::bind(cli.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "sandbox: cannot listen on {}: {e}; pick another address with --listen",
                cli.listen
            );
            return std::process::ExitCode::from(4);
        }
    };
    let sandbox = match Sandbox::on(listener, cli.knobs) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sandbox: {e}");
            return std::process::ExitCode::from(4);
        }
    };
    let stats = sandbox.stats();
    println!(
        "# sandbox on {}: {} workspaces, {} repositories; group {}",
        sandbox.url(),
        stats.truth.workspaces,
        stats.truth.repositories,
        sandbox.knobs().group_id
    );
    for (name, value) in sandbox.env() {
        println!("export {name}={value}");
    }
    let _ = tokio::signal::ctrl_c().await;
    std::process::ExitCode::SUCCESS
}
