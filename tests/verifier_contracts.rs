//! The request/response contracts of the proxies not run as processes here: Envoy `ext_authz`
//! (HTTP mode) and Traefik ForwardAuth. Each test sends exactly what that proxy sends and checks
//! what that proxy acts on.

mod support_verifier;

use keywarden::verifier::Settings;
use reqwest::StatusCode;
use support_verifier::{Issued, KeyBuilder, LocalVerifier};

/// Envoy `ext_authz` HTTP mode: the original method, `path_prefix` + the original path and
/// query, the original `authorization`/`origin` (listed in `allowed_headers`), no body
/// (`content-length: 0`). 200 lets the request through and `allowed_upstream_headers`
/// (`x-keywarden-*`) are copied upstream; any other status, its headers and body go back to the
/// client.
#[tokio::test]
async fn envoy_ext_authz_http_contract() {
    let local = LocalVerifier::behind_proxy(Settings::default(), None).await;
    let issued = Issued::generate();
    local.verifier.apply_key(
        &KeyBuilder::new("team-a", "envoy", &issued)
            .origins(&["https://app.example.com"])
            .scopes(&["orders:manage"])
            .build(),
    );
    let http = reqwest::Client::new();
    let envoy = |method: reqwest::Method, path: &str| {
        http.request(method, local.url(&format!("/v1/check{path}")))
            .header("content-length", "0")
            .header("x-forwarded-proto", "https")
            .header("x-envoy-internal", "true")
    };

    let allowed = envoy(reqwest::Method::POST, "/api/orders/42?expand=items")
        .header("authorization", issued.bearer())
        .header("origin", "https://app.example.com")
        .header("x-keywarden-required-scope", "orders:manage")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
    let headers = allowed.headers();
    assert_eq!(headers["x-keywarden-key-id"], issued.id.as_str());
    assert_eq!(headers["x-keywarden-owner"], "alice");
    assert_eq!(headers["x-keywarden-scopes"], "orders:manage");
    assert_eq!(headers["x-keywarden-key-name"], "team-a/envoy");
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example.com"
    );

    let denied = envoy(reqwest::Method::DELETE, "/api/orders/42")
        .header("authorization", issued.with_wrong_secret().basic())
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
    assert!(denied.headers().contains_key("www-authenticate"));
    assert_eq!(denied.headers()["content-type"], "application/json");

    let preflight = envoy(reqwest::Method::OPTIONS, "/api/orders/42")
        .header("origin", "https://elsewhere.example.com")
        .header("access-control-request-method", "DELETE")
        .send()
        .await
        .unwrap();
    assert_eq!(
        preflight.status(),
        StatusCode::OK,
        "preflights pass without a key"
    );

    let forbidden = envoy(reqwest::Method::GET, "/api/orders")
        .header("authorization", issued.basic())
        .header("origin", "https://elsewhere.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    assert!(forbidden
        .text()
        .await
        .unwrap()
        .contains(r#""code":"forbidden""#));
}

/// Traefik ForwardAuth: `GET` to the address with the original headers plus
/// `X-Forwarded-Method`, `-Proto`, `-Host`, `-Uri` and `-For`. 2xx lets the request through and
/// `authResponseHeaders` are copied upstream; otherwise the auth response is returned as is.
#[tokio::test]
async fn traefik_forward_auth_contract() {
    let settings = Settings {
        failures_per_second_per_key: 1000,
        failures_per_second_per_client: 1,
        ..Settings::default()
    };
    let local = LocalVerifier::behind_proxy(settings, Some("x-forwarded-method")).await;
    let issued = Issued::generate();
    local
        .verifier
        .apply_key(&KeyBuilder::new("team-a", "traefik", &issued).build());
    let http = reqwest::Client::new();
    let traefik = |method: &str, client: &str| {
        http.get(local.url("/v1/check"))
            .header("x-forwarded-method", method)
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "api.example.com")
            .header("x-forwarded-uri", "/v1/things?scope=ignored:manage")
            .header("x-forwarded-for", client)
    };

    let allowed = traefik("PATCH", "203.0.113.7")
        .header("authorization", issued.basic())
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
    assert_eq!(allowed.headers()["x-keywarden-key-id"], issued.id.as_str());

    let preflight = traefik("OPTIONS", "203.0.113.7")
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "PATCH")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), StatusCode::OK, "forwarded preflight");

    // why: failures are limited per X-Forwarded-For client, so one client's guessing
    // does not limit another's.
    let mut limited = false;
    for _ in 0..10 {
        let response = traefik("GET", "198.51.100.1")
            .header("authorization", issued.with_wrong_secret().basic())
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(response.headers().contains_key("retry-after"));
            limited = true;
            break;
        }
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    assert!(limited, "the guessing client is rate-limited");
    let other_client = traefik("GET", "203.0.113.8")
        .header("authorization", issued.with_wrong_secret().basic())
        .send()
        .await
        .unwrap();
    assert_eq!(other_client.status(), StatusCode::UNAUTHORIZED);
}
