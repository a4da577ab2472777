//! Events are stored once and served through both `core/v1` and `events.k8s.io/v1`.
//!
//! The mapping is the real API server's (`pkg/apis/events/v1/conversion.go`): `regarding` is
//! `involvedObject`, `note` is `message`, `deprecatedSource`/`deprecatedFirstTimestamp`/
//! `deprecatedLastTimestamp`/`deprecatedCount` are `source`/`firstTimestamp`/`lastTimestamp`/
//! `count`, and `reportingController` is serialized as `reportingComponent` in `core/v1`.
//! Fields are emitted the way Go serializes them (e.g. unset timestamps as `null`), so clients
//! see the same documents as from a real server.

use serde_json::{Map, Value};

/// Pairs of (`events.k8s.io/v1` field, `core/v1` field) that carry the same value.
const RENAMED: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
    ("reportingController", "reportingComponent"),
];

/// Fields with the same name and meaning in both versions.
const SHARED: &[&str] = &[
    "metadata",
    "eventTime",
    "series",
    "reportingInstance",
    "action",
    "reason",
    "related",
    "type",
];

/// How an absent field is rendered in one version.
#[derive(Clone, Copy)]
enum WhenAbsent {
    Omit,
    Null,
    EmptyObject,
    EmptyString,
}

fn core_absent(field: &str) -> WhenAbsent {
    match field {
        "involvedObject" | "source" => WhenAbsent::EmptyObject,
        "firstTimestamp" | "lastTimestamp" | "eventTime" => WhenAbsent::Null,
        "reportingComponent" | "reportingInstance" => WhenAbsent::EmptyString,
        _ => WhenAbsent::Omit,
    }
}

fn events_v1_absent(field: &str) -> WhenAbsent {
    match field {
        "regarding" | "deprecatedSource" => WhenAbsent::EmptyObject,
        "eventTime" | "deprecatedFirstTimestamp" | "deprecatedLastTimestamp" => WhenAbsent::Null,
        _ => WhenAbsent::Omit,
    }
}

/// Whether a value is Go's zero value for its field (and so omitted with `omitempty`).
fn is_zero(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    }
}

fn put(out: &mut Map<String, Value>, field: &str, value: Option<&Value>, absent: WhenAbsent) {
    match value.filter(|v| !is_zero(v)) {
        Some(value) => {
            out.insert(field.to_owned(), value.clone());
        }
        None => {
            let placeholder = match absent {
                WhenAbsent::Omit => return,
                WhenAbsent::Null => Value::Null,
                WhenAbsent::EmptyObject => Value::Object(Map::new()),
                WhenAbsent::EmptyString => Value::String(String::new()),
            };
            out.insert(field.to_owned(), placeholder);
        }
    }
}

/// Converts an `events.k8s.io/v1` Event to its `core/v1` form (the stored form).
pub fn events_v1_to_core(event: &Value) -> Value {
    let mut out = Map::new();
    out.insert("apiVersion".into(), Value::from("v1"));
    out.insert("kind".into(), Value::from("Event"));
    for field in SHARED {
        put(&mut out, field, event.get(*field), core_absent(field));
    }
    for (events_field, core_field) in RENAMED {
        put(
            &mut out,
            core_field,
            event.get(*events_field),
            core_absent(core_field),
        );
    }
    Value::Object(out)
}

/// Converts a stored `core/v1` Event to its `events.k8s.io/v1` form.
pub fn core_to_events_v1(event: &Value) -> Value {
    let mut out = Map::new();
    out.insert("apiVersion".into(), Value::from("events.k8s.io/v1"));
    out.insert("kind".into(), Value::from("Event"));
    for field in SHARED {
        put(&mut out, field, event.get(*field), events_v1_absent(field));
    }
    for (events_field, core_field) in RENAMED {
        put(
            &mut out,
            events_field,
            event.get(*core_field),
            events_v1_absent(events_field),
        );
    }
    Value::Object(out)
}
