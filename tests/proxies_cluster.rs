//! nginx `auth_request` and Caddy `forward_auth` in front of a backend, asking a verifier that
//! watches a cluster (devcluster, or a real one with `KEYWARDEN_TEST_KUBECONFIG`): the key
//! lifecycle as users drive it with patches (deactivation within a second, rotation grace).

mod support_verifier;

use std::time::Duration;

use keywarden::verifier::VerifierArgs;
use support_verifier::cluster::{check_status, wait_until, TestCluster};
use support_verifier::proxies::{
    proxy_binary, start_backend, start_caddy, start_nginx, ProxyProcess,
};
use support_verifier::{seconds_from_now, Issued, KeyBuilder};

/// A verifier behind a proxy on loopback that reports the method in `method_header`.
fn behind_proxy(method_header: &'static str) -> VerifierArgs {
    let forwarding = support_verifier::loopback_proxy(Some(method_header));
    VerifierArgs {
        forwarded_method_header: forwarding.method_header,
        trusted_proxies: forwarding.trusted_proxies,
        ..VerifierArgs::default()
    }
}

/// Deactivation and rotation through `proxy`, driven by patches to the cluster.
async fn lifecycle_through(proxy: &ProxyProcess, cluster: &TestCluster, name: &str) {
    let http = reqwest::Client::new();
    let url = proxy.url("/api/items");
    let first = Issued::generate();
    cluster
        .create_key(&KeyBuilder::new(cluster.namespace(), name, &first).build())
        .await;
    let issued = wait_until(Duration::from_secs(10), || async {
        check_status(&http, &url, &first.basic()).await == 200
    })
    .await;
    assert!(issued, "{name}: the key is accepted");

    let second = Issued::generate();
    cluster
        .write_status(
            &KeyBuilder::new(cluster.namespace(), name, &second)
                .previous(&first, seconds_from_now(5))
                .build(),
        )
        .await;
    let rotated = wait_until(Duration::from_secs(10), || async {
        check_status(&http, &url, &second.bearer()).await == 200
    })
    .await;
    assert!(rotated, "{name}: the new key is accepted");
    assert_eq!(
        check_status(&http, &url, &first.basic()).await,
        200,
        "{name}: the old key is accepted during grace"
    );
    let grace_over = wait_until(Duration::from_secs(10), || async {
        check_status(&http, &url, &first.basic()).await == 401
    })
    .await;
    assert!(
        grace_over,
        "{name}: the old key is refused after validUntil"
    );

    cluster
        .patch_spec(name, serde_json::json!({"active": false}))
        .await;
    let revoked = wait_until(Duration::from_secs(1), || async {
        check_status(&http, &url, &second.basic()).await == 401
    })
    .await;
    assert!(
        revoked,
        "{name}: deactivated key still accepted 1 s after the patch"
    );
}

#[tokio::test]
async fn nginx_rejects_a_deactivated_key_within_a_second_and_honours_rotation_grace() {
    let Some(nginx) = proxy_binary("nginx") else {
        return;
    };
    let cluster = TestCluster::start().await;
    let verifier = cluster
        .start_verifier(behind_proxy("x-original-method"))
        .await;
    let backend = start_backend().await;
    let proxy = start_nginx(&nginx, verifier.addr, backend).await;
    lifecycle_through(&proxy, &cluster, "nginx-key").await;
    drop(proxy);
    verifier.stop().await;
}

#[tokio::test]
async fn caddy_rejects_a_deactivated_key_within_a_second_and_honours_rotation_grace() {
    let Some(caddy) = proxy_binary("caddy") else {
        return;
    };
    let cluster = TestCluster::start().await;
    let verifier = cluster
        .start_verifier(behind_proxy("x-forwarded-method"))
        .await;
    let backend = start_backend().await;
    let proxy = start_caddy(&caddy, verifier.addr, backend).await;
    lifecycle_through(&proxy, &cluster, "caddy-key").await;
    drop(proxy);
    verifier.stop().await;
}
