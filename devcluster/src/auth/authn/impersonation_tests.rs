use std::sync::Mutex;

use ::http::{HeaderName, HeaderValue};

use super::*;
use crate::auth::Decision;

/// Records every check and refuses the `(resource, name)` pairs it was given.
#[derive(Default)]
struct Recording {
    refuse: Vec<(&'static str, &'static str)>,
    asked: Mutex<Vec<Attributes>>,
}

impl Authorizer for Recording {
    fn authorize(&self, attributes: &Attributes) -> Decision {
        if let Ok(mut asked) = self.asked.lock() {
            asked.push(attributes.clone());
        }
        let refused = self
            .refuse
            .iter()
            .any(|(resource, name)| attributes.resource == *resource && attributes.name == *name);
        if refused {
            Decision::NoOpinion("".into())
        } else {
            Decision::Allow("".into())
        }
    }
}

impl Recording {
    fn refusing(refuse: &[(&'static str, &'static str)]) -> Self {
        Self {
            refuse: refuse.to_vec(),
            ..Self::default()
        }
    }

    /// `(verb, group, version, resource, subresource, namespace, name)` of every check.
    fn checks(&self) -> Vec<(String, String, String, String, String, String, String)> {
        self.asked
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|a| {
                (
                    a.verb.clone(),
                    a.api_group.clone(),
                    a.api_version.clone(),
                    a.resource.clone(),
                    a.subresource.clone(),
                    a.namespace.clone(),
                    a.name.clone(),
                )
            })
            .collect()
    }
}

fn check(
    group: &str,
    version: &str,
    resource: &str,
    subresource: &str,
    namespace: &str,
    name: &str,
) -> (String, String, String, String, String, String, String) {
    (
        "impersonate".into(),
        group.into(),
        version.into(),
        resource.into(),
        subresource.into(),
        namespace.into(),
        name.into(),
    )
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(value).expect("header value"),
        );
    }
    headers
}

fn bob() -> UserInfo {
    UserInfo {
        username: "bob".into(),
        groups: vec!["ops".into(), AUTHENTICATED_GROUP.into()],
        ..UserInfo::default()
    }
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

#[test]
fn without_impersonation_headers_the_requester_is_kept_and_nothing_is_checked() {
    let authorizer = Recording::default();
    let user = impersonate(
        bob(),
        &headers(&[("authorization", "Bearer x")]),
        &authorizer,
    );
    assert_eq!(user, Ok(bob()));
    assert!(authorizer.checks().is_empty());
}

#[test]
fn impersonating_a_user_with_groups_checks_each_and_adds_system_authenticated() {
    let authorizer = Recording::default();
    let user = impersonate(
        bob(),
        &headers(&[
            ("Impersonate-User", "alice"),
            ("Impersonate-Group", "team-a"),
            ("Impersonate-Group", "team-b"),
        ]),
        &authorizer,
    )
    .expect("allowed");
    assert_eq!(user.username, "alice");
    assert_eq!(
        user.groups,
        strings(&["team-a", "team-b", AUTHENTICATED_GROUP])
    );
    assert_eq!(user.uid, "");
    assert!(user.extra.is_empty());
    assert_eq!(
        authorizer.checks(),
        vec![
            check("", "", "users", "", "", "alice"),
            check("", "", "groups", "", "", "team-a"),
            check("", "", "groups", "", "", "team-b"),
        ]
    );
    let asked = authorizer.asked.lock().expect("not poisoned");
    assert!(asked
        .iter()
        .all(|a| a.user.username == "bob" && a.resource_request));
}

#[test]
fn impersonating_a_service_account_checks_serviceaccounts_in_its_namespace() {
    let authorizer = Recording::default();
    let user = impersonate(
        bob(),
        &headers(&[("Impersonate-User", "system:serviceaccount:team-a:builder")]),
        &authorizer,
    )
    .expect("allowed");
    assert_eq!(user.username, "system:serviceaccount:team-a:builder");
    assert_eq!(
        user.groups,
        strings(&[
            "system:serviceaccounts",
            "system:serviceaccounts:team-a",
            AUTHENTICATED_GROUP
        ])
    );
    assert_eq!(
        authorizer.checks(),
        vec![check("", "", "serviceaccounts", "", "team-a", "builder")]
    );
}

#[test]
fn explicit_groups_replace_a_service_accounts_groups() {
    let user = impersonate(
        bob(),
        &headers(&[
            ("Impersonate-User", "system:serviceaccount:team-a:builder"),
            ("Impersonate-Group", "deployers"),
        ]),
        &Recording::default(),
    )
    .expect("allowed");
    assert_eq!(user.groups, strings(&["deployers", AUTHENTICATED_GROUP]));
}

#[test]
fn a_malformed_service_account_name_is_impersonated_as_a_plain_user() {
    let authorizer = Recording::default();
    let user = impersonate(
        bob(),
        &headers(&[("Impersonate-User", "system:serviceaccount:Team_A:builder")]),
        &authorizer,
    )
    .expect("allowed");
    assert_eq!(user.groups, strings(&[AUTHENTICATED_GROUP]));
    assert_eq!(
        authorizer.checks(),
        vec![check(
            "",
            "",
            "users",
            "",
            "",
            "system:serviceaccount:Team_A:builder"
        )]
    );
}

#[test]
fn impersonating_anonymous_adds_system_unauthenticated() {
    let user = impersonate(
        bob(),
        &headers(&[("Impersonate-User", "system:anonymous")]),
        &Recording::default(),
    )
    .expect("allowed");
    assert_eq!(user.username, "system:anonymous");
    assert_eq!(user.groups, strings(&[UNAUTHENTICATED_GROUP]));
}

#[test]
fn an_explicit_system_unauthenticated_group_is_not_joined_by_system_authenticated() {
    let user = impersonate(
        bob(),
        &headers(&[
            ("Impersonate-User", "alice"),
            ("Impersonate-Group", UNAUTHENTICATED_GROUP),
        ]),
        &Recording::default(),
    )
    .expect("allowed");
    assert_eq!(user.groups, strings(&[UNAUTHENTICATED_GROUP]));
}

#[test]
fn extras_and_uid_are_checked_as_userextras_and_uids_in_authentication_k8s_io() {
    let authorizer = Recording::default();
    let user = impersonate(
        bob(),
        &headers(&[
            ("Impersonate-User", "alice"),
            ("Impersonate-Uid", "alice-uid"),
            ("Impersonate-Extra-Example.org%2FScopes", "read"),
            ("Impersonate-Extra-Example.org%2FScopes", "write"),
        ]),
        &authorizer,
    )
    .expect("allowed");
    assert_eq!(user.uid, "alice-uid");
    assert_eq!(
        user.extra,
        BTreeMap::from([(
            "example.org/scopes".to_string(),
            strings(&["read", "write"])
        )])
    );
    let group = "authentication.k8s.io";
    assert_eq!(
        authorizer.checks(),
        vec![
            check("", "", "users", "", "", "alice"),
            check(group, "v1", "userextras", "example.org/scopes", "", "read"),
            check(group, "v1", "userextras", "example.org/scopes", "", "write"),
            check(group, "v1", "uids", "", "", "alice-uid"),
        ]
    );
}

#[test]
fn groups_without_a_user_are_a_bad_request() {
    let err = impersonate(
        bob(),
        &headers(&[("Impersonate-Group", "team-a"), ("Impersonate-Uid", "u-1")]),
        &Recording::default(),
    )
    .expect_err("refused");
    assert_eq!((err.code, err.reason), (400, "BadRequest"));
    assert_eq!(
        err.message,
        "requested [{Group  team-a    } {UID  u-1  authentication.k8s.io/v1  }] without impersonating a user"
    );
}

#[test]
fn a_refused_group_is_a_403_for_that_group_and_stops_further_checks() {
    let authorizer = Recording::refusing(&[("groups", "system:masters")]);
    let err = impersonate(
        bob(),
        &headers(&[
            ("Impersonate-User", "alice"),
            ("Impersonate-Group", "system:masters"),
            ("Impersonate-Group", "team-b"),
        ]),
        &authorizer,
    )
    .expect_err("refused");
    let requester = Arc::new(bob());
    let refused = Request::Group("system:masters".into()).attributes(&requester);
    assert_eq!((err.code, err.reason), (403, "Forbidden"));
    assert_eq!(
        err,
        crate::auth::rbac::forbidden(&refused, &Decision::NoOpinion("".into()))
    );
    assert_eq!(authorizer.checks().len(), 2, "stops at the refused group");
}

#[test]
fn a_refused_user_is_a_403_before_any_group_is_checked() {
    let authorizer = Recording::refusing(&[("users", "alice")]);
    let err = impersonate(
        bob(),
        &headers(&[("Impersonate-User", "alice"), ("Impersonate-Group", "g")]),
        &authorizer,
    )
    .expect_err("refused");
    let refused = Request::User("alice".into()).attributes(&Arc::new(bob()));
    assert_eq!(
        err,
        crate::auth::rbac::forbidden(&refused, &Decision::NoOpinion("".into()))
    );
    assert_eq!(authorizer.checks().len(), 1);
}

#[test]
fn a_malformed_extra_key_escape_is_kept_as_sent() {
    assert_eq!(path_unescape("a%2Fb"), "a/b");
    assert_eq!(path_unescape("a%zzb"), "a%zzb");
    assert_eq!(path_unescape("a+b"), "a+b");
}
