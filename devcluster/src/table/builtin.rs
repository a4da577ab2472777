//! Columns of the built-in kinds, as the real server's printers (`pkg/printers/internalversion`)
//! produce them. Kinds without a printer get the default `Name`/`Created At` columns.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{age, column, parse_time};

/// The column definitions and a cell renderer for one built-in kind.
pub(super) struct Printer {
    pub columns: Vec<Value>,
    pub cells: fn(&Value, DateTime<Utc>) -> Vec<Value>,
}

fn name(obj: &Value) -> Value {
    json!(text(obj, "/metadata/name"))
}

fn text(obj: &Value, pointer: &str) -> String {
    obj.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn count(obj: &Value, pointer: &str) -> usize {
    match obj.pointer(pointer) {
        Some(Value::Object(map)) => map.len(),
        Some(Value::Array(items)) => items.len(),
        _ => 0,
    }
}

fn created_age(obj: &Value, now: DateTime<Utc>) -> Value {
    json!(age(obj.pointer("/metadata/creationTimestamp"), now))
}

fn name_column() -> Value {
    column("Name", "string", "name", 0)
}

fn age_column() -> Value {
    column("Age", "string", "", 0)
}

/// The printer for `kind` in `group`.
pub(super) fn printer(group: &str, kind: &str) -> Printer {
    match (group, kind) {
        ("", "Namespace") => Printer {
            columns: vec![
                name_column(),
                column("Status", "string", "", 0),
                age_column(),
            ],
            cells: |obj, now| {
                vec![
                    name(obj),
                    json!(text(obj, "/status/phase")),
                    created_age(obj, now),
                ]
            },
        },
        ("", "Secret") => Printer {
            columns: vec![
                name_column(),
                column("Type", "string", "", 0),
                column("Data", "string", "", 0),
                age_column(),
            ],
            cells: |obj, now| {
                let data = count(obj, "/data") + count(obj, "/stringData");
                vec![
                    name(obj),
                    json!(text(obj, "/type")),
                    json!(data),
                    created_age(obj, now),
                ]
            },
        },
        ("", "ConfigMap") => Printer {
            columns: vec![name_column(), column("Data", "string", "", 0), age_column()],
            cells: |obj, now| {
                let data = count(obj, "/data") + count(obj, "/binaryData");
                vec![name(obj), json!(data), created_age(obj, now)]
            },
        },
        ("", "ServiceAccount") => Printer {
            columns: vec![
                name_column(),
                column("Secrets", "string", "", 0),
                age_column(),
            ],
            cells: |obj, now| {
                vec![
                    name(obj),
                    json!(count(obj, "/secrets")),
                    created_age(obj, now),
                ]
            },
        },
        ("", "Service") => Printer {
            columns: vec![
                name_column(),
                column("Type", "string", "", 0),
                column("Cluster-IP", "string", "", 0),
                column("External-IP", "string", "", 0),
                column("Port(s)", "string", "", 0),
                age_column(),
                column("Selector", "string", "", 1),
            ],
            cells: service_cells,
        },
        ("apps", "Deployment") => Printer {
            columns: vec![
                name_column(),
                column("Ready", "string", "", 0),
                column("Up-to-date", "string", "", 0),
                column("Available", "string", "", 0),
                age_column(),
                column("Containers", "string", "", 1),
                column("Images", "string", "", 1),
                column("Selector", "string", "", 1),
            ],
            cells: deployment_cells,
        },
        ("apps", "StatefulSet") => Printer {
            columns: vec![
                name_column(),
                column("Ready", "string", "", 0),
                age_column(),
                column("Containers", "string", "", 1),
                column("Images", "string", "", 1),
            ],
            cells: stateful_set_cells,
        },
        ("apps", "DaemonSet") => Printer {
            columns: vec![
                name_column(),
                column("Desired", "integer", "", 0),
                column("Current", "integer", "", 0),
                column("Ready", "integer", "", 0),
                column("Up-to-date", "integer", "", 0),
                column("Available", "integer", "", 0),
                column("Node Selector", "string", "", 0),
                age_column(),
                column("Containers", "string", "", 1),
                column("Images", "string", "", 1),
                column("Selector", "string", "", 1),
            ],
            cells: daemon_set_cells,
        },
        ("", "Event") => Printer {
            columns: vec![
                column("Last Seen", "string", "", 0),
                column("Type", "string", "", 0),
                column("Reason", "string", "", 0),
                column("Object", "string", "", 0),
                column("Subobject", "string", "", 1),
                column("Source", "string", "", 1),
                column("Message", "string", "", 0),
                column("First Seen", "string", "", 1),
                column("Count", "string", "", 1),
                column("Name", "string", "name", 1),
            ],
            cells: event_cells,
        },
        ("coordination.k8s.io", "Lease") => Printer {
            columns: vec![
                name_column(),
                column("Holder", "string", "", 0),
                age_column(),
            ],
            cells: |obj, now| {
                vec![
                    name(obj),
                    json!(text(obj, "/spec/holderIdentity")),
                    created_age(obj, now),
                ]
            },
        },
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => Printer {
            columns: vec![
                name_column(),
                column("Role", "string", "", 0),
                age_column(),
                column("Users", "string", "", 1),
                column("Groups", "string", "", 1),
                column("ServiceAccounts", "string", "", 1),
            ],
            cells: binding_cells,
        },
        ("", "Pod") => Printer {
            columns: vec![
                name_column(),
                column("Ready", "string", "", 0),
                column("Status", "string", "", 0),
                column("Restarts", "string", "", 0),
                age_column(),
                column("IP", "string", "", 1),
                column("Node", "string", "", 1),
                column("Nominated Node", "string", "", 1),
                column("Readiness Gates", "string", "", 1),
            ],
            cells: super::cluster_kinds::pod_cells,
        },
        ("certificates.k8s.io", "CertificateSigningRequest") => Printer {
            columns: vec![
                name_column(),
                age_column(),
                column("SignerName", "string", "", 0),
                column("Requestor", "string", "", 0),
                column("RequestedDuration", "string", "", 0),
                column("Condition", "string", "", 0),
            ],
            cells: super::cluster_kinds::csr_cells,
        },
        ("apiregistration.k8s.io", "APIService") => Printer {
            columns: vec![
                name_column(),
                column("Service", "string", "", 0),
                column("Available", "string", "", 0),
                age_column(),
            ],
            cells: super::cluster_kinds::api_service_cells,
        },
        _ => Printer {
            columns: vec![name_column(), column("Created At", "date", "", 0)],
            cells: |obj, _| {
                let created = parse_time(obj.pointer("/metadata/creationTimestamp"))
                    .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                    .unwrap_or_default();
                vec![name(obj), json!(created)]
            },
        },
    }
}

fn none_if_empty(s: String) -> String {
    if s.is_empty() {
        "<none>".to_owned()
    } else {
        s
    }
}

fn service_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let service_type = obj
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    let external = match obj.pointer("/spec/externalIPs").and_then(Value::as_array) {
        Some(ips) if !ips.is_empty() => ips
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
        _ if service_type == "LoadBalancer" => "<pending>".to_owned(),
        _ if service_type == "ExternalName" => text(obj, "/spec/externalName"),
        _ => "<none>".to_owned(),
    };
    let ports = obj
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ports| {
            ports
                .iter()
                .map(|port| {
                    let number = port.get("port").and_then(Value::as_i64).unwrap_or(0);
                    let protocol = port
                        .get("protocol")
                        .and_then(Value::as_str)
                        .unwrap_or("TCP");
                    match port.get("nodePort").and_then(Value::as_i64) {
                        Some(node_port) => format!("{number}:{node_port}/{protocol}"),
                        None => format!("{number}/{protocol}"),
                    }
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    vec![
        name(obj),
        json!(service_type),
        json!(none_if_empty(text(obj, "/spec/clusterIP"))),
        json!(external),
        json!(none_if_empty(ports)),
        created_age(obj, now),
        json!(none_if_empty(selector_text(obj.pointer("/spec/selector")))),
    ]
}

fn selector_text(selector: Option<&Value>) -> String {
    selector
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// The pod template's containers' `field`s, comma-separated, as kubectl's wide columns show them.
fn template_containers(obj: &Value, field: &str) -> String {
    obj.pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .map(|containers| {
            containers
                .iter()
                .filter_map(|c| c.get(field).and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn stateful_set_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let desired = obj
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let ready = obj
        .pointer("/status/readyReplicas")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    vec![
        name(obj),
        json!(format!("{ready}/{desired}")),
        created_age(obj, now),
        json!(template_containers(obj, "name")),
        json!(template_containers(obj, "image")),
    ]
}

fn daemon_set_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let number = |pointer: &str| obj.pointer(pointer).and_then(Value::as_i64).unwrap_or(0);
    vec![
        name(obj),
        json!(number("/status/desiredNumberScheduled")),
        json!(number("/status/currentNumberScheduled")),
        json!(number("/status/numberReady")),
        json!(number("/status/updatedNumberScheduled")),
        json!(number("/status/numberAvailable")),
        json!(none_if_empty(selector_text(
            obj.pointer("/spec/template/spec/nodeSelector")
        ))),
        created_age(obj, now),
        json!(template_containers(obj, "name")),
        json!(template_containers(obj, "image")),
        json!(none_if_empty(selector_text(
            obj.pointer("/spec/selector/matchLabels")
        ))),
    ]
}

fn deployment_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let number = |pointer: &str| obj.pointer(pointer).and_then(Value::as_i64).unwrap_or(0);
    let desired = obj
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let containers = obj
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let join = |field: &str| {
        containers
            .iter()
            .filter_map(|c| c.get(field).and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(",")
    };
    vec![
        name(obj),
        json!(format!("{}/{desired}", number("/status/readyReplicas"))),
        json!(number("/status/updatedReplicas")),
        json!(number("/status/availableReplicas")),
        created_age(obj, now),
        json!(join("name")),
        json!(join("image")),
        json!(none_if_empty(selector_text(
            obj.pointer("/spec/selector/matchLabels")
        ))),
    ]
}

fn event_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let since = |pointer: &str| {
        obj.pointer(pointer)
            .filter(|v| !v.is_null())
            .map(|v| age(Some(v), now))
    };
    let first_seen = since("/firstTimestamp")
        .or_else(|| since("/eventTime"))
        .unwrap_or_else(|| "<unknown>".to_owned());
    let mut last_seen = since("/lastTimestamp").unwrap_or_else(|| first_seen.clone());
    let mut count = obj.pointer("/count").and_then(Value::as_i64).unwrap_or(0);
    if obj.get("series").is_some_and(|s| !s.is_null()) {
        last_seen = since("/series/lastObservedTime").unwrap_or_else(|| "<unknown>".to_owned());
        count = obj
            .pointer("/series/count")
            .and_then(Value::as_i64)
            .unwrap_or(0);
    } else if count == 0 {
        // why: singleton events written through events.k8s.io/v1 carry no count.
        count = 1;
    }
    let kind = text(obj, "/involvedObject/kind").to_lowercase();
    let involved_name = text(obj, "/involvedObject/name");
    let target = if involved_name.is_empty() {
        kind
    } else {
        format!("{kind}/{involved_name}")
    };
    let component = text(obj, "/source/component");
    let component = if component.is_empty() {
        text(obj, "/reportingComponent")
    } else {
        component
    };
    let host = text(obj, "/source/host");
    let source = if host.is_empty() {
        component
    } else {
        format!("{component}, {host}")
    };
    vec![
        json!(last_seen),
        json!(text(obj, "/type")),
        json!(text(obj, "/reason")),
        json!(target),
        json!(text(obj, "/involvedObject/fieldPath")),
        json!(source),
        json!(text(obj, "/message").trim()),
        json!(first_seen),
        json!(count),
        name(obj),
    ]
}

fn binding_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let subjects = obj
        .pointer("/subjects")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let of_kind = |kind: &str| {
        subjects
            .iter()
            .filter(|s| s.get("kind").and_then(Value::as_str) == Some(kind))
            .map(|s| {
                let name = s.get("name").and_then(Value::as_str).unwrap_or_default();
                match s.get("namespace").and_then(Value::as_str) {
                    Some(ns) if kind == "ServiceAccount" => format!("{ns}/{name}"),
                    _ => name.to_owned(),
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    vec![
        name(obj),
        json!(format!(
            "{}/{}",
            text(obj, "/roleRef/kind"),
            text(obj, "/roleRef/name")
        )),
        created_age(obj, now),
        json!(of_kind("User")),
        json!(of_kind("Group")),
        json!(of_kind("ServiceAccount")),
    ]
}
