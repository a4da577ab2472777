//! The desired status of an AccessKey, decided from its Secret, policy and timers (pure).

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::Resource;

use super::issuance::Issuance;
use super::policy::{self, Governing, Unresolved};
use super::progress::{self, InFlight};
use crate::api::conditions::{reasons, types};
use crate::api::{
    requested_by, AccessKey, AccessKeyPolicySpec, AccessKeyStatus, DeactivationReason, Phase,
};
use crate::keys::limits::LimitDecision;
use crate::keys::schedule::{self, KeyTimes, Timers};

/// Builds a condition, keeping `lastTransitionTime` when its status did not change.
pub fn condition(
    existing: &[Condition],
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    observed_generation: Option<i64>,
    now: DateTime<Utc>,
) -> Condition {
    let last_transition_time = existing
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| to_time(now));
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation,
        last_transition_time,
    }
}

/// Converts a chrono time to a Kubernetes `Time`.
pub fn to_time(at: DateTime<Utc>) -> Time {
    let nanos =
        i128::from(at.timestamp()) * 1_000_000_000 + i128::from(at.timestamp_subsec_nanos());
    Time(k8s_openapi::jiff::Timestamp::from_nanosecond(nanos).unwrap_or_default())
}

/// Where the key's Secret stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretPresence {
    /// The Secret holds the current issuance.
    Present,
    /// The Secret is the key's, but someone else changed its data (the message says which).
    Modified(String),
    /// The key was issued but its Secret is gone.
    Missing,
    /// A Secret of that name exists but is not this key's (or lost its annotations).
    Foreign,
    /// Nothing issued yet.
    NotIssued,
}

/// Everything the status decision looks at.
pub struct Observed<'a> {
    pub key: &'a AccessKey,
    pub issuance: Option<&'a Issuance>,
    pub secret: SecretPresence,
    /// The Secret's resource version its data was last written or checked at.
    pub secret_resource_version: Option<&'a str>,
    pub policy: Result<&'a Governing, &'a Unresolved>,
    /// Limit decision for a key not issued yet.
    pub limit: Option<LimitDecision>,
    /// Conditions decided by other parts of the reconcile (the owner's access to the Secret),
    /// kept in status and weighed by the kstatus summary.
    pub other_conditions: Vec<Condition>,
    pub now: DateTime<Utc>,
}

/// The timers in force: the governing policy's, else the built-in defaults for issued keys.
pub fn effective_timers(
    policy: Result<&Governing, &Unresolved>,
) -> (Timers, Option<DateTime<Utc>>) {
    match policy {
        Ok(governing) => (governing.timers, governing.applied_at),
        Err(_) => (
            policy::timers(&AccessKeyPolicySpec::default()).unwrap_or(Timers {
                expire_after: None,
                deactivate_after_unused: None,
                rotation_grace_period: chrono::Duration::zero(),
                rotate_before_expiry: None,
            }),
            None,
        ),
    }
}

/// The key times of the current issuance.
pub fn key_times(
    issuance: &Issuance,
    status: &AccessKeyStatus,
    applied_at: Option<DateTime<Utc>>,
    reactivated_at: Option<DateTime<Utc>>,
) -> KeyTimes {
    KeyTimes {
        issued_at: issuance.issued_at,
        policy_applied_at: applied_at,
        last_used_at: status.last_used_at,
        reactivated_at,
    }
}

/// The status the key should have and when to look at it again.
pub fn desired_status(o: &Observed) -> (AccessKeyStatus, Option<DateTime<Utc>>) {
    let current = o.key.status.clone().unwrap_or_default();
    let generation = o.key.meta().generation;
    let now = o.now;
    let wanted_reactivation = o.key.spec.reactivate_generation;
    let reactivated_at =
        if wanted_reactivation > current.observed_reactivate_generation.unwrap_or(0) {
            Some(now)
        } else {
            current.reactivated_at
        };
    let (timers, applied_at) = effective_timers(o.policy);

    let approved = o.policy.is_ok();
    let mut status = AccessKeyStatus {
        secret_name: Some(
            o.key
                .spec
                .secret_name(&o.key.meta().name.clone().unwrap_or_default()),
        ),
        policy: o.policy.ok().and_then(|g| g.name.clone()),
        // why: the verifier serves these, so a spec edit counts only once checked here.
        granted_scopes: if approved {
            Some(o.key.spec.scopes.clone())
        } else {
            current.granted_scopes.clone()
        },
        granted_origins: if approved {
            Some(o.key.spec.allowed_origins.clone())
        } else {
            current.granted_origins.clone()
        },
        reactivated_at,
        // why: recorded once, at first sight, from the create's annotation; the admission
        // policy lets no one add or change that annotation before the controller has seen
        // the key, and later annotations name later requesters, not the creator.
        created_by: match &o.key.status {
            None => requested_by(o.key).map(str::to_owned),
            Some(_) => current.created_by.clone(),
        },
        observed_generation: generation,
        observed_reactivate_generation: Some(wanted_reactivation),
        ..AccessKeyStatus::default()
    };
    let mut next = None;
    let (phase, reason) = match o.issuance {
        Some(issuance) => {
            let same_issuance =
                current.access_key_id.as_deref() == Some(issuance.access_key_id.as_str());
            let times = key_times(issuance, &current, applied_at, reactivated_at);
            let (expires_at, policy_applied_at) = held_expiry(
                &current,
                o.policy,
                schedule::expires_at(&times, &timers),
                same_issuance,
            );
            let fired = |at: Option<DateTime<Utc>>| at.is_some_and(|at| now >= at);
            // why: Expired and Unused hold until a rotation or a reactivation; no later
            // policy, spec or clock reading revives the key.
            let stays_expired = same_issuance && current.phase == Some(Phase::Expired);
            let reactivated = reactivated_at != current.reactivated_at;
            let stays_unused = same_issuance
                && !reactivated
                && current.deactivation_reason == Some(DeactivationReason::Unused);
            let (phase, reason) = if stays_expired || fired(expires_at) {
                (Phase::Expired, Some(DeactivationReason::Expired))
            } else if stays_unused {
                (Phase::Inactive, Some(DeactivationReason::Unused))
            } else if !approved {
                (Phase::Inactive, Some(DeactivationReason::PolicyViolation))
            } else if !o.key.spec.active {
                (Phase::Inactive, Some(DeactivationReason::Manual))
            } else if fired(schedule::unused_deadline(&times, &timers)) {
                (Phase::Inactive, Some(DeactivationReason::Unused))
            } else {
                (Phase::Active, None)
            };
            status.previous_keys = issuance
                .previous_keys
                .iter()
                .filter(|p| p.valid_until > now)
                .cloned()
                .collect();
            let grace_ends = status.previous_keys.iter().map(|p| Some(p.valid_until));
            next = schedule::next_deadline(
                [
                    schedule::rotation_due_at(&times, &timers),
                    expires_at,
                    schedule::unused_deadline(&times, &timers),
                ]
                .into_iter()
                .chain(grace_ends),
                now,
            );
            status.access_key_id = Some(issuance.access_key_id.clone());
            status.secret_hash = Some(issuance.secret_hash.clone());
            status.secret_resource_version = o.secret_resource_version.map(str::to_string);
            status.issued_at = Some(issuance.first_issued_at);
            status.rotated_at = issuance.is_rotation().then_some(issuance.issued_at);
            status.expires_at = expires_at;
            status.policy_applied_at = policy_applied_at;
            status.observed_rotate_generation = Some(issuance.rotate_generation);
            (phase, reason)
        }
        None if matches!(o.limit, Some(LimitDecision::Exceeded { .. })) => {
            (Phase::Rejected, Some(DeactivationReason::PolicyLimit))
        }
        None => (Phase::Pending, None),
    };
    status.phase = Some(phase);
    status.deactivation_reason = reason;
    if reason.is_some() && phase != Phase::Rejected {
        let unchanged = current.phase == Some(phase) && current.deactivation_reason == reason;
        status.deactivated_at = if unchanged {
            current.deactivated_at
        } else {
            Some(now)
        };
    }
    status.conditions = conditions(o, &current.conditions, phase, reason);
    status.conditions.extend(o.other_conditions.iter().cloned());
    let in_flight = match o.issuance {
        None if phase == Phase::Pending => InFlight::Issuing,
        Some(i) if o.key.spec.rotate_generation > i.rotate_generation => InFlight::Rotating,
        _ => InFlight::Idle,
    };
    let summary = progress::conditions(
        &status.conditions,
        in_flight,
        &current.conditions,
        generation,
        now,
    );
    status.conditions.extend(summary);
    status.last_used_at = current.last_used_at;
    (status, next)
}

/// The expiry in force and the policy `appliedAt` it was decided under. Switching policies never
/// moves the expiry of an issuance later; a change of the governing policy itself (a new
/// `appliedAt`) or a rotation (a new issuance) may. An unresolved policy keeps the expiry.
pub fn held_expiry(
    current: &AccessKeyStatus,
    policy: Result<&Governing, &Unresolved>,
    computed: Option<DateTime<Utc>>,
    same_issuance: bool,
) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let applied_at = policy.ok().and_then(|g| g.applied_at);
    if !same_issuance {
        return (computed, applied_at);
    }
    let policy_changed_itself =
        policy.is_ok_and(|g| g.name == current.policy && g.applied_at != current.policy_applied_at);
    if policy_changed_itself {
        return (computed, applied_at);
    }
    let applied_at = match policy {
        Ok(_) => applied_at,
        Err(_) => current.policy_applied_at,
    };
    let held = match (current.expires_at, computed) {
        (Some(held), Some(computed)) => Some(held.min(computed)),
        (Some(held), None) => Some(held),
        (None, computed) if policy.is_ok() => computed,
        (None, _) => None,
    };
    (held, applied_at)
}

fn conditions(
    o: &Observed,
    existing: &[Condition],
    phase: Phase,
    reason: Option<DeactivationReason>,
) -> Vec<Condition> {
    let generation = o.key.meta().generation;
    let cond = |type_: &str, ok: bool, reason: &str, message: String| {
        condition(
            existing,
            type_,
            if ok { "True" } else { "False" },
            reason,
            &message,
            generation,
            o.now,
        )
    };
    let policy = match o.policy {
        Ok(g) => cond(
            types::POLICY_RESOLVED,
            true,
            reasons::POLICY_RESOLVED,
            match &g.name {
                Some(name) => format!("governed by AccessKeyPolicy {name:?}"),
                None => "governed by the built-in defaults".into(),
            },
        ),
        Err(u) => cond(types::POLICY_RESOLVED, false, u.reason, u.message.clone()),
    };
    let limit = match o.limit {
        Some(LimitDecision::Exceeded { issued, limit }) => cond(
            types::LIMIT_EXCEEDED,
            true,
            reasons::LIMIT_EXCEEDED,
            format!(
                "owner {:?} holds {issued} of at most {limit} issued keys",
                super::context::key_owner_identity(o.key)
            ),
        ),
        _ => cond(
            types::LIMIT_EXCEEDED,
            false,
            reasons::WITHIN_LIMIT,
            "owner is within the policy's key limit".into(),
        ),
    };
    let issued = match o.issuance {
        Some(i) => cond(
            types::ISSUED,
            true,
            reasons::ISSUED,
            format!("access ID {} issued", i.access_key_id),
        ),
        None if phase == Phase::Rejected => cond(
            types::ISSUED,
            false,
            reasons::LIMIT_EXCEEDED,
            "not issued: owner key limit reached".into(),
        ),
        None => cond(
            types::ISSUED,
            false,
            reasons::PENDING,
            "not issued yet".into(),
        ),
    };
    let secret = match &o.secret {
        SecretPresence::Present => cond(
            types::SECRET_PRESENT,
            true,
            reasons::SECRET_PRESENT,
            "Secret holds the current issuance".into(),
        ),
        SecretPresence::Modified(message) => cond(
            types::SECRET_PRESENT,
            false,
            reasons::SECRET_MODIFIED,
            message.clone(),
        ),
        SecretPresence::Missing => cond(
            types::SECRET_PRESENT,
            false,
            reasons::SECRET_MISSING,
            "Secret was deleted; it is not re-issued until the key is rotated".into(),
        ),
        SecretPresence::Foreign => cond(
            types::SECRET_PRESENT,
            false,
            reasons::SECRET_CONFLICT,
            "a Secret of that name exists but does not belong to this key".into(),
        ),
        SecretPresence::NotIssued => cond(
            types::SECRET_PRESENT,
            false,
            reasons::PENDING,
            "not issued yet".into(),
        ),
    };
    let ready = match (phase, reason) {
        (Phase::Active, _) => cond(types::READY, true, reasons::ISSUED, "key is active".into()),
        (Phase::Expired, _) => cond(
            types::READY,
            false,
            reasons::EXPIRED,
            "key expired; rotate it to issue a new one".into(),
        ),
        (_, Some(DeactivationReason::Unused)) => cond(
            types::READY,
            false,
            reasons::UNUSED,
            "key was unused too long; bump spec.reactivateGeneration to reactivate".into(),
        ),
        (_, Some(DeactivationReason::PolicyViolation)) => cond(
            types::READY,
            false,
            reasons::POLICY_VIOLATION,
            match o.policy {
                Err(u) => format!(
                    "deactivated until the spec is within its policy: {}",
                    u.message
                ),
                Ok(_) => "deactivated until the spec is within its policy".into(),
            },
        ),
        (Phase::Inactive, _) => cond(
            types::READY,
            false,
            reasons::DEACTIVATED,
            "spec.active is false".into(),
        ),
        (Phase::Rejected, _) => cond(
            types::READY,
            false,
            reasons::LIMIT_EXCEEDED,
            "owner key limit reached".into(),
        ),
        (Phase::Pending, _) => cond(
            types::READY,
            false,
            reasons::PENDING,
            "not issued yet".into(),
        ),
    };
    vec![ready, issued, limit, policy, secret]
}
