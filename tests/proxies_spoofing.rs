//! Spoofing through the shipped proxy examples: nginx (`examples/nginx/nginx.conf`) and Caddy
//! (`examples/caddy/Caddyfile`) run as they are, in front of the real verifier (configured as
//! each example says) and a recording API. Every client-supplied `X-Forwarded-Method`,
//! `X-Original-Method`, `X-Real-IP`, `X-Forwarded-For` and `X-Keywarden-*` value is shown to
//! change neither the decision nor what the API receives. Skipped loudly when a proxy is not
//! installed, unless `KEYWARDEN_REQUIRE_PROXIES` is set.

mod support_verifier;

use std::path::Path;

use keywarden::verifier::Settings;
use reqwest::{Method, StatusCode};
use support_verifier::contracts::SPOOFED;
use support_verifier::examples::{
    recording_api, start_caddy_example, start_nginx_example, Log, Proxy, Seen,
};
use support_verifier::proxies::proxy_binary;
use support_verifier::{Issued, KeyBuilder, LocalVerifier};

const UNAUTHORIZED_BODY: &str =
    r#"{"code":"unauthorized","message":"The access key is missing, invalid or not active"}"#;
const INSUFFICIENT_SCOPE_BODY: &str =
    r#"{"code":"insufficient_scope","message":"The access key does not grant the required scope"}"#;
const RATE_LIMITED_BODY: &str =
    r#"{"code":"too_many_requests","message":"Too many failed attempts; retry later"}"#;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Nginx,
    Caddy,
}

/// One request through the proxy and what the client must get.
struct Case {
    name: &'static str,
    method: Method,
    authorization: Option<String>,
    cors: Option<(&'static str, Option<&'static str>)>,
    status: StatusCode,
}

/// What one request produced: the client's answer and what the API received.
#[derive(Debug, PartialEq)]
struct Outcome {
    status: StatusCode,
    body: String,
    www_authenticate: Option<String>,
    upstream: Option<Vec<(String, String)>>,
}

struct Setup {
    proxy: Proxy,
    calls: Log,
    _verifier: LocalVerifier,
    view_only: Issued,
}

async fn setup(kind: Kind, binary: &Path) -> Setup {
    let method_header = match kind {
        Kind::Nginx => "x-original-method",
        Kind::Caddy => "x-forwarded-method",
    };
    let settings = Settings {
        failures_per_second_per_client: 1,
        ..Settings::default()
    };
    let verifier = LocalVerifier::behind_proxy(settings, Some(method_header)).await;
    let view_only = Issued::generate();
    verifier.verifier.apply_key(
        &KeyBuilder::new("team-a", "reporter", &view_only)
            .service_account("reporter")
            .scopes(&["reports:view"])
            .origins(&["https://app.example.com"])
            .build(),
    );
    let (api, calls) = recording_api().await;
    let proxy = match kind {
        Kind::Nginx => start_nginx_example(binary, verifier.addr, api).await,
        Kind::Caddy => start_caddy_example(binary, verifier.addr, api).await,
    };
    Setup {
        proxy,
        calls,
        _verifier: verifier,
        view_only,
    }
}

fn last_call(calls: &Log) -> Option<Seen> {
    calls.lock().expect("log lock").last().cloned()
}

async fn run(setup: &Setup, case: &Case, spoofed: bool) -> Outcome {
    let before = setup.calls.lock().expect("log lock").len();
    let mut request =
        reqwest::Client::new().request(case.method.clone(), setup.proxy.url("/v1/reports"));
    if let Some(authorization) = &case.authorization {
        request = request.header("authorization", authorization);
    }
    if let Some((origin, request_method)) = case.cors {
        request = request.header("origin", origin);
        if let Some(request_method) = request_method {
            request = request.header("access-control-request-method", request_method);
        }
    }
    if spoofed {
        for (name, value) in SPOOFED {
            request = request.header(name, value);
        }
    }
    let response = request.send().await.expect("request through the proxy");
    let status = response.status();
    let www_authenticate = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.text().await.expect("body");
    let reached = setup.calls.lock().expect("log lock").len() > before;
    Outcome {
        status,
        body,
        www_authenticate,
        upstream: reached
            .then(|| last_call(&setup.calls))
            .flatten()
            .map(|seen| seen.keywarden_headers()),
    }
}

/// The denial bodies the client sees: Caddy relays the verifier's; nginx shows its own error
/// page for 401 and 403.
fn assert_denial(kind: Kind, case: &Case, outcome: &Outcome) {
    match (kind, case.status) {
        (_, StatusCode::OK) => {}
        (Kind::Caddy, StatusCode::UNAUTHORIZED) => {
            assert_eq!(outcome.body, UNAUTHORIZED_BODY, "{kind:?}: {}", case.name)
        }
        (Kind::Caddy, StatusCode::FORBIDDEN) => {
            assert_eq!(
                outcome.body, INSUFFICIENT_SCOPE_BODY,
                "{kind:?}: {}",
                case.name
            )
        }
        (Kind::Nginx, _) => assert!(
            outcome
                .body
                .contains(&format!("<title>{}", case.status.as_u16())),
            "{kind:?}: {}: {}",
            case.name,
            outcome.body
        ),
        (_, other) => panic!("{kind:?}: {}: unexpected {other}", case.name),
    }
    if case.status == StatusCode::UNAUTHORIZED {
        assert!(
            outcome.www_authenticate.is_some(),
            "{kind:?}: {}: 401 without WWW-Authenticate",
            case.name
        );
    }
}

async fn spoofing_changes_nothing(kind: Kind, binary: &Path) {
    let setup = setup(kind, binary).await;
    let key = &setup.view_only;
    let cases = [
        Case {
            name: "GET without a key, dressed as a preflight",
            method: Method::GET,
            authorization: None,
            cors: Some(("https://app.example.com", Some("GET"))),
            status: StatusCode::UNAUTHORIZED,
        },
        Case {
            name: "DELETE without a key",
            method: Method::DELETE,
            authorization: None,
            cors: None,
            status: StatusCode::UNAUTHORIZED,
        },
        Case {
            name: "OPTIONS without a key that is no preflight",
            method: Method::OPTIONS,
            authorization: None,
            cors: Some(("https://app.example.com", None)),
            status: StatusCode::UNAUTHORIZED,
        },
        Case {
            name: "preflight",
            method: Method::OPTIONS,
            authorization: None,
            cors: Some(("https://elsewhere.example.com", Some("DELETE"))),
            status: StatusCode::OK,
        },
        Case {
            name: "GET with a view-only key",
            method: Method::GET,
            authorization: Some(key.basic()),
            cors: None,
            status: StatusCode::OK,
        },
        Case {
            name: "POST with a view-only key",
            method: Method::POST,
            authorization: Some(key.bearer()),
            cors: None,
            status: StatusCode::FORBIDDEN,
        },
    ];
    for case in &cases {
        let honest = run(&setup, case, false).await;
        let spoofed = run(&setup, case, true).await;
        assert_eq!(honest.status, case.status, "{kind:?}: {}", case.name);
        assert_denial(kind, case, &honest);
        assert_eq!(
            spoofed, honest,
            "{kind:?}: {}: spoofed headers changed the outcome",
            case.name
        );
        let upstream = spoofed.upstream.as_deref();
        match case.name {
            "preflight" => assert_eq!(
                upstream,
                Some(&[][..]),
                "{kind:?}: a preflight reaches the API without X-Keywarden-* headers"
            ),
            "GET with a view-only key" => assert_eq!(
                upstream.map(<[_]>::to_vec),
                Some(
                    [
                        ("x-keywarden-key-id", key.id.as_str()),
                        ("x-keywarden-key-name", "team-a/reporter"),
                        ("x-keywarden-owner", "system:serviceaccount:team-a:reporter"),
                        ("x-keywarden-owner-kind", "ServiceAccount"),
                        ("x-keywarden-scopes", "reports:view"),
                    ]
                    .map(|(n, v)| (n.to_owned(), v.to_owned()))
                    .to_vec()
                ),
                "{kind:?}: the API learns the caller from the verifier only"
            ),
            _ => assert_eq!(upstream, None, "{kind:?}: {}: reached the API", case.name),
        }
    }

    // why: failures are limited per client (burst of 2). Were a forged address believed,
    // each attempt would get a fresh bucket and never be limited.
    let mut statuses = Vec::new();
    let mut limited = None;
    for attempt in 0..3 {
        let response = reqwest::Client::new()
            .get(setup.proxy.url("/v1/reports"))
            .header("authorization", key.with_wrong_secret().basic())
            .header("x-real-ip", format!("198.51.100.{attempt}"))
            .header("x-forwarded-for", format!("198.51.100.{attempt}"))
            .send()
            .await
            .expect("request through the proxy");
        statuses.push(response.status());
        limited = Some(response);
    }
    assert_eq!(
        statuses,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS
        ],
        "{kind:?}: forged client addresses share the real client's bucket"
    );
    let limited = limited.expect("a response");
    let retry_after = limited
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap_or("").to_owned());
    assert_eq!(
        retry_after.as_deref(),
        Some("1"),
        "{kind:?}: Retry-After reaches the client"
    );
    assert_eq!(limited.text().await.expect("body"), RATE_LIMITED_BODY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_example_ignores_every_spoofed_forwarded_and_identity_header() {
    let Some(nginx) = proxy_binary("nginx") else {
        return;
    };
    spoofing_changes_nothing(Kind::Nginx, &nginx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_example_ignores_every_spoofed_forwarded_and_identity_header() {
    let Some(caddy) = proxy_binary("caddy") else {
        return;
    };
    spoofing_changes_nothing(Kind::Caddy, &caddy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_example_gives_503_and_retry_after_back_and_refuses_without_a_verifier() {
    let Some(nginx) = proxy_binary("nginx") else {
        return;
    };
    // why: no argon2 run may wait, so a key not yet verified finds the verifier saturated.
    let saturated = Settings {
        max_concurrent_hashes: 1,
        max_queued_hashes: 0,
        ..Settings::default()
    };
    let verifier = LocalVerifier::behind_proxy(saturated, Some("x-original-method")).await;
    let issued = Issued::generate();
    verifier
        .verifier
        .apply_key(&KeyBuilder::new("team-a", "busy", &issued).build());
    let (api, calls) = recording_api().await;
    let proxy = start_nginx_example(&nginx, verifier.addr, api).await;
    let busy = reqwest::Client::new()
        .get(proxy.url("/v1/reports"))
        .header("authorization", issued.basic())
        .send()
        .await
        .expect("request through nginx");
    assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(busy.headers()["retry-after"], "1");
    assert_eq!(
        busy.text().await.expect("body"),
        r#"{"code":"unavailable","message":"The access key could not be checked; retry later"}"#
    );
    drop(proxy);
    drop(verifier);

    let unreachable = support_verifier::proxies::free_port();
    let unreachable = std::net::SocketAddr::from(([127, 0, 0, 1], unreachable));
    let proxy = start_nginx_example(&nginx, unreachable, api).await;
    let refused = reqwest::Client::new()
        .get(proxy.url("/v1/reports"))
        .header("authorization", issued.basic())
        .send()
        .await
        .expect("request through nginx");
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().get("retry-after").is_none());
    assert_eq!(
        refused.text().await.expect("body"),
        r#"{"code":"unavailable","message":"The access key could not be checked; retry later"}"#
    );
    assert!(
        calls.lock().expect("log lock").is_empty(),
        "nothing reached the API"
    );
}
