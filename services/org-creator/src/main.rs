use bb2snyk_settings::Need;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    bb2snyk_service::main(
        "org-creator",
        "Ensures one Snyk organization per Bitbucket workspace.",
        &[Need::SnykToken],
        bb2snyk_org_creator::run,
    )
    .await
}
