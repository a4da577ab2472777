//! Keeps the credential index in step with the cluster through kube-runtime reflectors.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use super::check::Verifier;
use super::index::key_ref;
use crate::api::access_key::AccessKey;

/// Indexes AccessKeys in `namespaces` (all namespaces when empty) until `shutdown`; marks the
/// verifier ready once every watched scope has been listed in full.
pub async fn watch_keys(
    verifier: Arc<Verifier>,
    client: Client,
    namespaces: Vec<String>,
    shutdown: CancellationToken,
) {
    let scopes: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.into_iter().map(Some).collect()
    };
    let mut synced = vec![false; scopes.len()];
    let streams = scopes.iter().enumerate().map(|(position, namespace)| {
        let api: Api<AccessKey> = match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let (store, writer) = reflector::store();
        reflector::reflector(writer, watcher::watcher(api, watcher::Config::default()))
            .default_backoff()
            .map_ok(move |event| (position, event))
            .map(move |item| (store.clone(), item))
            .boxed()
    });
    let mut events = futures::stream::select_all(streams);
    loop {
        let next = tokio::select! {
            () = shutdown.cancelled() => return,
            next = events.next() => next,
        };
        let Some((store, item)) = next else {
            return;
        };
        match item {
            Ok((position, event)) => {
                let namespace = scopes.get(position).cloned().flatten();
                if apply_event(&verifier, &store, namespace.as_deref(), event) {
                    if let Some(done) = synced.get_mut(position) {
                        *done = true;
                    }
                    if synced.iter().all(|done| *done) && !verifier.is_ready() {
                        tracing::info!(keys = verifier.index().len(), "verifier index synced");
                        verifier.mark_ready();
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "AccessKey watch failed; retrying"),
        }
    }
}

/// Applies one watch event; returns whether it completed a full list.
fn apply_event(
    verifier: &Verifier,
    store: &Store<AccessKey>,
    namespace: Option<&str>,
    event: Event<AccessKey>,
) -> bool {
    match event {
        Event::Apply(key) | Event::InitApply(key) => {
            verifier.apply_key(&key);
            false
        }
        Event::Delete(key) => {
            verifier.remove_key(&key_ref(&key));
            false
        }
        Event::Init => false,
        Event::InitDone => {
            // why: the reflector updated the store before yielding this event, so the store
            // now holds the full list; keys missing from it were deleted while we were away.
            let listed = store.state();
            verifier.replace_keys(
                |key| namespace.is_none_or(|ns| key.namespace == ns),
                &listed,
            );
            true
        }
    }
}
