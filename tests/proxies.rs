//! Real proxies in front of a backend, asking the verifier: Debian nginx (`auth_request`) and
//! Caddy (`forward_auth`). The verifier's index is fed directly here (as its watch would);
//! `verifier_cluster.rs` drives the same through a cluster. Skipped loudly when a proxy is not
//! installed, unless `KEYWARDEN_REQUIRE_PROXIES` is set.

mod support_verifier;

use keywarden::verifier::Settings;
use reqwest::StatusCode;
use support_verifier::proxies::{
    proxy_binary, start_backend, start_caddy, start_nginx, ProxyProcess,
};
use support_verifier::{seconds_from_now, Issued, KeyBuilder, LocalVerifier};

/// Which proxy a case runs through (their answers differ only in what they pass back).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Proxy {
    Nginx,
    Caddy,
}

/// Runs the core cases through `proxy` in front of `local`.
async fn core_cases(kind: Proxy, proxy: &ProxyProcess, local: &LocalVerifier) {
    let valid = Issued::generate();
    local.verifier.apply_key(
        &KeyBuilder::new("team-a", "web", &valid)
            .origins(&["https://app.example.com"])
            .scopes(&["metrics:view"])
            .build(),
    );
    let logs = Issued::generate();
    local.verifier.apply_key(
        &KeyBuilder::new("team-a", "logs", &logs)
            .scopes(&["logs:view"])
            .build(),
    );
    let http = reqwest::Client::new();
    let get = |path: &str, authorization: Option<String>, origin: Option<&str>| {
        let mut request = http.get(proxy.url(path));
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        async move { request.send().await.unwrap() }
    };

    let response = get("/api/items", Some(valid.basic()), None).await;
    assert_eq!(response.status(), StatusCode::OK, "{kind:?}: valid basic");
    assert_eq!(
        response.headers()["x-echo-key-id"].to_str().unwrap(),
        valid.id.as_str(),
        "{kind:?}: the backend learns the key ID"
    );
    assert_eq!(response.headers()["x-echo-owner"], "alice");
    assert_eq!(response.text().await.unwrap(), "backend");

    let response = get("/api/items", Some(valid.bearer()), None).await;
    assert_eq!(response.status(), StatusCode::OK, "{kind:?}: valid bearer");

    for (case, authorization) in [
        ("wrong secret", Some(valid.with_wrong_secret().basic())),
        ("unknown key", Some(Issued::generate().bearer())),
        ("no key", None),
    ] {
        let response = get("/api/items", authorization, None).await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{kind:?}: {case}"
        );
        assert!(response.headers().get("x-echo-key-id").is_none());
    }

    let response = get(
        "/api/items",
        Some(valid.basic()),
        Some("https://app.example.com"),
    )
    .await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{kind:?}: allowlisted origin"
    );
    if kind == Proxy::Nginx {
        assert_eq!(
            response.headers()["access-control-allow-origin"],
            "https://app.example.com"
        );
    }
    let response = get(
        "/api/items",
        Some(valid.basic()),
        Some("https://evil.example.com"),
    )
    .await;
    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "{kind:?}: other origin"
    );
    let response = get(
        "/api/items",
        Some(logs.basic()),
        Some("https://app.example.com"),
    )
    .await;
    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "{kind:?}: empty allowlist"
    );

    let preflight = http
        .request(reqwest::Method::OPTIONS, proxy.url("/api/items"))
        .header("origin", "https://evil.example.com")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), StatusCode::OK, "{kind:?}: preflight");

    let response = get("/logs/recent", Some(logs.basic()), None).await;
    assert_eq!(response.status(), StatusCode::OK, "{kind:?}: scope granted");
    let response = get("/logs/recent", Some(valid.basic()), None).await;
    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "{kind:?}: scope missing"
    );
}

/// Deactivation and rotation, with the index updated as the watch would.
async fn lifecycle_cases(kind: Proxy, proxy: &ProxyProcess, local: &LocalVerifier) {
    let http = reqwest::Client::new();
    let status = |issued: &Issued| {
        let request = http
            .get(proxy.url("/api/items"))
            .header("authorization", issued.basic());
        async move { request.send().await.unwrap().status() }
    };
    let first = Issued::generate();
    local
        .verifier
        .apply_key(&KeyBuilder::new("team-a", "rotating", &first).build());
    assert_eq!(status(&first).await, StatusCode::OK, "{kind:?}: issued");

    let second = Issued::generate();
    local.verifier.apply_key(
        &KeyBuilder::new("team-a", "rotating", &second)
            .previous(&first, seconds_from_now(300))
            .build(),
    );
    assert_eq!(status(&second).await, StatusCode::OK, "{kind:?}: new key");
    assert_eq!(
        status(&first).await,
        StatusCode::OK,
        "{kind:?}: old key in grace"
    );

    local.verifier.apply_key(
        &KeyBuilder::new("team-a", "rotating", &second)
            .previous(&first, seconds_from_now(-1))
            .build(),
    );
    assert_eq!(
        status(&first).await,
        StatusCode::UNAUTHORIZED,
        "{kind:?}: grace over"
    );
    assert_eq!(status(&second).await, StatusCode::OK);

    local.verifier.apply_key(
        &KeyBuilder::new("team-a", "rotating", &second)
            .spec_active(false)
            .build(),
    );
    assert_eq!(
        status(&second).await,
        StatusCode::UNAUTHORIZED,
        "{kind:?}: deactivated"
    );
}

async fn verifier_behind_proxy(method_header: &'static str) -> LocalVerifier {
    LocalVerifier::behind_proxy(Settings::default(), Some(method_header)).await
}

#[tokio::test]
async fn nginx_auth_request_enforces_keys_origins_and_scopes() {
    let Some(nginx) = proxy_binary("nginx") else {
        return;
    };
    let local = verifier_behind_proxy("x-original-method").await;
    let backend = start_backend().await;
    let proxy = start_nginx(&nginx, local.addr, backend).await;
    core_cases(Proxy::Nginx, &proxy, &local).await;
    lifecycle_cases(Proxy::Nginx, &proxy, &local).await;
}

#[tokio::test]
async fn caddy_forward_auth_enforces_keys_origins_and_scopes() {
    let Some(caddy) = proxy_binary("caddy") else {
        return;
    };
    let local = verifier_behind_proxy("x-forwarded-method").await;
    let backend = start_backend().await;
    let proxy = start_caddy(&caddy, local.addr, backend).await;
    core_cases(Proxy::Caddy, &proxy, &local).await;
    lifecycle_cases(Proxy::Caddy, &proxy, &local).await;
}
