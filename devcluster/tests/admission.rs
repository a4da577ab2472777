//! ValidatingAdmissionPolicy through kube-rs: the documentation's parameterised replica limit
//! (params from a CRD or ConfigMaps), failure policies for missing params, unknown param kinds
//! and expressions that do not compile. Every denial is checked for kube-apiserver's code,
//! reason and message.

#[path = "support/admission.rs"]
mod admission;

use admission::{
    api_error, assert_denied, config_map, create_namespace, deployment, install_crd, install_policy,
};
use devcluster::DevCluster;
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::CustomResource;
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
