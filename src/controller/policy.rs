//! Policy resolution for a key, and the `AccessKeyPolicy` reconciler (appliedAt, governed keys).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use super::context::Context;
use super::progress::{self, InFlight};
use super::status::condition;
use super::{Error, Result};
use crate::api::conditions::{reasons, types};
use crate::api::{
    AccessKey, AccessKeyPolicy, AccessKeyPolicySpec, AccessKeyPolicyStatus,
    DEFAULT_POLICY_ANNOTATION, FIELD_MANAGER,
};
use crate::keys::duration::parse_duration;
use crate::keys::schedule::Timers;

/// The policy governing a key, with its parsed timers.
#[derive(Clone, Debug)]
pub struct Governing {
    /// Policy name; `None` for the built-in defaults.
    pub name: Option<String>,
    pub max_keys_per_owner: u32,
    pub applied_at: Option<DateTime<Utc>>,
    pub timers: Timers,
    /// Whether the key's owner is granted `get` on the key's Secret.
    pub owner_secret_access: bool,
}

/// Why no policy governs a key; the key gets `PolicyResolved=False` and nothing new is issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unresolved {
    pub reason: &'static str,
    pub message: String,
}

fn unresolved(reason: &'static str, message: impl Into<String>) -> Unresolved {
    Unresolved {
        reason,
        message: message.into(),
    }
}

/// Parses a policy's timers; an invalid duration is named in the error message.
pub fn timers(spec: &AccessKeyPolicySpec) -> Result<Timers, String> {
    let parse = |field: &str, value: &str| {
        parse_duration(value).map_err(|err| format!("spec.{field}: {err}"))
    };
    Ok(Timers::from_durations(
        parse("expireAfter", &spec.expire_after)?,
        parse("deactivateAfterUnused", &spec.deactivate_after_unused)?,
        parse("rotationGracePeriod", &spec.rotation_grace_period)?,
        parse("rotateBeforeExpiry", &spec.rotate_before_expiry)?,
    ))
}

/// The policy a key names, else the default-annotated policy (oldest first), else `None`.
fn find_policy(key: &AccessKey, ctx: &Context) -> Result<Option<Arc<AccessKeyPolicy>>, Unresolved> {
    if let Some(name) = &key.spec.policy_name {
        return ctx
            .policies
            .state()
            .into_iter()
            .find(|p| &p.name_any() == name)
            .map(Some)
            .ok_or_else(|| {
                unresolved(
                    reasons::POLICY_NOT_FOUND,
                    format!("AccessKeyPolicy {name:?} does not exist"),
                )
            });
    }
    let mut defaults: Vec<_> = ctx
        .policies
        .state()
        .into_iter()
        .filter(|p| {
            p.annotations()
                .get(DEFAULT_POLICY_ANNOTATION)
                .map(String::as_str)
                == Some("true")
        })
        .collect();
    defaults.sort_by_key(|p| {
        (
            p.meta().creation_timestamp.clone().map(|t| t.0),
            p.name_any(),
        )
    });
    Ok(defaults.into_iter().next())
}

/// Whether a label selector matches `labels` (matchLabels and matchExpressions).
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_match = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions_match = selector.match_expressions.iter().flatten().all(|req| {
        let values = req.values.as_deref().unwrap_or_default();
        let value = labels.get(&req.key);
        match req.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_match && expressions_match
}

fn selects_everything(selector: &LabelSelector) -> bool {
    selector
        .match_labels
        .as_ref()
        .is_none_or(BTreeMap::is_empty)
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty)
}

/// Resolves the governing policy of `key` and checks the key against it.
pub async fn resolve(key: &AccessKey, ctx: &Context) -> Result<Result<Governing, Unresolved>> {
    let policy = match find_policy(key, ctx) {
        Ok(policy) => policy,
        Err(unresolved) => return Ok(Err(unresolved)),
    };
    let Some(policy) = policy else {
        let spec = AccessKeyPolicySpec::default();
        return Ok(check_key(key, None, &spec, None));
    };
    let name = policy.name_any();
    if let Some(selector) = policy
        .spec
        .namespace_selector
        .as_ref()
        .filter(|s| !selects_everything(s))
    {
        let namespace = key.namespace().unwrap_or_default();
        let labels = Api::<Namespace>::all(ctx.client.clone())
            .get_opt(&namespace)
            .await
            .map_err(Error::ReadNamespace)?
            .map(|ns| ns.labels().clone())
            .unwrap_or_default();
        if !selector_matches(selector, &labels) {
            return Ok(Err(unresolved(
                reasons::NAMESPACE_NOT_SELECTED,
                format!("AccessKeyPolicy {name:?} does not select namespace {namespace:?}"),
            )));
        }
    }
    let applied_at = policy.status.as_ref().and_then(|s| s.applied_at);
    Ok(check_key(key, Some(name), &policy.spec, applied_at))
}

/// Checks the key's scopes and origins against the policy and parses its timers.
fn check_key(
    key: &AccessKey,
    name: Option<String>,
    spec: &AccessKeyPolicySpec,
    applied_at: Option<DateTime<Utc>>,
) -> Result<Governing, Unresolved> {
    let label = name.as_deref().unwrap_or("built-in defaults");
    let timers = timers(spec).map_err(|message| {
        unresolved(
            reasons::INVALID_SPEC,
            format!("AccessKeyPolicy {label:?}: {message}"),
        )
    })?;
    if !spec.allowed_scopes.is_empty() {
        let denied: Vec<&str> = key
            .spec
            .scopes
            .iter()
            .filter(|s| !spec.allowed_scopes.contains(s))
            .map(String::as_str)
            .collect();
        if !denied.is_empty() || key.spec.scopes.is_empty() {
            return Err(unresolved(
                reasons::SCOPE_NOT_ALLOWED,
                format!(
                    "AccessKeyPolicy {label:?} allows only scopes {:?}; requested {:?}",
                    spec.allowed_scopes,
                    if key.spec.scopes.is_empty() {
                        vec!["<all>"]
                    } else {
                        denied
                    }
                ),
            ));
        }
    }
    if spec.require_allowed_origins && key.spec.allowed_origins.is_empty() {
        return Err(unresolved(
            reasons::ORIGINS_REQUIRED,
            format!("AccessKeyPolicy {label:?} requires spec.allowedOrigins"),
        ));
    }
    Ok(Governing {
        name,
        max_keys_per_owner: spec.max_keys_per_owner,
        applied_at,
        timers,
        owner_secret_access: spec.owner_secret_access,
    })
}

/// Whether a key of this spec is governed by `policy` (named, or defaulted to it).
pub fn governs(policy: &AccessKeyPolicy, policy_name: Option<&str>) -> bool {
    match policy_name {
        Some(name) => name == policy.name_any(),
        None => {
            policy
                .annotations()
                .get(DEFAULT_POLICY_ANNOTATION)
                .map(String::as_str)
                == Some("true")
        }
    }
}

/// Reconciles a policy: records when its spec took effect and how many keys it governs.
pub async fn reconcile_policy(policy: Arc<AccessKeyPolicy>, ctx: Arc<Context>) -> Result<Action> {
    let now = ctx.now();
    let generation = policy.meta().generation;
    let current = policy.status.clone().unwrap_or_default();
    let applied_at = match current.applied_at {
        Some(at) if current.observed_generation == generation => at,
        _ => now,
    };
    let governed = ctx
        .keys
        .state()
        .iter()
        .filter(|k| governs(&policy, k.policy_name()))
        .count();
    let (status, reason, message) = match timers(&policy.spec) {
        Ok(_) => (
            "True",
            reasons::ACCEPTED,
            "policy is valid and applied".to_string(),
        ),
        Err(message) => ("False", reasons::INVALID_SPEC, message),
    };
    let desired = AccessKeyPolicyStatus {
        observed_generation: generation,
        applied_at: Some(applied_at),
        governed_keys: Some(u32::try_from(governed).unwrap_or(u32::MAX)),
        conditions: Vec::new(),
    };
    let accepted = condition(
        &current.conditions,
        types::ACCEPTED,
        status,
        reason,
        &message,
        generation,
        now,
    );
    // why: a policy is applied as soon as it is observed; only an invalid spec holds it.
    let [reconciling, stalled] = progress::conditions(
        std::slice::from_ref(&accepted),
        InFlight::Idle,
        &current.conditions,
        generation,
        now,
    );
    let desired = AccessKeyPolicyStatus {
        conditions: vec![accepted, reconciling, stalled],
        ..desired
    };
    if desired != current {
        let patch = serde_json::json!({
            "apiVersion": "keywarden.io/v1alpha1",
            "kind": "AccessKeyPolicy",
            "status": desired,
        });
        Api::<AccessKeyPolicy>::all(ctx.client.clone())
            .patch_status(
                &policy.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
            .map_err(Error::ApplyPolicyStatus)?;
    }
    ctx.policy_retries.reset(&ObjectRef::from_obj(&*policy));
    Ok(Action::await_change())
}

/// Backs off per policy on transient errors: exponentially, reset by the next success.
pub fn error_policy(policy: Arc<AccessKeyPolicy>, err: &Error, ctx: Arc<Context>) -> Action {
    let retry_in = ctx.policy_retries.failed(ObjectRef::from_obj(&*policy));
    tracing::warn!(
        name = policy.name_any(),
        error = %err,
        retry_in_ms = u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX),
        "policy reconcile failed"
    );
    Action::requeue(retry_in)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn match_labels_must_all_match() {
        let selector = LabelSelector {
            match_labels: Some(labels(&[("team", "a")])),
            ..LabelSelector::default()
        };
        assert!(selector_matches(
            &selector,
            &labels(&[("team", "a"), ("x", "y")])
        ));
        assert!(!selector_matches(&selector, &labels(&[("team", "b")])));
    }

    #[test]
    fn match_expressions_follow_kubernetes_operators() {
        let req = |operator: &str, values: &[&str]| LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "env".into(),
                operator: operator.into(),
                values: Some(values.iter().map(|v| v.to_string()).collect()),
            }]),
            ..LabelSelector::default()
        };
        let prod = labels(&[("env", "prod")]);
        let none = labels(&[]);
        assert!(selector_matches(&req("In", &["prod"]), &prod));
        assert!(!selector_matches(&req("In", &["prod"]), &none));
        assert!(selector_matches(&req("NotIn", &["dev"]), &prod));
        assert!(selector_matches(&req("NotIn", &["dev"]), &none));
        assert!(selector_matches(&req("Exists", &[]), &prod));
        assert!(selector_matches(&req("DoesNotExist", &[]), &none));
        assert!(!selector_matches(&req("Bogus", &[]), &prod));
    }

    fn key(scopes: &[&str], origins: &[&str]) -> AccessKey {
        let mut key = AccessKey::new(
            "k",
            crate::api::AccessKeySpec {
                owner: crate::api::KeyOwner {
                    kind: crate::api::OwnerKind::User,
                    name: "alice".into(),
                },
                display_name: None,
                description: None,
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                owner_groups: Vec::new(),
                allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
                active: true,
                rotate_generation: 0,
                reactivate_generation: 0,
                policy_name: None,
                rollout: None,
                secret: crate::api::SecretTemplate::default(),
            },
        );
        key.metadata.namespace = Some("team-a".into());
        key
    }

    #[test]
    fn scopes_outside_the_policy_are_refused() {
        let spec = AccessKeyPolicySpec {
            allowed_scopes: vec!["logs:view".into()],
            ..AccessKeyPolicySpec::default()
        };
        assert!(check_key(&key(&["logs:view"], &[]), None, &spec, None).is_ok());
        let refused = check_key(&key(&["logs:manage"], &[]), None, &spec, None).unwrap_err();
        assert_eq!(refused.reason, reasons::SCOPE_NOT_ALLOWED);
        let all = check_key(&key(&[], &[]), None, &spec, None).unwrap_err();
        assert_eq!(
            all.reason,
            reasons::SCOPE_NOT_ALLOWED,
            "empty scopes mean all scopes"
        );
    }

    #[test]
    fn required_origins_must_be_listed() {
        let spec = AccessKeyPolicySpec {
            require_allowed_origins: true,
            ..AccessKeyPolicySpec::default()
        };
        let refused = check_key(&key(&[], &[]), None, &spec, None).unwrap_err();
        assert_eq!(refused.reason, reasons::ORIGINS_REQUIRED);
        assert!(check_key(&key(&[], &["https://app.example.com"]), None, &spec, None).is_ok());
    }

    #[test]
    fn built_in_defaults_govern_with_their_timers() {
        let governing =
            check_key(&key(&[], &[]), None, &AccessKeyPolicySpec::default(), None).unwrap();
        assert_eq!(governing.max_keys_per_owner, 5);
        assert_eq!(
            governing.timers.expire_after,
            Some(chrono::Duration::days(180))
        );
        assert_eq!(
            governing.timers.deactivate_after_unused,
            Some(chrono::Duration::days(30))
        );
        assert_eq!(
            governing.timers.rotation_grace_period,
            chrono::Duration::minutes(5)
        );
        assert_eq!(governing.timers.rotate_before_expiry, None);
    }

    #[test]
    fn an_invalid_duration_is_named() {
        let spec = AccessKeyPolicySpec {
            expire_after: "soon".into(),
            ..AccessKeyPolicySpec::default()
        };
        let refused = check_key(&key(&[], &[]), Some("p".into()), &spec, None).unwrap_err();
        assert_eq!(refused.reason, reasons::INVALID_SPEC);
        assert!(
            refused.message.contains("spec.expireAfter"),
            "{}",
            refused.message
        );
    }
}
