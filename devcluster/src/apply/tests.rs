//! Server-side apply: ownership, conflicts, co-ownership, removal and list types.

use serde_json::{json, Value};

use super::*;
use crate::patch::strategic_merge_patch;

const NOW: &str = "2026-11-23T10:00:00Z";

fn request<'a>(manager: &'a str, schema: Option<&'a Value>) -> ApplyRequest<'a> {
    ApplyRequest {
        manager,
        force: false,
        subresource: None,
        schema,
        now: NOW,
    }
}

fn apply(live: Option<&Value>, applied: Value, manager: &str) -> Result<Value, ApplyError> {
    server_side_apply(live, &applied, &request(manager, None))
}

fn force_apply(live: &Value, applied: Value, manager: &str) -> Value {
    let request = ApplyRequest {
        force: true,
        ..request(manager, None)
    };
    server_side_apply(Some(live), &applied, &request).unwrap()
}

fn config_map(data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": data})
}

fn entry<'v>(object: &'v Value, manager: &str) -> Option<&'v Value> {
    object["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager)
}

fn conflicts(result: Result<Value, ApplyError>) -> Vec<(String, String)> {
    match result {
        Err(ApplyError::Conflict(conflicts)) => conflicts
            .into_iter()
            .map(|c| (c.manager, c.field))
            .collect(),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[test]
fn apply_on_a_missing_object_creates_it_with_a_managed_fields_entry() {
    let created = apply(None, config_map(json!({"a": "1"})), "alice").unwrap();
    assert_eq!(created["data"], json!({"a": "1"}));
    assert_eq!(
        created["metadata"]["managedFields"],
        json!([{
            "manager": "alice",
            "operation": "Apply",
            "apiVersion": "v1",
            "time": NOW,
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:data": {"f:a": {}}}
        }])
    );
}

#[test]
fn changing_a_field_owned_by_another_manager_conflicts_unless_forced() {
    let live = apply(None, config_map(json!({"a": "1", "b": "1"})), "alice").unwrap();
    let result = apply(Some(&live), config_map(json!({"a": "2"})), "bob");
    assert_eq!(
        conflicts(result),
        [("alice".to_string(), ".data.a".to_string())]
    );

    let forced = force_apply(&live, config_map(json!({"a": "2"})), "bob");
    assert_eq!(forced["data"], json!({"a": "2", "b": "1"}));
    assert_eq!(
        entry(&forced, "alice").unwrap()["fieldsV1"],
        json!({"f:data": {"f:b": {}}})
    );
    assert_eq!(
        entry(&forced, "bob").unwrap()["fieldsV1"],
        json!({"f:data": {"f:a": {}}})
    );
}

#[test]
fn applying_the_same_value_co_owns_the_field_and_it_survives_one_owner_leaving() {
    let live = apply(None, config_map(json!({"a": "1"})), "alice").unwrap();
    let shared = apply(Some(&live), config_map(json!({"a": "1"})), "bob").unwrap();
    assert_eq!(
        entry(&shared, "bob").unwrap()["fieldsV1"],
        json!({"f:data": {"f:a": {}}})
    );
    assert!(entry(&shared, "alice").is_some());

    let alice_leaves = apply(Some(&shared), config_map(json!({})), "alice").unwrap();
    assert_eq!(alice_leaves["data"], json!({"a": "1"}));
    assert!(entry(&alice_leaves, "alice").is_none());
}

#[test]
fn fields_a_manager_stops_applying_are_removed() {
    let live = apply(None, config_map(json!({"a": "1", "b": "2"})), "alice").unwrap();
    let next = apply(Some(&live), config_map(json!({"a": "1"})), "alice").unwrap();
    assert_eq!(next["data"], json!({"a": "1"}));
    assert_eq!(
        entry(&next, "alice").unwrap()["fieldsV1"],
        json!({"f:data": {"f:a": {}}})
    );
}

#[test]
fn labels_are_owned_one_by_one() {
    let labelled = |labels: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "labels": labels}});
    let live = apply(None, labelled(json!({"team": "a"})), "alice").unwrap();
    let both = apply(Some(&live), labelled(json!({"env": "prod"})), "bob").unwrap();
    assert_eq!(
        both["metadata"]["labels"],
        json!({"team": "a", "env": "prod"})
    );
    let bob_leaves = apply(Some(&both), labelled(json!({})), "bob").unwrap();
    assert_eq!(bob_leaves["metadata"]["labels"], json!({"team": "a"}));
}

#[test]
fn identical_reapply_keeps_the_entry_time() {
    let live = apply(None, config_map(json!({"a": "1"})), "alice").unwrap();
    let later = ApplyRequest {
        now: "2030-01-01T00:00:00Z",
        ..request("alice", None)
    };
    let again = server_side_apply(Some(&live), &config_map(json!({"a": "1"})), &later).unwrap();
    assert_eq!(again, live);
}

/// The pattern kube-lease-manager relies on to keep two holders apart.
#[test]
fn lease_holders_conflict_on_holder_identity_until_released() {
    let lock = |holder: &str| {
        json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "leader", "namespace": "default"},
            "spec": {
                "acquireTime": NOW,
                "renewTime": NOW,
                "holderIdentity": holder,
                "leaseDurationSeconds": 5
            }
        })
    };
    let empty = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "leader", "namespace": "default"},
        "spec": {}
    });
    let mut live = apply(Some(&empty), lock("a"), "kube-lease-a").unwrap();
    // The holder bumps leaseTransitions and renews with strategic merge patches.
    for patch in [
        json!({"spec": {"leaseTransitions": 1}}),
        json!({"spec": {"renewTime": "2026-11-23T10:00:02Z", "leaseDurationSeconds": 5}}),
    ] {
        let old = live.clone();
        strategic_merge_patch(&mut live, &patch, "Lease").unwrap();
        record_update(Some(&old), &mut live, "kube-lease-a", None, NOW);
    }

    let contender = apply(Some(&live), lock("b"), "kube-lease-b");
    let fields: Vec<String> = conflicts(contender).into_iter().map(|(_, f)| f).collect();
    assert!(
        fields.contains(&".spec.holderIdentity".to_string()),
        "{fields:?}"
    );
    assert_eq!(live["spec"]["holderIdentity"], "a");

    // Release: the holder nulls its fields with a strategic merge patch.
    let old = live.clone();
    let release = json!({"spec": {
        "acquireTime": null, "renewTime": null, "holderIdentity": null, "leaseDurationSeconds": null
    }});
    strategic_merge_patch(&mut live, &release, "Lease").unwrap();
    record_update(Some(&old), &mut live, "kube-lease-a", None, NOW);

    let taken = apply(Some(&live), lock("b"), "kube-lease-b").unwrap();
    assert_eq!(taken["spec"]["holderIdentity"], "b");
    assert_eq!(taken["spec"]["leaseTransitions"], 1);
    let again = apply(Some(&taken), lock("a"), "kube-lease-a");
    assert!(matches!(again, Err(ApplyError::Conflict(_))));
}

fn widget_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {
                "ports": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": {"type": "object", "properties": {
                        "name": {"type": "string"}, "port": {"type": "integer"}
                    }}
                },
                "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                "args": {"type": "array", "items": {"type": "string"}}
            }}
        }
    })
}

fn widget(spec: Value) -> Value {
    json!({"apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec})
}

#[test]
fn custom_resource_lists_merge_by_their_schema_list_type() {
    let schema = widget_schema();
    let apply_widget = |live: Option<&Value>, spec: Value, manager: &str| {
        server_side_apply(live, &widget(spec), &request(manager, Some(&schema)))
    };
    let live = apply_widget(
        None,
        json!({"ports": [{"name": "http", "port": 80}], "tags": ["a"], "args": ["x"]}),
        "alice",
    )
    .unwrap();
    let merged = apply_widget(
        Some(&live),
        json!({"ports": [{"name": "grpc", "port": 90}], "tags": ["b"]}),
        "bob",
    )
    .unwrap();
    assert_eq!(
        merged["spec"],
        json!({
            "ports": [{"name": "http", "port": 80}, {"name": "grpc", "port": 90}],
            "tags": ["a", "b"],
            "args": ["x"]
        })
    );
    assert_eq!(
        entry(&merged, "bob").unwrap()["fieldsV1"],
        json!({"f:spec": {
            "f:ports": {"k:{\"name\":\"grpc\"}": {".": {}, "f:name": {}, "f:port": {}}},
            "f:tags": {"v:\"b\"": {}}
        }})
    );

    let atomic = apply_widget(Some(&merged), json!({"args": ["y"]}), "bob");
    assert_eq!(
        conflicts(atomic),
        [("alice".to_string(), ".spec.args".to_string())]
    );
    let same_port = apply_widget(
        Some(&merged),
        json!({"ports": [{"name": "http", "port": 8080}]}),
        "bob",
    );
    assert_eq!(
        conflicts(same_port),
        [(
            "alice".to_string(),
            r#".spec.ports[name="http"].port"#.to_string()
        )]
    );

    let alice_drops_http = apply_widget(
        Some(&merged),
        json!({"tags": ["a"], "args": ["x"]}),
        "alice",
    );
    assert_eq!(
        alice_drops_http.unwrap()["spec"]["ports"],
        json!([{"name": "grpc", "port": 90}])
    );
}

#[test]
fn list_map_items_without_their_key_are_invalid() {
    let schema = widget_schema();
    let result = server_side_apply(
        None,
        &widget(json!({"ports": [{"port": 80}]})),
        &request("alice", Some(&schema)),
    );
    assert!(matches!(result, Err(ApplyError::Invalid(message)) if message.contains("name")));
    assert!(matches!(
        server_side_apply(None, &json!([1]), &request("alice", None)),
        Err(ApplyError::Invalid(_))
    ));
}

#[test]
fn built_in_containers_merge_by_name_across_managers() {
    let deployment = |containers: Value| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
               "spec": {"template": {"spec": {"containers": containers}}}})
    };
    let live = apply(
        None,
        deployment(json!([{"name": "app", "image": "app:1"}])),
        "alice",
    )
    .unwrap();
    let merged = apply(
        Some(&live),
        deployment(json!([{"name": "sidecar", "image": "proxy:1"}])),
        "mesh",
    )
    .unwrap();
    let containers = &merged["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers.as_array().unwrap().len(), 2);
    let bump = apply(
        Some(&merged),
        deployment(json!([{"name": "sidecar", "image": "proxy:2"}])),
        "alice",
    );
    assert_eq!(
        conflicts(bump),
        [(
            "mesh".to_string(),
            r#".spec.template.spec.containers[name="sidecar"].image"#.to_string()
        )]
    );
}

#[test]
fn status_apply_touches_only_status_and_records_the_subresource() {
    let live = json!({
        "apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": "w"},
        "spec": {"size": 1}, "status": {"phase": "Old"}
    });
    let applied = json!({
        "apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": "w"},
        "spec": {"size": 99}, "status": {"phase": "Ready"}
    });
    let request = ApplyRequest {
        subresource: Some("status"),
        ..request("controller", None)
    };
    let out = server_side_apply(Some(&live), &applied, &request).unwrap();
    assert_eq!(out["spec"], json!({"size": 1}));
    assert_eq!(out["status"], json!({"phase": "Ready"}));
    let entry = entry(&out, "controller").unwrap();
    assert_eq!(entry["subresource"], "status");
    assert_eq!(entry["fieldsV1"], json!({"f:status": {"f:phase": {}}}));
}

#[test]
fn an_applied_null_removes_the_field_but_conflicts_with_its_owner() {
    let live = apply(None, config_map(json!({"a": "1", "b": "2"})), "alice").unwrap();
    assert_eq!(
        conflicts(apply(Some(&live), config_map(json!({"a": null})), "bob")),
        [("alice".to_string(), ".data.a".to_string())]
    );
    let mine = apply(
        Some(&live),
        config_map(json!({"a": null, "b": "2"})),
        "alice",
    )
    .unwrap();
    assert_eq!(mine["data"], json!({"b": "2"}));
    let created = apply(None, config_map(json!({"x": null, "y": "1"})), "carol").unwrap();
    assert_eq!(created["data"], json!({"y": "1"}));
}

#[test]
fn conflict_messages_read_like_the_api_server() {
    let conflict = |manager: &str, field: &str| FieldConflict {
        manager: manager.into(),
        field: field.into(),
    };
    let one = ApplyError::Conflict(vec![conflict("alice", ".data.a")]);
    assert_eq!(
        one.to_string(),
        "Apply failed with 1 conflict: conflict with \"alice\": .data.a"
    );
    let many = ApplyError::Conflict(vec![
        conflict("bob", ".spec.x"),
        conflict("alice", ".data.a"),
        conflict("alice", ".data.b"),
    ]);
    assert_eq!(
        many.to_string(),
        "Apply failed with 3 conflicts: conflicts with \"alice\":\n- .data.a\n- .data.b\n\
         conflicts with \"bob\":\n- .spec.x"
    );
}

#[test]
fn finalizers_and_owner_references_are_shared_between_managers() {
    let meta = |finalizers: Value, owners: Value| {
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {
            "name": "s", "finalizers": finalizers, "ownerReferences": owners
        }})
    };
    let owner =
        |uid: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "name": uid, "uid": uid});
    let live = apply(None, meta(json!(["a.io/x"]), json!([owner("1")])), "alice").unwrap();
    let both = apply(
        Some(&live),
        meta(json!(["b.io/y"]), json!([owner("2")])),
        "bob",
    )
    .unwrap();
    assert_eq!(both["metadata"]["finalizers"], json!(["a.io/x", "b.io/y"]));
    assert_eq!(
        both["metadata"]["ownerReferences"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let alice_done = apply(Some(&both), meta(json!([]), json!([])), "alice").unwrap();
    assert_eq!(alice_done["metadata"]["finalizers"], json!(["b.io/y"]));
    assert_eq!(
        alice_done["metadata"]["ownerReferences"],
        json!([owner("2")])
    );
}

#[test]
fn objects_compare_without_their_managed_fields_only() {
    let with = |managed: Value, data: Value| {
        let mut object = config_map(data);
        object["metadata"]["managedFields"] = managed;
        object
    };
    let a = with(json!([{"manager": "alice"}]), json!({"a": "1"}));
    assert!(same_but_managed_fields(
        &a,
        &with(json!([]), json!({"a": "1"}))
    ));
    assert!(same_but_managed_fields(&a, &config_map(json!({"a": "1"}))));
    assert!(!same_but_managed_fields(&a, &config_map(json!({"a": "2"}))));
    let mut labelled = config_map(json!({"a": "1"}));
    labelled["metadata"]["labels"] = json!({"team": "x"});
    assert!(!same_but_managed_fields(&a, &labelled));
    let mut without_metadata = config_map(json!({"a": "1"}));
    without_metadata.as_object_mut().unwrap().remove("metadata");
    assert!(!same_but_managed_fields(&a, &without_metadata));
    let mut extra = config_map(json!({"a": "1"}));
    extra["binaryData"] = json!({});
    assert!(!same_but_managed_fields(&a, &extra));
}
