//! `devcluster bench`: throughput and memory figures of an in-process devcluster, measured
//! through a real kube client over loopback. Prints figures; asserts nothing.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};

use crate::DevCluster;

/// Objects created by each phase.
const OBJECTS: usize = 10_000;
/// Requests in flight at once from the one client.
const CONCURRENCY: usize = 32;
const WATCHERS: usize = 10;
const WATCHED_CREATES: usize = 1_000;

fn config_map(name: String) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name);
    cm.data = Some([("key".to_string(), "value".to_string())].into());
    cm
}

/// Resident set size of this process in bytes (Linux), if known.
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn per_second(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(f64::EPSILON)
}

/// Runs every phase and prints one line per figure.
pub async fn run() -> anyhow::Result<()> {
    let cluster = DevCluster::start().await?;
    let client = cluster.client()?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    let sequential = 1_000;
    let started = Instant::now();
    for i in 0..sequential {
        api.create(&PostParams::default(), &config_map(format!("seq-{i}")))
            .await?;
    }
    println!(
        "creates/s, sequential:        {:>10.0}",
        per_second(sequential, started.elapsed())
    );

    let rss_before = rss_bytes();
    let started = Instant::now();
    futures::stream::iter(0..OBJECTS)
        .map(|i| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &config_map(format!("cm-{i}")))
                    .await
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    println!(
        "creates/s, {CONCURRENCY} in flight:       {:>10.0}",
        per_second(OBJECTS, started.elapsed())
    );
    if let (Some(before), Some(after)) = (rss_before, rss_bytes()) {
        let per_object = after.saturating_sub(before) / OBJECTS as u64;
        println!("memory per stored object:     {per_object:>10} bytes (RSS delta, includes client buffers)");
    }

    let started = Instant::now();
    futures::stream::iter(0..OBJECTS)
        .map(|i| {
            let api = api.clone();
            async move { api.get(&format!("cm-{i}")).await }
        })
        .buffer_unordered(CONCURRENCY)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    println!(
        "gets/s, {CONCURRENCY} in flight:          {:>10.0}",
        per_second(OBJECTS, started.elapsed())
    );

    let started = Instant::now();
    let listed = api.list(&ListParams::default()).await?;
    println!(
        "list of {} objects:        {:>10.1} ms",
        listed.items.len(),
        started.elapsed().as_secs_f64() * 1000.0
    );

    let rv = listed.metadata.resource_version.unwrap_or_default();
    let mut watchers = Vec::new();
    for _ in 0..WATCHERS {
        let stream = api.watch(&WatchParams::default(), &rv).await?;
        watchers.push(tokio::spawn(async move {
            let mut stream = stream.boxed();
            let mut added = 0;
            while added < WATCHED_CREATES {
                match stream.try_next().await {
                    Ok(Some(WatchEvent::Added(_))) => added += 1,
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
            added
        }));
    }
    let started = Instant::now();
    for i in 0..WATCHED_CREATES {
        api.create(&PostParams::default(), &config_map(format!("watched-{i}")))
            .await?;
    }
    let mut delivered = 0;
    for watcher in watchers {
        delivered += watcher.await?;
    }
    println!(
        "watch fan-out to {WATCHERS} watchers:  {:>10.0} events/s delivered ({delivered} events)",
        per_second(delivered, started.elapsed())
    );
    Ok(())
}
