//! The loading rules, one test per rule: layers, seed variables, every check and its message.
//!
//! Over 400 lines on purpose: each rule is short and the rules read best in one list.

use std::{collections::HashMap, io::Write, path::PathBuf};

use secrecy::ExposeSecret;

use crate::{ConfigError, KEYS, Need, Settings, Sources, load};

fn env(pairs: &[(&str, &str)]) -> Sources {
    Sources {
        file: None,
        env: pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<HashMap<_, _>>(),
    }
}

fn loaded(pairs: &[(&str, &str)]) -> Settings {
    match load(&env(pairs)) {
        Ok(s) => s,
        Err(e) => panic!("settings should load: {e}"),
    }
}

fn error(pairs: &[(&str, &str)]) -> String {
    match load(&env(pairs)) {
        Ok(_) => panic!("settings should not load from {pairs:?}"),
        Err(e) => e.to_string(),
    }
}

fn temp_toml(contents: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "bb2snyk-settings-{}.toml",
        std::process::id() as u128 * 1000 + rand_suffix()
    ));
    let mut f = std::fs::File::create(&path).expect("temp file");
    f.write_all(contents.as_bytes()).expect("write temp file");
    path
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() % 1000)
        .unwrap_or(0)
}

#[test]
fn defaults_match_the_seed_tool() {
    let s = loaded(&[]);
    assert_eq!(
        s.bitbucket.api_base.as_str(),
        "https://api.bitbucket.org/2.0"
    );
    assert_eq!(
        s.bitbucket.token_url.as_str(),
        "https://bitbucket.org/site/oauth2/access_token"
    );
    assert_eq!(s.snyk.api_base.as_str(), "https://api.snyk.io/v1");
    assert_eq!(
        s.amqp
            .urls
            .iter()
            .map(|u| u.expose_secret())
            .collect::<Vec<_>>(),
        ["amqp://guest:guest@127.0.0.1:5672/%2f"]
    );
    assert_eq!(s.redis.url.expose_secret(), "redis://127.0.0.1:6379");
    assert_eq!(s.import.concurrent_imports, 15);
    assert_eq!(s.import.log_path, PathBuf::from("."));
    assert!(s.snyk.token.is_none() && s.bitbucket.client_id.is_none());
}

#[test]
fn seed_variables_work_as_they_are() {
    let s = loaded(&[
        ("BITBUCKET_APP_CLIENT_ID", "consumer-key"),
        ("BITBUCKET_APP_CLIENT_SECRET", "consumer-secret"),
        ("BITBUCKET_APP_API_BASE", "http://127.0.0.1:9/2.0"),
        (
            "BITBUCKET_APP_TOKEN_URL",
            "http://127.0.0.1:9/site/oauth2/access_token",
        ),
        ("SNYK_TOKEN", "snyk-token"),
        ("SNYK_API", "https://api.eu.snyk.io/v1"),
        ("SNYK_LOG_PATH", "/tmp/logs"),
        ("CONCURRENT_IMPORTS", "50"),
        ("AMQP_URL", "amqps://u:p@mq.example:5671/prod"),
        ("REDIS_URL", "rediss://:pw@cache.example:6380"),
    ]);
    assert_eq!(
        s.bitbucket_consumer()
            .map(|(id, secret)| (id.to_owned(), secret.expose_secret().to_owned()))
            .ok(),
        Some(("consumer-key".to_owned(), "consumer-secret".to_owned()))
    );
    assert_eq!(s.bitbucket.api_base.as_str(), "http://127.0.0.1:9/2.0");
    assert_eq!(tokens(&s), vec!["snyk-token".to_owned()]);
    assert_eq!(s.snyk.api_base.host_str(), Some("api.eu.snyk.io"));
    assert_eq!(s.import.log_path, PathBuf::from("/tmp/logs"));
    assert_eq!(s.import.concurrent_imports, 50);
    assert!(
        s.require(&[Need::SnykToken, Need::BitbucketCredentials])
            .is_ok()
    );
}

#[test]
fn structured_variables_win_over_seed_variables_and_the_file() {
    let file = temp_toml(
        "[snyk]\ntoken = \"from-file\"\n\n[import]\nconcurrent_imports = 7\nlog_path = \"/from/file\"\n",
    );
    let mut sources = env(&[
        ("SNYK_TOKEN", "from-seed"),
        ("BB2SNYK__IMPORT__CONCURRENT_IMPORTS", "9"),
    ]);
    sources.file = Some(file.clone());
    let s = load(&sources).expect("loads");
    assert_eq!(tokens(&s), vec!["from-seed".to_owned()]);
    assert_eq!(s.import.concurrent_imports, 9);
    assert_eq!(s.import.log_path, PathBuf::from("/from/file"));
    let _ = std::fs::remove_file(file);
}

#[test]
fn a_missing_snyk_token_names_the_variable_on_one_line() {
    let s = loaded(&[]);
    let message = s
        .require(&[Need::SnykToken])
        .expect_err("no token")
        .to_string();
    assert!(message.starts_with("SNYK_TOKEN is not set"), "{message}");
    assert!(message.contains("BB2SNYK__SNYK__TOKEN"), "{message}");
    assert!(!message.contains('\n'));
    let consumer = s
        .require(&[Need::BitbucketCredentials])
        .expect_err("no consumer")
        .to_string();
    assert!(
        consumer.starts_with("BITBUCKET_APP_CLIENT_ID is not set"),
        "{consumer}"
    );
}

#[test]
fn malformed_values_name_the_variable() {
    for value in ["abc", "0", "51", "-3", "1.5"] {
        let message = error(&[("CONCURRENT_IMPORTS", value)]);
        assert!(
            message.starts_with("CONCURRENT_IMPORTS is invalid"),
            "{message}"
        );
        assert!(message.contains("from 1 to 50"), "{message}");
    }
    assert!(error(&[("SNYK_API", "api.snyk.io/v1")]).starts_with("SNYK_API is invalid"));
    assert!(
        error(&[("BITBUCKET_APP_API_BASE", "ftp://x/2.0")])
            .contains("must start with https://, http://")
    );
    assert!(error(&[("BB2SNYK__AMQP__PREFIX", "two words")]).starts_with("amqp.prefix is invalid"));
}

#[test]
fn a_malformed_secret_url_is_not_echoed() {
    let message = error(&[("AMQP_URL", "http://user:hunter2@mq:5672")]);
    assert!(message.starts_with("AMQP_URL is invalid"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
    // Without `//` the password would sit in the path, where no redaction looks: refused, not echoed.
    let message = error(&[("AMQP_URL", "amqp:user:hunter2@mq:5672")]);
    assert!(message.contains("must start with amqp://"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
}

#[test]
fn a_toml_error_names_its_place_but_never_quotes_the_line() {
    let path = std::env::temp_dir().join(format!("bb2snyk-bad-{}.toml", std::process::id()));
    std::fs::write(&path, "[snyk]\ntoken = \"st-hunter2\nrate_budget = 10\n").expect("write");
    let sources = Sources {
        file: Some(path.clone()),
        env: Default::default(),
    };
    let message = crate::load(&sources).expect_err("invalid TOML").to_string();
    std::fs::remove_file(&path).ok();
    assert!(message.contains("not valid TOML at line 2"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
}

#[test]
fn redaction_hides_passwords_in_user_info_and_in_the_query() {
    let shown = |url: &str| crate::redact_url(&secrecy::SecretString::from(url.to_owned()));
    assert_eq!(shown("redis://:hunter2@r:6379/0"), "redis://:***@r:6379/0");
    let unix = shown("unix:///run/redis.sock?db=2&pass=hunter2");
    assert!(!unix.contains("hunter2") && unix.contains("db=2"), "{unix}");
    let odd = shown("amqp:user:hunter2@mq");
    assert!(!odd.contains("hunter2"), "{odd}");
}

#[test]
fn typos_are_reported_not_ignored() {
    assert!(
        error(&[("BB2SNYK__SNYK__TOKNE", "x")]).contains("unknown variable BB2SNYK__SNYK__TOKNE")
    );
    let file = temp_toml("[snyk]\ntokn = \"x\"\n");
    let sources = Sources {
        file: Some(file.clone()),
        env: HashMap::new(),
    };
    let message = load(&sources).expect_err("unknown key").to_string();
    assert!(message.contains("unknown key `snyk.tokn`"), "{message}");
    let _ = std::fs::remove_file(file);
    let missing = Sources {
        file: Some(PathBuf::from("/nonexistent/bb2snyk.toml")),
        env: HashMap::new(),
    };
    assert!(matches!(load(&missing), Err(ConfigError::File { .. })));
}

#[test]
fn debug_output_redacts_every_secret() {
    let s = loaded(&[
        ("BITBUCKET_APP_CLIENT_SECRET", "consumer-secret-value"),
        ("SNYK_TOKEN", "snyk-token-value"),
        ("AMQP_URL", "amqp://user:amqp-password@mq:5672/%2f"),
        ("REDIS_URL", "redis://:redis-password@cache:6379"),
    ]);
    let debug = format!("{s:?}");
    for secret in [
        "consumer-secret-value",
        "snyk-token-value",
        "amqp-password",
        "redis-password",
    ] {
        assert!(!debug.contains(secret), "{secret} leaked into {debug}");
    }
    assert_eq!(
        crate::redact_urls(&s.amqp.urls),
        "amqp://user:***@mq:5672/%2f"
    );
}

/// A cluster: every node's URL, in order, each checked and each password hidden; a bad one is named by
/// its place, never quoted.
#[test]
fn amqp_url_takes_a_cluster_s_nodes_in_order() {
    let s = loaded(&[(
        "AMQP_URL",
        "amqp://u:pw-one@mq-1:5672/%2f, amqp://u:pw-two@mq-2:5672/%2f,amqps://u:pw-three@mq-3:5671/%2f",
    )]);
    assert_eq!(
        crate::redact_urls(&s.amqp.urls),
        "amqp://u:***@mq-1:5672/%2f,amqp://u:***@mq-2:5672/%2f,amqps://u:***@mq-3:5671/%2f"
    );
    assert!(!format!("{s:?}").contains("pw-"));
    let message = error(&[(
        "AMQP_URL",
        "amqp://u:pw@mq-1:5672/%2f,http://u:hunter2@mq-2/",
    )]);
    assert!(
        message.contains("URL 2 of 2 must start with amqp://"),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
    let message = error(&[("AMQP_URL", "amqp://mq-1:5672/%2f,")]);
    assert!(message.contains("URL 2 of 2 is not a URL"), "{message}");
    let many = vec!["amqp://mq:5672/%2f"; 17].join(",");
    assert!(error(&[("AMQP_URL", many.as_str())]).contains("at most 16"));
}

#[test]
fn a_leading_tilde_expands_to_home() {
    let s = loaded(&[("SNYK_LOG_PATH", "~/snyk-logs"), ("HOME", "/home/ops")]);
    assert_eq!(s.import.log_path, PathBuf::from("/home/ops/snyk-logs"));
}

/// `config/example.toml` documents every key with its default, so a new key cannot go undocumented.
#[test]
fn example_file_lists_every_key_with_its_default() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/example.toml");
    let text = std::fs::read_to_string(path).expect("config/example.toml exists");
    // Keys without a default are shown commented out (`# client_id = ""`); everything else is prose.
    let uncommented: String = text
        .lines()
        .filter_map(|line| match line.strip_prefix('#').map(str::trim_start) {
            Some(rest)
                if rest.split_once(" = ").is_some_and(|(k, _)| {
                    k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                }) =>
            {
                Some(rest)
            }
            Some(_) => None,
            None => Some(line),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let table: toml::Table =
        toml::from_str(&uncommented).expect("example.toml parses once uncommented");
    for k in KEYS {
        let (section, name) = k.path.split_once('.').expect("section.key");
        let value = table.get(section).and_then(|s| s.get(name));
        let value =
            value.unwrap_or_else(|| panic!("{} is missing from config/example.toml", k.path));
        if let Some(default) = k.default {
            let shown = value
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| value.to_string());
            assert_eq!(
                shown, default,
                "{} default differs in config/example.toml",
                k.path
            );
        }
        if let Some(env) = k.env {
            assert!(
                text.contains(env),
                "config/example.toml does not mention {env}"
            );
        }
    }
    // And the example itself loads.
    let sources = Sources {
        file: Some(PathBuf::from(path)),
        env: HashMap::new(),
    };
    assert!(load(&sources).is_ok());
}

#[test]
fn each_bitbucket_auth_mode_asks_for_its_own_credential() {
    use crate::{BitbucketAuth, BitbucketCredentials};
    let s = loaded(&[("BB2SNYK__BITBUCKET__AUTH", "access-token")]);
    assert_eq!(s.bitbucket.auth, BitbucketAuth::AccessToken);
    let missing = s
        .require(&[Need::BitbucketCredentials])
        .expect_err("no token")
        .to_string();
    assert!(
        missing.starts_with("BITBUCKET_ACCESS_TOKEN is not set"),
        "{missing}"
    );
    let s = loaded(&[
        ("BB2SNYK__BITBUCKET__AUTH", "basic"),
        ("BITBUCKET_CLOUD_USERNAME", "ops@example.com"),
        ("BITBUCKET_CLOUD_PASSWORD", "api-token-value"),
    ]);
    assert!(matches!(
        s.bitbucket_credentials(),
        Ok(BitbucketCredentials::Basic {
            username: "ops@example.com",
            ..
        })
    ));
    assert!(!format!("{s:?}").contains("api-token-value"));
    let wrong = error(&[("BB2SNYK__BITBUCKET__AUTH", "password")]);
    assert!(
        wrong.starts_with(
            "bitbucket.auth is invalid (\"password\" is not oauth, access-token or basic)"
        ),
        "{wrong}"
    );
}

#[test]
fn discovery_lists_dates_and_globs_are_checked() {
    let s = loaded(&[
        ("BB2SNYK__BITBUCKET__WORKSPACES", " acme , globex,,"),
        ("BB2SNYK__DISCOVERY__INCLUDE", "api-*, web-?"),
        ("BB2SNYK__DISCOVERY__EXCLUDE_FORKS", "true"),
        ("BB2SNYK__DISCOVERY__UPDATED_SINCE", "2024-01-31"),
        ("BB2SNYK__BITBUCKET__RATE_BUDGET", "500"),
    ]);
    assert_eq!(s.bitbucket.workspaces, ["acme", "globex"]);
    let include: Vec<&str> = s.discovery.include.iter().map(|g| g.as_str()).collect();
    assert_eq!(include, ["api-*", "web-?"]);
    assert!(s.discovery.exclude_forks);
    assert_eq!(
        s.discovery.updated_since.as_ref().map(|d| d.as_str()),
        Some("2024-01-31")
    );
    assert_eq!(s.bitbucket.rate_budget, 500);
    assert_eq!(loaded(&[]).bitbucket.rate_budget, 950);
    assert_eq!(loaded(&[]).bitbucket.rate_window.as_secs(), 3600);

    let date = error(&[("BB2SNYK__DISCOVERY__UPDATED_SINCE", "31/01/2024")]);
    assert!(date.contains("is not a date like 2024-01-31"), "{date}");
    // Checked as a calendar date, the same rule the command line and the messages use.
    let date = error(&[("BB2SNYK__DISCOVERY__UPDATED_SINCE", "2023-02-29")]);
    assert!(date.contains("is not a date like 2024-01-31"), "{date}");
    let glob = error(&[("BB2SNYK__DISCOVERY__EXCLUDE", "api-[")]);
    assert!(
        glob.starts_with("discovery.exclude is invalid (\"api-[\""),
        "{glob}"
    );
    let flag = error(&[("BB2SNYK__DISCOVERY__EXCLUDE_FORKS", "maybe")]);
    assert!(flag.contains("is not true or false"), "{flag}");
}

fn tokens(s: &Settings) -> Vec<String> {
    s.snyk_tokens()
        .map(|t| t.iter().map(|t| t.expose_secret().to_owned()).collect())
        .unwrap_or_default()
}

#[test]
fn snyk_tokens_are_the_union_of_snyk_token_and_snyk_tokens() {
    let s = loaded(&[("SNYK_TOKENS", " b , c,,b ")]);
    assert_eq!(tokens(&s), ["b", "c"]);
    let s = loaded(&[("SNYK_TOKEN", "a"), ("SNYK_TOKENS", "b,a,c")]);
    assert_eq!(tokens(&s), ["a", "b", "c"]);
    assert!(s.require(&[Need::SnykToken]).is_ok());
    let described = s
        .describe()
        .into_iter()
        .map(|(k, v)| format!("{}={v}", k.path))
        .collect::<Vec<_>>()
        .join(" ");
    assert!(described.contains("snyk.tokens=(3 set)"), "{described}");
    assert!(
        !described.contains("=b,") && !described.contains(",c"),
        "{described}"
    );
    let none = loaded(&[]);
    let error = none
        .require(&[Need::SnykToken])
        .expect_err("no token")
        .to_string();
    assert!(
        error.contains("SNYK_TOKEN") && error.contains("SNYK_TOKENS"),
        "{error}"
    );
}

fn consumers_file(text: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path =
        std::env::temp_dir().join(format!("bb2snyk-consumers-{}-{n}.toml", std::process::id()));
    std::fs::write(&path, text).expect("temp file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    path
}

#[test]
fn the_credentials_file_lists_consumers_and_refuses_the_pair_beside_it() {
    let path = consumers_file(
        "[[consumer]]\nclient_id = \"one\"\nclient_secret = \"s3cret-one\"\nworkspaces = [\"alpha\"]\n\n\
         [[consumer]]\nclient_id = \"two\"\nclient_secret = \"s3cret-two\"\n",
    );
    let file = path.display().to_string();
    let s = loaded(&[("BITBUCKET_APP_CREDENTIALS_FILE", &file)]);
    let ids: Vec<_> = s
        .bitbucket
        .consumers
        .iter()
        .map(|c| (c.client_id.as_str(), c.workspaces.clone()))
        .collect();
    assert_eq!(ids, [("one", vec!["alpha".to_owned()]), ("two", vec![])]);
    assert!(s.require(&[Need::BitbucketCredentials]).is_ok());
    assert!(
        s.warnings().is_empty(),
        "0600 is private: {:?}",
        s.warnings()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let warnings = loaded(&[("BITBUCKET_APP_CREDENTIALS_FILE", &file)]).warnings();
        assert!(
            warnings.len() == 1
                && warnings[0].contains("readable by every user")
                && warnings[0].contains(&file),
            "{warnings:?}"
        );
    }
    let shown = format!("{s:?} {:?}", s.describe());
    assert!(!shown.contains("s3cret"), "{shown}");

    let both = load(&env(&[
        ("BITBUCKET_APP_CREDENTIALS_FILE", &file),
        ("BITBUCKET_APP_CLIENT_ID", "key"),
    ]))
    .expect_err("both set")
    .to_string();
    assert!(
        both.contains("BITBUCKET_APP_CREDENTIALS_FILE") && both.contains("BITBUCKET_APP_CLIENT_ID"),
        "{both}"
    );
    let _ = std::fs::remove_file(&path);

    for (text, says) in [
        ("", "no [[consumer]]"),
        ("[[consumer]]\nclient_id = \"x\"\n", "line"),
        (
            "[[consumer]]\nclient_id = \"x\"\nclient_secret = \"leak-me\"\nextra = 1\n",
            "line",
        ),
        (
            "[[consumer]]\nclient_id = \"x\"\nclient_secret = \"\"\n",
            "no client_secret",
        ),
        (
            "[[consumer]]\nclient_id = \"x\"\nclient_secret = \"a\"\n[[consumer]]\nclient_id = \"x\"\nclient_secret = \"b\"\n",
            "appears twice",
        ),
    ] {
        let path = consumers_file(text);
        let error = load(&env(&[(
            "BITBUCKET_APP_CREDENTIALS_FILE",
            &path.display().to_string(),
        )]))
        .expect_err(text)
        .to_string();
        assert!(
            error.contains(says) && error.contains("BITBUCKET_APP_CREDENTIALS_FILE"),
            "{text}: {error}"
        );
        assert!(!error.contains("leak-me"), "{error}");
        let _ = std::fs::remove_file(path);
    }
    let missing = load(&env(&[(
        "BITBUCKET_APP_CREDENTIALS_FILE",
        "/nonexistent/consumers.toml",
    )]))
    .expect_err("no such file")
    .to_string();
    assert!(missing.contains("/nonexistent/consumers.toml"), "{missing}");
}

#[test]
fn an_endpoints_port_is_fixed_only_when_asked_for() {
    assert!(!loaded(&[]).metrics.fixed, "the default may give way");
    assert!(
        loaded(&[("BB2SNYK__METRICS__LISTEN", "0.0.0.0:9600")])
            .metrics
            .fixed
    );
    let path = temp_toml("[metrics]\nlisten = \"127.0.0.1:9700\"\n");
    let from_file = load(&Sources {
        file: Some(path.clone()),
        env: HashMap::new(),
    })
    .expect("settings");
    assert!(from_file.metrics.fixed);
    assert_eq!(from_file.metrics.listen.map(|a| a.port()), Some(9700));
    let _ = std::fs::remove_file(path);
}
