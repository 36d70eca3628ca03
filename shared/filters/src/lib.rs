//! Which repositories a run imports. One [`Filters`] type serves the command line (clap flattens it, with
//! the `clap` feature), the settings (`discovery.*`) and the messages (a run request carries it to every
//! page of its workspaces). Globs and dates are parsed once, where they enter: an invalid one is an error
//! there, never a filter silently dropped later.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// Repository filters; each list empty means no filter of that kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[serde(deny_unknown_fields)]
pub struct Filters {
    /// Skip forks (repositories with a parent).
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long = "excludeForks", alias = "exclude-forks"))]
    pub exclude_forks: bool,
    /// Import only repository slugs matching one of these globs (repeat or comma-separate).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "clap", arg(long, value_delimiter = ','))]
    pub include: Vec<Glob>,
    /// Skip repository slugs matching any of these globs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "clap", arg(long, value_delimiter = ','))]
    pub exclude: Vec<Glob>,
    /// Import only repositories in these Bitbucket projects, by key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(
        feature = "clap",
        arg(long = "projectKeys", alias = "project-keys", value_delimiter = ',')
    )]
    pub project_keys: Vec<String>,
    /// Import only repositories updated on or after this date (YYYY-MM-DD).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long = "updatedSince", alias = "updated-since"))]
    pub updated_since: Option<Date>,
}

impl Filters {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// These filters where given, `base`'s elsewhere: command-line flags over the `discovery.*` settings.
    pub fn over(&self, base: &Self) -> Self {
        let pick =
            |own: &Vec<Glob>, base: &Vec<Glob>| if own.is_empty() { base } else { own }.clone();
        Self {
            exclude_forks: self.exclude_forks || base.exclude_forks,
            include: pick(&self.include, &base.include),
            exclude: pick(&self.exclude, &base.exclude),
            project_keys: if self.project_keys.is_empty() {
                base.project_keys.clone()
            } else {
                self.project_keys.clone()
            },
            updated_since: self
                .updated_since
                .clone()
                .or_else(|| base.updated_since.clone()),
        }
    }

    /// `None` when no filter is set, so a run request without flags leaves the discoverer's settings in force.
    pub fn given(&self) -> Option<Self> {
        (!self.is_empty()).then(|| self.clone())
    }
}

/// A glob over repository slugs, compiled when parsed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Glob(globset::Glob);

impl Glob {
    pub fn as_str(&self) -> &str {
        self.0.glob()
    }

    pub fn matcher(&self) -> &globset::Glob {
        &self.0
    }
}

impl FromStr for Glob {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err("an empty glob matches nothing".into());
        }
        globset::Glob::new(s)
            .map(Self)
            .map_err(|e| format!("{s:?} is not a valid glob: {e}"))
    }
}

impl TryFrom<String> for Glob {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Glob> for String {
    fn from(g: Glob) -> Self {
        g.as_str().to_owned()
    }
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A calendar date, `YYYY-MM-DD`: the form Bitbucket's `updated_on` begins with, so it compares as text.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Date(String);

impl Date {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Date {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = || format!("{s:?} is not a date like 2024-01-31");
        let number = |part: &str, len: usize| {
            (part.len() == len && part.bytes().all(|b| b.is_ascii_digit()))
                .then(|| part.parse::<u32>().ok())
                .flatten()
        };
        let mut parts = s.split('-');
        let (Some(y), Some(m), Some(d), None) = (
            parts.next().and_then(|p| number(p, 4)),
            parts.next().and_then(|p| number(p, 2)),
            parts.next().and_then(|p| number(p, 2)),
            parts.next(),
        ) else {
            return Err(bad());
        };
        let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let days = match m {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return Err(bad()),
        };
        if d == 0 || d > days {
            return Err(bad());
        }
        Ok(Self(s.to_owned()))
    }
}

impl TryFrom<String> for Date {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Date> for String {
    fn from(d: Date) -> Self {
        d.0
    }
}

impl fmt::Debug for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_and_dates_are_checked_once_where_they_enter() {
        assert!("api-*".parse::<Glob>().is_ok());
        let typo = "secret-[".parse::<Glob>().expect_err("unclosed class");
        assert!(typo.contains("not a valid glob"), "{typo}");
        assert!("2024-02-29".parse::<Date>().is_ok());
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-1-01",
            "24-01-01",
            "2024-01-01x",
            "",
        ] {
            assert!(bad.parse::<Date>().is_err(), "{bad}");
        }
    }

    #[test]
    fn messages_carry_them_and_reject_bad_ones() {
        let filters: Filters = serde_json::from_str(
            r#"{"include":["api-*"],"updated_since":"2024-01-31","exclude_forks":true}"#,
        )
        .expect("valid filters");
        assert_eq!(filters.include[0].as_str(), "api-*");
        let json = serde_json::to_string(&filters).expect("serialise");
        assert_eq!(serde_json::from_str::<Filters>(&json).ok(), Some(filters));
        let bad = serde_json::from_str::<Filters>(r#"{"exclude":["secret-["]}"#);
        assert!(bad.is_err());
        let bad = serde_json::from_str::<Filters>(r#"{"updated_since":"yesterday"}"#);
        assert!(bad.is_err());
    }

    #[test]
    fn flags_win_over_settings_kind_by_kind() {
        let settings = Filters {
            exclude: vec!["old-*".parse().expect("glob")],
            project_keys: vec!["P".into()],
            ..Filters::default()
        };
        let flags = Filters {
            include: vec!["api-*".parse().expect("glob")],
            project_keys: vec!["Q".into()],
            ..Filters::default()
        };
        let both = flags.over(&settings);
        assert_eq!(both.include, flags.include);
        assert_eq!(both.exclude, settings.exclude);
        assert_eq!(both.project_keys, vec!["Q".to_owned()]);
        assert_eq!(Filters::default().given(), None);
        assert_eq!(flags.given(), Some(flags.clone()));
    }
}
