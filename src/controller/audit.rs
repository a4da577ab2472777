//! Audit trail: a Kubernetes Event on the AccessKey and one JSON log line (`audit=true`) each.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::ResourceExt;

use super::cached_key::KeyView;
use crate::api::conditions::reasons;
use crate::api::{change_requested_by, AccessKey, AccessKeyStatus, DeactivationReason, Phase};

/// One audited happening. Messages carry access IDs at most, never secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    pub reason: &'static str,
    pub warning: bool,
    pub message: String,
    pub access_key_id: Option<String>,
    /// Who asked for the change through `kubectl keywarden` (see [`change_requested_by`]); `None` for
    /// timers and for changes made any other way.
    pub requested_by: Option<String>,
}

impl AuditEvent {
    pub fn normal(reason: &'static str, message: impl Into<String>, id: Option<&str>) -> Self {
        Self {
            reason,
            warning: false,
            message: message.into(),
            access_key_id: id.map(str::to_string),
            requested_by: None,
        }
    }

    /// The event of a change someone asked for in `key`'s spec: names them when the plugin
    /// marked the change (the annotation the admission policy checked).
    pub fn requested_in(self, key: &AccessKey) -> Self {
        Self {
            requested_by: change_requested_by(key).map(str::to_owned),
            ..self
        }
    }

    /// Whether this event answers a spec change (rather than a timer or a limit).
    pub fn answers_spec_change(&self) -> bool {
        [
            reasons::ACTIVATED,
            reasons::DEACTIVATED,
            reasons::REACTIVATED,
        ]
        .contains(&self.reason)
    }

    pub fn warning(reason: &'static str, message: impl Into<String>, id: Option<&str>) -> Self {
        Self {
            warning: true,
            ..Self::normal(reason, message, id)
        }
    }
}

/// Logs the audit line and publishes the Event (a failed Event is logged, never fatal).
pub async fn record<K: KeyView>(recorder: &Recorder, key: &K, event: AuditEvent) {
    let reference: ObjectReference = key.object_ref(&());
    tracing::info!(
        audit = true,
        reason = event.reason,
        namespace = key.namespace().unwrap_or_default(),
        name = key.name_any(),
        owner = super::context::key_owner_identity(key).as_str(),
        access_key_id = event.access_key_id.as_deref().unwrap_or(""),
        requested_by = event.requested_by.as_deref().unwrap_or(""),
        message = event.message.as_str(),
        "access key {}",
        event.reason
    );
    let published = recorder
        .publish(
            &Event {
                type_: if event.warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: event.reason.into(),
                note: Some(match &event.requested_by {
                    Some(requester) => format!("{} (requested by {requester})", event.message),
                    None => event.message,
                }),
                action: event.reason.into(),
                secondary: None,
            },
            &reference,
        )
        .await;
    if let Err(err) = published {
        tracing::warn!(error = %err, name = key.name_any(), "publishing event failed");
    }
}

/// The audit events implied by a status change (issuance and rotation are recorded at the write).
pub fn transitions(old: &AccessKeyStatus, new: &AccessKeyStatus) -> Vec<AuditEvent> {
    let id = new.access_key_id.as_deref();
    let mut events = Vec::new();
    if old.phase != new.phase || old.deactivation_reason != new.deactivation_reason {
        let event = match (new.phase, new.deactivation_reason) {
            (Some(Phase::Active), _)
                if old.deactivation_reason == Some(DeactivationReason::Unused) =>
            {
                Some(AuditEvent::normal(
                    reasons::REACTIVATED,
                    "key reactivated",
                    id,
                ))
            }
            (Some(Phase::Active), _)
                if matches!(old.phase, Some(Phase::Inactive | Phase::Expired)) =>
            {
                Some(AuditEvent::normal(reasons::ACTIVATED, "key activated", id))
            }
            (Some(Phase::Inactive), Some(DeactivationReason::Manual)) => Some(AuditEvent::normal(
                reasons::DEACTIVATED,
                "key deactivated (spec.active is false)",
                id,
            )),
            (Some(Phase::Inactive), Some(DeactivationReason::Unused)) => Some(AuditEvent::normal(
                reasons::UNUSED,
                "key deactivated: unused for longer than the policy allows",
                id,
            )),
            (Some(Phase::Inactive), Some(DeactivationReason::PolicyViolation)) => {
                let ready = new
                    .conditions
                    .iter()
                    .find(|c| c.type_ == crate::api::conditions::types::READY)
                    .map_or_else(String::new, |c| c.message.clone());
                Some(AuditEvent::warning(
                    reasons::POLICY_VIOLATION,
                    format!("key deactivated: {ready}"),
                    id,
                ))
            }
            (Some(Phase::Expired), _) => {
                Some(AuditEvent::normal(reasons::EXPIRED, "key expired", id))
            }
            (Some(Phase::Rejected), _) => Some(AuditEvent::warning(
                reasons::LIMIT_EXCEEDED,
                format!(
                    "not issued: owner holds the maximum of keys ({})",
                    new.policy.as_deref().unwrap_or("built-in defaults")
                ),
                None,
            )),
            _ => None,
        };
        events.extend(event);
    }
    for dropped in old.previous_keys.iter().filter(|p| {
        !new.previous_keys
            .iter()
            .any(|n| n.access_key_id == p.access_key_id)
    }) {
        events.push(AuditEvent::normal(
            reasons::GRACE_PERIOD_ENDED,
            format!(
                "previous access ID {} no longer valid",
                dropped.access_key_id
            ),
            Some(&dropped.access_key_id),
        ));
    }
    let secret_condition = |s: &AccessKeyStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == crate::api::conditions::types::SECRET_PRESENT)
            .map(|c| (c.reason.clone(), c.message.clone()))
    };
    let (before, after) = (secret_condition(old), secret_condition(new));
    if before != after {
        match after
            .as_ref()
            .map(|(reason, message)| (reason.as_str(), message))
        {
            Some((reasons::SECRET_MODIFIED, message)) => events.push(AuditEvent::warning(
                reasons::SECRET_MODIFIED,
                message.clone(),
                id,
            )),
            Some((reasons::SECRET_MISSING, _)) => events.push(AuditEvent::warning(
                reasons::SECRET_MISSING,
                "the key's Secret was deleted; rotate the key to issue a new one",
                id,
            )),
            Some((reasons::SECRET_CONFLICT, _)) => events.push(AuditEvent::warning(
                reasons::SECRET_CONFLICT,
                "a Secret of the key's name exists and does not belong to the key",
                id,
            )),
            _ => {}
        }
    }
    events
}
