use bb2snyk_settings::Need;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    bb2snyk_service::main(
        "importer",
        "Imports each repository into Snyk and follows its import job.",
        &[Need::SnykToken],
        bb2snyk_importer::run,
    )
    .await
}
