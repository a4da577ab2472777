//! Installing the CRDs and applying manifest files, as `keywarden dev` and the tests need it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::{pinned_kind, Scope};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize as _, Serialize};

/// Field manager for what keywarden's command line writes.
const CLI_FIELD_MANAGER: &str = "keywarden-cli";
/// How long to wait for the API server to accept the CRDs.
const CRD_ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(30);

/// Creates `object`, or replaces the existing one of that name (a minimal `kubectl apply`).
// why: plain create and replace, so it needs the fewest API server features.
async fn create_or_replace<K>(api: &Api<K>, object: &K) -> Result<K, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let params = PostParams {
        field_manager: Some(CLI_FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    match api.create(&params, object).await {
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let name = object.name_any();
            let mut replacement = object.clone();
            replacement.meta_mut().resource_version = api.get(&name).await?.resource_version();
            api.replace(&name, &params, &replacement).await
        }
        result => result,
    }
}

/// Installs (or updates) the keywarden CRDs and waits until they are established.
pub async fn install_crds(client: &Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in super::crdgen::crds() {
        let name = crd.name_any();
        create_or_replace(&crds, &crd)
            .await
            .with_context(|| format!("installing CRD {name}"))?;
        let established = await_condition(crds.clone(), &name, conditions::is_crd_established());
        tokio::time::timeout(CRD_ESTABLISHED_TIMEOUT, established)
            .await
            .with_context(|| {
                format!("CRD {name} not established after {CRD_ESTABLISHED_TIMEOUT:?}")
            })?
            .with_context(|| format!("waiting for CRD {name}"))?;
    }
    Ok(())
}

/// Applies every Kubernetes manifest in `dir/*.yaml`, in file-name order.
pub async fn apply_examples(client: &Client, dir: &Path) -> anyhow::Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml")
        })
        .collect();
    files.sort();
    // why: policies first, so keys find their policy on the first reconcile.
    files.sort_by_key(|path| !path.to_string_lossy().contains("polic"));
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        for object in manifests(&text).with_context(|| format!("parsing {}", file.display()))? {
            apply(client, &object)
                .await
                .with_context(|| format!("applying {}", file.display()))?;
        }
        tracing::info!(file = %file.display(), "applied");
    }
    Ok(())
}

/// The Kubernetes objects of a multi-document YAML text (documents without a kind are skipped).
pub fn manifests(text: &str) -> anyhow::Result<Vec<DynamicObject>> {
    let mut objects = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let value = serde_yaml::Value::deserialize(document)?;
        let is_object = value.get("apiVersion").is_some() && value.get("kind").is_some();
        if is_object {
            objects.push(serde_yaml::from_value(value)?);
        }
    }
    Ok(objects)
}

/// Creates or replaces one object, creating its namespace when missing.
pub async fn apply(client: &Client, object: &DynamicObject) -> anyhow::Result<()> {
    let types = object
        .types
        .as_ref()
        .context("object without apiVersion/kind")?;
    let gvk = GroupVersionKind::try_from(types)?;
    let (resource, capabilities) = pinned_kind(client, &gvk)
        .await
        .with_context(|| format!("the cluster does not serve {}", types.kind))?;
    let api: Api<DynamicObject> = match capabilities.scope {
        Scope::Namespaced => {
            let namespace = object.namespace().unwrap_or_else(|| "default".to_owned());
            ensure_namespace(client, &namespace).await?;
            Api::namespaced_with(client.clone(), &namespace, &resource)
        }
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    create_or_replace(&api, object)
        .await
        .with_context(|| format!("applying {} {}", types.kind, object.name_any()))?;
    Ok(())
}

async fn ensure_namespace(client: &Client, name: &str) -> anyhow::Result<()> {
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let mut namespace = k8s_openapi::api::core::v1::Namespace::default();
    namespace.metadata.name = Some(name.to_owned());
    match namespaces.create(&PostParams::default(), &namespace).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating namespace {name}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_keeps_objects_and_skips_other_documents() {
        let text = "\
# a comment-only document
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: exporter, namespace: default}
---
static_resources: {}
---
apiVersion: keywarden.io/v1alpha1
kind: AccessKey
metadata: {name: k}
spec: {owner: {kind: User, name: alice}}
";
        let objects = manifests(text).unwrap();
        let kinds: Vec<_> = objects
            .iter()
            .map(|o| (o.types.as_ref().unwrap().kind.clone(), o.name_any()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("ServiceAccount".to_owned(), "exporter".to_owned()),
                ("AccessKey".to_owned(), "k".to_owned())
            ]
        );
        assert_eq!(objects[1].data["spec"]["owner"]["name"], "alice");
    }
}
