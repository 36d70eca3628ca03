//! The identifiers and names on the wire, each a type that parses once, where a message is read: not
//! empty, within its bound, without control characters. A field of one of these types in a message is
//! valid wherever the message is used; an absent value is an `Option`, never an empty string.

use std::{fmt, ops::Deref};

use serde::{Deserialize, Serialize};

/// Bounds in bytes: ids (runs, groups, orgs, integrations, credentials, projects), names (workspace and
/// repository slugs, branches), and URLs.
pub const ID: usize = 128;
pub const NAME: usize = 255;
pub const URL: usize = 2048;
/// A reason, in words.
pub const REASON: usize = 1024;

/// Why a value cannot be one of these types.
fn check(what: &str, value: &str, max: usize) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if value.len() > max {
        return Err(format!("{what} is {} bytes, at most {max}", value.len()));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{what} holds control characters"));
    }
    Ok(())
}

/// A time on the wire: milliseconds since the Unix epoch. Zero is no time: a field that may be absent
/// is an `Option` of this, and reads a 0 (as releases before this one wrote "none") as absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnixMs(pub u64);

impl UnixMs {
    pub fn get(self) -> u64 {
        self.0
    }
}

/// Reads an optional number that earlier releases wrote as 0 for "none".
pub fn zero_is_none<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: From<u64>,
{
    let n: Option<u64> = Option::deserialize(deserializer)?;
    Ok(n.filter(|n| *n != 0).map(T::from))
}

impl From<u64> for UnixMs {
    fn from(ms: u64) -> Self {
        Self(ms)
    }
}

macro_rules! wire_string {
    ($($(#[doc = $doc:literal])* $name:ident, $what:literal, $max:expr;)+) => {$(
        $(#[doc = $doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The value, checked: not empty, at most the bound, no control characters.
            pub fn new(value: impl Into<String>) -> Result<Self, String> {
                let value = value.into();
                check($what, &value, $max)?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(value: &str) -> Result<Self, String> {
                Self::new(value)
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(value: String) -> Result<Self, String> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }
    )+};
}

wire_string! {
    /// A run's id (`run-` and 12 hex digits when bb2snyk made it).
    RunId, "run_id", ID;
    /// A Snyk group's id.
    GroupId, "group_id", ID;
    /// A Snyk org's id.
    OrgId, "org_id", ID;
    /// The id of an org's Bitbucket Cloud App integration.
    IntegrationId, "integration_id", ID;
    /// Which Bitbucket credential serves a workspace: a hash, never a secret.
    CredentialId, "credential", ID;
    /// A Snyk project's id.
    ProjectId, "projects[]", ID;
    /// An import job's URL, as Snyk's `Location` gave it (checked against `snyk.api_base` before use).
    JobUrl, "job_url", URL;
    /// A Bitbucket workspace's slug.
    WorkspaceSlug, "workspace", NAME;
    /// A Bitbucket repository's slug.
    RepoSlug, "target.name", NAME;
    /// A branch's name.
    BranchName, "branch", NAME;
    /// A workspace's display name, as its org is named.
    DisplayName, "name", NAME;
    /// Bitbucket's link to a listing's next page (checked against `bitbucket.api_base` before use).
    PageUrl, "next", URL;
    /// A repository's full name, `workspace/slug`.
    FullName, "target", 2 * NAME + 1;
    /// Why, in words.
    Reason, "reason", REASON;
}

impl FullName {
    /// `workspace/slug`: two checked names make a full name within its bound.
    pub fn from_parts(workspace: &WorkspaceSlug, slug: &RepoSlug) -> Self {
        Self(format!("{workspace}/{slug}"))
    }
}

impl Reason {
    /// `text` as a reason: control characters become spaces and a text over the bound is cut (at a
    /// character), so bb2snyk's own words always make one.
    pub fn from_text(text: &str) -> Self {
        let mut reason: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if reason.len() > REASON {
            let mut end = REASON;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
        }
        if reason.trim().is_empty() {
            reason = "no reason given".to_owned();
        }
        Self(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_parsed_once_at_the_boundary() {
        let parsed = |json: &str| serde_json::from_str::<RunId>(json);
        assert_eq!(parsed("\"run-1\"").expect("valid").as_str(), "run-1");
        let long = format!("\"{}\"", "x".repeat(400));
        for (json, why) in [
            (long.as_str(), "at most 128"),
            ("\"\"", "empty"),
            ("\"run\\u0007\"", "control characters"),
        ] {
            let error = parsed(json).expect_err(json).to_string();
            assert!(error.contains(why), "{json}: {error}");
        }
        assert_eq!(
            serde_json::to_string(&RunId::new("r").expect("valid")).expect("JSON"),
            "\"r\""
        );
    }
}
