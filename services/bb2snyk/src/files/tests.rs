use super::*;

#[test]
fn no_id_names_a_log_outside_its_folder() {
    let dir = Path::new("/logs");
    for hostile in ["../x.import-jobs.log", "/etc/passwd", "a/../../b", "..", ""] {
        let log = Log::new(dir, hostile);
        assert_eq!(
            log.path.parent(),
            Some(dir),
            "{hostile:?} gave {:?}",
            log.path
        );
        let name = log.path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        assert!(!name.starts_with('.') && !name.is_empty(), "{name:?}");
    }
    assert_eq!(
        Log::new(dir, "o-1.import-jobs.log").path,
        dir.join("o-1.import-jobs.log")
    );
}

#[test]
fn appending_to_snyk_api_import_s_log_keeps_every_record_whole() {
    let dir = std::env::temp_dir().join(format!("bb2snyk-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a folder");
    let path = dir.join("g.created-orgs.log");
    // Two records as snyk-api-import's bunyan writes them, the file ending without a newline.
    let theirs = r#"{"name":"snyk:create-orgs","hostname":"ci","pid":7,"level":30,"origName":"North Payments","msg":"Created org","time":"2025-12-01T10:00:00.000Z","v":0}"#;
    std::fs::write(&path, format!("{theirs}\n{theirs}")).expect("write");
    let mut log = Log::new(&dir, "g.created-orgs.log");
    log.append(
        INFO,
        "Created org",
        serde_json::json!({"name": "North Payments", "id": "o1"}),
    )
    .expect("append");
    log.append(
        INFO,
        "Created org",
        serde_json::json!({"name": "Globex", "id": "o2"}),
    )
    .expect("append");
    let text = std::fs::read_to_string(&path).expect("read");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert_eq!(
        lines.len(),
        4,
        "two of theirs, two of ours, none glued together"
    );
    assert_eq!(
        lines[2]["name"], "North Payments",
        "the record keeps its own name"
    );
    assert_eq!(lines[3]["id"], "o2");
    for ours in &lines[2..] {
        assert!(
            ours["hostname"].is_string() && ours["pid"].is_u64(),
            "{ours}"
        );
        assert_eq!(
            (ours["level"].as_u64(), ours["v"].as_u64()),
            (Some(30), Some(0))
        );
        assert!(ours["time"].is_string() && ours["msg"] == "Created org");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn target_ids_match_snyk_api_import() {
    let target = Target {
        owner: "acme".parse().expect("an id"),
        name: "api".parse().expect("an id"),
        branch: Some("main".parse().expect("an id")),
    };
    assert_eq!(target_id("o", "i", &target), "o:i:api:acme:main");
    let no_branch = Target {
        branch: None,
        ..target
    };
    assert_eq!(target_id("o", "i", &no_branch), "o:i:api:acme");
}

#[test]
fn dates_are_rfc3339() {
    assert_eq!(now().len(), "2026-11-23T12:00:00.000Z".len());
}
