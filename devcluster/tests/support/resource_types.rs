//! Small builders of `ResourceType`s for discovery, OpenAPI and table tests.

use std::sync::Arc;

use devcluster::registry::{CrdVersion, ResourceType};
use devcluster::schema::Schema;
use serde_json::{json, Value};

/// A built-in resource type.
pub fn builtin(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
) -> ResourceType {
    ResourceType {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        list_kind: format!("{kind}List"),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        short_names: Vec::new(),
        categories: Vec::new(),
        namespaced,
        status_subresource: false,
        scale_subresource: None,
        verbs: [
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
        .map(String::from)
        .to_vec(),
        crd: None,
    }
}

/// The AccessKey schema's printer columns, as the keywarden CRD declares them.
pub fn access_key_printer_columns() -> Value {
    json!([
        {"name": "Owner", "type": "string", "jsonPath": ".spec.owner.name"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"},
        {"name": "Scopes", "type": "integer", "jsonPath": ".status.scopeCount", "priority": 1},
        {"name": "Expires", "type": "date", "jsonPath": ".status.expiresAt"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ])
}

/// The AccessKey resource type (`keywarden.io/v1alpha1`), served from a CRD.
pub fn access_key(version: &str) -> ResourceType {
    ResourceType {
        short_names: vec!["ak".into()],
        categories: vec!["keywarden".into()],
        status_subresource: true,
        crd: Some(Arc::new(CrdVersion {
            crd_name: "accesskeys.keywarden.io".into(),
            schema: Schema::new(json!({
                "type": "object",
                "description": "An API access key.",
                "properties": {
                    "spec": {
                        "type": "object",
                        "description": "What the key may do.",
                        "properties": {
                            "displayName": {"type": "string", "description": "Shown in consoles."},
                            "owner": {"type": "object", "properties": {"name": {"type": "string"}}},
                        },
                    },
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                },
            })),
            printer_columns: access_key_printer_columns(),
            storage: version == "v1alpha1",
            selectable_fields: vec!["spec.owner.name".into()],
        })),
        ..builtin("keywarden.io", version, "AccessKey", "accesskeys", true)
    }
}
