//! Unit tests: policy holds all the time, not only at issuance (pure status decisions).

use super::policy::{Governing, Unresolved};
use super::tests::{at, condition, decide, governing, issuance, key};
use crate::api::conditions::{reasons, types};
use crate::api::{AccessKey, AccessKeyStatus, DeactivationReason, Phase};

/// The key as the API returns it after the controller wrote `status`.
fn with_status(mut key: AccessKey, status: AccessKeyStatus) -> AccessKey {
    key.status = Some(status);
    key
}

fn named(name: &str, expire: i64, applied_at: i64) -> Governing {
    Governing {
        name: Some(name.into()),
        applied_at: Some(at(applied_at)),
        ..governing(expire, 0, 0, 0)
    }
}

fn violation() -> Unresolved {
    Unresolved {
        reason: reasons::SCOPE_NOT_ALLOWED,
        message: "AccessKeyPolicy \"p\" allows only scopes [\"logs:view\"]".into(),
    }
}

#[test]
fn an_expired_key_stays_expired_under_another_or_a_missing_policy() {
    let (expired, _) = decide(
        &key(),
        Some(&issuance(0)),
        Ok(&named("short", 10, 0)),
        None,
        20,
    );
    assert_eq!(expired.phase, Some(Phase::Expired));
    let key = with_status(key(), expired.clone());
    for policy in [Ok(&named("long", 1000, 15)), Ok(&named("short", 1000, 15))] {
        let (status, _) = decide(&key, Some(&issuance(0)), policy, None, 30);
        assert_eq!(status.phase, Some(Phase::Expired));
    }
    let (status, _) = decide(&key, Some(&issuance(0)), Err(&violation()), None, 30);
    assert_eq!(status.phase, Some(Phase::Expired));
    assert_eq!(status.expires_at, expired.expires_at);
}

#[test]
fn switching_policies_never_moves_expiry_later() {
    let (short, _) = decide(
        &key(),
        Some(&issuance(0)),
        Ok(&named("short", 100, 0)),
        None,
        10,
    );
    assert_eq!(short.expires_at, Some(at(100)));
    let key = with_status(key(), short);
    let (switched, _) = decide(
        &key,
        Some(&issuance(0)),
        Ok(&named("long", 1000, 5)),
        None,
        20,
    );
    assert_eq!(switched.expires_at, Some(at(100)));
    assert_eq!(switched.phase, Some(Phase::Active));
    let key = with_status(super::tests::key(), switched);
    let (again, _) = decide(
        &key,
        Some(&issuance(0)),
        Ok(&named("long", 1000, 5)),
        None,
        30,
    );
    assert_eq!(
        again.expires_at,
        Some(at(100)),
        "the cap holds on later reconciles"
    );
    let (earlier, _) = decide(
        &key,
        Some(&issuance(0)),
        Ok(&named("tiny", 50, 0)),
        None,
        30,
    );
    assert_eq!(
        earlier.expires_at,
        Some(at(50)),
        "an earlier expiry applies"
    );
}

#[test]
fn a_change_of_the_policy_itself_or_a_rotation_resets_expiry() {
    let (first, _) = decide(
        &key(),
        Some(&issuance(0)),
        Ok(&named("p", 100, 0)),
        None,
        10,
    );
    let key = with_status(key(), first);
    let (changed, _) = decide(
        &key,
        Some(&issuance(0)),
        Ok(&named("p", 1000, 50)),
        None,
        60,
    );
    assert_eq!(changed.expires_at, Some(at(1050)));
    let mut rotated = issuance(40);
    rotated.access_key_id = "AKWROTATED".into();
    let (status, _) = decide(&key, Some(&rotated), Ok(&named("q", 1000, 0)), None, 60);
    assert_eq!(status.expires_at, Some(at(1040)));
}

#[test]
fn an_unused_key_stays_unused_until_reactivated() {
    let (unused, _) = decide(
        &key(),
        Some(&issuance(0)),
        Ok(&governing(0, 10, 0, 0)),
        None,
        20,
    );
    assert_eq!(unused.deactivation_reason, Some(DeactivationReason::Unused));
    let stale = with_status(key(), unused);
    let lenient = governing(0, 1000, 0, 0);
    let (status, _) = decide(&stale, Some(&issuance(0)), Ok(&lenient), None, 30);
    assert_eq!(status.deactivation_reason, Some(DeactivationReason::Unused));
    let mut reactivated = stale.clone();
    reactivated.spec.reactivate_generation = 1;
    let (status, _) = decide(&reactivated, Some(&issuance(0)), Ok(&lenient), None, 30);
    assert_eq!(status.phase, Some(Phase::Active));
}

#[test]
fn an_issued_key_whose_spec_leaves_its_policy_is_inactive_and_keeps_its_grants() {
    let mut scoped = key();
    scoped.spec.scopes = vec!["logs:view".into()];
    let (approved, _) = decide(
        &scoped,
        Some(&issuance(0)),
        Ok(&governing(0, 0, 0, 0)),
        None,
        10,
    );
    assert_eq!(approved.granted_scopes, Some(vec!["logs:view".to_string()]));
    assert_eq!(approved.granted_origins, Some(vec![]));

    let mut widened = with_status(scoped, approved);
    widened.spec.scopes.push("collectors:manage".into());
    let (status, _) = decide(&widened, Some(&issuance(0)), Err(&violation()), None, 20);
    assert_eq!(status.phase, Some(Phase::Inactive));
    assert_eq!(
        status.deactivation_reason,
        Some(DeactivationReason::PolicyViolation)
    );
    assert_eq!(status.granted_scopes, Some(vec!["logs:view".to_string()]));
    assert_eq!(
        condition(&status, types::READY),
        ("False", reasons::POLICY_VIOLATION)
    );
    let events = super::audit::transitions(widened.status.as_ref().unwrap(), &status);
    assert!(
        events
            .iter()
            .any(|e| e.warning && e.reason == reasons::POLICY_VIOLATION),
        "{events:?}"
    );
}

#[test]
fn a_key_is_not_granted_anything_before_its_spec_is_approved() {
    let (status, _) = decide(&key(), None, Err(&violation()), None, 0);
    assert_eq!(status.granted_scopes, None);
    assert_eq!(status.phase, Some(Phase::Pending));
}
