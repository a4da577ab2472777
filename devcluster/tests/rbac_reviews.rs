//! The access-review APIs answered by the same RBAC evaluation as requests.

#[path = "support/identities.rs"]
mod identities;

use devcluster::DevCluster;
use identities::*;
use k8s_openapi::api::authorization::v1::{
    LocalSubjectAccessReview, NonResourceAttributes, ResourceAttributes, SelfSubjectAccessReview,
    SelfSubjectAccessReviewSpec, SelfSubjectRulesReview, SelfSubjectRulesReviewSpec,
    SubjectAccessReview, SubjectAccessReviewSpec, SubjectAccessReviewStatus,
};
use kube::api::{Api, PostParams};
use kube::core::ObjectMeta;

fn attributes(verb: &str, group: &str, resource: &str, namespace: &str) -> ResourceAttributes {
    ResourceAttributes {
        verb: Some(verb.into()),
        group: Some(group.into()),
        resource: Some(resource.into()),
        namespace: Some(namespace.into()),
        ..ResourceAttributes::default()
    }
}

async fn can_i(client: &kube::Client, attributes: ResourceAttributes) -> SubjectAccessReviewStatus {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(attributes),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("review answered")
        .status
        .expect("status")
}

/// Bob may `manage` AccessKeys in team-a (a custom verb) and get the ConfigMap `settings`.
async fn bob_manages_keys_in_team_a(cluster: &DevCluster) -> kube::Client {
    let admin = cluster.client().unwrap();
    create_namespace(&admin, "team-a").await;
    grant(
        &admin,
        "team-a",
        "key-manager",
        vec![
            rule(&["keywarden.io"], &["accesskeys"], &["manage"]),
            named_rule(&[""], &["configmaps"], &["settings"], &["get"]),
        ],
        vec![user("bob")],
    )
    .await;
    client_as(cluster, "bob", &[]).await
}

#[tokio::test]
async fn self_subject_access_review_answers_for_the_requester() {
    let cluster = DevCluster::start().await.unwrap();
    let bob = bob_manages_keys_in_team_a(&cluster).await;

    let manage = can_i(
        &bob,
        attributes("manage", "keywarden.io", "accesskeys", "team-a"),
    )
    .await;
    assert!(manage.allowed);
    assert_eq!(
        manage.reason.as_deref(),
        Some("RBAC: allowed by RoleBinding \"key-manager/team-a\" of Role \"key-manager\" to User \"bob\"")
    );
    let get = can_i(
        &bob,
        attributes("get", "keywarden.io", "accesskeys", "team-a"),
    )
    .await;
    assert_eq!((get.allowed, get.denied, get.reason), (false, None, None));
    let elsewhere = can_i(
        &bob,
        attributes("manage", "keywarden.io", "accesskeys", "team-b"),
    )
    .await;
    assert!(!elsewhere.allowed);
    let mut settings = attributes("get", "", "configmaps", "team-a");
    settings.name = Some("settings".into());
    assert!(can_i(&bob, settings.clone()).await.allowed);
    settings.name = Some("other".into());
    assert!(!can_i(&bob, settings).await.allowed);
}

#[tokio::test]
async fn self_subject_access_review_of_a_path() {
    let cluster = DevCluster::start().await.unwrap();
    let bob = client_as(&cluster, "bob", &[]).await;
    let review = |path: &str| SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            non_resource_attributes: Some(NonResourceAttributes {
                path: Some(path.into()),
                verb: Some("get".into()),
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    let api = Api::<SelfSubjectAccessReview>::all(bob);
    let apis = api
        .create(&PostParams::default(), &review("/apis/apps/v1"))
        .await
        .unwrap();
    assert!(apis.status.unwrap().allowed);
    let metrics = api
        .create(&PostParams::default(), &review("/metrics"))
        .await
        .unwrap();
    assert!(!metrics.status.unwrap().allowed);
}

#[tokio::test]
async fn subject_access_review_answers_for_the_named_user() {
    let cluster = DevCluster::start().await.unwrap();
    bob_manages_keys_in_team_a(&cluster).await;
    let reviews = Api::<SubjectAccessReview>::all(cluster.client().unwrap());
    let review = |user: &str| SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.into()),
            resource_attributes: Some(attributes("manage", "keywarden.io", "accesskeys", "team-a")),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let bob = reviews
        .create(&PostParams::default(), &review("bob"))
        .await
        .unwrap();
    assert!(bob.status.unwrap().allowed);
    let alice = reviews
        .create(&PostParams::default(), &review("alice"))
        .await
        .unwrap();
    assert!(!alice.status.unwrap().allowed);

    let err = reviews
        .create(&PostParams::default(), &review(""))
        .await
        .unwrap_err();
    let status = api_error(err);
    assert_eq!(
        (status.code, status.reason.as_str(), status.message.as_str()),
        (
            422,
            "Invalid",
            "SubjectAccessReview.authorization.k8s.io \"\" is invalid: spec.user: Invalid value: \"\": at least one of user or group must be specified"
        )
    );
    let err = Api::<SubjectAccessReview>::all(client_as(&cluster, "bob", &[]).await)
        .create(&PostParams::default(), &review("bob"))
        .await
        .unwrap_err();
    assert_forbidden(
        err,
        "subjectaccessreviews.authorization.k8s.io is forbidden: User \"bob\" cannot create resource \"subjectaccessreviews\" in API group \"authorization.k8s.io\" at the cluster scope",
    );
}

#[tokio::test]
async fn local_subject_access_review_must_ask_about_its_own_namespace() {
    let cluster = DevCluster::start().await.unwrap();
    bob_manages_keys_in_team_a(&cluster).await;
    let reviews = Api::<LocalSubjectAccessReview>::namespaced(cluster.client().unwrap(), "team-a");
    let review = |namespace: &str| LocalSubjectAccessReview {
        metadata: ObjectMeta::default(),
        spec: SubjectAccessReviewSpec {
            user: Some("bob".into()),
            resource_attributes: Some(attributes(
                "manage",
                "keywarden.io",
                "accesskeys",
                namespace,
            )),
            ..SubjectAccessReviewSpec::default()
        },
        ..LocalSubjectAccessReview::default()
    };
    let answered = reviews
        .create(&PostParams::default(), &review("team-a"))
        .await
        .unwrap();
    assert!(answered.status.unwrap().allowed);
    assert_eq!(answered.metadata.namespace.as_deref(), Some("team-a"));

    let err = reviews
        .create(&PostParams::default(), &review("team-b"))
        .await
        .unwrap_err();
    let status = api_error(err);
    assert_eq!(
        (status.code, status.reason.as_str(), status.message.as_str()),
        (
            422,
            "Invalid",
            "LocalSubjectAccessReview.authorization.k8s.io \"\" is invalid: spec.resourceAttributes.namespace: Invalid value: \"team-b\": must match metadata.namespace"
        )
    );
}

#[tokio::test]
async fn self_subject_rules_review_lists_the_requesters_rules_in_a_namespace() {
    let cluster = DevCluster::start().await.unwrap();
    let bob = bob_manages_keys_in_team_a(&cluster).await;
    let review = SelfSubjectRulesReview {
        spec: SelfSubjectRulesReviewSpec {
            namespace: Some("team-a".into()),
        },
        ..SelfSubjectRulesReview::default()
    };
    let status = Api::<SelfSubjectRulesReview>::all(bob)
        .create(&PostParams::default(), &review)
        .await
        .unwrap()
        .status
        .unwrap();
    assert!(!status.incomplete);
    let manage = status
        .resource_rules
        .iter()
        .find(|rule| rule.verbs == ["manage"])
        .expect("the custom verb is listed");
    assert_eq!(
        manage.api_groups.as_deref(),
        Some(&["keywarden.io".to_string()][..])
    );
    assert_eq!(
        manage.resources.as_deref(),
        Some(&["accesskeys".to_string()][..])
    );
    assert!(status
        .resource_rules
        .iter()
        .any(|rule| rule.resource_names.as_deref() == Some(&["settings".to_string()][..])));
    assert!(status
        .resource_rules
        .iter()
        .any(|rule| rule.resources.as_deref()
            == Some(
                &[
                    "selfsubjectaccessreviews".to_string(),
                    "selfsubjectrulesreviews".to_string()
                ][..]
            )));
    assert!(status.non_resource_rules.iter().any(|rule| rule
        .non_resource_urls
        .as_deref()
        .is_some_and(|urls| urls.contains(&"/version".to_string()))));
}

#[tokio::test]
async fn an_access_review_must_ask_about_exactly_one_kind_of_attributes() {
    let cluster = DevCluster::start().await.unwrap();
    let reviews = Api::<SelfSubjectAccessReview>::all(client_as(&cluster, "bob", &[]).await);
    let review = |resource: Option<ResourceAttributes>, path: Option<NonResourceAttributes>| {
        SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: resource,
                non_resource_attributes: path,
            },
            ..SelfSubjectAccessReview::default()
        }
    };

    let err = reviews
        .create(&PostParams::default(), &review(None, None))
        .await
        .unwrap_err();
    let status = api_error(err);
    assert_eq!(
        (status.code, status.reason.as_str(), status.message.as_str()),
        (
            422,
            "Invalid",
            "SelfSubjectAccessReview.authorization.k8s.io \"\" is invalid: spec.resourceAttributes: Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified"
        )
    );
    let both = review(
        Some(attributes("get", "", "configmaps", "default")),
        Some(NonResourceAttributes {
            path: Some("/api".into()),
            verb: Some("get".into()),
        }),
    );
    let status = api_error(
        reviews
            .create(&PostParams::default(), &both)
            .await
            .unwrap_err(),
    );
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert!(
        status
            .message
            .ends_with("cannot be specified in combination with resourceAttributes"),
        "{}",
        status.message
    );
}

#[tokio::test]
async fn anonymous_may_not_ask_access_reviews() {
    let cluster = DevCluster::start().await.unwrap();
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(attributes("get", "", "configmaps", "default")),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    let err =
        Api::<SelfSubjectAccessReview>::all(client_as(&cluster, "system:anonymous", &[]).await)
            .create(&PostParams::default(), &review)
            .await
            .unwrap_err();
    assert_forbidden(
        err,
        "selfsubjectaccessreviews.authorization.k8s.io is forbidden: User \"system:anonymous\" cannot create resource \"selfsubjectaccessreviews\" in API group \"authorization.k8s.io\" at the cluster scope",
    );
}
