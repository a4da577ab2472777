//! Scopes held: the API requests the owner reviews add per key, and what an RBAC change costs
//! (one touching every owner, one touching none).

use std::time::Duration;

use futures::{stream, StreamExt, TryStreamExt};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ListParams, PostParams};
use kube::Client;
use serde_json::json;

use keywarden::api::{AccessKey, Phase};
use keywarden::controller::ControllerArgs;

use crate::accounting::{self, RequestCounts};
use crate::support::{
    increase_between, phase_of, scopes, test_args, KeyBuilder, RunningController, TestCluster,
};

/// Whether `key`'s `ScopesHeld` condition reads `held`.
fn scopes_held(key: &AccessKey, held: &str) -> bool {
    key.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "ScopesHeld" && c.status == held)
    })
}

/// Waits until every key named `<prefix>-*` is Active and satisfies `done`.
async fn all(
    keys: &Api<AccessKey>,
    prefix: &str,
    count: usize,
    done: impl Fn(&AccessKey) -> bool,
) -> anyhow::Result<()> {
    loop {
        let listed = keys.list(&ListParams::default()).await?;
        let ready = listed
            .items
            .iter()
            .filter(|k| {
                k.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with(prefix))
            })
            .filter(|k| phase_of(k) == Some(Phase::Active) && done(k))
            .count();
        if ready == count {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn create_keys(
    keys: &Api<AccessKey>,
    prefix: &str,
    count: usize,
    scopes: &[&str],
) -> anyhow::Result<()> {
    stream::iter(0..count)
        .map(|i| async move {
            let name = format!("{prefix}-{i:05}");
            // why: one owner per key, as owners are what RBAC changes are mapped to.
            let key = KeyBuilder::new(&name, &name).scopes(scopes).build();
            keys.create(&PostParams::default(), &key).await
        })
        .buffer_unordered(32)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    Ok(())
}

/// Requests counted between two snapshots: total, and the SubjectAccessReviews among them.
fn spent(before: &std::collections::BTreeMap<String, u64>, requests: &RequestCounts) -> (u64, u64) {
    let delta = increase_between(before, &requests.snapshot());
    let reviews = delta
        .get("create subjectaccessreviews")
        .copied()
        .unwrap_or_default();
    (delta.values().sum(), reviews)
}

/// Part 6: prints the figures for `count` keys.
pub async fn run(count: usize) -> anyhow::Result<()> {
    let cluster = TestCluster::start().await;
    let admin = Client::try_from(cluster.admin_config.clone())?;
    let keys = Api::<AccessKey>::namespaced(admin.clone(), &cluster.namespace);
    Api::<Role>::namespaced(admin.clone(), &cluster.namespace)
        .create(
            &PostParams::default(),
            &scopes::scope_role("logs-viewer", &["logs:view"]),
        )
        .await?;
    let requests = RequestCounts::default();
    let controller = RunningController::start(
        accounting::counting_client(cluster.controller_config.clone(), requests.clone())?,
        ControllerArgs {
            probe_addr: ([127, 0, 0, 1], accounting::free_port()?).into(),
            ..test_args()
        },
    );

    let before = requests.snapshot();
    create_keys(&keys, "plain", count, &[]).await?;
    all(&keys, "plain", count, |k| scopes_held(k, "True")).await?;
    let (plain, _) = spent(&before, &requests);

    let before = requests.snapshot();
    create_keys(&keys, "scoped", count, &["logs:view"]).await?;
    all(&keys, "scoped", count, |k| scopes_held(k, "False")).await?;
    let (scoped, reviews) = spent(&before, &requests);
    let per_key = |n: u64| n as f64 / count as f64;
    println!(
        "scopes held, {count} keys with one scope vs {count} without: {:.2} vs {:.2} controller API requests per key = {:.2} extra per key ({:.2} SubjectAccessReviews per key)",
        per_key(scoped),
        per_key(plain),
        per_key(scoped) - per_key(plain),
        per_key(reviews)
    );

    let owners: Vec<_> = (0..count)
        .map(|i| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": format!("scoped-{i:05}")}))
        .collect();
    let binding = |name: &str, subjects: Vec<serde_json::Value>| -> anyhow::Result<RoleBinding> {
        Ok(serde_json::from_value(json!({
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "logs-viewer"},
            "subjects": subjects,
        }))?)
    };
    let bindings = Api::<RoleBinding>::namespaced(admin.clone(), &cluster.namespace);
    let before = requests.snapshot();
    bindings
        .create(&PostParams::default(), &binding("all-owners", owners)?)
        .await?;
    all(&keys, "scoped", count, |k| scopes_held(k, "True")).await?;
    let (total, reviews) = spent(&before, &requests);
    println!(
        "  one RoleBinding granting all {count} owners: {:.2} requests per key ({:.2} SubjectAccessReviews per key)",
        per_key(total),
        per_key(reviews)
    );

    let before = requests.snapshot();
    bindings
        .create(
            &PostParams::default(),
            &binding(
                "somebody-else",
                vec![json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "nobody"})],
            )?,
        )
        .await?;
    // why: the change is debounced for 500 ms; three times that lets it be handled.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (total, _) = spent(&before, &requests);
    println!("  one RoleBinding touching no key's owner: {total} requests (target 0)");

    controller.stop().await;
    Ok(())
}
