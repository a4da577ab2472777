//! Table cells of the kinds every cluster serves from the start (Pods, CertificateSigningRequests,
//! APIServices), as kube-apiserver's printers render them.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{age, human_duration};

fn text<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".to_owned()
    } else {
        s.to_owned()
    }
}

fn items<'a>(obj: &'a Value, pointer: &str) -> &'a [Value] {
    obj.pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// Name, Ready, Status, Restarts, Age; wide: IP, Node, Nominated Node, Readiness Gates.
pub(super) fn pod_cells(pod: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let statuses = items(pod, "/status/containerStatuses");
    let ready = statuses.iter().filter(|s| s["ready"] == true).count();
    let restarts: i64 = statuses
        .iter()
        .filter_map(|s| s["restartCount"].as_i64())
        .sum();
    let mut reason = match text(pod, "/status/reason") {
        "" => text(pod, "/status/phase"),
        reason => reason,
    };
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        reason = "Terminating";
    }
    let gates = items(pod, "/spec/readinessGates").len();
    vec![
        json!(text(pod, "/metadata/name")),
        json!(format!("{ready}/{}", items(pod, "/spec/containers").len())),
        json!(reason),
        json!(restarts.to_string()),
        json!(age(pod.pointer("/metadata/creationTimestamp"), now)),
        json!(or_none(text(pod, "/status/podIP"))),
        json!(or_none(text(pod, "/spec/nodeName"))),
        json!(or_none(text(pod, "/status/nominatedNodeName"))),
        json!(if gates == 0 {
            "<none>".to_owned()
        } else {
            format!("0/{gates}")
        }),
    ]
}

/// `extractCSRStatus`: Denied over Approved over Pending, then `,Failed` and `,Issued`.
fn csr_condition(csr: &Value) -> String {
    let has = |kind: &str| {
        items(csr, "/status/conditions")
            .iter()
            .any(|c| c["type"] == kind)
    };
    let mut condition = if has("Denied") {
        "Denied".to_owned()
    } else if has("Approved") {
        "Approved".to_owned()
    } else {
        "Pending".to_owned()
    };
    if has("Failed") {
        condition.push_str(",Failed");
    }
    if !text(csr, "/status/certificate").is_empty() {
        condition.push_str(",Issued");
    }
    condition
}

/// Name, Age, SignerName, Requestor, RequestedDuration, Condition.
pub(super) fn csr_cells(csr: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let duration = csr
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        .map(|seconds| human_duration(chrono::Duration::seconds(seconds)))
        .unwrap_or_else(|| "<none>".to_owned());
    vec![
        json!(text(csr, "/metadata/name")),
        json!(age(csr.pointer("/metadata/creationTimestamp"), now)),
        json!(text(csr, "/spec/signerName")),
        json!(text(csr, "/spec/username")),
        json!(duration),
        json!(csr_condition(csr)),
    ]
}

/// Name, Service (`Local` or namespace/name), Available, Age.
pub(super) fn api_service_cells(service: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let backend = match service.pointer("/spec/service").filter(|s| !s.is_null()) {
        Some(backend) => format!("{}/{}", text(backend, "/namespace"), text(backend, "/name")),
        None => "Local".to_owned(),
    };
    let available = items(service, "/status/conditions")
        .iter()
        .find(|c| c["type"] == "Available")
        .map(|c| match (text(c, "/status"), text(c, "/reason")) {
            ("True", _) | (_, "") => text(c, "/status").to_owned(),
            (status, reason) => format!("{status} ({reason})"),
        })
        .unwrap_or_else(|| "Unknown".to_owned());
    vec![
        json!(text(service, "/metadata/name")),
        json!(backend),
        json!(available),
        json!(age(service.pointer("/metadata/creationTimestamp"), now)),
    ]
}
