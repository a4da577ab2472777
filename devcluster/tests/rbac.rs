//! RBAC through a real kube client: users acting through impersonation headers, roles and
//! bindings written by the admin, kube-apiserver's 403 texts.

#[path = "support/identities.rs"]
mod identities;

use devcluster::DevCluster;
use futures::{StreamExt, TryStreamExt};
use identities::*;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::ObjectMeta;
use serde_json::json;

fn config_map(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    }
}

#[tokio::test]
async fn role_binding_lets_a_user_create_in_its_namespace_only() {
    let cluster = DevCluster::start().await.unwrap();
    let admin = cluster.client().unwrap();
    create_namespace(&admin, "team-a").await;
    grant(
        &admin,
        "team-a",
        "cm-writer",
        vec![rule(&[""], &["configmaps"], &["create"])],
        vec![user("bob")],
    )
    .await;
    let bob = client_as(&cluster, "bob", &[]).await;

    Api::<ConfigMap>::namespaced(bob.clone(), "team-a")
        .create(&PostParams::default(), &config_map("settings"))
        .await
        .expect("bob creates in team-a");
    let err = Api::<ConfigMap>::namespaced(bob, "default")
        .create(&PostParams::default(), &config_map("settings"))
        .await
        .unwrap_err();
    let status = api_error(err);
    assert_eq!(status.code, 403);
    assert_eq!(status.reason, "Forbidden");
    assert_eq!(
        status.message,
        "configmaps is forbidden: User \"bob\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"default\""
    );
    let details = status.details.expect("details");
    assert_eq!(
        (
            details.kind.as_str(),
            details.group.as_str(),
            details.name.as_str()
        ),
        ("configmaps", "", "")
    );
}

#[tokio::test]
async fn a_reader_may_get_list_and_watch_but_every_write_verb_is_denied() {
    let cluster = DevCluster::start().await.unwrap();
    let admin = cluster.client().unwrap();
    create_namespace(&admin, "team-a").await;
    Api::<ConfigMap>::namespaced(admin.clone(), "team-a")
        .create(&PostParams::default(), &config_map("settings"))
        .await
        .unwrap();
    grant(
        &admin,
        "team-a",
        "reader",
        vec![rule(&[""], &["configmaps"], &["get", "list", "watch"])],
        vec![group("readers")],
    )
    .await;
    let api =
        Api::<ConfigMap>::namespaced(client_as(&cluster, "carol", &["readers"]).await, "team-a");

    api.get("settings").await.expect("get");
    let listed = api.list(&ListParams::default()).await.expect("list");
    let mut events = api
        .watch(&WatchParams::default(), "0")
        .await
        .expect("watch")
        .boxed();
    assert!(matches!(
        events.try_next().await,
        Ok(Some(WatchEvent::Added(_)))
    ));
    assert_eq!(listed.items.len(), 1);

    let denied = |verb: &str, name: Option<&str>| {
        let target = name.map(|n| format!(" \"{n}\"")).unwrap_or_default();
        format!("configmaps{target} is forbidden: User \"carol\" cannot {verb} resource \"configmaps\" in API group \"\" in the namespace \"team-a\"")
    };
    let err = api
        .create(&PostParams::default(), &config_map("new"))
        .await
        .unwrap_err();
    assert_forbidden(err, &denied("create", None));
    let current = api.get("settings").await.unwrap();
    let err = api
        .replace("settings", &PostParams::default(), &current)
        .await
        .unwrap_err();
    assert_forbidden(err, &denied("update", Some("settings")));
    let patch = Patch::Merge(json!({ "data": { "k": "v" } }));
    let err = api
        .patch("settings", &PatchParams::default(), &patch)
        .await
        .unwrap_err();
    assert_forbidden(err, &denied("patch", Some("settings")));
    let err = api
        .delete("settings", &DeleteParams::default())
        .await
        .unwrap_err();
    assert_forbidden(err, &denied("delete", Some("settings")));
    let err = api
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .unwrap_err();
    assert_forbidden(err, &denied("deletecollection", None));
}

#[tokio::test]
async fn resource_names_allow_one_object_and_lists_narrowed_to_it() {
    let cluster = DevCluster::start().await.unwrap();
    let admin = cluster.client().unwrap();
    create_namespace(&admin, "team-a").await;
    for name in ["build", "deploy"] {
        Api::<ConfigMap>::namespaced(admin.clone(), "team-a")
            .create(&PostParams::default(), &config_map(name))
            .await
            .unwrap();
    }
    grant(
        &admin,
        "team-a",
        "build-only",
        vec![named_rule(
            &[""],
            &["configmaps"],
            &["build"],
            &["get", "list"],
        )],
        vec![user("bob")],
    )
    .await;
    let api = Api::<ConfigMap>::namespaced(client_as(&cluster, "bob", &[]).await, "team-a");

    api.get("build").await.expect("the named object");
    let err = api.get("deploy").await.unwrap_err();
    assert_forbidden(
        err,
        "configmaps \"deploy\" is forbidden: User \"bob\" cannot get resource \"configmaps\" in API group \"\" in the namespace \"team-a\"",
    );
    let narrowed = api
        .list(&ListParams::default().fields("metadata.name=build"))
        .await
        .expect("a list narrowed to the named object");
    assert_eq!(narrowed.items.len(), 1);
    let err = api.list(&ListParams::default()).await.unwrap_err();
    assert_forbidden(
        err,
        "configmaps is forbidden: User \"bob\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"team-a\"",
    );
}

#[tokio::test]
async fn the_status_subresource_needs_its_own_rule() {
    let cluster = DevCluster::start().await.unwrap();
    let admin = cluster.client().unwrap();
    create_namespace(&admin, "team-a").await;
    let service: Service = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": { "ports": [{ "port": 80 }] },
    }))
    .unwrap();
    Api::<Service>::namespaced(admin.clone(), "team-a")
        .create(&PostParams::default(), &service)
        .await
        .unwrap();
    grant(
        &admin,
        "team-a",
        "status-writer",
        vec![rule(&[""], &["services/status"], &["get", "patch"])],
        vec![user("bob")],
    )
    .await;
    let api = Api::<Service>::namespaced(client_as(&cluster, "bob", &[]).await, "team-a");
    let status = Patch::Merge(json!({ "status": { "loadBalancer": {} } }));

    api.patch_status("web", &PatchParams::default(), &status)
        .await
        .expect("status patch");
    let err = api
        .patch("web", &PatchParams::default(), &status)
        .await
        .unwrap_err();
    assert_forbidden(
        err,
        "services \"web\" is forbidden: User \"bob\" cannot patch resource \"services\" in API group \"\" in the namespace \"team-a\"",
    );
    let err = api.get("web").await.unwrap_err();
    assert_forbidden(
        err,
        "services \"web\" is forbidden: User \"bob\" cannot get resource \"services\" in API group \"\" in the namespace \"team-a\"",
    );
    let alice = Api::<Service>::namespaced(client_as(&cluster, "alice", &[]).await, "team-a");
    let err = alice
        .patch_status("web", &PatchParams::default(), &status)
        .await
        .unwrap_err();
    assert_forbidden(
        err,
        "services \"web\" is forbidden: User \"alice\" cannot patch resource \"services/status\" in API group \"\" in the namespace \"team-a\"",
    );
}

#[tokio::test]
async fn anonymous_sees_the_version_and_nothing_else() {
    let cluster = DevCluster::start().await.unwrap();
    let anonymous = client_as(&cluster, "system:anonymous", &[]).await;

    anonymous
        .apiserver_version()
        .await
        .expect("GET /version is public");
    let err = anonymous.list_core_api_versions().await.unwrap_err();
    assert_forbidden(
        err,
        "forbidden: User \"system:anonymous\" cannot get path \"/api\"",
    );
    let err = Api::<Namespace>::all(anonymous)
        .list(&ListParams::default())
        .await
        .unwrap_err();
    assert_forbidden(
        err,
        "namespaces is forbidden: User \"system:anonymous\" cannot list resource \"namespaces\" in API group \"\" at the cluster scope",
    );
}

#[tokio::test]
async fn a_cluster_role_binding_to_a_group_allows_cluster_wide() {
    let cluster = DevCluster::start().await.unwrap();
    let admin = cluster.client().unwrap();
    Api::<ClusterRole>::all(admin.clone())
        .create(
            &PostParams::default(),
            &cluster_role(
                "namespace-reader",
                &[],
                vec![rule(&[""], &["namespaces"], &["list"])],
            ),
        )
        .await
        .unwrap();
    let bob = client_as(&cluster, "bob", &["auditors"]).await;
    let namespaces = Api::<Namespace>::all(bob);
    assert_eq!(
        api_error(namespaces.list(&ListParams::default()).await.unwrap_err()).code,
        403
    );

    Api::<ClusterRoleBinding>::all(admin.clone())
        .create(
            &PostParams::default(),
            &cluster_role_binding("auditors", "namespace-reader", vec![group("auditors")]),
        )
        .await
        .unwrap();
    let listed = namespaces
        .list(&ListParams::default())
        .await
        .expect("allowed right after the binding");
    assert!(listed.items.len() >= 4);

    Api::<ClusterRoleBinding>::all(admin)
        .delete("auditors", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(
        api_error(namespaces.list(&ListParams::default()).await.unwrap_err()).code,
        403
    );
}

#[tokio::test]
async fn the_view_role_picks_up_a_cluster_role_labelled_aggregate_to_view() {
    let cluster = DevCluster::start().await.unwrap();
    let admin = cluster.client().unwrap();
    create_namespace(&admin, "team-a").await;
    bind_cluster_role(&admin, "team-a", "view", vec![user("bob")]).await;
    let secrets = Api::<Secret>::namespaced(client_as(&cluster, "bob", &[]).await, "team-a");
    let err = secrets.list(&ListParams::default()).await.unwrap_err();
    assert_forbidden(
        err,
        "secrets is forbidden: User \"bob\" cannot list resource \"secrets\" in API group \"\" in the namespace \"team-a\"",
    );

    let label = [("rbac.authorization.k8s.io/aggregate-to-view", "true")];
    Api::<ClusterRole>::all(admin.clone())
        .create(
            &PostParams::default(),
            &cluster_role(
                "secret-viewer",
                &label,
                vec![rule(&[""], &["secrets"], &["list"])],
            ),
        )
        .await
        .unwrap();
    secrets
        .list(&ListParams::default())
        .await
        .expect("view now lists secrets");
    let view = Api::<ClusterRole>::all(admin.clone())
        .get("view")
        .await
        .unwrap();
    assert!(view
        .rules
        .unwrap_or_default()
        .contains(&rule(&[""], &["secrets"], &["list"])));

    Api::<ClusterRole>::all(admin)
        .delete("secret-viewer", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(
        api_error(secrets.list(&ListParams::default()).await.unwrap_err()).code,
        403
    );
}

#[tokio::test]
async fn watch_needs_the_watch_verb() {
    let cluster = DevCluster::start().await.unwrap();
    let admin = cluster.client().unwrap();
    create_namespace(&admin, "team-a").await;
    grant(
        &admin,
        "team-a",
        "lister",
        vec![rule(&[""], &["configmaps"], &["get", "list"])],
        vec![user("bob")],
    )
    .await;
    let api = Api::<ConfigMap>::namespaced(client_as(&cluster, "bob", &[]).await, "team-a");

    api.list(&ListParams::default()).await.expect("list");
    let err = match api.watch(&WatchParams::default(), "0").await {
        Ok(_) => panic!("watch without the watch verb was allowed"),
        Err(err) => err,
    };
    assert_forbidden(
        err,
        "configmaps is forbidden: User \"bob\" cannot watch resource \"configmaps\" in API group \"\" in the namespace \"team-a\"",
    );
}

#[tokio::test]
async fn deleting_a_namespace_ends_the_grants_of_its_role_bindings() {
    let cluster = DevCluster::start().await.unwrap();
    let admin = cluster.client().unwrap();
    create_namespace(&admin, "team-a").await;
    grant(
        &admin,
        "team-a",
        "writer",
        vec![rule(&[""], &["configmaps"], &["create"])],
        vec![user("bob")],
    )
    .await;
    let namespaces = Api::<Namespace>::all(admin.clone());
    namespaces
        .delete("team-a", &DeleteParams::default())
        .await
        .unwrap();
    for _ in 0..100 {
        if namespaces.get_opt("team-a").await.unwrap().is_none() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    create_namespace(&admin, "team-a").await;

    let err = Api::<ConfigMap>::namespaced(client_as(&cluster, "bob", &[]).await, "team-a")
        .create(&PostParams::default(), &config_map("settings"))
        .await
        .unwrap_err();
    assert_forbidden(
        err,
        "configmaps is forbidden: User \"bob\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"team-a\"",
    );
}

#[tokio::test]
async fn server_side_apply_that_creates_needs_create_as_well_as_patch() {
    let cluster = DevCluster::start().await.unwrap();
    let admin = cluster.client().unwrap();
    create_namespace(&admin, "team-a").await;
    grant(
        &admin,
        "team-a",
        "patcher",
        vec![rule(&[""], &["configmaps"], &["get", "patch"])],
        vec![user("bob")],
    )
    .await;
    let api = Api::<ConfigMap>::namespaced(client_as(&cluster, "bob", &[]).await, "team-a");
    let apply = PatchParams::apply("bob");
    let manifest = Patch::Apply(
        json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "settings" } }),
    );

    let err = api.patch("settings", &apply, &manifest).await.unwrap_err();
    assert_forbidden(err, "configmaps \"settings\" is forbidden: ");
    Api::<ConfigMap>::namespaced(admin, "team-a")
        .create(&PostParams::default(), &config_map("settings"))
        .await
        .unwrap();
    api.patch("settings", &apply, &manifest)
        .await
        .expect("applying to an existing object is a patch");
}

#[tokio::test]
async fn bootstrap_bindings_are_labelled_and_annotated_as_in_a_real_cluster() {
    let cluster = DevCluster::start().await.unwrap();
    let bindings = Api::<ClusterRoleBinding>::all(cluster.client().unwrap());
    let public = bindings.get("system:public-info-viewer").await.unwrap();
    let labels = public.metadata.labels.unwrap_or_default();
    let annotations = public.metadata.annotations.unwrap_or_default();
    assert_eq!(
        labels
            .get("kubernetes.io/bootstrapping")
            .map(String::as_str),
        Some("rbac-defaults")
    );
    assert_eq!(
        annotations
            .get("rbac.authorization.kubernetes.io/autoupdate")
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(public.role_ref.name, "system:public-info-viewer");
    let subjects: Vec<String> = public
        .subjects
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(subjects, ["system:authenticated", "system:unauthenticated"]);
    let names: Vec<String> = bindings
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|b| b.metadata.name)
        .collect();
    assert_eq!(
        names,
        [
            "cluster-admin",
            "system:basic-user",
            "system:discovery",
            "system:public-info-viewer"
        ]
    );
    let admin = Api::<ClusterRole>::all(cluster.client().unwrap())
        .get("admin")
        .await
        .unwrap();
    assert!(admin.aggregation_rule.is_some());
    assert!(admin.rules.unwrap_or_default().contains(&rule(
        &["rbac.authorization.k8s.io"],
        &["rolebindings", "roles"],
        &[
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch"
        ]
    )));
}
