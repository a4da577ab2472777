//! The proxy examples really protect an API: nginx (`examples/nginx/nginx.conf`) and Caddy
//! (`examples/caddy/Caddyfile`) run as shipped, with only their addresses moved to free ports,
//! in front of a recording stand-in for the verifier and a recording API.
//!
//! The stand-in answers like the verifier contract says (200 with identity headers, 401 with
//! `WWW-Authenticate`, 403 for a foreign `Origin`), so these tests check what each proxy sends and
//! relays. The last test puts the real verifier behind both, with the example key from
//! `examples/key-service-account.yaml` issued on devcluster. nginx and caddy are skipped loudly when missing, and required
//! when `KEYWARDEN_REQUIRE_TOOLS` or `KEYWARDEN_REQUIRE_PROXIES` is set (as in CI).

mod support_verifier;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use keywarden::api::{AccessKey, Phase};
use keywarden::keys::hash::{hash_secret, HashParams};
use keywarden::keys::material::{AccessKeyId, SecretKey};
use keywarden::verifier::VerifierArgs;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, CustomResourceExt};
use serde::Deserialize;
use support_verifier::examples::{
    example, record, recording_api, serve, start_caddy_example, start_nginx_example, Log, Proxy,
    Seen,
};
use tokio_util::sync::CancellationToken;

const GOOD_ID: &str = "AKWEXAMPLE";
const GOOD_SECRET: &str = "s3cret-example";
const ALLOWED_ORIGIN: &str = "https://app.example.com";
const OWNER: &str = "system:serviceaccount:default:report-exporter";

fn missing_tool(tool: &str, hint: &str) {
    let required = ["KEYWARDEN_REQUIRE_TOOLS", "KEYWARDEN_REQUIRE_PROXIES"]
        .iter()
        .any(|var| std::env::var_os(var).is_some());
    if required {
        panic!("{tool} is required (KEYWARDEN_REQUIRE_TOOLS is set) but missing: {hint}");
    }
    eprintln!("SKIPPED: {tool} not found ({hint}); set KEYWARDEN_REQUIRE_TOOLS=1 to fail instead");
}

fn on_path(name: &str) -> Option<PathBuf> {
    let extra = ["/usr/sbin", "/usr/local/sbin"].map(PathBuf::from);
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The verifier's answer to one check, following the verifier contract.
fn verdict(seen: &Seen) -> Response {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{GOOD_ID}:{GOOD_SECRET}"))
    );
    if seen.header("authorization") != Some(expected.as_str()) {
        let body = r#"{"code":"unauthorized","message":"missing or invalid access key"}"#;
        return (
            StatusCode::UNAUTHORIZED,
            [
                ("www-authenticate", r#"Basic realm="keywarden""#),
                ("content-type", "application/json"),
            ],
            body,
        )
            .into_response();
    }
    let mut headers = vec![
        ("x-keywarden-key-id", GOOD_ID.to_owned()),
        ("x-keywarden-owner", OWNER.to_owned()),
        (
            "x-keywarden-scopes",
            "reports:view,reports:manage".to_owned(),
        ),
    ];
    match seen.header("origin") {
        None => {}
        Some(ALLOWED_ORIGIN) => {
            headers.push(("access-control-allow-origin", ALLOWED_ORIGIN.to_owned()))
        }
        Some(_) => {
            let body = r#"{"code":"forbidden","message":"The request origin is not allowlisted to use this access key"}"#;
            return (
                StatusCode::FORBIDDEN,
                [("content-type", "application/json")],
                body,
            )
                .into_response();
        }
    }
    let mut response = StatusCode::OK.into_response();
    for (name, value) in headers {
        response
            .headers_mut()
            .insert(name, value.parse().expect("header value"));
    }
    response
}

/// Stand-ins for the verifier and the API, each recording what it received.
struct Backends {
    verifier: SocketAddr,
    api: SocketAddr,
    checks: Log,
    calls: Log,
}

impl Backends {
    /// The recording API behind the recording verifier stand-in.
    async fn start() -> Self {
        let checks = Log::default();
        let verifier_log = checks.clone();
        let verifier = serve(Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap| {
                let log = verifier_log.clone();
                async move { verdict(&record(&log, method, uri, headers)) }
            },
        ))
        .await;
        Self::start_with_verifier(verifier, checks).await
    }

    /// The recording API, checked by the verifier at `verifier`.
    async fn start_with_verifier(verifier: SocketAddr, checks: Log) -> Self {
        let (api, calls) = recording_api().await;
        Self {
            verifier,
            api,
            checks,
            calls,
        }
    }

    fn last_check(&self) -> Seen {
        let checks = self.checks.lock().expect("log lock");
        checks
            .last()
            .cloned()
            .expect("the proxy asked the verifier")
    }

    fn last_call(&self) -> Seen {
        let calls = self.calls.lock().expect("log lock");
        calls.last().cloned().expect("the proxy called the API")
    }

    fn call_count(&self) -> usize {
        self.calls.lock().expect("log lock").len()
    }
}

async fn start_nginx(nginx: &Path, backends: &Backends) -> Proxy {
    start_nginx_example(nginx, backends.verifier, backends.api).await
}

async fn start_caddy(caddy: &Path, backends: &Backends) -> Proxy {
    start_caddy_example(caddy, backends.verifier, backends.api).await
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client")
}

/// The behaviour both proxy examples promise; `method_header` carries the original method.
async fn assert_protects_api(proxy: &Proxy, backends: &Backends, method_header: &str) {
    let http = client();

    let ok = http
        .get(proxy.url("/v1/reports?month=11"))
        .basic_auth(GOOD_ID, Some(GOOD_SECRET))
        .header("origin", ALLOWED_ORIGIN)
        .header("x-keywarden-key-id", "AKWSPOOFED")
        .header("x-keywarden-required-scope", "nothing:view")
        .send()
        .await
        .expect("request through the proxy");
    assert_eq!(ok.status(), 200);
    let allow_origin = ok.headers().get("access-control-allow-origin").cloned();
    assert_eq!(ok.text().await.expect("body"), "api ok");
    let check = backends.last_check();
    assert!(check.uri.path().starts_with("/v1/check"), "{:?}", check.uri);
    assert!(check
        .header("authorization")
        .is_some_and(|a| a.starts_with("Basic ")));
    assert_eq!(check.header("origin"), Some(ALLOWED_ORIGIN));
    assert_eq!(check.header(method_header), Some("GET"));
    assert_eq!(
        check.header("x-keywarden-required-scope"),
        Some("reports:view"),
        "the proxy, not the client, sets the required scope"
    );
    let call = backends.last_call();
    assert_eq!(call.method, Method::GET);
    assert_eq!(call.uri.to_string(), "/v1/reports?month=11");
    assert_eq!(
        call.header("x-keywarden-key-id"),
        Some(GOOD_ID),
        "identity comes from the verifier"
    );
    assert_eq!(call.header("x-keywarden-owner"), Some(OWNER));
    assert_eq!(
        call.header("authorization"),
        None,
        "the API never sees the key"
    );

    let write = http
        .post(proxy.url("/v1/reports"))
        .basic_auth(GOOD_ID, Some(GOOD_SECRET))
        .body("{}")
        .send()
        .await
        .expect("request through the proxy");
    assert_eq!(write.status(), 200);
    let check = backends.last_check();
    assert_eq!(check.header(method_header), Some("POST"));
    assert_eq!(
        check.header("x-keywarden-required-scope"),
        Some("reports:manage")
    );
    assert_eq!(backends.last_call().method, Method::POST);

    let calls_before = backends.call_count();
    let wrong = http
        .get(proxy.url("/v1/reports"))
        .basic_auth(GOOD_ID, Some("wrong-secret"))
        .send()
        .await
        .expect("request through the proxy");
    assert_eq!(wrong.status(), 401);
    assert_eq!(
        wrong
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some(r#"Basic realm="keywarden""#)
    );
    let foreign = http
        .get(proxy.url("/v1/reports"))
        .basic_auth(GOOD_ID, Some(GOOD_SECRET))
        .header("origin", "https://evil.example.net")
        .send()
        .await
        .expect("request through the proxy");
    assert_eq!(foreign.status(), 403);
    assert_eq!(
        backends.call_count(),
        calls_before,
        "denied requests never reach the API"
    );

    if method_header == "x-original-method" {
        // why: only the nginx example copies the verifier's CORS answer onto the response.
        assert_eq!(
            allow_origin.as_ref().and_then(|v| v.to_str().ok()),
            Some(ALLOWED_ORIGIN)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_example_admits_only_keys_the_verifier_accepts() {
    let Some(nginx) = on_path("nginx") else {
        missing_tool("nginx", "apt-get install nginx-light");
        return;
    };
    let backends = Backends::start().await;
    let proxy = start_nginx(&nginx, &backends).await;
    assert_protects_api(&proxy, &backends, "x-original-method").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_example_admits_only_keys_the_verifier_accepts() {
    let Some(caddy) = on_path("caddy") else {
        missing_tool("caddy", "apt-get install caddy");
        return;
    };
    let backends = Backends::start().await;
    let proxy = start_caddy(&caddy, &backends).await;
    assert_protects_api(&proxy, &backends, "x-forwarded-method").await;

    let foreign = client()
        .get(proxy.url("/v1/reports"))
        .basic_auth(GOOD_ID, Some(GOOD_SECRET))
        .header("origin", "https://evil.example.net")
        .send()
        .await
        .expect("request through caddy");
    let body = foreign.text().await.expect("body");
    assert!(
        body.contains(r#""code":"forbidden""#),
        "caddy relays the verifier's JSON: {body}"
    );
}

/// Waits up to 10 s for `url` to answer `expected` when presented `authorization`.
async fn wait_for_status(url: &str, authorization: &str, expected: u16) -> bool {
    for _ in 0..100 {
        let response = client()
            .get(url)
            .header("authorization", authorization)
            .send()
            .await;
        if response.is_ok_and(|r| r.status().as_u16() == expected) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_examples_enforce_the_example_key_with_the_real_verifier() {
    let (Some(nginx), Some(caddy)) = (on_path("nginx"), on_path("caddy")) else {
        missing_tool("nginx and caddy", "apt-get install nginx-light caddy");
        return;
    };
    let cluster = devcluster::DevCluster::start()
        .await
        .expect("devcluster starts");
    let kube = cluster.client().expect("kube client");
    let crds: Api<CustomResourceDefinition> = Api::all(kube.clone());
    crds.create(&PostParams::default(), &AccessKey::crd())
        .await
        .expect("install the AccessKey CRD");

    // The example key, issued as the controller would: an ID and a hash in status.
    let manifest = example("key-service-account.yaml");
    let key: AccessKey = serde_yaml::Deserializer::from_str(&manifest)
        .filter_map(|document| serde_yaml::Value::deserialize(document).ok())
        .find(|value| value["kind"] == "AccessKey")
        .map(|value| serde_yaml::from_value(value).expect("the example AccessKey"))
        .expect("key-service-account.yaml declares an AccessKey");
    let name = key.metadata.name.clone().expect("name");
    let keys: Api<AccessKey> = Api::namespaced(kube.clone(), "default");
    let mut created = None;
    for _ in 0..100 {
        match keys.create(&PostParams::default(), &key).await {
            Ok(key) => {
                created = Some(key);
                break;
            }
            // why: a CRD's API is served a moment after the CRD is created.
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert!(
        created.is_some(),
        "the example AccessKey was not accepted within 10 s"
    );
    let (id, secret) = (AccessKeyId::generate(), SecretKey::generate());
    let cheap = HashParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
    let status = serde_json::json!({"status": {
        "phase": Phase::Active,
        "accessKeyId": id.as_str(),
        "secretHash": hash_secret(&secret, &cheap).expect("hash the secret"),
        // why: the controller grants the scopes its owner holds; here, all of them.
        "grantedScopes": key.spec.scopes,
    }});
    keys.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("write the issuance into status");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the verifier");
    let verifier = listener.local_addr().expect("verifier address");
    // why: both examples set X-Original-Method and X-Forwarded-Method alike (the other one
    // cleared would do too), so one verifier serves both.
    let args = VerifierArgs {
        forwarded_method_header: Some(axum::http::HeaderName::from_static("x-forwarded-method")),
        trusted_proxies: vec!["127.0.0.1".parse().expect("loopback network")],
        ..VerifierArgs::default()
    };
    let shutdown = CancellationToken::new();
    let serving = tokio::spawn(keywarden::verifier::serve(
        kube,
        args,
        listener,
        shutdown.clone(),
    ));
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{}", secret.expose()))
    );
    let check = format!("http://{verifier}/v1/check");
    assert!(
        wait_for_status(&check, &basic, 200).await,
        "the verifier did not accept the example key within 10 s"
    );

    let backends = Backends::start_with_verifier(verifier, Log::default()).await;
    for proxy in [
        start_nginx(&nginx, &backends).await,
        start_caddy(&caddy, &backends).await,
    ] {
        let http = client();
        let read = http
            .get(proxy.url("/v1/reports"))
            .header("authorization", &basic)
            .header("origin", "https://app.example.com")
            .send()
            .await
            .expect("request through the proxy");
        assert_eq!(read.status(), 200, "reports:view is among the key's scopes");
        assert_eq!(
            backends.last_call().header("x-keywarden-key-id"),
            Some(id.as_str())
        );
        let calls = backends.call_count();
        let write = http
            .post(proxy.url("/v1/reports"))
            .header("authorization", &basic)
            .send()
            .await
            .expect("request through the proxy");
        assert_eq!(
            write.status(),
            403,
            "reports:manage is not among the key's scopes"
        );
        let foreign = http
            .get(proxy.url("/v1/reports"))
            .header("authorization", &basic)
            .header("origin", "https://evil.example.net")
            .send()
            .await
            .expect("request through the proxy");
        assert_eq!(foreign.status(), 403, "the origin is not in allowedOrigins");
        let anonymous = http
            .get(proxy.url("/v1/reports"))
            .send()
            .await
            .expect("request through the proxy");
        assert_eq!(anonymous.status(), 401);
        assert_eq!(
            backends.call_count(),
            calls,
            "denied requests never reach the API"
        );
    }
    shutdown.cancel();
    let _ = serving.await;
}
