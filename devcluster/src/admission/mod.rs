//! Admission after defaulting and schema validation: ValidatingAdmissionPolicy
//! (`admissionregistration.k8s.io/v1`) with kube-apiserver's CEL environment.
//!
//! `validate` is kube-apiserver's validating policy dispatcher: every binding whose policy
//! matches the request is evaluated (once per param), `Deny` failures refuse the request with
//! the first failure, `Warn` failures become `Warning` headers and `Audit` failures (and audit
//! annotations) are logged under the `devcluster::audit` target, since devcluster keeps no
//! audit log.

mod authz;
mod environment;
mod evaluate;
mod matching;
mod messages;
mod params;
mod policy;
mod system;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use kube_cel::cel::Value as Cel;
use serde_json::Value;

use crate::auth::{Authorizer, UserInfo};
use crate::registry::ResourceType;
use crate::status::ApiError;
use crate::store::State;

use environment::{to_cel, Bindings};
use evaluate::{Annotation, Failure};
use policy::FailurePolicy;

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
/// Called with the store locked (`state`); `authorizer` must not take the store lock. It is an
/// `Arc` because the CEL `authorizer` variable holds it: cel's functions and values are
/// `'static`.
pub fn validate(
    state: &State,
    authorizer: &Arc<dyn Authorizer>,
    request: &AdmissionRequest<'_>,
) -> Result<Vec<String>, ApiError> {
    let verdict = decide(state, authorizer, request);
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

/// The verdict of every matching policy and binding on `request`.
pub(crate) fn decide(
    state: &State,
    authorizer: &Arc<dyn Authorizer>,
    request: &AdmissionRequest<'_>,
) -> Verdict {
    let mut verdict = Verdict::default();
    if exempt(request.rt) {
        return verdict;
    }
    let bound = policy::bound_policies(state);
    if bound.is_empty() {
        return verdict;
    }
    let namespace = matching::attribute_namespace(request);
    let namespace_object = namespace_object(state, request);
    // why: converting the objects to CEL costs more than matching; do it once, when needed.
    let objects = std::cell::OnceCell::new();
    let cel_objects = || {
        objects.get_or_init(|| {
            (
                request.object.map_or(Cel::Null, to_cel),
                request.old_object.map_or(Cel::Null, to_cel),
            )
        })
    };
    for (policy, bindings) in bound {
        let config_error = |verdict: &mut Verdict, binding: Option<&str>, err: String| {
            if policy.failure_policy == FailurePolicy::Fail {
                let (prefix, binding) = match binding {
                    Some(name) => ("failed to configure binding", Some(name.to_string())),
                    None => ("failed to configure policy", None),
                };
                verdict.denials.push(Denial {
                    policy: policy.name.clone(),
                    binding,
                    message: format!("{prefix}: {err}"),
                    reason: None,
                });
            }
        };
        let matched = match matching::matches(state, request, &policy.match_constraints) {
            Ok(Some(matched)) => matched,
            Ok(None) => continue,
            Err(err) => {
                config_error(&mut verdict, None, err);
                continue;
            }
        };
        if let Some(err) = &policy.malformed {
            config_error(&mut verdict, None, err.clone());
            continue;
        }
        let param_type = match params::param_type(state, &policy) {
            Ok(param_type) => param_type,
            Err(err) => {
                config_error(&mut verdict, None, err);
                continue;
            }
        };
        let request_value = messages::request_value(request, &matched);
        let mut published = Vec::new();
        for binding in bindings {
            if let Some(criteria) = &binding.match_resources {
                match matching::matches(state, request, criteria) {
                    Ok(Some(_)) => {}
                    Ok(None) => continue,
                    Err(err) => {
                        config_error(&mut verdict, Some(&binding.name), err);
                        continue;
                    }
                }
            }
            let params = match params::collect(state, param_type.as_ref(), &binding, namespace) {
                Ok(params) => params,
                Err(err) => {
                    config_error(&mut verdict, Some(&binding.name), err);
                    continue;
                }
            };
            for param in params {
                let (object, old_object) = cel_objects();
                let bindings = Bindings {
                    object: object.clone(),
                    old_object: old_object.clone(),
                    request: request_value.clone(),
                    params: param.as_ref().map_or(Cel::Null, to_cel),
                    namespace_object: namespace_object.clone(),
                    authorizer: Some(authz::authorizer_variable(
                        authorizer,
                        request.user,
                        request,
                    )),
                    variables: environment::map(Vec::new()),
                };
                let evaluated = evaluate::evaluate(&policy, bindings);
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
                                messages::validation_failure(&policy.name, &binding, index, &message),
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
        }
        verdict
            .audit_annotations
            .extend(evaluate::collect_annotations(&policy.name, &published));
    }
    verdict
}

/// `namespaceObject`: the request's Namespace as upstream exposes it, null for cluster-scoped
/// objects and for Namespaces themselves.
fn namespace_object(state: &State, request: &AdmissionRequest<'_>) -> Cel {
    let is_namespace = request.rt.group.is_empty() && request.rt.kind == "Namespace";
    if is_namespace || request.namespace.is_empty() {
        return Cel::Null;
    }
    let namespaces: crate::store::StorageKey = Arc::from("namespaces");
    state
        .get(&namespaces, "", request.namespace)
        .map_or(Cel::Null, |found| to_cel(&messages::namespace_view(found)))
}
