//! Fault injection through the `Faults` handle and the `/_devcluster/` admin endpoint.
//! (kube-rs retries 429/503/504 by itself, so these tests inject other codes.)

use std::time::Duration;

use devcluster::{DevCluster, RequestMatch};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::ResourceExt;

fn config_map(name: &str) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.to_string());
    cm
}

fn api_code(err: kube::Error) -> u16 {
    match err {
        kube::Error::Api(status) => status.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn fail_next_fails_exactly_the_matching_requests() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().unwrap(), "default");
    cluster.faults().fail_next(
        RequestMatch::new("create", "configmaps").namespace("default"),
        2,
        500,
    );
    for _ in 0..2 {
        let err = api
            .create(&PostParams::default(), &config_map("x"))
            .await
            .unwrap_err();
        assert_eq!(api_code(err), 500);
    }
    assert!(
        api.get_opt("x").await.unwrap().is_none(),
        "failed requests do nothing"
    );
    api.create(&PostParams::default(), &config_map("x"))
        .await
        .unwrap();
}

#[tokio::test]
async fn faults_only_match_their_verb_resource_and_name() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().unwrap(), "default");
    api.create(&PostParams::default(), &config_map("a"))
        .await
        .unwrap();
    api.create(&PostParams::default(), &config_map("b"))
        .await
        .unwrap();
    cluster
        .faults()
        .fail_next(RequestMatch::new("get", "configmaps").name("b"), 1, 500);
    api.get("a").await.unwrap();
    api.list(&ListParams::default()).await.unwrap();
    assert_eq!(api_code(api.get("b").await.unwrap_err()), 500);
    api.get("b").await.unwrap();
}

#[tokio::test]
async fn a_dropped_response_still_commits_the_write() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().unwrap(), "default");
    cluster
        .faults()
        .drop_response_next(RequestMatch::new("create", "configmaps"), 1);
    let err = api
        .create(&PostParams::default(), &config_map("lost"))
        .await
        .unwrap_err();
    assert!(
        !matches!(err, kube::Error::Api(_)),
        "the client sees a transport error, got {err:?}"
    );
    assert!(
        api.get_opt("lost").await.unwrap().is_some(),
        "the write was committed"
    );
}

#[tokio::test]
async fn latency_delays_requests() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().unwrap(), "default");
    cluster.faults().set_latency(Duration::from_millis(300));
    let started = std::time::Instant::now();
    api.get_opt("any").await.unwrap();
    // why: a lower bound only; a noisy machine can make it slower, never faster.
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn end_watches_closes_open_watch_streams() {
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
    cluster.faults().end_watches();
    let end = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("ended within 10 s");
    assert!(end.is_none());
}

async fn first_watch_event(api: &Api<ConfigMap>, rv: &str) -> WatchEvent<ConfigMap> {
    let mut stream = api
        .watch(&WatchParams::default(), rv)
        .await
        .unwrap()
        .boxed();
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn expire_next_watch_answers_one_resume_with_410() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().unwrap(), "default");
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    cluster.faults().expire_next_watch();
    match first_watch_event(&api, &rv).await {
        WatchEvent::Error(status) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"))
        }
        other => panic!("expected 410, got {other:?}"),
    }
    api.create(&PostParams::default(), &config_map("next"))
        .await
        .unwrap();
    match first_watch_event(&api, &rv).await {
        WatchEvent::Added(cm) => assert_eq!(cm.name_any(), "next"),
        other => panic!("expected the replayed ADDED, got {other:?}"),
    }
}

#[tokio::test]
async fn compacting_the_history_expires_older_resource_versions() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().unwrap(), "default");
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    api.create(&PostParams::default(), &config_map("a"))
        .await
        .unwrap();
    cluster.faults().compact_history();
    match first_watch_event(&api, &rv).await {
        WatchEvent::Error(status) => assert_eq!(status.code, 410),
        other => panic!("expected 410, got {other:?}"),
    }
}

/// Sends a raw HTTP/1.1 request and returns the status code.
async fn raw_request(url: &str, method: &str, path: &str, body: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn the_admin_endpoint_injects_faults_over_http() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().unwrap(), "default");
    let body = r#"{"verb":"get","resource":"configmaps","times":1,"code":409}"#;
    assert_eq!(
        raw_request(&cluster.url(), "POST", "/_devcluster/faults/fail", body).await,
        200
    );
    assert_eq!(api_code(api.get("x").await.unwrap_err()), 409);
    assert_eq!(
        raw_request(&cluster.url(), "POST", "/_devcluster/faults/fail", "{}").await,
        400
    );
    assert_eq!(
        raw_request(&cluster.url(), "POST", "/_devcluster/nonsense", "").await,
        404
    );
}
