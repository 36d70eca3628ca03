//! The import policy (`policy.file`, `--policy=FILE`): TOML, one `[[rule]]` table per rule. A rule matches a
//! repository when every match field it gives matches (none: every repository), and every matching rule
//! applies, in file order; for each field, and each tag key, the last rule that sets it wins. The file is
//! checked whole when it is read, against Snyk's own rules ([`snyk`]), so a bad value is an error naming the
//! file, the rule and the value before anything is posted.

pub mod snyk;

use std::{collections::BTreeMap, path::Path};

use bb2snyk_filters::Glob;
use bb2snyk_settings::ConfigError;
use globset::{GlobSet, GlobSetBuilder};
use serde::Deserialize;

/// The largest policy file read, and the most rules in it.
const MAX_BYTES: u64 = 1024 * 1024;
const MAX_RULES: usize = 1000;

/// A policy that does not hold, worded to be fixed: the file, the rule (from 1) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy {file}{}: {problem}", rule.map(|n| format!(", rule {n}")).unwrap_or_default())]
pub struct PolicyError {
    pub file: String,
    pub rule: Option<usize>,
    pub problem: String,
}

/// What a repository is, as the policy matches it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub workspace: String,
    pub slug: String,
    pub project_key: Option<String>,
    pub language: Option<String>,
    pub private: Option<bool>,
}

/// What the policy says of one repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// The rules (from 1) that match it, in file order.
    pub rules: Vec<usize>,
    /// The rule (from 1) that skips it, when one does.
    pub skip: Option<usize>,
    /// Tag key to value, placeholders filled and cleaned.
    pub tags: BTreeMap<String, String>,
    pub criticality: Option<Vec<String>>,
    pub environment: Option<Vec<String>>,
    pub lifecycle: Option<Vec<String>>,
    pub exclusion_globs: Option<Vec<String>>,
    /// Globs of branches to import as well as the main branch.
    pub branches: Option<Vec<Glob>>,
}

/// A rule as the file spells it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    workspaces: Vec<Glob>,
    #[serde(default)]
    projects: Vec<String>,
    #[serde(default)]
    repos: Vec<Glob>,
    #[serde(default)]
    languages: Vec<String>,
    private: Option<bool>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    criticality: Option<Vec<String>>,
    environment: Option<Vec<String>>,
    lifecycle: Option<Vec<String>>,
    exclusion_globs: Option<Vec<String>>,
    branches: Option<Vec<Glob>>,
    skip: Option<bool>,
}

#[derive(Debug, Clone)]
struct Rule {
    workspaces: Option<GlobSet>,
    projects: Vec<String>,
    repos: Option<GlobSet>,
    languages: Vec<String>,
    private: Option<bool>,
    tags: BTreeMap<String, String>,
    criticality: Option<Vec<String>>,
    environment: Option<Vec<String>>,
    lifecycle: Option<Vec<String>>,
    exclusion_globs: Option<Vec<String>>,
    branches: Option<Vec<Glob>>,
    skip: bool,
}

/// The placeholders a tag value may use.
const PLACEHOLDERS: [&str; 4] = ["{workspace}", "{repo}", "{project_key}", "{language}"];

#[derive(Debug, Clone, Default)]
pub struct Policy {
    rules: Vec<Rule>,
}

impl Policy {
    /// Reads and checks the policy at `path`.
    pub fn read(path: &Path) -> Result<Self, PolicyError> {
        let file = path.display().to_string();
        let whole = |problem: String| PolicyError {
            file: file.clone(),
            rule: None,
            problem,
        };
        let size = std::fs::metadata(path)
            .map_err(|e| whole(format!("cannot read it ({e})")))?
            .len();
        if size > MAX_BYTES {
            return Err(whole(format!("{size} bytes; a policy is at most 1 MiB")));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| whole(format!("cannot read it ({e})")))?;
        Self::parse(&file, &text)
    }

    /// Checks the policy `text`, named `file` in errors.
    pub fn parse(file: &str, text: &str) -> Result<Self, PolicyError> {
        let error = |rule: Option<usize>, problem: String| PolicyError {
            file: file.to_owned(),
            rule,
            problem,
        };
        let mut document: toml::Table =
            toml::from_str(text).map_err(|e| error(None, format!("not TOML: {}", e.message())))?;
        let rules = match document.remove("rule") {
            None => Vec::new(),
            Some(toml::Value::Array(rules)) => rules,
            Some(_) => return Err(error(None, "`rule` must be [[rule]] tables".into())),
        };
        if let Some(other) = document.keys().next() {
            return Err(error(
                None,
                format!("unknown field `{other}`: only [[rule]] tables"),
            ));
        }
        if rules.len() > MAX_RULES {
            return Err(error(
                None,
                format!("{} rules; at most {MAX_RULES}", rules.len()),
            ));
        }
        let rules = rules
            .into_iter()
            .enumerate()
            .map(|(i, value)| {
                let raw: RawRule = value
                    .try_into()
                    .map_err(|e: toml::de::Error| error(Some(i + 1), e.message().to_owned()))?;
                Rule::checked(raw).map_err(|problem| error(Some(i + 1), problem))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn rules(&self) -> usize {
        self.rules.len()
    }

    /// What the policy says of the repository `facts` describes.
    pub fn decide(&self, facts: &Facts) -> Decision {
        let mut decision = Decision::default();
        for (n, rule) in self.rules.iter().enumerate() {
            if !rule.matches(facts) {
                continue;
            }
            decision.rules.push(n + 1);
            if rule.skip {
                decision.skip = Some(n + 1);
            }
            for (key, value) in &rule.tags {
                decision.tags.insert(key.clone(), filled(value, facts));
            }
            let set = |own: &Option<Vec<String>>, into: &mut Option<Vec<String>>| {
                if own.is_some() {
                    into.clone_from(own);
                }
            };
            set(&rule.criticality, &mut decision.criticality);
            set(&rule.environment, &mut decision.environment);
            set(&rule.lifecycle, &mut decision.lifecycle);
            set(&rule.exclusion_globs, &mut decision.exclusion_globs);
            if rule.branches.is_some() {
                decision.branches.clone_from(&rule.branches);
            }
        }
        decision
    }
}

impl Rule {
    fn checked(raw: RawRule) -> Result<Self, String> {
        for (key, value) in &raw.tags {
            if let Some(problem) = snyk::bad_key(key) {
                return Err(problem);
            }
            check_value(key, value)?;
        }
        let listed = |name: &str, values: &Option<Vec<String>>, allowed: &[&str]| {
            for v in values.iter().flatten() {
                if !allowed.contains(&v.as_str()) {
                    return Err(format!(
                        "{name} {v:?} is not one of Snyk's: {}",
                        allowed.join(", ")
                    ));
                }
            }
            Ok(())
        };
        listed("criticality", &raw.criticality, &snyk::CRITICALITY)?;
        listed("environment", &raw.environment, &snyk::ENVIRONMENT)?;
        listed("lifecycle", &raw.lifecycle, &snyk::LIFECYCLE)?;
        for glob in raw.exclusion_globs.iter().flatten() {
            if glob.trim().is_empty() || glob.contains(',') || glob.chars().any(char::is_control) {
                return Err(format!(
                    "exclusion glob {glob:?} must be a non-empty folder or file glob without commas"
                ));
            }
        }
        Ok(Self {
            workspaces: set_of(&raw.workspaces)?,
            projects: raw.projects,
            repos: set_of(&raw.repos)?,
            languages: raw.languages.iter().map(|l| l.to_lowercase()).collect(),
            private: raw.private,
            tags: raw.tags,
            criticality: raw.criticality,
            environment: raw.environment,
            lifecycle: raw.lifecycle,
            exclusion_globs: raw.exclusion_globs,
            branches: raw.branches,
            skip: raw.skip.unwrap_or(false),
        })
    }

    fn matches(&self, facts: &Facts) -> bool {
        let any =
            |set: &Option<GlobSet>, value: &str| set.as_ref().is_none_or(|s| s.is_match(value));
        any(&self.workspaces, &facts.workspace)
            && any(&self.repos, &facts.slug)
            && (self.projects.is_empty()
                || facts
                    .project_key
                    .as_ref()
                    .is_some_and(|k| self.projects.contains(k)))
            && (self.languages.is_empty()
                || facts
                    .language
                    .as_ref()
                    .is_some_and(|l| self.languages.contains(&l.to_lowercase())))
            && self.private.is_none_or(|p| facts.private == Some(p))
    }
}

/// A tag value: Snyk's characters, or placeholders among them (filled and cleaned when applied).
fn check_value(key: &str, value: &str) -> Result<(), String> {
    let mut literal = value.to_owned();
    for placeholder in PLACEHOLDERS {
        literal = literal.replace(placeholder, "");
    }
    if literal.contains(['{', '}']) {
        return Err(format!(
            "tag {key} = {value:?} names a placeholder that does not exist; use {}",
            PLACEHOLDERS.join(", ")
        ));
    }
    let templated = literal.len() != value.len();
    if !literal.chars().all(snyk::tag_char)
        || (!templated && (value.is_empty() || value.chars().count() > snyk::MAX_TAG_VALUE))
    {
        return Err(format!(
            "tag {key} = {value:?}: a value is 1 to {} letters, digits, '-' or '_' (placeholders are cleaned to fit)",
            snyk::MAX_TAG_VALUE
        ));
    }
    Ok(())
}

/// `value` with its placeholders filled from `facts`, cleaned to fit Snyk's rules.
fn filled(value: &str, facts: &Facts) -> String {
    if !value.contains('{') {
        return value.to_owned();
    }
    let filled = value
        .replace("{workspace}", &facts.workspace)
        .replace("{repo}", &facts.slug)
        .replace("{project_key}", facts.project_key.as_deref().unwrap_or(""))
        .replace("{language}", facts.language.as_deref().unwrap_or(""));
    snyk::cleaned(&filled)
}

fn set_of(globs: &[Glob]) -> Result<Option<GlobSet>, String> {
    if globs.is_empty() {
        return Ok(None);
    }
    let mut builder = GlobSetBuilder::new();
    for glob in globs {
        builder.add(glob.matcher().clone());
    }
    builder
        .build()
        .map(Some)
        .map_err(|e| format!("the globs together do not compile: {e}"))
}

impl Policy {
    /// The policy `policy.file` names, or none; a bad one is a configuration error (exit 2) naming the
    /// file, the rule and the value.
    pub fn from_settings(settings: &bb2snyk_settings::Settings) -> Result<Self, ConfigError> {
        match &settings.policy_file {
            None => Ok(Self::default()),
            Some(path) => Self::read(path).map_err(|e| ConfigError::Invalid {
                name: "policy.file",
                problem: e.to_string(),
                how: "fix the policy (docs/policy.md); `bb2snyk policy check` checks it".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests;
