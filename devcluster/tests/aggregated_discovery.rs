//! Aggregated discovery (`apidiscovery.k8s.io/v2`): kubectl and kube-rs learn every group,
//! version and resource from `/api` and `/apis` alone, without falling back to the per-group
//! documents.

#[path = "support/kube_tools.rs"]
mod kube_tools;

use kube::core::GroupVersionKind;
use kube::discovery::{Discovery, Scope};
use kube_tools::{table_rows, Kube};
use serde_json::{json, Value};

const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// The request paths kubectl logged at `-v=8`, without query strings.
fn requested_paths(log: &str, server: &str) -> Vec<String> {
    log.split(server)
        .skip(1)
        .map(|rest| {
            rest.split(|c: char| c == '?' || c == '"' || c.is_whitespace())
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn kubectl_reads_aggregated_discovery_and_never_falls_back() {
    let kube = Kube::start().await;
    let out = kube.kubectl(&["api-resources", "-o", "wide", "-v=8"]).await;
    kube_tools::assert_success("kubectl api-resources", &out);
    let paths = requested_paths(&out.stderr, &kube.cluster.url());
    assert!(!paths.is_empty(), "no requests logged:\n{}", out.stderr);
    assert!(
        paths.iter().all(|p| p == "/api" || p == "/apis"),
        "kubectl fell back to per-group discovery: {paths:?}"
    );
    assert!(
        out.stderr.contains(&format!("Content-Type: {AGGREGATED}")),
        "{}",
        out.stderr
    );

    let rows = table_rows(&out.stdout);
    let row = |name: &str, api_version: &str| -> Vec<String> {
        rows.iter()
            .find(|r| r[0] == name && r[2] == api_version)
            .unwrap_or_else(|| panic!("{name} {api_version} missing from:\n{}", out.stdout))
            .clone()
    };
    assert_eq!(
        rows[0][..7],
        [
            "NAME",
            "SHORTNAMES",
            "APIVERSION",
            "NAMESPACED",
            "KIND",
            "VERBS",
            "CATEGORIES"
        ]
    );
    assert_eq!(
        row("pods", "v1")[1..],
        [
            "po",
            "v1",
            "true",
            "Pod",
            "create,delete,deletecollection,get,list,patch,update,watch",
            "all"
        ]
    );
    assert_eq!(
        row("certificatesigningrequests", "certificates.k8s.io/v1")[1..5],
        [
            "csr",
            "certificates.k8s.io/v1",
            "false",
            "CertificateSigningRequest"
        ]
    );
    assert_eq!(row("tokenreviews", "authentication.k8s.io/v1")[5], "create");
    assert_eq!(row("apiservices", "apiregistration.k8s.io/v1")[3], "false");
}

#[tokio::test]
async fn kubectl_get_all_lists_the_all_category() {
    let kube = Kube::start().await;
    kube.kubectl_ok(&["create", "deployment", "web", "--image=nginx"])
        .await;
    let out = kube.kubectl_ok(&["get", "all", "-o", "name"]).await;
    let names: Vec<&str> = out.lines().collect();
    assert!(names.contains(&"service/kubernetes"), "{out}");
    assert!(names.contains(&"deployment.apps/web"), "{out}");
}

#[tokio::test]
async fn kube_rs_aggregated_discovery_sees_scopes_subresources_and_crds() {
    let kube = Kube::start().await;
    let client = kube.cluster.client().expect("client");
    let discovery = Discovery::new(client.clone())
        .run_aggregated()
        .await
        .expect("aggregated discovery");
    let resolve = |discovery: &Discovery, group: &str, kind: &str| {
        discovery
            .resolve_gvk(&GroupVersionKind::gvk(group, "v1", kind))
            .unwrap_or_else(|| panic!("{group}/{kind} not discovered"))
    };
    let subresources = |caps: &kube::discovery::ApiCapabilities| -> Vec<String> {
        let mut names: Vec<String> = caps
            .subresources
            .iter()
            .map(|(r, _)| r.plural.clone())
            .collect();
        names.sort();
        names
    };
    let (csr, caps) = resolve(
        &discovery,
        "certificates.k8s.io",
        "CertificateSigningRequest",
    );
    assert_eq!(csr.plural, "certificatesigningrequests");
    assert_eq!(caps.scope, Scope::Cluster);
    assert_eq!(subresources(&caps), ["approval", "status"]);
    let (_, caps) = resolve(&discovery, "", "ServiceAccount");
    assert_eq!(caps.scope, Scope::Namespaced);
    assert_eq!(subresources(&caps), ["token"]);
    let (_, caps) = resolve(&discovery, "", "Pod");
    assert_eq!(subresources(&caps), ["status"]);
    let (_, caps) = resolve(&discovery, "authorization.k8s.io", "SubjectAccessReview");
    assert_eq!(caps.operations, ["create"]);

    let crd = kube.file(
        "widgets.yaml",
        r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.io}
spec:
  group: example.io
  scope: Cluster
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd], categories: [toys]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
"#,
    );
    kube.kubectl_ok(&["apply", "-f", &crd]).await;
    let discovery = Discovery::new(client.clone())
        .run_aggregated()
        .await
        .expect("aggregated discovery");
    let (widget, caps) = resolve(&discovery, "example.io", "Widget");
    assert_eq!(widget.plural, "widgets");
    assert_eq!(caps.scope, Scope::Cluster);
    assert_eq!(subresources(&caps), ["status"]);

    kube.kubectl_ok(&["delete", "-f", &crd]).await;
    let discovery = Discovery::new(client)
        .run_aggregated()
        .await
        .expect("aggregated discovery");
    assert!(
        !discovery.has_group("example.io"),
        "a deleted CRD's group is gone"
    );
}

async fn send(
    kube: &Kube,
    path: &str,
    headers: &[(&str, &str)],
) -> http::Response<kube::client::Body> {
    let mut request = http::Request::get(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Vec::new()).expect("request");
    let client = kube.cluster.client().expect("client");
    client
        .send(request.map(Into::into))
        .await
        .expect("response")
}

fn header(response: &http::Response<kube::client::Body>, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

async fn get(kube: &Kube, path: &str, accept: &str) -> (String, Value) {
    let response = send(kube, path, &[("accept", accept)]).await;
    let content_type = header(&response, "content-type");
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .expect("body")
        .to_bytes();
    (
        content_type,
        serde_json::from_slice(&body).expect("JSON body"),
    )
}

#[tokio::test]
async fn an_unchanged_document_answers_not_modified_to_its_etag() {
    let kube = Kube::start().await;
    let first = send(&kube, "/apis", &[("accept", AGGREGATED)]).await;
    let etag = header(&first, "etag");
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag:?}");
    let again = send(
        &kube,
        "/apis",
        &[("accept", AGGREGATED), ("if-none-match", &etag)],
    )
    .await;
    assert_eq!(again.status(), http::StatusCode::NOT_MODIFIED);
    assert_eq!(header(&again, "etag"), etag);

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
  - {name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object}}}
"#,
    );
    kube.kubectl_ok(&["apply", "-f", &crd]).await;
    let changed = send(
        &kube,
        "/apis",
        &[("accept", AGGREGATED), ("if-none-match", &etag)],
    )
    .await;
    assert_eq!(changed.status(), http::StatusCode::OK);
    assert_ne!(header(&changed, "etag"), etag);
}

#[tokio::test]
async fn the_aggregated_document_orders_groups_by_priority_and_describes_each_resource() {
    let kube = Kube::start().await;
    let (content_type, apis) = get(&kube, "/apis", AGGREGATED).await;
    assert_eq!(content_type, AGGREGATED);
    assert_eq!(apis["kind"], "APIGroupDiscoveryList");
    assert_eq!(apis["apiVersion"], "apidiscovery.k8s.io/v2");
    let groups: Vec<&str> = apis["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|g| g["metadata"]["name"].as_str())
        .collect();
    assert_eq!(
        groups,
        [
            "apiregistration.k8s.io",
            "apps",
            "events.k8s.io",
            "authentication.k8s.io",
            "authorization.k8s.io",
            "certificates.k8s.io",
            "policy",
            "rbac.authorization.k8s.io",
            "admissionregistration.k8s.io",
            "apiextensions.k8s.io",
            "coordination.k8s.io",
        ]
    );
    let apps = &apis["items"][1]["versions"][0];
    assert_eq!(apps["version"], "v1");
    assert_eq!(apps["freshness"], "Current");
    let apps_resources: Vec<&str> = apps["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["resource"].as_str().unwrap())
        .collect();
    let mut sorted = apps_resources.clone();
    sorted.sort_unstable();
    assert_eq!(apps_resources, sorted, "resources are listed by name");
    let deployments = apps["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == "deployments")
        .expect("deployments");
    assert_eq!(
        *deployments,
        json!({
            "resource": "deployments",
            "responseKind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "scope": "Namespaced",
            "singularResource": "deployment",
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
            "shortNames": ["deploy"],
            "categories": ["all"],
            "subresources": [{
                "subresource": "status",
                "responseKind": {"group": "apps", "version": "v1", "kind": "Deployment"},
                "verbs": ["get", "patch", "update"],
            }],
        })
    );

    let (_, core) = get(&kube, "/api", AGGREGATED).await;
    let core_group = &core["items"][0];
    assert!(core_group["metadata"].get("name").is_none(), "{core_group}");
    let accounts = core_group["versions"][0]["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["resource"] == "serviceaccounts")
        .expect("serviceaccounts");
    assert_eq!(
        accounts["subresources"],
        json!([{
            "subresource": "token",
            "responseKind": {"group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest"},
            "verbs": ["create"],
        }])
    );
}

#[tokio::test]
async fn clients_that_do_not_ask_get_the_legacy_documents() {
    let kube = Kube::start().await;
    for accept in [
        "application/json",
        "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json",
        "",
    ] {
        let (content_type, api) = get(&kube, "/api", accept).await;
        assert_eq!(content_type, "application/json", "Accept: {accept}");
        assert_eq!(api["kind"], "APIVersions", "Accept: {accept}");
        let (_, apis) = get(&kube, "/apis", accept).await;
        assert_eq!(apis["kind"], "APIGroupList", "Accept: {accept}");
        assert_eq!(apis["groups"][0]["name"], "apiregistration.k8s.io");
    }
    let (_, v1) = get(&kube, "/apis/certificates.k8s.io/v1", "application/json").await;
    let names: Vec<&str> = v1["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "certificatesigningrequests",
            "certificatesigningrequests/status",
            "certificatesigningrequests/approval",
        ]
    );
}
