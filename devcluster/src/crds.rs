//! Serving CustomResourceDefinitions: the resource types a CRD declares and its status.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::builtin::VERBS;
use crate::registry::{CrdVersion, ResourceType};
use crate::schema::Schema;

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The resource types served for each served version of `crd`.
pub fn crd_types(crd: &Value) -> Vec<ResourceType> {
    let crd_name = str_at(crd, "/metadata/name");
    let group = str_at(crd, "/spec/group");
    let kind = str_at(crd, "/spec/names/kind");
    let plural = str_at(crd, "/spec/names/plural");
    let singular = match str_at(crd, "/spec/names/singular") {
        "" => kind.to_lowercase(),
        singular => singular.to_string(),
    };
    let list_kind = match str_at(crd, "/spec/names/listKind") {
        "" => format!("{kind}List"),
        list_kind => list_kind.to_string(),
    };
    let namespaced = str_at(crd, "/spec/scope") != "Cluster";
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    versions
        .iter()
        .filter(|version| {
            version
                .get("served")
                .and_then(Value::as_bool)
                .unwrap_or(true)
        })
        .map(|version| ResourceType {
            group: group.to_string(),
            version: str_at(version, "/name").to_string(),
            kind: kind.to_string(),
            list_kind: list_kind.clone(),
            plural: plural.to_string(),
            singular: singular.clone(),
            short_names: strings(crd.pointer("/spec/names/shortNames")),
            categories: strings(crd.pointer("/spec/names/categories")),
            namespaced,
            status_subresource: version.pointer("/subresources/status").is_some(),
            scale_subresource: version.pointer("/subresources/scale").cloned(),
            verbs: VERBS.iter().map(|v| v.to_string()).collect(),
            crd: Some(Arc::new(CrdVersion {
                crd_name: crd_name.to_string(),
                schema: Schema::new(
                    version
                        .pointer("/schema/openAPIV3Schema")
                        .cloned()
                        .unwrap_or(Value::Null),
                ),
                printer_columns: version
                    .get("additionalPrinterColumns")
                    .cloned()
                    .unwrap_or_else(|| json!([])),
                storage: version
                    .get("storage")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                selectable_fields: version
                    .get("selectableFields")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|field| field.get("jsonPath").and_then(Value::as_str))
                    .map(|path| path.trim_start_matches('.').to_owned())
                    .collect(),
            })),
        })
        .collect()
}

/// The status the API server gives an accepted CRD: `NamesAccepted` and `Established`.
pub fn established_status(crd: &Value, now: &str) -> Value {
    let condition = |type_: &str, reason: &str, message: &str| {
        json!({
            "type": type_,
            "status": "True",
            "lastTransitionTime": now,
            "reason": reason,
            "message": message,
        })
    };
    let stored: Vec<Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|versions| {
            versions
                .iter()
                .filter(|v| v.get("storage").and_then(Value::as_bool).unwrap_or(false))
                .filter_map(|v| v.get("name").cloned())
                .collect()
        })
        .unwrap_or_default();
    let mut accepted = crd
        .pointer("/spec/names")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if accepted.get("singular").is_none() {
        accepted["singular"] = json!(str_at(crd, "/spec/names/kind").to_lowercase());
    }
    if accepted.get("listKind").is_none() {
        accepted["listKind"] = json!(format!("{}List", str_at(crd, "/spec/names/kind")));
    }
    json!({
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "acceptedNames": accepted,
        "storedVersions": stored,
    })
}
