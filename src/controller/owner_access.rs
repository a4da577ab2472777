//! The owner reads their own key: per key, a Role granting `get` on exactly the key's Secret and
//! a RoleBinding of it to the key's owner, both controlled by the key (so garbage collection
//! removes them with it). Self-service then needs no namespace-wide Secret access. A policy with
//! `ownerSecretAccess: false` withholds them.
//!
//! The names are deterministic, so anyone who may create Roles in the namespace can take them
//! first; an object at those names that this key does not control is never adopted or changed:
//! the key reports it and its owner is granted nothing.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use super::audit::AuditEvent;
use super::context::Context;
use super::grant_cache::{binding_digest, role_digest};
use super::issuance::SecretState;
use super::policy::Governing;
use super::status::condition;
use super::{Error, Result};
use crate::api::conditions::{reasons, types};
use crate::api::{AccessKey, AccessKeyStatus, OwnerKind, MANAGED_BY_LABEL, MANAGED_BY_VALUE};

/// Prefix of the names of a key's owner-access Role and RoleBinding.
pub const GRANT_NAME_PREFIX: &str = "keywarden-owner-";
/// Longest object name the API server accepts.
const MAX_NAME_LENGTH: usize = 253;
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// How soon a key whose grant names are taken looks again.
// why: a squatter's objects are not watched (only keywarden's, by label), so their removal
// triggers nothing; the conflicted keys, rare by nature, look again once a minute.
const CONFLICT_RECHECK: Duration = Duration::from_secs(60);

/// Whether the key's owner may read the key's Secret, and why not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnerAccess {
    Granted {
        secret_name: String,
    },
    Withheld {
        reason: &'static str,
        message: String,
    },
}

fn withheld(reason: &'static str, message: impl Into<String>) -> OwnerAccess {
    OwnerAccess::Withheld {
        reason,
        message: message.into(),
    }
}

/// The name of the Role and the RoleBinding of a key's owner access.
pub fn grant_name(key_name: &str) -> String {
    let name = format!("{GRANT_NAME_PREFIX}{key_name}");
    if name.len() <= MAX_NAME_LENGTH {
        return name;
    }
    // why: key names may be 253 characters; the prefix must not make a long one unusable.
    let digest = Sha256::digest(key_name.as_bytes());
    let suffix: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let kept = MAX_NAME_LENGTH - GRANT_NAME_PREFIX.len() - suffix.len() - 1;
    let kept: String = key_name.chars().take(kept).collect();
    format!("{GRANT_NAME_PREFIX}{kept}-{suffix}")
}

/// Decides whether the owner is to be granted `get` on the key's Secret: only when the policy
/// allows it and the Secret at the key's Secret name is the key's own (a grant on a foreign
/// Secret of that name would hand the owner someone else's data).
pub fn wanted(key: &AccessKey, secret: &SecretState, policy: Option<&Governing>) -> OwnerAccess {
    let Some(policy) = policy else {
        return withheld(
            reasons::POLICY_UNRESOLVED,
            "withheld while the key's policy does not resolve (see PolicyResolved)",
        );
    };
    if !policy.owner_secret_access {
        let label = policy.name.as_deref().unwrap_or("built-in defaults");
        return withheld(
            reasons::OWNER_ACCESS_DISABLED,
            format!("AccessKeyPolicy {label:?} sets ownerSecretAccess: false"),
        );
    }
    let secret_name = key.spec.secret_name(&key.name_any());
    match secret {
        SecretState::Held { .. } | SecretState::Unsealed { .. } => {
            OwnerAccess::Granted { secret_name }
        }
        SecretState::Missing | SecretState::Foreign => withheld(
            reasons::NO_SECRET_OF_ITS_OWN,
            format!("no Secret {secret_name:?} of this key exists"),
        ),
    }
}

/// The Role granting `get` on exactly the key's Secret.
pub fn desired_role(key: &AccessKey, secret_name: &str) -> Result<Role> {
    Ok(Role {
        metadata: grant_meta(key)?,
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["secrets".into()]),
            verbs: vec!["get".into()],
            resource_names: Some(vec![secret_name.to_owned()]),
            non_resource_urls: None,
        }]),
    })
}

/// The RoleBinding of the key's Role to the key's owner.
pub fn desired_binding(key: &AccessKey) -> Result<RoleBinding> {
    let meta = grant_meta(key)?;
    let subject = match key.spec.owner.kind {
        OwnerKind::User => Subject {
            api_group: Some(RBAC_GROUP.into()),
            kind: "User".into(),
            name: key.spec.owner.name.clone(),
            namespace: None,
        },
        OwnerKind::ServiceAccount => Subject {
            api_group: None,
            kind: "ServiceAccount".into(),
            name: key.spec.owner.name.clone(),
            namespace: meta.namespace.clone(),
        },
    };
    Ok(RoleBinding {
        role_ref: RoleRef {
            api_group: Some(RBAC_GROUP.into()),
            kind: "Role".into(),
            name: meta.name.clone().unwrap_or_default(),
        },
        metadata: meta,
        subjects: Some(vec![subject]),
    })
}

fn grant_meta(key: &AccessKey) -> Result<ObjectMeta> {
    let owner = key
        .controller_owner_ref(&())
        .ok_or(Error::MissingField("metadata.uid"))?;
    Ok(ObjectMeta {
        name: Some(grant_name(&key.name_any())),
        namespace: key.namespace(),
        labels: Some([(MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned())].into()),
        owner_references: Some(vec![owner]),
        ..ObjectMeta::default()
    })
}

/// Whether `meta` is controlled by the key with `uid`.
pub(super) fn controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|owner| owner.controller == Some(true) && owner.uid == uid)
}

pub(super) fn labelled(meta: &ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|labels| labels.get(MANAGED_BY_LABEL))
        .is_some_and(|value| value == MANAGED_BY_VALUE)
}

/// A rule with absent and empty lists made alike (the API server may return either).
fn normal_rule(rule: &PolicyRule) -> [Vec<String>; 5] {
    [
        rule.api_groups.clone().unwrap_or_default(),
        rule.resources.clone().unwrap_or_default(),
        rule.verbs.clone(),
        rule.resource_names.clone().unwrap_or_default(),
        rule.non_resource_urls.clone().unwrap_or_default(),
    ]
}

/// A subject with the API server's defaulting undone (`apiGroup: ""` for ServiceAccounts).
fn normal_subject(subject: &Subject) -> [String; 4] {
    [
        subject.kind.clone(),
        subject.api_group.clone().unwrap_or_default(),
        subject.name.clone(),
        subject.namespace.clone().unwrap_or_default(),
    ]
}

/// A Role's rules, each with absent and empty lists made alike.
pub(super) fn normal_rules(role: &Role) -> Vec<[Vec<String>; 5]> {
    role.rules.iter().flatten().map(normal_rule).collect()
}

/// A RoleBinding's subjects, each with the API server's defaulting undone.
pub(super) fn normal_subjects(binding: &RoleBinding) -> Vec<[String; 4]> {
    binding
        .subjects
        .iter()
        .flatten()
        .map(normal_subject)
        .collect()
}

/// Whether a Role of this key grants exactly what `desired` grants.
pub fn role_in_place(actual: &Role, desired: &Role) -> bool {
    labelled(&actual.metadata) && normal_rules(actual) == normal_rules(desired)
}

/// What a RoleBinding of this key needs to become `desired`.
#[derive(Debug, PartialEq, Eq)]
pub enum BindingChange {
    None,
    Update,
    /// `roleRef` is immutable: delete and create.
    Recreate,
}

/// Compares a RoleBinding of this key with the desired one.
pub fn binding_change(actual: &RoleBinding, desired: &RoleBinding) -> BindingChange {
    if actual.role_ref != desired.role_ref {
        BindingChange::Recreate
    } else if !labelled(&actual.metadata) || normal_subjects(actual) != normal_subjects(desired) {
        BindingChange::Update
    } else {
        BindingChange::None
    }
}

/// Grants or withholds the owner's access to the key's Secret; writes only what differs.
pub async fn reconcile(
    key: &AccessKey,
    ctx: &Context,
    secret: &SecretState,
    policy: Option<&Governing>,
) -> Result<OwnerAccess> {
    let namespace = key
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let uid = key.uid().ok_or(Error::MissingField("metadata.uid"))?;
    let name = grant_name(&key.name_any());
    let roles = Api::<Role>::namespaced(ctx.client.clone(), &namespace);
    let bindings = Api::<RoleBinding>::namespaced(ctx.client.clone(), &namespace);
    let cached_role = ctx.owner_roles.get(&namespace, &name);
    let cached_binding = ctx.owner_bindings.get(&namespace, &name);
    let access = wanted(key, secret, policy);
    let OwnerAccess::Granted { secret_name } = &access else {
        // why: the binding first, so no moment grants the owner a Role it should not hold.
        if let Some(binding) = cached_binding.filter(|b| b.controlled_by(&uid)) {
            delete_own(&bindings, &name, binding.uid()).await?;
        }
        if let Some(role) = cached_role.filter(|r| r.controlled_by(&uid)) {
            delete_own(&roles, &name, role.uid()).await?;
        }
        return Ok(access);
    };
    let role = desired_role(key, secret_name)?;
    let binding = desired_binding(key)?;
    // why: the caches keep a digest of each grant, not the object (see `grant_cache`).
    let cached_in_place = cached_role
        .as_ref()
        .is_some_and(|r| r.controlled_by(&uid) && r.digest == role_digest(&role))
        && cached_binding
            .as_ref()
            .is_some_and(|b| b.controlled_by(&uid) && b.digest == binding_digest(&binding));
    if cached_in_place {
        return Ok(access);
    }
    // why: the caches hold only objects labelled as keywarden's; a squatter's are seen by reading.
    // The binding is read before any Role is created: one at the grant's name that is not this
    // key's would be handed whatever our Role grants.
    let found_binding = bindings
        .get_opt(&name)
        .await
        .map_err(Error::ReadOwnerAccess)?;
    let binding_free = found_binding
        .as_ref()
        .is_none_or(|b| controlled_by(&b.metadata, &uid));
    let (found_role, role_created) = if cached_role.is_none() && binding_free {
        create_role_or_read(&roles, &role).await?
    } else {
        let found = roles.get_opt(&name).await.map_err(Error::ReadOwnerAccess)?;
        (found, false)
    };
    let foreign_role = found_role
        .as_ref()
        .filter(|r| !controlled_by(&r.metadata, &uid));
    let foreign_binding = found_binding
        .as_ref()
        .filter(|b| !controlled_by(&b.metadata, &uid));
    if foreign_role.is_some() || foreign_binding.is_some() {
        if let Some(own) = found_binding.as_ref().filter(|_| foreign_binding.is_none()) {
            delete_own(&bindings, &name, own.metadata.uid.clone()).await?;
        }
        if let Some(own) = found_role.as_ref().filter(|_| foreign_role.is_none()) {
            delete_own(&roles, &name, own.metadata.uid.clone()).await?;
        }
        let taken: Vec<String> = [
            foreign_role.map(|_| format!("Role {namespace}/{name}")),
            foreign_binding.map(|_| format!("RoleBinding {namespace}/{name}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        return Ok(withheld(
            reasons::OWNER_ACCESS_CONFLICT,
            format!(
                "{} exists and is not controlled by this key; the owner gets no access to Secret {secret_name:?} until it is removed",
                taken.join(" and ")
            ),
        ));
    }
    if !role_created {
        ensure_role(&roles, found_role, role).await?;
    }
    ensure_binding(&bindings, found_binding, binding).await?;
    Ok(access)
}

/// Creates the Role when no Role of ours is cached: the create itself tells whether one exists
/// (409), which saves reading it first in the usual case, a new key. Returns the Role found
/// instead, if any, and whether ours was created.
async fn create_role_or_read(api: &Api<Role>, desired: &Role) -> Result<(Option<Role>, bool)> {
    match api.create(&PostParams::default(), desired).await {
        Ok(_) => Ok((None, true)),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let found = api
                .get_opt(&desired.name_any())
                .await
                .map_err(Error::ReadOwnerAccess)?;
            Ok((found, false))
        }
        Err(err) => Err(Error::WriteOwnerAccess(err)),
    }
}

async fn ensure_role(api: &Api<Role>, found: Option<Role>, mut desired: Role) -> Result<()> {
    match found {
        None => {
            api.create(&PostParams::default(), &desired)
                .await
                .map_err(Error::WriteOwnerAccess)?;
        }
        Some(found) if !role_in_place(&found, &desired) => {
            desired.metadata.resource_version = found.metadata.resource_version.clone();
            api.replace(&found.name_any(), &PostParams::default(), &desired)
                .await
                .map_err(Error::WriteOwnerAccess)?;
        }
        Some(_) => {}
    }
    Ok(())
}

async fn ensure_binding(
    api: &Api<RoleBinding>,
    found: Option<RoleBinding>,
    mut desired: RoleBinding,
) -> Result<()> {
    let change = found.as_ref().map(|found| binding_change(found, &desired));
    match (found, change) {
        (Some(found), Some(BindingChange::Update)) => {
            desired.metadata.resource_version = found.metadata.resource_version.clone();
            api.replace(&found.name_any(), &PostParams::default(), &desired)
                .await
                .map_err(Error::WriteOwnerAccess)?;
        }
        (Some(found), Some(BindingChange::Recreate)) => {
            delete_own(api, &found.name_any(), found.metadata.uid.clone()).await?;
            api.create(&PostParams::default(), &desired)
                .await
                .map_err(Error::WriteOwnerAccess)?;
        }
        (None, _) => {
            api.create(&PostParams::default(), &desired)
                .await
                .map_err(Error::WriteOwnerAccess)?;
        }
        (Some(_), _) => {}
    }
    Ok(())
}

/// Deletes an object of this key, on condition that it is still the one that was read (`uid`).
async fn delete_own<K>(api: &Api<K>, name: &str, uid: Option<String>) -> Result<()>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid,
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        // why: gone already, or replaced by an object that is not this one: nothing of ours left.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(err) => Err(Error::DeleteOwnerAccess(err)),
    }
}

/// When to reconcile again because of `access` alone: only while the grant names are taken.
pub fn recheck_after(access: &OwnerAccess) -> Option<Duration> {
    matches!(
        access,
        OwnerAccess::Withheld {
            reason: reasons::OWNER_ACCESS_CONFLICT,
            ..
        }
    )
    .then_some(CONFLICT_RECHECK)
}

/// The `OwnerCanRead` condition reporting `access`.
pub fn owner_condition(
    access: &OwnerAccess,
    existing: &[Condition],
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Condition {
    match access {
        OwnerAccess::Granted { secret_name } => condition(
            existing,
            types::OWNER_CAN_READ,
            "True",
            reasons::OWNER_ACCESS_GRANTED,
            &format!("the owner may get Secret {secret_name:?}"),
            generation,
            now,
        ),
        OwnerAccess::Withheld { reason, message } => condition(
            existing,
            types::OWNER_CAN_READ,
            "False",
            reason,
            message,
            generation,
            now,
        ),
    }
}

/// The Warning event due when the owner's access newly conflicts with someone else's object.
pub fn transitions(old: &AccessKeyStatus, new: &AccessKeyStatus) -> Option<AuditEvent> {
    let owner_condition = |s: &AccessKeyStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == types::OWNER_CAN_READ)
            .map(|c| (c.reason.clone(), c.message.clone()))
    };
    let after = owner_condition(new)?;
    if after.0 != reasons::OWNER_ACCESS_CONFLICT || owner_condition(old).as_ref() == Some(&after) {
        return None;
    }
    Some(AuditEvent::warning(
        reasons::OWNER_ACCESS_CONFLICT,
        after.1,
        None,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::tests::{governing, key};

    fn held() -> SecretState {
        SecretState::Unsealed {
            resource_version: Some("1".into()),
        }
    }

    #[test]
    fn the_owner_is_granted_only_a_secret_the_key_owns() {
        let key = key();
        let policy = governing(0, 0, 0, 0);
        assert_eq!(
            wanted(&key, &held(), Some(&policy)),
            OwnerAccess::Granted {
                secret_name: "ci-access-key".into()
            }
        );
        for state in [SecretState::Foreign, SecretState::Missing] {
            assert!(matches!(
                wanted(&key, &state, Some(&policy)),
                OwnerAccess::Withheld {
                    reason: reasons::NO_SECRET_OF_ITS_OWN,
                    ..
                }
            ));
        }
    }

    #[test]
    fn a_policy_turns_owner_access_off_and_an_unresolved_one_withholds_it() {
        let key = key();
        let off = Governing {
            owner_secret_access: false,
            ..governing(0, 0, 0, 0)
        };
        assert!(matches!(
            wanted(&key, &held(), Some(&off)),
            OwnerAccess::Withheld { reason: reasons::OWNER_ACCESS_DISABLED, ref message }
                if message.contains("\"default\"")
        ));
        assert!(matches!(
            wanted(&key, &held(), None),
            OwnerAccess::Withheld {
                reason: reasons::POLICY_UNRESOLVED,
                ..
            }
        ));
    }

    #[test]
    fn the_role_grants_get_on_exactly_the_keys_secret() {
        let role = desired_role(&key(), "ci-access-key").unwrap();
        assert_eq!(role.metadata.name.as_deref(), Some("keywarden-owner-ci"));
        let rules = role.rules.unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].verbs, vec!["get"]);
        assert_eq!(rules[0].resources, Some(vec!["secrets".to_string()]));
        assert_eq!(
            rules[0].resource_names,
            Some(vec!["ci-access-key".to_string()])
        );
        let owner = &role.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.uid.as_str(), owner.controller),
            ("uid-1", Some(true))
        );
    }

    #[test]
    fn bindings_name_users_and_service_accounts_as_rbac_expects() {
        let user = desired_binding(&key()).unwrap();
        let subject = &user.subjects.unwrap()[0];
        assert_eq!(
            (subject.kind.as_str(), subject.api_group.as_deref()),
            ("User", Some(RBAC_GROUP))
        );
        let mut sa_key = key();
        sa_key.spec.owner.kind = OwnerKind::ServiceAccount;
        sa_key.spec.owner.name = "ci".into();
        let sa = desired_binding(&sa_key).unwrap();
        let subject = &sa.subjects.unwrap()[0];
        assert_eq!(subject.kind, "ServiceAccount");
        assert_eq!(subject.namespace.as_deref(), Some("team-a"));
        assert_eq!(sa.role_ref.name, "keywarden-owner-ci");
    }

    #[test]
    fn a_binding_differing_in_subject_is_updated_and_in_role_is_recreated() {
        let desired = desired_binding(&key()).unwrap();
        let mut defaulted = desired.clone();
        defaulted.metadata.resource_version = Some("7".into());
        assert_eq!(binding_change(&defaulted, &desired), BindingChange::None);
        let mut other_subject = desired.clone();
        other_subject.subjects.as_mut().unwrap()[0].name = "mallory".into();
        assert_eq!(
            binding_change(&other_subject, &desired),
            BindingChange::Update
        );
        let mut other_role = desired.clone();
        other_role.role_ref.name = "admin".into();
        assert_eq!(
            binding_change(&other_role, &desired),
            BindingChange::Recreate
        );
    }

    #[test]
    fn a_role_with_more_rules_is_not_in_place() {
        let desired = desired_role(&key(), "ci-access-key").unwrap();
        let mut wider = desired.clone();
        wider.rules.as_mut().unwrap()[0].resource_names = None;
        assert!(role_in_place(&desired, &desired));
        assert!(!role_in_place(&wider, &desired));
    }

    #[test]
    fn long_key_names_get_grant_names_the_api_server_accepts() {
        let long = "k".repeat(253);
        let name = grant_name(&long);
        assert!(name.len() <= MAX_NAME_LENGTH);
        assert_ne!(name, grant_name(&"k".repeat(252)));
        assert_eq!(grant_name("ci"), "keywarden-owner-ci");
    }

    #[test]
    fn only_a_conflict_is_looked_at_again_without_a_change() {
        let conflict = withheld(reasons::OWNER_ACCESS_CONFLICT, "Role team-a/x exists");
        assert_eq!(recheck_after(&conflict), Some(CONFLICT_RECHECK));
        let disabled = withheld(reasons::OWNER_ACCESS_DISABLED, "off");
        assert_eq!(recheck_after(&disabled), None);
        let granted = OwnerAccess::Granted {
            secret_name: "ci-access-key".into(),
        };
        assert_eq!(recheck_after(&granted), None);
    }

    #[test]
    fn a_new_conflict_is_reported_once_as_a_warning() {
        let conflict = OwnerAccess::Withheld {
            reason: reasons::OWNER_ACCESS_CONFLICT,
            message: "Role team-a/keywarden-owner-ci exists".into(),
        };
        let before = AccessKeyStatus::default();
        let after = AccessKeyStatus {
            conditions: vec![owner_condition(&conflict, &[], Some(1), Utc::now())],
            ..AccessKeyStatus::default()
        };
        let event = transitions(&before, &after).expect("a warning");
        assert!(event.warning && event.message.contains("keywarden-owner-ci"));
        assert_eq!(transitions(&after, &after), None);
    }
}
