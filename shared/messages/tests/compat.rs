//! Rolling upgrades: what the previous release wrote is read by this one (`samples/previous-release.jsonl`,
//! one message of each type as that release serialised it), and a field this release does not know, as a
//! later release may add, is ignored rather than parking the message.

use bb2snyk_broker::Message;
use bb2snyk_messages::Body;

fn message(json: &str) -> Message {
    let value: serde_json::Value = serde_json::from_str(json).expect("a JSON sample");
    Message {
        kind: value["type"].as_str().expect("a type").to_owned(),
        message_id: "m".into(),
        correlation_id: "r".into(),
        attempt: 0,
        body: json.as_bytes().to_vec(),
    }
}

fn samples() -> Vec<&'static str> {
    include_str!("samples/previous-release.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect()
}

#[test]
fn every_message_the_previous_release_wrote_is_read() {
    let samples = samples();
    assert_eq!(
        samples.len(),
        8,
        "one of each type the previous release had"
    );
    for json in samples {
        let body = Body::from_message(&message(json)).unwrap_or_else(|e| panic!("{json}: {e}"));
        let again = Body::from_message(&body.to_message()).expect("written again, read again");
        assert_eq!(again, body);
    }
}

#[test]
fn a_field_a_later_release_adds_is_ignored_not_parked() {
    for json in samples() {
        let mut value: serde_json::Value = serde_json::from_str(json).expect("JSON");
        value["added_by_a_later_release"] = serde_json::json!({"anything": [1, 2]});
        let later = serde_json::to_string(&value).expect("JSON");
        Body::from_message(&message(&later)).unwrap_or_else(|e| panic!("{later}: {e}"));
    }
}

#[test]
fn bounds_still_hold_whatever_else_a_message_carries() {
    let json = r#"{"type":"repo.import.v1","run_id":"r","org_id":"o","integration_id":"i",
        "target":{"owner":"acme","name":"api\u0007"},"failed_jobs":0,"extra":true}"#;
    let refused = Body::from_message(&message(json)).expect_err("a control character");
    assert!(refused.contains("control characters"), "{refused}");
}
