//! RBAC as kube-apiserver evaluates it: roles and bindings indexed by subject, aggregated
//! ClusterRoles, bootstrap policy, escalation prevention and the access-review APIs.

mod aggregation;
mod bootstrap;
mod escalation;
mod index;
mod review;
pub mod rule;

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde_json::{json, Map, Value};

use super::{Attributes, Authorizer, Decision, UserInfo, MASTERS_GROUP};
use crate::status::ApiError;
use crate::store::{StorageKey, Store};
use index::{Index, Visit};
use rule::PolicyRule;

pub(crate) use escalation::check_escalation;
pub(crate) use review::access_review;

/// The RBAC authorizer (`system:masters` is always allowed).
///
/// Its index follows the store through a commit hook, so a role or binding is in effect for the
/// very next request after its write returns, and `authorize` never takes the store lock.
pub struct Rbac {
    index: RwLock<Index>,
}

impl Rbac {
    /// An authorizer that follows `store`'s roles and bindings, with the ClusterRole aggregation
    /// controller running on every ClusterRole change and the bootstrap policy written.
    pub fn install(store: &Store) -> Arc<Self> {
        let rbac = Arc::new(Self {
            index: RwLock::new(Index::default()),
        });
        for key in [
            index::ROLES,
            index::ROLE_BINDINGS,
            index::CLUSTER_ROLE_BINDINGS,
        ] {
            let follower = rbac.clone();
            store.on_commit(
                StorageKey::from(key),
                Arc::new(move |_, change| follower.write_index().apply(change)),
            );
        }
        let follower = rbac.clone();
        let aggregator = aggregation::Aggregator::default();
        store.on_commit(
            StorageKey::from(index::CLUSTER_ROLES),
            Arc::new(move |state, change| {
                follower.write_index().apply(change);
                aggregator.sync(state);
            }),
        );
        bootstrap::write(&mut store.lock());
        rbac
    }

    fn read_index(&self) -> RwLockReadGuard<'_, Index> {
        // why: every index update completes before its guard drops, so a poisoned lock still
        // holds a consistent index.
        self.index
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_index(&self) -> RwLockWriteGuard<'_, Index> {
        self.index
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every rule RBAC grants `user` in `namespace` (cluster-wide rules included), and the
    /// errors resolving bindings whose role is missing.
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> (Vec<PolicyRule>, Vec<String>) {
        self.read_index().rules_for(user, namespace)
    }

    /// The rules a binding's roleRef grants, or kube-apiserver's error for a missing role.
    fn role_rules(
        &self,
        role_ref: &index::RoleRef,
        namespace: &str,
    ) -> Result<Vec<PolicyRule>, String> {
        self.read_index()
            .role_rules(role_ref, namespace)
            .map(<[PolicyRule]>::to_vec)
    }
}

impl Authorizer for Rbac {
    fn authorize(&self, attributes: &Attributes) -> Decision {
        if attributes.user.groups.iter().any(|g| g == MASTERS_GROUP) {
            return Decision::Allow("".into());
        }
        let index = self.read_index();
        let mut allowed = None;
        let mut errors = Vec::new();
        index.visit_rules_for(
            &attributes.user,
            &attributes.namespace,
            |visit| match visit {
                Visit::Rule(rule, source) if rule.allows(attributes) => {
                    allowed = Some(source.allow_reason.clone());
                    false
                }
                Visit::Rule(..) => true,
                Visit::Error(err) => {
                    errors.push(err);
                    true
                }
            },
        );
        match allowed {
            Some(reason) => Decision::Allow(reason),
            None if errors.is_empty() => Decision::NoOpinion("".into()),
            None => Decision::NoOpinion(format!("RBAC: {}", index::aggregate(&errors)).into()),
        }
    }
}

/// Go's `%q` for the strings in kube-apiserver's messages.
fn quote(s: &str) -> String {
    format!("{s:?}")
}

/// `resource` for the core group, `resource.group` otherwise (`GroupResource.String()`).
fn group_resource(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

/// kube-apiserver's `NewForbidden(groupResource, name, err)`.
fn forbidden_error(group: &str, resource: &str, name: &str, err: &str) -> ApiError {
    let qualified = if resource.is_empty() {
        String::new()
    } else {
        group_resource(group, resource)
    };
    let message = match (qualified.is_empty(), name.is_empty()) {
        (true, _) => format!("forbidden: {err}"),
        (false, true) => format!("{qualified} is forbidden: {err}"),
        (false, false) => format!("{qualified} {} is forbidden: {err}", quote(name)),
    };
    let mut details = Map::new();
    for (field, value) in [("name", name), ("group", group), ("kind", resource)] {
        if !value.is_empty() {
            details.insert(field.into(), json!(value));
        }
    }
    ApiError::forbidden(message).with_details(Value::Object(details))
}

/// The 403 kube-apiserver answers when `decision` does not allow `attributes`.
pub fn forbidden(attributes: &Attributes, decision: &Decision) -> ApiError {
    let user = quote(&attributes.user.username);
    let verb = &attributes.verb;
    let denial = if !attributes.resource_request {
        format!("User {user} cannot {verb} path {}", quote(&attributes.path))
    } else {
        let mut resource = attributes.resource.clone();
        if !attributes.subresource.is_empty() {
            resource = format!("{resource}/{}", attributes.subresource);
        }
        let scope = if attributes.namespace.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace {}", quote(&attributes.namespace))
        };
        format!(
            "User {user} cannot {verb} resource {} in API group {} {scope}",
            quote(&resource),
            quote(&attributes.api_group)
        )
    };
    let err = match decision.reason() {
        "" => denial,
        reason => format!("{denial}: {reason}"),
    };
    if !attributes.resource_request {
        return forbidden_error("", "", "", &err);
    }
    forbidden_error(
        &attributes.api_group,
        &attributes.resource,
        &attributes.name,
        &err,
    )
}

/// A server-side apply that creates `name` also needs `create` (kube-apiserver's patch handler
/// authorizes the create on its own, answering the bare reason when denied).
pub(crate) fn check_create_on_apply(
    authorizer: &dyn Authorizer,
    call: &crate::server::Call,
    name: &str,
) -> Result<(), ApiError> {
    let create = Attributes {
        user: call.user.clone(),
        verb: "create".into(),
        resource_request: true,
        api_group: call.rt.group.clone(),
        api_version: call.rt.version.clone(),
        resource: call.rt.plural.clone(),
        subresource: call.subresource.clone().unwrap_or_default(),
        namespace: call.namespace.clone(),
        name: name.into(),
        path: String::new(),
    };
    let decision = authorizer.authorize(&create);
    if decision.allowed() {
        return Ok(());
    }
    Err(forbidden_error(
        &call.rt.group,
        &call.rt.plural,
        name,
        decision.reason(),
    ))
}

/// The name a list or watch is narrowed to by `fieldSelector=metadata.name=<name>`:
/// kube-apiserver authorizes such a request as one for that name.
pub fn name_from_field_selector(selector: &str) -> Option<&str> {
    selector.split(',').find_map(|term| {
        let term = term.trim();
        let value = term
            .strip_prefix("metadata.name==")
            .or_else(|| term.strip_prefix("metadata.name="))?;
        let value = value.trim();
        // why: only a valid path segment name counts (`IsValidPathSegmentName`).
        let valid = !value.is_empty()
            && value != "."
            && value != ".."
            && !value.contains('/')
            && !value.contains('%');
        valid.then_some(value)
    })
}

#[cfg(test)]
mod tests;
