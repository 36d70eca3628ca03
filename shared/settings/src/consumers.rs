//! The Bitbucket credentials file (`BITBUCKET_APP_CREDENTIALS_FILE`): one `[[consumer]]` table per private
//! OAuth consumer, for tenants whose workspaces each own their consumer (a consumer of a personal workspace
//! sees only that workspace since Atlassian's 2026-05-04 change).
//!
//! ```toml
//! [[consumer]]
//! client_id = "..."
//! client_secret = "..."
//! workspaces = ["acme-payments"]   # optional: the workspaces it serves, without listing them
//! ```

use std::path::Path;

use secrecy::SecretString;
use serde::Deserialize;

use crate::{ConfigError, keys::key};

/// The largest credentials file read, and the most consumers it may hold.
const MAX_FILE_BYTES: u64 = 1 << 20;
const MAX_CONSUMERS: usize = 10_000;

/// One private OAuth consumer. Debug shows no secret.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerEntry {
    pub client_id: String,
    pub client_secret: SecretString,
    /// Workspaces this consumer serves; empty means the ones it lists.
    #[serde(default)]
    pub workspaces: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    consumer: Vec<ConsumerEntry>,
}

/// The consumers of the file at `path`, checked: at least one, each with a key and secret, no key twice.
pub(crate) fn read(path: &Path) -> Result<Vec<ConsumerEntry>, ConfigError> {
    let problem =
        |problem: String| ConfigError::invalid(key("bitbucket.credentials_file"), problem);
    let shown = path.display();
    let size = std::fs::metadata(path)
        .map_err(|e| problem(format!("cannot read {shown}: {e}")))?
        .len();
    if size > MAX_FILE_BYTES {
        return Err(problem(format!(
            "{shown} is {size} bytes; at most 1 MiB is read"
        )));
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| problem(format!("cannot read {shown}: {e}")))?;
    // toml's messages quote the offending line, which may hold a secret: only where it is, and what kind.
    let file: File = toml::from_str(&text).map_err(|e| {
        let at = e
            .span()
            .map(|s| format!(" at line {}", text[..s.start].lines().count().max(1)))
            .unwrap_or_default();
        problem(format!(
            "{shown} is not a list of [[consumer]] tables with client_id, client_secret and optional workspaces{at}"
        ))
    })?;
    if file.consumer.is_empty() {
        return Err(problem(format!("{shown} has no [[consumer]] table")));
    }
    if file.consumer.len() > MAX_CONSUMERS {
        return Err(problem(format!(
            "{shown} has {} consumers; at most {MAX_CONSUMERS}",
            file.consumer.len()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for (n, consumer) in file.consumer.iter().enumerate() {
        let n = n + 1;
        if consumer.client_id.trim().is_empty() {
            return Err(problem(format!("consumer {n} in {shown} has no client_id")));
        }
        if secrecy::ExposeSecret::expose_secret(&consumer.client_secret)
            .trim()
            .is_empty()
        {
            return Err(problem(format!(
                "consumer {n} ({}) in {shown} has no client_secret",
                consumer.client_id
            )));
        }
        if !seen.insert(consumer.client_id.as_str()) {
            return Err(problem(format!(
                "client_id {} appears twice in {shown}",
                consumer.client_id
            )));
        }
    }
    Ok(file.consumer)
}

/// A warning when users other than the owner (and its group) may read the file. Not refused: Kubernetes
/// mounts Secret volumes 0644 unless told otherwise.
pub fn loose_permissions(path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode();
        (mode & 0o004 != 0).then(|| {
            format!(
                "{} is readable by every user of this machine (mode {:o}); restrict it (chmod 600, or defaultMode: 0400 on the Secret volume)",
                path.display(),
                mode & 0o777
            )
        })
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}
