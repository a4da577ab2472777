//! CRD validation ratcheting: after a CRD's schema gets stricter, updates that leave the
//! now-invalid values alone are accepted; changing them, or failing a transition rule, is not.

#[path = "support/kube_tools.rs"]
mod kube_tools;

use std::time::Duration;

use devcluster::DevCluster;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::core::Status;
use kube_tools::Kube;
use serde_json::{json, Value};

const CRD_NAME: &str = "boxes.ratchet.devcluster.io";

fn crd(spec_schema: Value) -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": CRD_NAME },
        "spec": {
            "group": "ratchet.devcluster.io",
            "scope": "Namespaced",
            "names": { "plural": "boxes", "singular": "box", "kind": "Box", "listKind": "BoxList" },
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "properties": { "spec": spec_schema },
                }},
            }],
        },
    }))
    .expect("crd")
}

/// The lenient first schema: any label, any size.
fn lenient() -> Value {
    json!({
        "type": "object",
        "properties": {
            "label": { "type": "string" },
            "size": { "type": "integer" },
            "limits": { "type": "object", "properties": { "max": { "type": "integer" } } },
            "quota": { "type": "object", "properties": { "max": { "type": "integer" } } },
        },
    })
}

/// The stricter schema: labels of at most 8 characters, `limits.max` at most 5 (CEL), and a
/// transition rule that `limits.max` stays below 100.
fn strict() -> Value {
    json!({
        "type": "object",
        "properties": {
            "label": { "type": "string", "maxLength": 8 },
            "size": { "type": "integer" },
            "limits": {
                "type": "object",
                "properties": { "max": { "type": "integer" } },
                "x-kubernetes-validations": [
                    { "rule": "self.max <= 5", "message": "max must be at most 5" },
                ],
            },
            "quota": {
                "type": "object",
                "properties": { "max": { "type": "integer" } },
                "x-kubernetes-validations": [
                    { "rule": "oldSelf.max < 100", "message": "quota was too large" },
                ],
            },
        },
    })
}

fn api_error(err: kube::Error) -> Status {
    match err {
        kube::Error::Api(status) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn boxes(cluster: &DevCluster) -> (kube::Client, Api<DynamicObject>) {
    let client = cluster.client().unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &crd(lenient()))
        .await
        .unwrap();
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("ratchet.devcluster.io", "v1", "Box"),
        "boxes",
    );
    let api = Api::namespaced_with(client.clone(), "default", &resource);
    // why: the CRD is served once established, which devcluster does within the create.
    tokio::time::sleep(Duration::from_millis(50)).await;
    (client, api)
}

async fn tighten(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let patch = json!({ "spec": { "versions": [{
        "name": "v1", "served": true, "storage": true,
        "schema": { "openAPIV3Schema": { "type": "object", "properties": { "spec": strict() } } },
    }]}});
    crds.patch(CRD_NAME, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
}

fn a_box(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "ratchet.devcluster.io/v1",
        "kind": "Box",
        "metadata": { "name": name },
        "spec": spec,
    }))
    .expect("box")
}

fn merge(spec: Value) -> Patch<Value> {
    Patch::Merge(json!({ "spec": spec }))
}

#[tokio::test]
async fn unchanged_invalid_fields_do_not_block_updates_of_others() {
    let cluster = DevCluster::start().await.unwrap();
    let (client, boxes) = boxes(&cluster).await;
    boxes
        .create(
            &PostParams::default(),
            &a_box(
                "old",
                json!({ "label": "far-too-long", "size": 1, "limits": { "max": 9 } }),
            ),
        )
        .await
        .unwrap();
    tighten(&client).await;

    boxes
        .patch("old", &PatchParams::default(), &merge(json!({ "size": 2 })))
        .await
        .expect("the too-long label and the too-large max are unchanged");

    let err = boxes
        .patch(
            "old",
            &PatchParams::default(),
            &merge(json!({ "label": "still-too-long" })),
        )
        .await
        .unwrap_err();
    let status = api_error(err);
    assert_eq!(
        (status.code, status.reason.as_str(), status.message.as_str()),
        (
            422,
            "Invalid",
            "Box.ratchet.devcluster.io \"old\" is invalid: spec.label: Too long: may not be more than 8 bytes"
        )
    );

    let err = boxes
        .patch(
            "old",
            &PatchParams::default(),
            &merge(json!({ "limits": { "max": 8 } })),
        )
        .await
        .unwrap_err();
    let status = api_error(err);
    assert_eq!(
        (status.code, status.reason.as_str(), status.message.as_str()),
        (
            422,
            "Invalid",
            "Box.ratchet.devcluster.io \"old\" is invalid: spec.limits: Invalid value: \"object\": max must be at most 5"
        )
    );
}

#[tokio::test]
async fn new_objects_get_the_stricter_schema_in_full() {
    let cluster = DevCluster::start().await.unwrap();
    let (client, boxes) = boxes(&cluster).await;
    tighten(&client).await;
    let err = boxes
        .create(
            &PostParams::default(),
            &a_box("new", json!({ "label": "far-too-long" })),
        )
        .await
        .unwrap_err();
    let status = api_error(err);
    assert_eq!(
        (status.code, status.message.as_str()),
        (
            422,
            "Box.ratchet.devcluster.io \"new\" is invalid: spec.label: Too long: may not be more than 8 bytes"
        )
    );
}

#[tokio::test]
async fn transition_rules_never_ratchet() {
    let cluster = DevCluster::start().await.unwrap();
    let (client, boxes) = boxes(&cluster).await;
    boxes
        .create(
            &PostParams::default(),
            &a_box("quota", json!({ "size": 1, "quota": { "max": 500 } })),
        )
        .await
        .unwrap();
    tighten(&client).await;
    let err = boxes
        .patch(
            "quota",
            &PatchParams::default(),
            &merge(json!({ "size": 2 })),
        )
        .await
        .unwrap_err();
    let status = api_error(err);
    assert_eq!(
        (status.code, status.message.as_str()),
        (
            422,
            "Box.ratchet.devcluster.io \"quota\" is invalid: spec.quota: Invalid value: \"object\": quota was too large"
        )
    );
}

#[tokio::test]
async fn kubectl_shows_ratcheted_rule_failures_as_warnings() {
    let kube = Kube::start().await;
    let client = kube.cluster.client().unwrap();
    let (_, boxes) = boxes(&kube.cluster).await;
    boxes
        .create(
            &PostParams::default(),
            &a_box("old", json!({ "size": 1, "limits": { "max": 9 } })),
        )
        .await
        .unwrap();
    tighten(&client).await;

    let output = kube
        .kubectl(&[
            "patch",
            "boxes.ratchet.devcluster.io",
            "old",
            "--type=merge",
            "-p",
            r#"{"spec":{"size":2}}"#,
        ])
        .await;
    assert!(output.status.success(), "{output:?}");
    assert!(
        output
            .stderr
            .contains("Warning: spec.limits: Invalid value: \"object\": max must be at most 5"),
        "{}",
        output.stderr
    );
}
