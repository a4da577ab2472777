//! Unit tests of the pure deciders: desired status and the Secret write step.

use chrono::{DateTime, Duration, Utc};

use super::access_key::{next_step, Step};
use super::issuance::{Issuance, SecretState};
use super::policy::{Governing, Unresolved};
use super::status::{desired_status, Observed, SecretPresence};
use crate::api::conditions::{reasons, types};
use crate::api::{
    AccessKey, AccessKeySpec, AccessKeyStatus, DeactivationReason, KeyOwner, OwnerKind, Phase,
    PreviousKey, SecretTemplate,
};
use crate::keys::limits::LimitDecision;
use crate::keys::schedule::{Timers, LAST_USE_WRITE_DELAY};

pub(super) fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
}

pub(super) fn key() -> AccessKey {
    let mut key = AccessKey::new(
        "ci",
        AccessKeySpec {
            owner: KeyOwner {
                kind: OwnerKind::User,
                name: "alice".into(),
            },
            display_name: None,
            description: None,
            scopes: vec![],
            owner_groups: Vec::new(),
            allowed_origins: vec![],
            active: true,
            rotate_generation: 0,
            reactivate_generation: 0,
            policy_name: None,
            rollout: None,
            secret: SecretTemplate::default(),
        },
    );
    key.metadata.namespace = Some("team-a".into());
    key.metadata.uid = Some("uid-1".into());
    key.metadata.generation = Some(1);
    key
}

pub(super) fn governing(expire: i64, unused: i64, grace: i64, rotate_before: i64) -> Governing {
    Governing {
        name: Some("default".into()),
        max_keys_per_owner: 5,
        applied_at: None,
        owner_secret_access: true,
        timers: Timers::from_durations(
            Duration::seconds(expire),
            Duration::seconds(unused),
            Duration::seconds(grace),
            Duration::seconds(rotate_before),
        ),
    }
}

pub(super) fn issuance(issued: i64) -> Issuance {
    Issuance {
        access_key_id: "AKWCURRENT".into(),
        rotate_generation: 0,
        issued_at: at(issued),
        first_issued_at: at(0),
        secret_hash: "$argon2id$current".into(),
        previous_keys: vec![],
    }
}

pub(super) fn decide(
    key: &AccessKey,
    issuance: Option<&Issuance>,
    policy: Result<&Governing, &Unresolved>,
    limit: Option<LimitDecision>,
    now: i64,
) -> (AccessKeyStatus, Option<DateTime<Utc>>) {
    desired_status(&Observed {
        key,
        issuance,
        secret: if issuance.is_some() {
            SecretPresence::Present
        } else {
            SecretPresence::NotIssued
        },
        secret_resource_version: None,
        policy,
        limit,
        other_conditions: Vec::new(),
        now: at(now),
    })
}

pub(super) fn condition<'a>(status: &'a AccessKeyStatus, type_: &str) -> (&'a str, &'a str) {
    let c = status.conditions.iter().find(|c| c.type_ == type_).unwrap();
    (c.status.as_str(), c.reason.as_str())
}

#[test]
fn issued_key_is_active_until_its_first_deadline() {
    let (status, next) = decide(
        &key(),
        Some(&issuance(0)),
        Ok(&governing(100, 30, 0, 0)),
        None,
        10,
    );
    assert_eq!(status.phase, Some(Phase::Active));
    assert_eq!(status.access_key_id.as_deref(), Some("AKWCURRENT"));
    assert_eq!(status.secret_hash.as_deref(), Some("$argon2id$current"));
    assert_eq!(status.expires_at, Some(at(100)));
    assert_eq!(status.rotated_at, None);
    // The unused deadline, with the slack a first use needs to reach status.
    assert_eq!(next, Some(at(30 + LAST_USE_WRITE_DELAY.as_secs() as i64)));
    assert_eq!(condition(&status, types::READY), ("True", reasons::ISSUED));
}

#[test]
fn key_past_expiry_is_expired() {
    let (status, next) = decide(
        &key(),
        Some(&issuance(0)),
        Ok(&governing(100, 0, 0, 0)),
        None,
        100,
    );
    assert_eq!(status.phase, Some(Phase::Expired));
    assert_eq!(
        status.deactivation_reason,
        Some(DeactivationReason::Expired)
    );
    assert_eq!(status.deactivated_at, Some(at(100)));
    assert_eq!(
        condition(&status, types::READY),
        ("False", reasons::EXPIRED)
    );
    assert_eq!(next, None);
}

#[test]
fn inactive_spec_deactivates_manually_and_keeps_the_deactivation_time() {
    let mut key = key();
    key.spec.active = false;
    let (first, _) = decide(
        &key,
        Some(&issuance(0)),
        Ok(&governing(0, 0, 0, 0)),
        None,
        10,
    );
    assert_eq!(first.phase, Some(Phase::Inactive));
    assert_eq!(first.deactivation_reason, Some(DeactivationReason::Manual));
    key.status = Some(first.clone());
    let (later, _) = decide(
        &key,
        Some(&issuance(0)),
        Ok(&governing(0, 0, 0, 0)),
        None,
        50,
    );
    assert_eq!(later.deactivated_at, Some(at(10)));
    assert_eq!(later, first, "nothing but time changed: no status write");
}

#[test]
fn unused_key_is_deactivated_and_a_reactivation_bump_revives_it() {
    let mut key = key();
    let (unused, _) = decide(
        &key,
        Some(&issuance(0)),
        Ok(&governing(0, 30, 0, 0)),
        None,
        40,
    );
    assert_eq!(unused.phase, Some(Phase::Inactive));
    assert_eq!(unused.deactivation_reason, Some(DeactivationReason::Unused));
    key.status = Some(unused);
    key.spec.reactivate_generation = 1;
    let (revived, next) = decide(
        &key,
        Some(&issuance(0)),
        Ok(&governing(0, 30, 0, 0)),
        None,
        45,
    );
    assert_eq!(revived.phase, Some(Phase::Active));
    assert_eq!(revived.reactivated_at, Some(at(45)));
    assert_eq!(revived.observed_reactivate_generation, Some(1));
    // why: 30 s unused plus the verifier's first-use write delay (keys::schedule).
    assert_eq!(next, Some(at(80)));
}

#[test]
fn recent_use_postpones_the_unused_deadline() {
    let mut key = key();
    key.status = Some(AccessKeyStatus {
        last_used_at: Some(at(20)),
        ..AccessKeyStatus::default()
    });
    let (status, next) = decide(
        &key,
        Some(&issuance(0)),
        Ok(&governing(0, 30, 0, 0)),
        None,
        40,
    );
    assert_eq!(status.phase, Some(Phase::Active));
    // why: 30 s after the use, plus the verifier's write interval and delay (keys::schedule).
    assert_eq!(next, Some(at(115)));
}

#[test]
fn previous_keys_are_kept_until_their_grace_period_ends() {
    let mut rotated = issuance(10);
    rotated.previous_keys = vec![PreviousKey {
        access_key_id: "AKWOLD".into(),
        secret_hash: "$argon2id$old".into(),
        valid_until: at(70),
    }];
    let (during, next) = decide(
        &key(),
        Some(&rotated),
        Ok(&governing(0, 0, 60, 0)),
        None,
        20,
    );
    assert_eq!(during.previous_keys.len(), 1);
    assert_eq!(during.rotated_at, Some(at(10)));
    assert_eq!(next, Some(at(70)));
    let (after, _) = decide(
        &key(),
        Some(&rotated),
        Ok(&governing(0, 0, 60, 0)),
        None,
        70,
    );
    assert!(after.previous_keys.is_empty());
}

#[test]
fn key_over_the_owner_limit_is_rejected() {
    let limit = LimitDecision::Exceeded {
        issued: 5,
        limit: 5,
    };
    let (status, _) = decide(&key(), None, Ok(&governing(0, 0, 0, 0)), Some(limit), 0);
    assert_eq!(status.phase, Some(Phase::Rejected));
    assert_eq!(status.access_key_id, None);
    assert_eq!(
        condition(&status, types::LIMIT_EXCEEDED),
        ("True", reasons::LIMIT_EXCEEDED)
    );
    assert_eq!(condition(&status, types::ISSUED).0, "False");
}

#[test]
fn unresolved_policy_leaves_the_key_pending() {
    let unresolved = Unresolved {
        reason: reasons::POLICY_NOT_FOUND,
        message: "AccessKeyPolicy \"strict\" does not exist".into(),
    };
    let (status, _) = decide(&key(), None, Err(&unresolved), None, 0);
    assert_eq!(status.phase, Some(Phase::Pending));
    assert_eq!(
        condition(&status, types::POLICY_RESOLVED),
        ("False", reasons::POLICY_NOT_FOUND)
    );
}

/// The status of an issued key whose Secret stands as `secret`, checked at `version`.
fn decide_secret(secret: SecretPresence, version: Option<&str>) -> AccessKeyStatus {
    let policy = governing(0, 0, 0, 0);
    desired_status(&Observed {
        key: &key(),
        issuance: Some(&issuance(0)),
        secret,
        secret_resource_version: version,
        policy: Ok(&policy),
        limit: None,
        other_conditions: Vec::new(),
        now: at(5),
    })
    .0
}

#[test]
fn modified_secret_data_is_reported_and_the_issued_key_stays_valid() {
    let message = "Secret data \"accessKey\" no longer holds the issued credentials";
    let status = decide_secret(SecretPresence::Modified(message.into()), Some("41"));
    let present = status
        .conditions
        .iter()
        .find(|c| c.type_ == types::SECRET_PRESENT)
        .unwrap();
    assert_eq!(
        (present.status.as_str(), present.reason.as_str()),
        ("False", reasons::SECRET_MODIFIED)
    );
    assert_eq!(present.message, message);
    assert_eq!(status.phase, Some(Phase::Active));
    assert_eq!(status.access_key_id.as_deref(), Some("AKWCURRENT"));
    assert_eq!(status.secret_hash.as_deref(), Some("$argon2id$current"));
    assert_eq!(status.secret_resource_version.as_deref(), Some("41"));
}

#[test]
fn the_checked_secret_version_is_recorded_only_while_the_secret_is_held() {
    let present = decide_secret(SecretPresence::Present, Some("42"));
    assert_eq!(
        condition(&present, types::SECRET_PRESENT),
        ("True", reasons::SECRET_PRESENT)
    );
    assert_eq!(present.secret_resource_version.as_deref(), Some("42"));
    let missing = decide_secret(SecretPresence::Missing, None);
    assert_eq!(
        condition(&missing, types::SECRET_PRESENT),
        ("False", reasons::SECRET_MISSING)
    );
    assert_eq!(missing.secret_resource_version, None);
}

#[test]
fn desired_status_never_carries_the_verifiers_last_use_into_the_write() {
    // why: the reconciler clears lastUsedAt before applying; desired status mirrors it only for comparison.
    let mut key = key();
    key.status = Some(AccessKeyStatus {
        last_used_at: Some(at(5)),
        ..AccessKeyStatus::default()
    });
    let (status, _) = decide(
        &key,
        Some(&issuance(0)),
        Ok(&governing(0, 0, 0, 0)),
        None,
        10,
    );
    assert_eq!(status.last_used_at, Some(at(5)));
}

fn held(issuance: Issuance) -> SecretState {
    SecretState::Held {
        issuance,
        resource_version: Some("7".into()),
    }
}

#[test]
fn a_key_without_secret_or_status_is_issued() {
    let step = next_step(
        &key(),
        &SecretState::Missing,
        None,
        Some(&governing(0, 0, 0, 0)),
        at(0),
    );
    assert_eq!(step, Step::IssueFirst);
}

#[test]
fn a_held_issuance_is_never_issued_again() {
    let step = next_step(
        &key(),
        &held(issuance(0)),
        None,
        Some(&governing(0, 0, 0, 0)),
        at(10),
    );
    assert_eq!(step, Step::Nothing);
}

#[test]
fn a_deleted_secret_is_not_silently_reissued() {
    let remembered = issuance(0);
    let policy = governing(0, 0, 0, 0);
    let step = next_step(
        &key(),
        &SecretState::Missing,
        Some(&remembered),
        Some(&policy),
        at(10),
    );
    assert_eq!(step, Step::Nothing);
    let mut rotate = key();
    rotate.spec.rotate_generation = 1;
    let step = next_step(
        &rotate,
        &SecretState::Missing,
        Some(&remembered),
        Some(&policy),
        at(10),
    );
    assert_eq!(step, Step::Reissue { prior: remembered });
}

#[test]
fn a_rotate_generation_bump_rotates_the_held_issuance() {
    let mut key = key();
    key.spec.rotate_generation = 1;
    let step = next_step(
        &key,
        &held(issuance(0)),
        Some(&issuance(0)),
        Some(&governing(0, 0, 0, 0)),
        at(10),
    );
    assert_eq!(
        step,
        Step::Rotate {
            prior: issuance(0),
            resource_version: Some("7".into())
        }
    );
}

#[test]
fn auto_rotation_rotates_before_expiry() {
    let policy = governing(100, 0, 0, 10);
    assert_eq!(
        next_step(
            &key(),
            &held(issuance(0)),
            Some(&issuance(0)),
            Some(&policy),
            at(89)
        ),
        Step::Nothing
    );
    assert!(matches!(
        next_step(
            &key(),
            &held(issuance(0)),
            Some(&issuance(0)),
            Some(&policy),
            at(90)
        ),
        Step::Rotate { .. }
    ));
}

#[test]
fn a_rotation_bump_rewrites_a_secret_whose_record_is_not_believed() {
    let mut key = key();
    key.spec.rotate_generation = 1;
    let unsealed = SecretState::Unsealed {
        resource_version: Some("8".into()),
    };
    let policy = governing(0, 0, 0, 0);
    assert_eq!(
        next_step(&key, &unsealed, Some(&issuance(0)), Some(&policy), at(10)),
        Step::Rotate {
            prior: issuance(0),
            resource_version: Some("8".into())
        }
    );
    assert_eq!(
        next_step(&key, &unsealed, None, Some(&policy), at(10)),
        Step::Nothing,
        "without a status there is nothing known to rotate from"
    );
}

#[test]
fn nothing_is_issued_without_a_policy_or_into_a_foreign_secret() {
    assert_eq!(
        next_step(&key(), &SecretState::Missing, None, None, at(0)),
        Step::Nothing
    );
    let policy = governing(0, 0, 0, 0);
    assert_eq!(
        next_step(&key(), &SecretState::Foreign, None, Some(&policy), at(0)),
        Step::Nothing
    );
}

mod transitions {
    use super::*;
    use crate::controller::audit::transitions;

    fn status(phase: Phase, reason: Option<DeactivationReason>) -> AccessKeyStatus {
        AccessKeyStatus {
            phase: Some(phase),
            deactivation_reason: reason,
            access_key_id: Some("AKWX".into()),
            ..AccessKeyStatus::default()
        }
    }

    fn reasons_of(old: &AccessKeyStatus, new: &AccessKeyStatus) -> Vec<&'static str> {
        transitions(old, new).iter().map(|e| e.reason).collect()
    }

    #[test]
    fn phase_changes_are_audited_with_their_reason() {
        let active = status(Phase::Active, None);
        let manual = status(Phase::Inactive, Some(DeactivationReason::Manual));
        let unused = status(Phase::Inactive, Some(DeactivationReason::Unused));
        let expired = status(Phase::Expired, Some(DeactivationReason::Expired));
        assert_eq!(reasons_of(&active, &manual), [reasons::DEACTIVATED]);
        assert_eq!(reasons_of(&manual, &active), [reasons::ACTIVATED]);
        assert_eq!(reasons_of(&active, &unused), [reasons::UNUSED]);
        assert_eq!(reasons_of(&unused, &active), [reasons::REACTIVATED]);
        assert_eq!(reasons_of(&active, &expired), [reasons::EXPIRED]);
        assert!(reasons_of(&active, &active).is_empty());
    }

    #[test]
    fn first_activation_is_not_audited_twice() {
        // why: the issuance itself is audited as Issued at the Secret write.
        let pending = status(Phase::Pending, None);
        assert!(reasons_of(&pending, &status(Phase::Active, None)).is_empty());
    }

    #[test]
    fn a_limit_rejection_is_a_warning() {
        let events = transitions(
            &AccessKeyStatus::default(),
            &status(Phase::Rejected, Some(DeactivationReason::PolicyLimit)),
        );
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].reason, reasons::LIMIT_EXCEEDED);
        assert!(events[0].warning);
    }

    fn with_secret(reason: &str, message: &str) -> AccessKeyStatus {
        let mut status = status(Phase::Active, None);
        status.conditions = vec![crate::controller::status::condition(
            &[],
            types::SECRET_PRESENT,
            if reason == reasons::SECRET_PRESENT {
                "True"
            } else {
                "False"
            },
            reason,
            message,
            Some(1),
            at(0),
        )];
        status
    }

    #[test]
    fn modified_secret_data_is_a_warning_naming_the_data_key_once() {
        let present = with_secret(reasons::SECRET_PRESENT, "Secret holds the current issuance");
        let modified = with_secret(reasons::SECRET_MODIFIED, "Secret data \"token\" changed");
        let events = transitions(&present, &modified);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].reason, reasons::SECRET_MODIFIED);
        assert!(events[0].warning);
        assert!(events[0].message.contains("\"token\""));
        assert!(transitions(&modified, &modified).is_empty());
        let other_key = with_secret(
            reasons::SECRET_MODIFIED,
            "Secret data \"accessKey\" changed",
        );
        assert_eq!(
            reasons_of(&modified, &other_key),
            [reasons::SECRET_MODIFIED]
        );
        assert!(reasons_of(&modified, &present).is_empty(), "restored");
    }

    #[test]
    fn the_end_of_a_grace_period_is_audited() {
        let mut old = status(Phase::Active, None);
        old.previous_keys = vec![PreviousKey {
            access_key_id: "AKWOLD".into(),
            secret_hash: "$argon2id$old".into(),
            valid_until: at(10),
        }];
        let new = status(Phase::Active, None);
        assert_eq!(reasons_of(&old, &new), [reasons::GRACE_PERIOD_ENDED]);
    }
}

mod metrics {
    use crate::controller::metrics::Metrics;

    #[test]
    fn metrics_expose_issuances_and_reconcile_figures() {
        let metrics = Metrics::default();
        metrics.issuances.inc();
        metrics.observe_reconcile(std::time::Duration::from_millis(3), true);
        let text = metrics.encode().unwrap();
        assert!(text.contains("keywarden_issuances_total 1"), "{text}");
        assert!(
            text.contains("keywarden_reconcile_errors_total 1"),
            "{text}"
        );
        assert!(
            text.contains("keywarden_reconcile_duration_seconds_count 1"),
            "{text}"
        );
    }
}
