//! The proxies not run as processes here, Envoy `ext_authz` (HTTP mode) and Traefik ForwardAuth,
//! driven by their shipped configurations (`examples/envoy/ext-authz.yaml`,
//! `examples/traefik/dynamic.yml`): each test reads what the configuration tells the proxy to do,
//! does it exactly as that proxy does (`support_verifier/contracts.rs`) against the real
//! verifier, and checks the outcome, with and without spoofed headers.

mod support_verifier;

use keywarden::verifier::{Settings, GRANT_HEADERS};
use reqwest::{Method, StatusCode};
use support_verifier::contracts::{Envoy, Headers, Proxy, Traefik, SPOOFED};
use support_verifier::{Issued, KeyBuilder, LocalVerifier};

/// The table both contracts must satisfy, with a verifier configured as the example says.
async fn contract_holds(proxy: Proxy, local: LocalVerifier) {
    let view = Issued::generate();
    local.verifier.apply_key(
        &KeyBuilder::new("team-a", "reporter", &view)
            .service_account("reporter")
            .scopes(&["reports:view"])
            .build(),
    );
    let manage = Issued::generate();
    local.verifier.apply_key(
        &KeyBuilder::new("team-a", "editor", &manage)
            .scopes(&["reports:manage"])
            .build(),
    );
    let granted = |issued: &Issued, name: &str, owner: &str, kind: &str, scopes: &str| {
        let values = [
            ("x-keywarden-key-id", issued.id.as_str()),
            ("x-keywarden-key-name", name),
            ("x-keywarden-owner", owner),
            ("x-keywarden-owner-kind", kind),
            ("x-keywarden-scopes", scopes),
        ];
        Some(
            values
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect::<Headers>(),
        )
    };
    let reporter = granted(
        &view,
        "team-a/reporter",
        "system:serviceaccount:team-a:reporter",
        "ServiceAccount",
        "reports:view",
    );
    let editor = granted(&manage, "team-a/editor", "alice", "User", "reports:manage");
    let cors = |request_method: Option<&str>| {
        let mut headers = vec![("origin", "https://app.example.com".to_owned())];
        headers.extend(request_method.map(|m| ("access-control-request-method", m.to_owned())));
        headers
    };
    let with_key = |issued: &Issued| vec![("authorization", issued.basic())];
    // why: (name, method, client headers, status, X-Keywarden-* headers the API receives).
    type Case<'a> = (
        &'a str,
        Method,
        Vec<(&'a str, String)>,
        StatusCode,
        Option<Headers>,
    );
    let cases: Vec<Case> = vec![
        (
            "GET without a key, dressed as a preflight",
            Method::GET,
            cors(Some("GET")),
            StatusCode::UNAUTHORIZED,
            None,
        ),
        (
            "DELETE without a key",
            Method::DELETE,
            Vec::new(),
            StatusCode::UNAUTHORIZED,
            None,
        ),
        (
            "OPTIONS without a key that is no preflight",
            Method::OPTIONS,
            cors(None),
            StatusCode::UNAUTHORIZED,
            None,
        ),
        (
            "preflight",
            Method::OPTIONS,
            cors(Some("DELETE")),
            StatusCode::OK,
            Some(Headers::new()),
        ),
        (
            "GET with a view-only key",
            Method::GET,
            with_key(&view),
            StatusCode::OK,
            reporter,
        ),
        (
            "POST with a view-only key",
            Method::POST,
            with_key(&view),
            StatusCode::FORBIDDEN,
            None,
        ),
        (
            "DELETE with a view-only key",
            Method::DELETE,
            with_key(&view),
            StatusCode::FORBIDDEN,
            None,
        ),
        (
            "POST with a manage key",
            Method::POST,
            with_key(&manage),
            StatusCode::OK,
            editor,
        ),
    ];
    for (name, method, headers, status, upstream) in cases {
        let honest: Headers = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect();
        let mut spoofed = honest.clone();
        spoofed.extend(SPOOFED.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        let outcome = proxy.exchange(&local, method.clone(), &honest).await;
        assert_eq!(outcome.status, status, "{name}: {}", outcome.body);
        assert_eq!(outcome.upstream, upstream, "{name}: what the API receives");
        match status {
            StatusCode::UNAUTHORIZED => {
                assert!(outcome.body.contains(r#""code":"unauthorized""#), "{name}");
                assert!(
                    outcome.client_headers.contains_key("www-authenticate"),
                    "{name}"
                );
            }
            StatusCode::FORBIDDEN => assert_eq!(
                outcome.body,
                r#"{"code":"insufficient_scope","message":"The access key does not grant the required scope"}"#,
                "{name}"
            ),
            _ => {}
        }
        let forged = proxy.exchange(&local, method, &spoofed).await;
        assert_eq!(
            forged, outcome,
            "{name}: spoofed headers changed the outcome"
        );
    }

    // why: failures are limited per client (burst of 2); a believed forged address would
    // get a fresh bucket each time.
    let mut statuses = Vec::new();
    let mut last = None;
    for attempt in 0..3 {
        let mut headers = Headers::new();
        headers.insert("authorization".into(), view.with_wrong_secret().basic());
        headers.insert("x-forwarded-for".into(), format!("198.51.100.{attempt}"));
        headers.insert("x-real-ip".into(), format!("198.51.100.{attempt}"));
        let outcome = proxy.exchange(&local, Method::GET, &headers).await;
        statuses.push(outcome.status);
        last = Some(outcome);
    }
    assert_eq!(
        statuses,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    let limited = last.expect("an outcome");
    assert_eq!(
        limited
            .client_headers
            .get("retry-after")
            .map(String::as_str),
        Some("1")
    );
    assert_eq!(
        limited.body,
        r#"{"code":"too_many_requests","message":"Too many failed attempts; retry later"}"#
    );
}

fn rate_limited_per_client() -> Settings {
    Settings {
        failures_per_second_per_client: 1,
        ..Settings::default()
    }
}

#[test]
fn envoy_example_strips_and_passes_every_keywarden_header() {
    let envoy = Envoy::load();
    for header in GRANT_HEADERS.iter().chain(&["x-keywarden-required-scope"]) {
        assert!(
            envoy.stripped.contains(&header.to_string()),
            "{header} is stripped"
        );
    }
    for (name, check) in &envoy.checks {
        for header in GRANT_HEADERS {
            assert!(
                check.upstream.contains(&header.to_owned()),
                "{name}: {header} upstream"
            );
        }
        assert!(
            check.client.contains(&"retry-after".to_owned()),
            "{name}: Retry-After"
        );
    }
}

#[test]
fn traefik_example_strips_and_copies_every_keywarden_header() {
    let traefik = Traefik::load();
    for router in &traefik.routers {
        let (stripped, auth) = (&router.stripped, &router.auth);
        for header in GRANT_HEADERS.iter().chain(&["x-keywarden-required-scope"]) {
            assert!(
                stripped.contains(&header.to_string()),
                "{header} is stripped"
            );
        }
        for header in GRANT_HEADERS {
            assert!(
                auth.response_headers.contains(&header.to_owned()),
                "{header} copied"
            );
        }
    }
}

/// Envoy keeps the method, so the verifier reads no method header; Envoy is a trusted proxy.
#[tokio::test]
async fn envoy_example_contract_requires_a_scope_per_method_and_ignores_spoofing() {
    let local = LocalVerifier::behind_proxy(rate_limited_per_client(), None).await;
    contract_holds(Proxy::Envoy(Envoy::load()), local).await;
}

/// ForwardAuth always asks with GET and reports the method in X-Forwarded-Method.
#[tokio::test]
async fn traefik_example_contract_requires_a_scope_per_method_and_ignores_spoofing() {
    let local =
        LocalVerifier::behind_proxy(rate_limited_per_client(), Some("x-forwarded-method")).await;
    contract_holds(Proxy::Traefik(Traefik::load()), local).await;
}
