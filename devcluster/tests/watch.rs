//! Watch semantics: event sequences, resumption, bookmarks, timeouts and 410 Expired.

use std::time::Duration;

use devcluster::{DevCluster, Options};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::watcher::{self, Event};
use kube::ResourceExt;

fn config_map(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.to_string());
    cm.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    cm
}

/// Waits up to 10 s for the next event of a raw watch stream.
async fn next<S>(stream: &mut S) -> WatchEvent<ConfigMap>
where
    S: futures::Stream<Item = kube::Result<WatchEvent<ConfigMap>>> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an event within 10 s")
        .expect("the stream is still open")
        .expect("a well-formed event")
}

fn describe(event: &WatchEvent<ConfigMap>) -> String {
    match event {
        WatchEvent::Added(o) => format!("ADDED {}", o.name_any()),
        WatchEvent::Modified(o) => format!("MODIFIED {}", o.name_any()),
        WatchEvent::Deleted(o) => format!("DELETED {}", o.name_any()),
        WatchEvent::Bookmark(_) => "BOOKMARK".to_string(),
        WatchEvent::Error(e) => format!("ERROR {} {}", e.code, e.reason),
    }
}

#[tokio::test]
async fn watch_from_a_list_version_reports_added_modified_deleted_in_order() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().unwrap(), "default");
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    api.create(&PostParams::default(), &config_map("w", &[]))
        .await
        .unwrap();
    let patch = Patch::Merge(serde_json::json!({ "data": { "k": "v" } }));
    api.patch("w", &PatchParams::default(), &patch)
        .await
        .unwrap();
    api.delete("w", &DeleteParams::default()).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(describe(&next(&mut stream).await));
    }
    assert_eq!(seen, ["ADDED w", "MODIFIED w", "DELETED w"]);
}

#[tokio::test]
async fn a_no_op_write_emits_no_event() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().unwrap(), "default");
    let created = api
        .create(&PostParams::default(), &config_map("quiet", &[]))
        .await
        .unwrap();
    let mut stream = api
        .watch(
            &WatchParams::default(),
            &created.resource_version().unwrap(),
        )
        .await
        .unwrap()
        .boxed();
    api.replace("quiet", &PostParams::default(), &created)
        .await
        .unwrap();
    api.create(&PostParams::default(), &config_map("marker", &[]))
        .await
        .unwrap();
    assert_eq!(describe(&next(&mut stream).await), "ADDED marker");
}

#[tokio::test]
async fn leaving_and_entering_a_label_selector_is_deleted_and_added() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().unwrap(), "default");
    let created = api
        .create(
            &PostParams::default(),
            &config_map("sel", &[("tier", "web")]),
        )
        .await
        .unwrap();
    let params = WatchParams::default().labels("tier=web");
    let mut stream = api
        .watch(&params, &created.resource_version().unwrap())
        .await
        .unwrap()
        .boxed();
    let leave = Patch::Merge(serde_json::json!({ "metadata": { "labels": { "tier": "db" } } }));
    api.patch("sel", &PatchParams::default(), &leave)
        .await
        .unwrap();
    let enter = Patch::Merge(serde_json::json!({ "metadata": { "labels": { "tier": "web" } } }));
    api.patch("sel", &PatchParams::default(), &enter)
        .await
        .unwrap();
    assert_eq!(describe(&next(&mut stream).await), "DELETED sel");
    assert_eq!(describe(&next(&mut stream).await), "ADDED sel");
}

#[tokio::test]
async fn a_resource_version_older_than_the_history_is_410_expired() {
    let options = Options {
        history_capacity: 2,
        ..Options::default()
    };
    let cluster = DevCluster::start_with(options).await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().unwrap(), "default");
    let first = api
        .create(&PostParams::default(), &config_map("a", &[]))
        .await
        .unwrap();
    for name in ["b", "c", "d"] {
        api.create(&PostParams::default(), &config_map(name, &[]))
            .await
            .unwrap();
    }
    let mut stream = api
        .watch(&WatchParams::default(), &first.resource_version().unwrap())
        .await
        .unwrap()
        .boxed();
    match next(&mut stream).await {
        WatchEvent::Error(status) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
            assert!(
                status.message.starts_with("too old resource version"),
                "{}",
                status.message
            );
        }
        other => panic!("expected a 410 ERROR event, got {}", describe(&other)),
    }
    let closed = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("closed within 10 s");
    assert!(closed.is_none(), "the stream closes after the error");
}

#[tokio::test]
async fn timeout_seconds_closes_the_stream() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().unwrap(), "default");
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default().timeout(1), &rv)
        .await
        .unwrap()
        .boxed();
    let end = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the stream ends within 10 s");
    assert!(end.is_none());
}

#[tokio::test]
async fn idle_watches_with_bookmarks_receive_periodic_bookmarks() {
    let options = Options {
        bookmark_interval: Duration::from_millis(200),
        ..Options::default()
    };
    let cluster = DevCluster::start_with(options).await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().unwrap(), "default");
    let created = api
        .create(&PostParams::default(), &config_map("b", &[]))
        .await
        .unwrap();
    let params = WatchParams::default();
    let mut stream = api
        .watch(&params, &created.resource_version().unwrap())
        .await
        .unwrap()
        .boxed();
    match next(&mut stream).await {
        WatchEvent::Bookmark(bookmark) => {
            let rv: u64 = bookmark.metadata.resource_version.parse().unwrap();
            assert!(rv >= created.resource_version().unwrap().parse::<u64>().unwrap());
        }
        other => panic!("expected a BOOKMARK, got {}", describe(&other)),
    }
}

#[tokio::test]
async fn kube_runtime_watcher_sees_the_initial_list_and_later_changes() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().unwrap(), "default");
    api.create(&PostParams::default(), &config_map("before", &[]))
        .await
        .unwrap();
    let mut events = watcher::watcher(api.clone(), watcher::Config::default()).boxed();
    let mut initial = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        match event {
            Event::Init => {}
            Event::InitApply(cm) => initial.push(cm.name_any()),
            Event::InitDone => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(initial, ["before"]);
    api.create(&PostParams::default(), &config_map("after", &[]))
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), events.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match event {
        Event::Apply(cm) => assert_eq!(cm.name_any(), "after"),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn streaming_lists_send_initial_events_then_an_initial_events_end_bookmark() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().unwrap(), "default");
    api.create(&PostParams::default(), &config_map("first", &[]))
        .await
        .unwrap();
    let config = watcher::Config::default().streaming_lists();
    let mut events = watcher::watcher(api.clone(), config).boxed();
    let mut initial = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        match event {
            Event::Init => {}
            Event::InitApply(cm) => initial.push(cm.name_any()),
            Event::InitDone => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(initial, ["first"]);
}

#[tokio::test]
async fn metadata_watches_stream_partial_object_metadata() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().unwrap(), "default");
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = api
        .watch_metadata(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    api.create(&PostParams::default(), &config_map("meta", &[("a", "b")]))
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match event {
        WatchEvent::Added(meta) => {
            assert_eq!(meta.name_any(), "meta");
            assert_eq!(
                meta.types.map(|t| t.kind).as_deref(),
                Some("PartialObjectMetadata")
            );
        }
        other => panic!("expected ADDED, got {other:?}"),
    }
}
