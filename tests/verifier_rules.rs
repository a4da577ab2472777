//! The verifier's request rules over real HTTP, with an in-memory key index (no cluster):
//! every 401/403/503 case, the CORS and preflight rules, scopes, `/v1/verify` codes and cache
//! invalidation. Rate limits and hostile clients are in `verifier_limits.rs`.

mod support_verifier;

use keywarden::api::Phase;
use keywarden::verifier::Settings;
use reqwest::StatusCode;
use support_verifier::{seconds_from_now, Issued, KeyBuilder, LocalVerifier};

const UNAUTHORIZED_BODY: &str =
    r#"{"code":"unauthorized","message":"The access key is missing, invalid or not active"}"#;
const FORBIDDEN_ORIGIN_BODY: &str = r#"{"code":"forbidden","message":"The request origin is not allowlisted to use this access key"}"#;

/// One request and what the verifier must answer.
struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    status: StatusCode,
    body: Option<&'static str>,
    response_headers: Vec<(&'static str, &'static str)>,
}

impl Case {
    fn get(name: &'static str, authorization: Option<String>) -> Self {
        Self {
            name,
            method: "GET",
            path: "/v1/check".into(),
            headers: authorization
                .map(|a| vec![("authorization", a)])
                .unwrap_or_default(),
            status: StatusCode::OK,
            body: None,
            response_headers: Vec::new(),
        }
    }

    fn method(mut self, method: &'static str) -> Self {
        self.method = method;
        self
    }

    fn path(mut self, path: &str) -> Self {
        self.path = path.into();
        self
    }

    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn unauthorized(mut self) -> Self {
        self.status = StatusCode::UNAUTHORIZED;
        self.body = Some(UNAUTHORIZED_BODY);
        self
    }

    fn forbidden_origin(mut self) -> Self {
        self.status = StatusCode::FORBIDDEN;
        self.body = Some(FORBIDDEN_ORIGIN_BODY);
        self
    }

    fn insufficient_scope(mut self) -> Self {
        self.status = StatusCode::FORBIDDEN;
        self
    }

    fn expect_header(mut self, name: &'static str, value: &'static str) -> Self {
        self.response_headers.push((name, value));
        self
    }
}

#[tokio::test]
async fn check_endpoint_answers_every_rule_case() {
    let local = LocalVerifier::start(Settings::default()).await;
    let index = |key| local.verifier.apply_key(&key);

    let plain = Issued::generate();
    index(KeyBuilder::new("team-a", "plain", &plain).build());
    let cors = Issued::generate();
    index(
        KeyBuilder::new("team-a", "cors", &cors)
            .origins(&["https://app.example.com", "https://*.ops.example.com"])
            .build(),
    );
    let scoped = Issued::generate();
    index(
        KeyBuilder::new("team-a", "scoped", &scoped)
            .scopes(&["logs:view", "collectors:manage"])
            .build(),
    );
    // The owner holds none of its scopes: the controller granted none.
    let unheld = Issued::generate();
    index(
        KeyBuilder::new("team-a", "unheld", &unheld)
            .scopes(&["logs:manage"])
            .granted_scopes(&[])
            .build(),
    );
    let spec_inactive = Issued::generate();
    index(
        KeyBuilder::new("team-a", "spec-inactive", &spec_inactive)
            .spec_active(false)
            .build(),
    );
    let mut not_active = Vec::new();
    for (name, phase) in [
        ("inactive", Some(Phase::Inactive)),
        ("pending", Some(Phase::Pending)),
        ("rejected", Some(Phase::Rejected)),
        ("expired-phase", Some(Phase::Expired)),
        ("no-phase", None),
    ] {
        let issued = Issued::generate();
        index(
            KeyBuilder::new("team-a", name, &issued)
                .phase(phase)
                .build(),
        );
        not_active.push((name, issued));
    }
    let expired = Issued::generate();
    index(
        KeyBuilder::new("team-a", "expired", &expired)
            .expires_at(seconds_from_now(-1))
            .build(),
    );
    let rotated_current = Issued::generate();
    let in_grace = Issued::generate();
    let past_grace = Issued::generate();
    index(
        KeyBuilder::new("team-a", "rotated", &rotated_current)
            .expires_at(seconds_from_now(3600))
            .previous(&in_grace, seconds_from_now(300))
            .previous(&past_grace, seconds_from_now(-1))
            .build(),
    );
    let deactivated_rotated = Issued::generate();
    let deactivated_previous = Issued::generate();
    index(
        KeyBuilder::new("team-a", "deactivated-rotated", &deactivated_rotated)
            .spec_active(false)
            .previous(&deactivated_previous, seconds_from_now(300))
            .build(),
    );
    let robot = Issued::generate();
    index(
        KeyBuilder::new("team-b", "robot", &robot)
            .service_account("ci")
            .build(),
    );
    let unknown = Issued::generate();
    let mut bad_checksum = plain.bearer();
    let last = bad_checksum
        .pop()
        .map_or('A', |c| if c == 'A' { 'B' } else { 'A' });
    bad_checksum.push(last);

    let mut cases = vec![
        Case::get("valid basic", Some(plain.basic()))
            .expect_header("x-keywarden-key-id", "")
            .expect_header("x-keywarden-owner", "alice")
            .expect_header("x-keywarden-owner-kind", "User")
            .expect_header("x-keywarden-scopes", "*")
            .expect_header("x-keywarden-key-name", "team-a/plain"),
        Case::get("valid bearer", Some(plain.bearer())),
        Case::get("envoy appended path", Some(plain.bearer())).path("/v1/check/api/items?x=1"),
        Case::get("any method", Some(plain.basic())).method("DELETE"),
        Case::get("service account owner", Some(robot.basic()))
            .expect_header("x-keywarden-owner", "system:serviceaccount:team-b:ci")
            .expect_header("x-keywarden-owner-kind", "ServiceAccount"),
        Case::get("missing credentials", None).unauthorized(),
        Case::get("unsupported scheme", Some("Digest x".into())).unauthorized(),
        Case::get("malformed basic", Some("Basic !!".into())).unauthorized(),
        Case::get("malformed bearer", Some("Bearer kwk_nope".into())).unauthorized(),
        Case::get("bad token checksum", Some(bad_checksum)).unauthorized(),
        Case::get("unknown id", Some(unknown.basic())).unauthorized(),
        Case::get("wrong secret", Some(plain.with_wrong_secret().basic())).unauthorized(),
        Case::get("spec.active false", Some(spec_inactive.basic())).unauthorized(),
        Case::get("expired by clock", Some(expired.bearer())).unauthorized(),
        Case::get("rotated: current", Some(rotated_current.basic())),
        Case::get("rotated: previous in grace", Some(in_grace.basic()))
            .expect_header("x-keywarden-key-name", "team-a/rotated"),
        Case::get("rotated: previous past grace", Some(past_grace.basic())).unauthorized(),
        Case::get("deactivated: previous", Some(deactivated_previous.basic())).unauthorized(),
        Case::get("origin, empty allowlist", Some(plain.basic()))
            .header("origin", "https://app.example.com")
            .forbidden_origin(),
        Case::get("origin not listed", Some(cors.basic()))
            .header("origin", "https://evil.example.com")
            .forbidden_origin(),
        Case::get("origin listed", Some(cors.basic()))
            .header("origin", "https://app.example.com")
            .expect_header("access-control-allow-origin", "https://app.example.com"),
        Case::get("origin by wildcard", Some(cors.basic()))
            .header("origin", "https://eu.ops.example.com")
            .expect_header("access-control-allow-origin", "https://eu.ops.example.com"),
        Case::get("no origin, allowlisted key", Some(cors.basic())),
        Case::get("preflight without credentials, any origin", None)
            .method("OPTIONS")
            .header("origin", "https://evil.example.com")
            .header("access-control-request-method", "DELETE"),
        Case::get("options without origin is no preflight", None)
            .method("OPTIONS")
            .header("access-control-request-method", "DELETE")
            .unauthorized(),
        Case::get("options without request method is no preflight", None)
            .method("OPTIONS")
            .header("origin", "https://app.example.com")
            .unauthorized(),
        Case::get(
            "preflight with a wrong key",
            Some(plain.with_wrong_secret().basic()),
        )
        .method("OPTIONS")
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "GET")
        .unauthorized(),
        Case::get(
            "options with a key is never refused for its origin",
            Some(plain.basic()),
        )
        .method("OPTIONS")
        .header("origin", "https://evil.example.com")
        .expect_header("x-keywarden-key-name", "team-a/plain"),
        Case::get("forwarded OPTIONS without a method header", None)
            .header("x-forwarded-method", "OPTIONS")
            .header("x-original-method", "OPTIONS")
            .header("origin", "https://app.example.com")
            .header("access-control-request-method", "GET")
            .unauthorized(),
        Case::get("scope granted", Some(scoped.basic()))
            .path("/v1/check?scope=logs:view")
            .expect_header("x-keywarden-scopes", "logs:view,collectors:manage"),
        Case::get("manage implies view", Some(scoped.basic()))
            .path("/v1/check?scope=collectors%3Aview"),
        Case::get("scope by header", Some(scoped.basic()))
            .header("x-keywarden-required-scope", "collectors:manage"),
        Case::get("scope missing", Some(scoped.basic()))
            .path("/v1/check?scope=logs:manage")
            .insufficient_scope(),
        Case::get("header and query both required", Some(scoped.basic()))
            .path("/v1/check?scope=logs:view")
            .header("x-keywarden-required-scope", "metrics:view")
            .insufficient_scope(),
        Case::get("empty scopes grant all", Some(plain.basic())).path("/v1/check?scope=x:manage"),
        Case::get(
            "no granted scope: requested one refused",
            Some(unheld.basic()),
        )
        .path("/v1/check?scope=logs:manage")
        .insufficient_scope(),
        Case::get("no granted scope: its view refused", Some(unheld.basic()))
            .path("/v1/check?scope=logs:view")
            .insufficient_scope(),
        Case::get("no granted scope: any scope refused", Some(unheld.basic()))
            .path("/v1/check?scope=x:view")
            .insufficient_scope(),
        Case::get("no granted scope, none required", Some(unheld.basic()))
            .expect_header("x-keywarden-scopes", ""),
    ];
    for (name, issued) in &not_active {
        let mut case = Case::get("not active phase", Some(issued.basic())).unauthorized();
        case.name = name;
        cases.push(case);
    }

    let http = reqwest::Client::new();
    for case in cases {
        let method = reqwest::Method::from_bytes(case.method.as_bytes()).unwrap();
        let mut request = http.request(method, local.url(&case.path));
        for (name, value) in &case.headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), case.status, "case {:?}", case.name);
        for (name, expected) in &case.response_headers {
            let value = response.headers().get(*name).map(|v| v.to_str().unwrap());
            let value = value.unwrap_or_else(|| panic!("case {:?}: no {name}", case.name));
            if !expected.is_empty() {
                assert_eq!(value, *expected, "case {:?}: header {name}", case.name);
            }
        }
        if case.status == StatusCode::UNAUTHORIZED {
            let challenge = response.headers().get("www-authenticate");
            assert!(
                challenge.is_some(),
                "case {:?}: 401 without challenge",
                case.name
            );
        }
        if case.status != StatusCode::OK {
            assert!(response.headers().get("x-keywarden-key-id").is_none());
        }
        if case.method == "OPTIONS" {
            assert!(
                response
                    .headers()
                    .get("access-control-allow-origin")
                    .is_none(),
                "case {:?}: a foreign origin is not echoed",
                case.name
            );
        }
        let body = response.text().await.unwrap();
        if let Some(expected) = case.body {
            assert_eq!(body, expected, "case {:?}: body", case.name);
        }
        if case.status == StatusCode::FORBIDDEN && case.body.is_none() {
            assert!(
                body.contains(r#""code":"insufficient_scope""#),
                "case {:?}",
                case.name
            );
        }
    }
}

#[tokio::test]
async fn only_the_configured_method_header_makes_a_forwarded_preflight() {
    let local = LocalVerifier::behind_proxy(Settings::default(), Some("x-original-method")).await;
    let http = reqwest::Client::new();
    let cases = [
        ("x-forwarded-method", true, StatusCode::UNAUTHORIZED),
        ("x-original-method", false, StatusCode::UNAUTHORIZED),
        ("x-original-method", true, StatusCode::OK),
    ];
    for (header, with_request_method, expected) in cases {
        let mut request = http
            .get(local.url("/v1/check"))
            .header(header, "OPTIONS")
            .header("origin", "https://app.example.com");
        if with_request_method {
            request = request.header("access-control-request-method", "POST");
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response.status(),
            expected,
            "{header} with request method: {with_request_method}"
        );
        if expected == StatusCode::UNAUTHORIZED {
            assert_eq!(response.text().await.unwrap(), UNAUTHORIZED_BODY);
        }
    }
}

#[tokio::test]
async fn saturated_argon2_work_answers_503_with_retry_after() {
    let settings = Settings {
        max_concurrent_hashes: 1,
        max_queued_hashes: 0,
        ..Settings::default()
    };
    let local = LocalVerifier::start(settings).await;
    let issued = Issued::generate();
    local
        .verifier
        .apply_key(&KeyBuilder::new("team-a", "busy", &issued).build());
    let response = reqwest::Client::new()
        .get(local.url("/v1/check"))
        .header("authorization", issued.basic())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"code":"unavailable","message":"The verifier is busy verifying keys; retry later"}"#
    );
}

#[tokio::test]
async fn watch_changes_take_effect_on_the_next_request() {
    let local = LocalVerifier::start(Settings::default()).await;
    let issued = Issued::generate();
    let key = KeyBuilder::new("team-a", "k", &issued).build();
    local.verifier.apply_key(&key);
    let http = reqwest::Client::new();
    let status = || async {
        http.get(local.url("/v1/check"))
            .header("authorization", issued.basic())
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(status().await, StatusCode::OK);
    assert_eq!(
        status().await,
        StatusCode::OK,
        "served from the verified cache"
    );

    let deactivated = KeyBuilder::new("team-a", "k", &issued)
        .spec_active(false)
        .build();
    local.verifier.apply_key(&deactivated);
    assert_eq!(status().await, StatusCode::UNAUTHORIZED, "deactivated");

    local.verifier.apply_key(&key);
    assert_eq!(status().await, StatusCode::OK, "reactivated");

    let mut rehashed = key.clone();
    let other = Issued::generate();
    rehashed.status.as_mut().unwrap().secret_hash = Some(other.hash());
    local.verifier.apply_key(&rehashed);
    assert_eq!(
        status().await,
        StatusCode::UNAUTHORIZED,
        "a changed secret hash invalidates the cached verification"
    );

    local.verifier.apply_key(&key);
    assert_eq!(status().await, StatusCode::OK);
    local.verifier.remove_key(&keywarden::verifier::KeyRef {
        namespace: "team-a".into(),
        name: "k".into(),
    });
    assert_eq!(status().await, StatusCode::UNAUTHORIZED, "deleted");
}

#[tokio::test]
async fn verify_endpoint_reports_a_code_for_each_outcome() {
    let local = LocalVerifier::start(Settings::default()).await;
    let valid = Issued::generate();
    local.verifier.apply_key(
        &KeyBuilder::new("team-a", "valid", &valid)
            .scopes(&["logs:view"])
            .origins(&["https://app.example.com"])
            .build(),
    );
    let disabled = Issued::generate();
    local.verifier.apply_key(
        &KeyBuilder::new("team-a", "disabled", &disabled)
            .spec_active(false)
            .build(),
    );
    let expired = Issued::generate();
    local.verifier.apply_key(
        &KeyBuilder::new("team-a", "expired", &expired)
            .phase(Some(Phase::Expired))
            .build(),
    );
    let pair = |issued: &Issued| serde_json::json!({"accessKeyId": issued.id.to_string(), "secret": issued.secret.expose()});
    let with = |mut body: serde_json::Value, field: &str, value: &str| {
        body[field] = value.into();
        body
    };
    let token = keywarden::keys::token::encode_token(&valid.id, &valid.secret);
    let cases = [
        (serde_json::json!({"token": token.as_str()}), "VALID"),
        (pair(&valid), "VALID"),
        (with(pair(&valid), "scope", "logs:view"), "VALID"),
        (serde_json::json!({}), "MALFORMED"),
        (serde_json::json!({"token": "kwk_bad"}), "MALFORMED"),
        (pair(&Issued::generate()), "NOT_FOUND"),
        (pair(&valid.with_wrong_secret()), "NOT_FOUND"),
        (pair(&disabled), "DISABLED"),
        (pair(&expired), "EXPIRED"),
        (
            with(pair(&valid), "origin", "https://evil.com"),
            "FORBIDDEN_ORIGIN",
        ),
        (
            with(pair(&valid), "scope", "logs:manage"),
            "INSUFFICIENT_SCOPE",
        ),
        (
            serde_json::json!({"method": "OPTIONS", "origin": "https://evil.com", "accessControlRequestMethod": "PUT"}),
            "PREFLIGHT",
        ),
        (
            serde_json::json!({"method": "OPTIONS", "origin": "https://evil.com"}),
            "MALFORMED",
        ),
        (
            with(
                with(pair(&valid), "method", "OPTIONS"),
                "origin",
                "https://evil.com",
            ),
            "VALID",
        ),
    ];
    let http = reqwest::Client::new();
    for (body, code) in cases {
        let response = http
            .post(local.url("/v1/verify"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let answer: serde_json::Value = response.json().await.unwrap();
        assert_eq!(answer["code"], code, "request {body}");
        let accepted = code == "VALID" || code == "PREFLIGHT";
        assert_eq!(answer["valid"], accepted, "request {body}");
        if code == "VALID" {
            assert_eq!(answer["accessKeyId"], valid.id.to_string());
            assert_eq!(answer["keyName"], "team-a/valid");
            assert_eq!(answer["owner"], "alice");
            assert_eq!(answer["ownerKind"], "User");
        }
    }
}

#[tokio::test]
async fn health_endpoints_answer() {
    let local = LocalVerifier::start(Settings::default()).await;
    let http = reqwest::Client::new();
    for path in ["/livez", "/readyz", "/metrics"] {
        let response = http.get(local.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
}
