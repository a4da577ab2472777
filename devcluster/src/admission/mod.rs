//! Admission after defaulting and schema validation: ValidatingAdmissionPolicy
//! (`admissionregistration.k8s.io/v1`) with kube-apiserver's CEL environment.
//!
//! `validate` is kube-apiserver's validating policy dispatcher: every binding whose policy
//! matches the request is evaluated (once per param), `Deny` failures refuse the request with
//! the first failure, `Warn` failures become `Warning` headers and `Audit` failures (and audit
//! annotations) are logged under the `devcluster::audit` target, since devcluster keeps no
//! audit log.

mod authz;
mod direct;
#[cfg(test)]
mod direct_tests;
mod environment;
mod evaluate;
mod matching;
mod messages;
mod params;
mod policy;
mod reads;
mod system;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::sync::Arc;

use kube_cel::cel::Value as Cel;
use serde_json::Value;

use crate::auth::{Authorizer, UserInfo};
use crate::registry::ResourceType;
use crate::status::ApiError;
use crate::store::State;

use evaluate::{Annotation, Failure};
use matching::Matched;
use policy::{Binding, FailurePolicy, Policy};
use reads::{to_cel_read, Reads};

pub use system::SystemAdmission;

/// The admission operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

/// One write as admission sees it.
pub struct AdmissionRequest<'a> {
    pub operation: Operation,
    pub rt: &'a ResourceType,
    /// Empty for cluster-scoped objects.
    pub namespace: &'a str,
    pub name: &'a str,
    /// Empty for the main resource; `status`, `scale`, ...
    pub subresource: &'a str,
    /// The object after the write (`None` on DELETE, as Kubernetes sets it).
    pub object: Option<&'a Value>,
    /// The object before (`None` on CREATE).
    pub old_object: Option<&'a Value>,
    pub user: &'a UserInfo,
    pub dry_run: bool,
}

/// Why a request was refused: the first denial, as upstream reports only that one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Denial {
    pub policy: String,
    /// `None` for errors of the policy itself (such as an unknown `paramKind`).
    pub binding: Option<String>,
    pub message: String,
    pub reason: Option<String>,
}

/// Everything the policies decided about one request.
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    pub denials: Vec<Denial>,
    pub warnings: Vec<String>,
    /// Audit annotations (`key`, `value`), as kube-apiserver would add to the audit event.
    pub audit_annotations: Vec<(String, String)>,
}

/// Runs every ValidatingAdmissionPolicy binding that matches `request`; returns the warnings of
/// `Warn` actions, or the first `Deny`.
///
/// `plan` is what [`prepare`] read from the store for this very request; no lock is needed,
/// so CEL runs while other requests use the store. It is an `Arc` because the CEL
/// `authorizer` variable holds it: cel's functions and values are `'static`.
pub fn validate(
    plan: &Plan,
    authorizer: &Arc<dyn Authorizer>,
    request: &AdmissionRequest<'_>,
) -> Result<Vec<String>, ApiError> {
    let verdict = plan.verdict(authorizer, request);
    for (key, value) in &verdict.audit_annotations {
        tracing::info!(
            target: "devcluster::audit",
            resource = %request.rt.plural,
            namespace = request.namespace,
            name = request.name,
            key,
            value,
            "audit annotation"
        );
    }
    match verdict.denials.first() {
        Some(denial) => Err(messages::denied(request, denial)),
        None => Ok(verdict.warnings),
    }
}

/// Whether admission policies never apply to this kind, as kube-apiserver exempts its own
/// admission configuration so a broken policy cannot lock itself in.
fn exempt(rt: &ResourceType) -> bool {
    rt.group == "admissionregistration.k8s.io"
        && matches!(
            rt.kind.as_str(),
            "ValidatingWebhookConfiguration"
                | "MutatingWebhookConfiguration"
                | "ValidatingAdmissionPolicy"
                | "ValidatingAdmissionPolicyBinding"
                | "MutatingAdmissionPolicy"
                | "MutatingAdmissionPolicyBinding"
        )
}

/// The verdict of every matching policy and binding on `request`, all under the store lock.
pub(crate) fn decide(
    state: &State,
    authorizer: &Arc<dyn Authorizer>,
    request: &AdmissionRequest<'_>,
) -> Verdict {
    prepare(state, request).verdict(authorizer, request)
}

/// What admission read from the store for one request: the policies that match it, the
/// params each binding hands them and the request's Namespace. It holds only shared
/// references to stored objects, so the policies evaluate without the store lock on the
/// store as it was when the plan was made.
#[derive(Default)]
pub struct Plan {
    policies: Vec<Planned>,
    namespace_object: Option<Arc<Value>>,
}

/// One matching policy.
struct Planned {
    policy: Arc<Policy>,
    /// The resource the policy matched; `None` when the policy could not be matched.
    matched: Option<Matched>,
    steps: Vec<Step>,
}

/// One binding of a matching policy, in binding order.
enum Step {
    /// An error in the policy (`binding` `None`) or the binding, which fails the request
    /// under `failurePolicy: Fail`.
    Misconfigured {
        binding: Option<String>,
        error: String,
    },
    /// The policy evaluated once per param.
    Evaluate {
        binding: Arc<Binding>,
        params: Vec<Option<Arc<Value>>>,
    },
}

/// Reads what the policies need to decide `request` from the store.
pub fn prepare(state: &State, request: &AdmissionRequest<'_>) -> Plan {
    if exempt(request.rt) {
        return Plan::default();
    }
    let bound = policy::bound_policies(state);
    if bound.is_empty() {
        return Plan::default();
    }
    let namespace = matching::attribute_namespace(request);
    let mut policies = Vec::new();
    for (policy, bindings) in bound.iter() {
        let policy = policy.clone();
        let misconfigured = |policy: Arc<Policy>, error: String| Planned {
            policy,
            matched: None,
            steps: vec![Step::Misconfigured {
                binding: None,
                error,
            }],
        };
        let matched = match matching::matches(state, request, &policy.match_constraints) {
            Ok(Some(matched)) => matched,
            Ok(None) => continue,
            Err(err) => {
                policies.push(misconfigured(policy, err));
                continue;
            }
        };
        if let Some(err) = policy.malformed.clone() {
            policies.push(misconfigured(policy, err));
            continue;
        }
        let param_type = match params::param_type(state, &policy) {
            Ok(param_type) => param_type,
            Err(err) => {
                policies.push(misconfigured(policy, err));
                continue;
            }
        };
        let mut steps = Vec::new();
        for binding in bindings {
            let binding = binding.clone();
            let misconfigured = |binding: &Binding, error: String| Step::Misconfigured {
                binding: Some(binding.name.clone()),
                error,
            };
            if let Some(criteria) = &binding.match_resources {
                match matching::matches(state, request, criteria) {
                    Ok(Some(_)) => {}
                    Ok(None) => continue,
                    Err(err) => {
                        steps.push(misconfigured(&binding, err));
                        continue;
                    }
                }
            }
            match params::collect(state, param_type.as_ref(), &binding, namespace) {
                Ok(params) => steps.push(Step::Evaluate { binding, params }),
                Err(err) => steps.push(misconfigured(&binding, err)),
            }
        }
        policies.push(Planned {
            policy,
            matched: Some(matched),
            steps,
        });
    }
    Plan {
        policies,
        namespace_object: namespace_object(state, request),
    }
}

impl Plan {
    /// Whether no policy applies, so there is nothing to evaluate.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// Evaluates the planned policies on `request`, the one the plan was prepared for.
    pub(crate) fn verdict(
        &self,
        authorizer: &Arc<dyn Authorizer>,
        request: &AdmissionRequest<'_>,
    ) -> Verdict {
        let mut verdict = Verdict::default();
        if self.is_empty() || self.admitted_directly(authorizer, request) {
            return verdict;
        }
        // why: most variables are read by one policy; borrow its reads rather than merge.
        let reads = |name: &str| {
            self.policies
                .iter()
                .map(|p| p.policy.reads(name))
                .filter(|reads| **reads != Reads::Nothing)
                .fold(
                    Cow::Borrowed(&Reads::Nothing),
                    |merged, reads| match merged {
                        Cow::Borrowed(Reads::Nothing) => Cow::Borrowed(reads),
                        mut merged => {
                            merged.to_mut().merge(reads);
                            merged
                        }
                    },
                )
        };
        // why: binding a value converts it in full for the evaluator; convert each variable
        // once per request, only those some policy reads, and of those only the parts some
        // policy's expressions can reach.
        let request_reads = reads("request");
        let uid = match request_reads.field("uid") {
            Some(_) => uuid::Uuid::new_v4().to_string(),
            None => String::new(),
        };
        let requested = Matched::of(request.rt);
        let mut shared = Vec::new();
        let json_variables = [
            ("object", request.object),
            ("oldObject", request.old_object),
        ];
        for (name, value) in json_variables {
            let reads = reads(name);
            if *reads != Reads::Nothing {
                let value = value.map_or(Cel::Null, |v| to_cel_read(v, &reads));
                shared.push((name, value));
            }
        }
        let namespace_reads = reads("namespaceObject");
        if *namespace_reads != Reads::Nothing {
            let view = self
                .namespace_object
                .as_deref()
                .map(messages::namespace_view);
            let value = view.map_or(Cel::Null, |v| to_cel_read(&v, &namespace_reads));
            shared.push(("namespaceObject", value));
        }
        if *request_reads != Reads::Nothing {
            let value = messages::request_value(request, &requested, &uid, &request_reads);
            shared.push(("request", value));
        }
        let request_scope = environment::scope(environment::root(), shared);
        let authorizer_value = self
            .policies
            .iter()
            .any(|p| p.policy.mentions("authorizer"))
            .then(|| authz::authorizer_variable(authorizer, request.user, request));
        for Planned {
            policy,
            matched,
            steps,
        } in &self.policies
        {
            // why: a policy matching an equivalent resource sees that resource in `request`.
            let own_request = matched
                .as_ref()
                .filter(|matched| {
                    **matched != requested && *policy.reads("request") != Reads::Nothing
                })
                .map(|matched| {
                    let value = messages::request_value(request, matched, &uid, &request_reads);
                    environment::scope(&request_scope, [("request", value)])
                });
            let policy_scope = own_request.as_ref().unwrap_or(&request_scope);
            let mut published = Vec::new();
            for step in steps {
                let (binding, params) = match step {
                    Step::Misconfigured { binding, error } => {
                        if policy.failure_policy == FailurePolicy::Fail {
                            let prefix = match binding {
                                Some(_) => "failed to configure binding",
                                None => "failed to configure policy",
                            };
                            verdict.denials.push(Denial {
                                policy: policy.name.clone(),
                                binding: binding.clone(),
                                message: format!("{prefix}: {error}"),
                                reason: None,
                            });
                        }
                        continue;
                    }
                    Step::Evaluate { binding, params } => (binding, params),
                };
                for param in params {
                    let params_reads = policy.reads("params");
                    let param_value = (*params_reads != Reads::Nothing).then(|| {
                        let value = param.as_deref();
                        let value = value.map_or(Cel::Null, |v| to_cel_read(v, params_reads));
                        ("params", value)
                    });
                    let unauthorized = environment::scope(policy_scope, param_value);
                    let authorizer_value = authorizer_value
                        .clone()
                        .filter(|_| policy.mentions("authorizer"))
                        .map(|value| ("authorizer", value));
                    let authorized = environment::scope(&unauthorized, authorizer_value);
                    let evaluated = evaluate::evaluate(policy, &authorized, &unauthorized);
                    record(&mut verdict, policy, binding, evaluated, &mut published);
                }
            }
            verdict
                .audit_annotations
                .extend(evaluate::collect_annotations(&policy.name, &published));
        }
        verdict
    }
}

impl Plan {
    /// Whether every planned policy admits `request` by expressions evaluated without `cel`
    /// ([`direct`]); `false` when any does not or cannot be decided so, and `cel` decides.
    ///
    /// why: a request every policy admits needs nothing but the booleans: no messages, no
    /// warnings, no annotations. Anything else (a failure, an error, a misconfigured
    /// binding) is worded by the full evaluation below, which then decides again.
    fn admitted_directly(
        &self,
        authorizer: &Arc<dyn Authorizer>,
        request: &AdmissionRequest<'_>,
    ) -> bool {
        if !self.policies.iter().all(|planned| planned.policy.direct) {
            return false;
        }
        let env = direct::Env::new(request, authorizer);
        let admits = |policy: &Policy| -> Option<bool> {
            for condition in &policy.match_conditions {
                if !condition.expression.direct.as_ref()?.decide(&env)? {
                    return Some(true);
                }
            }
            for validation in &policy.validations {
                if !validation.expression.direct.as_ref()?.decide(&env)? {
                    return Some(false);
                }
            }
            Some(true)
        };
        self.policies.iter().all(|Planned { policy, steps, .. }| {
            steps.iter().all(|step| match step {
                Step::Misconfigured { .. } => false,
                // why: a policy is evaluated once per param; the shapes evaluated directly
                // never read `params`, so one evaluation stands for all of them.
                Step::Evaluate { params, .. } => params.is_empty() || admits(policy) == Some(true),
            })
        })
    }
}

/// Adds what one evaluation of `policy` for `binding` decided to `verdict`; audit
/// annotations to publish go to `published`.
fn record(
    verdict: &mut Verdict,
    policy: &Policy,
    binding: &Binding,
    evaluated: evaluate::Evaluated,
    published: &mut Vec<(String, String)>,
) {
    for (index, Failure { message, reason }) in evaluated.failures {
        for action in &binding.validation_actions {
            match action.as_str() {
                "Deny" => verdict.denials.push(Denial {
                    policy: policy.name.clone(),
                    binding: Some(binding.name.clone()),
                    message: message.clone(),
                    reason: reason.clone(),
                }),
                "Warn" => verdict.warnings.push(format!(
                    "Validation failed for ValidatingAdmissionPolicy '{}' with binding '{}': {message}",
                    policy.name, binding.name
                )),
                "Audit" => verdict.audit_annotations.push((
                    "validation.policy.admission.k8s.io/validation_failure".into(),
                    messages::validation_failure(&policy.name, binding, index, &message),
                )),
                _ => {}
            }
        }
    }
    for annotation in evaluated.annotations {
        match annotation {
            Annotation::Publish { key, value } => published.push((key, value)),
            Annotation::Error(message) => verdict.denials.push(Denial {
                policy: policy.name.clone(),
                binding: Some(binding.name.clone()),
                message,
                reason: None,
            }),
        }
    }
}

/// The request's Namespace as stored, for `namespaceObject`: none for cluster-scoped objects
/// and for Namespaces themselves.
fn namespace_object(state: &State, request: &AdmissionRequest<'_>) -> Option<Arc<Value>> {
    let is_namespace = request.rt.group.is_empty() && request.rt.kind == "Namespace";
    if is_namespace || request.namespace.is_empty() {
        return None;
    }
    let namespaces: crate::store::StorageKey = Arc::from("namespaces");
    state.get(&namespaces, "", request.namespace).cloned()
}
