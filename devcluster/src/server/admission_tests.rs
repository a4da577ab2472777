//! Admission policies during writes: they evaluate with the store unlocked, and a write whose
//! object changed meanwhile is admitted again on the object stored now, as kube-apiserver's
//! `GuaranteedUpdate` retries. The authorizer a policy calls is the window into evaluation.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use serde_json::{json, Value};

use crate::auth::{Attributes, Authorizer, Decision};
use crate::registry::ResourceType;
use crate::store::{storage_key, State, Store, WriteContext};
use crate::{DevCluster, Options};

/// A write made behind the request's back while its policies evaluate.
type Meddle = Box<dyn FnOnce(&mut State) + Send>;

/// Allows everything. Each `probe` check (a policy calling `authorizer`) records whether the
/// store was unlocked, and the first one with the store unlocked runs `meddle`.
#[derive(Default)]
struct Probe {
    store: OnceLock<Arc<Store>>,
    unlocked: Mutex<Vec<bool>>,
    meddle: Mutex<Option<Meddle>>,
}

impl Probe {
    fn probes(&self) -> Vec<bool> {
        self.unlocked.lock().expect("not poisoned").clone()
    }

    fn meddle(&self, meddle: impl FnOnce(&mut State) + Send + 'static) {
        *self.meddle.lock().expect("not poisoned") = Some(Box::new(meddle));
    }
}

impl Authorizer for Probe {
    fn authorize(&self, attributes: &Attributes) -> Decision {
        if attributes.verb == "probe" {
            let store = self.store.get().expect("store set at start");
            // why: another thread (the garbage collector) may hold the lock for a moment; a
            // lock this thread holds is never released while it waits here.
            let state = (0..200).find_map(|_| {
                store.try_lock().or_else(|| {
                    std::thread::sleep(Duration::from_millis(1));
                    None
                })
            });
            self.unlocked
                .lock()
                .expect("not poisoned")
                .push(state.is_some());
            if let Some(mut state) = state {
                if let Some(meddle) = self.meddle.lock().expect("not poisoned").take() {
                    meddle(&mut state);
                }
            }
        }
        Decision::Allow("probe allows everything".into())
    }
}

/// A devcluster whose ConfigMap writes a policy checks with `probe` first, then with
/// `guard` (a CEL expression).
async fn cluster(guard: &str) -> (DevCluster, Arc<Probe>, Api<ConfigMap>) {
    let probe = Arc::new(Probe::default());
    let cluster = DevCluster::start_with_authorizer(Options::default(), probe.clone())
        .await
        .expect("devcluster starts");
    probe.store.set(cluster.store()).ok();
    let client = cluster.client().expect("client");
    let resource = |kind: &str, plural: &str| ApiResource {
        group: "admissionregistration.k8s.io".into(),
        version: "v1".into(),
        api_version: "admissionregistration.k8s.io/v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    let policy: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": { "name": "probe" },
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": { "resourceRules": [{
                "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"],
                "operations": ["CREATE", "UPDATE", "DELETE"],
            }] },
            "validations": [
                { "expression": "authorizer.group('').resource('configmaps').namespace(request.namespace).check('probe').allowed()" },
                { "expression": guard, "message": "guarded" },
            ],
        },
    }))
    .expect("policy");
    let binding: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": { "name": "probe" },
        "spec": { "policyName": "probe", "validationActions": ["Deny"] },
    }))
    .expect("binding");
    let policies = resource("ValidatingAdmissionPolicy", "validatingadmissionpolicies");
    let bindings = resource(
        "ValidatingAdmissionPolicyBinding",
        "validatingadmissionpolicybindings",
    );
    Api::<DynamicObject>::all_with(client.clone(), &policies)
        .create(&PostParams::default(), &policy)
        .await
        .expect("policy created");
    Api::<DynamicObject>::all_with(client.clone(), &bindings)
        .create(&PostParams::default(), &binding)
        .await
        .expect("binding created");
    let api = Api::namespaced(client, "default");
    (cluster, probe, api)
}

fn config_map(name: &str, data: Value) -> ConfigMap {
    serde_json::from_value(json!({ "metadata": { "name": name }, "data": data }))
        .expect("config map")
}

fn config_maps() -> ResourceType {
    crate::builtin::builtin_types()
        .into_iter()
        .find(|rt| rt.group.is_empty() && rt.kind == "ConfigMap")
        .expect("ConfigMap is built in")
}

/// Sets `data[key] = value` on the stored ConfigMap `default/name`, as another client would.
fn set_data(name: &'static str, key: &'static str, value: &'static str) -> Meddle {
    Box::new(move |state: &mut State| {
        let rt = config_maps();
        let storage = storage_key(&rt);
        let mut stored = (**state.get(&storage, "default", name).expect("stored")).clone();
        stored["data"][key] = json!(value);
        let ctx = WriteContext {
            manager: "meddler".into(),
            now: "2026-01-01T00:00:00Z".into(),
            ..WriteContext::default()
        };
        state
            .update(&rt, &storage, "default", name, stored, &ctx)
            .expect("meddling write");
    })
}

#[tokio::test]
async fn policies_evaluate_with_the_store_unlocked() {
    let (_cluster, probe, api) = cluster("true").await;
    api.create(
        &PostParams::default(),
        &config_map("cm", json!({ "a": "1" })),
    )
    .await
    .expect("admitted");
    assert_eq!(probe.probes(), vec![true]);
}

#[tokio::test]
async fn a_patch_whose_object_changed_during_admission_applies_to_the_object_stored_now() {
    let (_cluster, probe, api) = cluster("true").await;
    api.create(
        &PostParams::default(),
        &config_map("cm", json!({ "a": "1" })),
    )
    .await
    .expect("admitted");
    probe.meddle(set_data("cm", "b", "2"));
    let patched = api
        .patch(
            "cm",
            &PatchParams::default(),
            &Patch::Merge(json!({ "data": { "c": "3" } })),
        )
        .await
        .expect("patched");
    let data = patched.data.expect("data");
    assert_eq!(
        data.into_iter().collect::<Vec<_>>(),
        vec![
            ("a".to_string(), "1".to_string()),
            ("b".to_string(), "2".to_string()),
            ("c".to_string(), "3".to_string())
        ],
        "the meddler's write is kept"
    );
    assert_eq!(probe.probes(), vec![true, true, true], "admitted again");
}

#[tokio::test]
async fn a_delete_is_decided_on_the_object_stored_when_it_commits() {
    let guard = "!has(oldObject.data) || !('locked' in oldObject.data)";
    let (_cluster, probe, api) = cluster(guard).await;
    api.create(
        &PostParams::default(),
        &config_map("cm", json!({ "a": "1" })),
    )
    .await
    .expect("admitted");
    probe.meddle(set_data("cm", "locked", "yes"));
    let refused = api
        .delete("cm", &DeleteParams::default())
        .await
        .expect_err("the locked object is kept");
    let kube::Error::Api(status) = refused else {
        panic!("an API error: {refused:?}");
    };
    assert_eq!(status.code, 422, "{}", status.message);
    assert!(status.message.contains("guarded"), "{}", status.message);
    assert!(api.get_opt("cm").await.expect("get").is_some());
}

#[tokio::test]
async fn a_delete_of_an_unchanged_object_is_admitted_once() {
    let guard = "!has(oldObject.data) || !('locked' in oldObject.data)";
    let (_cluster, probe, api) = cluster(guard).await;
    api.create(
        &PostParams::default(),
        &config_map("cm", json!({ "a": "1" })),
    )
    .await
    .expect("admitted");
    api.delete("cm", &DeleteParams::default())
        .await
        .expect("deleted");
    assert_eq!(probe.probes(), vec![true, true]);
    assert!(api.get_opt("cm").await.expect("get").is_none());
}
