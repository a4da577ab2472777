//! Which issuance the controller honours: its own status, or a record it sealed into the key's
//! Secret that is newer than the status (a write whose status update was lost). Pure.

use super::issuance::{Issuance, SecretState};
use super::status::SecretPresence;

/// Whether the Secret's annotations agree with the honoured issuance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    /// The Secret's sealed record is the honoured issuance.
    Agrees,
    /// The Secret's annotations are not a sealed record of this key (edited or forged), or an
    /// earlier sealed record (replayed): nothing in them is believed.
    Disowned,
    /// No record to compare: the Secret is missing or not this key's.
    Absent,
}

/// The issuance to honour given what the status remembers and what the Secret holds.
pub fn honoured(remembered: Option<&Issuance>, secret: &SecretState) -> (Option<Issuance>, Record) {
    match (secret, remembered) {
        (SecretState::Held { issuance, .. }, None) => (Some(issuance.clone()), Record::Agrees),
        (SecretState::Held { issuance, .. }, Some(status))
            if issuance.access_key_id == status.access_key_id =>
        {
            (Some(status.clone()), Record::Agrees)
        }
        // why: a record sealed after the status's issuance is the controller's own write whose
        // status update was lost (crash, leader change); an earlier one is a replay.
        (SecretState::Held { issuance, .. }, Some(status))
            if (issuance.issued_at, issuance.rotate_generation)
                > (status.issued_at, status.rotate_generation) =>
        {
            (Some(issuance.clone()), Record::Agrees)
        }
        (SecretState::Held { .. } | SecretState::Unsealed { .. }, status) => {
            (status.cloned(), Record::Disowned)
        }
        (SecretState::Missing | SecretState::Foreign, status) => (status.cloned(), Record::Absent),
    }
}

/// Where the Secret stands for the status: `modified` is the data check's verdict, `issued`
/// whether any issuance is honoured.
pub fn presence(
    secret: &SecretState,
    record: Record,
    modified: Option<String>,
    issued: bool,
) -> SecretPresence {
    match (secret, record, modified) {
        (_, Record::Disowned, _) | (SecretState::Unsealed { .. }, _, _) => {
            SecretPresence::Modified(DISOWNED_MESSAGE.to_string())
        }
        (SecretState::Held { .. }, _, None) => SecretPresence::Present,
        (SecretState::Held { .. }, _, Some(message)) => SecretPresence::Modified(message),
        (SecretState::Missing, _, _) if !issued => SecretPresence::NotIssued,
        (SecretState::Missing, _, _) => SecretPresence::Missing,
        (SecretState::Foreign, _, _) => SecretPresence::Foreign,
    }
}

/// The `SecretPresent` message for annotations the controller does not recognise as its own.
pub const DISOWNED_MESSAGE: &str = "Secret annotations are not the record keywarden wrote for \
     this key (changed by someone else, or written before records were sealed); nothing in them \
     is believed and the issued key stays as the status says: rotate the key to rewrite them";

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration, Utc};

    use super::*;

    fn issuance(id: &str, issued_at: DateTime<Utc>) -> Issuance {
        Issuance {
            access_key_id: id.into(),
            rotate_generation: 0,
            issued_at,
            first_issued_at: issued_at,
            secret_hash: format!("hash-of-{id}"),
            previous_keys: Vec::new(),
        }
    }

    fn held(issuance: &Issuance) -> SecretState {
        SecretState::Held {
            issuance: issuance.clone(),
            resource_version: Some("7".into()),
        }
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + Duration::seconds(seconds)
    }

    #[test]
    fn lost_status_is_recovered_only_from_a_sealed_record() {
        let sealed = issuance("AKW1", at(0));
        assert_eq!(
            honoured(None, &held(&sealed)),
            (Some(sealed), Record::Agrees)
        );
        let unsealed = SecretState::Unsealed {
            resource_version: Some("7".into()),
        };
        assert_eq!(honoured(None, &unsealed), (None, Record::Disowned));
    }

    #[test]
    fn the_status_wins_over_the_secret_for_the_same_issuance() {
        let status = issuance("AKW1", at(0));
        let mut secret = status.clone();
        secret.issued_at = at(1000);
        assert_eq!(
            honoured(Some(&status), &held(&secret)),
            (Some(status), Record::Agrees)
        );
    }

    #[test]
    fn a_newer_sealed_record_is_a_rotation_whose_status_write_was_lost() {
        let status = issuance("AKW1", at(0));
        let rotated = issuance("AKW2", at(60));
        assert_eq!(
            honoured(Some(&status), &held(&rotated)),
            (Some(rotated), Record::Agrees)
        );
    }

    #[test]
    fn an_earlier_sealed_record_replayed_into_the_secret_is_disowned() {
        let replayed = issuance("AKW1", at(0));
        let status = issuance("AKW2", at(60));
        assert_eq!(
            honoured(Some(&status), &held(&replayed)),
            (Some(status), Record::Disowned)
        );
    }

    #[test]
    fn a_disowned_record_is_reported_modified_whatever_the_data_check_said() {
        let state = held(&issuance("AKW1", at(0)));
        assert_eq!(
            presence(&state, Record::Disowned, None, true),
            SecretPresence::Modified(DISOWNED_MESSAGE.to_string())
        );
        assert_eq!(
            presence(&state, Record::Agrees, None, true),
            SecretPresence::Present
        );
        assert_eq!(
            presence(&SecretState::Missing, Record::Absent, None, false),
            SecretPresence::NotIssued
        );
        assert_eq!(
            presence(&SecretState::Missing, Record::Absent, None, true),
            SecretPresence::Missing
        );
    }

    #[test]
    fn edited_annotations_leave_the_status_in_force() {
        let status = issuance("AKW1", at(0));
        let unsealed = SecretState::Unsealed {
            resource_version: None,
        };
        assert_eq!(
            honoured(Some(&status), &unsealed),
            (Some(status.clone()), Record::Disowned)
        );
        assert_eq!(
            honoured(Some(&status), &SecretState::Missing),
            (Some(status), Record::Absent)
        );
    }
}
