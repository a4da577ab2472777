//! Policies and bindings as stored, compiled once per resourceVersion.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};

use k8s_openapi::api::admissionregistration::v1::{
    MatchResources, ParamRef, ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use serde_json::Value;

use super::environment::Expression;
use super::reads::{self, Reads};
use crate::store::{State, StorageKey};

const POLICIES: &str = "validatingadmissionpolicies.admissionregistration.k8s.io";
const BINDINGS: &str = "validatingadmissionpolicybindings.admissionregistration.k8s.io";

/// How many compiled policies and parsed bindings are kept before the cache starts over.
const CACHED: usize = 512;

/// `failurePolicy`: what an error in the policy or its configuration does to the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FailurePolicy {
    Fail,
    Ignore,
}

/// One `validations` entry.
pub(crate) struct Validation {
    pub expression: Expression,
    pub message: Option<String>,
    pub message_expression: Option<Expression>,
    pub reason: Option<String>,
}

/// One named expression (`matchConditions`, `variables`) or audit annotation (`key`).
pub(crate) struct Named {
    pub name: String,
    pub expression: Expression,
}

/// A ValidatingAdmissionPolicy ready to evaluate.
pub(crate) struct Policy {
    pub name: String,
    pub failure_policy: FailurePolicy,
    pub match_constraints: MatchResources,
    /// `(apiVersion, kind)` of the params, when the policy takes params.
    pub param_kind: Option<(String, String)>,
    pub match_conditions: Vec<Named>,
    pub variables: Vec<Named>,
    pub validations: Vec<Validation>,
    pub audit_annotations: Vec<Named>,
    /// Set when the stored object could not be read as a policy.
    pub malformed: Option<String>,
    /// Every identifier its expressions name, so a request binds only the variables read.
    identifiers: HashSet<String>,
    /// What its expressions read of each variable with a JSON value.
    reads: HashMap<&'static str, Reads>,
    /// Whether its match conditions and validations all have shapes evaluated without
    /// `cel`, and it has no variables or audit annotations.
    pub direct: bool,
}

/// The variables whose values are objects of which expressions may read a few fields.
const SELECTABLE: [&str; 5] = [
    "object",
    "oldObject",
    "request",
    "params",
    "namespaceObject",
];

impl Policy {
    /// Whether any expression of the policy names `identifier`.
    pub fn mentions(&self, identifier: &str) -> bool {
        self.identifiers.contains(identifier)
    }

    /// What the policy's expressions can read of `variable`, one of [`SELECTABLE`].
    pub fn reads(&self, variable: &str) -> &Reads {
        static NOTHING: Reads = Reads::Nothing;
        self.reads.get(variable).unwrap_or(&NOTHING)
    }

    fn expressions(&self) -> impl Iterator<Item = &Expression> {
        let named = self
            .match_conditions
            .iter()
            .chain(&self.variables)
            .chain(&self.audit_annotations)
            .map(|named| &named.expression);
        let validations = self.validations.iter().flat_map(|validation| {
            std::iter::once(&validation.expression).chain(&validation.message_expression)
        });
        named.chain(validations)
    }
}

/// A ValidatingAdmissionPolicyBinding as stored.
pub(crate) struct Binding {
    pub name: String,
    pub policy_name: String,
    pub match_resources: Option<MatchResources>,
    pub param_ref: Option<ParamRef>,
    pub validation_actions: Vec<String>,
}

/// Compiled objects keyed by the stored object they were made from: every write stores a new
/// one, so an updated policy is compiled afresh. The entry keeps the stored object alive, so
/// its address is not reused while it is a key.
pub(super) struct Cache<T> {
    entries: Mutex<HashMap<usize, Cached<T>>>,
}

/// The stored object and what was made from it.
type Cached<T> = (Arc<Value>, Arc<T>);

impl<T> Cache<T> {
    pub(super) fn new() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn get_or_insert(&self, stored: &Arc<Value>, build: impl FnOnce() -> T) -> Arc<T> {
        let key = Arc::as_ptr(stored) as usize;
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, found)) = entries.get(&key) {
            return found.clone();
        }
        if entries.len() >= CACHED {
            entries.clear();
        }
        let built = Arc::new(build());
        entries.insert(key, (stored.clone(), built.clone()));
        built
    }
}

static POLICY_CACHE: LazyLock<Cache<Policy>> = LazyLock::new(Cache::new);
static BINDING_CACHE: LazyLock<Cache<Binding>> = LazyLock::new(Cache::new);

/// Every bound policy with its bindings, as [`bound_policies`] returns them.
pub(crate) type BoundPolicies = Arc<[(Arc<Policy>, Vec<Arc<Binding>>)]>;

/// The bound policies last found, with the stored bindings and policies they were made from.
/// Holding those keeps their addresses from being reused while they are compared.
struct LastBound {
    stored: Vec<Arc<Value>>,
    bound: BoundPolicies,
}

static LAST_BOUND: LazyLock<Mutex<Option<LastBound>>> = LazyLock::new(|| Mutex::new(None));

/// Every stored policy that some binding names, with its bindings, in name order.
///
/// why: every write a policy could apply to asks; the answer changes only when a binding or
/// policy is written, so it is remade only when the stored objects are not the very ones
/// (by address) it was made from.
pub(crate) fn bound_policies(state: &State) -> BoundPolicies {
    let bindings_key: StorageKey = Arc::from(BINDINGS);
    let policies_key: StorageKey = Arc::from(POLICIES);
    let stored_now = || {
        let bindings = state.objects(&bindings_key, None).map(|(_, stored)| stored);
        bindings.chain(state.objects(&policies_key, None).map(|(_, stored)| stored))
    };
    let mut last = LAST_BOUND
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(last) = last.as_ref() {
        let mut now = stored_now();
        let same = last.stored.iter().all(|made_from| {
            now.next()
                .is_some_and(|stored| Arc::ptr_eq(made_from, stored))
        }) && now.next().is_none();
        if same {
            return last.bound.clone();
        }
    }
    let mut by_policy: HashMap<String, Vec<Arc<Binding>>> = HashMap::new();
    for (_, stored) in state.objects(&bindings_key, None) {
        let binding = BINDING_CACHE.get_or_insert(stored, || parse_binding(stored));
        by_policy
            .entry(binding.policy_name.clone())
            .or_default()
            .push(binding);
    }
    let mut bound = Vec::new();
    for ((_, name), stored) in state.objects(&policies_key, None) {
        // why: upstream builds a hook per policy; a binding naming no policy does nothing.
        let Some(bindings) = by_policy.remove(name) else {
            continue;
        };
        let policy = POLICY_CACHE.get_or_insert(stored, || compile_policy(stored));
        bound.push((policy, bindings));
    }
    let bound: BoundPolicies = bound.into();
    *last = Some(LastBound {
        stored: stored_now().cloned().collect(),
        bound: bound.clone(),
    });
    bound
}

fn parse_binding(stored: &Value) -> Binding {
    let name = stored
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    match serde_json::from_value::<ValidatingAdmissionPolicyBinding>(stored.clone()) {
        Ok(parsed) => {
            let spec = parsed.spec;
            Binding {
                name,
                policy_name: spec.policy_name,
                match_resources: spec.match_resources,
                param_ref: spec.param_ref,
                validation_actions: spec.validation_actions,
            }
        }
        Err(err) => {
            tracing::warn!(%err, name, "unreadable ValidatingAdmissionPolicyBinding ignored");
            Binding {
                name,
                policy_name: String::new(),
                match_resources: None,
                param_ref: None,
                validation_actions: Vec::new(),
            }
        }
    }
}

fn compile_policy(stored: &Value) -> Policy {
    let name = stored
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let parsed = serde_json::from_value::<ValidatingAdmissionPolicy>(stored.clone());
    let (spec, malformed) = match parsed {
        Ok(policy) => (policy.spec.unwrap_or_default(), None),
        Err(err) => (Default::default(), Some(err.to_string())),
    };
    let failure_policy = match spec.failure_policy.as_deref() {
        Some("Ignore") => FailurePolicy::Ignore,
        _ => FailurePolicy::Fail,
    };
    let named = |name: String, source: &str| Named {
        name,
        expression: Expression::compile(source),
    };
    let mut policy = Policy {
        name,
        failure_policy,
        match_constraints: spec.match_constraints.unwrap_or_default(),
        param_kind: spec.param_kind.map(|kind| {
            (
                kind.api_version.unwrap_or_default(),
                kind.kind.unwrap_or_default(),
            )
        }),
        match_conditions: spec
            .match_conditions
            .unwrap_or_default()
            .into_iter()
            .map(|c| named(c.name, &c.expression))
            .collect(),
        variables: spec
            .variables
            .unwrap_or_default()
            .into_iter()
            .map(|v| named(v.name, &v.expression))
            .collect(),
        validations: spec
            .validations
            .unwrap_or_default()
            .into_iter()
            .map(|v| Validation {
                expression: Expression::compile(&v.expression),
                message: v.message,
                message_expression: v.message_expression.as_deref().map(Expression::compile),
                reason: v.reason,
            })
            .collect(),
        audit_annotations: spec
            .audit_annotations
            .unwrap_or_default()
            .into_iter()
            .map(|a| named(a.key, &a.value_expression))
            .collect(),
        malformed,
        identifiers: HashSet::new(),
        reads: HashMap::new(),
        direct: false,
    };
    policy.identifiers = policy
        .expressions()
        .flat_map(|expression| expression.identifiers.iter().cloned())
        .collect();
    let mut read = HashMap::new();
    for expression in policy.expressions() {
        if let Ok(program) = &expression.program {
            reads::collect(program.expression(), &SELECTABLE, &mut read);
        }
    }
    policy.reads = read;
    policy.direct = policy.variables.is_empty()
        && policy.audit_annotations.is_empty()
        && policy
            .match_conditions
            .iter()
            .map(|condition| &condition.expression)
            .chain(policy.validations.iter().map(|v| &v.expression))
            .all(|expression| expression.direct.is_some());
    policy
}
