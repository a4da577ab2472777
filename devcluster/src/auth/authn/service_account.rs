//! ServiceAccount tokens: minted by TokenRequest (`pkg/registry/core/serviceaccount/storage/
//! token.go`) and checked on use (`pkg/serviceaccount/jwt.go`, `claims.go`), as kube-apiserver
//! does with its default `--service-account-issuer` and `--api-audiences`.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::impersonation::service_account_groups;
use crate::auth::{UserInfo, SERVICE_ACCOUNT_PREFIX};
use crate::status::ApiError;
use crate::store::{State, StorageKey};

/// The issuer and the API server's own audience (kubeadm's defaults).
pub const API_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";
/// go-jose's default leeway for `exp` and `nbf`.
const LEEWAY_SECONDS: i64 = 60;
const MIN_EXPIRATION_SECONDS: i64 = 10 * 60;
const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;
const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
const POD_NAME_EXTRA: &str = "authentication.kubernetes.io/pod-name";
const POD_UID_EXTRA: &str = "authentication.kubernetes.io/pod-uid";
const CREDENTIAL_ID_EXTRA: &str = "authentication.kubernetes.io/credential-id";

fn storage(plural: &str) -> StorageKey {
    Arc::from(plural)
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `<plural> "<name>" not found`, for a core resource.
fn not_found(plural: &str, name: &str) -> ApiError {
    ApiError::new(404, "NotFound", format!("{plural} \"{name}\" not found"))
        .with_details(json!({ "name": name, "kind": plural }))
}

/// 422 for a TokenRequest, with `(field, message)` causes.
fn invalid(name: &str, causes: &[(&str, String)]) -> ApiError {
    let summary: Vec<String> = causes
        .iter()
        .map(|(field, message)| format!("{field}: {message}"))
        .collect();
    let summary = match summary.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    };
    let mut details = json!({
        "group": "authentication.k8s.io",
        "kind": "TokenRequest",
        "causes": causes.iter().map(|(field, message)| json!({
            "reason": "FieldValueInvalid", "message": message, "field": field,
        })).collect::<Vec<_>>(),
    });
    if !name.is_empty() {
        details["name"] = json!(name);
    }
    ApiError::new(
        422,
        "Invalid",
        format!("TokenRequest.authentication.k8s.io \"{name}\" is invalid: {summary}"),
    )
    .with_details(details)
}

/// What a TokenRequest asks for, defaulted and validated.
pub(crate) struct TokenSpec {
    pub audiences: Vec<String>,
    pub expiration_seconds: i64,
    pub bound_object_ref: Option<Value>,
}

/// The body's `metadata.name` and `metadata.namespace`, when given, must be the URL's.
pub(crate) fn check_metadata(body: &Value, namespace: &str, name: &str) -> Result<(), ApiError> {
    for (field, expected) in [("name", name), ("namespace", namespace)] {
        let given = str_at(body, &format!("/metadata/{field}"));
        if !given.is_empty() && given != expected {
            return Err(invalid(
                name,
                &[(
                    &format!("metadata.{field}"),
                    format!("Invalid value: \"{given}\": must match the service account {field} if specified"),
                )],
            ));
        }
    }
    Ok(())
}

/// The ServiceAccount `namespace/name`, or the 404 kube-apiserver answers.
pub(crate) fn require_service_account<'a>(
    state: &'a State,
    namespace: &str,
    name: &str,
) -> Result<&'a Value, ApiError> {
    state
        .get(&storage("serviceaccounts"), namespace, name)
        .map(|sa| sa.as_ref())
        .ok_or_else(|| not_found("serviceaccounts", name))
}

impl TokenSpec {
    /// Reads, defaults and validates the `spec` of a TokenRequest.
    pub(crate) fn from_request(body: &Value) -> Result<Self, ApiError> {
        let audiences: Vec<String> = body
            .pointer("/spec/audiences")
            .and_then(Value::as_array)
            .map(|auds| {
                auds.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let expiration_seconds = match body.pointer("/spec/expirationSeconds") {
            None | Some(Value::Null) => DEFAULT_EXPIRATION_SECONDS,
            Some(value) => value.as_i64().ok_or_else(|| {
                ApiError::bad_request(format!(
                    "spec.expirationSeconds: expected an integer, got {value}"
                ))
            })?,
        };
        let mut causes = Vec::new();
        if expiration_seconds < MIN_EXPIRATION_SECONDS {
            causes.push((
                "spec.expirationSeconds",
                format!("Invalid value: {expiration_seconds}: may not specify a duration less than 10 minutes"),
            ));
        }
        if expiration_seconds > MAX_EXPIRATION_SECONDS {
            causes.push((
                "spec.expirationSeconds",
                format!("Invalid value: {expiration_seconds}: may not specify a duration larger than 2^32 seconds"),
            ));
        }
        if !causes.is_empty() {
            return Err(invalid("", &causes));
        }
        Ok(Self {
            audiences: if audiences.is_empty() {
                vec![API_AUDIENCE.to_string()]
            } else {
                audiences
            },
            expiration_seconds,
            bound_object_ref: body
                .pointer("/spec/boundObjectRef")
                .filter(|r| r.is_object())
                .cloned(),
        })
    }
}

/// The object a token is bound to: it dies with it.
struct BoundObject {
    /// `pod` or `secret`, the claim's key.
    claim: &'static str,
    name: String,
    uid: String,
}

/// Finds the bound object of `spec` in `namespace`, as TokenRequest checks it.
fn bound_object(
    state: &State,
    spec: &TokenSpec,
    namespace: &str,
    service_account: &str,
) -> Result<Option<BoundObject>, ApiError> {
    let Some(reference) = &spec.bound_object_ref else {
        return Ok(None);
    };
    let kind = str_at(reference, "/kind");
    let name = str_at(reference, "/name");
    let api_version = str_at(reference, "/apiVersion");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let (claim, object) = match (group, kind) {
        ("", "Pod") => {
            let pod = state
                .get(&storage("pods"), namespace, name)
                .ok_or_else(|| not_found("pods", name))?;
            // why: kube-apiserver's ServiceAccount admission sets `default` when unset.
            let runs_as = Some(str_at(pod, "/spec/serviceAccountName"))
                .filter(|s| !s.is_empty())
                .unwrap_or("default");
            if runs_as != service_account {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token for serviceaccount \"{service_account}\" to pod running with different serviceaccount name."
                )));
            }
            ("pod", pod)
        }
        ("", "Secret") => (
            "secret",
            state
                .get(&storage("secrets"), namespace, name)
                .ok_or_else(|| not_found("secrets", name))?,
        ),
        // why: devcluster has no Nodes, so a Node reference never resolves.
        ("", "Node") => return Err(not_found("nodes", name)),
        _ => {
            return Err(ApiError::bad_request(format!(
                "cannot bind token to object of type {group}/{version}, Kind={kind}"
            )))
        }
    };
    let uid = str_at(object, "/metadata/uid");
    let wanted_uid = str_at(reference, "/uid");
    if !wanted_uid.is_empty() && wanted_uid != uid {
        return Err(ApiError::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {kind} \"{name}\": the UID in the bound object reference ({wanted_uid}) does not match the UID in record. The object might have been deleted and then recreated"),
        )
        .with_details(json!({ "name": name, "kind": kind })));
    }
    Ok(Some(BoundObject {
        claim,
        name: name.to_string(),
        uid: uid.to_string(),
    }))
}

/// The claims of a token for ServiceAccount `namespace/name` as of `now`, and the TokenRequest
/// answer's `expirationTimestamp`.
pub(crate) fn mint_claims(
    state: &State,
    spec: &TokenSpec,
    namespace: &str,
    name: &str,
    now: DateTime<Utc>,
) -> Result<(Value, String), ApiError> {
    let service_account = require_service_account(state, namespace, name)?;
    let bound = bound_object(state, spec, namespace, name)?;
    let issued_at = now.timestamp();
    let expires_at = issued_at.saturating_add(spec.expiration_seconds);
    let mut kubernetes = json!({
        "namespace": namespace,
        "serviceaccount": { "name": name, "uid": str_at(service_account, "/metadata/uid") },
    });
    if let Some(bound) = bound {
        kubernetes[bound.claim] = json!({ "name": bound.name, "uid": bound.uid });
    }
    let claims = json!({
        "aud": spec.audiences,
        "exp": expires_at,
        "iat": issued_at,
        "iss": API_AUDIENCE,
        "jti": uuid::Uuid::new_v4().to_string(),
        "kubernetes.io": kubernetes,
        "nbf": issued_at,
        "sub": format!("{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"),
    });
    let expiration = now + chrono::Duration::seconds(spec.expiration_seconds);
    Ok((claims, timestamp(expiration)))
}

/// The TokenRequest answered with `token`.
pub(crate) fn token_request_answer(
    spec: &TokenSpec,
    namespace: &str,
    name: &str,
    now: DateTime<Utc>,
    token: String,
    expiration_timestamp: String,
) -> Value {
    let mut answer = json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "metadata": { "name": name, "namespace": namespace, "creationTimestamp": timestamp(now) },
        "spec": { "audiences": spec.audiences, "expirationSeconds": spec.expiration_seconds },
        "status": { "token": token, "expirationTimestamp": expiration_timestamp },
    });
    if let Some(reference) = &spec.bound_object_ref {
        answer["spec"]["boundObjectRef"] = reference.clone();
    }
    answer
}

/// The token's audiences: `aud` as a list or a single string.
pub(crate) fn audiences(claims: &Value) -> Vec<String> {
    match claims.get("aud") {
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Array(many)) => many
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether `claims` were issued by this API server's ServiceAccount token issuer.
pub(crate) fn issued_here(claims: &Value) -> bool {
    claims.get("iss").and_then(Value::as_str) == Some(API_AUDIENCE)
}

fn deleted_before(object: &Value, cutoff: DateTime<Utc>) -> bool {
    object
        .pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
        .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
        .is_some_and(|at| at < cutoff)
}

/// The user a verified token speaks for, or why it no longer does (kube-apiserver's words).
pub(crate) fn validate(
    state: &State,
    claims: &Value,
    now: DateTime<Utc>,
) -> Result<UserInfo, String> {
    let seconds = |claim: &str| claims.get(claim).and_then(Value::as_i64);
    let now_seconds = now.timestamp();
    if seconds("nbf").is_some_and(|nbf| now_seconds + LEEWAY_SECONDS < nbf) {
        return Err("service account token is not valid yet".into());
    }
    if seconds("exp").is_some_and(|exp| now_seconds - LEEWAY_SECONDS > exp) {
        return Err("service account token has expired".into());
    }
    let invalid_if_deleted_before = now - chrono::Duration::seconds(LEEWAY_SECONDS);
    let namespace = str_at(claims, "/kubernetes.io/namespace");
    let name = str_at(claims, "/kubernetes.io/serviceaccount/name");
    let claimed_uid = str_at(claims, "/kubernetes.io/serviceaccount/uid");
    let service_account = state
        .get(&storage("serviceaccounts"), namespace, name)
        .ok_or_else(|| format!("serviceaccounts \"{name}\" not found"))?;
    if deleted_before(service_account, invalid_if_deleted_before) {
        return Err(format!(
            "service account {namespace}/{name} has been deleted"
        ));
    }
    let uid = str_at(service_account, "/metadata/uid");
    if uid != claimed_uid {
        return Err(format!(
            "service account UID ({uid}) does not match claim ({claimed_uid})"
        ));
    }
    let mut extra = BTreeMap::new();
    for (claim, plural) in [("secret", "secrets"), ("pod", "pods")] {
        let Some(reference) = claims.pointer(&format!("/kubernetes.io/{claim}")) else {
            continue;
        };
        let bound_name = str_at(reference, "/name");
        let bound_uid = str_at(reference, "/uid");
        let object = state
            .get(&storage(plural), namespace, bound_name)
            .filter(|object| !deleted_before(object, invalid_if_deleted_before))
            .ok_or_else(|| "service account token has been invalidated".to_string())?;
        let uid = str_at(object, "/metadata/uid");
        if uid != bound_uid {
            return Err(format!(
                "{claim} UID ({uid}) does not match service account {claim} ref claim ({bound_uid})"
            ));
        }
        if claim == "pod" {
            extra.insert(POD_NAME_EXTRA.to_string(), vec![bound_name.to_string()]);
            extra.insert(POD_UID_EXTRA.to_string(), vec![bound_uid.to_string()]);
        }
    }
    if let Some(jti) = claims
        .get("jti")
        .and_then(Value::as_str)
        .filter(|j| !j.is_empty())
    {
        extra.insert(CREDENTIAL_ID_EXTRA.to_string(), vec![format!("JTI={jti}")]);
    }
    Ok(UserInfo {
        username: format!("{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"),
        uid: claimed_uid.to_string(),
        groups: service_account_groups(namespace),
        extra,
    })
}

#[cfg(test)]
#[path = "service_account_tests.rs"]
mod tests;
