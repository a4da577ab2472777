//! Wires the reconcilers to their watches: AccessKeys, their Secrets (metadata only) and policies.

use std::sync::Arc;

use futures::{future, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::access_key;
use super::audit::{self, AuditEvent};
use super::backoff::RetryBackoff;
use super::cached_key::CachedKey;
use super::context::{key_owner_identity, Clock, Context, OwnerGate};
use super::far_deadlines;
use super::grant_cache::{binding_record, role_record, GrantCache};
use super::hash_pool::HashPool;
use super::intake::{Intake, Lane};
use super::ledger::Ledgers;
use super::owner_index::OwnerIndex;
use super::policy;
use super::probes::ProbeState;
use super::rbac_watch::{self, RbacView};
use super::record_key;
use super::requeues::{self, Requeues};
use super::rollout::Rollouts;
use super::scopes_held;
use super::secret_data::Verdicts;
use super::secret_record::SecretRecords;
use crate::api::conditions::reasons;
use crate::api::{AccessKeyPolicy, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::keys::hash::HashParams;

/// What the controllers are started with.
pub struct Settings {
    pub hash_params: HashParams,
    pub clock: Clock,
    pub identity: String,
    /// Whether `spec.rollout` restarts workloads (`--rollout`).
    pub rollout: bool,
    /// Namespace and name of the record key Secret.
    pub record_key_secret: (String, String),
}

/// Runs the AccessKey and AccessKeyPolicy controllers until `stop`.
pub async fn run_controllers(
    client: Client,
    settings: &Settings,
    probes: &ProbeState,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let (namespace, name) = &settings.record_key_secret;
    let record_key = record_key::load_or_create(&client, namespace, name).await?;
    let (keys, keys_writer) = reflector::store::<CachedKey>();
    let secrets = Arc::new(SecretRecords::default());
    let (policies, policies_writer) = reflector::store::<AccessKeyPolicy>();
    let owner_roles = Arc::new(GrantCache::default());
    let owner_bindings = Arc::new(GrantCache::default());
    let (synced_tx, synced) = watch::channel(0u16);
    let synced_tx = Arc::new(synced_tx);
    let (deleted_tx, deleted_rx) = mpsc::unbounded_channel::<CachedKey>();
    let keys_listed = mark_listed(synced_tx.clone(), KEYS_LISTED);
    let key_owners = Arc::new(OwnerIndex::new(
        keys.clone(),
        key_owner_identity::<CachedKey>,
    ));
    let indexed_owners = key_owners.clone();
    let intake = Arc::new(Intake::new(
        usize::from(concurrent_reconciles()),
        keys.clone(),
        lane_of,
    ));
    let keys_intake = intake.clone();
    // why: each key is compacted as it is read (see `cached_key`): 100,000 keys are cached.
    let key_events = watcher(
        Api::<CachedKey>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(keys_writer)
    .inspect(move |event| {
        if let Ok(event) = event {
            indexed_owners.apply(event);
        }
        keys_listed(event);
        match event {
            Ok(watcher::Event::Apply(key)) => {
                keys_intake.push(ObjectRef::from_obj(key), lane_of(key))
            }
            Ok(watcher::Event::Delete(key)) => {
                let _ = deleted_tx.send(key.clone());
            }
            Ok(watcher::Event::InitDone) => keys_intake.sweep_everything(),
            _ => {}
        }
    });
    let managed = format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}");
    // why: metadata only (annotations carry the issuance), and of it only a record of what
    // classification reads (see `secret_record`); each event asks for its owning key's
    // reconciliation and the object is dropped.
    let secrets_listed = mark_listed(synced_tx.clone(), SECRETS_LISTED);
    let secrets_cache = secrets.clone();
    let secrets_intake = intake.clone();
    let secret_events = watcher(
        Api::<PartialObjectMeta<Secret>>::all(client.clone()),
        watcher::Config::default().labels(&managed),
    )
    .default_backoff()
    .inspect(move |event| {
        if let Ok(event) = event {
            secrets_cache.apply(event);
            ask_for_owners(&secrets_intake, event);
        }
        secrets_listed(event);
    });
    let policies_intake = intake.clone();
    let governed_keys = keys.clone();
    let policy_stream = watcher(
        Api::<AccessKeyPolicy>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    // why: managedFields are most of an object's size and nothing here reads them.
    .modify(|policy| policy.meta_mut().managed_fields = None)
    .reflect(policies_writer)
    .inspect(mark_listed(synced_tx.clone(), POLICIES_LISTED))
    .inspect(move |event| match event {
        Ok(watcher::Event::Apply(changed) | watcher::Event::Delete(changed)) => {
            policies_intake.push_all(governed(&governed_keys, changed));
        }
        Ok(watcher::Event::InitDone) => policies_intake.sweep_everything(),
        _ => {}
    })
    .touched_objects();
    // why: keywarden's own Roles and RoleBindings only (by label); a squatter's are read on demand.
    // Only a digest of each is kept (see `grant_cache`); each event asks for its owning key's
    // reconciliation and the object is dropped.
    let roles_listed = mark_listed(synced_tx.clone(), ROLES_LISTED);
    let roles_cache = owner_roles.clone();
    let roles_intake = intake.clone();
    let role_events = watcher(
        Api::<Role>::all(client.clone()),
        watcher::Config::default().labels(&managed),
    )
    .default_backoff()
    .inspect(move |event| {
        if let Ok(event) = event {
            roles_cache.apply(event, role_record);
            ask_for_owners(&roles_intake, event);
        }
        roles_listed(event);
    });
    let bindings_listed = mark_listed(synced_tx.clone(), BINDINGS_LISTED);
    let bindings_cache = owner_bindings.clone();
    let bindings_intake = intake.clone();
    let binding_events = watcher(
        Api::<RoleBinding>::all(client.clone()),
        watcher::Config::default().labels(&managed),
    )
    .default_backoff()
    .inspect(move |event| {
        if let Ok(event) = event {
            bindings_cache.apply(event, binding_record);
            ask_for_owners(&bindings_intake, event);
        }
        bindings_listed(event);
    });
    let watches = [
        tokio::spawn(key_events.for_each(|_| future::ready(()))),
        tokio::spawn(secret_events.for_each(|_| future::ready(()))),
        tokio::spawn(role_events.for_each(|_| future::ready(()))),
        tokio::spawn(binding_events.for_each(|_| future::ready(()))),
    ];
    let rbac = Arc::new(RbacView::default());
    let (touched_tx, touched_rx) = mpsc::unbounded_channel();
    let rbac_watches =
        rbac_watch::spawn_watches(&client, rbac.clone(), synced_tx.clone(), touched_tx);
    let policy_controller = Controller::for_stream(policy_stream, policies.clone());
    let reporter = Reporter {
        controller: "keywarden".into(),
        instance: Some(settings.identity.clone()),
    };
    let (requeues, asked_requeues) = Requeues::new();
    let ctx = Arc::new(Context {
        client: client.clone(),
        keys: keys.clone(),
        key_owners,
        policies,
        synced: synced.clone(),
        secrets,
        owner_roles,
        owner_bindings,
        rollouts: settings.rollout.then(|| {
            Arc::new(Rollouts::new(
                client.clone(),
                reporter.clone(),
                probes.metrics.rollouts.clone(),
            ))
        }),
        reporter,
        metrics: probes.metrics.clone(),
        hash_params: settings.hash_params,
        record_key,
        ledgers: Ledgers::new(client.clone(), namespace),
        hash_pool: HashPool::new(std::thread::available_parallelism().map_or(1, usize::from))?,
        clock: settings.clock.clone(),
        owners: OwnerGate::default(),
        rbac: rbac.clone(),
        scope_reviews: Default::default(),
        far_deadlines: Default::default(),
        requeues,
        secret_verdicts: Verdicts::default(),
        key_retries: RetryBackoff::standard(),
        policy_retries: RetryBackoff::standard(),
    });
    probes.metrics.watch_keys(Some(keys.clone()));
    probes.metrics.watch_intake(Some(intake.clone()));

    let (retrigger_tx, retrigger_rx) = mpsc::unbounded_channel();
    let rbac_changes = tokio::spawn(rbac_watch::retrigger_touched_keys(
        touched_rx,
        keys.clone(),
        scopes_held::owner_groups,
        retrigger_tx.clone(),
    ));
    let sweeps = tokio::spawn(sweep_far_deadlines(ctx.clone(), retrigger_tx.clone()));
    let requeued = tokio::spawn(requeues::run(asked_requeues, retrigger_tx.clone()));
    let deletions = tokio::spawn(on_deletions(ctx.clone(), deleted_rx, retrigger_tx));
    let readiness = tokio::spawn(mark_ready_when_synced(synced, probes.clone()));

    let retriggered = tokio::spawn(forward(retrigger_rx, intake.clone(), keys.clone()));
    // why: every request comes through the intake (see `intake`), requeues too (see
    // `requeues`); the key watch itself only feeds the cache, so the controller's own trigger
    // is a stream that never yields.
    let key_controller = Controller::for_stream(futures::stream::pending(), keys.clone())
        .with_config(controller::Config::default().concurrency(concurrent_reconciles()))
        .reconcile_on(intake.clone().requests())
        .graceful_shutdown_on(stop.clone().cancelled_owned())
        .run(access_key::reconcile, access_key::error_policy, ctx.clone())
        .for_each(|result| {
            intake.finished(&result);
            future::ready(())
        });
    let policy_controller = policy_controller
        .graceful_shutdown_on(stop.clone().cancelled_owned())
        .run(policy::reconcile_policy, policy::error_policy, ctx.clone())
        .for_each(|_| future::ready(()));
    future::join(key_controller, policy_controller).await;
    deletions.abort();
    sweeps.abort();
    requeued.abort();
    retriggered.abort();
    for watch in watches {
        watch.abort();
    }
    rbac_changes.abort();
    for watch in rbac_watches {
        watch.abort();
    }
    readiness.abort();
    probes.metrics.watch_keys(None);
    probes.metrics.watch_intake(None);
    probes.set_ready(false);
    Ok(())
}

/// Asks for the reconciliation of the AccessKeys that control the object of `event` (every key
/// once the relist of such objects is done: one deleted unseen is noticed by no event).
fn ask_for_owners<K: Resource>(intake: &Intake<CachedKey>, event: &watcher::Event<K>) {
    match event {
        watcher::Event::Apply(object) | watcher::Event::Delete(object) => {
            let meta = object.meta();
            for owner in meta.owner_references.iter().flatten() {
                if let Some(key) = ObjectRef::from_owner_ref(meta.namespace.as_deref(), owner, ()) {
                    // why: the key has a Secret or a grant, so it holds or is getting an issuance.
                    intake.push(key, Lane::Issued);
                }
            }
        }
        watcher::Event::InitDone => intake.sweep_everything(),
        watcher::Event::Init | watcher::Event::InitApply(_) => {}
    }
}

/// The cached keys whose policy `changed` may be: those it governs and those naming none.
fn governed(keys: &reflector::Store<CachedKey>, changed: &AccessKeyPolicy) -> Vec<Arc<CachedKey>> {
    keys.state()
        .into_iter()
        .filter(|k| k.policy_name().is_none() || policy::governs(changed, k.policy_name()))
        .collect()
}

/// Hands what `requests` receives to the intake, in the lane of the cached key.
async fn forward(
    mut requests: mpsc::UnboundedReceiver<ObjectRef<CachedKey>>,
    intake: Arc<Intake<CachedKey>>,
    keys: reflector::Store<CachedKey>,
) {
    while let Some(key) = requests.recv().await {
        let lane = keys.get(&key).map_or(Lane::New, |cached| lane_of(&cached));
        intake.push(key, lane);
    }
}

/// The intake lane of a key's requests: whether it holds an issuance.
fn lane_of(key: &CachedKey) -> Lane {
    if key.is_issued() {
        Lane::Issued
    } else {
        Lane::New
    }
}

/// Keywarden's own annotations of `annotations`; `None` when there are none.
pub(super) fn keywarden_annotations(
    annotations: Option<std::collections::BTreeMap<String, String>>,
) -> Option<std::collections::BTreeMap<String, String>> {
    let mut annotations = annotations?;
    annotations.retain(|name, _| name.starts_with(KEYWARDEN_ANNOTATION_PREFIX));
    (!annotations.is_empty()).then_some(annotations)
}

/// Prefix of the annotations keywarden writes on a key's Secret.
const KEYWARDEN_ANNOTATION_PREFIX: &str = "keywarden.io/";

/// How many AccessKeys are reconciled at once, per core.
// why: unbounded, a burst of thousands of new keys runs thousands of reconciles at once, each
// holding an HTTP connection of its own (kept idle in the client's pool afterwards): that was
// most of the controller's memory. Eight per core keeps every argon2id slot busy while the
// others wait on the API server.
const RECONCILES_PER_CORE: u16 = 8;

/// The AccessKey controller's concurrency bound.
fn concurrent_reconciles() -> u16 {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    u16::try_from(cores)
        .unwrap_or(u16::MAX)
        .saturating_mul(RECONCILES_PER_CORE)
}

/// Bit set in the sync mask once the AccessKey cache has listed.
const KEYS_LISTED: u16 = 1;
/// Bit set once the Secret metadata cache has listed.
const SECRETS_LISTED: u16 = 2;
/// Bit set once the policy cache has listed.
const POLICIES_LISTED: u16 = 4;
/// Bit set once the owner-access Role cache has listed.
const ROLES_LISTED: u16 = 128;
/// Bit set once the owner-access RoleBinding cache has listed.
const BINDINGS_LISTED: u16 = 256;
/// Every cache has listed (the RBAC view too, see `rbac_watch`).
pub const ALL_LISTED: u16 = KEYS_LISTED
    | SECRETS_LISTED
    | POLICIES_LISTED
    | ROLES_LISTED
    | BINDINGS_LISTED
    | rbac_watch::ROLES_LISTED
    | rbac_watch::CLUSTER_ROLES_LISTED
    | rbac_watch::ROLE_BINDINGS_LISTED
    | rbac_watch::CLUSTER_ROLE_BINDINGS_LISTED;

/// Sets `bit` in the sync mask when a reflected watch stream finishes its initial list.
// why: not `Store::wait_until_ready`: its oneshot wakes only the last of several waiters.
fn mark_listed<K>(
    synced: Arc<watch::Sender<u16>>,
    bit: u16,
) -> impl Fn(&Result<watcher::Event<K>, watcher::Error>) {
    move |event| {
        if let Ok(watcher::Event::InitDone) = event {
            synced.send_modify(|mask| *mask |= bit);
        }
    }
}

/// Marks the probes ready once every cache has listed its objects.
async fn mark_ready_when_synced(mut synced: watch::Receiver<u16>, probes: ProbeState) {
    if synced.wait_for(|mask| *mask == ALL_LISTED).await.is_ok() {
        probes.set_ready(true);
        tracing::info!("caches synced; controller ready");
    }
}

/// Re-triggers the keys whose far deadline (see `far_deadlines`) came within the horizon.
async fn sweep_far_deadlines(
    ctx: Arc<Context>,
    retrigger: mpsc::UnboundedSender<ObjectRef<CachedKey>>,
) {
    let mut every = tokio::time::interval(far_deadlines::SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let keys = ctx.keys.state();
        let cached = keys.iter().map(|key| {
            let meta = key.meta();
            let namespace = meta.namespace.as_deref().unwrap_or_default();
            (namespace, meta.name.as_deref().unwrap_or_default(), key)
        });
        for key in ctx.far_deadlines.sweep(cached, ctx.now()) {
            let _ = retrigger.send(ObjectRef::from_obj(&**key));
        }
    }
}

/// Audits deleted keys and lets the owner's waiting keys take the freed slot.
async fn on_deletions(
    ctx: Arc<Context>,
    mut deleted: mpsc::UnboundedReceiver<CachedKey>,
    retrigger: mpsc::UnboundedSender<ObjectRef<CachedKey>>,
) {
    while let Some(key) = deleted.recv().await {
        let owner = key.owner_identity();
        if let Some(uid) = key.uid() {
            ctx.owners.forget(&owner, &uid);
            ctx.secret_verdicts.forget(&uid);
        }
        ctx.key_retries.reset(&ObjectRef::from_obj(&key));
        let id = key.access_key_id();
        let message = match &id {
            Some(id) => format!("key deleted; access ID {id} revoked"),
            None => "key deleted".to_string(),
        };
        audit::record(
            &ctx.recorder(),
            &key,
            AuditEvent::normal(reasons::DELETED, message, id.as_deref()),
        )
        .await;
        for waiting in ctx
            .key_owners
            .candidates(&owner)
            .into_iter()
            .filter(|k| !k.is_issued() && k.owner_identity() == owner)
        {
            let _ = retrigger.send(ObjectRef::from_obj(&*waiting));
        }
    }
}
