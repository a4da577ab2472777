//! Lists: paging, selectors, metadata-only responses.

use devcluster::DevCluster;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::ResourceExt;

fn config_map(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.to_string());
    cm.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    cm
}

#[tokio::test]
async fn limit_and_continue_page_through_every_object_once() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().unwrap(), "default");
    for i in 0..7 {
        api.create(&PostParams::default(), &config_map(&format!("cm-{i}"), &[]))
            .await
            .unwrap();
    }
    let mut names = Vec::new();
    let mut params = ListParams::default().limit(3);
    let mut pages = 0;
    loop {
        let page = api.list(&params).await.unwrap();
        pages += 1;
        assert!(page.metadata.resource_version.is_some());
        names.extend(page.items.iter().map(|cm| cm.name_any()));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..7).map(|i| format!("cm-{i}")).collect();
    assert_eq!(names, expected);
}

#[tokio::test]
async fn an_empty_list_has_items_and_a_resource_version() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<Secret> = Api::namespaced(cluster.client().unwrap(), "kube-system");
    let list = api.list(&ListParams::default()).await.unwrap();
    assert!(list.items.is_empty());
    assert!(list
        .metadata
        .resource_version
        .is_some_and(|rv| !rv.is_empty()));
}

#[tokio::test]
async fn label_and_field_selectors_filter_lists() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().unwrap(), "default");
    api.create(
        &PostParams::default(),
        &config_map("web", &[("tier", "web")]),
    )
    .await
    .unwrap();
    api.create(&PostParams::default(), &config_map("db", &[("tier", "db")]))
        .await
        .unwrap();
    api.create(&PostParams::default(), &config_map("none", &[]))
        .await
        .unwrap();
    let names = |list: kube::core::ObjectList<ConfigMap>| {
        list.items.iter().map(|c| c.name_any()).collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("tier in (web)"))
                .await
                .unwrap()
        ),
        ["web"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("!tier"))
                .await
                .unwrap()
        ),
        ["none"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("metadata.name=db"))
                .await
                .unwrap()
        ),
        ["db"]
    );
}

#[tokio::test]
async fn all_namespace_lists_span_namespaces() {
    let cluster = DevCluster::start().await.unwrap();
    let client = cluster.client().unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &config_map("a", &[]))
        .await
        .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), "kube-system")
        .create(&PostParams::default(), &config_map("b", &[]))
        .await
        .unwrap();
    let all = Api::<ConfigMap>::all(client)
        .list(&ListParams::default())
        .await
        .unwrap();
    let mut names: Vec<String> = all
        .items
        .iter()
        .map(|c| format!("{}/{}", c.namespace().unwrap(), c.name_any()))
        .collect();
    names.sort();
    assert_eq!(names, ["default/a", "kube-system/b"]);
}

#[tokio::test]
async fn metadata_only_requests_get_partial_object_metadata() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<Secret> = Api::namespaced(cluster.client().unwrap(), "default");
    let mut secret = Secret::default();
    secret.metadata.name = Some("meta".into());
    secret.string_data = Some([("password".to_string(), "hunter2".to_string())].into());
    api.create(&PostParams::default(), &secret).await.unwrap();
    let one: PartialObjectMeta<Secret> = api.get_metadata("meta").await.unwrap();
    assert_eq!(one.name_any(), "meta");
    let list = api.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(
        list.items.iter().map(|m| m.name_any()).collect::<Vec<_>>(),
        ["meta"]
    );
}

#[tokio::test]
async fn a_continue_token_older_than_the_history_is_410_expired() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().unwrap(), "default");
    for i in 0..3 {
        api.create(&PostParams::default(), &config_map(&format!("cm-{i}"), &[]))
            .await
            .unwrap();
    }
    let page = api.list(&ListParams::default().limit(1)).await.unwrap();
    let token = page.metadata.continue_.unwrap();
    api.create(&PostParams::default(), &config_map("later", &[]))
        .await
        .unwrap();
    cluster.faults().compact_history();
    match api
        .list(&ListParams::default().limit(1).continue_token(&token))
        .await
    {
        Err(kube::Error::Api(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"))
        }
        other => panic!("expected 410 Expired, got {other:?}"),
    }
}

/// Pages across namespaces with a label selector: every match once, in order; a page says how
/// many items remain only without a selector, as kube-apiserver (the count is unknown then).
#[tokio::test]
async fn selected_pages_across_namespaces_return_every_match_once() {
    let cluster = DevCluster::start().await.unwrap();
    let client = cluster.client().unwrap();
    for namespace in ["default", "kube-public", "kube-system"] {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        for i in 0..5 {
            let labels: &[(&str, &str)] = if i % 2 == 0 { &[("pick", "yes")] } else { &[] };
            api.create(
                &PostParams::default(),
                &config_map(&format!("cm-{i}"), labels),
            )
            .await
            .unwrap();
        }
    }
    let all: Api<ConfigMap> = Api::all(client);
    let page_through = |params: ListParams| {
        let all = all.clone();
        async move {
            let mut params = params;
            let mut names = Vec::new();
            let mut remaining = Vec::new();
            loop {
                let page = all.list(&params).await.unwrap();
                names.extend(
                    page.items
                        .iter()
                        .map(|c| format!("{}/{}", c.namespace().unwrap(), c.name_any())),
                );
                remaining.push(page.metadata.remaining_item_count);
                match page.metadata.continue_.filter(|c| !c.is_empty()) {
                    Some(token) => params = params.continue_token(&token),
                    None => break (names, remaining),
                }
            }
        }
    };
    let (picked, remaining) = page_through(ListParams::default().labels("pick=yes").limit(2)).await;
    let expected: Vec<String> = ["default", "kube-public", "kube-system"]
        .iter()
        .flat_map(|ns| [0, 2, 4].map(|i| format!("{ns}/cm-{i}")))
        .collect();
    assert_eq!(picked, expected);
    assert!(remaining.iter().all(Option::is_none), "{remaining:?}");

    let (names, remaining) = page_through(ListParams::default().limit(4)).await;
    let ours: Vec<&String> = names.iter().filter(|n| n.contains("/cm-")).collect();
    assert_eq!(ours.len(), 15, "{names:?}");
    let total = names.len() as i64;
    let counts: Vec<i64> = remaining.iter().map(|r| r.unwrap_or(0)).collect();
    assert_eq!(
        counts[0],
        total - 4,
        "the first page counts what follows it"
    );
    assert_eq!(*counts.last().unwrap(), 0, "the last page has no count");
}
