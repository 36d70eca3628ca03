//! `docs/configuration.md`, written from [`KEYS`]: every key, its variables, its default and what it means,
//! so the reference cannot drift from what bb2snyk reads (a test compares the two).

use crate::KEYS;

const INTRO: &str = "\
# Configuration reference

Written from the settings' key table (`shared/settings/src/keys.rs`) and checked against it by a test;
to change it, change the table and run `BB2SNYK_WRITE_DOCS=1 cargo test -p bb2snyk-settings --test reference`.

Settings come from, each overriding the one before: built-in defaults; a TOML file (`--config PATH` or
`BB2SNYK_CONFIG`; [`config/example.toml`](../config/example.toml) lists every key); snyk-api-import's
variables, which work as they are; and `BB2SNYK__SECTION__KEY` for any key (e.g. `BB2SNYK__AMQP__PREFIX`).
A misspelt key in the file or a misspelt `BB2SNYK__` variable is an error, not silently ignored.
`bb2snyk config` prints what is in force (secrets only as set or not set) and checks it is complete.
Secrets are held in types whose Debug output is redacted: they never appear in logs, at any level, nor in
error messages.

| key | variables | default | meaning |
|---|---|---|---|
";

const OUTRO: &str = "
Logging, outside the settings: `RUST_LOG` (default `info`; e.g. `bb2snyk=debug,info`), `DEBUG=*snyk*` (as
with snyk-api-import, bb2snyk's debug logs) and `BB2SNYK_LOG_FORMAT=json` (JSON lines).
";

/// The whole of `docs/configuration.md`.
pub fn reference() -> String {
    let mut out = INTRO.to_owned();
    for key in KEYS {
        let variables = match key.env {
            Some(env) => format!("`{env}`, `{}`", key.structured_env()),
            None => format!("`{}`", key.structured_env()),
        };
        let default = match key.default {
            Some("") => "empty".to_owned(),
            Some(d) => format!("`{d}`"),
            None if key.secret => "none (secret)".to_owned(),
            None => "none".to_owned(),
        };
        out.push_str(&format!(
            "| `{}` | {variables} | {default} | {} |\n",
            key.path,
            key.help.replace('|', "\\|")
        ));
    }
    out.push_str(OUTRO);
    out
}
