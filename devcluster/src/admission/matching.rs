//! Which requests a policy or binding applies to: `matchConstraints` / `matchResources` as
//! kube-apiserver's `policy/matching` and webhook predicates decide it.

use std::sync::{Arc, LazyLock};

use k8s_openapi::api::admissionregistration::v1::{MatchResources, NamedRuleWithOperations};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as MetaSelector;
use serde_json::Value;

use super::policy::Cache;
use super::{AdmissionRequest, Operation};
use crate::registry::ResourceType;
use crate::selector::LabelSelector;
use crate::store::{storage_key, State, StorageKey};

/// The resource and kind a policy matched, possibly an equivalent of the request's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Matched {
    pub group: String,
    pub version: String,
    pub resource: String,
    pub kind: String,
}

impl Matched {
    pub(crate) fn of(rt: &ResourceType) -> Self {
        Self {
            group: rt.group.clone(),
            version: rt.version.clone(),
            resource: rt.plural.clone(),
            kind: rt.kind.clone(),
        }
    }
}

/// Whether `criteria` select `request`: `Ok(None)` when not, the matched resource when so, or
/// why matching failed (a configuration error subject to the failure policy).
pub(crate) fn matches(
    state: &State,
    request: &AdmissionRequest<'_>,
    criteria: &MatchResources,
) -> Result<Option<Matched>, String> {
    let namespace_match = matches_namespace(state, request, criteria.namespace_selector.as_ref());
    if namespace_match == Ok(false) {
        return Ok(None);
    }
    let object_match = matches_object(request, criteria.object_selector.as_ref());
    if object_match == Ok(false) {
        return Ok(None);
    }
    let equivalent = criteria.match_policy.as_deref() != Some("Exact");
    let excluded = criteria
        .exclude_resource_rules
        .as_deref()
        .unwrap_or_default();
    if matching_rule(state, request, excluded, equivalent).is_some() {
        return Ok(None);
    }
    let matched = match criteria.resource_rules.as_deref() {
        None | Some([]) => Some(Matched::of(request.rt)),
        Some(rules) => matching_rule(state, request, rules, equivalent),
    };
    if matched.is_none() {
        return Ok(None);
    }
    namespace_match?;
    object_match?;
    Ok(matched)
}

fn is_namespace(rt: &ResourceType) -> bool {
    rt.group.is_empty() && rt.plural == "namespaces"
}

/// The request's namespace as admission attributes carry it: a Namespace's own name for
/// requests on the Namespace itself.
pub(crate) fn attribute_namespace<'a>(request: &AdmissionRequest<'a>) -> &'a str {
    if is_namespace(request.rt) && request.operation != Operation::Create {
        request.name
    } else {
        request.namespace
    }
}

/// A metav1 LabelSelector as a parsed label selector (`None` for the empty selector).
pub(crate) fn label_selector(selector: &MetaSelector) -> Result<Option<LabelSelector>, String> {
    let mut terms: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    for expression in selector.match_expressions.iter().flatten() {
        let values = expression.values.clone().unwrap_or_default().join(",");
        let key = &expression.key;
        terms.push(match expression.operator.as_str() {
            "In" => format!("{key} in ({values})"),
            "NotIn" => format!("{key} notin ({values})"),
            "Exists" => key.clone(),
            "DoesNotExist" => format!("!{key}"),
            other => return Err(format!("{other:?} is not a valid label selector operator")),
        });
    }
    if terms.is_empty() {
        return Ok(None);
    }
    LabelSelector::parse(&terms.join(","))
        .map(Some)
        .map_err(|err| err.to_string())
}

fn matches_namespace(
    state: &State,
    request: &AdmissionRequest<'_>,
    selector: Option<&MetaSelector>,
) -> Result<bool, String> {
    let namespace = attribute_namespace(request);
    if namespace.is_empty() && !is_namespace(request.rt) {
        // why: upstream never exempts cluster-scoped resources by namespace selector.
        return Ok(true);
    }
    let Some(selector) = selector.map(label_selector).transpose()?.flatten() else {
        return Ok(true);
    };
    let own_labels = is_namespace(request.rt)
        && request.subresource.is_empty()
        && matches!(request.operation, Operation::Create | Operation::Update);
    if own_labels {
        return Ok(request.object.is_some_and(|obj| selector.matches(obj)));
    }
    let namespaces: StorageKey = Arc::from("namespaces");
    match state.get(&namespaces, "", namespace) {
        Some(found) => Ok(selector.matches(found)),
        None => Err(format!("namespaces \"{namespace}\" not found")),
    }
}

fn matches_object(
    request: &AdmissionRequest<'_>,
    selector: Option<&MetaSelector>,
) -> Result<bool, String> {
    let Some(selector) = selector.map(label_selector).transpose()?.flatten() else {
        return Ok(true);
    };
    Ok(request.object.is_some_and(|obj| selector.matches(obj))
        || request.old_object.is_some_and(|obj| selector.matches(obj)))
}

fn exact_or_wildcard(items: Option<&Vec<String>>, requested: &str) -> bool {
    items
        .into_iter()
        .flatten()
        .any(|item| item == "*" || item == requested)
}

fn operation_name(operation: Operation) -> &'static str {
    match operation {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
    }
}

/// kube-apiserver's `rules.Matcher` for one rule against the request as if it were for `rt`.
fn rule_matches(
    rule: &NamedRuleWithOperations,
    request: &AdmissionRequest<'_>,
    rt: &ResourceType,
) -> bool {
    let namespaced_request = !is_namespace(rt) && !attribute_namespace(request).is_empty();
    let scope = match rule.scope.as_deref() {
        None | Some("*") => true,
        Some("Namespaced") => namespaced_request,
        Some("Cluster") => !namespaced_request,
        Some(_) => false,
    };
    let operation = rule
        .operations
        .iter()
        .flatten()
        .any(|op| op == "*" || op == operation_name(request.operation));
    let resource = rule.resources.iter().flatten().any(|entry| {
        let (resource, sub) = entry.split_once('/').unwrap_or((entry, ""));
        (resource == "*" || resource == rt.plural) && (sub == "*" || sub == request.subresource)
    });
    scope
        && operation
        && exact_or_wildcard(rule.api_groups.as_ref(), &rt.group)
        && exact_or_wildcard(rule.api_versions.as_ref(), &rt.version)
        && resource
}

fn named(rule: &NamedRuleWithOperations, request: &AdmissionRequest<'_>) -> bool {
    match rule.resource_names.as_deref() {
        None | Some([]) => true,
        Some(names) => names.iter().any(|name| name == request.name),
    }
}

/// The first rule that selects the request (or, with `equivalent`, an equivalent resource).
fn matching_rule(
    state: &State,
    request: &AdmissionRequest<'_>,
    rules: &[NamedRuleWithOperations],
    equivalent: bool,
) -> Option<Matched> {
    if rules.is_empty() {
        return None;
    }
    if rules
        .iter()
        .any(|rule| rule_matches(rule, request, request.rt) && named(rule, request))
    {
        return Some(Matched::of(request.rt));
    }
    if !equivalent {
        return None;
    }
    let equivalents = equivalents(state, request.rt);
    rules.iter().find_map(|rule| {
        equivalents
            .iter()
            .find(|rt| rule_matches(rule, request, rt) && named(rule, request))
            .map(Matched::of)
    })
}

static BUILTIN: LazyLock<Vec<ResourceType>> = LazyLock::new(crate::builtin::builtin_types);

const CRDS: &str = "customresourcedefinitions.apiextensions.k8s.io";

/// Every served resource type: the built-in ones and those of the stored CRDs.
fn served_types(state: &State) -> Vec<ResourceType> {
    let crds: StorageKey = Arc::from(CRDS);
    let mut types = BUILTIN.clone();
    for (_, crd) in state.objects(&crds, None) {
        types.extend(crd_types(crd).iter().cloned());
    }
    types
}

/// The types a stored CRD serves, made once per stored version of it.
///
/// why: a policy that does not name a custom resource's own version looks for its
/// equivalents on every write of it; making them parses the CRD's whole schema.
fn crd_types(stored: &Arc<Value>) -> Arc<Vec<ResourceType>> {
    static CRD_TYPES: LazyLock<Cache<Vec<ResourceType>>> = LazyLock::new(Cache::new);
    CRD_TYPES.get_or_insert(stored, || crate::crds::crd_types(stored))
}

/// Other group-versions serving the same objects as `rt` (events in two groups, CRD versions).
fn equivalents(state: &State, rt: &ResourceType) -> Vec<ResourceType> {
    let key = storage_key(rt);
    let is_equivalent = |other: &ResourceType| {
        (other.group != rt.group || other.version != rt.version) && storage_key(other) == key
    };
    match &rt.crd {
        Some(crd) => {
            let crds: StorageKey = Arc::from(CRDS);
            state
                .get(&crds, "", &crd.crd_name)
                .map(crd_types)
                .unwrap_or_default()
                .iter()
                .filter(|other| is_equivalent(other))
                .cloned()
                .collect()
        }
        // why: called for every policy on every write; clone only the few equivalents.
        None => BUILTIN
            .iter()
            .filter(|other| is_equivalent(other))
            .cloned()
            .collect(),
    }
}

/// The served type of `kind` in `api_version` (`group/version`, or `v1` for the core group).
pub(crate) fn find_kind(state: &State, api_version: &str, kind: &str) -> Option<ResourceType> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let is_it = |rt: &ResourceType| rt.group == group && rt.version == version && rt.kind == kind;
    if let Some(found) = BUILTIN.iter().find(|rt| is_it(rt)) {
        return Some(found.clone());
    }
    served_types(state).into_iter().find(|rt| is_it(rt))
}

/// Whether `obj` is selected (everything is, without a selector).
pub(crate) fn selects(selector: Option<&LabelSelector>, obj: &Value) -> bool {
    selector.is_none_or(|selector| selector.matches(obj))
}
