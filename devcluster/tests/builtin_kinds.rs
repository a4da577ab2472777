//! What every cluster serves from the start, seen through kubectl and kube-rs: the `kubernetes`
//! Service, Pods, CertificateSigningRequests with `/approval`, APIServices, and kubectl's typed
//! `create` commands (which send protobuf).

#[path = "support/kube_tools.rs"]
mod kube_tools;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube_tools::Kube;
use serde_json::{json, Value};

async fn kubectl_json(kube: &Kube, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.extend(["-o", "json"]);
    let out = kube.kubectl_ok(&args).await;
    serde_json::from_str(&out)
        .unwrap_or_else(|err| panic!("kubectl printed no JSON ({err}): {out}"))
}

#[tokio::test]
async fn kubectl_typed_create_commands_store_what_they_say() {
    let kube = Kube::start().await;
    kube.kubectl_ok(&["create", "namespace", "team-a"]).await;
    let out = kube
        .kubectl_ok(&["create", "serviceaccount", "builder", "-n", "team-a"])
        .await;
    assert_eq!(out.trim(), "serviceaccount/builder created");
    kube.kubectl_ok(&[
        "create",
        "role",
        "reader",
        "-n",
        "team-a",
        "--verb=get,list",
        "--resource=pods,secrets",
        "--resource-name=web",
    ])
    .await;
    kube.kubectl_ok(&[
        "create",
        "rolebinding",
        "reader",
        "-n",
        "team-a",
        "--role=reader",
        "--user=alice",
        "--serviceaccount=team-a:builder",
    ])
    .await;
    kube.kubectl_ok(&[
        "create",
        "clusterrole",
        "metrics",
        "--verb=get",
        "--non-resource-url=/metrics",
    ])
    .await;
    kube.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        "metrics",
        "--clusterrole=metrics",
        "--group=team-a",
    ])
    .await;

    let account = kubectl_json(&kube, &["get", "serviceaccount", "builder", "-n", "team-a"]).await;
    assert_eq!(account["metadata"]["namespace"], "team-a");
    let role = kubectl_json(&kube, &["get", "role", "reader", "-n", "team-a"]).await;
    assert_eq!(
        role["rules"],
        json!([{
            "apiGroups": [""],
            "resources": ["pods", "secrets"],
            "resourceNames": ["web"],
            "verbs": ["get", "list"],
        }])
    );
    let binding = kubectl_json(&kube, &["get", "rolebinding", "reader", "-n", "team-a"]).await;
    assert_eq!(
        binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"})
    );
    assert_eq!(
        binding["subjects"],
        json!([
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"},
            {"kind": "ServiceAccount", "name": "builder", "namespace": "team-a"},
        ])
    );
    let cluster_role = kubectl_json(&kube, &["get", "clusterrole", "metrics"]).await;
    assert_eq!(
        cluster_role["rules"],
        json!([{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}])
    );
    let cluster_binding = kubectl_json(&kube, &["get", "clusterrolebinding", "metrics"]).await;
    assert_eq!(
        cluster_binding["subjects"],
        json!([{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "team-a"}])
    );
}

fn csr(name: &str) -> CertificateSigningRequest {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "request": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0K",
            "signerName": "kubernetes.io/kube-apiserver-client",
            "usages": ["client auth"],
        },
    }))
    .expect("valid CSR")
}

fn conditions(csr: &CertificateSigningRequest) -> Vec<(String, String, String)> {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.type_, c.status, c.reason.unwrap_or_default()))
        .collect()
}

#[tokio::test]
async fn kubectl_certificate_approve_and_deny_set_the_approval_conditions() {
    let kube = Kube::start().await;
    let csrs: Api<CertificateSigningRequest> = Api::all(kube.cluster.client().expect("client"));
    for name in ["alice", "bob"] {
        csrs.create(&PostParams::default(), &csr(name))
            .await
            .expect("created");
    }
    let out = kube.kubectl_ok(&["certificate", "approve", "alice"]).await;
    assert_eq!(
        out.trim(),
        "certificatesigningrequest.certificates.k8s.io/alice approved"
    );
    let out = kube.kubectl_ok(&["certificate", "deny", "bob"]).await;
    assert_eq!(
        out.trim(),
        "certificatesigningrequest.certificates.k8s.io/bob denied"
    );

    let alice = csrs.get("alice").await.expect("alice");
    assert_eq!(
        conditions(&alice),
        vec![("Approved".into(), "True".into(), "KubectlApprove".into())]
    );
    let approved = &alice
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()[0];
    assert!(approved.last_update_time.is_some() && approved.last_transition_time.is_some());
    let bob = csrs.get("bob").await.expect("bob");
    assert_eq!(
        conditions(&bob),
        vec![("Denied".into(), "True".into(), "KubectlDeny".into())]
    );
    let requester = alice.spec.username.unwrap_or_default();
    assert!(
        !requester.is_empty(),
        "the requester is recorded in spec.username"
    );
}

#[tokio::test]
async fn approval_conditions_are_exclusive_permanent_and_not_writable_through_status() {
    let kube = Kube::start().await;
    let client = kube.cluster.client().expect("client");
    let csrs: Api<CertificateSigningRequest> = Api::all(client.clone());
    csrs.create(&PostParams::default(), &csr("carol"))
        .await
        .expect("created");
    kube.kubectl_ok(&["certificate", "approve", "carol"]).await;

    let put = |sub: &str, conditions: Value| {
        let body = json!({
            "apiVersion": "certificates.k8s.io/v1",
            "kind": "CertificateSigningRequest",
            "metadata": {"name": "carol"},
            "status": {"conditions": conditions},
        });
        http::Request::put(format!(
            "/apis/certificates.k8s.io/v1/certificatesigningrequests/carol/{sub}"
        ))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).expect("json"))
        .expect("request")
    };
    let approved = json!({"type": "Approved", "status": "True", "reason": "KubectlApprove"});
    let denied = json!({"type": "Denied", "status": "True", "reason": "Nope"});

    let err = client
        .request::<Value>(put("approval", json!([approved, denied])))
        .await
        .expect_err("approved and denied together");
    let kube::Error::Api(status) = err else {
        panic!("{err}")
    };
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        status.message,
        "CertificateSigningRequest.certificates.k8s.io \"carol\" is invalid: status.conditions[1].type: Invalid value: \"Denied\": Approved and Denied conditions are mutually exclusive"
    );

    let err = client
        .request::<Value>(put("approval", json!([])))
        .await
        .expect_err("removing approval");
    let kube::Error::Api(status) = err else {
        panic!("{err}")
    };
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        status.message,
        "CertificateSigningRequest.certificates.k8s.io \"carol\" is invalid: status.conditions: Forbidden: updates may not remove a condition of type \"Approved\""
    );

    // why: /status cannot touch approval; the Approved condition survives a status write.
    let written = client
        .request::<CertificateSigningRequest>(put(
            "status",
            json!([{"type": "Failed", "status": "True", "reason": "SignerDown"}]),
        ))
        .await
        .expect("status written");
    assert_eq!(
        conditions(&written),
        vec![
            ("Failed".into(), "True".into(), "SignerDown".into()),
            ("Approved".into(), "True".into(), "KubectlApprove".into()),
        ]
    );
}

#[tokio::test]
async fn pods_are_stored_and_deleted_at_once() {
    let kube = Kube::start().await;
    let pods: Api<Pod> = Api::namespaced(kube.cluster.client().expect("client"), "default");
    for (name, node) in [("unscheduled", None), ("scheduled", Some("node-1"))] {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"nodeName": node, "containers": [{"name": "web", "image": "nginx"}]},
        }))
        .expect("pod");
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("created");
    }
    let out = kube.kubectl_ok(&["get", "pods", "-o", "name"]).await;
    assert_eq!(out.trim(), "pod/scheduled\npod/unscheduled");
    for name in ["unscheduled", "scheduled"] {
        pods.delete(name, &DeleteParams::default())
            .await
            .expect("deleted");
        let err = pods.get(name).await.expect_err("gone at once");
        let kube::Error::Api(status) = err else {
            panic!("{err}")
        };
        assert_eq!(status.code, 404);
        assert_eq!(status.message, format!("pods \"{name}\" not found"));
    }
}

#[tokio::test]
async fn the_kubernetes_service_points_at_the_api_server() {
    let kube = Kube::start().await;
    let services: Api<Service> = Api::namespaced(kube.cluster.client().expect("client"), "default");
    let service = services
        .get("kubernetes")
        .await
        .expect("kubernetes Service");
    let labels = service.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels.get("component").map(String::as_str),
        Some("apiserver")
    );
    assert_eq!(
        labels.get("provider").map(String::as_str),
        Some("kubernetes")
    );
    let spec = serde_json::to_value(service.spec).expect("spec");
    assert_eq!(spec["type"], "ClusterIP");
    assert_eq!(
        spec["ports"],
        json!([{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}])
    );
    let out = kube
        .kubectl_ok(&[
            "get",
            "service",
            "kubernetes",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])
        .await;
    assert_eq!(out, "10.96.0.1");
}

fn api_service_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("apiregistration.k8s.io", "v1", "APIService"),
        "apiservices",
    )
}

#[tokio::test]
async fn api_services_follow_the_served_group_versions() {
    let kube = Kube::start().await;
    let client = kube.cluster.client().expect("client");
    let services: Api<DynamicObject> = Api::all_with(client, &api_service_resource());
    let names = |list: &kube::api::ObjectList<DynamicObject>| -> Vec<String> {
        list.items
            .iter()
            .filter_map(|o| o.metadata.name.clone())
            .collect()
    };
    let list = services.list(&ListParams::default()).await.expect("list");
    for name in [
        "v1.",
        "v1.apps",
        "v1.rbac.authorization.k8s.io",
        "v1.certificates.k8s.io",
    ] {
        assert!(
            names(&list).contains(&name.to_string()),
            "{name} in {:?}",
            names(&list)
        );
    }
    let apps = services.get("v1.apps").await.expect("v1.apps");
    assert_eq!(
        apps.data["spec"],
        json!({"group": "apps", "version": "v1", "groupPriorityMinimum": 17800, "versionPriority": 15})
    );
    let condition = &apps.data["status"]["conditions"][0];
    assert_eq!(
        (
            &condition["type"],
            &condition["status"],
            &condition["reason"],
            &condition["message"]
        ),
        (
            &json!("Available"),
            &json!("True"),
            &json!("Local"),
            &json!("Local APIServices are always available")
        )
    );

    let crd = kube.file(
        "widgets.yaml",
        r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.io}
spec:
  group: example.io
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - {name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}
"#,
    );
    kube.kubectl_ok(&["apply", "-f", &crd]).await;
    let widgets = services.get("v1.example.io").await.expect("CRD APIService");
    assert_eq!(widgets.data["spec"]["groupPriorityMinimum"], 1000);
    assert_eq!(widgets.data["spec"]["versionPriority"], 100);
    assert_eq!(
        widgets
            .metadata
            .labels
            .unwrap_or_default()
            .get("kube-aggregator.kubernetes.io/automanaged")
            .map(String::as_str),
        Some("true")
    );
    kube.kubectl_ok(&["delete", "-f", &crd]).await;
    let err = services
        .get("v1.example.io")
        .await
        .expect_err("gone with its CRD");
    let kube::Error::Api(status) = err else {
        panic!("{err}")
    };
    assert_eq!(status.code, 404);
    let out = kube.kubectl_ok(&["get", "apiservices", "-o", "name"]).await;
    assert!(
        out.lines()
            .any(|l| l == "apiservice.apiregistration.k8s.io/v1.apps"),
        "{out}"
    );
}

#[tokio::test]
async fn kubectl_get_prints_pods_csrs_and_api_services_like_a_real_cluster() {
    let kube = Kube::start().await;
    let client = kube.cluster.client().expect("client");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"containers": [
            {"name": "web", "image": "nginx", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}},
        ]},
    }))
    .expect("pod");
    let created = Api::<Pod>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &pod)
        .await
        .expect("created");
    let status = created.status.expect("a new pod has a status");
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    assert_eq!(status.qos_class.as_deref(), Some("Guaranteed"));
    let rows = kube_tools::table_rows(&kube.kubectl_ok(&["get", "pods", "-o", "wide"]).await);
    assert_eq!(rows[0][..5], ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    assert_eq!(rows[1][..4], ["web", "0/1", "Pending", "0"]);
    assert_eq!(rows[1][5..], ["<none>", "<none>", "<none>", "<none>"]);

    let mut request = csr("dave");
    request.spec.expiration_seconds = Some(3600);
    Api::<CertificateSigningRequest>::all(client)
        .create(&PostParams::default(), &request)
        .await
        .expect("created");
    let rows = kube_tools::table_rows(&kube.kubectl_ok(&["get", "csr"]).await);
    assert_eq!(
        rows[0],
        [
            "NAME",
            "AGE",
            "SIGNERNAME",
            "REQUESTOR",
            "REQUESTEDDURATION",
            "CONDITION"
        ]
    );
    assert_eq!(rows[1][2..3], ["kubernetes.io/kube-apiserver-client"]);
    assert_eq!(rows[1][4..], ["60m", "Pending"]);
    kube.kubectl_ok(&["certificate", "approve", "dave"]).await;
    let rows = kube_tools::table_rows(&kube.kubectl_ok(&["get", "csr", "dave"]).await);
    assert_eq!(rows[1][5], "Approved");

    let rows = kube_tools::table_rows(&kube.kubectl_ok(&["get", "apiservice", "v1.apps"]).await);
    assert_eq!(rows[0], ["NAME", "SERVICE", "AVAILABLE", "AGE"]);
    assert_eq!(rows[1][..3], ["v1.apps", "Local", "True"]);
}

#[tokio::test]
async fn kubectl_auth_reconcile_creates_and_then_extends_roles() {
    let kube = Kube::start().await;
    let manifest = |verbs: &str| {
        format!(
            r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: reader, namespace: default}}
rules:
- {{apiGroups: [""], resources: [pods], verbs: [{verbs}]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: reader, namespace: default}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}}
subjects:
- {{kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}}
"#
        )
    };
    let first = kube.file("first.yaml", &manifest("get"));
    let out = kube.kubectl_ok(&["auth", "reconcile", "-f", &first]).await;
    assert_eq!(
        out.trim(),
        "role.rbac.authorization.k8s.io/reader reconciled\nrolebinding.rbac.authorization.k8s.io/reader reconciled"
    );
    let second = kube.file("second.yaml", &manifest("get, list"));
    kube.kubectl_ok(&["auth", "reconcile", "-f", &second]).await;
    let role = kubectl_json(&kube, &["get", "role", "reader"]).await;
    assert_eq!(
        role["rules"],
        json!([
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
        ])
    );
    let binding = kubectl_json(&kube, &["get", "rolebinding", "reader"]).await;
    assert_eq!(binding["subjects"][0]["name"], "alice");
}
