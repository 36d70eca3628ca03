//! What the import policy asks for one repository, as it travels with its import: the exclusion globs for
//! the import body, and the tags and attributes its projects get. Checked when read like every field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{FullName, OrgId, ProjectId, RunId};

/// Tags one repository's projects get at most, and values of one attribute.
pub const MAX_TAGS: usize = 50;
const MAX_ATTRIBUTE_VALUES: usize = 10;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectPolicy {
    /// Tag key to value (keys of 30 and values of 50 letters, digits, `-` and `_`, as Snyk takes them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub criticality: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Vec<String>>,
    /// The import body's `exclusionGlobs`: comma-separated folder and file globs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclusion_globs: Option<String>,
}

impl ProjectPolicy {
    /// Whether its projects get tags or attributes (rather than only an import option).
    pub fn has_metadata(&self) -> bool {
        !self.tags.is_empty()
            || self.criticality.is_some()
            || self.environment.is_some()
            || self.lifecycle.is_some()
    }

    /// Why it cannot be acted on, if it cannot: the same rules the policy file is held to.
    pub(crate) fn check(&self) -> Result<(), String> {
        let tag_text = |s: &str, max: usize| {
            !s.is_empty()
                && s.chars().count() <= max
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if self.tags.len() > MAX_TAGS {
            return Err(format!(
                "policy.tags has {} tags, at most {MAX_TAGS}",
                self.tags.len()
            ));
        }
        if let Some((k, v)) = self
            .tags
            .iter()
            .find(|(k, v)| !tag_text(k, 30) || !tag_text(v, 50))
        {
            return Err(format!("policy.tags has {k:?} = {v:?}, which Snyk refuses"));
        }
        if let Some(globs) = &self.exclusion_globs
            && (globs.len() > crate::ids::URL || globs.chars().any(char::is_control))
        {
            return Err(format!(
                "policy.exclusion_globs is {} bytes or holds control characters; at most {} bytes",
                globs.len(),
                crate::ids::URL
            ));
        }
        for values in [&self.criticality, &self.environment, &self.lifecycle]
            .into_iter()
            .flatten()
        {
            if values.len() > MAX_ATTRIBUTE_VALUES || values.iter().any(|v| !tag_text(v, 32)) {
                return Err(format!(
                    "policy attributes {values:?} are not Snyk's values"
                ));
            }
        }
        Ok(())
    }
}

/// Set the policy's tags and attributes on the projects an import made (to the importer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectsMetadata {
    pub run_id: RunId,
    pub org_id: OrgId,
    /// The target's display name, `workspace/slug`.
    pub target: FullName,
    /// Snyk project ids, at most [`crate::MAX_RETIRED`].
    pub projects: Vec<ProjectId>,
    pub policy: ProjectPolicy,
}
