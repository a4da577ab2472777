//! `kubectl keywarden status`: keys as a table, plus each owner's use of their key limit.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kube::ResourceExt;

use crate::api::access_key_policy::DEFAULT_MAX_KEYS_PER_OWNER;
use crate::api::{AccessKey, AccessKeyPolicy, OwnerKind, Phase, DEFAULT_POLICY_ANNOTATION};

/// A short, kubectl-style rendering of a duration: `45s`, `12m`, `36h`, `180d`.
pub fn human_duration(duration: chrono::Duration) -> String {
    let seconds = duration.num_seconds().max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 120 * 60 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// When something happened or will happen, relative to `now`: `3m ago`, `in 179d`.
pub fn relative_time(at: Option<DateTime<Utc>>, now: DateTime<Utc>, none: &str) -> String {
    match at {
        None => none.to_owned(),
        Some(at) if at <= now => format!("{} ago", human_duration(now - at)),
        Some(at) => format!("in {}", human_duration(at - now)),
    }
}

/// The identity limits are counted by: users are cluster-wide, service accounts per namespace.
pub fn owner_identity(key: &AccessKey) -> String {
    let owner = &key.spec.owner;
    match owner.kind {
        OwnerKind::User => format!("User/{}", owner.name),
        OwnerKind::ServiceAccount => format!(
            "ServiceAccount/{}/{}",
            key.namespace().unwrap_or_default(),
            owner.name
        ),
    }
}

fn owner_column(key: &AccessKey) -> String {
    let kind = match key.spec.owner.kind {
        OwnerKind::User => "User",
        OwnerKind::ServiceAccount => "ServiceAccount",
    };
    format!("{kind}/{}", key.spec.owner.name)
}

fn phase_column(key: &AccessKey) -> String {
    let status = key.status.as_ref();
    let phase = status.and_then(|s| s.phase).unwrap_or(Phase::Pending);
    match (phase, status.and_then(|s| s.deactivation_reason)) {
        (Phase::Inactive, Some(reason)) => format!("Inactive ({reason:?})"),
        (phase, _) => format!("{phase:?}"),
    }
}

/// The requested scopes the owner does not hold (the key does not carry them), or `-`.
fn scopes_not_held_column(key: &AccessKey) -> String {
    let not_held = key
        .status
        .as_ref()
        .and_then(|s| s.scope_review.as_ref())
        .map(|r| r.not_held.join(","))
        .unwrap_or_default();
    if not_held.is_empty() {
        "-".to_owned()
    } else {
        not_held
    }
}

/// One table row per key; with `with_namespace`, a leading NAMESPACE column.
pub fn key_table(keys: &[AccessKey], with_namespace: bool, now: DateTime<Utc>) -> String {
    let mut headers = vec![
        "NAME",
        "OWNER",
        "ACCESS ID",
        "PHASE",
        "LAST USED",
        "EXPIRES",
        "SCOPES NOT HELD",
    ];
    if with_namespace {
        headers.insert(0, "NAMESPACE");
    }
    let rows = keys
        .iter()
        .map(|key| {
            let status = key.status.as_ref();
            let mut row = vec![
                key.name_any(),
                owner_column(key),
                status
                    .and_then(|s| s.access_key_id.clone())
                    .unwrap_or_else(|| "-".to_owned()),
                phase_column(key),
                relative_time(status.and_then(|s| s.last_used_at), now, "never"),
                relative_time(status.and_then(|s| s.expires_at), now, "never"),
                scopes_not_held_column(key),
            ];
            if with_namespace {
                row.insert(0, key.namespace().unwrap_or_default());
            }
            row
        })
        .collect::<Vec<_>>();
    render_table(&headers, &rows)
}

/// The policy governing `key`, as the controller resolves it: the one it reported in status,
/// else `spec.policyName`, else the policy annotated as the cluster default.
fn governing_policy<'a>(
    key: &AccessKey,
    policies: &'a [AccessKeyPolicy],
) -> Option<&'a AccessKeyPolicy> {
    let named = key
        .status
        .as_ref()
        .and_then(|s| s.policy.as_deref())
        .or(key.spec.policy_name.as_deref());
    match named {
        Some(name) => policies.iter().find(|p| p.name_any() == name),
        None => policies.iter().find(|p| {
            p.annotations()
                .get(DEFAULT_POLICY_ANNOTATION)
                .is_some_and(|v| v == "true")
        }),
    }
}

/// Issued keys and the limit of each owner of `shown`, counting over `all_keys`.
/// Without `policies` (not readable), limits show as `?`.
pub fn owner_usage_table(
    shown: &[AccessKey],
    all_keys: &[AccessKey],
    policies: Option<&[AccessKeyPolicy]>,
) -> String {
    let mut usage: BTreeMap<String, (usize, Option<u32>)> = shown
        .iter()
        .map(|key| (owner_identity(key), (0, None)))
        .collect();
    for key in all_keys {
        let Some((issued, limit)) = usage.get_mut(&owner_identity(key)) else {
            continue;
        };
        if key
            .status
            .as_ref()
            .is_some_and(|s| s.access_key_id.is_some())
        {
            *issued += 1;
        }
        if let Some(policies) = policies {
            let key_limit = governing_policy(key, policies)
                .map_or(DEFAULT_MAX_KEYS_PER_OWNER, |p| p.spec.max_keys_per_owner);
            *limit = Some(limit.map_or(key_limit, |l: u32| l.min(key_limit)));
        }
    }
    let rows = usage
        .into_iter()
        .map(|(owner, (issued, limit))| {
            let limit = limit.map_or_else(|| "?".to_owned(), |l| l.to_string());
            vec![owner, format!("{issued}/{limit}")]
        })
        .collect::<Vec<_>>();
    render_table(&["OWNER", "ISSUED/LIMIT"], &rows)
}

/// Left-aligned columns separated by three spaces, like `kubectl get`.
pub fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use crate::api::access_key_policy::AccessKeyPolicySpec;
    use crate::api::{
        AccessKeySpec, AccessKeyStatus, DeactivationReason, KeyOwner, SecretTemplate,
    };

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
    }

    fn key(namespace: &str, name: &str, kind: OwnerKind, owner: &str) -> AccessKey {
        let mut key = AccessKey::new(
            name,
            AccessKeySpec {
                owner: KeyOwner {
                    kind,
                    name: owner.to_owned(),
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
        key.metadata.namespace = Some(namespace.to_owned());
        key
    }

    fn issued(mut key: AccessKey, id: &str, phase: Phase) -> AccessKey {
        key.status = Some(AccessKeyStatus {
            phase: Some(phase),
            access_key_id: Some(id.to_owned()),
            last_used_at: Some(now() - chrono::Duration::minutes(3)),
            expires_at: Some(now() + chrono::Duration::days(179)),
            ..AccessKeyStatus::default()
        });
        key
    }

    fn policy(name: &str, max: u32, default: bool) -> AccessKeyPolicy {
        let mut policy = AccessKeyPolicy::new(
            name,
            AccessKeyPolicySpec {
                max_keys_per_owner: max,
                ..AccessKeyPolicySpec::default()
            },
        );
        if default {
            policy
                .annotations_mut()
                .insert(DEFAULT_POLICY_ANNOTATION.to_owned(), "true".to_owned());
        }
        policy
    }

    #[test]
    fn relative_times_read_like_kubectl_ages() {
        let at = |seconds| Some(now() + chrono::Duration::seconds(seconds));
        assert_eq!(relative_time(None, now(), "never"), "never");
        assert_eq!(relative_time(at(-45), now(), "-"), "45s ago");
        assert_eq!(relative_time(at(-180), now(), "-"), "3m ago");
        assert_eq!(relative_time(at(36 * 3600), now(), "-"), "in 36h");
        assert_eq!(relative_time(at(179 * 86_400), now(), "-"), "in 179d");
    }

    #[test]
    fn key_table_shows_owner_id_phase_last_use_and_expiry() {
        let keys = [
            issued(
                key("team-a", "ci", OwnerKind::User, "alice"),
                "AKWAAAA",
                Phase::Active,
            ),
            key("team-a", "new", OwnerKind::ServiceAccount, "builder"),
        ];
        assert_eq!(
            key_table(&keys, false, now()),
            "\
NAME   OWNER                    ACCESS ID   PHASE     LAST USED   EXPIRES   SCOPES NOT HELD
ci     User/alice               AKWAAAA     Active    3m ago      in 179d   -
new    ServiceAccount/builder   -           Pending   never       never     -
"
        );
    }

    #[test]
    fn key_table_shows_the_scopes_the_owner_does_not_hold() {
        let mut key = issued(
            key("team-a", "ci", OwnerKind::User, "alice"),
            "AKWAAAA",
            Phase::Active,
        );
        if let Some(status) = key.status.as_mut() {
            status.scope_review = Some(crate::api::ScopeReview {
                fingerprint: "f".into(),
                not_held: vec!["logs:manage".into(), "billing:view".into()],
            });
        }
        let table = key_table(&[key], false, now());
        let row = table.lines().nth(1).unwrap();
        assert!(row.ends_with("logs:manage,billing:view"), "{table}");
    }

    #[test]
    fn key_table_with_namespaces_and_deactivation_reason() {
        let mut inactive = issued(
            key("team-b", "old", OwnerKind::User, "bob"),
            "AKWB",
            Phase::Inactive,
        );
        if let Some(status) = inactive.status.as_mut() {
            status.deactivation_reason = Some(DeactivationReason::Unused);
        }
        let table = key_table(&[inactive], true, now());
        let row = table.lines().nth(1).unwrap();
        assert!(table.starts_with("NAMESPACE   NAME"), "{table}");
        assert!(row.starts_with("team-b      old"), "{row}");
        assert!(row.contains("Inactive (Unused)"), "{row}");
    }

    #[test]
    fn usage_counts_issued_keys_of_each_shown_owner_across_namespaces() {
        let alice_a = issued(
            key("team-a", "a1", OwnerKind::User, "alice"),
            "AKW1",
            Phase::Active,
        );
        let alice_b = issued(
            key("team-b", "b1", OwnerKind::User, "alice"),
            "AKW2",
            Phase::Expired,
        );
        let alice_waiting = key("team-b", "b2", OwnerKind::User, "alice");
        let bob = issued(
            key("team-b", "b3", OwnerKind::User, "bob"),
            "AKW3",
            Phase::Active,
        );
        let all = [alice_a.clone(), alice_b, alice_waiting, bob];
        let policies = [policy("default", 2, true)];
        assert_eq!(
            owner_usage_table(&[alice_a], &all, Some(&policies)),
            "OWNER        ISSUED/LIMIT\nUser/alice   2/2\n"
        );
    }

    #[test]
    fn service_accounts_are_counted_per_namespace() {
        let a = issued(
            key("team-a", "k1", OwnerKind::ServiceAccount, "ci"),
            "AKW1",
            Phase::Active,
        );
        let b = issued(
            key("team-b", "k2", OwnerKind::ServiceAccount, "ci"),
            "AKW2",
            Phase::Active,
        );
        let table = owner_usage_table(&[a.clone(), b.clone()], &[a, b], Some(&[]));
        assert!(table.contains("ServiceAccount/team-a/ci   1/5"), "{table}");
        assert!(table.contains("ServiceAccount/team-b/ci   1/5"), "{table}");
    }

    #[test]
    fn named_policy_wins_over_default_and_unreadable_policies_show_unknown() {
        let mut named = issued(
            key("team-a", "k", OwnerKind::User, "carol"),
            "AKW1",
            Phase::Active,
        );
        named.spec.policy_name = Some("strict".to_owned());
        let policies = [policy("default", 5, true), policy("strict", 1, false)];
        let keys = [named];
        assert!(owner_usage_table(&keys, &keys, Some(&policies)).contains("User/carol   1/1"));
        assert!(owner_usage_table(&keys, &keys, None).contains("User/carol   1/?"));
    }
}
