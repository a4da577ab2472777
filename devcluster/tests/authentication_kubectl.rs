//! Who is asking, seen by kubectl and helm: the kubeconfig's admin context, a context per
//! user, `--as`/`--as-group` impersonation, `--token-auth-file` users, `kubectl create token`.
//!
//! client-go sends credentials only over TLS, so these go through devcluster's HTTPS side.
//! Needs kubectl (>= 1.28) from `KEYWARDEN_KUBECTL`, `PATH` or `scripts/ensure-kube-tools.sh`.

#[path = "support/kube_tools.rs"]
mod kube_tools;

use devcluster::{DevCluster, Options};
use kube_tools::Kube;
use serde_json::Value;

/// `(username, groups)` of `kubectl auth whoami -o json` run with `args`.
async fn whoami(kube: &Kube, args: &[&str]) -> (String, Vec<String>) {
    let mut command = args.to_vec();
    command.extend(["auth", "whoami", "-o", "json"]);
    let review: Value =
        serde_json::from_str(&kube.kubectl_ok(&command).await).expect("SelfSubjectReview JSON");
    let user = &review["status"]["userInfo"];
    let groups = user["groups"]
        .as_array()
        .map(|groups| {
            groups
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    (
        user["username"].as_str().unwrap_or_default().to_string(),
        groups,
    )
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

#[tokio::test]
async fn kubectl_from_the_admin_context_is_kubernetes_admin() {
    let kube = Kube::start().await;
    assert_eq!(
        whoami(&kube, &[]).await,
        (
            "kubernetes-admin".to_string(),
            strings(&["system:masters", "system:authenticated"])
        )
    );
}

#[tokio::test]
async fn kubectl_as_and_as_group_impersonate_from_the_admin_context() {
    let kube = Kube::start().await;
    assert_eq!(
        whoami(&kube, &["--as", "alice", "--as-group", "team-a"]).await,
        (
            "alice".to_string(),
            strings(&["team-a", "system:authenticated"])
        )
    );
    assert_eq!(
        whoami(&kube, &["--as", "system:serviceaccount:team-a:builder"]).await,
        (
            "system:serviceaccount:team-a:builder".to_string(),
            strings(&[
                "system:serviceaccounts",
                "system:serviceaccounts:team-a",
                "system:authenticated"
            ])
        )
    );
}

#[tokio::test]
async fn an_added_user_gets_a_kubeconfig_context_of_its_own() {
    let kube = Kube::start().await;
    kube.cluster.add_user("alice", &["team-a"]);
    kube.cluster
        .write_kubeconfig(&kube.kubeconfig)
        .expect("kubeconfig rewritten");
    assert_eq!(
        whoami(&kube, &["--context", "alice"]).await,
        (
            "alice".to_string(),
            strings(&["team-a", "system:authenticated"])
        )
    );
    let contexts = kube
        .kubectl_ok(&["config", "get-contexts", "-o", "name"])
        .await;
    assert_eq!(
        contexts.lines().collect::<Vec<_>>(),
        ["alice", "devcluster"]
    );
}

#[tokio::test]
async fn token_auth_file_users_get_contexts_and_their_groups() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(
        &tokens,
        "t-alice,alice,u-alice,\"team-a,team-b\"\nt-bob,bob,u-bob\n",
    )
    .expect("token file written");
    let cluster = DevCluster::start_with(Options {
        token_auth_file: Some(tokens),
        ..Options::default()
    })
    .await
    .expect("devcluster starts");
    let kube = Kube::with_cluster(cluster).await;
    assert_eq!(
        whoami(&kube, &["--context", "alice"]).await,
        (
            "alice".to_string(),
            strings(&["team-a", "team-b", "system:authenticated"])
        )
    );
    assert_eq!(
        whoami(&kube, &["--context", "bob"]).await,
        ("bob".to_string(), strings(&["system:authenticated"]))
    );
}

#[tokio::test]
async fn a_malformed_token_file_stops_the_start_with_the_line_at_fault() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "t-alice,alice,u-alice\nt-bob,bob\n").expect("token file written");
    let err = DevCluster::start_with(Options {
        token_auth_file: Some(tokens.clone()),
        ..Options::default()
    })
    .await
    .err()
    .expect("refused");
    assert_eq!(
        err.to_string(),
        format!(
            "token file '{}' must have at least 3 columns (token, user name, user uid), found 2 (line 2)",
            tokens.display()
        )
    );
}

#[tokio::test]
async fn a_wrong_token_in_the_kubeconfig_is_unauthorized_for_kubectl() {
    let kube = Kube::start().await;
    let output = kube
        .kubectl(&["--token", "not-a-token", "get", "namespaces"])
        .await;
    assert!(!output.status.success());
    // why: discovery fails first, and client-go words a 401 on discovery this way, as it does
    // against kube-apiserver with an expired token.
    assert_eq!(
        output.stderr.trim().lines().last(),
        Some("error: You must be logged in to the server (the server has asked for the client to provide credentials)")
    );
}

#[tokio::test]
async fn kubectl_create_token_mints_a_service_account_token() {
    let kube = Kube::start().await;
    kube.kubectl_ok(&["create", "serviceaccount", "builder"])
        .await;
    let token = kube
        .kubectl_ok(&["create", "token", "builder", "--duration", "20m"])
        .await;
    let user = kube.cluster.client_for_token(token.trim()).expect("client");
    let review = kube::Api::<k8s_openapi::api::authentication::v1::SelfSubjectReview>::all(user)
        .create(&Default::default(), &Default::default())
        .await
        .expect("SelfSubjectReview answered");
    let username = review
        .status
        .and_then(|status| status.user_info)
        .and_then(|user| user.username);
    assert_eq!(
        username.as_deref(),
        Some("system:serviceaccount:default:builder")
    );
}
