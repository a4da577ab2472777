//! Events are stored once and served through both `core/v1` and `events.k8s.io/v1`.

use serde_json::Value;

/// Converts an `events.k8s.io/v1` Event to its `core/v1` form (the stored form).
pub fn events_v1_to_core(_event: &Value) -> Value {
    todo!("events_v1_to_core")
}

/// Converts a stored `core/v1` Event to its `events.k8s.io/v1` form.
pub fn core_to_events_v1(_event: &Value) -> Value {
    todo!("core_to_events_v1")
}
