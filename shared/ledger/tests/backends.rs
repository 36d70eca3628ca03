//! The ledger on real Redis, under a prefix of its own, and on the in-process store: the same behaviour.

use bb2snyk_ledger::{Ledger, LedgerError, OrgMapping, Record, State, Tally};
use bb2snyk_store::Store;
use bb2snyk_test_support::{redis_url, unique};

#[tokio::test]
async fn on_redis_records_move_between_states_and_counts_stay_exact() {
    let store = Store::connect(&redis_url(), &format!("{}:", unique("ledger")))
        .await
        .expect("Redis");
    records_move_between_states_and_counts_stay_exact(Ledger::new(store)).await;
}

#[tokio::test]
async fn in_process_records_move_between_states_and_counts_stay_exact() {
    records_move_between_states_and_counts_stay_exact(Ledger::new(Store::memory())).await;
}

async fn records_move_between_states_and_counts_stay_exact(ledger: Ledger) {
    assert_eq!(
        ledger.target("o:i:api:acme:main").await.expect("read"),
        None
    );
    let mut record = Record {
        job_url: Some("http://snyk/job/1".into()),
        ..Record::new(State::Requested, "run-1")
    };
    for _ in 0..3 {
        // Redelivered three times: still one target.
        ledger
            .record("o:i:api:acme:main", &record)
            .await
            .expect("write");
    }
    record.state = State::Imported;
    record.projects = vec!["p1".into(), "p2".into()];
    ledger
        .record("o:i:api:acme:main", &record)
        .await
        .expect("write");
    ledger
        .mark("run-1", Tally::Discovered, "acme/api")
        .await
        .expect("mark");
    ledger
        .mark("run-1", Tally::Discovered, "acme/api")
        .await
        .expect("mark");
    assert_eq!(
        ledger.target("o:i:api:acme:main").await.expect("read"),
        Some(record)
    );
    let counts = ledger.counts("run-1").await.expect("counts");
    assert_eq!(counts.imported, 1);
    assert_eq!(counts.requested, 0);
    assert_eq!(counts.discovered, 1);

    let mapping = OrgMapping {
        org_id: "o".into(),
        integration_id: "i".into(),
        name: "Acme".into(),
    };
    ledger.set_org("g", "acme", &mapping).await.expect("write");
    assert_eq!(ledger.org("g", "acme").await.expect("read"), Some(mapping));
    assert_eq!(ledger.org("g", "globex").await.expect("read"), None);

    // A record that does not parse is reported, never taken for absent (which would import again).
    ledger
        .store()
        .set("target:o:i:web:acme", b"{not json", None)
        .await
        .expect("write");
    let corrupt = ledger.target("o:i:web:acme").await.expect_err("corrupt");
    assert!(matches!(corrupt, LedgerError::Corrupt { .. }));
    assert!(!corrupt.is_transient());
    assert!(
        corrupt
            .to_string()
            .contains("target:o:i:web:acme is corrupt"),
        "{corrupt}"
    );
}

/// A run's sets go away on their own: every `run:<run>:*` key Redis holds has an expiry, renewed by each
/// write to the run.
#[tokio::test]
async fn on_redis_a_run_s_sets_expire_after_its_last_write() {
    let kept = std::time::Duration::from_secs(3600);
    let store = Store::connect(&redis_url(), &format!("{}:", unique("ledger-ttl")))
        .await
        .expect("Redis");
    let ledger = Ledger::new(store).keeping_runs(kept);
    ledger
        .mark("run-1", Tally::Discovered, "acme/api")
        .await
        .expect("mark");
    ledger
        .record("o:i:api:acme:main", &Record::new(State::Requested, "run-1"))
        .await
        .expect("write");
    ledger
        .record("o:i:api:acme:main", &Record::new(State::Imported, "run-1"))
        .await
        .expect("write");
    for set in ["run:run-1:discovered", "run:run-1:imported"] {
        let ttl = ledger.store().ttl(set).await.expect("ttl");
        assert!(
            ttl.is_some_and(|t| t > kept - std::time::Duration::from_secs(60) && t <= kept),
            "{set}: {ttl:?}"
        );
    }
}
