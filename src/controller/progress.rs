//! The kstatus conditions `Reconciling` and `Stalled`, decided from the other conditions (pure).
//!
//! GitOps tools (kstatus, Flux, Argo CD's health checks) read these two: `Reconciling` only while
//! the controller has work in flight for the current generation, never while a timer runs;
//! `Stalled` while the object needs a person. `Ready` keeps its own meaning (the key is usable).

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::status::condition;
use crate::api::conditions::{reasons, types};

/// Condition types whose `True` status is the abnormal one.
const ABNORMAL_WHEN_TRUE: [&str; 1] = [types::LIMIT_EXCEEDED];

/// Condition types that summarize the others rather than report a fact of their own.
const SUMMARIES: [&str; 3] = [types::READY, types::RECONCILING, types::STALLED];

/// `Ready` reasons that are not a blocker: waiting for the controller, or deactivated on purpose.
const READY_NOT_BLOCKED: [&str; 2] = [reasons::PENDING, reasons::DEACTIVATED];

/// `False` reasons of other conditions that need no person: waiting for the controller, turned
/// off on purpose, or following from a blocker another condition already reports.
const FALSE_NOT_BLOCKED: [&str; 4] = [
    reasons::PENDING,
    reasons::OWNER_ACCESS_DISABLED,
    reasons::NO_SECRET_OF_ITS_OWN,
    reasons::POLICY_UNRESOLVED,
];

/// What a person must resolve, as the blocking condition's reason and message, if anything: `Ready`'s own reason
/// first, then any other condition in its abnormal state (a positive condition `False` for a
/// reason not in [`FALSE_NOT_BLOCKED`], or `LimitExceeded` `True`).
pub fn blocker(conditions: &[Condition]) -> Option<(String, String)> {
    let ready = conditions.iter().find(|c| c.type_ == types::READY);
    let ready_blocked =
        ready.filter(|c| c.status == "False" && !READY_NOT_BLOCKED.contains(&c.reason.as_str()));
    let other_blocked = || {
        conditions.iter().find(|c| {
            !SUMMARIES.contains(&c.type_.as_str())
                && if ABNORMAL_WHEN_TRUE.contains(&c.type_.as_str()) {
                    c.status == "True"
                } else {
                    c.status == "False" && !FALSE_NOT_BLOCKED.contains(&c.reason.as_str())
                }
        })
    };
    ready_blocked
        .or_else(other_blocked)
        .map(|c| (c.reason.clone(), c.message.clone()))
}

/// Work the controller has in flight for the current generation, as a reason and a message.
pub enum InFlight {
    /// Nothing to do until the spec changes or a timer fires.
    Idle,
    /// The first issuance is being written.
    Issuing,
    /// A requested rotation is being written.
    Rotating,
}

/// `Reconciling` and `Stalled` for an object with these other conditions; a blocker wins over
/// work in flight (work that cannot proceed is not in progress).
pub fn conditions(
    others: &[Condition],
    in_flight: InFlight,
    existing: &[Condition],
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> [Condition; 2] {
    let blocked = blocker(others);
    let stalled = match &blocked {
        Some((reason, message)) => condition(
            existing,
            types::STALLED,
            "True",
            reason,
            message,
            generation,
            now,
        ),
        None => condition(
            existing,
            types::STALLED,
            "False",
            reasons::RECONCILED,
            "nothing needs a person",
            generation,
            now,
        ),
    };
    let (status, reason, message) = match (&blocked, in_flight) {
        (None, InFlight::Issuing) => ("True", reasons::ISSUING, "issuing the first secret"),
        (None, InFlight::Rotating) => ("True", reasons::ROTATING, "rotating to a new secret"),
        _ => (
            "False",
            reasons::RECONCILED,
            "no work in flight for this generation",
        ),
    };
    let reconciling = condition(
        existing,
        types::RECONCILING,
        status,
        reason,
        message,
        generation,
        now,
    );
    [reconciling, stalled]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(type_: &str, status: &str, reason: &str) -> Condition {
        condition(&[], type_, status, reason, "why", Some(1), Utc::now())
    }

    fn healthy() -> Vec<Condition> {
        vec![
            cond(types::READY, "True", reasons::ISSUED),
            cond(types::ISSUED, "True", reasons::ISSUED),
            cond(types::LIMIT_EXCEEDED, "False", reasons::WITHIN_LIMIT),
            cond(types::POLICY_RESOLVED, "True", reasons::POLICY_RESOLVED),
            cond(types::SECRET_PRESENT, "True", reasons::SECRET_PRESENT),
        ]
    }

    fn with(mut conditions: Vec<Condition>, changed: Condition) -> Vec<Condition> {
        conditions.retain(|c| c.type_ != changed.type_);
        conditions.push(changed);
        conditions
    }

    fn decided(others: &[Condition], in_flight: InFlight) -> (String, String, String) {
        let [reconciling, stalled] = conditions(others, in_flight, &[], Some(3), Utc::now());
        assert_eq!(reconciling.observed_generation, Some(3));
        assert_eq!(stalled.observed_generation, Some(3));
        (reconciling.status, stalled.status, stalled.reason)
    }

    #[test]
    fn an_issued_active_key_is_neither_reconciling_nor_stalled() {
        let (reconciling, stalled, _) = decided(&healthy(), InFlight::Idle);
        assert_eq!((reconciling.as_str(), stalled.as_str()), ("False", "False"));
    }

    #[test]
    fn a_key_being_issued_is_reconciling() {
        let pending = with(
            with(healthy(), cond(types::READY, "False", reasons::PENDING)),
            cond(types::SECRET_PRESENT, "False", reasons::PENDING),
        );
        let (reconciling, stalled, _) = decided(&pending, InFlight::Issuing);
        assert_eq!((reconciling.as_str(), stalled.as_str()), ("True", "False"));
    }

    #[test]
    fn an_owner_access_turned_off_or_not_yet_possible_needs_no_person() {
        for reason in [
            reasons::OWNER_ACCESS_DISABLED,
            reasons::NO_SECRET_OF_ITS_OWN,
        ] {
            let others = with(healthy(), cond(types::OWNER_CAN_READ, "False", reason));
            let (_, stalled, _) = decided(&others, InFlight::Idle);
            assert_eq!(stalled, "False", "{reason}");
        }
        let squatted = with(
            healthy(),
            cond(
                types::OWNER_CAN_READ,
                "False",
                reasons::OWNER_ACCESS_CONFLICT,
            ),
        );
        let (_, stalled, reason) = decided(&squatted, InFlight::Idle);
        assert_eq!(
            (stalled.as_str(), reason.as_str()),
            ("True", reasons::OWNER_ACCESS_CONFLICT)
        );
    }

    #[test]
    fn a_key_deactivated_on_purpose_is_current() {
        let deactivated = with(healthy(), cond(types::READY, "False", reasons::DEACTIVATED));
        let (reconciling, stalled, _) = decided(&deactivated, InFlight::Idle);
        assert_eq!((reconciling.as_str(), stalled.as_str()), ("False", "False"));
    }

    #[test]
    fn every_state_that_needs_a_person_is_stalled_with_its_reason() {
        let cases = [
            (
                cond(types::READY, "False", reasons::EXPIRED),
                reasons::EXPIRED,
            ),
            (
                cond(types::READY, "False", reasons::UNUSED),
                reasons::UNUSED,
            ),
            (
                cond(types::READY, "False", reasons::POLICY_VIOLATION),
                reasons::POLICY_VIOLATION,
            ),
            (
                cond(types::LIMIT_EXCEEDED, "True", reasons::LIMIT_EXCEEDED),
                reasons::LIMIT_EXCEEDED,
            ),
            (
                cond(types::POLICY_RESOLVED, "False", reasons::POLICY_NOT_FOUND),
                reasons::POLICY_NOT_FOUND,
            ),
            (
                cond(types::SECRET_PRESENT, "False", reasons::SECRET_MISSING),
                reasons::SECRET_MISSING,
            ),
            (
                cond(types::SECRET_PRESENT, "False", reasons::SECRET_MODIFIED),
                reasons::SECRET_MODIFIED,
            ),
            // why: conditions added later (another engineer's ScopesHeld) follow the same rule.
            (
                cond("ScopesHeld", "False", "ScopesNotHeld"),
                "ScopesNotHeld",
            ),
            (
                cond(types::ACCEPTED, "False", reasons::INVALID_SPEC),
                reasons::INVALID_SPEC,
            ),
        ];
        for (changed, expected) in cases {
            let (reconciling, stalled, reason) =
                decided(&with(healthy(), changed.clone()), InFlight::Rotating);
            assert_eq!(
                (reconciling.as_str(), stalled.as_str(), reason.as_str()),
                ("False", "True", expected),
                "{changed:?}"
            );
        }
    }

    #[test]
    fn the_stalled_condition_carries_the_blockers_reason_and_message() {
        let expired = with(healthy(), cond(types::READY, "False", reasons::EXPIRED));
        let blocked = blocker(&expired).expect("blocked");
        assert_eq!(blocked, (reasons::EXPIRED.to_string(), "why".to_string()));
    }

    #[test]
    fn a_requested_rotation_is_reconciling() {
        let (reconciling, stalled, _) = decided(&healthy(), InFlight::Rotating);
        assert_eq!((reconciling.as_str(), stalled.as_str()), ("True", "False"));
    }

    mod decided_status {
        use crate::api::conditions::{reasons, types};
        use crate::controller::policy::Unresolved;
        use crate::controller::tests::{condition, decide, governing, issuance, key};

        fn summary(status: &crate::api::AccessKeyStatus) -> [(&str, &str); 2] {
            [
                condition(status, types::RECONCILING),
                condition(status, types::STALLED),
            ]
        }

        #[test]
        fn an_active_key_is_current() {
            let (status, _) = decide(
                &key(),
                Some(&issuance(0)),
                Ok(&governing(100, 0, 0, 0)),
                None,
                10,
            );
            assert_eq!(
                summary(&status),
                [
                    ("False", reasons::RECONCILED),
                    ("False", reasons::RECONCILED)
                ]
            );
        }

        #[test]
        fn a_key_not_issued_yet_is_reconciling() {
            let (status, _) = decide(&key(), None, Ok(&governing(100, 0, 0, 0)), None, 0);
            assert_eq!(
                summary(&status),
                [("True", reasons::ISSUING), ("False", reasons::RECONCILED)]
            );
        }

        #[test]
        fn a_requested_rotation_not_written_yet_is_reconciling() {
            let mut key = key();
            key.spec.rotate_generation = 1;
            let (status, _) = decide(
                &key,
                Some(&issuance(0)),
                Ok(&governing(100, 0, 0, 0)),
                None,
                10,
            );
            assert_eq!(
                summary(&status),
                [("True", reasons::ROTATING), ("False", reasons::RECONCILED)]
            );
        }

        #[test]
        fn an_expired_key_is_stalled_not_reconciling() {
            let (status, _) = decide(
                &key(),
                Some(&issuance(0)),
                Ok(&governing(100, 0, 0, 0)),
                None,
                100,
            );
            assert_eq!(
                summary(&status),
                [("False", reasons::RECONCILED), ("True", reasons::EXPIRED)]
            );
        }

        #[test]
        fn a_key_waiting_for_a_missing_policy_is_stalled_not_reconciling() {
            let unresolved = Unresolved {
                reason: reasons::POLICY_NOT_FOUND,
                message: "AccessKeyPolicy \"strict\" does not exist".into(),
            };
            let (status, _) = decide(&key(), None, Err(&unresolved), None, 0);
            assert_eq!(
                summary(&status),
                [
                    ("False", reasons::RECONCILED),
                    ("True", reasons::POLICY_NOT_FOUND)
                ]
            );
            let stalled = status
                .conditions
                .iter()
                .find(|c| c.type_ == types::STALLED)
                .unwrap();
            assert!(
                stalled.message.contains("does not exist"),
                "{}",
                stalled.message
            );
        }
    }
}
