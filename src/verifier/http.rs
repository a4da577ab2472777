//! HTTP routes: `/v1/check` for forward-auth proxies, `POST /v1/verify` for apps, health and
//! metrics.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::check::{CheckRequest, Decision, Refusal, Verifier};
use super::credentials;
use super::forwarded::Forwarding;
use super::freshness::{probe_interval, Stale};
use super::index::{owner_kind_name, Unusable};
use super::server::{self, HttpLimits};

/// Header a proxy may set to require a scope (in addition to `?scope=`).
pub const REQUIRED_SCOPE_HEADER: &str = "x-keywarden-required-scope";
const KEY_ID_HEADER: HeaderName = HeaderName::from_static("x-keywarden-key-id");
const OWNER_HEADER: HeaderName = HeaderName::from_static("x-keywarden-owner");
const OWNER_KIND_HEADER: HeaderName = HeaderName::from_static("x-keywarden-owner-kind");
const SCOPES_HEADER: HeaderName = HeaderName::from_static("x-keywarden-scopes");
const KEY_NAME_HEADER: HeaderName = HeaderName::from_static("x-keywarden-key-name");
/// Every `X-Keywarden-*` header a granted check answers with: what proxies copy upstream, and
/// must clear when the client sent them.
pub const GRANT_HEADERS: [&str; 5] = [
    "x-keywarden-key-id",
    "x-keywarden-owner",
    "x-keywarden-owner-kind",
    "x-keywarden-scopes",
    "x-keywarden-key-name",
];
const WWW_AUTHENTICATE: &str = r#"Basic realm="keywarden", Bearer realm="keywarden""#;
/// The one body of every 401, so callers cannot tell unknown, wrong and inactive keys apart.
const UNAUTHORIZED_BODY: &str =
    r#"{"code":"unauthorized","message":"The access key is missing, invalid or not active"}"#;
const FORBIDDEN_ORIGIN_BODY: &str = r#"{"code":"forbidden","message":"The request origin is not allowlisted to use this access key"}"#;
const INSUFFICIENT_SCOPE_BODY: &str =
    r#"{"code":"insufficient_scope","message":"The access key does not grant the required scope"}"#;
const RATE_LIMITED_BODY: &str =
    r#"{"code":"too_many_requests","message":"Too many failed attempts; retry later"}"#;
const OVERLOADED_BODY: &str =
    r#"{"code":"unavailable","message":"The verifier is busy verifying keys; retry later"}"#;
const STALE_BODY: &str = r#"{"code":"stale","message":"The verifier has not been able to confirm its view of access keys with the Kubernetes API server within its bound (--max-staleness), so a revoked key could look valid; retry later"}"#;
/// On answers given from a view older than `--max-staleness` with `--when-stale=serve`: its
/// age in whole seconds.
const STALE_HEADER: HeaderName = HeaderName::from_static("x-keywarden-stale-seconds");

/// Shared state of the routes.
#[derive(Clone)]
pub struct AppState {
    pub verifier: Arc<Verifier>,
    /// Which forwarded headers are believed, and from whom.
    pub forwarding: Arc<Forwarding>,
}

/// Serves the verifier's routes on `listener` within `limits` until `shutdown`, then lets open
/// requests finish.
///
/// `/v1/check` (and `/v1/check/*`, where Envoy appends the original path) is answered straight
/// from hyper; the other routes go through an axum router.
// why: `/v1/check` runs once per proxied request, so its cost is the verifier's cost; the
// router's matching and extractors (a copy of every header) cost as much as the check itself.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    limits: HttpLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let routes = other_routes(state.clone(), limits.max_body_bytes);
    // why: a body sent byte by byte would hold a connection busy, where no idle or header
    // timeout reaches it; the other routes get as long to read it as a client has for a head.
    let body_timeout = limits.header_read_timeout;
    let handler =
        move |peer, request| respond(state.clone(), routes.clone(), body_timeout, peer, request);
    server::serve(listener, limits, handler, shutdown).await
}

async fn respond(
    state: AppState,
    routes: Router,
    body_timeout: Duration,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Response {
    let path = request.uri().path();
    if path == "/v1/check" || path.starts_with("/v1/check/") {
        return check(&state, peer, &request).await;
    }
    let (mut parts, body) = request.into_parts();
    parts.extensions.insert(ConnectInfo(peer));
    let answer = routes.oneshot(Request::from_parts(parts, Body::new(body)));
    match tokio::time::timeout(body_timeout, answer).await {
        Ok(Ok(response)) => response,
        Ok(Err(never)) => match never {},
        Err(_) => StatusCode::REQUEST_TIMEOUT.into_response(),
    }
}

/// The routes other than `/v1/check`.
fn other_routes(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .route(
            "/v1/verify",
            post(verify).layer(DefaultBodyLimit::max(max_body_bytes)),
        )
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn check<B>(state: &AppState, peer: SocketAddr, request: &Request<B>) -> Response {
    let headers = request.headers();
    let forwarding = &state.forwarding;
    let method = forwarding.method(headers, request.method().as_str());
    let mut required_scopes: Vec<String> = headers
        .get_all(REQUIRED_SCOPE_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect();
    required_scopes.extend(scopes_from_query(request.uri().query()));
    let client = forwarding.client_address(headers, peer.ip());
    let request = CheckRequest {
        credentials: credentials::from_authorization(header_str(headers, header::AUTHORIZATION)),
        is_options: method.eq_ignore_ascii_case("OPTIONS"),
        requests_cors_method: headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD),
        origin: header_str(headers, header::ORIGIN).map(str::to_owned),
        required_scopes,
        client: Some(client),
    };
    let decision = state.verifier.check(request, Utc::now()).await;
    log_decision(&decision, client);
    mark_if_stale(&state.verifier, check_response(decision))
}

/// Marks an answer given from a stale view (`--when-stale=serve`) and counts it.
fn mark_if_stale(verifier: &Verifier, mut response: Response) -> Response {
    if let Some(stale) = verifier.freshness().stale(std::time::Instant::now()) {
        if response.status() != StatusCode::SERVICE_UNAVAILABLE {
            verifier.metrics().count_stale_answer();
            response
                .headers_mut()
                .insert(STALE_HEADER, HeaderValue::from(stale.staleness.as_secs()));
        }
    }
    response
}

/// The response a forward-auth proxy acts on.
fn check_response(decision: Decision) -> Response {
    match decision {
        Decision::Valid(grant) => {
            let mut response = StatusCode::OK.into_response();
            let headers = response.headers_mut();
            let record = &grant.record;
            let granted = &record.grant_headers;
            // why: the ID and key name are made per answer rather than kept per key, where the
            // two header values took ~150 bytes (inline plus their own allocations) per key.
            let values = [
                (
                    KEY_ID_HEADER,
                    HeaderValue::from_str(&grant.access_key_id).ok(),
                ),
                (OWNER_HEADER, granted.owner.clone()),
                (
                    OWNER_KIND_HEADER,
                    Some(HeaderValue::from_static(owner_kind_name(record.owner_kind))),
                ),
                (SCOPES_HEADER, granted.scopes.clone()),
                (
                    KEY_NAME_HEADER,
                    HeaderValue::from_str(&record.key_ref.to_string()).ok(),
                ),
            ];
            for (name, value) in values {
                if let Some(value) = value {
                    headers.insert(name, value);
                }
            }
            if let Some(origin) = grant.allowed_origin.as_deref() {
                if let Ok(origin) = HeaderValue::from_str(origin) {
                    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
                    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
                }
            }
            response
        }
        Decision::Preflight => StatusCode::OK.into_response(),
        Decision::Unauthorized(_) => (
            StatusCode::UNAUTHORIZED,
            [
                (header::WWW_AUTHENTICATE, WWW_AUTHENTICATE),
                (header::CONTENT_TYPE, "application/json"),
            ],
            UNAUTHORIZED_BODY,
        )
            .into_response(),
        Decision::ForbiddenOrigin { .. } => {
            json_error(StatusCode::FORBIDDEN, FORBIDDEN_ORIGIN_BODY)
        }
        Decision::InsufficientScope { .. } => {
            json_error(StatusCode::FORBIDDEN, INSUFFICIENT_SCOPE_BODY)
        }
        Decision::RateLimited { retry_after } => retry_later(
            StatusCode::TOO_MANY_REQUESTS,
            RATE_LIMITED_BODY,
            retry_after,
        ),
        Decision::Overloaded { retry_after } => retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            OVERLOADED_BODY,
            retry_after,
        ),
        Decision::Stale(stale) => retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            STALE_BODY,
            stale_retry_after(&stale),
        ),
    }
}

/// How soon a stale verifier may have caught up: its next confirming read.
fn stale_retry_after(stale: &Stale) -> Duration {
    probe_interval(stale.max_staleness)
}

/// A refusal with `Retry-After` in whole seconds, at least one.
fn retry_later(status: StatusCode, body: &'static str, retry_after: Duration) -> Response {
    let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    let mut response = json_error(status, body);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    response
}

fn json_error(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Body of `POST /v1/verify`: a token, or an access ID and secret, and what the request needs.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VerifyRequest {
    token: Option<String>,
    access_key_id: Option<String>,
    secret: Option<String>,
    origin: Option<String>,
    method: Option<String>,
    /// The request's `Access-Control-Request-Method`, if any (a preflight carries one).
    access_control_request_method: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    scope: Option<String>,
}

/// Answer of `POST /v1/verify`; `code` is one of VALID, MALFORMED, NOT_FOUND, DISABLED,
/// EXPIRED, FORBIDDEN_ORIGIN, INSUFFICIENT_SCOPE, RATE_LIMITED, UNAVAILABLE, STALE, PREFLIGHT.
#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct VerifyResponse {
    valid: bool,
    code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner_kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scopes: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_seconds: Option<u64>,
}

async fn verify(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(body): Json<VerifyRequest>,
) -> Response {
    let client = state.forwarding.client_address(&headers, peer.ip());
    let credentials = match (&body.token, &body.access_key_id, &body.secret) {
        (Some(token), _, _) => credentials::from_token(token),
        (None, Some(id), Some(secret)) => credentials::from_pair(id, secret),
        _ => Err(credentials::Unreadable::Missing),
    };
    let mut required_scopes = body.scopes;
    required_scopes.extend(body.scope);
    let request = CheckRequest {
        credentials,
        is_options: body
            .method
            .is_some_and(|m| m.eq_ignore_ascii_case("OPTIONS")),
        requests_cors_method: body.access_control_request_method.is_some(),
        origin: body.origin,
        required_scopes,
        client: Some(client),
    };
    let decision = state.verifier.check(request, Utc::now()).await;
    log_decision(&decision, client);
    mark_if_stale(
        &state.verifier,
        Json(verify_response(decision)).into_response(),
    )
}

fn verify_response(decision: Decision) -> VerifyResponse {
    let refused = |code| VerifyResponse {
        code,
        ..VerifyResponse::default()
    };
    match decision {
        Decision::Valid(grant) => VerifyResponse {
            valid: true,
            code: "VALID",
            key_name: Some(grant.record.key_ref.to_string()),
            owner: Some(grant.record.owner.to_string()),
            owner_kind: Some(owner_kind_name(grant.record.owner_kind)),
            scopes: Some(grant.record.scopes.to_vec()),
            access_key_id: Some(grant.access_key_id),
            retry_after_seconds: None,
        },
        Decision::Preflight => VerifyResponse {
            valid: true,
            code: "PREFLIGHT",
            ..VerifyResponse::default()
        },
        Decision::Unauthorized(Refusal::Unreadable(_)) => refused("MALFORMED"),
        Decision::Unauthorized(Refusal::UnknownId | Refusal::WrongSecret) => refused("NOT_FOUND"),
        Decision::Unauthorized(Refusal::Unusable(Unusable::Disabled)) => refused("DISABLED"),
        Decision::Unauthorized(Refusal::Unusable(Unusable::Expired)) => refused("EXPIRED"),
        Decision::ForbiddenOrigin { .. } => refused("FORBIDDEN_ORIGIN"),
        Decision::InsufficientScope { .. } => refused("INSUFFICIENT_SCOPE"),
        Decision::RateLimited { retry_after } => VerifyResponse {
            retry_after_seconds: Some(retry_after.as_secs().max(1)),
            ..refused("RATE_LIMITED")
        },
        Decision::Overloaded { retry_after } => VerifyResponse {
            retry_after_seconds: Some(retry_after.as_secs().max(1)),
            ..refused("UNAVAILABLE")
        },
        Decision::Stale(stale) => VerifyResponse {
            retry_after_seconds: Some(stale_retry_after(&stale).as_secs().max(1)),
            ..refused("STALE")
        },
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    if !state.verifier.is_ready() {
        return (StatusCode::SERVICE_UNAVAILABLE, "index not synced").into_response();
    }
    match state.verifier.freshness().stale(std::time::Instant::now()) {
        None => "ok".into_response(),
        Some(stale) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "index stale: not confirmed with the API server for {}s (bound {}s)",
                stale.staleness.as_secs(),
                stale.max_staleness.as_secs()
            ),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let staleness = state
        .verifier
        .freshness()
        .staleness(std::time::Instant::now());
    state.verifier.metrics().set_index_staleness(staleness);
    match state.verifier.metrics().encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Logs why a check ended as it did: IDs and reasons only, never secrets or tokens.
fn log_decision(decision: &Decision, client: IpAddr) {
    match decision {
        Decision::Valid(grant) => {
            tracing::debug!(access_key_id = %grant.access_key_id, key = %grant.record.key_ref, "key accepted")
        }
        Decision::Preflight => tracing::debug!(%client, "preflight accepted"),
        Decision::Unauthorized(refusal) => {
            tracing::info!(%client, reason = refusal.as_str(), "key refused")
        }
        Decision::ForbiddenOrigin { access_key_id } => {
            tracing::info!(%client, %access_key_id, "origin not allowlisted")
        }
        Decision::InsufficientScope { access_key_id } => {
            tracing::info!(%client, %access_key_id, "scope not granted")
        }
        Decision::RateLimited { .. } => tracing::debug!(%client, "rate limited"),
        Decision::Overloaded { .. } => tracing::debug!(%client, "argon2 work saturated"),
        Decision::Stale(_) => tracing::debug!(%client, "refused: index stale"),
    }
}

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name)?.to_str().ok()
}

/// Every `scope` parameter of a query string.
fn scopes_from_query(query: Option<&str>) -> Vec<String> {
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|pair| pair.split_once('='))
        .filter(|(name, _)| *name == "scope")
        .map(|(_, value)| percent_decode(value))
        .collect()
}

/// Decodes `%XX` escapes and `+` of a query value; undecodable input is kept as is.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = (bytes[i] == b'%')
            .then(|| value.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[i], decoded) {
            (_, Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (byte, None) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_scopes_are_decoded() {
        assert_eq!(
            scopes_from_query(Some("a=1&scope=logs%3Aview&scope=x:manage")),
            vec!["logs:view".to_owned(), "x:manage".to_owned()]
        );
        assert!(scopes_from_query(None).is_empty());
    }
}
