//! Switches that turn one polling rule off, for the benchmark's ablation (BENCHMARKS.md): the
//! environment variable `BB2SNYK_ABLATE` names rules, separated by `+`. Not a setting: each rule that
//! stays is one the ablation shows pays, and no deployment should run without it.

use std::sync::OnceLock;

/// A polling rule the ablation can switch off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// A cohort of probed jobs still pending raises the estimate at once.
    Raise,
    /// Jobs alike (one duration) keep first polls at the estimate while hints work.
    Alike,
    /// While the estimate climbs, first polls are safety nets.
    Climbing,
    /// First polls wait for hints only while the fleet follows many jobs.
    Many,
    /// Probes: first polls at the estimate without the margin, which alone move it.
    Probes,
    /// Listings shared through the store.
    Shared,
    /// The importers count themselves, and the yield is the fleet's.
    FleetCount,
}

impl Rule {
    const ALL: [(&str, Rule); 7] = [
        ("raise", Rule::Raise),
        ("alike", Rule::Alike),
        ("climbing", Rule::Climbing),
        ("many", Rule::Many),
        ("probes", Rule::Probes),
        ("shared", Rule::Shared),
        ("fleet-count", Rule::FleetCount),
    ];
}

/// Whether `rule` is switched off in this process.
pub fn off(rule: Rule) -> bool {
    static OFF: OnceLock<Vec<Rule>> = OnceLock::new();
    OFF.get_or_init(|| {
        let named = std::env::var("BB2SNYK_ABLATE").unwrap_or_default();
        let rules: Vec<Rule> = named
            .split('+')
            .filter_map(|name| {
                let rule = Rule::ALL.iter().find(|(n, _)| *n == name.trim());
                if rule.is_none() && !name.trim().is_empty() {
                    tracing::warn!(name, "BB2SNYK_ABLATE names no polling rule");
                }
                rule.map(|(_, r)| *r)
            })
            .collect();
        if !rules.is_empty() {
            tracing::warn!(?rules, "polling rules switched off for an ablation");
        }
        rules
    })
    .contains(&rule)
}
