//! Who is asking, seen by kube-rs: static bearer tokens, ServiceAccount tokens (TokenRequest,
//! expiry on devcluster's clock, death with the ServiceAccount or bound Secret, audiences),
//! TokenReview, anonymous requests and impersonation.
//!
//! These clusters allow every authenticated or anonymous request, so that each test is about
//! authentication alone; `impersonation_rbac.rs` covers what RBAC refuses.

use std::collections::BTreeMap;
use std::time::Duration;

use devcluster::auth::AuthorizationMode;
use devcluster::{DevCluster, Options};
use k8s_openapi::api::authentication::v1::{
    BoundObjectReference, SelfSubjectReview, TokenRequest, TokenRequestSpec, TokenReview,
    TokenReviewSpec, UserInfo,
};
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, Client};

const API_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

async fn start() -> DevCluster {
    DevCluster::start_with(Options {
        authorization: AuthorizationMode::AlwaysAllow,
        ..Options::default()
    })
    .await
    .expect("devcluster starts")
}

/// Who `client` is, by SelfSubjectReview.
async fn whoami(client: Client) -> UserInfo {
    Api::<SelfSubjectReview>::all(client)
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .expect("SelfSubjectReview answered")
        .status
        .and_then(|status| status.user_info)
        .expect("status.userInfo")
}

/// `(code, reason, message)` of the API error `result` must be.
fn api_error<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> (u16, String, String) {
    match result {
        Err(kube::Error::Api(status)) => (status.code, status.reason, status.message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

fn unauthorized() -> (u16, String, String) {
    (401, "Unauthorized".into(), "Unauthorized".into())
}

async fn create_service_account(cluster: &DevCluster, name: &str) -> String {
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    Api::<ServiceAccount>::namespaced(cluster.client().expect("client"), "default")
        .create(&PostParams::default(), &account)
        .await
        .expect("ServiceAccount created")
        .metadata
        .uid
        .expect("uid")
}

/// A TokenRequest for ServiceAccount `default/<name>`.
async fn request_token(
    cluster: &DevCluster,
    name: &str,
    spec: TokenRequestSpec,
) -> Result<TokenRequest, kube::Error> {
    let request = TokenRequest {
        spec: Some(spec),
        ..TokenRequest::default()
    };
    Api::<ServiceAccount>::namespaced(cluster.client().expect("client"), "default")
        .create_subresource("token", name, &PostParams::default(), &request)
        .await
}

async fn token_for(cluster: &DevCluster, name: &str, spec: TokenRequestSpec) -> String {
    request_token(cluster, name, spec)
        .await
        .expect("TokenRequest answered")
        .status
        .and_then(|status| status.token)
        .expect("status.token")
}

async fn review(cluster: &DevCluster, token: &str, audiences: &[&str]) -> TokenReview {
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: token.into(),
            audiences: (!audiences.is_empty()).then(|| strings(audiences)),
        },
        ..TokenReview::default()
    };
    Api::<TokenReview>::all(cluster.client().expect("client"))
        .create(&PostParams::default(), &review)
        .await
        .expect("TokenReview answered")
}

async fn list_namespaces(client: Client) -> Result<usize, kube::Error> {
    Api::<Namespace>::all(client)
        .list(&Default::default())
        .await
        .map(|list| list.items.len())
}

#[tokio::test]
async fn the_admin_client_is_kubernetes_admin_in_system_masters() {
    let cluster = start().await;
    let admin = whoami(cluster.client().expect("client")).await;
    assert_eq!(admin.username.as_deref(), Some("kubernetes-admin"));
    assert_eq!(
        admin.groups,
        Some(strings(&["system:masters", "system:authenticated"]))
    );
}

#[tokio::test]
async fn a_user_added_with_groups_authenticates_with_its_token() {
    let cluster = start().await;
    let token = cluster.add_user("alice", &["team-a", "team-b"]);
    let expected = Some(strings(&["team-a", "team-b", "system:authenticated"]));
    let by_token = whoami(cluster.client_for_token(&token).expect("client")).await;
    assert_eq!(by_token.username.as_deref(), Some("alice"));
    assert_eq!(by_token.groups, expected);
    let by_name = whoami(cluster.client_as("alice").expect("client")).await;
    assert_eq!(by_name.username.as_deref(), Some("alice"));
    assert!(matches!(
        cluster.client_as("nobody"),
        Err(devcluster::Error::UnknownUser(user)) if user == "nobody"
    ));
}

#[tokio::test]
async fn a_wrong_token_is_401_unauthorized() {
    let cluster = start().await;
    let client = cluster.client_for_token("not-a-token").expect("client");
    assert_eq!(api_error(list_namespaces(client).await), unauthorized());
}

#[tokio::test]
async fn a_request_without_credentials_is_system_anonymous() {
    let cluster = start().await;
    let anonymous = whoami(cluster.anonymous_client().expect("client")).await;
    assert_eq!(anonymous.username.as_deref(), Some("system:anonymous"));
    assert_eq!(anonymous.groups, Some(strings(&["system:unauthenticated"])));
}

#[tokio::test]
async fn a_service_account_token_authenticates_as_the_service_account() {
    let cluster = start().await;
    let uid = create_service_account(&cluster, "builder").await;
    let answer = request_token(&cluster, "builder", TokenRequestSpec::default())
        .await
        .expect("TokenRequest answered");
    let spec = answer.spec.expect("spec");
    assert_eq!(spec.audiences, Some(strings(&[API_AUDIENCE])));
    assert_eq!(spec.expiration_seconds, Some(3600));
    let status = answer.status.expect("status");
    let expires_at = status.expiration_timestamp.expect("expirationTimestamp");
    let lifetime_seconds =
        expires_at.0.as_second() - k8s_openapi::jiff::Timestamp::now().as_second();
    assert!(
        (3590..=3600).contains(&lifetime_seconds),
        "expires in {lifetime_seconds}s"
    );

    let token = status.token.expect("token");
    let user = whoami(cluster.client_for_token(&token).expect("client")).await;
    assert_eq!(
        user.username.as_deref(),
        Some("system:serviceaccount:default:builder")
    );
    assert_eq!(user.uid.as_deref(), Some(uid.as_str()));
    assert_eq!(
        user.groups,
        Some(strings(&[
            "system:serviceaccounts",
            "system:serviceaccounts:default",
            "system:authenticated"
        ]))
    );
    let credential_id = user.extra.and_then(|extra| {
        extra
            .get("authentication.kubernetes.io/credential-id")
            .cloned()
    });
    assert!(
        credential_id.is_some_and(|ids| ids.len() == 1 && ids[0].starts_with("JTI=")),
        "credential id is the token's JTI"
    );
}

#[tokio::test]
async fn a_service_account_token_expires_when_the_clock_passes_its_expiry() {
    let cluster = start().await;
    create_service_account(&cluster, "builder").await;
    let token = token_for(
        &cluster,
        "builder",
        TokenRequestSpec {
            expiration_seconds: Some(600),
            ..TokenRequestSpec::default()
        },
    )
    .await;
    let client = cluster.client_for_token(&token).expect("client");
    list_namespaces(client.clone()).await.expect("valid now");

    // why: kube-apiserver accepts a token up to a minute past `exp` (go-jose's leeway).
    cluster.clock().advance(Duration::from_secs(600 + 61));
    assert_eq!(api_error(list_namespaces(client).await), unauthorized());
    let status = review(&cluster, &token, &[]).await.status.expect("status");
    assert_eq!(status.authenticated, None);
    assert_eq!(
        status.error.as_deref(),
        Some("[invalid bearer token, service account token has expired]")
    );
}

#[tokio::test]
async fn a_service_account_token_dies_with_its_service_account() {
    let cluster = start().await;
    create_service_account(&cluster, "builder").await;
    let token = token_for(&cluster, "builder", TokenRequestSpec::default()).await;
    let client = cluster.client_for_token(&token).expect("client");
    list_namespaces(client.clone()).await.expect("valid now");

    Api::<ServiceAccount>::namespaced(cluster.client().expect("client"), "default")
        .delete("builder", &DeleteParams::default())
        .await
        .expect("deleted");
    assert_eq!(
        api_error(list_namespaces(client.clone()).await),
        unauthorized()
    );
    let status = review(&cluster, &token, &[]).await.status.expect("status");
    assert_eq!(
        status.error.as_deref(),
        Some("[invalid bearer token, serviceaccounts \"builder\" not found]")
    );

    create_service_account(&cluster, "builder").await;
    assert_eq!(
        api_error(list_namespaces(client).await),
        unauthorized(),
        "a recreated ServiceAccount has another uid"
    );
}

#[tokio::test]
async fn a_token_bound_to_a_secret_dies_with_the_secret() {
    let cluster = start().await;
    create_service_account(&cluster, "builder").await;
    let secrets = Api::<Secret>::namespaced(cluster.client().expect("client"), "default");
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("session".into()),
            ..ObjectMeta::default()
        },
        ..Secret::default()
    };
    let uid = secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("Secret created")
        .metadata
        .uid;
    let token = token_for(
        &cluster,
        "builder",
        TokenRequestSpec {
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Secret".into()),
                name: Some("session".into()),
                uid,
            }),
            ..TokenRequestSpec::default()
        },
    )
    .await;
    let client = cluster.client_for_token(&token).expect("client");
    list_namespaces(client.clone()).await.expect("valid now");

    secrets
        .delete("session", &DeleteParams::default())
        .await
        .expect("deleted");
    assert_eq!(api_error(list_namespaces(client).await), unauthorized());
    let status = review(&cluster, &token, &[]).await.status.expect("status");
    assert_eq!(
        status.error.as_deref(),
        Some("[invalid bearer token, service account token has been invalidated]")
    );
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused_by_the_api_but_passes_its_own_review() {
    let cluster = start().await;
    create_service_account(&cluster, "builder").await;
    let token = token_for(
        &cluster,
        "builder",
        TokenRequestSpec {
            audiences: Some(strings(&["vault"])),
            ..TokenRequestSpec::default()
        },
    )
    .await;
    let client = cluster.client_for_token(&token).expect("client");
    assert_eq!(api_error(list_namespaces(client).await), unauthorized());

    let for_the_api = review(&cluster, &token, &[]).await.status.expect("status");
    assert_eq!(for_the_api.authenticated, None);
    assert_eq!(
        for_the_api.error.as_deref(),
        Some("[invalid bearer token, token audiences [\"vault\"] is invalid for the target audiences [\"https://kubernetes.default.svc.cluster.local\"]]")
    );
    let for_vault = review(&cluster, &token, &["vault", "other"])
        .await
        .status
        .expect("status");
    assert_eq!(for_vault.authenticated, Some(true));
    assert_eq!(for_vault.audiences, Some(strings(&["vault"])));
    assert_eq!(
        for_vault.user.and_then(|user| user.username).as_deref(),
        Some("system:serviceaccount:default:builder")
    );
}

#[tokio::test]
async fn a_token_review_of_a_static_token_names_its_user() {
    let cluster = start().await;
    let token = cluster.add_user("alice", &["team-a"]);
    let status = review(&cluster, &token, &[]).await.status.expect("status");
    assert_eq!(status.authenticated, Some(true));
    assert_eq!(status.audiences, Some(strings(&[API_AUDIENCE])));
    let user = status.user.expect("user");
    assert_eq!(user.username.as_deref(), Some("alice"));
    assert_eq!(
        user.groups,
        Some(strings(&["team-a", "system:authenticated"]))
    );

    let unknown = review(&cluster, "not-a-token", &[])
        .await
        .status
        .expect("status");
    assert_eq!(unknown.authenticated, None);
    assert_eq!(unknown.error.as_deref(), Some("invalid bearer token"));
}

#[tokio::test]
async fn a_token_review_without_a_token_is_a_bad_request() {
    let cluster = start().await;
    let result = Api::<TokenReview>::all(cluster.client().expect("client"))
        .create(&PostParams::default(), &TokenReview::default())
        .await;
    assert_eq!(
        api_error(result),
        (
            400,
            "BadRequest".into(),
            "token is required for TokenReview in authentication".into()
        )
    );
}

#[tokio::test]
async fn a_token_request_under_ten_minutes_is_invalid() {
    let cluster = start().await;
    create_service_account(&cluster, "builder").await;
    let result = request_token(
        &cluster,
        "builder",
        TokenRequestSpec {
            expiration_seconds: Some(60),
            ..TokenRequestSpec::default()
        },
    )
    .await;
    assert_eq!(
        api_error(result),
        (
            422,
            "Invalid".into(),
            "TokenRequest.authentication.k8s.io \"\" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes".into()
        )
    );
}

#[tokio::test]
async fn a_token_request_for_a_missing_service_account_is_not_found() {
    let cluster = start().await;
    let result = request_token(&cluster, "ghost", TokenRequestSpec::default()).await;
    assert_eq!(
        api_error(result),
        (
            404,
            "NotFound".into(),
            "serviceaccounts \"ghost\" not found".into()
        )
    );
}

#[tokio::test]
async fn kube_rs_impersonation_acts_as_the_user_groups_uid_and_extras() {
    let cluster = start().await;
    let mut config = cluster.config().expect("config");
    config.auth_info.impersonate = Some("alice".into());
    config.auth_info.impersonate_groups = Some(strings(&["team-a"]));
    config.auth_info.impersonate_uid = Some("alice-uid".into());
    config.auth_info.impersonate_user_extra = Some(
        [(
            "example.org/Scopes".to_string(),
            strings(&["read", "write"]),
        )]
        .into(),
    );
    let user = whoami(Client::try_from(config).expect("client")).await;
    assert_eq!(user.username.as_deref(), Some("alice"));
    assert_eq!(user.uid.as_deref(), Some("alice-uid"));
    assert_eq!(
        user.groups,
        Some(strings(&["team-a", "system:authenticated"]))
    );
    assert_eq!(
        user.extra,
        Some(BTreeMap::from([(
            "example.org/scopes".to_string(),
            strings(&["read", "write"])
        )]))
    );
}

#[tokio::test]
async fn impersonating_a_service_account_gives_its_groups() {
    let cluster = start().await;
    let mut config = cluster.config().expect("config");
    config.auth_info.impersonate = Some("system:serviceaccount:team-a:builder".into());
    let user = whoami(Client::try_from(config).expect("client")).await;
    assert_eq!(
        user.groups,
        Some(strings(&[
            "system:serviceaccounts",
            "system:serviceaccounts:team-a",
            "system:authenticated"
        ]))
    );
}

#[tokio::test]
async fn impersonating_groups_without_a_user_is_a_bad_request() {
    let cluster = start().await;
    let mut config = cluster.config().expect("config");
    config.auth_info.impersonate_groups = Some(strings(&["team-a"]));
    let client = Client::try_from(config).expect("client");
    assert_eq!(
        api_error(list_namespaces(client).await),
        (
            400,
            "BadRequest".into(),
            "requested [{Group  team-a    }] without impersonating a user".into()
        )
    );
}

#[tokio::test]
async fn a_kube_client_from_the_kubeconfig_speaks_https_as_the_admin() {
    let cluster = start().await;
    let config = kube::Config::from_custom_kubeconfig(
        cluster.kubeconfig().expect("kubeconfig"),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .expect("config from the kubeconfig");
    assert_eq!(config.cluster_url.scheme_str(), Some("https"));
    let admin = whoami(Client::try_from(config).expect("client")).await;
    assert_eq!(admin.username.as_deref(), Some("kubernetes-admin"));
}
