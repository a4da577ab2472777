//! Authentication: static bearer tokens, ServiceAccount tokens (TokenRequest, TokenReview),
//! impersonation and SelfSubjectReview.
//!
//! As kube-apiserver with `--token-auth-file`, its default ServiceAccount token issuer and
//! anonymous authentication on: a request without credentials is `system:anonymous`, a bearer
//! token nobody issued is a 401, every authenticated user is in `system:authenticated`.

mod clock;
mod impersonation;
mod jwt;
mod reviews;
mod service_account;
pub mod token_file;

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use ::http::HeaderMap;
use serde_json::Value;

use super::{UserInfo, ANONYMOUS_USER, AUTHENTICATED_GROUP, UNAUTHENTICATED_GROUP};
use crate::server::{Call, Server};
use crate::status::ApiError;
use crate::store::Store;

pub use clock::Clock;
pub use jwt::SigningKeyError;
pub(crate) use reviews::{self_subject_review, token_review};
pub use service_account::API_AUDIENCE;
pub use token_file::{StaticToken, TokenFileError};

/// Turns a request's credentials into the user it speaks for.
pub struct Authenticator {
    tokens: RwLock<StaticTokens>,
    signer: jwt::Signer,
    clock: Clock,
}

/// The static bearer tokens, and the first token of each user in the order users were added
/// (for the kubeconfig).
#[derive(Default)]
struct StaticTokens {
    by_token: HashMap<String, Arc<UserInfo>>,
    first_token_of: Vec<(String, String)>,
}

/// A token that authenticated: who it speaks for and for which of the requested audiences.
pub(crate) struct Authenticated {
    pub user: UserInfo,
    pub audiences: Vec<String>,
}

/// Why a bearer token did not authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenFailure {
    /// No authenticator knows the token.
    NotRecognized,
    /// A ServiceAccount token that no longer (or never did) hold, and why.
    Rejected(String),
}

impl TokenFailure {
    /// The error kube-apiserver's authenticator chain reports (TokenReview's `status.error`).
    pub(crate) fn message(&self) -> String {
        match self {
            TokenFailure::NotRecognized => "invalid bearer token".into(),
            TokenFailure::Rejected(why) => format!("[invalid bearer token, {why}]"),
        }
    }
}

impl Authenticator {
    /// An authenticator knowing `tokens`, with a fresh ServiceAccount token signing key.
    pub fn new(clock: Clock, tokens: Vec<StaticToken>) -> Result<Self, SigningKeyError> {
        let authenticator = Self {
            tokens: RwLock::default(),
            signer: jwt::Signer::generate()?,
            clock,
        };
        for token in tokens {
            authenticator.add_token(token);
        }
        Ok(authenticator)
    }

    fn read_tokens(&self) -> RwLockReadGuard<'_, StaticTokens> {
        self.tokens.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_tokens(&self) -> RwLockWriteGuard<'_, StaticTokens> {
        self.tokens.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Accepts `token.token` as `token.user` from now on (replacing an earlier holder).
    pub fn add_token(&self, token: StaticToken) {
        let mut tokens = self.write_tokens();
        let username = token.user.username.clone();
        if !tokens
            .first_token_of
            .iter()
            .any(|(user, _)| *user == username)
        {
            tokens.first_token_of.push((username, token.token.clone()));
        }
        tokens.by_token.insert(token.token, Arc::new(token.user));
    }

    /// The first token added for `username`.
    pub fn token_of(&self, username: &str) -> Option<String> {
        self.read_tokens()
            .first_token_of
            .iter()
            .find(|(user, _)| user == username)
            .map(|(_, token)| token.clone())
    }

    /// `(username, token)` of every user with a static token, in the order they were added.
    pub fn users(&self) -> Vec<(String, String)> {
        self.read_tokens().first_token_of.clone()
    }

    /// The clock ServiceAccount tokens are minted and checked against.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Authenticates a bearer token for `audiences` (the API server's own by default).
    pub(crate) fn authenticate_token(
        &self,
        store: &Store,
        token: &str,
        audiences: &[&str],
    ) -> Result<Authenticated, TokenFailure> {
        if let Some(user) = self.read_tokens().by_token.get(token).cloned() {
            // why: static tokens are audience-agnostic: they only count for the API server.
            if audiences.contains(&API_AUDIENCE) {
                return Ok(Authenticated {
                    user: with_authenticated_group((*user).clone()),
                    audiences: vec![API_AUDIENCE.to_string()],
                });
            }
        }
        let claims = match self.signer.already_verified(token) {
            Some(claims) => claims,
            None => {
                let issued_here = jwt::unverified_claims(token)
                    .as_ref()
                    .is_some_and(service_account::issued_here);
                if !issued_here {
                    return Err(TokenFailure::NotRecognized);
                }
                self.signer
                    .verify(token)
                    .map_err(|err| TokenFailure::Rejected(err.to_string()))?
            }
        };
        let mut token_audiences = service_account::audiences(&claims);
        if token_audiences.is_empty() {
            token_audiences = vec![API_AUDIENCE.to_string()];
        }
        let granted: Vec<String> = token_audiences
            .iter()
            .filter(|aud| audiences.contains(&aud.as_str()))
            .cloned()
            .collect();
        if granted.is_empty() {
            return Err(TokenFailure::Rejected(format!(
                "token audiences {} is invalid for the target audiences {}",
                go_quoted_list(token_audiences.iter().map(String::as_str)),
                go_quoted_list(audiences.iter().copied()),
            )));
        }
        let user = {
            let state = store.lock();
            service_account::validate(&state, &claims, self.clock.now())
        }
        .map_err(TokenFailure::Rejected)?;
        Ok(Authenticated {
            user: with_authenticated_group(user),
            audiences: granted,
        })
    }
}

/// Go's `%q` of a string slice: `["a" "b"]`.
fn go_quoted_list<'a>(values: impl Iterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = values.map(|v| Value::from(v).to_string()).collect();
    format!("[{}]", quoted.join(" "))
}

/// Adds `system:authenticated` as kube-apiserver's `AuthenticatedGroupAdder` does.
fn with_authenticated_group(mut user: UserInfo) -> UserInfo {
    let has_either = user
        .groups
        .iter()
        .any(|g| g == AUTHENTICATED_GROUP || g == UNAUTHENTICATED_GROUP);
    if user.username != ANONYMOUS_USER && !has_either {
        user.groups.push(AUTHENTICATED_GROUP.into());
    }
    user
}

/// The bearer token of an `Authorization` header, as kube-apiserver's `bearertoken` reads it
/// (scheme case-insensitive, an empty token is no token).
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let mut parts = value.splitn(3, ' ');
    let scheme = parts.next()?;
    let token = parts.next()?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The 401 kube-apiserver answers for credentials it does not accept.
fn unauthorized() -> ApiError {
    ApiError::new(401, "Unauthorized", "Unauthorized")
}

/// The user a request speaks for: its credentials, then its impersonation headers.
///
/// Invalid credentials are a 401; a request without any is `system:anonymous`.
pub(crate) fn authenticate(server: &Server, headers: &HeaderMap) -> Result<UserInfo, ApiError> {
    let user = match bearer_token(headers) {
        None => UserInfo::anonymous(),
        Some(token) => server
            .authenticator
            .authenticate_token(&server.store, token, &[API_AUDIENCE])
            .map_err(|failure| {
                tracing::debug!(error = %failure.message(), "Unable to authenticate the request");
                unauthorized()
            })?
            .user,
    };
    impersonation::impersonate(user, headers, server.authorizer.as_ref())
}

/// `create` on `serviceaccounts/<name>/token` (TokenRequest).
pub(crate) fn token_request(server: &Server, call: &Call, body: &Value) -> Result<Value, ApiError> {
    let name = call.name.as_deref().unwrap_or_default();
    let namespace = call.namespace.as_str();
    service_account::check_metadata(body, namespace, name)?;
    let now = server.authenticator.clock.now();
    let (spec, claims, expiration) = {
        let state = server.store.lock();
        service_account::require_service_account(&state, namespace, name)?;
        let spec = service_account::TokenSpec::from_request(body)?;
        let (claims, expiration) =
            service_account::mint_claims(&state, &spec, namespace, name, now)?;
        (spec, claims, expiration)
    };
    let token = server
        .authenticator
        .signer
        .sign(&claims)
        .map_err(|err| ApiError::internal(format!("failed to generate token: {err}")))?;
    Ok(service_account::token_request_answer(
        &spec, namespace, name, now, token, expiration,
    ))
}

#[cfg(test)]
mod tests {
    use ::http::HeaderValue;

    use super::*;

    fn authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            ::http::header::AUTHORIZATION,
            HeaderValue::from_str(value).expect("header value"),
        );
        headers
    }

    #[test]
    fn bearer_tokens_are_read_as_kube_apiserver_reads_them() {
        assert_eq!(bearer_token(&authorization("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(&authorization("bearer abc")), Some("abc"));
        assert_eq!(bearer_token(&authorization("  Bearer abc  ")), Some("abc"));
        assert_eq!(bearer_token(&authorization("Bearer  abc")), None);
        assert_eq!(bearer_token(&authorization("Bearer")), None);
        assert_eq!(bearer_token(&authorization("Basic YTpi")), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }

    #[test]
    fn authenticated_users_join_system_authenticated_once() {
        let alice = UserInfo {
            username: "alice".into(),
            groups: vec!["team-a".into()],
            ..UserInfo::default()
        };
        assert_eq!(
            with_authenticated_group(alice.clone()).groups,
            vec!["team-a", AUTHENTICATED_GROUP]
        );
        assert_eq!(
            with_authenticated_group(UserInfo::admin()).groups,
            UserInfo::admin().groups
        );
        assert_eq!(
            with_authenticated_group(UserInfo::anonymous()),
            UserInfo::anonymous()
        );
    }

    fn static_token(token: &str, username: &str) -> StaticToken {
        StaticToken {
            token: token.into(),
            user: UserInfo {
                username: username.into(),
                ..UserInfo::default()
            },
        }
    }

    #[test]
    fn a_static_token_authenticates_only_for_the_api_servers_audience() {
        let authenticator =
            Authenticator::new(Clock::default(), vec![static_token("t-alice", "alice")])
                .expect("key");
        let store = Store::new(10);
        let authenticated = authenticator
            .authenticate_token(&store, "t-alice", &[API_AUDIENCE])
            .map_err(|f| f.message())
            .expect("authenticates");
        assert_eq!(authenticated.user.username, "alice");
        assert_eq!(authenticated.user.groups, vec![AUTHENTICATED_GROUP]);
        assert_eq!(authenticated.audiences, vec![API_AUDIENCE]);
        let elsewhere = authenticator.authenticate_token(&store, "t-alice", &["vault"]);
        assert_eq!(elsewhere.err(), Some(TokenFailure::NotRecognized));
        let unknown = authenticator.authenticate_token(&store, "t-mallory", &[API_AUDIENCE]);
        assert_eq!(
            unknown.err().map(|f| f.message()),
            Some("invalid bearer token".to_string())
        );
    }

    #[test]
    fn the_kubeconfig_lists_each_user_once_with_their_first_token() {
        let authenticator = Authenticator::new(
            Clock::default(),
            vec![
                static_token("t1", "alice"),
                static_token("t2", "bob"),
                static_token("t3", "alice"),
            ],
        )
        .expect("key");
        assert_eq!(
            authenticator.users(),
            vec![
                ("alice".to_string(), "t1".to_string()),
                ("bob".to_string(), "t2".to_string())
            ]
        );
        assert_eq!(authenticator.token_of("bob").as_deref(), Some("t2"));
        assert_eq!(authenticator.token_of("carol"), None);
    }
}
