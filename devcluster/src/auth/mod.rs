//! Who is asking and whether they may: authentication (static tokens, ServiceAccount tokens,
//! impersonation), RBAC authorization and the access-review APIs, as kube-apiserver does them.
//!
//! The request pipeline (`server::Server::handle`) authenticates every request to a
//! [`UserInfo`], then asks the [`Authorizer`] about its [`Attributes`]; admission (see
//! `crate::admission`) receives the same user and authorizer.

pub mod authn;
pub mod rbac;

use std::collections::BTreeMap;
use std::sync::Arc;

/// The admin identity of the kubeconfig devcluster writes, named as kubeadm names it.
pub const ADMIN_USER: &str = "kubernetes-admin";
/// The group that every authorizer allows, as kube-apiserver's `system:masters`.
pub const MASTERS_GROUP: &str = "system:masters";
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";
pub const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";
pub const ANONYMOUS_USER: &str = "system:anonymous";
pub const SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";
/// The prefix of a ServiceAccount's username: `system:serviceaccount:<namespace>:<name>`.
pub const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// Who is asking: kube-apiserver's `user.Info`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserInfo {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// The admin of the written kubeconfig (`kubernetes-admin`, groups `system:masters` and
    /// `system:authenticated`).
    pub fn admin() -> Self {
        Self {
            username: ADMIN_USER.into(),
            uid: String::new(),
            groups: vec![MASTERS_GROUP.into(), AUTHENTICATED_GROUP.into()],
            extra: BTreeMap::new(),
        }
    }

    /// A request without credentials.
    pub fn anonymous() -> Self {
        Self {
            username: ANONYMOUS_USER.into(),
            uid: String::new(),
            groups: vec![UNAUTHENTICATED_GROUP.into()],
            extra: BTreeMap::new(),
        }
    }

    /// `(namespace, name)` when this is a ServiceAccount's username.
    pub fn service_account(&self) -> Option<(&str, &str)> {
        let rest = self.username.strip_prefix(SERVICE_ACCOUNT_PREFIX)?;
        let (namespace, name) = rest.split_once(':')?;
        (!namespace.is_empty() && !name.is_empty() && !name.contains(':'))
            .then_some((namespace, name))
    }
}

/// What is asked: kube-apiserver's `authorizer.Attributes`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    pub user: Arc<UserInfo>,
    /// For resource requests: get, list, watch, create, update, patch, delete,
    /// deletecollection, or a custom verb (`impersonate`, `bind`, `escalate`, `manage`, ...).
    /// For non-resource requests: the lower-cased HTTP method (get, post, put, ...).
    pub verb: String,
    pub resource_request: bool,
    pub api_group: String,
    pub api_version: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// The request path, for non-resource requests.
    pub path: String,
}

/// An authorizer's answer: kube-apiserver's `authorizer.Decision` plus its reason.
///
/// why: the reason is shared rather than formatted per request: RBAC words one per binding
/// subject when the binding is indexed, and most requests never read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow(Arc<str>),
    Deny(Arc<str>),
    NoOpinion(Arc<str>),
}

impl Decision {
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }

    pub fn reason(&self) -> &str {
        match self {
            Decision::Allow(reason) | Decision::Deny(reason) | Decision::NoOpinion(reason) => {
                reason
            }
        }
    }
}

/// Answers whether a request may proceed.
///
/// Implementations must never take the store lock: admission calls them while holding it.
pub trait Authorizer: Send + Sync {
    fn authorize(&self, attributes: &Attributes) -> Decision;
}

/// Allows everything: the baseline `devcluster bench` compares RBAC against.
pub struct AlwaysAllow;

impl Authorizer for AlwaysAllow {
    fn authorize(&self, _: &Attributes) -> Decision {
        Decision::Allow("".into())
    }
}

/// How requests are authorized.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuthorizationMode {
    /// RBAC, with `system:masters` always allowed (kube-apiserver's `--authorization-mode=RBAC`).
    #[default]
    Rbac,
    /// Every authenticated or anonymous request is allowed (a baseline for benchmarks).
    AlwaysAllow,
}

/// Answers `create` on the kinds that are computed per request and never stored (token and
/// access reviews, TokenRequest); `None` for every other resource.
pub(crate) fn answer_review(
    server: &crate::server::Server,
    call: &crate::server::Call,
    body: &[u8],
) -> Option<Result<serde_json::Value, crate::status::ApiError>> {
    let is_review = matches!(
        (call.rt.group.as_str(), call.rt.plural.as_str()),
        (
            "authentication.k8s.io",
            "tokenreviews" | "selfsubjectreviews"
        ) | (
            "authorization.k8s.io",
            "selfsubjectaccessreviews"
                | "subjectaccessreviews"
                | "localsubjectaccessreviews"
                | "selfsubjectrulesreviews"
        )
    );
    let is_token_request = call.rt.group.is_empty()
        && call.rt.plural == "serviceaccounts"
        && call.subresource.as_deref() == Some("token");
    if !is_review && !is_token_request {
        return None;
    }
    // why: a SelfSubjectReview carries nothing to read; kubectl sends it as protobuf.
    if call.rt.plural == "selfsubjectreviews" {
        return Some(authn::self_subject_review(call));
    }
    let body = match crate::server::http::parse_body(body) {
        Ok(body) => body,
        Err(err) => return Some(Err(err)),
    };
    Some(match call.rt.plural.as_str() {
        "serviceaccounts" => authn::token_request(server, call, &body),
        "tokenreviews" => authn::token_review(server, call, &body),
        _ => rbac::access_review(server, call, &body),
    })
}
