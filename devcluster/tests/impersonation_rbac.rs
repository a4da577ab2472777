//! What RBAC refuses to whom authentication names: impersonation without the `impersonate`
//! verb, anonymous requests beyond `system:public-info-viewer`, with kube-apiserver's messages.
//!
//! Ignored until the RBAC authorizer is merged (until then devcluster allows everything); run
//! with `cargo nextest run -p devcluster --test impersonation_rbac --run-ignored all`.

#[path = "support/kube_tools.rs"]
mod kube_tools;

use devcluster::DevCluster;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use kube_tools::Kube;

/// `(code, reason, message)` of the API error `result` must be.
fn api_error<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> (u16, String, String) {
    match result {
        Err(kube::Error::Api(status)) => (status.code, status.reason, status.message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn forbidden(message: &str) -> (u16, String, String) {
    (403, "Forbidden".into(), message.into())
}

async fn whoami(client: Client) -> Result<SelfSubjectReview, kube::Error> {
    Api::<SelfSubjectReview>::all(client)
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
}

/// A client for `bob` (no permissions) impersonating `user`, `groups` and `extra`.
fn bob_as(cluster: &DevCluster, user: &str, groups: &[&str], extra: &[(&str, &str)]) -> Client {
    let token = cluster.add_user("bob", &[]);
    let mut config = cluster.config_for_token(Some(&token)).expect("config");
    config.auth_info.impersonate = Some(user.into());
    if !groups.is_empty() {
        config.auth_info.impersonate_groups = Some(groups.iter().map(|g| g.to_string()).collect());
    }
    if !extra.is_empty() {
        config.auth_info.impersonate_user_extra = Some(
            extra
                .iter()
                .map(|(key, value)| (key.to_string(), vec![value.to_string()]))
                .collect(),
        );
    }
    Client::try_from(config).expect("client")
}

/// Lets `bob` impersonate the user `alice` and nothing else.
async fn let_bob_impersonate_alice(cluster: &DevCluster) {
    let admin = cluster.client().expect("client");
    let role = ClusterRole {
        metadata: ObjectMeta {
            name: Some("impersonate-alice".into()),
            ..ObjectMeta::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["users".into()]),
            resource_names: Some(vec!["alice".into()]),
            verbs: vec!["impersonate".into()],
            ..PolicyRule::default()
        }]),
        ..ClusterRole::default()
    };
    Api::<ClusterRole>::all(admin.clone())
        .create(&PostParams::default(), &role)
        .await
        .expect("ClusterRole created");
    let binding = ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some("bob-impersonates-alice".into()),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: "impersonate-alice".into(),
        },
        subjects: Some(vec![Subject {
            kind: "User".into(),
            name: "bob".into(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            ..Subject::default()
        }]),
    };
    Api::<ClusterRoleBinding>::all(admin)
        .create(&PostParams::default(), &binding)
        .await
        .expect("ClusterRoleBinding created");
}

#[tokio::test]
async fn impersonating_a_user_without_the_impersonate_verb_is_forbidden() {
    let cluster = DevCluster::start().await.expect("devcluster starts");
    let result = whoami(bob_as(&cluster, "alice", &[], &[])).await;
    assert_eq!(
        api_error(result),
        forbidden("users \"alice\" is forbidden: User \"bob\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope")
    );
}

#[tokio::test]
async fn impersonating_a_service_account_is_checked_in_its_namespace() {
    let cluster = DevCluster::start().await.expect("devcluster starts");
    let client = bob_as(&cluster, "system:serviceaccount:team-a:builder", &[], &[]);
    assert_eq!(
        api_error(whoami(client).await),
        forbidden("serviceaccounts \"builder\" is forbidden: User \"bob\" cannot impersonate resource \"serviceaccounts\" in API group \"\" in the namespace \"team-a\"")
    );
}

#[tokio::test]
async fn a_user_bob_may_impersonate_still_needs_each_group_and_extra_allowed() {
    let cluster = DevCluster::start().await.expect("devcluster starts");
    let_bob_impersonate_alice(&cluster).await;
    let review = whoami(bob_as(&cluster, "alice", &[], &[]))
        .await
        .expect("bob may act as alice");
    let username = review
        .status
        .and_then(|status| status.user_info)
        .and_then(|user| user.username);
    assert_eq!(username.as_deref(), Some("alice"));

    let with_masters = whoami(bob_as(&cluster, "alice", &["system:masters"], &[])).await;
    assert_eq!(
        api_error(with_masters),
        forbidden("groups \"system:masters\" is forbidden: User \"bob\" cannot impersonate resource \"groups\" in API group \"\" at the cluster scope")
    );
    let with_extra = whoami(bob_as(&cluster, "alice", &[], &[("scopes", "read")])).await;
    assert_eq!(
        api_error(with_extra),
        forbidden("userextras.authentication.k8s.io \"read\" is forbidden: User \"bob\" cannot impersonate resource \"userextras/scopes\" in API group \"authentication.k8s.io\" at the cluster scope")
    );
}

#[tokio::test]
async fn anonymous_requests_reach_public_info_and_nothing_else() {
    let cluster = DevCluster::start().await.expect("devcluster starts");
    let anonymous = cluster.anonymous_client().expect("client");
    anonymous
        .apiserver_version()
        .await
        .expect("/version is public");
    let result = Api::<Namespace>::all(anonymous)
        .list(&Default::default())
        .await;
    assert_eq!(
        api_error(result),
        forbidden("namespaces is forbidden: User \"system:anonymous\" cannot list resource \"namespaces\" in API group \"\" at the cluster scope")
    );
}

#[tokio::test]
async fn kubectl_as_from_a_context_without_impersonate_is_forbidden() {
    let kube = Kube::start().await;
    kube.cluster.add_user("bob", &[]);
    kube.cluster
        .write_kubeconfig(&kube.kubeconfig)
        .expect("kubeconfig rewritten");
    let output = kube
        .kubectl(&[
            "--context",
            "bob",
            "--as",
            "alice",
            "get",
            "--raw",
            "/api/v1/namespaces/default/secrets",
        ])
        .await;
    assert!(!output.status.success());
    // why: `--raw` skips discovery, whose errors client-go does not decode.
    assert_eq!(
        output.stderr.trim().lines().last(),
        Some("Error from server (Forbidden): users \"alice\" is forbidden: User \"bob\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope")
    );
}
