//! The deployment files parse, and what they name exists: queue names in KEDA match the topology, the
//! variables they set are settings bb2snyk reads, commands are our binaries, metric names are ours, probes
//! hit our endpoints, and grace periods outlast the drain.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use bb2snyk_settings::{KEYS, Sources};
use serde_json::Value;

const BINARIES: [&str; 5] = [
    "discoverer",
    "org-creator",
    "importer",
    "bb2snyk",
    "sandbox",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every YAML document and JSON file under `deploy/` (but vendored schemas), and `docker-compose.yml`, as
/// JSON values.
fn documents() -> Vec<(PathBuf, Value)> {
    let mut files = vec![root().join("docker-compose.yml")];
    let mut dirs = vec![root().join("deploy")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("deploy dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                // Vendored CRD schemas, read by deploy/kubernetes/check.
                if !path.ends_with("check-schemas") {
                    dirs.push(path);
                }
            } else {
                files.push(path);
            }
        }
    }
    let mut documents = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("readable");
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => {
                for document in serde_yaml_ng::Deserializer::from_str(&text) {
                    let mut yaml: serde_yaml_ng::Value = serde::Deserialize::deserialize(document)
                        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
                    // Compose's `<<: *service` merge keys, as compose applies them.
                    yaml.apply_merge()
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    let value = serde_json::to_value(yaml)
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    documents.push((path.clone(), value));
                }
            }
            Some("json") => {
                let value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()));
                documents.push((path, value));
            }
            _ => {}
        }
    }
    documents
}

fn kind<'a>(docs: &'a [(PathBuf, Value)], kind: &str) -> Vec<&'a Value> {
    docs.iter()
        .map(|(_, v)| v)
        .filter(|v| v["kind"] == kind)
        .collect()
}

/// Variables bb2snyk reads: the seed's names, `BB2SNYK__SECTION__KEY` for every key, and the few read directly.
fn known_variables() -> BTreeSet<String> {
    let mut known: BTreeSet<String> = KEYS
        .iter()
        .flat_map(|k| {
            k.env
                .map(str::to_owned)
                .into_iter()
                .chain([k.structured_env()])
        })
        .collect();
    for name in [
        "RUST_LOG",
        "DEBUG",
        "BB2SNYK_LOG_FORMAT",
        "BB2SNYK_CONFIG",
        "SNYK_IMPORT_PATH",
        "SNYK_GROUP_ID",
    ] {
        known.insert(name.to_owned());
    }
    known
}

#[test]
fn every_file_parses_and_every_reference_resolves() {
    let docs = documents();
    assert!(docs.len() >= 12, "found {} documents", docs.len());
    let known = known_variables();
    // Read by KEDA, not by bb2snyk.
    let keda_only = ["RABBITMQ_MANAGEMENT_URL"];

    // KEDA scales on queues the topology declares, under the default prefix.
    let settings = bb2snyk_settings::load(&Sources::default()).expect("default settings");
    let topology = bb2snyk_service::topology(&settings);
    let work: BTreeSet<String> = bb2snyk_messages::QUEUES
        .iter()
        .map(|q| topology.work(q))
        .collect();
    // The services: the Deployments of the Kustomize base (the sandbox overlay adds the simulator's).
    let deployments: Vec<&Value> = docs
        .iter()
        .filter(|(p, v)| {
            p.parent().is_some_and(|d| d.ends_with("kubernetes/base")) && v["kind"] == "Deployment"
        })
        .map(|(_, v)| v)
        .collect();
    let names: BTreeSet<&str> = deployments
        .iter()
        .filter_map(|d| d["metadata"]["name"].as_str())
        .collect();
    let scaled = kind(&docs, "ScaledObject");
    assert_eq!(scaled.len(), 3, "one per service");
    let mut watched = BTreeSet::new();
    for object in scaled {
        let target = object["spec"]["scaleTargetRef"]["name"]
            .as_str()
            .unwrap_or("");
        assert!(names.contains(target), "{target} is not a Deployment");
        for trigger in object["spec"]["triggers"].as_array().expect("triggers") {
            let queue = trigger["metadata"]["queueName"].as_str().unwrap_or("");
            assert!(
                work.contains(queue),
                "KEDA queue {queue} is not in {work:?}"
            );
            watched.insert(queue.to_owned());
            assert_eq!(trigger["metadata"]["protocol"], "http");
            assert_eq!(trigger["metadata"]["mode"], "QueueLength");
        }
    }
    assert_eq!(watched, work, "KEDA watches every work queue");

    // Every variable the settings and Secrets set (kustomize generates them from env files and literals)
    // is one bb2snyk reads; the management URL is KEDA's alone, the sandbox broker's user its own.
    let generated = generated_variables(&docs);
    assert!(generated.len() >= 15, "{generated:?}");
    for line in &generated {
        let name = line.split('=').next().unwrap_or_default();
        assert!(
            known.contains(name) || keda_only.contains(&name),
            "{name} is not a setting"
        );
    }
    assert!(generated.iter().any(|l| l.starts_with("SNYK_GROUP_ID=")));
    assert!(
        generated
            .iter()
            .any(|l| l.starts_with("BB2SNYK__AMQP__PREFIX="))
    );

    // Deployments run our binaries, probe our endpoints, and outlast the drain on SIGTERM.
    let drain = settings.pipeline.drain.as_secs();
    assert_eq!(deployments.len(), 3);
    for deployment in &deployments {
        let pod = &deployment["spec"]["template"]["spec"];
        assert!(pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(0) > drain);
        for container in pod["containers"].as_array().expect("containers") {
            let command = container["command"][0].as_str().unwrap_or("");
            assert!(BINARIES.contains(&command), "{command}");
            assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
            assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
            assert!(container["resources"]["requests"].is_object());
            assert!(
                container["envFrom"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|s| s["secretRef"].is_object()))
            );
        }
    }
    for job in kind(&docs, "Job") {
        let command = &job["spec"]["template"]["spec"]["containers"][0]["command"];
        assert_eq!(command[0], "bb2snyk");
        assert_eq!(command[1], "topology");
    }
    // The sync CronJob asks the services for a sync of the settings' group.
    let cron = kind(&docs, "CronJob");
    assert_eq!(cron.len(), 1, "the sync");
    let pod = &cron[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(
        pod["containers"][0]["command"],
        serde_json::json!(["bb2snyk", "discover", "--sync"])
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        cron[0]["spec"]["jobTemplate"]["metadata"]["labels"]["app.kubernetes.io/component"], "sync",
        "its Jobs are found by the runbook's selector"
    );

    // Compose: our binaries, known variables, healthchecks and healthy dependencies.
    let compose = &docs
        .iter()
        .find(|(p, _)| p.ends_with("docker-compose.yml"))
        .expect("docker-compose.yml")
        .1;
    for service in ["discoverer", "org-creator", "importer"] {
        let s = &compose["services"][service];
        assert_eq!(s["command"][0], service);
        assert!(
            s["healthcheck"]["test"].is_array(),
            "{service} has a healthcheck"
        );
        assert_eq!(s["depends_on"]["rabbitmq"]["condition"], "service_healthy");
        for name in s["environment"].as_object().expect("environment").keys() {
            assert!(
                known.contains(name),
                "compose sets {name}, which is not a setting"
            );
        }
    }
    assert!(compose["services"]["importer"]["deploy"]["replicas"].as_u64() > Some(1));
    assert_eq!(compose["services"]["sandbox"]["profiles"][0], "sandbox");
    assert!(compose["services"]["rabbitmq"]["healthcheck"].is_object());
    // Nothing is published beyond this host's loopback.
    for (name, service) in compose["services"].as_object().expect("services") {
        for port in service["ports"].as_array().into_iter().flatten() {
            let port = port.as_str().unwrap_or_default();
            assert!(
                port.starts_with("127.0.0.1:"),
                "{name} publishes {port} on every interface"
            );
        }
    }
    assert!(compose["services"]["redis"]["healthcheck"].is_object());
}

#[test]
fn alerts_and_dashboards_use_metrics_that_exist() {
    let docs = documents();
    let ours = bb2snyk_telemetry::metrics::NAMES;
    let mut expressions = Vec::new();
    for (path, doc) in &docs {
        // The rules (their unit tests, beside them, hold series, not rules).
        if path.ends_with("prometheus/alerts.yaml") {
            for group in doc["groups"].as_array().expect("rule groups") {
                for rule in group["rules"].as_array().expect("rules") {
                    expressions.push(rule["expr"].as_str().expect("expr").to_owned());
                }
            }
        }
        if path.to_string_lossy().contains("grafana") {
            for panel in doc["panels"].as_array().expect("panels") {
                for target in panel["targets"].as_array().expect("targets") {
                    expressions.push(target["expr"].as_str().expect("expr").to_owned());
                }
            }
        }
    }
    assert!(expressions.len() >= 10, "{expressions:?}");
    // Every alert links its own section of the runbook, and has a unit test.
    let runbook = std::fs::read_to_string(root().join("docs/runbook.md")).expect("docs/runbook.md");
    let tests =
        std::fs::read_to_string(root().join("deploy/prometheus/alerts.test.yaml")).expect("tests");
    for (path, doc) in &docs {
        if !path.ends_with("prometheus/alerts.yaml") {
            continue;
        }
        for rule in doc["groups"][0]["rules"].as_array().expect("rules") {
            let name = rule["alert"].as_str().expect("an alert name");
            let url = rule["annotations"]["runbook_url"]
                .as_str()
                .unwrap_or_default();
            assert!(
                url.ends_with(&format!("docs/runbook.md#{}", name.to_lowercase())),
                "{name}: {url}"
            );
            assert!(
                runbook.contains(&format!("\n## {name}\n")),
                "{name} has no runbook section"
            );
            assert!(
                tests.contains(&format!("alertname: {name}\n")),
                "{name} has no test"
            );
        }
    }
    let mut alerts = 0;
    for expr in &expressions {
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if let Some(name) = word.strip_prefix("bb2snyk_") {
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(name);
                let full = format!("bb2snyk_{base}");
                assert!(
                    ours.contains(&full.as_str())
                        || ours.contains(&format!("bb2snyk_{name}").as_str()),
                    "{word} in {expr} is not a bb2snyk metric"
                );
            }
        }
        alerts += usize::from(expr.contains("rabbitmq_queue"));
    }
    assert!(
        alerts >= 2,
        "parked and consumer alerts read RabbitMQ's queue metrics"
    );
}

/// The image runs the binary its first argument names, and any other first argument as a `bb2snyk`
/// command (`docker run IMAGE discover …`, `docker compose run --rm bb2snyk status`): the entrypoint run
/// here with stand-ins for the binaries, and the Dockerfile read for what a first `docker run` needs.
#[test]
fn the_image_runs_a_binary_or_a_bb2snyk_command_as_a_non_root_user_in_a_writable_directory() {
    use std::os::unix::fs::PermissionsExt;
    let bin = std::env::temp_dir().join(bb2snyk_test_support::unique("image-bin"));
    std::fs::create_dir_all(&bin).expect("a directory");
    for name in BINARIES {
        let stub = bin.join(name);
        std::fs::write(
            &stub,
            format!("#!/bin/sh\nprintf '%s' {name}\nfor a in \"$@\"; do printf ' %s' \"$a\"; done\necho\n"),
        )
        .expect("a stand-in");
        std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let run = |args: &[&str]| {
        let out = std::process::Command::new("sh")
            .arg(root().join("deploy/image/entrypoint.sh"))
            .args(args)
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .output()
            .expect("sh runs");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(run(&["importer"]), "importer");
    assert_eq!(run(&["org-creator", "--version"]), "org-creator --version");
    assert_eq!(
        run(&["discover", "--groupId=G"]),
        "bb2snyk discover --groupId=G"
    );
    assert_eq!(run(&["bb2snyk", "status"]), "bb2snyk status");
    assert_eq!(run(&[]), "bb2snyk --help");
    let _ = std::fs::remove_dir_all(&bin);

    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    let last_stage = dockerfile.rsplit("\nFROM ").next().expect("a final stage");
    let line = |instruction: &str| {
        last_stage
            .lines()
            .rfind(|l| l.starts_with(instruction))
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(line("ENTRYPOINT"), r#"ENTRYPOINT ["bb2snyk-entrypoint"]"#);
    assert!(
        last_stage.contains("COPY deploy/image/entrypoint.sh /usr/local/bin/bb2snyk-entrypoint")
    );
    assert_eq!(line("USER"), "USER 10001");
    assert_eq!(line("WORKDIR"), "WORKDIR /work");
    assert!(
        last_stage.contains("chown 10001:10001 /work"),
        "the work directory is the user's"
    );
    assert!(line("HEALTHCHECK").starts_with("HEALTHCHECK"));
    assert!(
        dockerfile.contains("CARGO_PROFILE_RELEASE_STRIP"),
        "stripped binaries"
    );
    assert!(
        dockerfile.contains("--mount=type=cache"),
        "a dependency cache"
    );
}

/// `KEY=value` lines of every kustomize ConfigMap and Secret generator: literals, and env files (for
/// production's git-ignored credential files, their committed examples), comments aside. The sandbox
/// broker's own user (the `rabbitmq` Secret), Redis's password (`redis`) and the consumers file
/// (`bitbucket-consumers`, a file, not variables) are not settings of ours.
fn generated_variables(docs: &[(PathBuf, Value)]) -> Vec<String> {
    let mut lines = Vec::new();
    for (path, doc) in docs {
        if !path.ends_with("kustomization.yaml") {
            continue;
        }
        let dir = path.parent().expect("a directory");
        for generator in ["configMapGenerator", "secretGenerator"] {
            for g in doc[generator].as_array().into_iter().flatten() {
                if ["rabbitmq", "redis", "bitbucket-consumers"]
                    .contains(&g["name"].as_str().unwrap_or_default())
                {
                    continue;
                }
                for literal in g["literals"].as_array().into_iter().flatten() {
                    lines.push(literal.as_str().expect("KEY=value").to_owned());
                }
                for file in g["envs"].as_array().into_iter().flatten() {
                    let file = file.as_str().expect("a file name");
                    let example = dir.join(format!("{file}.example"));
                    let env = if example.exists() {
                        example
                    } else {
                        dir.join(file)
                    };
                    let text = std::fs::read_to_string(&env)
                        .unwrap_or_else(|e| panic!("{}: {e}", env.display()));
                    lines.extend(
                        text.lines()
                            .filter(|l| l.contains('=') && !l.trim_start().starts_with('#'))
                            .map(str::to_owned),
                    );
                }
            }
        }
    }
    lines
}
