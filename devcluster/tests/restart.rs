//! Stopping and restarting the API server: the port closes, connections drop, objects stay.

use std::time::Duration;

use devcluster::DevCluster;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use kube::ResourceExt;

fn config_map(name: &str) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.to_string());
    cm
}

#[tokio::test]
async fn a_stopped_server_refuses_connections_and_ends_watches_then_restarts_with_its_objects() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().unwrap(), "default");
    let created = api
        .create(&PostParams::default(), &config_map("kept"))
        .await
        .unwrap();
    let version = created.resource_version().unwrap();
    let mut watch = api
        .watch(&WatchParams::default(), &version)
        .await
        .unwrap()
        .boxed();

    cluster.stop().await;
    let ended = tokio::time::timeout(Duration::from_secs(5), watch.try_next()).await;
    assert!(
        matches!(ended, Ok(Ok(None)) | Ok(Err(_))),
        "the watch ends when the server stops"
    );
    assert!(
        tokio::net::TcpStream::connect(cluster.addr())
            .await
            .is_err(),
        "the port is closed"
    );
    assert!(api.get("kept").await.is_err());

    cluster.restart().await.unwrap();
    assert_eq!(api.get("kept").await.unwrap().uid(), created.uid());
    api.create(&PostParams::default(), &config_map("after"))
        .await
        .unwrap();
    let resumed = api
        .watch(&WatchParams::default(), &version)
        .await
        .unwrap()
        .boxed();
    let first = tokio::time::timeout(Duration::from_secs(5), resumed.into_future())
        .await
        .unwrap()
        .0;
    assert!(
        matches!(first, Some(Ok(WatchEvent::Added(cm))) if cm.name_any() == "after"),
        "a watch resumes from before the stop"
    );
}
