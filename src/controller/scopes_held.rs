//! Whether a key's owner holds its scopes: a SubjectAccessReview for the owner per requested
//! scope, repeated only when the owner, their groups, the scopes or the RBAC that can grant
//! them changed (see [`super::rbac_watch`]).
//!
//! `*` (a key without scopes) is every permission of its owner: it is held by definition and
//! reviews nothing; upstreams see `X-Keywarden-Scopes: *` and the owner, and decide with them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, PostParams};
use kube::{Client, Resource, ResourceExt};
use sha2::{Digest, Sha256};

use super::audit::AuditEvent;
use super::cached_key::KeyView;
use super::context::Context;
use super::rbac_watch::hex;
use super::status::condition;
use super::{Error, Result};
use crate::api::conditions::{reasons, types};
use crate::api::{AccessKey, AccessKeyStatus, OwnerKind, ScopeReview, ALL_SCOPES, SCOPES_GROUP};
use crate::keys::scope::Scope;
use crate::sync::lock;

/// How long a review answers identical questions (same fingerprint) without asking again.
// why: an RBAC change re-checks every key of the touched owners at once; their keys with the
// same scope set share one review.
const BURST: Duration = Duration::from_secs(5);

/// Every authenticated identity's group; the API server adds it to every User.
const AUTHENTICATED: &str = "system:authenticated";

/// The outcome of a review: what the verifier serves, and what status records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Requested scopes held by the owner, or `["*"]`.
    pub granted: Vec<String>,
    /// `None` for `*`, which reviews nothing.
    pub review: Option<ScopeReview>,
}

/// Reviews recently answered, by fingerprint.
#[derive(Default)]
pub struct ReviewCache {
    answers: Mutex<Answers>,
}

#[derive(Default)]
struct Answers {
    by_fingerprint: HashMap<String, (Instant, Answer)>,
    /// When expired answers were last dropped.
    pruned: Option<Instant>,
}

impl ReviewCache {
    fn get(&self, fingerprint: &str) -> Option<Answer> {
        let answers = lock(&self.answers);
        let (at, answer) = answers.by_fingerprint.get(fingerprint)?;
        (at.elapsed() < BURST).then(|| answer.clone())
    }

    fn put(&self, fingerprint: String, answer: Answer) {
        let mut answers = lock(&self.answers);
        // why: pruning on every insert is quadratic in a burst of 100,000 keys; once a burst
        // period keeps the map at most one burst large.
        if answers.pruned.is_none_or(|at| at.elapsed() >= BURST) {
            answers
                .by_fingerprint
                .retain(|_, (at, _)| at.elapsed() < BURST);
            answers.pruned = Some(Instant::now());
        }
        answers
            .by_fingerprint
            .insert(fingerprint, (Instant::now(), answer));
    }
}

/// What a review found: the scopes granted and those not held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub granted: Vec<String>,
    pub not_held: Vec<String>,
}

/// The groups the owner is reviewed with: a ServiceAccount's are known; a User's are those
/// they recorded in `spec.ownerGroups` when they last wrote the key, plus
/// `system:authenticated`.
pub fn owner_groups<K: KeyView>(key: &K) -> Vec<String> {
    let namespace = key.namespace().unwrap_or_default();
    let mut groups = match key.owner().kind {
        OwnerKind::ServiceAccount => vec![
            "system:serviceaccounts".to_owned(),
            format!("system:serviceaccounts:{namespace}"),
        ],
        OwnerKind::User => key.owner_groups().map(str::to_owned).collect(),
    };
    groups.push(AUTHENTICATED.to_owned());
    groups.sort();
    groups.dedup();
    groups
}

/// The key's requested scopes, sorted and without duplicates (empty: `*`).
fn requested(key: &AccessKey) -> Vec<String> {
    let mut scopes = key.spec.scopes.clone();
    scopes.sort();
    scopes.dedup();
    scopes
}

/// Digest of everything a review's answer depends on.
pub fn fingerprint(
    namespace: &str,
    username: &str,
    groups: &[String],
    scopes: &[String],
    rbac: &str,
) -> String {
    let mut hasher = Sha256::new();
    for part in [namespace, username]
        .into_iter()
        .chain(groups.iter().map(String::as_str))
        .chain(["|"])
        .chain(scopes.iter().map(String::as_str))
        .chain(["|", rbac])
    {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hex(&hasher.finalize()[..16])
}

/// The scopes granted: the requested ones held, `<r>:view` for a `<r>:manage` held only as
/// `view` (`manage` implies `view`), and `*` for a key without scopes.
pub fn granted(requested: &[String], not_held: &[String], held_as_view: &[String]) -> Vec<String> {
    if requested.is_empty() {
        return vec![ALL_SCOPES.to_owned()];
    }
    let mut granted: Vec<String> = requested
        .iter()
        .filter(|s| !not_held.contains(s))
        .chain(held_as_view)
        .cloned()
        .collect();
    granted.sort();
    granted.dedup();
    granted
}

/// Reviews the key's scopes for its owner, reusing the review recorded in status (or one of
/// this burst) when nothing it depends on changed.
pub async fn review(key: &AccessKey, ctx: &Context) -> Result<Verdict> {
    let scopes = requested(key);
    if scopes.is_empty() {
        return Ok(Verdict {
            granted: granted(&scopes, &[], &[]),
            review: None,
        });
    }
    let namespace = key.namespace().unwrap_or_default();
    let username = key.spec.owner.username(&namespace);
    let groups = owner_groups(key);
    let rbac = ctx.rbac.digest(&username, &groups, &namespace);
    let fingerprint = fingerprint(&namespace, &username, &groups, &scopes, &rbac);
    let status = key.status.as_ref();
    let recorded = status
        .and_then(|s| s.scope_review.as_ref())
        .filter(|r| r.fingerprint == fingerprint)
        .zip(status.and_then(|s| s.granted_scopes.clone()))
        .map(|(r, granted)| Answer {
            granted,
            not_held: r.not_held.clone(),
        });
    let answer = match recorded.or_else(|| ctx.scope_reviews.get(&fingerprint)) {
        Some(answer) => answer,
        None => {
            let (answer, asked) = ask(&ctx.client, &namespace, &username, &groups, &scopes).await?;
            ctx.metrics.scope_reviews.inc_by(asked);
            ctx.scope_reviews.put(fingerprint.clone(), answer.clone());
            answer
        }
    };
    Ok(Verdict {
        granted: answer.granted,
        review: Some(ScopeReview {
            fingerprint,
            not_held: answer.not_held,
        }),
    })
}

/// Asks the API server which scopes the owner holds (`manage` implies `view`), and how many
/// SubjectAccessReviews that took.
async fn ask(
    client: &Client,
    namespace: &str,
    username: &str,
    groups: &[String],
    scopes: &[String],
) -> Result<(Answer, u64)> {
    let mut answers: HashMap<(String, &'static str), bool> = HashMap::new();
    let mut may = async |resource: &str, verb: &'static str| -> Result<bool> {
        let question = (resource.to_owned(), verb);
        if let Some(allowed) = answers.get(&question) {
            return Ok(*allowed);
        }
        let allowed = allowed(client, namespace, username, groups, resource, verb).await?;
        answers.insert(question, allowed);
        Ok(allowed)
    };
    let mut not_held = Vec::new();
    let mut held_as_view = Vec::new();
    for text in scopes {
        let Some(scope) = Scope::parse(text) else {
            not_held.push(text.clone());
            continue;
        };
        let resource = scope.resource();
        if scope.is_manage() {
            if may(resource, "manage").await? {
                continue;
            }
            if may(resource, "view").await? {
                held_as_view.push(format!("{resource}:view"));
            }
        } else if may(resource, "view").await? || may(resource, "manage").await? {
            continue;
        }
        not_held.push(text.clone());
    }
    let asked = u64::try_from(answers.len()).unwrap_or(u64::MAX);
    Ok((
        Answer {
            granted: granted(scopes, &not_held, &held_as_view),
            not_held,
        },
        asked,
    ))
}

/// One SubjectAccessReview: may the owner `verb` the scope resource in the key's namespace?
async fn allowed(
    client: &Client,
    namespace: &str,
    username: &str,
    groups: &[String],
    resource: &str,
    verb: &str,
) -> Result<bool> {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(username.to_owned()),
            groups: Some(groups.to_vec()),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(namespace.to_owned()),
                verb: Some(verb.to_owned()),
                group: Some(SCOPES_GROUP.to_owned()),
                resource: Some(resource.to_owned()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let answered = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .map_err(Error::ReviewScopes)?;
    Ok(answered.status.is_some_and(|s| s.allowed))
}

/// Records the review's grants and fingerprint in `status`; without a verdict (the policy did
/// not resolve) the last ones stand.
pub fn record(status: &mut AccessKeyStatus, current: &AccessKeyStatus, verdict: Option<&Verdict>) {
    match verdict {
        Some(verdict) => {
            status.granted_scopes = Some(verdict.granted.clone());
            status.scope_review = verdict.review.clone();
        }
        None => status.scope_review = current.scope_review.clone(),
    }
}

/// The `ScopesHeld` condition for `verdict`; without one, the last condition stands.
pub fn held_condition(
    current: &AccessKeyStatus,
    verdict: Option<&Verdict>,
    key: &AccessKey,
    now: DateTime<Utc>,
) -> Option<Condition> {
    let Some(verdict) = verdict else {
        return current
            .conditions
            .iter()
            .find(|c| c.type_ == types::SCOPES_HELD)
            .cloned();
    };
    let not_held = verdict
        .review
        .as_ref()
        .map(|r| r.not_held.as_slice())
        .unwrap_or_default();
    let owner = key
        .spec
        .owner
        .username(&key.namespace().unwrap_or_default());
    let (state, reason, message) = if not_held.is_empty() {
        let message = all_held_message(&owner, verdict.review.is_some());
        ("True", reasons::SCOPES_HELD, message)
    } else {
        let message = format!(
            "owner {owner:?} does not hold {} (verbs on API group {SCOPES_GROUP} in namespace {:?}); the key does not carry them",
            not_held.join(", "),
            key.namespace().unwrap_or_default()
        );
        ("False", reasons::SCOPES_NOT_HELD, message)
    };
    Some(condition(
        &current.conditions,
        types::SCOPES_HELD,
        state,
        reason,
        &message,
        key.meta().generation,
        now,
    ))
}

/// The `ScopesHeld` message when the owner holds every scope: after a review of the scopes, or
/// for a key without scopes (`*`).
pub fn all_held_message(owner: &str, reviewed: bool) -> String {
    if reviewed {
        format!("owner {owner:?} holds every scope of the key")
    } else {
        format!("the key carries every permission of its owner {owner:?} (*)")
    }
}

/// The Event when `ScopesHeld` flips (or first reads False).
pub fn transition(old: &AccessKeyStatus, new: &AccessKeyStatus) -> Option<AuditEvent> {
    let held = |s: &AccessKeyStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == types::SCOPES_HELD)
            .map(|c| (c.status.clone(), c.message.clone()))
    };
    let (state, message) = held(new)?;
    let before = held(old).map(|(s, _)| s);
    let id = new.access_key_id.as_deref();
    match (before.as_deref(), state.as_str()) {
        (Some("False"), "True") => Some(AuditEvent::normal(reasons::SCOPES_HELD, message, id)),
        (None | Some("True"), "False") => {
            Some(AuditEvent::warning(reasons::SCOPES_NOT_HELD, message, id))
        }
        (Some("False"), "False")
            if old.scope_review.as_ref().map(|r| &r.not_held)
                != new.scope_review.as_ref().map(|r| &r.not_held) =>
        {
            Some(AuditEvent::warning(reasons::SCOPES_NOT_HELD, message, id))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AccessKeySpec, KeyOwner};

    /// What the reconcile puts into the desired status: the grants and `ScopesHeld`.
    fn recorded(
        status: &mut AccessKeyStatus,
        current: &AccessKeyStatus,
        verdict: Option<&Verdict>,
        key: &AccessKey,
    ) {
        record(status, current, verdict);
        status
            .conditions
            .extend(held_condition(current, verdict, key, Utc::now()));
    }

    fn key(kind: OwnerKind, scopes: &[&str], groups: &[&str]) -> AccessKey {
        let mut key = AccessKey::new(
            "k",
            AccessKeySpec {
                owner: KeyOwner {
                    kind,
                    name: "ci".into(),
                },
                display_name: None,
                description: None,
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                owner_groups: groups.iter().map(|s| s.to_string()).collect(),
                rollout: None,
                allowed_origins: vec![],
                active: true,
                rotate_generation: 0,
                reactivate_generation: 0,
                policy_name: None,
                secret: Default::default(),
            },
        );
        key.metadata.namespace = Some("team-a".into());
        key.metadata.generation = Some(3);
        key
    }

    fn verdict(requested: &[&str], not_held: &[&str]) -> Verdict {
        let requested: Vec<String> = requested.iter().map(|s| s.to_string()).collect();
        let not_held: Vec<String> = not_held.iter().map(|s| s.to_string()).collect();
        Verdict {
            granted: granted(&requested, &not_held, &[]),
            review: (!requested.is_empty()).then(|| ScopeReview {
                fingerprint: "f".into(),
                not_held,
            }),
        }
    }

    fn held(status: &AccessKeyStatus) -> (String, String, String, Option<i64>) {
        let c = status
            .conditions
            .iter()
            .find(|c| c.type_ == types::SCOPES_HELD)
            .unwrap();
        (
            c.status.clone(),
            c.reason.clone(),
            c.message.clone(),
            c.observed_generation,
        )
    }

    #[test]
    fn a_service_accounts_groups_are_known_and_a_users_are_recorded() {
        let sa = key(OwnerKind::ServiceAccount, &[], &["admins"]);
        assert_eq!(
            owner_groups(&sa),
            [
                "system:authenticated",
                "system:serviceaccounts",
                "system:serviceaccounts:team-a"
            ],
            "a ServiceAccount cannot claim groups"
        );
        let user = key(OwnerKind::User, &[], &["team-a-devs"]);
        assert_eq!(owner_groups(&user), ["system:authenticated", "team-a-devs"]);
    }

    #[test]
    fn a_manage_scope_held_only_as_view_grants_view() {
        let requested = vec!["logs:manage".to_string()];
        let not_held = requested.clone();
        assert_eq!(
            granted(&requested, &not_held, &["logs:view".into()]),
            ["logs:view"]
        );
    }

    #[test]
    fn granted_scopes_are_the_requested_ones_held_and_no_scopes_is_everything() {
        assert_eq!(
            verdict(&["logs:manage", "logs:view"], &["logs:manage"]).granted,
            ["logs:view"]
        );
        assert!(verdict(&["logs:manage"], &["logs:manage"])
            .granted
            .is_empty());
        assert_eq!(verdict(&[], &[]).granted, ["*"]);
    }

    #[test]
    fn the_fingerprint_covers_owner_groups_scopes_and_rbac() {
        let groups = vec!["g".to_string()];
        let scopes = vec!["logs:view".to_string()];
        let base = fingerprint("ns", "alice", &groups, &scopes, "r1");
        assert_eq!(base, fingerprint("ns", "alice", &groups, &scopes, "r1"));
        for other in [
            fingerprint("ns2", "alice", &groups, &scopes, "r1"),
            fingerprint("ns", "bob", &groups, &scopes, "r1"),
            fingerprint("ns", "alice", &[], &scopes, "r1"),
            fingerprint("ns", "alice", &groups, &[], "r1"),
            fingerprint("ns", "alice", &groups, &scopes, "r2"),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn scopes_not_held_set_the_condition_false_naming_them() {
        let key = key(OwnerKind::User, &["logs:manage", "logs:view"], &[]);
        let mut status = AccessKeyStatus::default();
        let v = verdict(&["logs:manage", "logs:view"], &["logs:manage"]);
        recorded(&mut status, &AccessKeyStatus::default(), Some(&v), &key);
        assert_eq!(status.granted_scopes, Some(vec!["logs:view".to_string()]));
        let (state, reason, message, generation) = held(&status);
        assert_eq!(
            (state.as_str(), reason.as_str()),
            ("False", "ScopesNotHeld")
        );
        assert!(message.contains("does not hold logs:manage"), "{message}");
        assert_eq!(generation, Some(3));
        let event = transition(&AccessKeyStatus::default(), &status).unwrap();
        assert!(event.warning);

        let mut flipped = AccessKeyStatus::default();
        recorded(
            &mut flipped,
            &status,
            Some(&verdict(&["logs:manage", "logs:view"], &[])),
            &key,
        );
        assert_eq!(held(&flipped).0, "True");
        assert_eq!(transition(&status, &flipped).unwrap().reason, "ScopesHeld");
        assert_eq!(transition(&flipped, &flipped), None);
    }

    #[test]
    fn without_a_verdict_the_last_review_stands() {
        let key = key(OwnerKind::User, &["logs:manage"], &[]);
        let mut reviewed = AccessKeyStatus::default();
        recorded(
            &mut reviewed,
            &AccessKeyStatus::default(),
            Some(&verdict(&["logs:manage"], &["logs:manage"])),
            &key,
        );
        let mut status = AccessKeyStatus::default();
        recorded(&mut status, &reviewed, None, &key);
        assert_eq!(status.scope_review, reviewed.scope_review);
        assert_eq!(held(&status).0, "False");
    }
}
