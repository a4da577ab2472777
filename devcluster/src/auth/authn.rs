//! Authentication: static bearer tokens, ServiceAccount tokens (TokenRequest, TokenReview),
//! impersonation and SelfSubjectReview.

use ::http::HeaderMap;
use serde_json::Value;

use super::UserInfo;
use crate::server::{Call, Server};
use crate::status::ApiError;

/// Turns a request's credentials into the user it speaks for.
#[derive(Default)]
pub struct Authenticator {}

impl Authenticator {
    pub fn new() -> Self {
        Self {}
    }
}

/// The user a request speaks for: its credentials, then its impersonation headers.
///
/// Invalid credentials are a 401; a request without any is `system:anonymous`.
pub(crate) fn authenticate(_server: &Server, _headers: &HeaderMap) -> Result<UserInfo, ApiError> {
    Ok(UserInfo::admin())
}

/// `create` on `authentication.k8s.io/v1` TokenReview.
pub(crate) fn token_review(
    _server: &Server,
    _call: &Call,
    _body: &Value,
) -> Result<Value, ApiError> {
    Err(ApiError::internal("TokenReview is not implemented yet"))
}

/// `create` on `authentication.k8s.io/v1` SelfSubjectReview.
pub(crate) fn self_subject_review(_call: &Call) -> Result<Value, ApiError> {
    Err(ApiError::internal(
        "SelfSubjectReview is not implemented yet",
    ))
}

/// `create` on `serviceaccounts/<name>/token` (TokenRequest).
pub(crate) fn token_request(
    _server: &Server,
    _call: &Call,
    _body: &Value,
) -> Result<Value, ApiError> {
    Err(ApiError::internal("TokenRequest is not implemented yet"))
}
