//! TokenReview and SelfSubjectReview (`authentication.k8s.io/v1`), answered as
//! kube-apiserver's `pkg/registry/authentication` does.

use chrono::{SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use super::API_AUDIENCE;
use crate::auth::UserInfo;
use crate::server::{Call, Server};
use crate::status::ApiError;

/// `UserInfo` as the `authentication.k8s.io/v1` kinds serialize it (empty fields omitted).
fn user_info_json(user: &UserInfo) -> Value {
    let mut info = Map::new();
    if !user.username.is_empty() {
        info.insert("username".into(), json!(user.username));
    }
    if !user.uid.is_empty() {
        info.insert("uid".into(), json!(user.uid));
    }
    if !user.groups.is_empty() {
        info.insert("groups".into(), json!(user.groups));
    }
    if !user.extra.is_empty() {
        info.insert("extra".into(), json!(user.extra));
    }
    Value::Object(info)
}

/// `create` on TokenReview: whether `spec.token` authenticates for `spec.audiences` (the API
/// server's own when empty), and as whom.
pub(crate) fn token_review(server: &Server, _call: &Call, body: &Value) -> Result<Value, ApiError> {
    let token = body
        .pointer("/spec/token")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if token.is_empty() {
        return Err(ApiError::bad_request(
            "token is required for TokenReview in authentication",
        ));
    }
    let requested: Vec<&str> = body
        .pointer("/spec/audiences")
        .and_then(Value::as_array)
        .map(|auds| auds.iter().filter_map(Value::as_str).collect())
        .filter(|auds: &Vec<&str>| !auds.is_empty())
        .unwrap_or_else(|| vec![API_AUDIENCE]);
    let status = match server
        .authenticator
        .authenticate_token(&server.store, token, &requested)
    {
        Ok(authenticated) => json!({
            "authenticated": true,
            "user": user_info_json(&authenticated.user),
            "audiences": authenticated.audiences,
        }),
        Err(failure) => json!({ "user": {}, "error": failure.message() }),
    };
    Ok(json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "metadata": { "creationTimestamp": null },
        "spec": body.get("spec").cloned().unwrap_or_else(|| json!({})),
        "status": status,
    }))
}

/// `create` on SelfSubjectReview: who the requester is (after impersonation).
pub(crate) fn self_subject_review(call: &Call) -> Result<Value, ApiError> {
    Ok(json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "SelfSubjectReview",
        "metadata": {
            "creationTimestamp": Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        },
        "status": { "userInfo": user_info_json(&call.user) },
    }))
}
