//! Verbs on built-in kinds through a real kube client.

use std::collections::BTreeMap;

use devcluster::DevCluster;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::Status;
use kube::ResourceExt;

fn config_map(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.to_string());
    cm.data = Some(
        data.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    );
    cm
}

fn api_error(err: kube::Error) -> Status {
    match err {
        kube::Error::Api(response) => *response,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn default_and_kube_system_namespaces_exist_at_start() {
    let cluster = DevCluster::start().await.unwrap();
    let namespaces: Api<Namespace> = Api::all(cluster.client().unwrap());
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|n| n.name_any())
        .collect();
    assert!(names.contains(&"default".to_string()), "{names:?}");
    assert!(names.contains(&"kube-system".to_string()), "{names:?}");
}

#[tokio::test]
async fn create_sets_server_fields_and_get_returns_the_object() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().unwrap(), "default");
    let created = api
        .create(
            &PostParams::default(),
            &config_map("settings", &[("a", "1")]),
        )
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(created.metadata.namespace.as_deref(), Some("default"));
    let fetched = api.get("settings").await.unwrap();
    assert_eq!(fetched.data, created.data);
    assert_eq!(fetched.resource_version(), created.resource_version());
}

#[tokio::test]
async fn get_of_a_missing_object_is_a_404_not_found_status() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<Secret> = Api::namespaced(cluster.client().unwrap(), "default");
    let err = api_error(api.get("missing").await.unwrap_err());
    assert_eq!(err.code, 404);
    assert_eq!(err.reason, "NotFound");
    assert_eq!(err.message, "secrets \"missing\" not found");
    assert!(api.get_opt("missing").await.unwrap().is_none());
}

#[tokio::test]
async fn creating_an_existing_name_is_409_already_exists() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().unwrap(), "default");
    api.create(&PostParams::default(), &config_map("dup", &[]))
        .await
        .unwrap();
    let err = api_error(
        api.create(&PostParams::default(), &config_map("dup", &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(err.message, "configmaps \"dup\" already exists");
}

#[tokio::test]
async fn generate_name_gets_a_random_suffix() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().unwrap(), "default");
    let mut cm = config_map("", &[]);
    cm.metadata.name = None;
    cm.metadata.generate_name = Some("job-".into());
    let created = api.create(&PostParams::default(), &cm).await.unwrap();
    let name = created.name_any();
    assert!(name.starts_with("job-") && name.len() == 9, "{name}");
}

#[tokio::test]
async fn create_in_a_missing_namespace_is_404() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().unwrap(), "nowhere");
    let err = api_error(
        api.create(&PostParams::default(), &config_map("x", &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 404);
    assert_eq!(err.message, "namespaces \"nowhere\" not found");
}

#[tokio::test]
async fn replace_with_a_stale_resource_version_is_409_conflict() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().unwrap(), "default");
    let created = api
        .create(&PostParams::default(), &config_map("cm", &[("a", "1")]))
        .await
        .unwrap();
    let mut first = created.clone();
    first.data = Some([("a".to_string(), "2".to_string())].into());
    let replaced = api
        .replace("cm", &PostParams::default(), &first)
        .await
        .unwrap();
    assert_ne!(replaced.resource_version(), created.resource_version());
    let mut stale = created.clone();
    stale.data = Some([("a".to_string(), "3".to_string())].into());
    let err = api_error(
        api.replace("cm", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        err.message,
        "Operation cannot be fulfilled on configmaps \"cm\": the object has been modified; please apply your changes to the latest version and try again"
    );
}

#[tokio::test]
async fn a_write_that_changes_nothing_keeps_the_resource_version() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().unwrap(), "default");
    let created = api
        .create(&PostParams::default(), &config_map("same", &[("a", "1")]))
        .await
        .unwrap();
    let patched = api
        .patch(
            "same",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "data": { "a": "1" } })),
        )
        .await
        .unwrap();
    assert_eq!(patched.resource_version(), created.resource_version());
    let replaced = api
        .replace("same", &PostParams::default(), &created)
        .await
        .unwrap();
    assert_eq!(replaced.resource_version(), created.resource_version());
}

#[tokio::test]
async fn merge_patch_changes_fields_and_null_deletes() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().unwrap(), "default");
    api.create(
        &PostParams::default(),
        &config_map("p", &[("a", "1"), ("b", "2")]),
    )
    .await
    .unwrap();
    let patch = serde_json::json!({ "data": { "a": "9", "b": null } });
    let patched = api
        .patch("p", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
    assert_eq!(
        patched.data,
        Some([("a".to_string(), "9".to_string())].into())
    );
}

#[tokio::test]
async fn delete_without_finalizers_removes_the_object_and_answers_success() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<Secret> = Api::namespaced(cluster.client().unwrap(), "default");
    let mut secret = Secret::default();
    secret.metadata.name = Some("gone".into());
    api.create(&PostParams::default(), &secret).await.unwrap();
    let deleted = api.delete("gone", &DeleteParams::default()).await.unwrap();
    assert!(
        deleted.is_right(),
        "a built-in kind answers a Success Status"
    );
    assert!(api.get_opt("gone").await.unwrap().is_none());
    let err = api_error(
        api.delete("gone", &DeleteParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 404);
}

#[tokio::test]
async fn finalizers_hold_a_deleted_object_until_removed() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().unwrap(), "default");
    let mut cm = config_map("held", &[]);
    cm.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    api.create(&PostParams::default(), &cm).await.unwrap();
    let deleted = api.delete("held", &DeleteParams::default()).await.unwrap();
    let marked = deleted
        .left()
        .expect("the object is returned while finalizers remain");
    assert!(marked.metadata.deletion_timestamp.is_some());
    let adding = serde_json::json!({ "metadata": { "finalizers": ["example.com/hold", "example.com/new"] } });
    let err = api_error(
        api.patch("held", &PatchParams::default(), &Patch::Merge(adding))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    assert!(api.get_opt("held").await.unwrap().is_some());
    let release = serde_json::json!({ "metadata": { "finalizers": null } });
    api.patch("held", &PatchParams::default(), &Patch::Merge(release))
        .await
        .unwrap();
    assert!(api.get_opt("held").await.unwrap().is_none());
}

#[tokio::test]
async fn post_to_a_named_resource_is_405_method_not_allowed() {
    let cluster = DevCluster::start().await.unwrap();
    let client = cluster.client().unwrap();
    let request = http::Request::post("/api/v1/namespaces/default/configmaps/named")
        .header("content-type", "application/json")
        .body(br#"{"metadata":{"name":"named"}}"#.to_vec())
        .unwrap();
    let err = api_error(client.request::<ConfigMap>(request).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (405, "MethodNotAllowed"));
}

#[tokio::test]
async fn secret_string_data_is_stored_as_base64_data_with_a_default_type() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<Secret> = Api::namespaced(cluster.client().unwrap(), "default");
    let mut secret = Secret::default();
    secret.metadata.name = Some("creds".into());
    secret.string_data = Some([("password".to_string(), "hunter2".to_string())].into());
    api.create(&PostParams::default(), &secret).await.unwrap();
    let stored = api.get("creds").await.unwrap();
    assert_eq!(stored.type_.as_deref(), Some("Opaque"));
    assert_eq!(stored.string_data, None);
    let data = stored.data.unwrap();
    assert_eq!(data["password"].0, b"hunter2");
}

#[tokio::test]
async fn self_subject_access_reviews_are_always_allowed() {
    let cluster = DevCluster::start().await.unwrap();
    let client = cluster.client().unwrap();
    let request = http::Request::post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")
        .header("content-type", "application/json")
        .body(
            serde_json::to_vec(&serde_json::json!({
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": { "resourceAttributes": { "verb": "delete", "resource": "secrets" } },
            }))
            .unwrap(),
        )
        .unwrap();
    let review: serde_json::Value = client.request(request).await.unwrap();
    assert_eq!(review["status"]["allowed"], true);
}
