//! The built-in kinds devcluster serves, stored generically as JSON.

use serde_json::{json, Value};

use crate::registry::ResourceType;

/// Verbs every served resource supports.
pub const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// (group, version, kind, plural, singular, short names, namespaced, status subresource)
type Row = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
    bool,
    bool,
);

const BUILTIN: &[Row] = &[
    ("", "v1", "Namespace", "namespaces", &["ns"], false, true),
    ("", "v1", "Secret", "secrets", &[], true, false),
    ("", "v1", "ConfigMap", "configmaps", &["cm"], true, false),
    (
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        &["sa"],
        true,
        false,
    ),
    ("", "v1", "Service", "services", &["svc"], true, true),
    ("", "v1", "Event", "events", &["ev"], true, false),
    (
        "events.k8s.io",
        "v1",
        "Event",
        "events",
        &["ev"],
        true,
        false,
    ),
    (
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        &[],
        true,
        false,
    ),
    (
        "apps",
        "v1",
        "Deployment",
        "deployments",
        &["deploy"],
        true,
        true,
    ),
    (
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        &["sts"],
        true,
        true,
    ),
    ("apps", "v1", "DaemonSet", "daemonsets", &["ds"], true, true),
    (
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        &["pdb"],
        true,
        true,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        &[],
        true,
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        &[],
        true,
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        &[],
        false,
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        &[],
        false,
        false,
    ),
    (
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        &["crd", "crds"],
        false,
        true,
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingAdmissionPolicy",
        "validatingadmissionpolicies",
        &[],
        false,
        true,
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingAdmissionPolicyBinding",
        "validatingadmissionpolicybindings",
        &[],
        false,
        false,
    ),
    ("", "v1", "Pod", "pods", &["po"], true, true),
    (
        "certificates.k8s.io",
        "v1",
        "CertificateSigningRequest",
        "certificatesigningrequests",
        &["csr"],
        false,
        true,
    ),
    (
        "apiregistration.k8s.io",
        "v1",
        "APIService",
        "apiservices",
        &[],
        false,
        true,
    ),
];

/// The resources in kube-apiserver's `all` category (what `kubectl get all` lists).
const CATEGORY_ALL: &[(&str, &str)] = &[
    ("", "pods"),
    ("", "services"),
    ("apps", "deployments"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
];

fn categories(group: &str, plural: &str) -> Vec<String> {
    if CATEGORY_ALL.contains(&(group, plural)) {
        vec!["all".to_string()]
    } else {
        Vec::new()
    }
}

/// Kinds that are computed per request and never stored: only `create` is served.
/// (group, version, kind, plural, namespaced)
const REVIEWS: &[(&str, &str, &str, &str, bool)] = &[
    (
        "authentication.k8s.io",
        "v1",
        "TokenReview",
        "tokenreviews",
        false,
    ),
    (
        "authentication.k8s.io",
        "v1",
        "SelfSubjectReview",
        "selfsubjectreviews",
        false,
    ),
    (
        "authorization.k8s.io",
        "v1",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        false,
    ),
    (
        "authorization.k8s.io",
        "v1",
        "SubjectAccessReview",
        "subjectaccessreviews",
        false,
    ),
    (
        "authorization.k8s.io",
        "v1",
        "LocalSubjectAccessReview",
        "localsubjectaccessreviews",
        true,
    ),
    (
        "authorization.k8s.io",
        "v1",
        "SelfSubjectRulesReview",
        "selfsubjectrulesreviews",
        false,
    ),
];

/// The resource types served before any CRD is created.
pub fn builtin_types() -> Vec<ResourceType> {
    let reviews = REVIEWS
        .iter()
        .map(|&(group, version, kind, plural, namespaced)| ResourceType {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
            list_kind: format!("{kind}List"),
            plural: plural.to_string(),
            singular: kind.to_lowercase(),
            short_names: Vec::new(),
            categories: Vec::new(),
            namespaced,
            status_subresource: false,
            scale_subresource: None,
            verbs: vec!["create".to_string()],
            crd: None,
        });
    BUILTIN
        .iter()
        .map(
            |&(group, version, kind, plural, short_names, namespaced, status)| ResourceType {
                group: group.to_string(),
                version: version.to_string(),
                kind: kind.to_string(),
                list_kind: format!("{kind}List"),
                plural: plural.to_string(),
                singular: kind.to_lowercase(),
                short_names: short_names.iter().map(|s| s.to_string()).collect(),
                categories: categories(group, plural),
                namespaced,
                status_subresource: status,
                scale_subresource: None,
                verbs: VERBS.iter().map(|v| v.to_string()).collect(),
                crd: None,
            },
        )
        .chain(reviews)
        .collect()
}

/// The status kube-apiserver gives a new object of a built-in kind, if it gives one: a Pod starts
/// `Pending` with its QoS class (nothing ever runs it).
pub fn initial_status(rt: &ResourceType, obj: &Value) -> Option<Value> {
    (rt.group.is_empty() && rt.kind == "Pod")
        .then(|| json!({ "phase": "Pending", "qosClass": pod_qos_class(obj) }))
}

/// `qos.GetPodQOS`: BestEffort without requests or limits, Guaranteed when every container limits
/// cpu and memory and requests nothing else, Burstable otherwise.
fn pod_qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|list| {
            pod.pointer(&format!("/spec/{list}"))
                .and_then(Value::as_array)
        })
        .flatten()
        .collect();
    let resources = |container: &Value, kind: &str| -> serde_json::Map<String, Value> {
        container
            .pointer(&format!("/resources/{kind}"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let mut any = false;
    let mut guaranteed = true;
    for container in containers {
        let (requests, limits) = (
            resources(container, "requests"),
            resources(container, "limits"),
        );
        any |= !requests.is_empty() || !limits.is_empty();
        let limited = ["cpu", "memory"].iter().all(|r| limits.contains_key(*r));
        let requests_match = requests
            .iter()
            .all(|(name, value)| limits.get(name) == Some(value));
        guaranteed &= limited && requests_match;
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}
