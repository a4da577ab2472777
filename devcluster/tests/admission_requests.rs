//! ValidatingAdmissionPolicy through kube-rs on every kind of request: DELETE with a null
//! `object`, deletecollection and namespace deletion object by object, `/status` writes, deny
//! by user or group, authorizer checks and match conditions. Every denial is checked for
//! kube-apiserver's code, reason and message.

#[path = "support/admission.rs"]
mod admission;

use std::time::Duration;

use admission::{assert_denied, config_map, create_namespace, install_crd, install_policy};
use devcluster::DevCluster;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// A namespaced kind with a status subresource.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "test.devcluster.io",
    version = "v1",
    kind = "Lamp",
    namespaced,
    status = "LampStatus"
)]
pub struct LampSpec {
    pub watts: i64,
}

#[derive(Serialize, Deserialize, Clone, Debug, JsonSchema, Default)]
pub struct LampStatus {
    pub lit: bool,
}

const PROTECTED_POLICY: &str = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: keep-protected
spec:
  failurePolicy: Fail
  paramKind:
    apiVersion: v1
    kind: ConfigMap
  matchConstraints:
    resourceRules:
    - apiGroups: [""]
      apiVersions: ["v1"]
      operations: ["DELETE"]
      resources: ["configmaps"]
  validations:
  - expression: "object == null && !(has(oldObject.metadata.labels) && 'protected' in oldObject.metadata.labels && oldObject.metadata.labels['protected'] == 'true')"
    message: protected config maps stay
"#;

const PROTECTED_BINDING: &str = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: keep-protected-binding
spec:
  policyName: keep-protected
  validationActions: [Deny]
"#;

#[tokio::test]
async fn delete_sees_a_null_object_and_the_old_one() {
    let cluster = DevCluster::start().await.unwrap();
    let client = cluster.client().unwrap();
    install_policy(&client, PROTECTED_POLICY, PROTECTED_BINDING).await;
    let config_maps: Api<ConfigMap> = Api::default_namespaced(client.clone());
    config_maps
        .create(
            &PostParams::default(),
            &config_map("keep", json!({ "protected": "true" })),
        )
        .await
        .unwrap();
    config_maps
        .create(&PostParams::default(), &config_map("scratch", json!({})))
        .await
        .unwrap();

    let err = config_maps
        .delete("keep", &DeleteParams::default())
        .await
        .unwrap_err();
    assert_denied(
        err,
        422,
        "Invalid",
        "configmaps \"keep\" is forbidden: ValidatingAdmissionPolicy 'keep-protected' with binding 'keep-protected-binding' denied request: protected config maps stay",
    );
    config_maps
        .delete("scratch", &DeleteParams::default())
        .await
        .expect("unprotected config maps can go");
}

#[tokio::test]
async fn deletecollection_admits_object_by_object() {
    let cluster = DevCluster::start().await.unwrap();
    let client = cluster.client().unwrap();
    install_policy(&client, PROTECTED_POLICY, PROTECTED_BINDING).await;
    let config_maps: Api<ConfigMap> = Api::default_namespaced(client.clone());
    for (name, labels) in [
        ("a-scratch", json!({ "set": "x" })),
        ("b-keep", json!({ "set": "x", "protected": "true" })),
    ] {
        config_maps
            .create(&PostParams::default(), &config_map(name, labels))
            .await
            .unwrap();
    }
    let err = config_maps
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("set=x"),
        )
        .await
        .unwrap_err();
    assert_denied(
        err,
        422,
        "Invalid",
        "configmaps \"b-keep\" is forbidden: ValidatingAdmissionPolicy 'keep-protected' with binding 'keep-protected-binding' denied request: protected config maps stay",
    );
    assert!(config_maps.get_opt("a-scratch").await.unwrap().is_none());
    assert!(config_maps.get_opt("b-keep").await.unwrap().is_some());
}

#[tokio::test]
async fn garbage_collection_admits_each_dependent_as_the_garbage_collector() {
    let cluster = DevCluster::start().await.unwrap();
    let client = cluster.client().unwrap();
    install_policy(
        &client,
        &PROTECTED_POLICY.replace(
            "object == null &&",
            "request.userInfo.username != 'system:serviceaccount:kube-system:generic-garbage-collector' || object == null &&",
        ),

        PROTECTED_BINDING,
    )
    .await;
    let config_maps: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let owner = config_maps
        .create(&PostParams::default(), &config_map("owner", json!({})))
        .await
        .unwrap();
    let owned_by = json!([{
        "apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
        "uid": owner.metadata.uid.clone().unwrap_or_default(),
    }]);
    for (name, labels) in [
        ("dependent-kept", json!({ "protected": "true" })),
        ("dependent-collected", json!({})),
    ] {
        let mut dependent = config_map(name, labels);
        dependent.metadata.owner_references =
            Some(serde_json::from_value(owned_by.clone()).unwrap());
        config_maps
            .create(&PostParams::default(), &dependent)
            .await
            .unwrap();
    }
    config_maps
        .delete("owner", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while config_maps
            .get_opt("dependent-collected")
            .await
            .unwrap()
            .is_some()
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the unprotected dependent is collected");
    assert!(
        config_maps
            .get_opt("dependent-kept")
            .await
            .unwrap()
            .is_some(),
        "admission refused the garbage collector"
    );
}

#[tokio::test]
async fn namespace_deletion_admits_each_object_as_the_namespace_controller() {
    let cluster = DevCluster::start().await.unwrap();
    let client = cluster.client().unwrap();
    install_policy(
        &client,
        &PROTECTED_POLICY.replace(
            "object == null &&",
            "request.userInfo.username == 'system:serviceaccount:kube-system:namespace-controller' && 'system:serviceaccounts:kube-system' in request.userInfo.groups && object == null &&",
        ),
        PROTECTED_BINDING,
    )
    .await;
    create_namespace(&client, "doomed", json!({})).await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    config_maps
        .create(
            &PostParams::default(),
            &config_map("keep", json!({ "protected": "true" })),
        )
        .await
        .unwrap();
    config_maps
        .create(&PostParams::default(), &config_map("scratch", json!({})))
        .await
        .unwrap();
    Api::<Namespace>::all(client.clone())
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while config_maps.get_opt("scratch").await.unwrap().is_some() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the unprotected config map is deleted");
    assert!(
        config_maps.get_opt("keep").await.unwrap().is_some(),
        "admission refused the namespace controller"
    );
    let namespace = Api::<Namespace>::all(client.clone())
        .get("doomed")
        .await
        .unwrap();
    assert_eq!(
        namespace.status.and_then(|s| s.phase).as_deref(),
        Some("Terminating")
    );
}

#[tokio::test]
async fn a_user_or_group_check_denies_with_the_validations_reason() {
    let cluster = DevCluster::start().await.unwrap();
    let client = cluster.client().unwrap();
    install_policy(
        &client,
        r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: no-admin-config
spec:
  matchConstraints:
    resourceRules:
    - apiGroups: [""]
      apiVersions: ["v1"]
      operations: ["CREATE"]
      resources: ["configmaps"]
  variables:
  - name: isAdmin
    expression: "'system:masters' in request.userInfo.groups"
  validations:
  - expression: "!variables.isAdmin || object.metadata.name.startsWith('admin-')"
    messageExpression: "'user ' + request.userInfo.username + ' may only create admin- config maps'"
    reason: Unauthorized
"#,
        r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: no-admin-config-binding
spec:
  policyName: no-admin-config
  validationActions: [Deny]
"#,
    )
    .await;
    let config_maps: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let err = config_maps
        .create(&PostParams::default(), &config_map("settings", json!({})))
        .await
        .unwrap_err();
    assert_denied(
        err,
        401,
        "Unauthorized",
        "configmaps \"settings\" is forbidden: ValidatingAdmissionPolicy 'no-admin-config' with binding 'no-admin-config-binding' denied request: user kubernetes-admin may only create admin- config maps",
    );
    config_maps
        .create(
            &PostParams::default(),
            &config_map("admin-settings", json!({})),
        )
        .await
        .expect("allowed name");
}

#[tokio::test]
async fn authorizer_checks_ask_the_clusters_authorizer() {
    let cluster = DevCluster::start().await.unwrap();
    let client = cluster.client().unwrap();
    install_policy(
        &client,
        r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: only-without-impersonation
spec:
  matchConstraints:
    resourceRules:
    - apiGroups: [""]
      apiVersions: ["v1"]
      operations: ["CREATE"]
      resources: ["configmaps"]
  validations:
  - expression: "authorizer.requestResource.check('create').allowed()"
  - expression: "!authorizer.group('').resource('users').check('impersonate').allowed() || object.metadata.name != 'forbidden'"
    message: users who can impersonate may not create 'forbidden'
    reason: Forbidden
"#,
        r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: only-without-impersonation
spec:
  policyName: only-without-impersonation
  validationActions: [Deny]
"#,
    )
    .await;
    let config_maps: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let err = config_maps
        .create(&PostParams::default(), &config_map("forbidden", json!({})))
        .await
        .unwrap_err();
    assert_denied(
        err,
        403,
        "Forbidden",
        "configmaps \"forbidden\" is forbidden: ValidatingAdmissionPolicy 'only-without-impersonation' with binding 'only-without-impersonation' denied request: users who can impersonate may not create 'forbidden'",
    );
    config_maps
        .create(&PostParams::default(), &config_map("fine", json!({})))
        .await
        .expect("the admin may create config maps");
}

#[tokio::test]
async fn a_status_rule_denies_status_writes_but_not_the_main_resource() {
    let cluster = DevCluster::start().await.unwrap();
    let client = cluster.client().unwrap();
    install_crd::<Lamp>(&client).await;
    install_policy(
        &client,
        r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: lamps-stay-dark
spec:
  matchConstraints:
    resourceRules:
    - apiGroups: ["test.devcluster.io"]
      apiVersions: ["*"]
      operations: ["*"]
      resources: ["lamps/status"]
  validations:
  - expression: "request.subResource == 'status' && !object.status.lit"
    message: lamps stay dark
"#,
        r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: lamps-stay-dark
spec:
  policyName: lamps-stay-dark
  validationActions: [Deny]
"#,
    )
    .await;
    let lamps: Api<Lamp> = Api::default_namespaced(client.clone());
    lamps
        .create(
            &PostParams::default(),
            &Lamp::new("desk", LampSpec { watts: 40 }),
        )
        .await
        .expect("the main resource is not matched");
    lamps
        .patch(
            "desk",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "watts": 60 } })),
        )
        .await
        .expect("spec updates are not matched");
    let err = lamps
        .patch_status(
            "desk",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "lit": true } })),
        )
        .await
        .unwrap_err();
    assert_denied(
        err,
        422,
        "Invalid",
        "lamps.test.devcluster.io \"desk\" is forbidden: ValidatingAdmissionPolicy 'lamps-stay-dark' with binding 'lamps-stay-dark' denied request: lamps stay dark",
    );
}

const CONDITIONAL_POLICY: &str = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: labelled-config
spec:
  matchConstraints:
    resourceRules:
    - apiGroups: [""]
      apiVersions: ["v1"]
      operations: ["CREATE"]
      resources: ["configmaps"]
  matchConditions:
  - name: not-kube-root-ca
    expression: "object.metadata.name != 'kube-root-ca.crt'"
  - name: in-team-namespaces
    expression: "namespaceObject.metadata.name.startsWith('team-')"
  validations:
  - expression: "has(object.metadata.labels) && 'owner' in object.metadata.labels"
"#;

#[tokio::test]
async fn match_conditions_skip_the_requests_they_reject() {
    let cluster = DevCluster::start().await.unwrap();
    let client = cluster.client().unwrap();
    install_policy(
        &client,
        CONDITIONAL_POLICY,
        r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: labelled-config
spec:
  policyName: labelled-config
  validationActions: [Deny]
"#,
    )
    .await;
    create_namespace(&client, "team-a", json!({})).await;
    let in_team: Api<ConfigMap> = Api::namespaced(client.clone(), "team-a");
    let err = in_team
        .create(&PostParams::default(), &config_map("settings", json!({})))
        .await
        .unwrap_err();
    assert_denied(
        err,
        422,
        "Invalid",
        "configmaps \"settings\" is forbidden: ValidatingAdmissionPolicy 'labelled-config' with binding 'labelled-config' denied request: failed expression: has(object.metadata.labels) && 'owner' in object.metadata.labels",
    );
    in_team
        .create(
            &PostParams::default(),
            &config_map("kube-root-ca.crt", json!({})),
        )
        .await
        .expect("the first condition excludes it");
    Api::<ConfigMap>::default_namespaced(client.clone())
        .create(&PostParams::default(), &config_map("settings", json!({})))
        .await
        .expect("the second condition excludes namespace default");
}

#[tokio::test]
async fn authorizer_checks_for_a_service_account_follow_its_rbac_grants() {
    let cluster = DevCluster::start().await.unwrap();
    let client = cluster.client().unwrap();
    install_policy(
        &client,
        r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: robot-reads-secrets
spec:
  matchConstraints:
    resourceRules:
    - apiGroups: [""]
      apiVersions: ["v1"]
      operations: ["CREATE"]
      resources: ["configmaps"]
  validations:
  - expression: "authorizer.serviceAccount('default', 'robot').group('').resource('secrets').namespace('default').check('get').allowed()"
    message: the robot must be able to read secrets first
"#,
        r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: robot-reads-secrets
spec:
  policyName: robot-reads-secrets
  validationActions: [Deny]
"#,
    )
    .await;
    let config_maps: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let err = config_maps
        .create(&PostParams::default(), &config_map("settings", json!({})))
        .await
        .unwrap_err();
    assert_denied(
        err,
        422,
        "Invalid",
        "configmaps \"settings\" is forbidden: ValidatingAdmissionPolicy 'robot-reads-secrets' with binding 'robot-reads-secrets' denied request: the robot must be able to read secrets first",
    );

    let role: Role = serde_json::from_value(json!({
        "metadata": { "name": "secret-reader" },
        "rules": [{ "apiGroups": [""], "resources": ["secrets"], "verbs": ["get"] }],
    }))
    .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": { "name": "robot-reads-secrets" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "secret-reader" },
        "subjects": [{ "kind": "ServiceAccount", "name": "robot", "namespace": "default" }],
    }))
    .unwrap();
    Api::<Role>::default_namespaced(client.clone())
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    Api::<RoleBinding>::default_namespaced(client.clone())
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    config_maps
        .create(&PostParams::default(), &config_map("settings", json!({})))
        .await
        .expect("allowed once RBAC grants the robot");
}
