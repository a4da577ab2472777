//! Discovery documents: `/version`, `/api`, `/apis`, `/api/v1`, `/apis/{group}/{version}`, and
//! aggregated discovery on `/api` and `/apis` for clients that ask for it.

pub mod aggregated;
mod negotiate;

use std::cmp::Ordering;

use serde_json::{json, Map, Value};

use crate::registry::ResourceType;

pub use negotiate::wants_aggregated;

/// A subresource as discovery lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subresource {
    pub name: &'static str,
    /// The group, version and kind its requests and responses carry.
    pub group: String,
    pub version: String,
    pub kind: String,
    pub verbs: &'static [&'static str],
}

/// The subresources devcluster serves for `rt`: status and scale where declared, a
/// ServiceAccount's token, a CertificateSigningRequest's approval.
pub fn subresources(rt: &ResourceType) -> Vec<Subresource> {
    const READ_WRITE: &[&str] = &["get", "patch", "update"];
    let own = |name| Subresource {
        name,
        group: rt.group.clone(),
        version: rt.version.clone(),
        kind: rt.kind.clone(),
        verbs: READ_WRITE,
    };
    let mut subs = Vec::new();
    if rt.status_subresource {
        subs.push(own("status"));
    }
    if rt.scale_subresource.is_some() {
        subs.push(Subresource {
            name: "scale",
            group: "autoscaling".into(),
            version: "v1".into(),
            kind: "Scale".into(),
            verbs: READ_WRITE,
        });
    }
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "serviceaccounts") => subs.push(Subresource {
            name: "token",
            group: "authentication.k8s.io".into(),
            version: "v1".into(),
            kind: "TokenRequest".into(),
            verbs: &["create"],
        }),
        ("certificates.k8s.io", "certificatesigningrequests") => subs.push(own("approval")),
        _ => {}
    }
    subs
}

/// The Kubernetes minor version devcluster reports; kubectl dispatchers pick their client by it.
pub const MINOR_VERSION: &str = "32";

/// The `/version` document (reports a 1.32 server).
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": MINOR_VERSION,
        "gitVersion": format!("v1.{MINOR_VERSION}.0-devcluster"),
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.23.4",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// The `/api` document (`APIVersions`).
pub fn core_api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    })
}

/// Orders versions as Kubernetes does: GA before beta before alpha, higher numbers first, and
/// versions that do not look like Kubernetes versions last, alphabetically.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    fn parse(v: &str) -> Option<(u64, u8, u64)> {
        let rest = v.strip_prefix('v')?;
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let major = rest[..digits].parse().ok()?;
        match &rest[digits..] {
            "" => Some((major, 2, 0)),
            suffix => {
                let (stability, minor) = if let Some(n) = suffix.strip_prefix("beta") {
                    (1, n)
                } else if let Some(n) = suffix.strip_prefix("alpha") {
                    (0, n)
                } else {
                    return None;
                };
                Some((major, stability, minor.parse().ok()?))
            }
        }
    }
    match (parse(a), parse(b)) {
        (Some((ma, sa, na)), Some((mb, sb, nb))) => sb.cmp(&sa).then(mb.cmp(&ma)).then(nb.cmp(&na)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// The served versions of `group`, preferred first.
pub fn group_versions(types: &[ResourceType], group: &str) -> Vec<String> {
    let mut versions: Vec<String> = Vec::new();
    for rt in types.iter().filter(|rt| rt.group == group) {
        if !versions.contains(&rt.version) {
            versions.push(rt.version.clone());
        }
    }
    versions.sort_by(|a, b| compare_versions(a, b));
    versions
}

/// The `/apis` document (`APIGroupList`) for every served non-core group.
pub fn api_group_list(types: &[ResourceType]) -> Value {
    let mut groups: Vec<&str> = Vec::new();
    for rt in types.iter().filter(|rt| !rt.group.is_empty()) {
        if !groups.contains(&rt.group.as_str()) {
            groups.push(&rt.group);
        }
    }
    // why: kube-apiserver lists groups by their APIService priority, highest first.
    let highest = |group: &str| {
        group_versions(types, group)
            .iter()
            .map(|version| crate::apiservices::priority(group, version).0)
            .max()
            .unwrap_or_default()
    };
    groups.sort_by(|a, b| highest(b).cmp(&highest(a)).then(a.cmp(b)));
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|group| {
            let versions: Vec<Value> = group_versions(types, group)
                .into_iter()
                .map(|version| json!({"groupVersion": format!("{group}/{version}"), "version": version}))
                .collect();
            json!({
                "name": group,
                "preferredVersion": versions.first().cloned().unwrap_or(Value::Null),
                "versions": versions,
            })
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// One `APIResource` entry for the resource itself.
fn resource_entry(rt: &ResourceType) -> Value {
    let mut entry = Map::new();
    entry.insert("name".into(), json!(rt.plural));
    entry.insert("singularName".into(), json!(rt.singular));
    entry.insert("namespaced".into(), json!(rt.namespaced));
    entry.insert("kind".into(), json!(rt.kind));
    entry.insert("verbs".into(), json!(rt.verbs));
    if !rt.short_names.is_empty() {
        entry.insert("shortNames".into(), json!(rt.short_names));
    }
    if !rt.categories.is_empty() {
        entry.insert("categories".into(), json!(rt.categories));
    }
    Value::Object(entry)
}

/// The `APIResourceList` for one group/version (`group` empty for `/api/v1`); `None` when unknown.
pub fn api_resource_list(types: &[ResourceType], group: &str, version: &str) -> Option<Value> {
    let served: Vec<&ResourceType> = types
        .iter()
        .filter(|rt| rt.group == group && rt.version == version)
        .collect();
    if served.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for rt in served {
        resources.push(resource_entry(rt));
        for sub in subresources(rt) {
            let mut entry = json!({
                "name": format!("{}/{}", rt.plural, sub.name),
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": sub.kind,
                "verbs": sub.verbs,
            });
            if sub.group != rt.group || sub.version != rt.version {
                entry["group"] = json!(sub.group);
                entry["version"] = json!(sub.version);
            }
            resources.push(entry);
        }
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}
