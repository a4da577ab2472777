//! Strategic merge patch against the patches kubectl sends.

use serde_json::{json, Value};

use super::{strategic_merge_patch, PatchError};

fn patched(mut target: Value, patch: Value, kind: &str) -> Result<Value, PatchError> {
    strategic_merge_patch(&mut target, &patch, kind).map(|()| target)
}

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
            "template": {"spec": {
                "containers": [
                    {"name": "app", "image": "app:1",
                     "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                     "ports": [{"containerPort": 80}]},
                    {"name": "sidecar", "image": "proxy:1"}
                ],
                "volumes": [{"name": "data", "emptyDir": {}}]
            }}
        }
    })
}

#[test]
fn containers_merge_by_name_instead_of_replacing_the_list() {
    let patch = json!({"spec": {"template": {"spec": {
        "containers": [{"name": "sidecar", "image": "proxy:2"}]
    }}}});
    let out = patched(deployment(), patch, "Deployment").unwrap();
    let containers = &out["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers.as_array().unwrap().len(), 2);
    assert_eq!(containers[0]["image"], "app:1");
    assert_eq!(containers[1]["image"], "proxy:2");
}

#[test]
fn kubectl_apply_patch_with_set_element_order_updates_and_reorders() {
    // What `kubectl apply` sends after swapping container order and bumping an image.
    let patch = json!({
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
            "containers": [{"name": "app", "image": "app:2"}]
        }}}
    });
    let out = patched(deployment(), patch, "Deployment").unwrap();
    let containers = &out["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers[0]["name"], "sidecar");
    assert_eq!(containers[1]["name"], "app");
    assert_eq!(containers[1]["image"], "app:2");
    assert_eq!(containers[1]["env"].as_array().unwrap().len(), 2);
    assert_eq!(
        out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
        "{}"
    );
}

#[test]
fn patch_delete_directive_removes_one_env_var_and_null_removes_a_label() {
    let patch = json!({
        "metadata": {"labels": {"tier": null}},
        "spec": {"template": {"spec": {"containers": [
            {"name": "app", "env": [{"name": "A", "$patch": "delete"}, {"name": "C", "value": "3"}]}
        ]}}}
    });
    let out = patched(deployment(), patch, "Deployment").unwrap();
    assert_eq!(out["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"][0]["env"],
        json!([{"name": "B", "value": "2"}, {"name": "C", "value": "3"}])
    );
}

#[test]
fn retain_keys_drops_fields_not_listed() {
    // `kubectl apply` switching the strategy to Recreate.
    let patch = json!({"spec": {"strategy": {
        "$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null
    }}});
    let out = patched(deployment(), patch, "Deployment").unwrap();
    assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
}

#[test]
fn replace_directive_in_a_list_replaces_the_whole_list() {
    let patch = json!({"spec": {"template": {"spec": {
        "volumes": [{"$patch": "replace"}, {"name": "cache", "emptyDir": {}}]
    }}}});
    let out = patched(deployment(), patch, "Deployment").unwrap();
    assert_eq!(
        out["spec"]["template"]["spec"]["volumes"],
        json!([{"name": "cache", "emptyDir": {}}])
    );
}

#[test]
fn replace_directive_in_a_map_replaces_the_map() {
    let patch = json!({"spec": {"strategy": {"$patch": "replace", "type": "Recreate"}}});
    let out = patched(deployment(), patch, "Deployment").unwrap();
    assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
}

#[test]
fn delete_directive_in_a_map_removes_it() {
    let patch = json!({"spec": {"strategy": {"$patch": "delete"}}});
    let out = patched(deployment(), patch, "Deployment").unwrap();
    assert!(out["spec"].get("strategy").is_none());
}

#[test]
fn container_ports_merge_by_container_port_and_service_ports_by_port() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "ports": [{"containerPort": 443}]}
    ]}}}});
    let out = patched(deployment(), patch, "Deployment").unwrap();
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"][0]["ports"],
        json!([{"containerPort": 80}, {"containerPort": 443}])
    );

    let service = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}]}});
    let patch = json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 443}]}});
    assert_eq!(
        patched(service, patch, "Service").unwrap()["spec"]["ports"],
        json!([{"port": 80, "targetPort": 9090}, {"port": 443}])
    );
}

#[test]
fn finalizers_merge_as_a_set_and_delete_from_primitive_list_removes() {
    let object = json!({"metadata": {"finalizers": ["a", "b"]}});
    let added = patched(
        object.clone(),
        json!({"metadata": {"finalizers": ["b", "c"]}}),
        "Secret",
    );
    assert_eq!(
        added.unwrap()["metadata"]["finalizers"],
        json!(["a", "b", "c"])
    );
    let removed = patched(
        object,
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
        "Secret",
    );
    assert_eq!(removed.unwrap()["metadata"]["finalizers"], json!(["b"]));
}

#[test]
fn lists_without_a_strategy_are_replaced() {
    let role = json!({"rules": [{"verbs": ["get"], "resources": ["pods"]}]});
    let patch = json!({"rules": [{"verbs": ["list"], "resources": ["secrets"]}]});
    assert_eq!(
        patched(role, patch.clone(), "Role").unwrap()["rules"],
        patch["rules"]
    );
}

#[test]
fn config_map_data_keys_merge_and_null_deletes() {
    let config = json!({"data": {"a": "1", "b": "2"}});
    let patch = json!({"data": {"a": null, "c": "3"}});
    assert_eq!(
        patched(config, patch, "ConfigMap").unwrap()["data"],
        json!({"b": "2", "c": "3"})
    );
}

#[test]
fn owner_references_merge_by_uid() {
    let object = json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}]}});
    let patch = json!({"metadata": {"ownerReferences": [{"uid": "2", "name": "b"}]}});
    let out = patched(object, patch, "Secret").unwrap();
    assert_eq!(
        out["metadata"]["ownerReferences"].as_array().unwrap().len(),
        2
    );
}

#[test]
fn malformed_patches_are_rejected_and_leave_the_object_unchanged() {
    let mut object = deployment();
    let missing_key = json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}});
    let err = strategic_merge_patch(&mut object, &missing_key, "Deployment").unwrap_err();
    assert!(
        err.0.contains("does not contain declared merge key: name"),
        "{err}"
    );
    assert_eq!(object, deployment());

    let bad_directive = json!({"spec": {"$patch": "frobnicate"}});
    let err = strategic_merge_patch(&mut object, &bad_directive, "Deployment").unwrap_err();
    assert!(err.0.starts_with("Unknown patch type"), "{err}");
    assert!(strategic_merge_patch(&mut object, &json!([1]), "Deployment").is_err());
}

#[test]
fn kubectl_apply_patch_removing_a_container_and_an_env_var() {
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "app"}],
        "containers": [
            {"$setElementOrder/env": [{"name": "B"}], "name": "app",
             "env": [{"$patch": "delete", "name": "A"}]},
            {"$patch": "delete", "name": "sidecar"}
        ]
    }}}});
    let out = patched(deployment(), patch, "Deployment").unwrap();
    let containers = &out["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers.as_array().unwrap().len(), 1);
    assert_eq!(containers[0]["env"], json!([{"name": "B", "value": "2"}]));
    assert_eq!(containers[0]["image"], "app:1");
}

#[test]
fn retain_keys_inside_a_volume_switches_its_source() {
    let patch = json!({"spec": {"template": {"spec": {"volumes": [
        {"name": "data", "$retainKeys": ["configMap", "name"], "configMap": {"name": "cfg"}}
    ]}}}});
    let out = patched(deployment(), patch, "Deployment").unwrap();
    assert_eq!(
        out["spec"]["template"]["spec"]["volumes"],
        json!([{"name": "data", "configMap": {"name": "cfg"}}])
    );
}

#[test]
fn set_element_order_keeps_server_only_items_in_place() {
    // An injected sidecar first on the server, then kubectl applies its two containers swapped.
    let mut object = deployment();
    object["spec"]["template"]["spec"]["containers"] = json!([
        {"name": "injected"}, {"name": "app"}, {"name": "sidecar"}
    ]);
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}, {"name": "new"}],
        "containers": [{"name": "new", "image": "n:1"}]
    }}}});
    let out = patched(object, patch, "Deployment").unwrap();
    let names: Vec<&str> = out["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["injected", "sidecar", "app", "new"]);
}
