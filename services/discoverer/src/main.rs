use bb2snyk_settings::Need;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    bb2snyk_service::main(
        "discoverer",
        "Lists Bitbucket workspaces and repositories and publishes them for the other stages.",
        &[Need::BitbucketCredentials],
        bb2snyk_discoverer::run,
    )
    .await
}
