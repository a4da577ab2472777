//! Aggregated discovery (`apidiscovery.k8s.io/v2` `APIGroupDiscoveryList`): every group, version
//! and resource in one document, which kubectl and kube-rs fetch from `/api` and `/apis` instead
//! of one request per group-version.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{compare_versions, subresources, Subresource};
use crate::apiservices::priority;
use crate::registry::ResourceType;

/// The `Content-Type` of an aggregated discovery answer.
pub const CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// The quoted ETag of a serialized document: a hash of its bytes, like kube-apiserver's (which
/// uses SHA-512; clients only compare it).
pub fn etag(body: &[u8]) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut hasher);
    format!("\"{:016X}\"", hasher.finish())
}

fn response_kind(group: &str, version: &str, kind: &str) -> Value {
    json!({ "group": group, "version": version, "kind": kind })
}

fn subresource_entry(sub: &Subresource) -> Value {
    json!({
        "subresource": sub.name,
        "responseKind": response_kind(&sub.group, &sub.version, &sub.kind),
        "verbs": sub.verbs,
    })
}

fn resource_entry(rt: &ResourceType) -> Value {
    let mut entry = json!({
        "resource": rt.plural,
        "responseKind": response_kind(&rt.group, &rt.version, &rt.kind),
        "scope": if rt.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": rt.singular,
        "verbs": rt.verbs,
    });
    if !rt.short_names.is_empty() {
        entry["shortNames"] = json!(rt.short_names);
    }
    if !rt.categories.is_empty() {
        entry["categories"] = json!(rt.categories);
    }
    let mut subs = subresources(rt);
    subs.sort_by(|a, b| a.name.cmp(b.name));
    if !subs.is_empty() {
        entry["subresources"] = Value::Array(subs.iter().map(subresource_entry).collect());
    }
    entry
}

/// The `APIGroupDiscoveryList` for `/api` (`core`: the core group only) or `/apis` (every other
/// group), ordered as kube-apiserver orders it: groups by priority then name, versions by
/// priority then Kubernetes version order, resources by name.
pub fn document(types: &[ResourceType], core: bool) -> Value {
    let mut groups: BTreeMap<&str, BTreeMap<&str, Vec<&ResourceType>>> = BTreeMap::new();
    for rt in types.iter().filter(|rt| rt.group.is_empty() == core) {
        groups
            .entry(&rt.group)
            .or_default()
            .entry(&rt.version)
            .or_default()
            .push(rt);
    }
    let mut groups: Vec<(&str, BTreeMap<&str, Vec<&ResourceType>>)> = groups.into_iter().collect();
    let group_priority = |group: &str, versions: &BTreeMap<&str, Vec<&ResourceType>>| {
        versions
            .keys()
            .map(|version| priority(group, version).0)
            .max()
            .unwrap_or_default()
    };
    groups.sort_by(|(a, av), (b, bv)| {
        group_priority(b, bv)
            .cmp(&group_priority(a, av))
            .then(a.cmp(b))
    });
    let items: Vec<Value> = groups
        .into_iter()
        .map(|(group, versions)| {
            let mut versions: Vec<(&str, Vec<&ResourceType>)> = versions.into_iter().collect();
            versions.sort_by(|(a, _), (b, _)| {
                priority(group, b)
                    .1
                    .cmp(&priority(group, a).1)
                    .then(compare_versions(a, b))
            });
            let versions: Vec<Value> = versions
                .into_iter()
                .map(|(version, mut resources)| {
                    resources.sort_by(|a, b| a.plural.cmp(&b.plural));
                    json!({
                        "version": version,
                        "resources": resources.into_iter().map(resource_entry).collect::<Vec<_>>(),
                        "freshness": "Current",
                    })
                })
                .collect();
            let mut metadata = json!({ "creationTimestamp": null });
            if !group.is_empty() {
                metadata["name"] = json!(group);
            }
            json!({ "metadata": metadata, "versions": versions })
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}
