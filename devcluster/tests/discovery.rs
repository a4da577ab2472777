//! Discovery documents kubectl resolves resource names with.

#[path = "support/resource_types.rs"]
mod resource_types;

use devcluster::discovery::{
    api_group_list, api_resource_list, compare_versions, core_api_versions, version,
};
use resource_types::{access_key, builtin};
use serde_json::Value;

fn types() -> Vec<devcluster::registry::ResourceType> {
    vec![
        builtin("", "v1", "Secret", "secrets", true),
        builtin("", "v1", "Namespace", "namespaces", false),
        builtin("apps", "v1", "Deployment", "deployments", true),
        access_key("v1alpha1"),
        access_key("v1beta1"),
    ]
}

fn resource<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["resources"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == name))
        .unwrap_or_else(|| panic!("{name} missing from {list}"))
}

#[test]
fn version_reports_a_1_32_server() {
    let v = version();
    assert_eq!(v["major"], "1");
    assert_eq!(v["minor"], "32");
    assert!(v["gitVersion"]
        .as_str()
        .is_some_and(|g| g.starts_with("v1.32.")));
}

#[test]
fn core_api_versions_lists_v1_and_the_server_address() {
    let doc = core_api_versions("127.0.0.1:6443");
    assert_eq!(doc["kind"], "APIVersions");
    assert_eq!(doc["versions"], serde_json::json!(["v1"]));
    assert_eq!(
        doc["serverAddressByClientCIDRs"][0]["serverAddress"],
        "127.0.0.1:6443"
    );
}

#[test]
fn group_list_omits_the_core_group_and_prefers_the_most_stable_version() {
    let doc = api_group_list(&types());
    assert_eq!(doc["kind"], "APIGroupList");
    let groups = doc["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 2, "{doc}");
    let keywarden = groups
        .iter()
        .find(|g| g["name"] == "keywarden.io")
        .expect("keywarden.io");
    assert_eq!(
        keywarden["preferredVersion"]["groupVersion"],
        "keywarden.io/v1beta1"
    );
    assert_eq!(keywarden["versions"][1]["version"], "v1alpha1");
}

#[test]
fn versions_order_ga_then_beta_then_alpha() {
    let mut versions = vec![
        "v1alpha1",
        "foo",
        "v2beta1",
        "v1",
        "v1beta2",
        "v2",
        "v11alpha2",
    ];
    versions.sort_by(|a, b| compare_versions(a, b));
    assert_eq!(
        versions,
        [
            "v2",
            "v1",
            "v2beta1",
            "v1beta2",
            "v11alpha2",
            "v1alpha1",
            "foo"
        ]
    );
}

#[test]
fn resource_list_carries_names_kinds_and_verbs() {
    let list = api_resource_list(&types(), "keywarden.io", "v1alpha1").expect("served");
    assert_eq!(list["kind"], "APIResourceList");
    assert_eq!(list["groupVersion"], "keywarden.io/v1alpha1");
    let ak = resource(&list, "accesskeys");
    assert_eq!(ak["singularName"], "accesskey");
    assert_eq!(ak["kind"], "AccessKey");
    assert_eq!(ak["namespaced"], true);
    assert_eq!(ak["shortNames"], serde_json::json!(["ak"]));
    assert_eq!(ak["categories"], serde_json::json!(["keywarden"]));
    assert!(ak["verbs"]
        .as_array()
        .is_some_and(|v| v.iter().any(|v| v == "watch")));
    let status = resource(&list, "accesskeys/status");
    assert_eq!(
        status["verbs"],
        serde_json::json!(["get", "patch", "update"])
    );
    assert_eq!(status["singularName"], "");
}

#[test]
fn core_resource_list_is_served_for_an_empty_group() {
    let list = api_resource_list(&types(), "", "v1").expect("core served");
    assert_eq!(list["groupVersion"], "v1");
    assert_eq!(resource(&list, "namespaces")["namespaced"], false);
    assert!(
        list["resources"].as_array().is_some_and(|r| r.len() == 2),
        "{list}"
    );
    assert!(resource(&list, "secrets").get("shortNames").is_none());
}

#[test]
fn unknown_group_versions_are_not_found() {
    assert!(api_resource_list(&types(), "keywarden.io", "v9").is_none());
    assert!(api_resource_list(&types(), "nope.io", "v1").is_none());
}
