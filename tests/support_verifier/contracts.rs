//! What Envoy `ext_authz` (HTTP mode) and Traefik ForwardAuth do with a request, read from their
//! shipped configurations and done against a real verifier: which headers reach the verifier,
//! which the proxy adds, what goes upstream and what back to the client.

use std::collections::BTreeMap;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::examples::example;
use super::LocalVerifier;

/// The client's address as the proxy sees it.
pub const CLIENT: &str = "203.0.113.9";

/// What a client forges, hoping the proxy passes it on.
pub const SPOOFED: [(&str, &str); 10] = [
    ("x-forwarded-method", "OPTIONS"),
    ("x-original-method", "OPTIONS"),
    ("x-real-ip", "198.51.100.66"),
    ("x-forwarded-for", "198.51.100.66"),
    ("x-keywarden-key-id", "AKWSPOOFED"),
    (
        "x-keywarden-owner",
        "system:serviceaccount:kube-system:admin",
    ),
    ("x-keywarden-owner-kind", "ServiceAccount"),
    ("x-keywarden-scopes", "*"),
    ("x-keywarden-key-name", "kube-system/admin"),
    ("x-keywarden-required-scope", "reports:view"),
];

pub type Headers = BTreeMap<String, String>;

/// What a client gets, and what the API receives if the request is let through.
#[derive(Debug, PartialEq)]
pub struct Outcome {
    pub status: StatusCode,
    pub body: String,
    pub client_headers: Headers,
    /// The `x-keywarden-*` headers the API receives; `None` when the request was refused.
    pub upstream: Option<Headers>,
}

fn yaml(path: &str) -> Value {
    let value: serde_yaml::Value = serde_yaml::from_str(&example(path)).expect("valid YAML");
    serde_json::to_value(value).expect("YAML converts to JSON")
}

fn strings(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|item| {
            item.as_str()
                .or_else(|| item["exact"].as_str())
                .or_else(|| item["remove"].as_str())
                .expect("a string, `exact` pattern or `remove` mutation")
                .to_ascii_lowercase()
        })
        .collect()
}

fn keywarden_headers(headers: &Headers) -> Headers {
    headers
        .iter()
        .filter(|(name, _)| name.starts_with("x-keywarden-"))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

/// Sends a check to the verifier and returns its status, headers and body.
async fn ask(
    local: &LocalVerifier,
    method: Method,
    path: &str,
    headers: &Headers,
) -> (StatusCode, Headers, String) {
    let mut request = reqwest::Client::new().request(method, local.url(path));
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request.send().await.expect("the verifier answers");
    let status = response.status();
    let answered = response
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    (status, answered, response.text().await.expect("body"))
}

/// One `ext_authz` filter of the Envoy example.
pub struct EnvoyCheck {
    pub path_prefix: String,
    pub allowed: Vec<String>,
    pub added: Vec<(String, String)>,
    pub upstream: Vec<String>,
    pub client: Vec<String>,
}

/// The Envoy example: the header-stripping filter, the checks by name, and per route the
/// methods it matches (`None`: any) and the check it leaves enabled.
pub struct Envoy {
    pub stripped: Vec<String>,
    pub checks: BTreeMap<String, EnvoyCheck>,
    pub routes: Vec<(Option<Vec<String>>, String)>,
}

impl Envoy {
    pub fn load() -> Self {
        let config = yaml("envoy/ext-authz.yaml");
        let manager = &config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"];
        assert_eq!(
            manager["use_remote_address"], true,
            "Envoy appends the peer"
        );
        let mut stripped = Vec::new();
        let mut checks = BTreeMap::new();
        for filter in manager["http_filters"].as_array().expect("http_filters") {
            let name = filter["name"].as_str().expect("filter name").to_owned();
            let config = &filter["typed_config"];
            let kind = config["@type"].as_str().expect("@type");
            if kind.ends_with("header_mutation.v3.HeaderMutation") {
                stripped.extend(strings(&config["mutations"]["request_mutations"]));
            } else if kind.ends_with("ext_authz.v3.ExtAuthz") {
                assert!(
                    checks.is_empty() || !stripped.is_empty(),
                    "strip before checks"
                );
                assert_eq!(config["failure_mode_allow"], false, "{name}: outages deny");
                let service = &config["http_service"];
                let request = &service["authorization_request"];
                let response = &service["authorization_response"];
                let added = request["headers_to_add"]
                    .as_array()
                    .expect("headers_to_add")
                    .iter()
                    .map(|h| {
                        (
                            h["key"].as_str().unwrap_or("").to_owned(),
                            h["value"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect();
                let check = EnvoyCheck {
                    path_prefix: service["path_prefix"]
                        .as_str()
                        .expect("path_prefix")
                        .to_owned(),
                    allowed: strings(&request["allowed_headers"]["patterns"]),
                    added,
                    upstream: strings(&response["allowed_upstream_headers"]["patterns"]),
                    client: strings(&response["allowed_client_headers"]["patterns"]),
                };
                checks.insert(name, check);
            }
        }
        let routes = manager["route_config"]["virtual_hosts"][0]["routes"]
            .as_array()
            .expect("routes")
            .iter()
            .map(|route| {
                let methods = route["match"]["headers"].as_array().map(|headers| {
                    let regex = headers[0]["string_match"]["safe_regex"]["regex"]
                        .as_str()
                        .expect("a :method regex");
                    let inner = regex.strip_prefix("^(").and_then(|r| r.strip_suffix(")$"));
                    inner
                        .expect("^(A|B)$")
                        .split('|')
                        .map(str::to_owned)
                        .collect()
                });
                let disabled: Vec<&String> = route["typed_per_filter_config"]
                    .as_object()
                    .expect("typed_per_filter_config")
                    .keys()
                    .collect();
                let enabled = checks
                    .keys()
                    .find(|name| !disabled.contains(name))
                    .expect("one check enabled per route")
                    .clone();
                assert_eq!(
                    disabled.len() + 1,
                    checks.len(),
                    "exactly one check per route"
                );
                (methods, enabled)
            })
            .collect();
        Self {
            stripped,
            checks,
            routes,
        }
    }

    /// Does what Envoy does with a client request.
    pub async fn exchange(
        &self,
        local: &LocalVerifier,
        method: Method,
        client: &Headers,
    ) -> Outcome {
        let (_, check_name) = self
            .routes
            .iter()
            .find(|(methods, _)| {
                methods
                    .as_ref()
                    .is_none_or(|m| m.contains(&method.to_string()))
            })
            .expect("a route matches");
        let check = &self.checks[check_name];
        let mut request: Headers = client.clone();
        request.retain(|name, _| !self.stripped.contains(name));
        let forwarded_for = match request.get("x-forwarded-for") {
            Some(earlier) => format!("{earlier}, {CLIENT}"),
            None => CLIENT.to_owned(),
        };
        request.insert("x-forwarded-for".into(), forwarded_for);
        let mut to_verifier: Headers = request
            .iter()
            .filter(|(name, _)| check.allowed.contains(name) || *name == "authorization")
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        to_verifier.extend(check.added.iter().cloned());
        let path = format!("{}/v1/reports", check.path_prefix);
        let (status, answered, body) = ask(local, method, &path, &to_verifier).await;
        if status.is_success() {
            for name in &check.upstream {
                if let Some(value) = answered.get(name) {
                    request.insert(name.clone(), value.clone());
                }
            }
            let upstream = Some(keywarden_headers(&request));
            return Outcome {
                status,
                body: String::new(),
                client_headers: Headers::new(),
                upstream,
            };
        }
        let mut client_headers = answered;
        client_headers.retain(|name, _| check.client.contains(name));
        Outcome {
            status,
            body,
            client_headers,
            upstream: None,
        }
    }
}

/// One ForwardAuth middleware of the Traefik example.
pub struct ForwardAuth {
    pub address: String,
    pub request_headers: Vec<String>,
    pub response_headers: Vec<String>,
}

/// One router of the Traefik example.
pub struct Router {
    pub priority: i64,
    /// The methods its rule names; `None`: any.
    pub methods: Option<Vec<String>>,
    /// The headers its strip middleware removes.
    pub stripped: Vec<String>,
    pub auth: ForwardAuth,
}

/// The Traefik example's routers, highest priority first.
pub struct Traefik {
    pub routers: Vec<Router>,
}

impl Traefik {
    pub fn load() -> Self {
        let config = yaml("traefik/dynamic.yml");
        let middlewares = &config["http"]["middlewares"];
        let mut routers: Vec<_> = config["http"]["routers"]
            .as_object()
            .expect("routers")
            .values()
            .map(|router| {
                let rule = router["rule"].as_str().expect("rule");
                let methods: Vec<String> = rule
                    .split("Method(`")
                    .skip(1)
                    .filter_map(|rest| rest.split('`').next())
                    .map(str::to_owned)
                    .collect();
                let mut stripped = Vec::new();
                let mut auth = None;
                for name in strings(&router["middlewares"]) {
                    let middleware = &middlewares[name.as_str()];
                    if let Some(headers) = middleware["headers"]["customRequestHeaders"].as_object()
                    {
                        assert!(auth.is_none(), "{name}: strip before ForwardAuth");
                        for (header, value) in headers {
                            assert_eq!(value, "", "{name}: {header} is removed, not set");
                            stripped.push(header.to_ascii_lowercase());
                        }
                    }
                    let forward = &middleware["forwardAuth"];
                    if !forward.is_null() {
                        assert_eq!(forward["trustForwardHeader"], false, "{name}");
                        auth = Some(ForwardAuth {
                            address: forward["address"].as_str().expect("address").to_owned(),
                            request_headers: strings(&forward["authRequestHeaders"]),
                            response_headers: strings(&forward["authResponseHeaders"]),
                        });
                    }
                }
                let priority = router["priority"].as_i64().expect("priority");
                Router {
                    priority,
                    methods: (!methods.is_empty()).then_some(methods),
                    stripped,
                    auth: auth.expect("a ForwardAuth"),
                }
            })
            .collect();
        routers.sort_by_key(|router| -router.priority);
        Self { routers }
    }

    /// Does what Traefik does with a client request.
    pub async fn exchange(
        &self,
        local: &LocalVerifier,
        method: Method,
        client: &Headers,
    ) -> Outcome {
        let Router { stripped, auth, .. } = self
            .routers
            .iter()
            .find(|router| {
                router
                    .methods
                    .as_ref()
                    .is_none_or(|m| m.contains(&method.to_string()))
            })
            .expect("a router matches");
        let mut request: Headers = client.clone();
        // why: without forwardedHeaders.trustedIPs the entry point drops X-Forwarded-*.
        request.retain(|name, _| !stripped.contains(name) && !name.starts_with("x-forwarded-"));
        let mut to_verifier: Headers = request
            .iter()
            .filter(|(name, _)| auth.request_headers.contains(name))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        for (name, value) in [
            ("x-forwarded-method", method.as_str()),
            ("x-forwarded-for", CLIENT),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "api.example.com"),
            ("x-forwarded-uri", "/v1/reports"),
        ] {
            to_verifier.insert(name.into(), value.into());
        }
        let path = auth
            .address
            .split_once("://")
            .and_then(|(_, rest)| rest.find('/').map(|slash| &rest[slash..]))
            .expect("an address with a path");
        let (status, answered, body) = ask(local, Method::GET, path, &to_verifier).await;
        if !status.is_success() {
            return Outcome {
                status,
                body,
                client_headers: answered
                    .into_iter()
                    .filter(|(name, _)| {
                        ["www-authenticate", "retry-after", "content-type"].contains(&name.as_str())
                    })
                    .collect(),
                upstream: None,
            };
        }
        for name in &auth.response_headers {
            request.remove(name);
            if let Some(value) = answered.get(name) {
                request.insert(name.clone(), value.clone());
            }
        }
        Outcome {
            status,
            body: String::new(),
            client_headers: Headers::new(),
            upstream: Some(keywarden_headers(&request)),
        }
    }
}

pub enum Proxy {
    Envoy(Envoy),
    Traefik(Traefik),
}

impl Proxy {
    pub async fn exchange(
        &self,
        local: &LocalVerifier,
        method: Method,
        client: &Headers,
    ) -> Outcome {
        match self {
            Proxy::Envoy(envoy) => envoy.exchange(local, method, client).await,
            Proxy::Traefik(traefik) => traefik.exchange(local, method, client).await,
        }
    }
}
