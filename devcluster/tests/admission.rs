//! ValidatingAdmissionPolicy through kube-rs: the examples of the Kubernetes documentation
//! (parameterised limits, deny by user or group, authorizer checks), every operation and
//! subresource, selectors, match conditions and failure policies. Every denial is checked for
//! kube-apiserver's code, reason and message.

use std::time::Duration;

use devcluster::DevCluster;
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::Status;
use kube::runtime::wait::{await_condition, conditions};
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The documentation's params kind: a cluster-scoped replica limit.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema)]
#[kube(group = "rules.example.com", version = "v1", kind = "ReplicaLimit")]
#[serde(rename_all = "camelCase")]
pub struct ReplicaLimitSpec {
    pub max_replicas: i64,
}

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

fn api_error(err: kube::Error) -> Status {
    match err {
        kube::Error::Api(status) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Asserts the `Status` of a refused write.
fn assert_denied(err: kube::Error, code: u16, reason: &str, message: &str) {
    let status = api_error(err);
    assert_eq!(
        (status.code, status.reason.as_str(), status.message.as_str()),
        (code, reason, message)
    );
}

async fn install_policy(client: &kube::Client, policy: &str, binding: &str) {
    let policy: ValidatingAdmissionPolicy = serde_yaml::from_str(policy).expect("policy yaml");
    let binding: ValidatingAdmissionPolicyBinding =
        serde_yaml::from_str(binding).expect("binding yaml");
    Api::<ValidatingAdmissionPolicy>::all(client.clone())
        .create(&PostParams::default(), &policy)
        .await
        .expect("policy created");
    Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .create(&PostParams::default(), &binding)
        .await
        .expect("binding created");
}

async fn install_crd<K: CustomResourceExt>(client: &kube::Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &K::crd())
        .await
        .expect("CRD created");
    tokio::time::timeout(
        Duration::from_secs(10),
        await_condition(crds, K::crd_name(), conditions::is_crd_established()),
    )
    .await
    .expect("CRD established in time")
    .expect("CRD watch");
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "app", "image": "nginx" }] }
            }
        }
    }))
    .expect("deployment")
}

fn config_map(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({ "metadata": { "name": name, "labels": labels } }))
        .expect("config map")
}

async fn create_namespace(client: &kube::Client, name: &str, labels: serde_json::Value) {
    let namespace: Namespace =
        serde_json::from_value(json!({ "metadata": { "name": name, "labels": labels } }))
            .expect("namespace");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .expect("namespace created");
}

const REPLICA_POLICY: &str = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: demo-policy.example.com
spec:
  failurePolicy: Fail
  paramKind:
    apiVersion: rules.example.com/v1
    kind: ReplicaLimit
  matchConstraints:
    resourceRules:
    - apiGroups: ["apps"]
      apiVersions: ["v1"]
      operations: ["CREATE", "UPDATE"]
      resources: ["deployments"]
  validations:
  - expression: "object.spec.replicas <= params.spec.maxReplicas"
    reason: Invalid
"#;

#[tokio::test]
async fn replicas_over_a_crd_param_limit_are_denied_in_namespaces_the_binding_selects() {
    let cluster = DevCluster::start().await.unwrap();
    let client = cluster.client().unwrap();
    install_crd::<ReplicaLimit>(&client).await;
    let limit = ReplicaLimit::new(
        "replica-limit-test.example.com",
        ReplicaLimitSpec { max_replicas: 3 },
    );
    Api::<ReplicaLimit>::all(client.clone())
        .create(&PostParams::default(), &limit)
        .await
        .unwrap();
    install_policy(
        &client,
        REPLICA_POLICY,
        r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: demo-binding-test.example.com
spec:
  policyName: demo-policy.example.com
  validationActions: [Deny]
  paramRef:
    name: replica-limit-test.example.com
    parameterNotFoundAction: Deny
  matchResources:
    namespaceSelector:
      matchLabels:
        environment: test
"#,
    )
    .await;
    create_namespace(&client, "test", json!({ "environment": "test" })).await;
    let in_test: Api<Deployment> = Api::namespaced(client.clone(), "test");
    let in_default: Api<Deployment> = Api::default_namespaced(client.clone());

    let err = in_test
        .create(&PostParams::default(), &deployment("web", 5))
        .await
        .unwrap_err();
    assert_denied(
        err,
        422,
        "Invalid",
        "deployments.apps \"web\" is forbidden: ValidatingAdmissionPolicy 'demo-policy.example.com' with binding 'demo-binding-test.example.com' denied request: failed expression: object.spec.replicas <= params.spec.maxReplicas",
    );
    in_test
        .create(&PostParams::default(), &deployment("web", 3))
        .await
        .expect("within the limit");
    in_default
        .create(&PostParams::default(), &deployment("web", 5))
        .await
        .expect("the binding does not select namespace default");

    let scale_up = Patch::Merge(json!({ "spec": { "replicas": 4 } }));
    let err = in_test
        .patch("web", &PatchParams::default(), &scale_up)
        .await
        .unwrap_err();
    assert_eq!(api_error(err).code, 422, "UPDATE is matched too");
}

#[tokio::test]
async fn config_map_params_found_by_selector_are_each_evaluated() {
    let cluster = DevCluster::start().await.unwrap();
    let client = cluster.client().unwrap();
    let config_maps: Api<ConfigMap> = Api::default_namespaced(client.clone());
    for (name, max) in [("limit-a", "4"), ("limit-b", "2")] {
        let mut limit = config_map(name, json!({ "limits": "replicas" }));
        limit.data = Some([("maxReplicas".to_string(), max.to_string())].into());
        config_maps
            .create(&PostParams::default(), &limit)
            .await
            .unwrap();
    }
    install_policy(
        &client,
        r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: replica-limit
spec:
  paramKind:
    apiVersion: v1
    kind: ConfigMap
  matchConstraints:
    resourceRules:
    - apiGroups: ["apps"]
      apiVersions: ["v1"]
      operations: ["CREATE"]
      resources: ["deployments"]
  validations:
  - expression: "object.spec.replicas <= int(params.data.maxReplicas)"
    messageExpression: "'replicas must be at most ' + params.data.maxReplicas + ' (' + params.metadata.name + ')'"
    reason: Forbidden
"#,
        r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: replica-limit-binding
spec:
  policyName: replica-limit
  validationActions: [Deny]
  paramRef:
    selector:
      matchLabels:
        limits: replicas
    parameterNotFoundAction: Allow
"#,
    )
    .await;
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    let err = deployments
        .create(&PostParams::default(), &deployment("three", 3))
        .await
        .unwrap_err();
    assert_denied(
        err,
        403,
        "Forbidden",
        "deployments.apps \"three\" is forbidden: ValidatingAdmissionPolicy 'replica-limit' with binding 'replica-limit-binding' denied request: replicas must be at most 2 (limit-b)",
    );
    deployments
        .create(&PostParams::default(), &deployment("two", 2))
        .await
        .expect("within both limits");
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

const MISSING_PARAMS_BINDING: &str = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: demo-binding
spec:
  policyName: demo-policy.example.com
  validationActions: [Deny]
  paramRef:
    name: absent
    parameterNotFoundAction: Deny
"#;

#[tokio::test]
async fn missing_params_fail_the_request_under_failure_policy_fail() {
    let cluster = DevCluster::start().await.unwrap();
    let client = cluster.client().unwrap();
    install_crd::<ReplicaLimit>(&client).await;
    install_policy(&client, REPLICA_POLICY, MISSING_PARAMS_BINDING).await;
    let err = Api::<Deployment>::default_namespaced(client.clone())
        .create(&PostParams::default(), &deployment("web", 1))
        .await
        .unwrap_err();
    assert_denied(
        err,
        422,
        "Invalid",
        "deployments.apps \"web\" is forbidden: ValidatingAdmissionPolicy 'demo-policy.example.com' with binding 'demo-binding' denied request: failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction",
    );
}

#[tokio::test]
async fn missing_params_are_ignored_under_failure_policy_ignore() {
    let cluster = DevCluster::start().await.unwrap();
    let client = cluster.client().unwrap();
    install_crd::<ReplicaLimit>(&client).await;
    install_policy(
        &client,
        &REPLICA_POLICY.replace("failurePolicy: Fail", "failurePolicy: Ignore"),
        MISSING_PARAMS_BINDING,
    )
    .await;
    Api::<Deployment>::default_namespaced(client.clone())
        .create(&PostParams::default(), &deployment("web", 100))
        .await
        .expect("admitted despite the missing params");
}

#[tokio::test]
async fn an_unknown_param_kind_is_a_policy_configuration_error() {
    let cluster = DevCluster::start().await.unwrap();
    let client = cluster.client().unwrap();
    install_policy(&client, REPLICA_POLICY, MISSING_PARAMS_BINDING).await;
    let err = Api::<Deployment>::default_namespaced(client.clone())
        .create(&PostParams::default(), &deployment("web", 1))
        .await
        .unwrap_err();
    assert_denied(
        err,
        422,
        "Invalid",
        "deployments.apps \"web\" is forbidden: ValidatingAdmissionPolicy 'demo-policy.example.com' denied request: failed to configure policy: failed to find resource referenced by paramKind: 'rules.example.com/v1, Kind=ReplicaLimit'",
    );
}

#[tokio::test]
async fn an_expression_that_does_not_compile_fails_per_the_failure_policy() {
    let cluster = DevCluster::start().await.unwrap();
    let client = cluster.client().unwrap();
    install_policy(
        &client,
        r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: broken
spec:
  matchConstraints:
    resourceRules:
    - apiGroups: [""]
      apiVersions: ["v1"]
      operations: ["CREATE"]
      resources: ["configmaps"]
  validations:
  - expression: "object.metadata.name =="
"#,
        r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: broken
spec:
  policyName: broken
  validationActions: [Deny]
"#,
    )
    .await;
    let config_maps: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let status = api_error(
        config_maps
            .create(&PostParams::default(), &config_map("any", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert!(
        status.message.starts_with(
            "configmaps \"any\" is forbidden: ValidatingAdmissionPolicy 'broken' with binding 'broken' denied request: compilation error: "
        ),
        "{}",
        status.message
    );

    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    policies
        .patch(
            "broken",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "failurePolicy": "Ignore" } })),
        )
        .await
        .unwrap();
    config_maps
        .create(&PostParams::default(), &config_map("any", json!({})))
        .await
        .expect("ignored once the policy says Ignore");
}

#[tokio::test]
async fn policies_and_bindings_themselves_are_never_admitted_by_policies() {
    let cluster = DevCluster::start().await.unwrap();
    let client = cluster.client().unwrap();
    install_policy(
        &client,
        r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: deny-everything
spec:
  matchConstraints:
    resourceRules:
    - apiGroups: ["*"]
      apiVersions: ["*"]
      operations: ["*"]
      resources: ["*"]
  validations:
  - expression: "false"
"#,
        r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: deny-everything
spec:
  policyName: deny-everything
  validationActions: [Deny]
"#,
    )
    .await;
    let err = Api::<ConfigMap>::default_namespaced(client.clone())
        .create(&PostParams::default(), &config_map("any", json!({})))
        .await
        .unwrap_err();
    assert_eq!(api_error(err).code, 422);
    Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .delete("deny-everything", &DeleteParams::default())
        .await
        .expect("the binding can always be removed");
    Api::<ConfigMap>::default_namespaced(client.clone())
        .create(&PostParams::default(), &config_map("any", json!({})))
        .await
        .expect("admitted once the binding is gone");
}
