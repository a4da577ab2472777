//! The HTTP front: routing of Kubernetes API paths to verbs, discovery and the admin endpoint.

mod admin;
#[cfg(test)]
mod admission_tests;
mod certificates;
pub(crate) mod counts;
pub(crate) mod http;
mod read;
mod scale;
mod watch;
mod write;

use std::sync::Arc;
use std::time::Duration;

use ::http::header::{ACCEPT, CONTENT_TYPE, ETAG, IF_NONE_MATCH, VARY};
use ::http::{HeaderValue, Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;

use crate::auth::authn::Authenticator;
use crate::auth::{Attributes, Authorizer, UserInfo};
use crate::faults::{FaultAction, Faults, RequestInfo};
use crate::registry::{Registry, ResourceType};
use crate::status::ApiError;
use crate::store::{storage_key, StorageKey, Store};
use http::{Body, Query};

/// Shared state of a running server.
pub(crate) struct Server {
    pub store: Arc<Store>,
    pub registry: Arc<Registry>,
    pub faults: Faults,
    /// `http://127.0.0.1:port`, for discovery documents.
    pub url: String,
    /// How often idle watches with `allowWatchBookmarks` get a BOOKMARK.
    pub bookmark_interval: Duration,
    pub authenticator: Authenticator,
    pub authorizer: Arc<dyn Authorizer>,
    /// The RBAC rule resolver (escalation checks, rules reviews), also in AlwaysAllow mode.
    pub rbac: Arc<crate::auth::rbac::Rbac>,
    /// Resource requests served, by user, verb and resource (`/_devcluster/requests`).
    pub requests: counts::RequestCounts,
}

/// The request's connection must be reset without an answer (the drop-response fault).
#[derive(Debug, thiserror::Error)]
#[error("devcluster: response dropped by an injected fault")]
pub(crate) struct ResponseDropped;

/// A parsed resource path.
#[derive(Debug, Default)]
struct ResourcePath {
    group: String,
    version: String,
    namespace: Option<String>,
    plural: String,
    name: Option<String>,
    subresource: Option<String>,
}

/// Parses `/api/v1/...` and `/apis/{group}/{version}/...` resource paths.
fn parse_resource_path(segments: &[&str]) -> Option<ResourcePath> {
    let (group, version, rest) = match segments {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let mut path = ResourcePath {
        group: group.into(),
        version: version.into(),
        ..Default::default()
    };
    let rest = match rest {
        ["namespaces", ns, plural, rest @ ..]
            if !(group.is_empty() && matches!(*plural, "status" | "finalize")) =>
        {
            path.namespace = Some((*ns).to_string());
            path.plural = (*plural).to_string();
            rest
        }
        [plural, rest @ ..] => {
            path.plural = (*plural).to_string();
            rest
        }
        [] => return None,
    };
    match rest {
        [] => {}
        [name] => path.name = Some((*name).to_string()),
        [name, sub] => {
            path.name = Some((*name).to_string());
            path.subresource = Some((*sub).to_string());
        }
        _ => return None,
    }
    Some(path)
}

/// Everything a verb handler needs to know about one resource request.
pub(crate) struct Call {
    pub rt: ResourceType,
    pub key: StorageKey,
    /// Empty for cluster-scoped resources and cluster-wide lists.
    pub namespace: String,
    /// Whether the URL named a namespace (a namespaced list vs. all namespaces).
    pub namespace_in_url: bool,
    pub name: Option<String>,
    pub subresource: Option<String>,
    pub query: Query,
    pub accept: String,
    pub content_type: String,
    pub user_agent: String,
    /// Who is asking (after impersonation).
    pub user: Arc<UserInfo>,
}

fn header(req: &Request<Incoming>, name: ::http::header::HeaderName) -> String {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

fn verb_of(method: &Method, call: &Call) -> &'static str {
    match (method, call.name.is_some()) {
        (&Method::GET, true) => "get",
        (&Method::GET, false) if call.query.flag("watch") => "watch",
        (&Method::GET, false) => "list",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => "unknown",
    }
}

impl Server {
    /// Answers one HTTP request.
    pub(crate) async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, ResponseDropped> {
        let path = req.uri().path().to_string();
        tracing::debug!(method = %req.method(), uri = %req.uri(), "request");
        if let Some(admin_path) = path.strip_prefix("/_devcluster/") {
            let method = req.method().clone();
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Ok(admin::handle(&self, &method, admin_path, &body));
        }
        let latency = self.faults.latency();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let user = match crate::auth::authn::authenticate(&self, req.headers()) {
            Ok(user) => Arc::new(user),
            Err(err) => return Ok(http::error(&err)),
        };
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let served = self.registry.snapshot();
        if parse_resource_path(&segments).is_none() {
            let attributes = Attributes {
                user: user.clone(),
                verb: req.method().as_str().to_ascii_lowercase(),
                resource_request: false,
                path: path.clone(),
                ..Attributes::default()
            };
            let decision = self.authorizer.authorize(&attributes);
            if !decision.allowed() {
                return Ok(http::error(&crate::auth::rbac::forbidden(
                    &attributes,
                    &decision,
                )));
            }
        }
        match segments.as_slice() {
            ["version"] => return Ok(http::json(200, &crate::discovery::version())),
            ["api" | "apis"] if crate::discovery::wants_aggregated(&header(&req, ACCEPT)) => {
                return Ok(aggregated_discovery(
                    &served.types,
                    segments[0] == "api",
                    &header(&req, IF_NONE_MATCH),
                ))
            }
            ["api"] => {
                return Ok(http::json(
                    200,
                    &crate::discovery::core_api_versions(&self.url),
                ))
            }
            ["apis"] => {
                return Ok(http::json(
                    200,
                    &crate::discovery::api_group_list(&served.types),
                ))
            }
            ["api", version] => return Ok(discovery_list(&served.types, "", version)),
            ["apis", group, version] => return Ok(discovery_list(&served.types, group, version)),
            ["openapi", "v3"] => {
                return Ok(http::json(200, &crate::openapi::v3_index(&served.types)))
            }
            ["openapi", "v3", "api", version] => {
                return Ok(openapi_doc(&served.types, "", version))
            }
            ["openapi", "v3", "apis", group, version] => {
                return Ok(openapi_doc(&served.types, group, version))
            }
            _ => {}
        }
        let Some(parsed) = parse_resource_path(&segments) else {
            return Ok(http::error(&ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )));
        };
        let Some(rt) = served.find(&parsed.group, &parsed.version, &parsed.plural) else {
            return Ok(http::error(&ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )));
        };
        if parsed.namespace.is_some() && !rt.namespaced {
            return Ok(http::error(&ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )));
        }
        if let Some(sub) = &parsed.subresource {
            let served = match sub.as_str() {
                "status" => rt.status_subresource,
                "scale" => rt.scale_subresource.is_some(),
                _ => false,
            };
            let served = served
                || (sub == "token" && rt.group.is_empty() && rt.plural == "serviceaccounts")
                || (sub == "approval"
                    && rt.group == "certificates.k8s.io"
                    && rt.plural == "certificatesigningrequests");
            if !served {
                return Ok(http::error(&ApiError::new(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                )));
            }
        }
        let call = Call {
            key: storage_key(rt),
            rt: rt.clone(),
            namespace_in_url: parsed.namespace.is_some(),
            namespace: parsed.namespace.unwrap_or_default(),
            name: parsed.name,
            subresource: parsed.subresource,
            query: Query::parse(req.uri().query()),
            accept: header(&req, ::http::header::ACCEPT),
            content_type: header(&req, ::http::header::CONTENT_TYPE),
            user_agent: header(&req, ::http::header::USER_AGENT),
            user: user.clone(),
        };
        drop(served);
        let method = req.method().clone();
        let verb = verb_of(&method, &call);
        self.requests.count(
            &call.user.username,
            verb,
            &call.rt.plural,
            call.subresource.as_deref(),
        );
        // why: kube-apiserver authorizes a list or watch narrowed by
        // `fieldSelector=metadata.name=<name>` as a request for that name.
        let name = match (&call.name, verb) {
            (Some(name), _) => name.clone(),
            (None, "list" | "watch") => call
                .query
                .get("fieldSelector")
                .and_then(crate::auth::rbac::name_from_field_selector)
                .unwrap_or_default()
                .to_string(),
            (None, _) => String::new(),
        };
        let attributes = Attributes {
            user,
            verb: verb.to_string(),
            resource_request: true,
            api_group: call.rt.group.clone(),
            api_version: call.rt.version.clone(),
            resource: call.rt.plural.clone(),
            subresource: call.subresource.clone().unwrap_or_default(),
            namespace: call.namespace.clone(),
            name,
            path: path.clone(),
        };
        let decision = self.authorizer.authorize(&attributes);
        if !decision.allowed() {
            return Ok(http::error(&crate::auth::rbac::forbidden(
                &attributes,
                &decision,
            )));
        }
        let fault = self.faults.take(&RequestInfo {
            verb,
            resource: &call.rt.plural,
            namespace: &call.namespace,
            name: call.name.as_deref().unwrap_or_default(),
        });
        if let Some(FaultAction::Fail(code)) = fault {
            return Ok(http::error(&http::fault_error(code)));
        }
        let body = match req.into_body().collect().await {
            Ok(body) => body.to_bytes(),
            Err(err) => {
                return Ok(http::error(&ApiError::bad_request(format!(
                    "reading the request body: {err}"
                ))))
            }
        };
        let result = match verb {
            _ if call.subresource.as_deref() == Some("scale") => {
                scale::handle(&self, &call, verb, &body)
            }
            "get" => read::get(&self, &call),
            "list" => read::list(&self, &call),
            "watch" => watch::watch(&self, &call),
            "create" => write::create(&self, &call, &body),
            "update" => write::update(&self, &call, &body),
            "patch" => write::patch(&self, &call, &body),
            "delete" => write::delete(&self, &call, &body),
            "deletecollection" => write::delete_collection(&self, &call, &body),
            _ => Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            )),
        };
        if fault == Some(FaultAction::DropResponse) {
            return Err(ResponseDropped);
        }
        Ok(result.unwrap_or_else(|err| http::error(&err)))
    }
}

/// `/api` or `/apis` as an aggregated discovery document, with its own content type and an ETag
/// (`304 Not Modified` when `If-None-Match` names the current document).
fn aggregated_discovery(types: &[ResourceType], core: bool, if_none_match: &str) -> Response<Body> {
    let body = serde_json::to_vec(&crate::discovery::aggregated::document(types, core))
        .unwrap_or_default();
    let etag = crate::discovery::aggregated::etag(&body);
    let mut response = if if_none_match == etag {
        let mut not_modified = Response::new(http::full(Vec::new()));
        *not_modified.status_mut() = ::http::StatusCode::NOT_MODIFIED;
        not_modified
    } else {
        http::json_bytes(200, body)
    };
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(crate::discovery::aggregated::CONTENT_TYPE),
    );
    headers.insert(VARY, HeaderValue::from_static("Accept"));
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        headers.insert(ETAG, etag);
    }
    response
}

fn discovery_list(types: &[ResourceType], group: &str, version: &str) -> Response<Body> {
    match crate::discovery::api_resource_list(types, group, version) {
        Some(list) => http::json(200, &list),
        None => http::error(&ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )),
    }
}

fn openapi_doc(types: &[ResourceType], group: &str, version: &str) -> Response<Body> {
    match crate::openapi::v3_document(types, group, version) {
        Some(doc) => http::json(200, &doc),
        None => http::error(&ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )),
    }
}

/// The object as served by `rt`: its apiVersion and kind, events converted for events.k8s.io.
pub(crate) fn to_wire(rt: &ResourceType, stored: &Value) -> Value {
    if rt.group == "events.k8s.io" {
        return crate::events::core_to_events_v1(stored);
    }
    let mut obj = stored.clone();
    obj["apiVersion"] = Value::String(rt.api_version());
    obj["kind"] = Value::String(rt.kind.clone());
    obj
}

/// Whether a stored object can be served by `rt` without conversion.
pub(crate) fn wire_ready(rt: &ResourceType, stored: &Value) -> bool {
    rt.group != "events.k8s.io"
        && stored.get("apiVersion").and_then(Value::as_str) == Some(rt.api_version().as_str())
        && stored.get("kind").and_then(Value::as_str) == Some(rt.kind.as_str())
}

/// The object as stored, from the form `rt` serves.
pub(crate) fn from_wire(rt: &ResourceType, mut obj: Value) -> Value {
    if rt.group == "events.k8s.io" {
        return crate::events::events_v1_to_core(&obj);
    }
    if obj.is_object() {
        obj["apiVersion"] = Value::String(rt.api_version());
        obj["kind"] = Value::String(rt.kind.clone());
    }
    obj
}
