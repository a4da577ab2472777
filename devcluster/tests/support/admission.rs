//! Helpers of the admission suites: installing policies and CRDs, building objects,
//! asserting denials.

#![allow(dead_code)]

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, PostParams};
use kube::core::Status;
use kube::runtime::wait::{await_condition, conditions};
use kube::CustomResourceExt;
use serde_json::json;

pub fn api_error(err: kube::Error) -> Status {
    match err {
        kube::Error::Api(status) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Asserts the `Status` of a refused write.
pub fn assert_denied(err: kube::Error, code: u16, reason: &str, message: &str) {
    let status = api_error(err);
    assert_eq!(
        (status.code, status.reason.as_str(), status.message.as_str()),
        (code, reason, message)
    );
}

pub async fn install_policy(client: &kube::Client, policy: &str, binding: &str) {
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

pub async fn install_crd<K: CustomResourceExt>(client: &kube::Client) {
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

pub fn deployment(name: &str, replicas: i32) -> Deployment {
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

pub fn config_map(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({ "metadata": { "name": name, "labels": labels } }))
        .expect("config map")
}

pub async fn create_namespace(client: &kube::Client, name: &str, labels: serde_json::Value) {
    let namespace: Namespace =
        serde_json::from_value(json!({ "metadata": { "name": name, "labels": labels } }))
            .expect("namespace");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .expect("namespace created");
}
