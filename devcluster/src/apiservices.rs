//! apiregistration.k8s.io/v1 APIServices for every served group-version, as kube-apiserver's
//! autoregister controller keeps them: built-in ones from the start, CRD ones as CRDs come and go,
//! all local and `Available`.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::registry::Registry;
use crate::store::{storage_key, State, WriteContext};

pub const GROUP: &str = "apiregistration.k8s.io";
/// The label kube-apiserver puts on the APIServices it manages.
const AUTOMANAGED: &str = "kube-aggregator.kubernetes.io/automanaged";
/// `groupPriorityMinimum` and `versionPriority` of every CRD group-version.
const CRD_PRIORITY: (i64, i64) = (1000, 100);
/// Where apiregistration.k8s.io itself sorts in discovery: before everything else.
const APIREGISTRATION_PRIORITY: i64 = 20001;

/// kube-apiserver's built-in (groupPriorityMinimum, versionPriority) for the group-versions
/// devcluster serves (`DefaultGenericAPIServicePriorities` plus kube-apiserver's own).
const PRIORITIES: &[(&str, &str, i64, i64)] = &[
    ("", "v1", 18000, 1),
    ("apps", "v1", 17800, 15),
    ("events.k8s.io", "v1", 17750, 15),
    ("authentication.k8s.io", "v1", 17700, 15),
    ("authorization.k8s.io", "v1", 17600, 15),
    ("certificates.k8s.io", "v1", 17300, 15),
    ("policy", "v1", 17100, 15),
    ("rbac.authorization.k8s.io", "v1", 17000, 15),
    ("apiextensions.k8s.io", "v1", 16700, 15),
    ("admissionregistration.k8s.io", "v1", 16700, 15),
    ("coordination.k8s.io", "v1", 16500, 15),
];

/// (groupPriorityMinimum, versionPriority) of a served group-version; CRD ones get 1000/100.
pub fn priority(group: &str, version: &str) -> (i64, i64) {
    if group == GROUP {
        return (APIREGISTRATION_PRIORITY, 15);
    }
    PRIORITIES
        .iter()
        .find(|(g, v, _, _)| *g == group && *v == version)
        .map(|&(_, _, group_priority, version_priority)| (group_priority, version_priority))
        .unwrap_or(CRD_PRIORITY)
}

/// The APIService kube-apiserver registers for one served group-version.
fn api_service(group: &str, version: &str, from_crd: bool, now: &str) -> Value {
    let (group_priority, version_priority) = priority(group, version);
    let mut spec = json!({
        "version": version,
        "groupPriorityMinimum": group_priority,
        "versionPriority": version_priority,
    });
    if !group.is_empty() {
        spec["group"] = json!(group);
    }
    json!({
        "apiVersion": format!("{GROUP}/v1"),
        "kind": "APIService",
        "metadata": {
            "name": format!("{version}.{group}"),
            "labels": { AUTOMANAGED: if from_crd { "true" } else { "onstart" } },
        },
        "spec": spec,
        "status": {
            "conditions": [{
                "type": "Available",
                "status": "True",
                "lastTransitionTime": now,
                "reason": "Local",
                "message": "Local APIServices are always available",
            }],
        },
    })
}

/// Whether devcluster registered this APIService (rather than a user).
fn is_automanaged(service: &Value) -> bool {
    service
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .is_some_and(|labels| labels.contains_key(AUTOMANAGED))
}

/// Creates the APIServices of newly served group-versions and removes those no longer served.
pub(crate) fn sync(state: &mut State, registry: &Registry) {
    let served = registry.snapshot();
    let Some(rt) = served.find(GROUP, "v1", "apiservices") else {
        return;
    };
    let key = storage_key(rt);
    let wanted: BTreeSet<(String, String, bool)> = served
        .types
        .iter()
        .filter(|t| t.group != GROUP)
        .map(|t| (t.group.clone(), t.version.clone(), t.crd.is_some()))
        .collect();
    let wanted_names: BTreeSet<String> = wanted
        .iter()
        .map(|(group, version, _)| format!("{version}.{group}"))
        .collect();
    let stale: Vec<String> = state
        .objects(&key, None)
        .filter(|(_, obj)| is_automanaged(obj))
        .map(|((_, name), _)| name.clone())
        .filter(|name| !wanted_names.contains(name))
        .collect();
    for name in stale {
        state.system_remove(&key, "", &name);
    }
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let ctx = WriteContext {
        manager: "kube-apiserver".into(),
        now: now.clone(),
        managed_fields_done: true,
        ..WriteContext::default()
    };
    for (group, version, from_crd) in wanted {
        let name = format!("{version}.{group}");
        if state.get(&key, "", &name).is_some() {
            continue;
        }
        let service = api_service(&group, &version, from_crd, &now);
        let status = service["status"].clone();
        match state.create(rt, &key, "", service, &ctx) {
            Ok(created) => {
                // why: create drops status (APIServices have a status subresource).
                let mut available = (*created).clone();
                available["status"] = status;
                state.system_replace(&key, "", available);
            }
            Err(err) => tracing::warn!(%err, name, "registering an APIService"),
        }
    }
}
