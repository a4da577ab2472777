//! Table rendering: CRD printer columns, built-in columns, ages.

#[path = "support/resource_types.rs"]
mod resource_types;

use chrono::{DateTime, Duration, Utc};
use devcluster::table::{human_duration, jsonpath::JsonPath, to_table};
use resource_types::{access_key, builtin};
use serde_json::{json, Value};

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z")
        .expect("timestamp")
        .with_timezone(&Utc)
}

fn column_names(table: &Value) -> Vec<String> {
    table["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| c["name"].as_str().expect("name").to_owned())
        .collect()
}

fn access_key_object() -> Value {
    json!({
        "apiVersion": "keywarden.io/v1alpha1",
        "kind": "AccessKey",
        "metadata": {"name": "ci", "namespace": "team-a", "creationTimestamp": "2026-11-20T12:00:00Z"},
        "spec": {"owner": {"name": "alice"}},
        "status": {
            "phase": "Active",
            "scopeCount": 2,
            "expiresAt": "2026-11-23T11:55:00Z",
            "conditions": [
                {"type": "Issued", "status": "True"},
                {"type": "Ready", "status": "False"},
            ],
        },
    })
}

#[test]
fn custom_resources_render_their_printer_columns() {
    let table = to_table(
        &access_key("v1alpha1"),
        &[access_key_object()],
        json!({"resourceVersion": "42"}),
        false,
        now(),
    );
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(table["metadata"]["resourceVersion"], "42");
    assert_eq!(
        column_names(&table),
        ["Name", "Owner", "Phase", "Ready", "Scopes", "Expires", "Age"]
    );
    assert_eq!(table["columnDefinitions"][4]["priority"], 1);
    assert_eq!(
        table["rows"][0]["cells"],
        json!(["ci", "alice", "Active", "False", 2, "5m", "3d"])
    );
    assert!(table["rows"][0].get("object").is_none());
}

#[test]
fn missing_values_render_as_null_cells() {
    let mut object = access_key_object();
    object["status"] = json!({});
    let table = to_table(&access_key("v1alpha1"), &[object], json!({}), true, now());
    assert_eq!(
        table["rows"][0]["cells"],
        json!(["ci", "alice", null, null, null, null, "3d"])
    );
    assert_eq!(table["rows"][0]["object"]["metadata"]["name"], "ci");
}

#[test]
fn custom_resources_without_printer_columns_show_age() {
    let mut rt = access_key("v1alpha1");
    let mut crd = (**rt.crd.as_ref().expect("crd")).clone();
    crd.printer_columns = json!([]);
    rt.crd = Some(std::sync::Arc::new(crd));
    let table = to_table(&rt, &[access_key_object()], json!({}), false, now());
    assert_eq!(column_names(&table), ["Name", "Age"]);
    assert_eq!(table["rows"][0]["cells"], json!(["ci", "3d"]));
}

#[test]
fn secrets_show_type_and_data_count() {
    let secret = json!({
        "metadata": {"name": "creds", "creationTimestamp": "2026-11-23T11:59:30Z"},
        "type": "kubernetes.io/basic-auth",
        "data": {"username": "YQ==", "password": "Yg=="},
    });
    let table = to_table(
        &builtin("", "v1", "Secret", "secrets", true),
        &[secret],
        json!({}),
        false,
        now(),
    );
    assert_eq!(column_names(&table), ["Name", "Type", "Data", "Age"]);
    assert_eq!(
        table["rows"][0]["cells"],
        json!(["creds", "kubernetes.io/basic-auth", 2, "30s"])
    );
}

#[test]
fn config_maps_and_namespaces_show_their_usual_columns() {
    let cm = json!({"metadata": {"name": "settings", "creationTimestamp": "2026-11-23T09:00:00Z"}, "data": {"a": "1"}});
    let table = to_table(
        &builtin("", "v1", "ConfigMap", "configmaps", true),
        &[cm],
        json!({}),
        false,
        now(),
    );
    assert_eq!(column_names(&table), ["Name", "Data", "Age"]);
    assert_eq!(table["rows"][0]["cells"], json!(["settings", 1, "3h"]));
    let ns = json!({"metadata": {"name": "team-a", "creationTimestamp": "2026-11-23T11:00:00Z"}, "status": {"phase": "Active"}});
    let table = to_table(
        &builtin("", "v1", "Namespace", "namespaces", false),
        &[ns],
        json!({}),
        false,
        now(),
    );
    assert_eq!(column_names(&table), ["Name", "Status", "Age"]);
    assert_eq!(
        table["rows"][0]["cells"],
        json!(["team-a", "Active", "60m"])
    );
}

#[test]
fn events_show_last_seen_reason_object_and_message() {
    let event = json!({
        "metadata": {"name": "ci.1", "namespace": "team-a"},
        "involvedObject": {"kind": "AccessKey", "name": "ci"},
        "reason": "Issued",
        "type": "Normal",
        "message": "issued key AKW1 ",
        "source": {},
        "reportingComponent": "keywarden",
        "eventTime": "2026-11-23T11:58:00.000000Z",
        "firstTimestamp": null,
        "lastTimestamp": null,
    });
    let table = to_table(
        &builtin("", "v1", "Event", "events", true),
        &[event],
        json!({}),
        false,
        now(),
    );
    assert_eq!(
        column_names(&table),
        [
            "Last Seen",
            "Type",
            "Reason",
            "Object",
            "Subobject",
            "Source",
            "Message",
            "First Seen",
            "Count",
            "Name"
        ]
    );
    assert_eq!(
        table["rows"][0]["cells"],
        json!([
            "2m",
            "Normal",
            "Issued",
            "accesskey/ci",
            "",
            "keywarden",
            "issued key AKW1",
            "2m",
            1,
            "ci.1"
        ])
    );
}

#[test]
fn kinds_without_a_printer_show_created_at() {
    let crd = json!({"metadata": {"name": "accesskeys.keywarden.io", "creationTimestamp": "2026-11-23T10:00:00Z"}});
    let rt = builtin(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
    );
    let table = to_table(&rt, &[crd], json!({}), false, now());
    assert_eq!(column_names(&table), ["Name", "Created At"]);
    assert_eq!(
        table["rows"][0]["cells"],
        json!(["accesskeys.keywarden.io", "2026-11-23T10:00:00Z"])
    );
}

#[test]
fn ages_read_like_the_real_server() {
    let cases = [
        (Duration::seconds(-5), "<invalid>"),
        (Duration::seconds(-1), "0s"),
        (Duration::seconds(59), "59s"),
        (Duration::seconds(119), "119s"),
        (Duration::seconds(150), "2m30s"),
        (Duration::minutes(5), "5m"),
        (Duration::minutes(45), "45m"),
        (Duration::minutes(200), "3h20m"),
        (Duration::hours(10), "10h"),
        (Duration::hours(50), "2d2h"),
        (Duration::days(3), "3d"),
        (Duration::days(30), "30d"),
        (Duration::days(800), "2y70d"),
        (Duration::days(3650), "10y"),
    ];
    for (elapsed, expected) in cases {
        assert_eq!(human_duration(elapsed), expected, "{elapsed}");
    }
}

#[test]
fn json_path_supports_filters_indexes_and_quoted_keys() {
    let obj = json!({
        "metadata": {"annotations": {"keywarden.io/owner": "alice"}},
        "items": [{"name": "a", "v": 1}, {"name": "b", "v": 2}],
    });
    let first = |p: &str| {
        JsonPath::parse(p)
            .expect(p)
            .find(&obj)
            .first()
            .map(|v| (*v).clone())
    };
    assert_eq!(first(".items[1].name"), Some(json!("b")));
    assert_eq!(first(".items[-1].v"), Some(json!(2)));
    assert_eq!(first("{.items[?(@.name=='b')].v}"), Some(json!(2)));
    assert_eq!(
        first(".metadata.annotations['keywarden.io/owner']"),
        Some(json!("alice"))
    );
    assert_eq!(first(".items[*].name"), Some(json!("a")));
    assert_eq!(first(".missing.field"), None);
}
