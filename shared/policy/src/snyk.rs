//! Snyk's rules for project metadata (`bitbucket-and-snyk-apis.md` §8): tag keys and values, and the values
//! each attribute takes. Checked when a policy is read, so nothing Snyk would refuse is ever posted.

/// The longest tag key and value Snyk takes, in characters.
pub const MAX_TAG_KEY: usize = 30;
pub const MAX_TAG_VALUE: usize = 50;

pub const CRITICALITY: [&str; 4] = ["critical", "high", "medium", "low"];
pub const ENVIRONMENT: [&str; 9] = [
    "frontend",
    "backend",
    "internal",
    "external",
    "mobile",
    "saas",
    "onprem",
    "hosted",
    "distributed",
];
pub const LIFECYCLE: [&str; 3] = ["production", "development", "sandbox"];

/// Letters, digits, `-` and `_`: the only characters of a tag key or value.
pub fn tag_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Why `key` is not a tag key Snyk takes, if it is not.
pub fn bad_key(key: &str) -> Option<String> {
    if key.is_empty() || key.chars().count() > MAX_TAG_KEY || !key.chars().all(tag_char) {
        return Some(format!(
            "tag key {key:?} must be 1 to {MAX_TAG_KEY} letters, digits, '-' or '_'"
        ));
    }
    None
}

/// A value made from placeholders, made to fit: every character outside letters, digits, `-` and `_`
/// becomes `-`, and it is cut to [`MAX_TAG_VALUE`] characters; an empty one is `none`.
pub fn cleaned(value: &str) -> String {
    let cleaned: String = value
        .chars()
        .map(|c| if tag_char(c) { c } else { '-' })
        .take(MAX_TAG_VALUE)
        .collect();
    if cleaned.is_empty() {
        "none".to_owned()
    } else {
        cleaned
    }
}
