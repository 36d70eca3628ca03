//! Logging for every bb2snyk binary: `RUST_LOG` filters, `BB2SNYK_LOG_FORMAT=json` gives JSON lines (one
//! object per event, for log shippers), anything else gives human-readable lines. `DEBUG=*snyk*`, the habit of
//! snyk-api-import users, turns on bb2snyk's debug logs. Logs go to stderr; stdout is for command output.

pub mod clock;
pub mod metrics;

use std::io::IsTerminal;

use tracing::Subscriber;
use tracing_subscriber::{EnvFilter, fmt::MakeWriter, layer::SubscriberExt};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
}

impl Format {
    /// `json` selects JSON lines; any other value, or none, human-readable output.
    pub fn from_env_value(value: Option<&str>) -> Self {
        match value.map(str::trim) {
            Some(v) if v.eq_ignore_ascii_case("json") => Self::Json,
            _ => Self::Human,
        }
    }
}

/// The filter from `RUST_LOG`, or `info` when it is unset or unusable; `DEBUG` naming snyk (or `*`) adds
/// debug for every bb2snyk target.
pub fn filter(rust_log: Option<&str>, debug: Option<&str>) -> EnvFilter {
    filter_or(rust_log, debug, "info")
}

/// [`filter`], with `default` when `RUST_LOG` is unset.
fn filter_or(rust_log: Option<&str>, debug: Option<&str>, default: &str) -> EnvFilter {
    let base = rust_log.filter(|s| !s.trim().is_empty()).unwrap_or(default);
    let mut filter = EnvFilter::try_new(base).unwrap_or_else(|_| EnvFilter::new(default));
    if debug.is_some_and(debug_wants_snyk)
        && let Ok(directive) = "bb2snyk=debug".parse()
    {
        filter = filter.add_directive(directive);
    }
    filter
}

/// The `debug` npm module takes comma- or space-separated patterns with `*` wildcards.
fn debug_wants_snyk(patterns: &str) -> bool {
    patterns
        .split([',', ' '])
        .map(str::trim)
        .any(|p| p == "*" || (!p.starts_with('-') && p.contains("snyk")))
}

/// A subscriber writing to `writer`; tests pass a buffer to read what would have been logged.
pub fn subscriber<W>(
    filter: EnvFilter,
    format: Format,
    writer: W,
    ansi: bool,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        Format::Json => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_writer(writer),
            ),
        ),
        Format::Human => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(ansi)
                    .with_writer(writer),
            ),
        ),
    }
}

/// Installs the process-wide subscriber from `RUST_LOG`, `DEBUG` and `BB2SNYK_LOG_FORMAT`. Call once, first.
pub fn init() {
    init_or("info");
}

/// [`init`] for commands a person watches: without `RUST_LOG`, only warnings and errors are logged,
/// so their own output stays readable.
pub fn init_quiet() {
    init_or("warn");
}

fn init_or(default: &str) {
    let var = |name: &str| std::env::var(name).ok();
    let format = Format::from_env_value(var("BB2SNYK_LOG_FORMAT").as_deref());
    let filter = filter_or(var("RUST_LOG").as_deref(), var("DEBUG").as_deref(), default);
    let ansi = std::io::stderr().is_terminal();
    // Only fails when a subscriber is already installed, which leaves logging working.
    let _ =
        tracing::subscriber::set_global_default(subscriber(filter, format, std::io::stderr, ansi));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_follows_the_variable() {
        assert_eq!(Format::from_env_value(Some("json")), Format::Json);
        assert_eq!(Format::from_env_value(Some(" JSON ")), Format::Json);
        assert_eq!(Format::from_env_value(Some("text")), Format::Human);
        assert_eq!(Format::from_env_value(None), Format::Human);
    }

    #[test]
    fn debug_patterns_like_snyk_api_import_users_write_them() {
        assert!(debug_wants_snyk("*snyk*"));
        assert!(debug_wants_snyk("snyk:api-import,other"));
        assert!(debug_wants_snyk("*"));
        assert!(!debug_wants_snyk("express:*"));
        assert!(!debug_wants_snyk("-*snyk*"));
        assert!(
            filter(None, Some("*snyk*"))
                .to_string()
                .contains("bb2snyk=debug")
        );
        assert!(!filter(None, None).to_string().contains("bb2snyk=debug"));
    }

    #[test]
    fn a_bad_rust_log_falls_back_to_info() {
        assert_eq!(filter(Some("[[["), None).to_string(), "info");
    }
}
