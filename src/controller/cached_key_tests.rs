//! Tests of the compact cached key: what survives the cache, and the digest.

use std::collections::BTreeMap;

use chrono::Duration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};

use super::*;
use crate::api::DeactivationReason;
use crate::api::{KeyOwner, OwnerKind, PreviousKey, ScopeReview};
use crate::controller::status::to_time;
use crate::controller::tests::{at, key};

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: Some(4),
        last_transition_time: to_time(at(7)),
    }
}

/// A key with every status field set, previous keys, a scope review, every condition (and one
/// of a type and reason keywarden does not know), and keywarden's annotations.
fn populated() -> AccessKey {
    let mut key = key();
    key.metadata.resource_version = Some("812".into());
    key.metadata.generation = Some(4);
    key.metadata.creation_timestamp = Some(to_time(at(0)));
    key.metadata.deletion_timestamp = Some(to_time(at(90)));
    key.metadata.annotations = Some(BTreeMap::from([(
        crate::api::REQUESTED_BY_ANNOTATION.into(),
        "alice".into(),
    )]));
    key.spec.scopes = vec!["logs:view".into(), "collectors:manage".into()];
    key.spec.owner_groups = vec!["devs".into()];
    key.spec.allowed_origins = vec!["https://app.example.com".into()];
    key.spec.display_name = Some("CI deployer".into());
    key.spec.policy_name = Some("strict".into());
    key.spec.rotate_generation = 2;
    key.spec.description = Some("deploys from CI".into());
    key.spec.secret.name = Some("ci-credentials".into());
    key.spec.secret.labels = BTreeMap::from([("team".into(), "a".into())]);
    key.spec.secret.annotations = BTreeMap::from([("note".into(), "x".into())]);
    // why: a target with a selector holds k8s-openapi types, which write an optional field's
    // value bare.
    key.spec.rollout = Some(
        serde_json::from_value(serde_json::json!({"targets": [
            {"kind": "Deployment", "name": "web"},
            {"kind": "StatefulSet", "selector": {
                "matchLabels": {"app": "db"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}],
            }},
        ]}))
        .unwrap(),
    );
    let owner = key.spec.owner.username("team-a");
    key.status = Some(AccessKeyStatus {
        phase: Some(Phase::Inactive),
        access_key_id: Some("AKW0000CURRENT".into()),
        secret_name: Some("ci-access-key".into()),
        secret_hash: Some("$argon2id$v=19$m=1024,t=1,p=1$c2FsdA$aGFzaA".into()),
        secret_resource_version: Some("77".into()),
        previous_keys: vec![
            PreviousKey {
                access_key_id: "AKW0000PREVIOUS".into(),
                secret_hash: "$argon2id$v=19$m=1024,t=1,p=1$b2xk$b2xk".into(),
                valid_until: at(300),
            },
            PreviousKey {
                access_key_id: "AKW0000OLDEST".into(),
                secret_hash: "$argon2id$v=19$m=1024,t=1,p=1$b2xkZXI$b2xkZXI".into(),
                valid_until: at(200) + Duration::nanoseconds(5),
            },
        ],
        policy: Some("strict".into()),
        policy_applied_at: Some(at(1)),
        granted_scopes: Some(vec!["logs:view".into()]),
        scope_review: Some(ScopeReview {
            fingerprint: "f1ngerprint".into(),
            not_held: vec!["collectors:manage".into()],
        }),
        granted_origins: Some(vec!["https://app.example.com".into()]),
        issued_at: Some(at(2)),
        created_by: Some("alice".into()),
        rotated_at: Some(at(3)),
        expires_at: Some(at(4)),
        last_used_at: Some(at(5)),
        reactivated_at: Some(at(6)),
        deactivated_at: Some(at(8)),
        deactivation_reason: Some(DeactivationReason::Manual),
        observed_generation: Some(4),
        observed_rotate_generation: Some(2),
        observed_reactivate_generation: Some(0),
        conditions: vec![
            condition(
                types::READY,
                "False",
                reasons::DEACTIVATED,
                "spec.active is false",
            ),
            condition(types::ISSUED, "True", reasons::ISSUED, "access ID issued"),
            condition(
                types::LIMIT_EXCEEDED,
                "False",
                reasons::WITHIN_LIMIT,
                "within",
            ),
            condition(
                types::POLICY_RESOLVED,
                "True",
                reasons::POLICY_RESOLVED,
                "by strict",
            ),
            condition(
                types::SECRET_PRESENT,
                "False",
                reasons::SECRET_MODIFIED,
                "someone changed data key token",
            ),
            condition(
                types::OWNER_CAN_READ,
                "False",
                reasons::OWNER_ACCESS_CONFLICT,
                "Role team-a/keywarden-owner-ci exists",
            ),
            condition(
                types::SCOPES_HELD,
                "True",
                reasons::SCOPES_HELD,
                &super::super::scopes_held::all_held_message(&owner, true),
            ),
            condition(types::RECONCILING, "False", reasons::RECONCILED, "idle"),
            condition(
                types::STALLED,
                "True",
                reasons::SECRET_MODIFIED,
                "a person must look",
            ),
            condition("Custom", "Weird", "SomethingElse", "not ours"),
        ],
    });
    key
}

/// `key` as the cache expands it: messages empty unless kept.
fn without_dropped_messages(mut key: AccessKey) -> AccessKey {
    for c in &mut key.status.as_mut().unwrap().conditions {
        if !message_kept(&c.type_, &c.status) {
            c.message.clear();
        }
    }
    key
}

fn assert_same(actual: &AccessKey, expected: &AccessKey) {
    assert_eq!(actual.metadata, expected.metadata);
    assert_eq!(actual.spec, expected.spec);
    assert_eq!(actual.status, expected.status);
}

#[test]
fn a_fully_populated_key_expands_back_to_itself_but_for_dropped_messages() {
    let key = populated();
    let cached = cached(key.clone());
    let expanded = cached.expand().unwrap();
    assert_same(&expanded, &without_dropped_messages(key.clone()));
    let conditions = &expanded.status.as_ref().unwrap().conditions;
    let message = |type_: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == type_)
            .map(|c| c.message.as_str())
    };
    assert_eq!(message(types::READY), Some(""));
    assert_eq!(
        message(types::SECRET_PRESENT),
        Some("someone changed data key token")
    );
    assert_eq!(
        message(types::OWNER_CAN_READ),
        Some("Role team-a/keywarden-owner-ci exists")
    );
    assert_eq!(
        message(types::SCOPES_HELD),
        Some("owner \"alice\" holds every scope of the key")
    );
    assert_eq!(
        cached.status_digest(),
        status_digest(key.status.as_ref().unwrap())
    );
    assert_eq!(cached.phase(), Some(Phase::Inactive));
    assert_eq!(cached.access_key_id().as_deref(), Some("AKW0000CURRENT"));
    assert!(cached.is_issued());
    assert_eq!(cached.owner_identity(), "alice");
}

#[test]
fn scopes_held_messages_are_kept_whatever_they_say_and_for_a_service_account() {
    let mut key = populated();
    key.spec.owner = KeyOwner {
        kind: OwnerKind::ServiceAccount,
        name: "ci".into(),
    };
    let owner = "system:serviceaccount:team-a:ci";
    let messages = [
        super::super::scopes_held::all_held_message(owner, false),
        super::super::scopes_held::all_held_message(owner, true),
        // why: what a rebuilt message could not say (another owner's, or not-held scopes).
        super::super::scopes_held::all_held_message("alice", true),
        format!("owner {owner:?} does not hold logs:manage"),
    ];
    for message in messages {
        let status = key.status.as_mut().unwrap();
        let held = status
            .conditions
            .iter_mut()
            .find(|c| c.type_ == types::SCOPES_HELD)
            .unwrap();
        held.message.clone_from(&message);
        let expanded = cached(key.clone()).expand().unwrap();
        assert_same(&expanded, &without_dropped_messages(key.clone()));
    }
}

#[test]
fn a_key_without_status_expands_without_status_and_digests_as_the_default_status() {
    let key = key();
    let cached = cached(key.clone());
    assert_same(&cached.expand().unwrap(), &key);
    assert_eq!(
        cached.status_digest(),
        status_digest(&AccessKeyStatus::default())
    );
    assert_eq!(cached.phase(), None);
    assert!(!cached.is_issued());
}

#[test]
fn statuses_differing_in_one_conditions_message_digest_differently() {
    let status = populated().status.unwrap();
    for (i, c) in status.conditions.iter().enumerate() {
        let mut edited = status.clone();
        edited.conditions[i].message.push('!');
        assert_ne!(
            status_digest(&status),
            status_digest(&edited),
            "message of {}",
            c.type_
        );
        let cached = cached(AccessKey {
            status: Some(edited.clone()),
            ..populated()
        });
        assert_eq!(cached.status_digest(), status_digest(&edited));
    }
}

#[test]
fn the_digest_covers_every_field_and_ignores_condition_order() {
    let status = populated().status.unwrap();
    let mut reordered = status.clone();
    reordered.conditions.reverse();
    assert_eq!(status_digest(&status), status_digest(&reordered));

    let edits: Vec<fn(&mut AccessKeyStatus)> = vec![
        |s| s.last_used_at = Some(at(5) + Duration::nanoseconds(1)),
        |s| s.secret_resource_version = Some("78".into()),
        |s| {
            s.previous_keys.pop();
        },
        |s| s.scope_review.as_mut().unwrap().not_held.clear(),
        |s| s.granted_origins = Some(vec![]),
        |s| s.observed_generation = None,
        |s| s.conditions[0].observed_generation = Some(5),
        |s| {
            s.conditions[0].last_transition_time = Time(
                s.conditions[0].last_transition_time.0
                    + k8s_openapi::jiff::SignedDuration::from_nanos(1),
            )
        },
        |s| s.conditions[1].status = "Unknown".into(),
        |s| s.conditions[1].reason = reasons::PENDING.into(),
    ];
    for (i, edit) in edits.into_iter().enumerate() {
        let mut edited = status.clone();
        edit(&mut edited);
        assert_ne!(status_digest(&status), status_digest(&edited), "edit {i}");
    }
}

#[test]
fn cached_keys_keep_the_metadata_reconcile_reads_and_keywardens_annotations() {
    let mut key = key();
    key.metadata.resource_version = Some("7".into());
    key.metadata.generation = Some(3);
    key.metadata.labels = Some(BTreeMap::from([("team".into(), "a".into())]));
    key.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    key.metadata.owner_references = Some(vec![OwnerReference::default()]);
    key.metadata.annotations = Some(BTreeMap::from([
        (LAST_APPLIED.into(), "{}".into()),
        (crate::api::REQUESTED_BY_ANNOTATION.into(), "alice".into()),
    ]));
    let mut expected = key.metadata.clone();
    expected.labels = None;
    expected.finalizers = None;
    expected.owner_references = None;
    expected.annotations = Some(BTreeMap::from([(
        crate::api::REQUESTED_BY_ANNOTATION.into(),
        "alice".into(),
    )]));
    let cached = cached(key);
    assert_eq!(cached.meta(), &expected);
    assert_eq!(
        crate::api::requested_by(&cached.expand().unwrap()),
        Some("alice")
    );
}

#[test]
fn a_watched_key_is_compacted_as_it_is_read() {
    let mut key = populated();
    key.metadata.managed_fields = Some(vec![Default::default()]);
    let json = serde_json::to_string(&key).unwrap();
    let watched: CachedKey = serde_json::from_str(&json).unwrap();
    assert_eq!(watched.meta().managed_fields, None);
    assert_same(&watched.expand().unwrap(), &cached(key).expand().unwrap());
    assert_eq!(CachedKey::kind(&()), "AccessKey");
    assert_eq!(CachedKey::api_version(&()), "keywarden.io/v1alpha1");
    assert_eq!(CachedKey::plural(&()), "accesskeys");
}

#[test]
fn a_cached_key_is_a_fraction_of_the_key_it_stands_for() {
    let key = populated();
    let json = serde_json::to_vec(&key).unwrap().len();
    let cached = cached(key);
    let inline = std::mem::size_of::<CachedKey>();
    println!(
        "inline bytes: CachedKey {inline}, AccessKey {}, ObjectMeta {}; packed spec and status {} \
         bytes, the key as JSON {json}",
        std::mem::size_of::<AccessKey>(),
        std::mem::size_of::<ObjectMeta>(),
        cached.packed.len(),
    );
    assert!(inline <= std::mem::size_of::<ObjectMeta>() + 128);
    assert!(cached.packed.len() * 2 < json);
}

fn cached(key: AccessKey) -> CachedKey {
    CachedKey::try_from(key).expect("packs")
}
