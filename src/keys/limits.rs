//! Per-owner limits: which of an owner's keys may be issued, in creation order.

use chrono::{DateTime, Utc};

/// One of an owner's keys, as the limit sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedKey<Id> {
    pub id: Id,
    /// Creation time; waiting keys are issued oldest first.
    pub created_at: Option<DateTime<Utc>>,
    /// Whether the key already holds an issuance (it counts against the limit).
    pub issued: bool,
}

/// Whether a key may be issued under its owner's limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitDecision {
    /// Already issued, or within the limit in creation order.
    Allowed,
    /// The owner holds the maximum; `issued` keys count against `limit`.
    Exceeded { issued: usize, limit: u32 },
}

/// Decides for `candidate` among all of its owner's keys (`keys` includes the candidate).
///
/// Issued keys always keep their issuance; the remaining room goes to waiting keys oldest first
/// (ties broken by id), so a freed slot goes to the key that has waited longest.
pub fn decide<Id: Ord + Clone>(keys: &[OwnedKey<Id>], candidate: &Id, limit: u32) -> LimitDecision {
    let issued = keys.iter().filter(|k| k.issued).count();
    if keys.iter().any(|k| k.issued && &k.id == candidate) {
        return LimitDecision::Allowed;
    }
    let room = (limit as usize).saturating_sub(issued);
    let mut waiting: Vec<&OwnedKey<Id>> = keys.iter().filter(|k| !k.issued).collect();
    // why: a key without a creation time (not yet persisted) sorts last, never jumping the queue.
    waiting.sort_by(|a, b| {
        (a.created_at.is_none(), a.created_at, &a.id).cmp(&(
            b.created_at.is_none(),
            b.created_at,
            &b.id,
        ))
    });
    let admitted = waiting.iter().take(room).any(|k| &k.id == candidate);
    if admitted {
        LimitDecision::Allowed
    } else {
        LimitDecision::Exceeded { issued, limit }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, created: i64, issued: bool) -> OwnedKey<String> {
        OwnedKey {
            id: id.into(),
            created_at: DateTime::from_timestamp(1_800_000_000 + created, 0),
            issued,
        }
    }

    #[test]
    fn keys_within_the_limit_are_allowed() {
        let keys = [key("a", 0, true), key("b", 1, false)];
        assert_eq!(decide(&keys, &"b".to_string(), 2), LimitDecision::Allowed);
    }

    #[test]
    fn a_full_owner_rejects_a_new_key() {
        let keys = [key("a", 0, true), key("b", 1, true), key("c", 2, false)];
        assert_eq!(
            decide(&keys, &"c".to_string(), 2),
            LimitDecision::Exceeded {
                issued: 2,
                limit: 2
            }
        );
    }

    #[test]
    fn waiting_keys_are_admitted_oldest_first() {
        let keys = [
            key("a", 0, true),
            key("late", 9, false),
            key("early", 5, false),
        ];
        assert_eq!(
            decide(&keys, &"early".to_string(), 2),
            LimitDecision::Allowed
        );
        assert!(matches!(
            decide(&keys, &"late".to_string(), 2),
            LimitDecision::Exceeded { .. }
        ));
    }

    #[test]
    fn same_creation_time_is_ordered_by_id() {
        let keys = [key("b", 1, false), key("a", 1, false)];
        assert_eq!(decide(&keys, &"a".to_string(), 1), LimitDecision::Allowed);
        assert!(matches!(
            decide(&keys, &"b".to_string(), 1),
            LimitDecision::Exceeded { .. }
        ));
    }

    #[test]
    fn issued_keys_keep_their_issuance_when_the_limit_shrinks() {
        let keys = [key("a", 0, true), key("b", 1, true), key("c", 2, true)];
        assert_eq!(decide(&keys, &"c".to_string(), 1), LimitDecision::Allowed);
    }

    #[test]
    fn twenty_waiting_keys_admit_exactly_the_limit() {
        let keys: Vec<_> = (0..20)
            .map(|i| key(&format!("k{i:02}"), i, false))
            .collect();
        let allowed = keys
            .iter()
            .filter(|k| decide(&keys, &k.id, 5) == LimitDecision::Allowed)
            .count();
        assert_eq!(allowed, 5);
    }
}
