//! The installed CRDs, as an API server enforces them: printer columns, short names, schema
//! validation (patterns, enums, bounds) and the immutability rules, against devcluster (or a real
//! cluster with `KEYWARDEN_TEST_KUBECONFIG`).

use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Api, Client};
use serde_json::{json, Value};

struct Cluster {
    client: Client,
    _devcluster: Option<devcluster::DevCluster>,
}

async fn cluster() -> Cluster {
    let cluster = match std::env::var_os("KEYWARDEN_TEST_KUBECONFIG") {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path).unwrap();
            let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .unwrap();
            Cluster {
                client: Client::try_from(config).unwrap(),
                _devcluster: None,
            }
        }
        None => {
            let devcluster = devcluster::DevCluster::start().await.unwrap();
            Cluster {
                client: devcluster.client().unwrap(),
                _devcluster: Some(devcluster),
            }
        }
    };
    keywarden::cli::manifests::install_crds(&cluster.client)
        .await
        .unwrap();
    cluster
}

fn resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("keywarden.io", "v1alpha1", kind))
}

fn access_keys(client: &Client) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), "default", &resource("AccessKey"))
}

fn policies(client: &Client) -> Api<DynamicObject> {
    Api::all_with(client.clone(), &resource("AccessKeyPolicy"))
}

fn object(kind: &str, name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "keywarden.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap()
}

fn unique(prefix: &str) -> String {
    let id = keywarden::keys::material::AccessKeyId::generate();
    format!("{prefix}-{}", id.as_str()[3..11].to_ascii_lowercase())
}

/// Creates the object; `Err(status code)` when the API server refuses it.
async fn create(api: &Api<DynamicObject>, object: &DynamicObject) -> Result<DynamicObject, u16> {
    api.create(&PostParams::default(), object)
        .await
        .map_err(|e| match e {
            kube::Error::Api(status) => status.code,
            other => panic!("unexpected error: {other}"),
        })
}

fn key_spec() -> Value {
    json!({"owner": {"kind": "User", "name": "alice"}, "scopes": ["logs:view"],
           "allowedOrigins": ["https://app.example.com", "https://ops.example.com:8443"]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_key_is_accepted_with_defaults_applied() {
    let cluster = cluster().await;
    let created = create(
        &access_keys(&cluster.client),
        &object("AccessKey", &unique("ok"), key_spec()),
    )
    .await
    .unwrap();
    assert_eq!(created.data["spec"]["active"], true);
    assert_eq!(created.data["spec"]["rotateGeneration"], 0);
    assert_eq!(created.data["spec"]["secret"]["type"], "Opaque");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_key_fields_are_rejected() {
    let cluster = cluster().await;
    let api = access_keys(&cluster.client);
    let invalid = [
        (
            "owner kind",
            json!({"owner": {"kind": "Group", "name": "admins"}}),
        ),
        ("owner name", json!({"owner": {"kind": "User", "name": ""}})),
        (
            "origin with path",
            json!({"owner": {"kind": "User", "name": "a"}, "allowedOrigins": ["https://app.example.com/x"]}),
        ),
        (
            "origin without scheme",
            json!({"owner": {"kind": "User", "name": "a"}, "allowedOrigins": ["app.example.com"]}),
        ),
        (
            "scope grammar",
            json!({"owner": {"kind": "User", "name": "a"}, "scopes": ["logs:write"]}),
        ),
        (
            "negative rotate generation",
            json!({"owner": {"kind": "User", "name": "a"}, "rotateGeneration": -1}),
        ),
        (
            "secret type",
            json!({"owner": {"kind": "User", "name": "a"}, "secret": {"type": "kubernetes.io/tls"}}),
        ),
        (
            "too many scopes",
            json!({"owner": {"kind": "User", "name": "a"}, "scopes": vec!["logs:view"; 65]}),
        ),
    ];
    for (what, spec) in invalid {
        assert_eq!(
            create(&api, &object("AccessKey", &unique("bad"), spec))
                .await
                .err(),
            Some(422),
            "{what} was accepted"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_policy_fields_are_rejected() {
    let cluster = cluster().await;
    let api = policies(&cluster.client);
    assert!(create(
        &api,
        &object(
            "AccessKeyPolicy",
            &unique("ok"),
            json!({"expireAfter": "36h", "rotationGracePeriod": "90s"})
        )
    )
    .await
    .is_ok());
    let invalid = [
        ("zero max keys", json!({"maxKeysPerOwner": 0})),
        ("duration unit", json!({"expireAfter": "5w"})),
        ("duration sign", json!({"deactivateAfterUnused": "-5m"})),
        ("compound duration", json!({"rotationGracePeriod": "1h30m"})),
    ];
    for (what, spec) in invalid {
        assert_eq!(
            create(&api, &object("AccessKeyPolicy", &unique("bad"), spec))
                .await
                .err(),
            Some(422),
            "{what} was accepted"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_and_secret_name_are_immutable_but_display_name_is_not() {
    let cluster = cluster().await;
    let api = access_keys(&cluster.client);
    let name = unique("immutable");
    let mut spec = key_spec();
    spec["secret"] = json!({"name": "fixed-credentials"});
    create(&api, &object("AccessKey", &name, spec))
        .await
        .unwrap();

    let patch = |spec: Value| {
        let api = api.clone();
        let name = name.clone();
        async move {
            api.patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": spec})),
            )
            .await
            .map(|_| ())
            .map_err(|e| match e {
                kube::Error::Api(status) => (status.code, status.message),
                other => panic!("unexpected error: {other}"),
            })
        }
    };
    let owner = patch(json!({"owner": {"kind": "User", "name": "mallory"}}))
        .await
        .unwrap_err();
    assert_eq!(owner.0, 422);
    assert!(owner.1.contains("owner is immutable"), "{}", owner.1);
    let secret = patch(json!({"secret": {"name": "other"}}))
        .await
        .unwrap_err();
    assert!(
        secret.1.contains("spec.secret.name is immutable"),
        "{}",
        secret.1
    );
    patch(json!({"displayName": "renamed", "active": false}))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_owners_and_controller_keys_in_the_secret_template_are_rejected() {
    let cluster = cluster().await;
    let api = access_keys(&cluster.client);
    let forged = json!([{"accessKeyId": "AKWFORGED", "secretHash": "$argon2id$x",
                         "validUntil": "2099-01-01T00:00:00Z"}])
    .to_string();
    let invalid = [
        (
            "system: user",
            json!({"owner": {"kind": "User", "name": "system:admin"}}),
        ),
        (
            "padded user",
            json!({"owner": {"kind": "User", "name": "alice "}}),
        ),
        (
            "service account that is no object name",
            json!({"owner": {"kind": "ServiceAccount", "name": "system:serviceaccount:x:ci"}}),
        ),
        (
            "forged previous keys",
            json!({"owner": {"kind": "User", "name": "a"},
                   "secret": {"annotations": {"keywarden.io/previous-keys": forged}}}),
        ),
        (
            "controller label",
            json!({"owner": {"kind": "User", "name": "a"},
                   "secret": {"labels": {"keywarden.io/access-key": "other"}}}),
        ),
    ];
    for (what, spec) in invalid {
        assert_eq!(
            create(&api, &object("AccessKey", &unique("bad"), spec))
                .await
                .err(),
            Some(422),
            "{what} was accepted"
        );
    }
    let service_account = json!({"owner": {"kind": "ServiceAccount", "name": "ci"}});
    assert!(
        create(&api, &object("AccessKey", &unique("sa"), service_account))
            .await
            .is_ok()
    );
}
