//! OpenAPI v3 documents kubectl validates and explains with.

#[path = "support/resource_types.rs"]
mod resource_types;

use devcluster::openapi::{v3_document, v3_index};
use devcluster::schema::Schema;
use resource_types::{access_key, builtin};
use serde_json::Value;

fn types() -> Vec<devcluster::registry::ResourceType> {
    vec![
        builtin("", "v1", "Secret", "secrets", true),
        builtin("", "v1", "Namespace", "namespaces", false),
        builtin("", "v1", "Widget", "widgets", true),
        access_key("v1alpha1"),
    ]
}

fn gvk_of(schema: &Value) -> &Value {
    &schema["x-kubernetes-group-version-kind"][0]
}

#[test]
fn index_points_at_every_group_version_with_a_content_hash() {
    let index = v3_index(&types());
    let core = index["paths"]["api/v1"]["serverRelativeURL"]
        .as_str()
        .expect("api/v1");
    assert!(core.starts_with("/openapi/v3/api/v1?hash="), "{core}");
    let keywarden = &index["paths"]["apis/keywarden.io/v1alpha1"]["serverRelativeURL"];
    assert!(keywarden
        .as_str()
        .is_some_and(|u| u.starts_with("/openapi/v3/apis/keywarden.io/v1alpha1?hash=")));
}

#[test]
fn hash_changes_when_a_crd_schema_changes() {
    let before = v3_index(&types());
    let mut changed = types();
    let mut crd = (**changed[3].crd.as_ref().expect("crd")).clone();
    let mut schema = (*crd.schema).clone();
    schema["properties"]["spec"]["properties"]["note"] = serde_json::json!({"type": "string"});
    crd.schema = Schema::new(schema);
    changed[3].crd = Some(std::sync::Arc::new(crd));
    let after = v3_index(&changed);
    let url = |i: &Value| i["paths"]["apis/keywarden.io/v1alpha1"]["serverRelativeURL"].clone();
    assert_ne!(url(&before), url(&after));
    assert_eq!(before["paths"]["api/v1"], after["paths"]["api/v1"]);
}

#[test]
fn custom_resource_schema_comes_from_the_crd_with_its_gvk() {
    let doc = v3_document(&types(), "keywarden.io", "v1alpha1").expect("served");
    let schema = &doc["components"]["schemas"]["io.keywarden.v1alpha1.AccessKey"];
    assert_eq!(
        schema["properties"]["spec"]["properties"]["displayName"]["description"],
        "Shown in consoles."
    );
    assert_eq!(schema["properties"]["kind"]["type"], "string");
    assert_eq!(
        schema["properties"]["metadata"]["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    assert_eq!(
        gvk_of(schema),
        &serde_json::json!({"group": "keywarden.io", "version": "v1alpha1", "kind": "AccessKey"})
    );
    assert!(
        doc["components"]["schemas"]["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"].is_object()
    );
}

#[test]
fn built_in_schemas_come_from_k8s_openapi_with_their_gvk() {
    let doc = v3_document(&types(), "", "v1").expect("served");
    let secret = &doc["components"]["schemas"]["io.k8s.api.core.v1.Secret"];
    assert_eq!(secret["properties"]["type"]["type"], "string");
    assert_eq!(gvk_of(secret)["kind"], "Secret");
    assert_eq!(gvk_of(secret)["group"], "");
    let widget = &doc["components"]["schemas"]["io.k8s.api.core.v1.Widget"];
    assert_eq!(
        widget["x-kubernetes-preserve-unknown-fields"], true,
        "{doc:#}"
    );
}

#[test]
fn resource_paths_name_their_kind_for_explain() {
    let doc = v3_document(&types(), "", "v1").expect("served");
    assert_eq!(
        doc["paths"]["/api/v1/secrets"]["get"]["x-kubernetes-group-version-kind"]["kind"],
        "Secret"
    );
    assert_eq!(
        doc["paths"]["/api/v1/namespaces"]["get"]["x-kubernetes-group-version-kind"]["kind"],
        "Namespace"
    );
    assert!(doc["paths"]["/api/v1/namespaces/{namespace}/namespaces"].is_null());
}

#[test]
fn patch_operations_advertise_field_validation_without_strategic_merge() {
    let doc = v3_document(&types(), "keywarden.io", "v1alpha1").expect("served");
    let patch = &doc["paths"]
        ["/apis/keywarden.io/v1alpha1/namespaces/{namespace}/accesskeys/{name}"]["patch"];
    assert_eq!(
        patch["x-kubernetes-group-version-kind"]["kind"],
        "AccessKey"
    );
    let parameters = patch["parameters"].as_array().expect("parameters");
    assert!(parameters
        .iter()
        .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"));
    assert!(parameters.iter().any(|p| p["name"] == "dryRun"));
    let content = patch["requestBody"]["content"]
        .as_object()
        .expect("content");
    assert!(content.contains_key("application/merge-patch+json"));
    assert!(!content.contains_key("application/strategic-merge-patch+json"));
    assert!(doc["paths"]
        ["/apis/keywarden.io/v1alpha1/namespaces/{namespace}/accesskeys/{name}/status"]["patch"]
        .is_object());
}

#[test]
fn unknown_group_versions_have_no_document() {
    assert!(v3_document(&types(), "keywarden.io", "v2").is_none());
}
