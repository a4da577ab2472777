//! Conversion between `events.k8s.io/v1` and `core/v1` Events.

use devcluster::events::{core_to_events_v1, events_v1_to_core};
use serde_json::{json, Value};

fn recorder_event() -> Value {
    json!({
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": "web.17a", "namespace": "team-a"},
        "eventTime": "2026-11-23T10:00:00.000000Z",
        "series": {"count": 3, "lastObservedTime": "2026-11-23T10:05:00.000000Z"},
        "reportingController": "keywarden.io/controller",
        "reportingInstance": "keywarden-0",
        "action": "Issue",
        "reason": "Issued",
        "regarding": {"apiVersion": "keywarden.io/v1alpha1", "kind": "AccessKey", "name": "web", "namespace": "team-a", "uid": "u-1"},
        "note": "issued access key AKW123",
        "type": "Normal",
    })
}

#[test]
fn events_v1_maps_onto_core_field_names() {
    let core = events_v1_to_core(&recorder_event());
    assert_eq!(core["apiVersion"], "v1");
    assert_eq!(core["kind"], "Event");
    assert_eq!(core["involvedObject"]["name"], "web");
    assert_eq!(core["involvedObject"]["kind"], "AccessKey");
    assert_eq!(core["message"], "issued access key AKW123");
    assert_eq!(core["reportingComponent"], "keywarden.io/controller");
    assert_eq!(core["reportingInstance"], "keywarden-0");
    assert_eq!(core["series"]["count"], 3);
    assert_eq!(core["eventTime"], "2026-11-23T10:00:00.000000Z");
    assert_eq!(core["reason"], "Issued");
    assert_eq!(core["action"], "Issue");
    assert_eq!(core["metadata"]["namespace"], "team-a");
    assert!(core.get("regarding").is_none() && core.get("note").is_none());
}

#[test]
fn unset_core_fields_serialize_like_the_go_types() {
    let core = events_v1_to_core(&recorder_event());
    assert_eq!(core["source"], json!({}));
    assert_eq!(core["firstTimestamp"], Value::Null);
    assert_eq!(core["lastTimestamp"], Value::Null);
    assert!(core.get("count").is_none(), "zero count is omitted: {core}");
}

#[test]
fn core_event_maps_onto_deprecated_fields() {
    let core = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "web.1", "namespace": "team-a"},
        "involvedObject": {"kind": "AccessKey", "name": "web"},
        "message": "rotated",
        "reason": "Rotated",
        "source": {"component": "keywarden"},
        "firstTimestamp": "2026-11-23T10:00:00Z",
        "lastTimestamp": "2026-11-23T10:01:00Z",
        "count": 2,
        "type": "Normal",
        "eventTime": null,
        "reportingComponent": "",
        "reportingInstance": "",
    });
    let events = core_to_events_v1(&core);
    assert_eq!(events["apiVersion"], "events.k8s.io/v1");
    assert_eq!(events["regarding"]["name"], "web");
    assert_eq!(events["note"], "rotated");
    assert_eq!(events["deprecatedSource"]["component"], "keywarden");
    assert_eq!(events["deprecatedFirstTimestamp"], "2026-11-23T10:00:00Z");
    assert_eq!(events["deprecatedLastTimestamp"], "2026-11-23T10:01:00Z");
    assert_eq!(events["deprecatedCount"], 2);
    assert_eq!(events["eventTime"], Value::Null);
    assert!(events.get("reportingController").is_none());
    assert!(events.get("involvedObject").is_none() && events.get("message").is_none());
}

#[test]
fn round_trip_through_core_preserves_an_events_v1_event() {
    let original = recorder_event();
    let round_tripped = core_to_events_v1(&events_v1_to_core(&original));
    for field in [
        "metadata",
        "eventTime",
        "series",
        "reportingController",
        "reportingInstance",
        "action",
        "reason",
        "regarding",
        "note",
        "type",
    ] {
        assert_eq!(round_tripped[field], original[field], "field {field}");
    }
}

#[test]
fn converted_events_deserialize_as_typed_k8s_openapi_events() {
    let core: k8s_openapi::api::core::v1::Event =
        serde_json::from_value(events_v1_to_core(&recorder_event())).expect("core/v1 Event");
    assert_eq!(core.involved_object.name.as_deref(), Some("web"));
    assert_eq!(
        core.reporting_component.as_deref(),
        Some("keywarden.io/controller")
    );
    let events: k8s_openapi::api::events::v1::Event = serde_json::from_value(core_to_events_v1(
        &serde_json::to_value(&core).expect("json"),
    ))
    .expect("events.k8s.io/v1 Event");
    assert_eq!(events.note.as_deref(), Some("issued access key AKW123"));
    assert_eq!(
        events.regarding.and_then(|r| r.kind).as_deref(),
        Some("AccessKey")
    );
}
