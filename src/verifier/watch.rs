//! Keeps the credential index in step with the cluster through kube-runtime watchers, and
//! confirms how fresh it is ([`super::freshness`]).
//!
//! Each watched scope runs its own watch. When one fails, the scope is relisted from scratch
//! after a pause, and the index is replaced in one step when the list is complete, so every
//! change missed while away (deactivations, rotations, deletions) applies before the scope is
//! confirmed current again.
//!
//! No copy of the objects is kept: keys are read as [`WatchedKey`]s (the fields a decision
//! needs), listed in pages of [`LIST_PAGE_SIZE`], and a relist gathers compact index entries,
//! not objects, until it is complete.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::ListParams;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::check::Verifier;
use super::freshness::probe_interval;
use super::index::{key_ref, Relisted};
use super::watched::WatchedKey;

/// Seconds the API server keeps one watch open before the watcher opens the next.
// why: kube-runtime drops a watch that sent nothing for this long plus five seconds, so a
// connection that died silently is replaced within about a minute, not five.
const WATCH_TIMEOUT_SECONDS: u32 = 55;
/// Keys per page of the initial list and of relists.
// why: each page is parsed whole before its keys are indexed; 500 (kube-runtime's default,
// made explicit) bounds that transient to a few hundred KiB whatever the number of keys.
const LIST_PAGE_SIZE: u32 = 500;
/// The first pause before relisting a failed watch; it doubles up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(500);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);
/// A failure this long after the previous one starts the pauses over.
const RETRY_RESET_AFTER: Duration = Duration::from_secs(120);
/// How long one confirming read may take before it counts as failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Indexes AccessKeys in `namespaces` (all namespaces when empty) until `shutdown`; marks the
/// verifier ready once every watched scope has been listed in full.
pub async fn watch_keys(
    verifier: Arc<Verifier>,
    client: Client,
    namespaces: Vec<String>,
    shutdown: CancellationToken,
) {
    let scopes: Vec<Scope> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.into_iter().map(Some).collect()
    }
    .into_iter()
    .enumerate()
    .map(|(position, namespace)| Scope {
        position,
        api: match &namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        },
        namespace,
        wake: Notify::new(),
    })
    .collect();
    verifier.freshness().track(scopes.len(), Instant::now());
    let listed = AtomicUsize::new(0);
    let watches = futures::future::join_all(
        scopes
            .iter()
            .map(|scope| watch_scope(&verifier, scope, &listed, scopes.len(), &shutdown)),
    );
    tokio::select! {
        () = shutdown.cancelled() => {}
        _ = watches => {}
        () = confirm_until_shutdown(&verifier, &scopes, &shutdown) => {}
    }
}

/// One watched scope: a namespace, or all of them.
struct Scope {
    position: usize,
    namespace: Option<String>,
    api: Api<WatchedKey>,
    /// Wakes a failed watch out of its pause as soon as the API server answers again.
    wake: Notify,
}

/// Watches one scope until `shutdown`, relisting after every failure.
async fn watch_scope(
    verifier: &Verifier,
    scope: &Scope,
    listed: &AtomicUsize,
    scope_count: usize,
    shutdown: &CancellationToken,
) {
    let config = watcher::Config::default()
        .timeout(WATCH_TIMEOUT_SECONDS)
        .page_size(LIST_PAGE_SIZE);
    let mut retries = Retries::default();
    let mut synced_once = false;
    loop {
        let mut events = watcher::watcher(scope.api.clone(), config.clone()).boxed();
        let mut relisted = Relisted::default();
        let error = loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => return,
                next = events.next() => next,
            };
            match next {
                Some(Ok(event)) => {
                    let now = Instant::now();
                    if apply_event(verifier, &mut relisted, scope.namespace.as_deref(), event) {
                        verifier.freshness().listed(scope.position, now);
                        retries.connected(scope);
                        if !synced_once {
                            synced_once = true;
                            let done = listed.fetch_add(1, Ordering::AcqRel) + 1;
                            if done == scope_count && !verifier.is_ready() {
                                tracing::info!(
                                    keys = verifier.index().len(),
                                    "verifier index synced"
                                );
                                verifier.mark_ready();
                            }
                        }
                    } else {
                        verifier.freshness().watched(scope.position, now);
                    }
                }
                Some(Err(error)) => break error,
                None => return,
            }
        };
        verifier.freshness().lost(scope.position);
        let pause = retries.failed(scope, &error, Instant::now());
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
            () = scope.wake.notified() => {}
        }
    }
}

/// Applies one watch event; returns whether it completed a full list. `relisted` gathers the
/// keys of a list in progress.
fn apply_event(
    verifier: &Verifier,
    relisted: &mut Relisted,
    namespace: Option<&str>,
    event: Event<WatchedKey>,
) -> bool {
    match event {
        Event::Apply(key) => {
            verifier.apply_watched(&key);
            false
        }
        Event::Delete(key) => {
            verifier.remove_key(&key_ref(&key));
            false
        }
        // why: the listed keys are gathered and swapped in at `InitDone`, so a relist never
        // answers from a half-updated view.
        Event::Init => {
            relisted.clear();
            false
        }
        Event::InitApply(key) => {
            relisted.push(verifier.index().prepare(&key));
            false
        }
        Event::InitDone => {
            // why: keys missing from the full list were deleted while we were away.
            verifier.replace_keys(
                |key| namespace.is_none_or(|ns| *key.namespace == *ns),
                std::mem::take(relisted),
            );
            true
        }
    }
}

/// Confirms every scope with a cheap read (one object's metadata) until `shutdown`; a read
/// that succeeds while a scope's watch is down wakes that watch to relist at once.
async fn confirm_until_shutdown(
    verifier: &Verifier,
    scopes: &[Scope],
    shutdown: &CancellationToken,
) {
    let freshness = verifier.freshness();
    let one_object = ListParams::default().limit(1);
    let mut ticks = tokio::time::interval(probe_interval(freshness.max_staleness()));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        for scope in scopes {
            let probe = freshness.start_probe(scope.position, Instant::now());
            let read = scope.api.list_metadata(&one_object);
            let answered = tokio::select! {
                () = shutdown.cancelled() => return,
                read = tokio::time::timeout(PROBE_TIMEOUT, read) => matches!(read, Ok(Ok(_))),
            };
            match probe {
                Some(probe) if answered => freshness.probe_succeeded(probe),
                None if answered && !freshness.is_watching(scope.position) => {
                    scope.wake.notify_one();
                }
                _ => {}
            }
        }
    }
}

/// Pauses between relists of a failed watch, and the log lines about them: one line per
/// failed attempt, with pauses that double while the API server stays away.
#[derive(Default)]
struct Retries {
    attempts: u32,
    last_failure: Option<Instant>,
    failing_since: Option<Instant>,
}

impl Retries {
    /// Logs the failure; returns how long to pause before relisting.
    fn failed(&mut self, scope: &Scope, error: &watcher::Error, now: Instant) -> Duration {
        if self
            .last_failure
            .is_some_and(|last| now.duration_since(last) > RETRY_RESET_AFTER)
        {
            self.attempts = 0;
        }
        self.last_failure = Some(now);
        let failing_since = *self.failing_since.get_or_insert(now);
        self.attempts = self.attempts.saturating_add(1);
        let pause = retry_delay(self.attempts);
        tracing::warn!(
            %error,
            namespace = scope.namespace.as_deref().unwrap_or("*"),
            attempt = self.attempts,
            failing_for_seconds = now.duration_since(failing_since).as_secs(),
            retry_in_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
            "AccessKey watch failed; relisting after a pause"
        );
        pause
    }

    /// The scope listed again.
    fn connected(&mut self, scope: &Scope) {
        if let Some(since) = self.failing_since.take() {
            tracing::info!(
                namespace = scope.namespace.as_deref().unwrap_or("*"),
                after_seconds = since.elapsed().as_secs(),
                "AccessKey watch restored; index relisted"
            );
        }
    }
}

/// The pause before relist `attempt` (1-based): doubling from [`FIRST_RETRY_DELAY`], with up
/// to a quarter of jitter so replicas do not relist in step.
fn retry_delay(attempt: u32) -> Duration {
    let doubled = FIRST_RETRY_DELAY.saturating_mul(1 << attempt.saturating_sub(1).min(16));
    let base = doubled.min(MAX_RETRY_DELAY);
    let jitter = base.mul_f64(rand::random::<f64>() / 4.0);
    base.saturating_sub(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relist_pauses_double_up_to_the_cap() {
        let pauses: Vec<Duration> = (1..=10).map(retry_delay).collect();
        let expected = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0];
        for (pause, full) in pauses.iter().zip(expected) {
            let full = Duration::from_secs_f64(full);
            assert!(*pause <= full && *pause >= full.mul_f64(0.75), "{pauses:?}");
        }
    }
}
