//! Restarts the workloads a key names (`spec.rollout`) after each issuance: the pod template
//! gets the annotation `rollout.keywarden.io/<key>: <access ID>`, so the restart happens once per
//! issuance and never on a re-reconcile, a controller restart or a leader change (the workload
//! already carries the ID). Keys that rotate together restart a workload once: their
//! annotations are collected for [`DEBOUNCE`] and written in one patch.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource, ResourceExt};
use prometheus_client::metrics::counter::Counter;

use crate::api::rollout::ROLLOUT_ANNOTATION_PREFIX;
use crate::api::{AccessKey, RolloutTarget, WorkloadKind, FIELD_MANAGER};
use crate::sync::lock;

/// How long annotations for one workload are collected before they are written together.
pub const DEBOUNCE: Duration = Duration::from_secs(2);

/// Event reason on the key for each workload restarted.
pub const ROLLOUT_TRIGGERED: &str = "RolloutTriggered";
/// Event reason on the key when a restart failed.
pub const ROLLOUT_FAILED: &str = "RolloutFailed";

/// One workload in a namespace.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Workload {
    kind: WorkloadKind,
    namespace: String,
    name: String,
}

/// Annotations waiting to be written to one workload, and the keys they come from.
#[derive(Default)]
struct Pending {
    annotations: BTreeMap<String, String>,
    keys: Vec<AccessKey>,
}

/// The debounced restarts of one controller.
pub struct Rollouts {
    client: Client,
    reporter: Reporter,
    /// Counts restarts written (one per workload patch).
    pub restarts: Counter,
    pending: Arc<Mutex<HashMap<Workload, Pending>>>,
}

/// The annotation a key writes onto its targets' pod templates.
pub fn annotation(key_name: &str) -> String {
    format!("{ROLLOUT_ANNOTATION_PREFIX}{key_name}")
}

fn template_annotation(template: Option<&PodTemplateSpec>, name: &str) -> Option<String> {
    template?
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(name)
        .cloned()
}

/// A label selector in the list API's `labelSelector` syntax.
fn selector_query(selector: &LabelSelector) -> String {
    let mut terms: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for requirement in selector.match_expressions.iter().flatten() {
        let values = requirement.values.clone().unwrap_or_default().join(",");
        let key = &requirement.key;
        terms.push(match requirement.operator.as_str() {
            "In" => format!("{key} in ({values})"),
            "NotIn" => format!("{key} notin ({values})"),
            "Exists" => key.clone(),
            _ => format!("!{key}"),
        });
    }
    terms.join(",")
}

impl Rollouts {
    pub fn new(client: Client, reporter: Reporter, restarts: Counter) -> Self {
        Self {
            client,
            reporter,
            restarts,
            pending: Arc::default(),
        }
    }

    /// The targets of `key` whose pods were not restarted for `access_key_id` yet, by name.
    async fn stale_targets(
        &self,
        namespace: &str,
        target: &RolloutTarget,
        annotation: &str,
        access_key_id: &str,
    ) -> Result<Vec<String>, kube::Error> {
        macro_rules! stale {
            ($kind:ty) => {{
                let api: Api<$kind> = Api::namespaced(self.client.clone(), namespace);
                let found: Vec<$kind> = match (&target.name, &target.selector) {
                    (Some(name), _) => api.get_opt(name).await?.into_iter().collect(),
                    (None, Some(selector)) => {
                        let selector = selector_query(selector);
                        api.list(&ListParams::default().labels(&selector))
                            .await?
                            .items
                    }
                    (None, None) => Vec::new(),
                };
                found
                    .into_iter()
                    .filter(|w| {
                        let template = Some(&w.spec.template);
                        template_annotation(template, annotation).as_deref() != Some(access_key_id)
                    })
                    .map(|w| w.name_any())
                    .collect()
            }};
        }
        Ok(match target.kind {
            WorkloadKind::Deployment => stale!(Deployment),
            WorkloadKind::StatefulSet => stale!(StatefulSet),
            WorkloadKind::DaemonSet => stale!(DaemonSet),
        })
    }

    /// Schedules the restart of every target of `key` not yet restarted for its current access
    /// ID; returns how many workloads were scheduled.
    pub async fn request(
        self: &Arc<Self>,
        key: &AccessKey,
        access_key_id: &str,
    ) -> Result<usize, kube::Error> {
        let Some(rollout) = &key.spec.rollout else {
            return Ok(0);
        };
        let namespace = key.namespace().unwrap_or_default();
        let annotation = annotation(&key.name_any());
        let mut scheduled = 0;
        for target in &rollout.targets {
            for name in self
                .stale_targets(&namespace, target, &annotation, access_key_id)
                .await?
            {
                let workload = Workload {
                    kind: target.kind,
                    namespace: namespace.clone(),
                    name,
                };
                let first = {
                    let mut pending = lock(&self.pending);
                    let first = !pending.contains_key(&workload);
                    let entry = pending.entry(workload.clone()).or_default();
                    entry
                        .annotations
                        .insert(annotation.clone(), access_key_id.to_string());
                    entry.keys.retain(|k| k.uid() != key.uid());
                    entry.keys.push(key.clone());
                    first
                };
                if first {
                    let this = Arc::clone(self);
                    tokio::spawn(async move {
                        tokio::time::sleep(DEBOUNCE).await;
                        this.flush(workload).await;
                    });
                }
                scheduled += 1;
            }
        }
        Ok(scheduled)
    }

    /// Writes the collected annotations of `workload` in one patch, with an Event on each key.
    async fn flush(&self, workload: Workload) {
        let Some(pending) = lock(&self.pending).remove(&workload) else {
            return;
        };
        let patch = serde_json::json!({
            "spec": {"template": {"metadata": {"annotations": pending.annotations}}}
        });
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        let name = &workload.name;
        let written = match workload.kind {
            WorkloadKind::Deployment => {
                Api::<Deployment>::namespaced(self.client.clone(), &workload.namespace)
                    .patch(name, &params, &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
            }
            WorkloadKind::StatefulSet => {
                Api::<StatefulSet>::namespaced(self.client.clone(), &workload.namespace)
                    .patch(name, &params, &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
            }
            WorkloadKind::DaemonSet => {
                Api::<DaemonSet>::namespaced(self.client.clone(), &workload.namespace)
                    .patch(name, &params, &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
            }
        };
        let target = format!("{:?}/{name}", workload.kind);
        let (type_, reason, note) = match &written {
            Ok(()) => {
                self.restarts.inc();
                (
                    EventType::Normal,
                    ROLLOUT_TRIGGERED,
                    format!("restarted {target} for the new credentials"),
                )
            }
            Err(err) => (
                EventType::Warning,
                ROLLOUT_FAILED,
                format!("restarting {target} failed: {err}"),
            ),
        };
        tracing::info!(target = target.as_str(), reason, "rollout");
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        for key in &pending.keys {
            let event = Event {
                type_,
                reason: reason.into(),
                note: Some(note.clone()),
                action: reason.into(),
                secondary: None,
            };
            if let Err(err) = recorder.publish(&event, &key.object_ref(&())).await {
                tracing::warn!(error = %err, name = key.name_any(), "publishing event failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    #[test]
    fn selectors_become_list_queries() {
        let selector = LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["a".into(), "b".into()]),
                },
                LabelSelectorRequirement {
                    key: "canary".into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                },
            ]),
        };
        assert_eq!(selector_query(&selector), "app=web,tier in (a,b),!canary");
    }
}
