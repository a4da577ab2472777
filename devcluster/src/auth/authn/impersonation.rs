//! `Impersonate-User`, `-Group`, `-Uid` and `-Extra-*` headers, authorized and applied as
//! kube-apiserver's `WithImpersonation` filter does (`endpoints/filters/impersonation.go`).

use std::collections::BTreeMap;
use std::sync::Arc;

use ::http::HeaderMap;

use crate::auth::{
    Attributes, Authorizer, UserInfo, ANONYMOUS_USER, AUTHENTICATED_GROUP, SERVICE_ACCOUNTS_GROUP,
    SERVICE_ACCOUNT_PREFIX, UNAUTHENTICATED_GROUP,
};
use crate::status::ApiError;

const USER_HEADER: &str = "impersonate-user";
const GROUP_HEADER: &str = "impersonate-group";
const UID_HEADER: &str = "impersonate-uid";
const EXTRA_HEADER_PREFIX: &str = "impersonate-extra-";
/// The API group of the `userextras` and `uids` impersonation resources.
const AUTHENTICATION_GROUP: &str = "authentication.k8s.io";

/// One thing the requester asks to act as; each is authorized on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Request {
    User(String),
    ServiceAccount { namespace: String, name: String },
    Group(String),
    Extra { key: String, value: String },
    Uid(String),
}

impl Request {
    /// The `impersonate` check kube-apiserver makes for this request.
    fn attributes(&self, requester: &Arc<UserInfo>) -> Attributes {
        let (api_group, api_version, resource, subresource, namespace, name) = match self {
            Request::User(name) => ("", "", "users", "", "", name.as_str()),
            Request::ServiceAccount { namespace, name } => (
                "",
                "",
                "serviceaccounts",
                "",
                namespace.as_str(),
                name.as_str(),
            ),
            Request::Group(name) => ("", "", "groups", "", "", name.as_str()),
            Request::Extra { key, value } => (
                AUTHENTICATION_GROUP,
                "v1",
                "userextras",
                key.as_str(),
                "",
                value.as_str(),
            ),
            Request::Uid(uid) => (AUTHENTICATION_GROUP, "v1", "uids", "", "", uid.as_str()),
        };
        Attributes {
            user: requester.clone(),
            verb: "impersonate".into(),
            resource_request: true,
            api_group: api_group.into(),
            api_version: api_version.into(),
            resource: resource.into(),
            subresource: subresource.into(),
            namespace: namespace.into(),
            name: name.into(),
            path: String::new(),
        }
    }

    /// How Go prints the `v1.ObjectReference` kube-apiserver builds for this request (`%v`).
    fn go_object_reference(&self) -> String {
        let (kind, namespace, name, api_version, field_path) = match self {
            Request::User(name) => ("User", "", name.as_str(), "", ""),
            Request::ServiceAccount { namespace, name } => {
                ("ServiceAccount", namespace.as_str(), name.as_str(), "", "")
            }
            Request::Group(name) => ("Group", "", name.as_str(), "", ""),
            Request::Extra { key, value } => (
                "UserExtra",
                "",
                value.as_str(),
                "authentication.k8s.io/v1",
                key.as_str(),
            ),
            Request::Uid(uid) => ("UID", "", uid.as_str(), "authentication.k8s.io/v1", ""),
        };
        // Fields: Kind Namespace Name UID APIVersion ResourceVersion FieldPath.
        format!("{{{kind} {namespace} {name}  {api_version}  {field_path}}}")
    }
}

fn header_values<'a>(headers: &'a HeaderMap, name: &str) -> impl Iterator<Item = String> + 'a {
    headers
        .get_all(name)
        .iter()
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
}

fn first_header(headers: &HeaderMap, name: &str) -> Option<String> {
    header_values(headers, name)
        .next()
        .filter(|v| !v.is_empty())
}

/// What the impersonation headers ask for, in kube-apiserver's order; a 400 when groups, extras
/// or a uid come without a user.
fn requests(headers: &HeaderMap) -> Result<Vec<Request>, ApiError> {
    let mut requests = Vec::new();
    let user = first_header(headers, USER_HEADER);
    if let Some(user) = &user {
        requests.push(match split_service_account(user) {
            Some((namespace, name)) => Request::ServiceAccount {
                namespace: namespace.into(),
                name: name.into(),
            },
            None => Request::User(user.clone()),
        });
    }
    requests.extend(header_values(headers, GROUP_HEADER).map(Request::Group));
    for name in headers.keys() {
        let Some(encoded_key) = name.as_str().strip_prefix(EXTRA_HEADER_PREFIX) else {
            continue;
        };
        let key = path_unescape(encoded_key);
        requests.extend(
            header_values(headers, name.as_str()).map(|value| Request::Extra {
                key: key.clone(),
                value,
            }),
        );
    }
    if let Some(uid) = first_header(headers, UID_HEADER) {
        requests.push(Request::Uid(uid));
    }
    if user.is_none() && !requests.is_empty() {
        let printed: Vec<String> = requests.iter().map(Request::go_object_reference).collect();
        return Err(ApiError::bad_request(format!(
            "requested [{}] without impersonating a user",
            printed.join(" ")
        )));
    }
    Ok(requests)
}

/// The user `requester` acts as: itself without impersonation headers, else the impersonated
/// user once `authorizer` allows every part of it (a 403 naming the first part refused).
pub(crate) fn impersonate(
    requester: UserInfo,
    headers: &HeaderMap,
    authorizer: &dyn Authorizer,
) -> Result<UserInfo, ApiError> {
    let requests = requests(headers)?;
    if requests.is_empty() {
        return Ok(requester);
    }
    let groups_specified = headers.contains_key(GROUP_HEADER);
    let requester = Arc::new(requester);
    let mut username = String::new();
    let mut uid = String::new();
    let mut groups = Vec::new();
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for request in &requests {
        match request {
            Request::User(name) => username = name.clone(),
            Request::ServiceAccount { namespace, name } => {
                username = format!("{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}");
                if !groups_specified {
                    groups = service_account_groups(namespace);
                }
            }
            Request::Group(group) => groups.push(group.clone()),
            Request::Extra { key, value } => {
                extra.entry(key.clone()).or_default().push(value.clone())
            }
            Request::Uid(value) => uid = value.clone(),
        }
        let attributes = request.attributes(&requester);
        let decision = authorizer.authorize(&attributes);
        if !decision.allowed() {
            return Err(crate::auth::rbac::forbidden(&attributes, &decision));
        }
    }
    if username != ANONYMOUS_USER {
        let has_either = groups
            .iter()
            .any(|g| g == AUTHENTICATED_GROUP || g == UNAUTHENTICATED_GROUP);
        if !has_either {
            groups.push(AUTHENTICATED_GROUP.into());
        }
    } else if !groups.iter().any(|g| g == UNAUTHENTICATED_GROUP) {
        groups.push(UNAUTHENTICATED_GROUP.into());
    }
    Ok(UserInfo {
        username,
        uid,
        groups,
        extra,
    })
}

/// `system:serviceaccounts` and `system:serviceaccounts:<namespace>`.
pub(crate) fn service_account_groups(namespace: &str) -> Vec<String> {
    vec![
        SERVICE_ACCOUNTS_GROUP.into(),
        format!("{SERVICE_ACCOUNTS_GROUP}:{namespace}"),
    ]
}

/// `(namespace, name)` of `system:serviceaccount:<namespace>:<name>` when both are valid names
/// (kube-apiserver's `serviceaccount.SplitUsername`).
fn split_service_account(username: &str) -> Option<(&str, &str)> {
    let rest = username.strip_prefix(SERVICE_ACCOUNT_PREFIX)?;
    let (namespace, name) = rest.split_once(':')?;
    (is_dns_label(namespace) && !name.contains(':') && is_dns_subdomain(name))
        .then_some((namespace, name))
}

fn is_dns_label(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

fn is_dns_subdomain(value: &str) -> bool {
    value.len() <= 253 && value.split('.').all(is_dns_label)
}

/// Go's `url.PathUnescape`, keeping the raw text when an escape is malformed.
fn path_unescape(encoded: &str) -> String {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let byte = bytes
                .get(at + 1..at + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok());
            let Some(byte) = byte else {
                return encoded.to_string();
            };
            out.push(byte);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| encoded.to_string())
}

#[cfg(test)]
#[path = "impersonation_tests.rs"]
mod tests;
