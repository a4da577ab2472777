//! managedFields bookkeeping of Update operations and how they interact with apply.

use serde_json::{json, Value};

use super::*;

const NOW: &str = "2026-11-23T10:00:00Z";

fn secret(data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": data})
}

fn fields_of(object: &Value, manager: &str, operation: &str) -> Option<Value> {
    object["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager && e["operation"] == operation)
        .map(|e| e["fieldsV1"].clone())
}

fn updated(old: Option<&Value>, mut new: Value, manager: &str) -> Value {
    record_update(old, &mut new, manager, None, NOW);
    new
}

#[test]
fn create_gives_the_manager_every_field_it_set() {
    let created = updated(None, secret(json!({"a": "MQ=="})), "kubectl-create");
    assert_eq!(
        fields_of(&created, "kubectl-create", "Update"),
        Some(json!({"f:data": {"f:a": {}}}))
    );
    assert_eq!(created["metadata"]["managedFields"][0]["time"], NOW);
}

#[test]
fn an_update_that_changes_nothing_leaves_managed_fields_alone() {
    let created = updated(None, secret(json!({"a": "MQ=="})), "alice");
    let again = updated(Some(&created), created.clone(), "bob");
    assert_eq!(again, created);
}

#[test]
fn changing_a_field_takes_it_from_its_owner() {
    let request = ApplyRequest {
        manager: "alice",
        force: false,
        subresource: None,
        schema: None,
        now: NOW,
    };
    let applied = server_side_apply(None, &secret(json!({"a": "MQ==", "b": "Mg=="})), &request);
    let live = applied.unwrap();
    let mut edited = live.clone();
    edited["data"]["a"] = json!("Mw==");
    let edited = updated(Some(&live), edited, "bob");
    assert_eq!(
        fields_of(&edited, "alice", "Apply"),
        Some(json!({"f:data": {"f:b": {}}}))
    );
    assert_eq!(
        fields_of(&edited, "bob", "Update"),
        Some(json!({"f:data": {"f:a": {}}}))
    );

    // alice no longer owns `a`, so applying without it leaves bob's value in place.
    let reapplied = server_side_apply(Some(&edited), &secret(json!({"b": "Mg=="})), &request);
    assert_eq!(
        reapplied.unwrap()["data"],
        json!({"a": "Mw==", "b": "Mg=="})
    );
}

#[test]
fn removed_fields_leave_every_owner() {
    let live = updated(None, secret(json!({"a": "MQ==", "b": "Mg=="})), "alice");
    let mut edited = live.clone();
    edited["data"].as_object_mut().unwrap().remove("a");
    let edited = updated(Some(&live), edited, "bob");
    assert_eq!(
        fields_of(&edited, "alice", "Update"),
        Some(json!({"f:data": {"f:b": {}}}))
    );
    assert_eq!(fields_of(&edited, "bob", "Update"), None);
}

#[test]
fn status_updates_are_recorded_against_the_status_subresource() {
    let live = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "status": {}});
    let mut new = live.clone();
    new["status"]["phase"] = json!("Running");
    record_update(Some(&live), &mut new, "kubelet", Some("status"), NOW);
    let entry = &new["metadata"]["managedFields"][0];
    assert_eq!(entry["subresource"], "status");
    assert_eq!(entry["fieldsV1"], json!({"f:status": {"f:phase": {}}}));
}

#[test]
fn custom_resource_updates_use_schema_list_types() {
    let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
        "conditions": {"type": "array", "items": {"type": "object"}}
    }}}});
    let mut new = json!({"apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": "w"},
                         "spec": {"tags": ["a"], "conditions": [{"type": "Ready"}]}});
    record_update_with_schema(None, &mut new, "alice", None, Some(&schema), NOW);
    assert_eq!(
        fields_of(&new, "alice", "Update"),
        Some(json!({"f:spec": {"f:conditions": {}, "f:tags": {"v:\"a\"": {}}}}))
    );
}

#[test]
fn a_list_item_kept_for_another_owner_keeps_its_key() {
    let deployment = |containers: Value| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
               "spec": {"template": {"spec": {"containers": containers}}}})
    };
    let request = ApplyRequest {
        manager: "alice",
        force: false,
        subresource: None,
        schema: None,
        now: NOW,
    };
    let first = deployment(json!([{"name": "app", "image": "app:1", "args": ["-v"]}]));
    let live = server_side_apply(None, &first, &request).unwrap();
    // `kubectl set image` by another manager takes over the image only.
    let mut edited = live.clone();
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = json!("app:2");
    let edited = updated(Some(&live), edited, "kubectl-set");

    let dropped = server_side_apply(Some(&edited), &deployment(json!([])), &request).unwrap();
    assert_eq!(
        dropped["spec"]["template"]["spec"]["containers"],
        json!([{"name": "app", "image": "app:2"}])
    );
}
