//! The AccessKey reconciler: issue or rotate exactly once, then write the decided status.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use super::audit::{self, AuditEvent};
use super::cached_key::{status_digest, CachedKey, StatusDigest};
use super::context::{key_owner_identity, Context};
use super::honoured;
use super::issuance::{self, Issuance, SecretState, WriteOutcome};
use super::ledger::{Admission, Entry};
use super::owner_access;
use super::policy::{self, Governing};
use super::scopes_held;
use super::seal;
use super::secret_data;
use super::status::{self, Observed};
use super::{Error, Result};
use crate::api::conditions::reasons;
use crate::api::{AccessKey, Phase, FIELD_MANAGER};
use crate::keys::limits::{self, LimitDecision, OwnedKey};
use crate::keys::schedule::{self, TimerState};

/// How soon to look again after losing a write race (the winner's write is then re-read).
const AFTER_LOST_WRITE: Duration = Duration::from_millis(200);
/// Slack after a deadline so the reconcile that follows sees it as passed.
const DEADLINE_SLACK: Duration = Duration::from_millis(50);

/// When to look at a key again: `None` once something changes, else after the delay.
type Again = Option<Duration>;

/// Reconciles one AccessKey, expanded from the cache for this reconciliation. kube-runtime is
/// told to wait for a change; a requeue goes through the intake (see `requeues`).
pub async fn reconcile(cached: Arc<CachedKey>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    tracing::debug!(
        name = cached.name_any(),
        namespace = cached.namespace(),
        "reconciling AccessKey"
    );
    let key = cached.expand().map_err(Error::UnpackCachedKey)?;
    let result = reconcile_key(&key, cached.status_digest(), &ctx).await;
    ctx.metrics
        .observe_reconcile(started.elapsed(), result.is_err());
    let again = result?;
    let object = ObjectRef::from_obj(&*cached);
    ctx.key_retries.reset(&object);
    ctx.requeues.set(object, again);
    Ok(Action::await_change())
}

/// Backs off per object on transient errors: exponentially, reset by the next success.
pub fn error_policy(key: Arc<CachedKey>, err: &Error, ctx: Arc<Context>) -> Action {
    let object = ObjectRef::from_obj(&*key);
    let retry_in = ctx.key_retries.failed(object.clone());
    tracing::warn!(
        name = key.name_any(),
        namespace = key.namespace(),
        error = %err,
        retry_in_ms = u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX),
        "reconcile failed"
    );
    ctx.requeues.set(object, Some(retry_in));
    Action::await_change()
}

/// What the key needs written to its Secret.
#[derive(Debug, PartialEq)]
pub(super) enum Step {
    Nothing,
    /// No issuance yet: create the Secret (subject to the owner limit).
    IssueFirst,
    /// Replace the Secret with a new issuance (manual or automatic rotation).
    Rotate {
        prior: Issuance,
        resource_version: Option<String>,
    },
    /// The Secret is gone and a rotation was requested: create it with a new issuance.
    Reissue {
        prior: Issuance,
    },
}

/// Decides the Secret write, if any, from the Secret and the issuance the controller honours;
/// nothing new is issued without a resolved policy.
pub(super) fn next_step(
    key: &AccessKey,
    secret: &SecretState,
    honoured: Option<&Issuance>,
    policy: Option<&Governing>,
    now: DateTime<Utc>,
) -> Step {
    let Some(policy) = policy else {
        return Step::Nothing;
    };
    let wants_rotation = |i: &Issuance| key.spec.rotate_generation > i.rotate_generation;
    match (secret, honoured) {
        (SecretState::Foreign, _) => Step::Nothing,
        (SecretState::Missing, None) => Step::IssueFirst,
        (SecretState::Missing, Some(prior)) if wants_rotation(prior) => Step::Reissue {
            prior: prior.clone(),
        },
        (SecretState::Missing, Some(_)) => Step::Nothing,
        // why: an owned Secret whose record is not believed, and no status: nothing is known
        // to rotate from, and issuing anew would bypass the owner limit.
        (SecretState::Held { .. } | SecretState::Unsealed { .. }, None) => Step::Nothing,
        (
            SecretState::Held {
                resource_version, ..
            }
            | SecretState::Unsealed { resource_version },
            Some(prior),
        ) => {
            let times = status::key_times(prior, &Default::default(), policy.applied_at, None);
            let due = schedule::timer_state(&times, &policy.timers, now) == TimerState::RotationDue;
            if wants_rotation(prior) || due {
                Step::Rotate {
                    prior: prior.clone(),
                    resource_version: resource_version.clone(),
                }
            } else {
                Step::Nothing
            }
        }
    }
}

/// Where an observed Secret state comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    /// The watch cache, which may lag behind the controller's own last write.
    Cache,
    /// The API server, read in this reconciliation.
    Api,
    /// Not read: a key never reconciled whose Secret the cache does not show. A first
    /// issuance's create is then the read (409 if a Secret exists); without a create, it is
    /// read before anything is decided from it.
    Unread,
}

/// The key's Secret from the cache, or from the API when the cache may lag behind.
async fn observe_secret(
    key: &AccessKey,
    ctx: &Context,
    api: &Api<Secret>,
    remembered: Option<&Issuance>,
) -> Result<(SecretState, Seen)> {
    let name = key.spec.secret_name(&key.name_any());
    let state = ctx.secrets.classify(&name, key, &ctx.record_key);
    let trusted = match (&state, remembered) {
        (SecretState::Held { issuance, .. }, Some(r)) => issuance.access_key_id == r.access_key_id,
        (SecretState::Held { .. }, None) => true,
        _ => false,
    };
    if trusted {
        return Ok((state, Seen::Cache));
    }
    // why: a key without any status has never been reconciled; its Secret, absent from the
    // cache, most likely does not exist, and reading it first costs a request per new key.
    if key.status.is_none() && state == SecretState::Missing {
        return Ok((state, Seen::Unread));
    }
    Ok((read_secret(key, ctx, api).await?, Seen::Api))
}

/// Reads the key's Secret metadata from the API server.
async fn read_secret(key: &AccessKey, ctx: &Context, api: &Api<Secret>) -> Result<SecretState> {
    let name = key.spec.secret_name(&key.name_any());
    // why: the data is not needed to classify; only `secret_data::check` reads it.
    let fresh = api
        .get_metadata_opt(&name)
        .await
        .map_err(Error::ReadSecret)?;
    Ok(issuance::classify(
        fresh.as_ref().map(|s| &s.metadata),
        key,
        &ctx.record_key,
    ))
}

/// Reconciles `key`, whose status had digest `current_digest` when its watch event arrived
/// (the expanded key lacks most conditions' messages, see `cached_key::message_kept`).
async fn reconcile_key(
    key: &AccessKey,
    current_digest: StatusDigest,
    ctx: &Context,
) -> Result<Again> {
    // why: limits and policy resolution must not decide on caches that have not listed yet.
    let mut synced = ctx.synced.clone();
    if synced
        .wait_for(|mask| *mask == super::runner::ALL_LISTED)
        .await
        .is_err()
    {
        return Ok(None);
    }
    if key.meta().deletion_timestamp.is_some() || ctx.secret_verdicts.superseded(key) {
        return Ok(None);
    }
    let now = ctx.now();
    let namespace = key
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), &namespace);
    let policy = policy::resolve(key, ctx).await?;
    let verdict = match &policy {
        Ok(_) => Some(scopes_held::review(key, ctx).await?),
        Err(_) => None,
    };
    let remembered = key.status.as_ref().and_then(Issuance::from_status);
    if let (Some(_), Some(uid)) = (&remembered, key.uid()) {
        // why: the cached key shows its issuance now, so the limit counts it from the cache.
        ctx.owners.forget(&key_owner_identity(key), &uid);
    }
    let (mut secret, seen) = observe_secret(key, ctx, &secrets, remembered.as_ref()).await?;
    let mut limit = None;
    let mut own_write = false;
    let mut lost_unread = false;

    let (trusted, _) = honoured::honoured(remembered.as_ref(), &secret);
    let mut step = next_step(key, &secret, trusted.as_ref(), policy.as_ref().ok(), now);
    if step != Step::Nothing {
        // why: the cache may lag behind our own last write; decide again on the API's truth
        // (unless it was just read from the API: a first issuance reads it once, not twice).
        if seen == Seen::Cache {
            secret = read_secret(key, ctx, &secrets).await?;
            let (trusted, _) = honoured::honoured(remembered.as_ref(), &secret);
            step = next_step(key, &secret, trusted.as_ref(), policy.as_ref().ok(), now);
        }
        let written = match (step, policy.as_ref().ok()) {
            (Step::Nothing, _) | (_, None) => None,
            (Step::IssueFirst, Some(governing)) => {
                match issue_first(key, ctx, &secrets, governing, now).await? {
                    Ok(outcome) => Some(outcome),
                    Err(decision) => {
                        limit = Some(decision);
                        None
                    }
                }
            }
            (
                Step::Rotate {
                    prior,
                    resource_version,
                },
                Some(governing),
            ) => Some(rotate(key, ctx, &secrets, governing, &prior, resource_version, now).await?),
            (Step::Reissue { prior }, Some(governing)) => {
                Some(rotate(key, ctx, &secrets, governing, &prior, None, now).await?)
            }
        };
        match written {
            Some((WriteOutcome::Lost, _)) if seen == Seen::Unread => lost_unread = true,
            Some((WriteOutcome::Lost, _)) => return Ok(Some(AFTER_LOST_WRITE)),
            Some((WriteOutcome::Written { resource_version }, record)) => {
                secret = SecretState::Held {
                    issuance: record,
                    resource_version,
                };
                own_write = true;
            }
            None => {}
        }
    }

    // why: an unread Secret is known only once our create succeeds. A create that found one
    // (409) decides on it now instead of retrying, which would hash again each time (a name
    // taken by someone else is then reported); no create at all (a limit) decides on a read.
    if seen == Seen::Unread && !own_write {
        secret = read_secret(key, ctx, &secrets).await?;
        if lost_unread && secret == SecretState::Missing {
            return Ok(Some(AFTER_LOST_WRITE));
        }
    }
    if let (SecretState::Unsealed { .. }, Some(status)) = (&secret, remembered.as_ref()) {
        secret = reseal_if_unchanged(key, ctx, &secrets, status, now).await?;
    }
    let (trusted, _) = honoured::honoured(remembered.as_ref(), &secret);
    let checked =
        secret_data::check(key, ctx, &secrets, secret, trusted.as_ref(), own_write).await?;
    let (trusted, record) = honoured::honoured(remembered.as_ref(), &checked.state);
    let presence = honoured::presence(&checked.state, record, checked.modified, trusted.is_some());
    let issuance = trusted.as_ref();
    let access = owner_access::reconcile(key, ctx, &checked.state, policy.as_ref().ok()).await?;
    let current = key.status.clone().unwrap_or_default();
    let owner_condition =
        owner_access::owner_condition(&access, &current.conditions, key.meta().generation, now);
    let scopes_condition = scopes_held::held_condition(&current, verdict.as_ref(), key, now);
    let (mut desired, next) = status::desired_status(&Observed {
        key,
        issuance,
        secret: presence,
        secret_resource_version: checked.resource_version.as_deref(),
        policy: policy.as_ref(),
        limit,
        other_conditions: [Some(owner_condition), scopes_condition]
            .into_iter()
            .flatten()
            .collect(),
        now,
    });
    scopes_held::record(&mut desired, &current, verdict.as_ref());
    if status_digest(&desired) != current_digest {
        if apply_status(key, ctx, &desired).await? == WriteOutcome::Lost {
            return Ok(Some(AFTER_LOST_WRITE));
        }
        let side_events = [
            owner_access::transitions(&current, &desired),
            scopes_held::transition(&current, &desired),
        ];
        for event in audit::transitions(&current, &desired)
            .into_iter()
            .chain(side_events.into_iter().flatten())
        {
            let event = if event.answers_spec_change() {
                event.requested_in(key)
            } else {
                event
            };
            audit::record(&ctx.recorder(), key, event).await;
        }
    }
    if restart_rollout_targets(key, ctx, &desired).await? {
        // why: look again once the debounced restart is written, and retry it if it failed.
        return Ok(Some(3 * super::rollout::DEBOUNCE));
    }
    let deadline = next.map(|at| schedule::wait_until(at, now) + DEADLINE_SLACK);
    let recheck = owner_access::recheck_after(&access);
    let wait = deadline.into_iter().chain(recheck).min();
    Ok(ctx
        .far_deadlines
        .requeue(&namespace, &key.name_any(), wait, now))
}

/// Schedules the restart of the key's rollout targets not yet restarted for its current
/// issuance; whether any was.
async fn restart_rollout_targets(
    key: &AccessKey,
    ctx: &Context,
    desired: &crate::api::AccessKeyStatus,
) -> Result<bool> {
    let (Some(rollouts), Some(id)) = (&ctx.rollouts, desired.access_key_id.as_deref()) else {
        return Ok(false);
    };
    let scheduled = rollouts
        .request(key, id)
        .await
        .map_err(Error::ReadRolloutTargets)?;
    Ok(scheduled > 0)
}

/// Seals the record of a Secret written before records were sealed (an upgrade), when its
/// annotations hold exactly the issuance the status holds; otherwise, or when someone changed
/// the Secret meanwhile, the Secret stays as it is and reports `SecretModified`.
async fn reseal_if_unchanged(
    key: &AccessKey,
    ctx: &Context,
    api: &Api<Secret>,
    status: &Issuance,
    now: DateTime<Utc>,
) -> Result<SecretState> {
    let name = key.spec.secret_name(&key.name_any());
    let Some(meta) = api
        .get_metadata_opt(&name)
        .await
        .map_err(Error::ReadSecret)?
    else {
        return Ok(SecretState::Missing);
    };
    let state = issuance::classify(Some(&meta.metadata), key, &ctx.record_key);
    let SecretState::Unsealed { resource_version } = &state else {
        return Ok(state);
    };
    let legacy = meta
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| seal::is_legacy_record_of(a, status, now));
    if !legacy {
        return Ok(state);
    }
    let patch = seal::reseal_patch(status, key, &ctx.record_key, resource_version.as_deref());
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(written) => Ok(SecretState::Held {
            issuance: status.clone(),
            resource_version: written.resource_version(),
        }),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(state),
        Err(err) => Err(Error::ReplaceSecret(err)),
    }
}

/// First issuance, serialized per owner so that concurrent keys never exceed the limit.
async fn issue_first(
    key: &AccessKey,
    ctx: &Context,
    api: &Api<Secret>,
    governing: &Governing,
    now: DateTime<Utc>,
) -> Result<Result<(WriteOutcome, Issuance), LimitDecision>> {
    let owner = key_owner_identity(key);
    let uid = key.uid().ok_or(Error::MissingField("metadata.uid"))?;
    let lock = ctx.owners.lock_for(&owner);
    let issued = {
        let _serialized = lock.lock().await;
        issue_first_serialized(key, ctx, api, governing, now, &owner, &uid).await
    };
    drop(lock);
    ctx.owners.release_lock(&owner);
    issued
}

/// [`issue_first`] once the owner's lock is held.
async fn issue_first_serialized(
    key: &AccessKey,
    ctx: &Context,
    api: &Api<Secret>,
    governing: &Governing,
    now: DateTime<Utc>,
    owner: &str,
    uid: &str,
) -> Result<Result<(WriteOutcome, Issuance), LimitDecision>> {
    let decision = limits::decide(
        &owner_keys(key, ctx, owner, uid),
        &uid.to_owned(),
        governing.max_keys_per_owner,
    );
    if decision != LimitDecision::Allowed {
        return Ok(Err(decision));
    }
    // why: the caches may be stale (a paused leader's are); the ledger write decides.
    let candidate = Entry::of(key).ok_or(Error::MissingField("metadata.uid"))?;
    let issued = issued_entries(ctx, owner);
    let limit = governing.max_keys_per_owner;
    if let Admission::Exceeded { issued } =
        ctx.ledgers.admit(owner, &candidate, issued, limit).await?
    {
        return Ok(Err(LimitDecision::Exceeded { issued, limit }));
    }
    // why: recorded before the write, so a lost response still counts against the owner.
    ctx.owners.record_issued(owner, uid);
    let new = issuance::generate(key, None, None, now, ctx.hash_params, &ctx.hash_pool).await?;
    let secret = issuance::desired_secret(key, &new, &ctx.record_key, None)?;
    let outcome = issuance::create_secret(api, &secret).await?;
    if matches!(outcome, WriteOutcome::Written { .. }) {
        ctx.metrics.issuances.inc();
        let id = new.id.as_str();
        let message = format!("issued access ID {id} into Secret {}", secret.name_any());
        audit::record(
            &ctx.recorder(),
            key,
            AuditEvent::normal(reasons::ISSUED, message, Some(id)).requested_in(key),
        )
        .await;
    }
    Ok(Ok((outcome, new.record)))
}

/// Rotation: a new issuance replaces (or re-creates) the Secret; the prior stays valid in grace
/// only if the key was active (an expired or deactivated secret gets no second life).
async fn rotate(
    key: &AccessKey,
    ctx: &Context,
    api: &Api<Secret>,
    governing: &Governing,
    prior: &Issuance,
    resource_version: Option<String>,
    now: DateTime<Utc>,
) -> Result<(WriteOutcome, Issuance)> {
    let was_active = key
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .is_none_or(|phase| phase == Phase::Active);
    let grace_ends = was_active.then(|| schedule::grace_ends_at(now, &governing.timers));
    let new = issuance::generate(
        key,
        Some(prior),
        grace_ends,
        now,
        ctx.hash_params,
        &ctx.hash_pool,
    )
    .await?;
    let recreate = resource_version.is_none();
    let secret = issuance::desired_secret(key, &new, &ctx.record_key, resource_version)?;
    let outcome = if recreate {
        issuance::create_secret(api, &secret).await?
    } else {
        issuance::replace_secret(api, &secret).await?
    };
    if matches!(outcome, WriteOutcome::Written { .. }) {
        ctx.metrics.rotations.inc();
        let id = new.id.as_str();
        let message = match grace_ends {
            Some(ends) => format!(
                "rotated to access ID {id}; previous access ID {} valid until {}",
                prior.access_key_id,
                ends.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            None => format!(
                "rotated to access ID {id}; previous access ID {} revoked (the key was not active)",
                prior.access_key_id
            ),
        };
        let event = AuditEvent::normal(reasons::ROTATED, message, Some(id));
        let asked = key
            .status
            .as_ref()
            .and_then(|s| s.observed_rotate_generation)
            != Some(key.spec.rotate_generation);
        let event = if asked {
            event.requested_in(key)
        } else {
            event
        };
        audit::record(&ctx.recorder(), key, event).await;
    }
    Ok((outcome, new.record))
}

/// The owner's keys as the limit sees them: issued per status, Secret, or this process's record.
/// A key being deleted still counts until it is gone (its finalizers may hold it a while).
fn owner_keys(key: &AccessKey, ctx: &Context, owner: &str, uid: &str) -> Vec<OwnedKey<String>> {
    let mut keys: Vec<OwnedKey<String>> = ctx
        .key_owners
        .candidates(owner)
        .iter()
        .filter(|k| k.owner_identity() == owner)
        .filter_map(|k| {
            let uid = k.uid()?;
            let issued = k.is_issued()
                || ctx.owners.was_issued(owner, &uid)
                || k.expand().map_or(true, |key| has_cached_secret(&key, ctx));
            Some(OwnedKey {
                created_at: created_at(&**k),
                issued,
                id: uid,
            })
        })
        .collect();
    if !keys.iter().any(|k| k.id == uid) {
        keys.push(OwnedKey {
            id: uid.to_string(),
            created_at: created_at(key),
            issued: false,
        });
    }
    keys
}

/// The owner's keys the caches show issued (by status or by an owned Secret), as ledger entries.
fn issued_entries(ctx: &Context, owner: &str) -> Vec<Entry> {
    ctx.key_owners
        .candidates(owner)
        .iter()
        .filter(|k| k.owner_identity() == owner)
        .filter(|k| k.is_issued() || k.expand().map_or(true, |key| has_cached_secret(&key, ctx)))
        .filter_map(|k| Entry::of(&**k))
        .collect()
}

fn created_at(key: &impl Resource) -> Option<DateTime<Utc>> {
    let ts = key.meta().creation_timestamp.as_ref()?.0;
    DateTime::from_timestamp(ts.as_second(), u32::try_from(ts.subsec_nanosecond()).ok()?)
}

fn has_cached_secret(key: &AccessKey, ctx: &Context) -> bool {
    let name = key.spec.secret_name(&key.name_any());
    // why: an owned Secret counts as issued even when its record is not believed.
    matches!(
        ctx.secrets.classify(&name, key, &ctx.record_key),
        SecretState::Held { .. } | SecretState::Unsealed { .. }
    )
}

/// Server-side applies the status (without `lastUsedAt`, which the verifier owns), on
/// condition that the key is still at the version this decision read: a stale decision (a
/// lagging cache, a leader paused past its lease) loses the write and is taken again.
async fn apply_status(
    key: &AccessKey,
    ctx: &Context,
    status: &crate::api::AccessKeyStatus,
) -> Result<WriteOutcome> {
    let mut status = status.clone();
    status.last_used_at = None;
    let patch = serde_json::json!({
        "apiVersion": "keywarden.io/v1alpha1",
        "kind": "AccessKey",
        "metadata": {"resourceVersion": key.resource_version()},
        "status": status,
    });
    let api =
        Api::<AccessKey>::namespaced(ctx.client.clone(), &key.namespace().unwrap_or_default());
    match api
        .patch_status(
            &key.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(written) => {
            ctx.secret_verdicts.status_written(key);
            Ok(WriteOutcome::Written {
                resource_version: written.resource_version(),
            })
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(WriteOutcome::Lost),
        Err(err) => Err(Error::ApplyKeyStatus(err)),
    }
}
