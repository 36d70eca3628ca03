//! snyk-api-import's files, byte-compatible where it matters: the orgs file, the created-orgs file, the
//! import targets file and the JSON-lines logs, above all `imported-targets.log`, the resume ledger.
//! Outputs go to `SNYK_LOG_PATH`; inputs resolve against the current directory, as there.

use std::{
    collections::{BTreeMap, HashSet},
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, BufWriter, Write},
    path::{Path, PathBuf},
};

use bb2snyk_messages::Target;
pub use bb2snyk_messages::target_id;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Failure;

/// `group-<G>-bitbucket-cloud-app-orgs.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct OrgsFile {
    pub orgs: Vec<OrgRequest>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrgRequest {
    pub name: String,
    pub group_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_org_id: Option<String>,
    /// The workspace slug; files written by snyk-api-import lack it, and then the name stands in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
}

/// `snyk-created-orgs.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedOrgsFile {
    pub org_data: Vec<CreatedOrg>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedOrg {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub org_id: String,
    #[serde(default)]
    pub integrations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orig_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_org_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
    /// Which Bitbucket workspace the org is for (ours; absent from snyk-api-import's files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
}

/// `bitbucket-cloud-app-import-targets.json`, and any `--file` for `import`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct TargetsFile {
    pub targets: Vec<ImportTarget>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportTarget {
    pub target: FileTarget,
    #[serde(default)]
    pub integration_id: Option<String>,
    pub org_id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FilePath>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclusion_globs: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FilePath {
    pub path: String,
}

/// A target as the targets file holds it: `fork` and `full_name` ride along but are never sent to Snyk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork: Option<bool>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_name: Option<String>,
    pub owner: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
}

impl FileTarget {
    /// As messages carry it, or why they cannot (a file is input).
    pub fn to_target(&self) -> Result<Target, String> {
        Target::new(&self.owner, &self.name, self.branch.as_deref())
    }

    /// A target named by strings (Snyk's listing), for a log line.
    pub fn named(owner: &str, name: &str, branch: Option<String>) -> Self {
        Self {
            fork: None,
            name: name.to_owned(),
            full_name: None,
            owner: owner.to_owned(),
            branch,
        }
    }
}

impl From<&Target> for FileTarget {
    fn from(target: &Target) -> Self {
        Self::named(
            &target.owner,
            &target.name,
            target.branch.as_ref().map(ToString::to_string),
        )
    }
}

/// The directory every output goes to, created when missing.
pub fn log_dir(path: &Path) -> Result<PathBuf, Failure> {
    std::fs::create_dir_all(path).map_err(|e| {
        Failure::Config(format!(
            "cannot create SNYK_LOG_PATH {}: {e}; set SNYK_LOG_PATH to a writable directory",
            path.display()
        ))
    })?;
    Ok(path.to_path_buf())
}

pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T, Failure> {
    let file = File::open(path).map_err(|e| {
        Failure::Config(format!(
            "cannot read the {what} {}: {e}; check the path (relative paths start in the current directory)",
            path.display()
        ))
    })?;
    serde_json::from_reader(BufReader::new(file))
        .map_err(|e| Failure::Config(format!("{} is not a valid {what}: {e}", path.display())))
}

/// Writes minified JSON, as snyk-api-import does, through a temporary file so a crash never leaves half.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), Failure> {
    let temporary = path.with_extension("json.tmp");
    let written = File::create(&temporary).and_then(|file| {
        let mut out = BufWriter::new(file);
        serde_json::to_writer(&mut out, value)?;
        out.flush()?;
        out.get_ref().sync_all()
    });
    written
        .and_then(|()| std::fs::rename(&temporary, path))
        .map_err(|e| Failure::Unavailable(format!("cannot write {}: {e}", path.display())))
}

/// An append-only JSON-lines log in bunyan's shape (`name`, `hostname`, `pid`, `level`, `msg`, `time`, `v`),
/// as snyk-api-import writes: earlier runs' lines (its own included) are kept, and bunyan's viewer reads ours.
#[derive(Debug)]
pub struct Log {
    path: PathBuf,
    out: Option<BufWriter<File>>,
}

/// bunyan's levels.
pub const INFO: u8 = 30;
pub const ERROR: u8 = 50;

impl Log {
    /// The log `name` in `dir`. Names carry ids from files and messages (`<org>.import-jobs.log`), so
    /// anything but letters, digits, `.`, `_` and `-` becomes `_` and a leading dot is escaped: no id can
    /// name a file outside `dir` (`../x`, `/etc/x`).
    pub fn new(dir: &Path, name: &str) -> Self {
        let mut safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if safe.starts_with('.') || safe.is_empty() {
            safe.insert(0, '_');
        }
        Self {
            path: dir.join(safe),
            out: None,
        }
    }

    /// Appends one record. Its own fields are kept (an org's `name` stays the org's); bunyan's are added
    /// where it has none.
    pub fn append(&mut self, level: u8, msg: &str, mut fields: Value) -> Result<(), Failure> {
        if let Value::Object(map) = &mut fields {
            for (key, value) in [
                ("name", Value::from("bb2snyk")),
                ("hostname", hostname().into()),
                ("pid", std::process::id().into()),
                ("level", level.into()),
                ("msg", msg.into()),
                ("time", now().into()),
                ("v", 0.into()),
            ] {
                map.entry(key).or_insert(value);
            }
        }
        let fail = |e: std::io::Error| {
            Failure::Unavailable(format!("cannot write {}: {e}", self.path.display()))
        };
        if self.out.is_none() {
            let mut file = OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .open(&self.path)
                .map_err(fail)?;
            // A log written by another tool may end without a newline: start on a line of our own.
            if ends_mid_line(&mut file).map_err(fail)? {
                file.write_all(b"\n").map_err(fail)?;
            }
            self.out = Some(BufWriter::new(file));
        }
        if let Some(out) = &mut self.out {
            serde_json::to_writer(&mut *out, &fields)
                .map_err(std::io::Error::from)
                .and_then(|()| out.write_all(b"\n"))
                .and_then(|()| out.flush())
                .map_err(fail)?;
        }
        Ok(())
    }
}

/// True when the file is not empty and its last byte is not a newline.
fn ends_mid_line(file: &mut File) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    if file.metadata()?.len() == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

/// This machine's name, as bunyan records it.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Now, as bunyan writes it (RFC 3339 UTC with milliseconds).
pub fn now() -> String {
    bb2snyk_telemetry::clock::rfc3339_millis(bb2snyk_telemetry::clock::now_unix_ms())
}

pub const IMPORTED_TARGETS: &str = "imported-targets.log";

/// The targetIds in `imported-targets.log`, ours or snyk-api-import's, in one pass; unreadable lines are
/// counted, not fatal.
pub fn imported_targets(dir: &Path) -> Result<(HashSet<String>, usize), Failure> {
    let path = dir.join(IMPORTED_TARGETS);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((HashSet::new(), 0)),
        Err(e) => {
            return Err(Failure::Unavailable(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Line {
        target_id: Option<String>,
        org_id: Option<String>,
        integration_id: Option<String>,
        target: Option<Target>,
    }
    let mut ids = HashSet::new();
    let mut unreadable = 0;
    for line in BufReader::new(file).lines() {
        let Ok(line) = line else {
            unreadable += 1;
            continue;
        };
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Line>(&line) {
            Ok(Line {
                target_id: Some(id),
                ..
            }) => {
                ids.insert(id);
            }
            Ok(Line {
                org_id: Some(org),
                integration_id: Some(integration),
                target: Some(target),
                ..
            }) => {
                ids.insert(target_id(&org, &integration, &target));
            }
            _ => unreadable += 1,
        }
    }
    Ok((ids, unreadable))
}

/// Where `run` and `sync` keep each repository's Bitbucket uuid by name, per org, between commands (the
/// services keep it in Redis): how a sync tells a renamed repository from a deleted one.
pub const REPO_UUIDS: &str = "bitbucket-repo-uuids.json";

/// Loads [`REPO_UUIDS`] into the command's ledger; a missing file is an empty one.
pub async fn load_uuids(dir: &Path, ledger: &bb2snyk_ledger::Ledger) -> Result<(), Failure> {
    let path = dir.join(REPO_UUIDS);
    if !path.exists() {
        return Ok(());
    }
    let orgs: BTreeMap<String, Vec<(String, String)>> = read_json(&path, "repository uuids file")?;
    for (org, names) in orgs {
        ledger.remember_uuids(&org, &names).await?;
    }
    Ok(())
}

/// Writes what the command's ledger knows of uuids to [`REPO_UUIDS`].
pub async fn save_uuids(dir: &Path, ledger: &bb2snyk_ledger::Ledger) -> Result<(), Failure> {
    let mut orgs: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for org in ledger.uuid_orgs().await? {
        let mut names = ledger.uuids(&org).await?;
        names.sort();
        orgs.insert(org, names);
    }
    write_json(&dir.join(REPO_UUIDS), &orgs)
}

/// The line `imported-targets.log` gets for a completed import.
pub fn imported_line(
    org_id: &str,
    integration_id: &str,
    target: &FileTarget,
    job_url: &str,
) -> Value {
    let id = bb2snyk_messages::target_id_of(
        org_id,
        integration_id,
        &target.name,
        &target.owner,
        target.branch.as_deref(),
    );
    json!({
        "target": target,
        // snyk-api-import's `list:imported` writes null where no job is known.
        "locationUrl": (!job_url.is_empty()).then_some(job_url),
        "orgId": org_id,
        "integrationId": integration_id,
        "targetId": id,
    })
}

#[cfg(test)]
mod tests;
