//! Which of an org's integrations is the Bitbucket Cloud App.

/// Where the Bitbucket Cloud App integration is listed: Snyk's own key first, then the source's name.
pub const APP_INTEGRATION_TYPES: [&str; 2] = ["bitbucket-connect-app", "bitbucket-cloud-app"];

/// The Bitbucket Cloud App integration's id among an org's `integrations` (type to id): under `kind` when
/// given, else under [`APP_INTEGRATION_TYPES`] in order. The CLI's files and the org-creator both pick with
/// this, so they cannot choose different integrations for one org.
pub fn app_integration_in(
    integrations: &std::collections::BTreeMap<String, String>,
    kind: Option<&str>,
) -> Option<String> {
    match kind {
        Some(kind) => integrations.get(kind),
        None => APP_INTEGRATION_TYPES
            .iter()
            .find_map(|k| integrations.get(*k)),
    }
    .cloned()
}
