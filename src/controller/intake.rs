//! Paces the requests for AccessKey reconciliations into kube-runtime's scheduler.
//!
//! why: kube-runtime's scheduler takes every request as it arrives and keeps the capacity of its
//! queue and maps once they have drained. On a restart with 100,000 keys every key, Secret,
//! Role, RoleBinding and policy of the initial lists asked for a reconciliation before the first
//! one could run (the runner waits for the key cache), and the controller held 334.5 MiB
//! afterwards against 296.7 MiB after issuing the same keys (270.3 MiB with this intake). Here a
//! request reaches the scheduler only while few enough of those handed out are unfinished (see
//! below); an initial list asks for one sweep of the cache instead of one entry per object; and
//! what waited here is freed once it has drained.
//!
//! Requests wait in two lanes, each first in first out, the first before the second: keys that
//! hold an issuance, then keys waiting for their first. A burst of 100,000 new keys costs a hash
//! each; a deactivation, a rotation or the follow-up of the controller's own write meanwhile
//! must not wait behind it (the follow-ups also release what the controller remembers of its
//! writes until the cache shows them). The first lane holds only what changes on issued keys,
//! cheap to reconcile, but anyone who may write keywarden-labelled Secrets, Roles or
//! RoleBindings naming a key as owner makes it hear of something: while both lanes wait, every
//! eighth request comes from the second, so such writes can slow new keys, never stop them.
//!
//! A request whose key is not cached as issued (its reconcile may cost a hash) goes out only into
//! a free reconcile slot, whichever lane it waited in; a request for an issued key, two per
//! slot. kube-runtime holds what it cannot start at once in a set and starts those in no
//! particular order as slots free up, so a request handed out there could wait behind new keys
//! handed out after it, each a hash. Cheap requests handed out ahead wait there only behind
//! other cheap ones, and spare the scheduler's delay (a millisecond per handoff) to the
//! reconcile pass after a restart, a sweep of issued keys.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use futures::Stream;
use kube::runtime::controller::{Action, Error as ControllerError};
use kube::runtime::reflector::{ObjectRef, ObjectRefExtra, Store};
use kube::Resource;
use tokio::sync::Notify;

use crate::sync::lock;

/// What asks for reconciliations, and how many may be in kube-runtime's hands at once.
pub struct Intake<K: Resource<DynamicType = ()> + 'static> {
    state: Mutex<Waiting<K>>,
    wake: Notify,
    /// kube-runtime's reconcile slots.
    slots: usize,
    /// The cache a sweep of everything reads.
    cache: Store<K>,
    /// The lane of a cached object: whether its reconcile may cost a hash.
    lane_of: fn(&K) -> Lane,
}

/// How many requests of issued keys may be in kube-runtime's hands per reconcile slot.
const ISSUED_AHEAD_PER_SLOT: usize = 2;

/// Which lane a request waits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// Keys that hold an issuance, and what their owned objects ask: handed out first.
    Issued,
    /// Keys waiting for their first issuance.
    New,
}

/// How many requests wait, by where, and how many are in kube-runtime's hands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Depth {
    pub issued: usize,
    pub new: usize,
    pub sweep: usize,
    pub handed_out: usize,
}

/// What waits to be handed out, and what was handed out and has not finished.
struct Waiting<K: Resource<DynamicType = ()>> {
    issued: Queue<K>,
    new: Queue<K>,
    /// Objects a sweep has still to hand out.
    sweep: Vec<Arc<K>>,
    handed_out: HashSet<ObjectRef<K>>,
    /// Requests of the first lane handed out since the second's last turn.
    issued_in_a_row: usize,
}

/// How many requests of the first lane go out in a row while the second waits.
const ISSUED_PER_NEW: usize = 7;

/// Above this many slots, a drained queue's memory is given back.
const KEEP_CAPACITY: usize = 1024;

impl<K: Resource<DynamicType = ()> + Clone + 'static> Intake<K> {
    /// An intake for kube-runtime's `slots` reconcile slots (see the module); a sweep of
    /// everything reads `cache`, and `lane_of` tells a cached object's lane.
    pub fn new(slots: usize, cache: Store<K>, lane_of: fn(&K) -> Lane) -> Self {
        Self {
            state: Mutex::new(Waiting {
                issued: Queue::default(),
                new: Queue::default(),
                sweep: Vec::new(),
                handed_out: HashSet::new(),
                issued_in_a_row: 0,
            }),
            wake: Notify::new(),
            slots: slots.max(1),
            cache,
            lane_of,
        }
    }

    /// Asks for one reconciliation of `object` (once, however often it is asked in a lane
    /// before it is handed out).
    pub fn push(&self, mut object: ObjectRef<K>, lane: Lane) {
        // why: the name and namespace are what identify it; a burst queues tens of thousands.
        object.extra = ObjectRefExtra::default();
        let mut waiting = self.lock();
        match lane {
            Lane::Issued => waiting.issued.push(object),
            Lane::New => waiting.new.push(object),
        }
        drop(waiting);
        self.wake.notify_one();
    }

    /// Asks for one reconciliation of each of `objects` (cached ones), after the single
    /// requests. Once the sweeps waiting would outgrow the cache, they become one sweep of
    /// everything: a burst of policy changes (a GitOps sync) each naming most keys asks for
    /// each key once, not once per change.
    pub fn push_all(&self, objects: Vec<Arc<K>>) {
        let mut waiting = self.lock();
        if waiting.sweep.len().saturating_add(objects.len()) > self.cache.len() {
            drop(objects);
            waiting.sweep = self.cache.state();
        } else {
            waiting.sweep.extend(objects);
        }
        drop(waiting);
        self.wake.notify_one();
    }

    /// Asks for one reconciliation of every object in the cache now, after the single requests
    /// (after an initial list, and after every relist: what changed unseen is among them). It
    /// replaces the sweeps still waiting: everything includes them.
    pub fn sweep_everything(&self) {
        // why: read under the intake's lock, as `push_all` does, so that no sweep asked for
        // meanwhile is replaced by an older snapshot.
        let mut waiting = self.lock();
        waiting.sweep = self.cache.state();
        drop(waiting);
        self.wake.notify_one();
    }

    /// A reconciliation kube-runtime reported on (done, failed, or its object gone) frees the
    /// slot of a request for the same object.
    pub fn finished<E, Q>(&self, result: &Result<(ObjectRef<K>, Action), ControllerError<E, Q>>) {
        let object = match result {
            Ok((object, _)) => object.clone(),
            Err(
                ControllerError::ObjectNotFound(object)
                | ControllerError::ReconcilerFailed(_, object),
            ) => {
                let found = ObjectRef::new(&object.name);
                match &object.namespace {
                    Some(namespace) => found.within(namespace),
                    None => found,
                }
            }
            Err(ControllerError::QueueError(_) | ControllerError::RunnerError(_)) => return,
        };
        if self.lock().handed_out.remove(&object) {
            self.wake.notify_one();
        }
    }

    /// The requests, paced: a new key's only into a free slot, an issued key's while fewer than
    /// two per slot are unfinished. Single requests go before sweeps.
    pub fn requests(self: Arc<Self>) -> impl Stream<Item = ObjectRef<K>> {
        futures::stream::unfold(self, |intake| async move {
            let object = intake.next().await;
            Some((object, intake))
        })
    }

    /// The next request, once one may be handed out.
    async fn next(&self) -> ObjectRef<K> {
        loop {
            if let Some(object) = self.take() {
                return object;
            }
            // why: a push between `take` and here left a permit, so this returns at once.
            self.wake.notified().await;
        }
    }

    fn take(&self) -> Option<ObjectRef<K>> {
        let mut waiting = self.lock();
        let unfinished = waiting.handed_out.len();
        if unfinished >= self.slots * ISSUED_AHEAD_PER_SLOT {
            return None;
        }
        let source = waiting.next_source()?;
        // why: the lane says whose turn it is; whether the request may cost a hash is read now.
        // A watch event of an object naming a key as owner queues in the first lane whatever
        // the key's state, and anyone who may write keywarden-labelled objects can make one.
        let costly = match source {
            Source::Issued => waiting
                .issued
                .order
                .front()
                .is_none_or(|object| self.costly(object)),
            Source::New => true,
            Source::Sweep => waiting
                .sweep
                .last()
                .is_none_or(|object| (self.lane_of)(object) == Lane::New),
        };
        if costly && unfinished >= self.slots {
            return None;
        }
        let object = waiting.pop(source)?;
        waiting.give_back_drained();
        waiting.handed_out.insert(object.clone());
        Some(object)
    }

    /// Whether reconciling `object` may cost a hash: it is not cached as issued.
    fn costly(&self, object: &ObjectRef<K>) -> bool {
        self.cache
            .get(object)
            .is_none_or(|cached| (self.lane_of)(&cached) == Lane::New)
    }

    /// How many requests wait in each lane and sweep, and how many were handed out and have
    /// not finished.
    pub fn depth(&self) -> Depth {
        let waiting = self.lock();
        Depth {
            issued: waiting.issued.order.len(),
            new: waiting.new.order.len(),
            sweep: waiting.sweep.len(),
            handed_out: waiting.handed_out.len(),
        }
    }

    /// How many requests wait here, and how many were handed out and have not finished.
    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        let depth = self.depth();
        (depth.issued + depth.new + depth.sweep, depth.handed_out)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting<K>> {
        lock(&self.state)
    }
}

/// Where the next request comes from.
#[derive(Clone, Copy)]
enum Source {
    Issued,
    New,
    Sweep,
}

impl<K: Resource<DynamicType = ()>> Waiting<K> {
    /// Whose turn it is: the first lane's, except every `ISSUED_PER_NEW + 1`th while both
    /// wait; sweeps after both.
    fn next_source(&self) -> Option<Source> {
        let (issued, new) = (!self.issued.order.is_empty(), !self.new.order.is_empty());
        if issued && (self.issued_in_a_row < ISSUED_PER_NEW || !new) {
            Some(Source::Issued)
        } else if new {
            Some(Source::New)
        } else if !self.sweep.is_empty() {
            Some(Source::Sweep)
        } else {
            None
        }
    }

    fn pop(&mut self, source: Source) -> Option<ObjectRef<K>> {
        match source {
            Source::Issued => {
                self.issued_in_a_row = self.issued_in_a_row.saturating_add(1);
                self.issued.pop()
            }
            Source::New => {
                self.issued_in_a_row = 0;
                self.new.pop()
            }
            Source::Sweep => Some(ObjectRef::from_obj(&*self.sweep.pop()?)),
        }
    }

    fn give_back_drained(&mut self) {
        self.issued.give_back_drained();
        self.new.give_back_drained();
        if self.sweep.is_empty() && self.sweep.capacity() > 0 {
            self.sweep = Vec::new();
        }
    }
}

/// Requests, oldest first, each once.
struct Queue<K: Resource<DynamicType = ()>> {
    order: VecDeque<ObjectRef<K>>,
    members: HashSet<ObjectRef<K>>,
}

impl<K: Resource<DynamicType = ()>> Default for Queue<K> {
    fn default() -> Self {
        Self {
            order: VecDeque::new(),
            members: HashSet::new(),
        }
    }
}

impl<K: Resource<DynamicType = ()>> Queue<K> {
    fn push(&mut self, object: ObjectRef<K>) {
        if self.members.insert(object.clone()) {
            self.order.push_back(object);
        }
    }

    fn pop(&mut self) -> Option<ObjectRef<K>> {
        let object = self.order.pop_front()?;
        self.members.remove(&object);
        Some(object)
    }

    fn give_back_drained(&mut self) {
        if self.order.is_empty() && self.order.capacity() > KEEP_CAPACITY {
            *self = Self::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::StreamExt;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::reflector;
    use kube::runtime::watcher::Event;

    use super::*;

    fn config_map(name: &str) -> ConfigMap {
        let mut map = ConfigMap::default();
        map.metadata.name = Some(name.into());
        map.metadata.namespace = Some("team".into());
        map
    }

    /// The lane of a swept object, told by its name.
    fn lane_by_name(map: &ConfigMap) -> Lane {
        match map.metadata.name.as_deref() {
            Some(name) if name.starts_with("new") => Lane::New,
            _ => Lane::Issued,
        }
    }

    fn object(name: &str) -> ObjectRef<ConfigMap> {
        ObjectRef::new(name).within("team")
    }

    fn cache(names: &[&str]) -> Store<ConfigMap> {
        let (cache, mut writer) = reflector::store();
        writer.apply_watcher_event(&Event::Init);
        for name in names {
            writer.apply_watcher_event(&Event::InitApply(config_map(name)));
        }
        writer.apply_watcher_event(&Event::InitDone);
        cache
    }

    /// The next request handed out; fails the test instead of hanging when none comes.
    async fn handed(
        requests: &mut (impl Stream<Item = ObjectRef<ConfigMap>> + Unpin),
    ) -> ObjectRef<ConfigMap> {
        tokio::time::timeout(Duration::from_secs(5), requests.next())
            .await
            .expect("a request is handed out")
            .expect("the requests never end")
    }

    /// What kube-runtime reports of one reconciliation.
    type Report =
        Result<(ObjectRef<ConfigMap>, Action), ControllerError<std::io::Error, std::io::Error>>;

    fn done(object: ObjectRef<ConfigMap>) -> Report {
        Ok((object, Action::await_change()))
    }

    /// Fails the test if a request is handed out within 50 ms.
    async fn none_handed(requests: &mut (impl Stream<Item = ObjectRef<ConfigMap>> + Unpin)) {
        let next = tokio::time::timeout(Duration::from_millis(50), requests.next()).await;
        assert!(next.is_err(), "handed out: {next:?}");
    }

    #[tokio::test]
    async fn new_keys_are_handed_out_only_into_free_slots() {
        let intake = Arc::new(Intake::new(2, cache(&[]), lane_by_name));
        for name in ["a", "b", "c"] {
            intake.push(object(name), Lane::New);
        }
        let mut requests = Box::pin(intake.clone().requests());
        assert_eq!(handed(&mut requests).await, object("a"));
        assert_eq!(handed(&mut requests).await, object("b"));
        let third = tokio::time::timeout(Duration::from_millis(50), requests.next()).await;
        assert!(third.is_err(), "a third request was handed out: {third:?}");
        assert_eq!(intake.counts(), (1, 2));

        intake.finished(&done(object("b")));
        assert_eq!(handed(&mut requests).await, object("c"));
        assert_eq!(intake.counts(), (0, 2));
    }

    #[tokio::test]
    async fn issued_keys_are_handed_out_up_to_two_per_slot() {
        let cached = cache(&["issued-a", "issued-b", "issued-c"]);
        let intake = Arc::new(Intake::new(1, cached, lane_by_name));
        for name in ["issued-a", "issued-b", "issued-c"] {
            intake.push(object(name), Lane::Issued);
        }
        let mut requests = Box::pin(intake.clone().requests());
        assert_eq!(handed(&mut requests).await, object("issued-a"));
        assert_eq!(handed(&mut requests).await, object("issued-b"));
        none_handed(&mut requests).await;
        intake.finished(&done(object("issued-a")));
        assert_eq!(handed(&mut requests).await, object("issued-c"));
    }

    #[tokio::test]
    async fn a_new_key_waits_for_a_free_slot_and_keeps_its_turn_meanwhile() {
        let names: Vec<String> = (0..ISSUED_PER_NEW)
            .map(|i| format!("issued-{i}"))
            .chain(["issued-late".to_string()])
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let intake = Arc::new(Intake::new(1, cache(&names), lane_by_name));
        intake.push(object("new-1"), Lane::New);
        let mut requests = Box::pin(intake.clone().requests());
        for i in 0..ISSUED_PER_NEW {
            intake.push(object(&format!("issued-{i}")), Lane::Issued);
            let next = handed(&mut requests).await;
            assert_eq!(next.name, format!("issued-{i}"));
            if i + 1 < ISSUED_PER_NEW {
                intake.finished(&done(next));
            }
        }
        // The last issued request holds the slot: the new key's turn has come, and the issued
        // request asked meanwhile does not take it, though one more could be handed out.
        intake.push(object("issued-late"), Lane::Issued);
        none_handed(&mut requests).await;
        intake.finished(&done(object(&format!("issued-{}", ISSUED_PER_NEW - 1))));
        assert_eq!(handed(&mut requests).await, object("new-1"));
        assert_eq!(handed(&mut requests).await, object("issued-late"));
    }

    #[tokio::test]
    async fn a_first_lane_request_for_a_key_not_cached_as_issued_waits_for_a_free_slot() {
        let intake = Arc::new(Intake::new(1, cache(&["issued-a", "new-y"]), lane_by_name));
        // As the watch event of an object naming the key as owner asks, whatever its state.
        for name in ["issued-a", "new-y", "uncached"] {
            intake.push(object(name), Lane::Issued);
        }
        let mut requests = Box::pin(intake.clone().requests());
        assert_eq!(handed(&mut requests).await, object("issued-a"));
        none_handed(&mut requests).await;
        intake.finished(&done(object("issued-a")));
        assert_eq!(handed(&mut requests).await, object("new-y"));
        none_handed(&mut requests).await;
        intake.finished(&done(object("new-y")));
        assert_eq!(handed(&mut requests).await, object("uncached"));
    }

    #[tokio::test]
    async fn a_swept_new_key_waits_for_a_free_slot() {
        let intake = Arc::new(Intake::new(1, cache(&["listed", "new-x"]), lane_by_name));
        // why: a sweep hands out from the end of what it was given.
        intake.push_all(vec![
            Arc::new(config_map("new-x")),
            Arc::new(config_map("listed")),
        ]);
        let mut requests = Box::pin(intake.clone().requests());
        assert_eq!(handed(&mut requests).await, object("listed"));
        none_handed(&mut requests).await;
        intake.finished(&done(object("listed")));
        assert_eq!(handed(&mut requests).await, object("new-x"));
    }

    #[tokio::test]
    async fn issued_keys_go_before_new_ones_and_sweeps_after_both() {
        let intake = Arc::new(Intake::new(1, cache(&["listed"]), lane_by_name));
        intake.sweep_everything();
        intake.push(object("new-1"), Lane::New);
        intake.push(object("new-2"), Lane::New);
        intake.push(object("issued-1"), Lane::Issued);
        let mut requests = Box::pin(intake.clone().requests());
        let mut order = Vec::new();
        for _ in 0..5 {
            let next = handed(&mut requests).await;
            if next == object("new-1") {
                // Asked while a burst of new keys waits: goes before the rest of it.
                intake.push(object("issued-2"), Lane::Issued);
            }
            intake.finished(&done(next.clone()));
            order.push(next.name);
        }
        assert_eq!(
            order,
            ["issued-1", "new-1", "issued-2", "new-2", "listed"].map(String::from)
        );
    }

    #[tokio::test]
    async fn new_keys_get_every_eighth_turn_while_issued_keys_keep_asking() {
        let intake = Arc::new(Intake::new(1, cache(&[]), lane_by_name));
        intake.push(object("new-1"), Lane::New);
        intake.push(object("new-2"), Lane::New);
        let mut requests = Box::pin(intake.clone().requests());
        let mut order = Vec::new();
        for i in 0..18 {
            // Someone keeps writing objects that issued keys hear of.
            intake.push(object(&format!("issued-{i}")), Lane::Issued);
            let next = handed(&mut requests).await;
            intake.finished(&done(next.clone()));
            order.push(next.name);
        }
        let turns: Vec<usize> = order
            .iter()
            .enumerate()
            .filter(|(_, name)| name.starts_with("new-"))
            .map(|(at, _)| at)
            .collect();
        assert_eq!(turns, [7, 15], "{order:?}");
    }

    #[tokio::test]
    async fn a_failed_or_vanished_reconciliation_frees_its_slot() {
        let intake = Arc::new(Intake::new(1, cache(&[]), lane_by_name));
        intake.push(object("a"), Lane::New);
        intake.push(object("b"), Lane::New);
        intake.push(object("c"), Lane::New);
        let mut requests = Box::pin(intake.clone().requests());
        assert_eq!(handed(&mut requests).await, object("a"));

        let failed: Report = Err(ControllerError::ReconcilerFailed(
            std::io::Error::other("reconcile failed"),
            Box::new(object("a").erase()),
        ));
        intake.finished(&failed);
        assert_eq!(handed(&mut requests).await, object("b"));

        let gone: Report = Err(ControllerError::ObjectNotFound(Box::new(
            object("b").erase(),
        )));
        intake.finished(&gone);
        assert_eq!(handed(&mut requests).await, object("c"));
    }

    #[tokio::test]
    async fn another_objects_report_frees_nothing() {
        let intake = Arc::new(Intake::new(1, cache(&[]), lane_by_name));
        intake.push(object("a"), Lane::New);
        intake.push(object("b"), Lane::New);
        let mut requests = Box::pin(intake.clone().requests());
        assert_eq!(handed(&mut requests).await, object("a"));
        intake.finished(&done(object("z")));
        intake.finished(&done(ObjectRef::new("a").within("other-team")));
        let next = tokio::time::timeout(Duration::from_millis(50), requests.next()).await;
        assert!(next.is_err(), "handed out without a slot: {next:?}");
    }

    #[tokio::test]
    async fn repeated_requests_wait_once() {
        let intake = Arc::new(Intake::new(8, cache(&[]), lane_by_name));
        for _ in 0..3 {
            intake.push(object("a"), Lane::New);
        }
        intake.push(object("b"), Lane::New);
        assert_eq!(intake.counts(), (2, 0));
        let mut requests = Box::pin(intake.clone().requests());
        assert_eq!(handed(&mut requests).await, object("a"));
        assert_eq!(handed(&mut requests).await, object("b"));
        // Asked again after it was handed out: it is asked again (the object may have changed).
        intake.push(object("a"), Lane::New);
        assert_eq!(handed(&mut requests).await, object("a"));
    }

    #[tokio::test]
    async fn a_sweep_reads_the_cache_when_asked_for_and_waits_behind_single_requests() {
        let (cache, mut writer) = reflector::store();
        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&Event::InitApply(config_map("listed")));
        writer.apply_watcher_event(&Event::InitDone);
        let intake = Arc::new(Intake::new(8, cache, lane_by_name));
        intake.sweep_everything();
        intake.push(object("single"), Lane::New);
        // Cached after the sweep was asked for: not part of it.
        writer.apply_watcher_event(&Event::Apply(config_map("later")));
        let mut requests = Box::pin(intake.clone().requests());
        assert_eq!(handed(&mut requests).await, object("single"));
        assert_eq!(handed(&mut requests).await, object("listed"));
        let more = tokio::time::timeout(Duration::from_millis(50), requests.next()).await;
        assert!(more.is_err(), "swept what was not asked for: {more:?}");
        assert_eq!(intake.counts(), (0, 2));
    }

    #[tokio::test]
    async fn a_sweep_of_everything_replaces_the_waiting_sweeps() {
        let intake = Arc::new(Intake::new(8, cache(&["a", "b", "c"]), lane_by_name));
        intake.push_all(vec![Arc::new(config_map("a"))]);
        intake.sweep_everything();
        intake.push_all(vec![Arc::new(config_map("c"))]);
        let mut requests = Box::pin(intake.clone().requests());
        let mut swept = Vec::new();
        for _ in 0..3 {
            swept.push(handed(&mut requests).await);
        }
        swept.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(swept, vec![object("a"), object("b"), object("c")]);
        let more = tokio::time::timeout(Duration::from_millis(50), requests.next()).await;
        assert!(more.is_err(), "swept twice: {more:?}");
    }

    #[tokio::test]
    async fn sweeps_that_would_outgrow_the_cache_become_one_of_everything() {
        let intake = Arc::new(Intake::new(8, cache(&["a", "b", "c"]), lane_by_name));
        let most = || vec![Arc::new(config_map("a")), Arc::new(config_map("b"))];
        for _ in 0..10 {
            intake.push_all(most());
        }
        assert_eq!(intake.counts(), (3, 0), "ten changes naming two keys each");
        let mut requests = Box::pin(intake.clone().requests());
        let mut swept = Vec::new();
        for _ in 0..3 {
            swept.push(handed(&mut requests).await.name);
        }
        swept.sort();
        assert_eq!(swept, ["a", "b", "c"].map(String::from));
    }

    #[tokio::test]
    async fn a_drained_burst_gives_its_memory_back() {
        let intake = Arc::new(Intake::new(1, cache(&[]), lane_by_name));
        let mut requests = Box::pin(intake.clone().requests());
        for i in 0..10_000 {
            intake.push(object(&format!("key-{i}")), Lane::New);
        }
        for i in 0..10_000 {
            let next = handed(&mut requests).await;
            assert_eq!(next, object(&format!("key-{i}")));
            intake.finished(&done(next));
        }
        let waiting = intake.lock();
        assert_eq!(waiting.new.order.capacity(), 0);
        assert_eq!(waiting.new.members.capacity(), 0);
        assert!(waiting.handed_out.is_empty());
    }
}
