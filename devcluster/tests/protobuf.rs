//! Decoding the protobuf bodies typed client-go clients send, without a server: the kinds that
//! are answered rather than stored (token and access reviews, TokenRequest), what Go's
//! marshaller writes that JSON leaves out, and what is refused.

#[path = "support/protobuf.rs"]
mod protobuf;

use devcluster::protobuf::{decode, is_protobuf};
use k8s_pb::api::authentication::v1 as authentication;
use k8s_pb::api::authorization::v1 as authorization;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use protobuf::{envelope, meta, s};
use serde_json::json;

#[test]
fn token_requests_decode_audiences_expiry_and_bound_object() {
    let request = authentication::TokenRequest {
        metadata: meta("builder", "team-a"),
        spec: Some(authentication::TokenRequestSpec {
            audiences: vec!["https://kubernetes.default.svc".into()],
            expiration_seconds: Some(600),
            bound_object_ref: Some(authentication::BoundObjectReference {
                kind: s("Pod"),
                api_version: s("v1"),
                name: s("web-0"),
                u_id: s("4f1c"),
            }),
        }),
        status: None,
    };
    let decoded = decode(&envelope(
        "authentication.k8s.io/v1",
        "TokenRequest",
        &request,
    ))
    .expect("decodes");
    assert_eq!(
        decoded,
        json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "metadata": {"name": "builder", "namespace": "team-a"},
            "spec": {
                "audiences": ["https://kubernetes.default.svc"],
                "expirationSeconds": 600,
                "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web-0", "uid": "4f1c"},
            },
        })
    );
}

#[test]
fn token_reviews_and_self_subject_reviews_decode() {
    let review = authentication::TokenReview {
        metadata: Some(ObjectMeta::default()),
        spec: Some(authentication::TokenReviewSpec {
            token: s("abc.def.ghi"),
            audiences: vec!["api".into()],
        }),
        status: Some(authentication::TokenReviewStatus::default()),
    };
    let decoded = decode(&envelope(
        "authentication.k8s.io/v1",
        "TokenReview",
        &review,
    ))
    .expect("decodes");
    assert_eq!(
        decoded["spec"],
        json!({"token": "abc.def.ghi", "audiences": ["api"]})
    );
    let whoami = authentication::SelfSubjectReview {
        metadata: Some(ObjectMeta::default()),
        status: Some(authentication::SelfSubjectReviewStatus::default()),
    };
    let decoded = decode(&envelope(
        "authentication.k8s.io/v1",
        "SelfSubjectReview",
        &whoami,
    ))
    .expect("decodes");
    assert_eq!(decoded["kind"], "SelfSubjectReview");
    assert_eq!(decoded["metadata"], json!({}));
}

#[test]
fn access_reviews_decode_attributes_and_extra_values_as_lists() {
    let attributes = authorization::ResourceAttributes {
        namespace: s("team-a"),
        verb: s("create"),
        group: s("keywarden.io"),
        resource: s("accesskeys"),
        ..Default::default()
    };
    let review = authorization::SubjectAccessReview {
        metadata: Some(ObjectMeta::default()),
        spec: Some(authorization::SubjectAccessReviewSpec {
            resource_attributes: Some(attributes.clone()),
            user: s("bob"),
            groups: vec!["team-a".into()],
            extra: [(
                "scopes".to_string(),
                authorization::ExtraValue {
                    items: vec!["read".into(), "write".into()],
                },
            )]
            .into(),
            ..Default::default()
        }),
        status: None,
    };
    let decoded = decode(&envelope(
        "authorization.k8s.io/v1",
        "SubjectAccessReview",
        &review,
    ))
    .expect("decodes");
    assert_eq!(
        decoded["spec"],
        json!({
            "resourceAttributes": {
                "namespace": "team-a", "verb": "create", "group": "keywarden.io", "resource": "accesskeys",
            },
            "user": "bob",
            "groups": ["team-a"],
            "extra": {"scopes": ["read", "write"]},
        })
    );

    let self_review = authorization::SelfSubjectAccessReview {
        metadata: Some(ObjectMeta::default()),
        spec: Some(authorization::SelfSubjectAccessReviewSpec {
            resource_attributes: None,
            non_resource_attributes: Some(authorization::NonResourceAttributes {
                path: s("/healthz"),
                verb: s("get"),
            }),
        }),
        status: None,
    };
    let decoded = decode(&envelope(
        "authorization.k8s.io/v1",
        "SelfSubjectAccessReview",
        &self_review,
    ))
    .expect("decodes");
    assert_eq!(
        decoded["spec"],
        json!({"nonResourceAttributes": {"path": "/healthz", "verb": "get"}})
    );

    let local = authorization::LocalSubjectAccessReview {
        metadata: meta("", "team-a"),
        spec: Some(authorization::SubjectAccessReviewSpec {
            resource_attributes: Some(attributes),
            user: s("bob"),
            ..Default::default()
        }),
        status: None,
    };
    let decoded = decode(&envelope(
        "authorization.k8s.io/v1",
        "LocalSubjectAccessReview",
        &local,
    ))
    .expect("decodes");
    assert_eq!(decoded["metadata"], json!({"namespace": "team-a"}));
    assert_eq!(decoded["spec"]["user"], "bob");

    let rules = authorization::SelfSubjectRulesReview {
        metadata: Some(ObjectMeta::default()),
        spec: Some(authorization::SelfSubjectRulesReviewSpec {
            namespace: s("team-a"),
        }),
        status: None,
    };
    let decoded = decode(&envelope(
        "authorization.k8s.io/v1",
        "SelfSubjectRulesReview",
        &rules,
    ))
    .expect("decodes");
    assert_eq!(decoded["spec"], json!({"namespace": "team-a"}));
}

#[test]
fn empty_strings_and_zero_times_that_go_always_writes_are_left_out() {
    // why: Go's generated marshaller writes every non-pointer field, empty or not.
    let secret = core::Secret {
        metadata: Some(ObjectMeta {
            name: s("creds"),
            generate_name: s(""),
            namespace: s(""),
            resource_version: s(""),
            generation: Some(0),
            creation_timestamp: Some(Time::default()),
            ..Default::default()
        }),
        r#type: s(""),
        ..Default::default()
    };
    let decoded = decode(&envelope("v1", "Secret", &secret)).expect("decodes");
    assert_eq!(
        decoded,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"}})
    );
}

#[test]
fn kinds_without_a_descriptor_are_refused_with_a_message() {
    let crd = decode(&envelope(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        &core::Secret::default(),
    ))
    .expect_err("CRDs are not decoded from protobuf");
    assert_eq!(
        crd.0,
        "the object provided is unrecognized: devcluster does not decode protobuf for apiextensions.k8s.io/v1, Kind=CustomResourceDefinition; send JSON"
    );
    let unknown = decode(&envelope("v1", "Gadget", &core::Secret::default()))
        .expect_err("unknown kinds are refused");
    assert!(unknown.0.contains("Kind=Gadget"), "{}", unknown.0);
    let custom = decode(&envelope(
        "apps.example.com/v1",
        "Deployment",
        &core::Secret::default(),
    ))
    .expect_err("custom resources are never decoded as built-in kinds");
    assert!(
        custom.0.contains("apps.example.com/v1, Kind=Deployment"),
        "{}",
        custom.0
    );
}

#[test]
fn garbage_after_the_magic_is_malformed() {
    let truncated = decode(b"k8s\0\x0a\x05ab").expect_err("truncated");
    assert!(
        truncated
            .0
            .starts_with("the object provided is unrecognized: malformed protobuf"),
        "{}",
        truncated.0
    );
    assert!(!is_protobuf(br#"{"kind":"Secret"}"#));
}
