//! The spec fields `kubectl keywarden` writes next to a GitOps tool: `rotateGeneration`,
//! `active` and `reactivateGeneration`, by server-side apply under its own field manager.
//!
//! A GitOps sync (server-side apply under another manager) of a manifest that leaves these out
//! leaves them alone; where the manifest sets one, Git wins: the plugin never forces, and says
//! who holds the field. Each apply re-applies every field the plugin already owns, since an
//! apply releases what it leaves out, and counters count from the larger of spec and status, since
//! a released counter falls back to 0 and a bump from there would be ignored.

use std::collections::BTreeSet;

use anyhow::Context as _;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::{json, Map, Value};

use super::create::FIELD_MANAGER;
use crate::api::AccessKey;

/// Where a client-side `kubectl apply` (and Argo CD without server-side apply) keeps the manifest.
const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A spec field the plugin writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Field {
    RotateGeneration,
    Active,
    ReactivateGeneration,
}

impl Field {
    const ALL: [Field; 3] = [
        Field::RotateGeneration,
        Field::Active,
        Field::ReactivateGeneration,
    ];

    /// The field's name in `spec`.
    pub fn name(self) -> &'static str {
        match self {
            Field::RotateGeneration => "rotateGeneration",
            Field::Active => "active",
            Field::ReactivateGeneration => "reactivateGeneration",
        }
    }

    /// The field's value in the key's spec.
    fn value(self, key: &AccessKey) -> Value {
        match self {
            Field::RotateGeneration => json!(key.spec.rotate_generation),
            Field::Active => json!(key.spec.active),
            Field::ReactivateGeneration => json!(key.spec.reactivate_generation),
        }
    }
}

/// Whether a `managedFields` entry's `fieldsV1` holds `spec.<field>`.
fn holds(fields: Option<&Value>, field: Field) -> bool {
    fields
        .and_then(|f| f.get("f:spec"))
        .and_then(|spec| spec.get(format!("f:{}", field.name())))
        .is_some()
}

/// Who declares `field` (a GitOps tool, `kubectl apply`): managers other than the plugin that
/// hold it through server-side apply, and a client-side apply's last-applied configuration.
pub fn declared_by(key: &AccessKey, field: Field) -> Vec<String> {
    let mut holders: Vec<String> = key
        .managed_fields()
        .iter()
        .filter(|entry| {
            entry.manager.as_deref() != Some(FIELD_MANAGER)
                && entry.operation.as_deref() == Some("Apply")
        })
        .filter(|entry| holds(entry.fields_v1.as_ref().map(|f| &f.0), field))
        .map(|entry| format!("{:?}", entry.manager.as_deref().unwrap_or("unknown")))
        .collect();
    let last_applied = key
        .annotations()
        .get(LAST_APPLIED_ANNOTATION)
        .and_then(|text| serde_json::from_str::<Value>(text).ok());
    if last_applied.is_some_and(|applied| applied["spec"].get(field.name()).is_some()) {
        holders.push("kubectl apply (client-side)".into());
    }
    holders
}

/// The fields the plugin owns through its own applies.
pub fn owned(key: &AccessKey) -> BTreeSet<Field> {
    key.managed_fields()
        .iter()
        .filter(|entry| {
            entry.manager.as_deref() == Some(FIELD_MANAGER)
                && entry.operation.as_deref() == Some("Apply")
        })
        .flat_map(|entry| {
            Field::ALL
                .into_iter()
                .filter(|field| holds(entry.fields_v1.as_ref().map(|f| &f.0), *field))
        })
        .collect()
}

/// The next value of a counter: one past the larger of spec and what the controller observed.
pub fn next_generation(key: &AccessKey, field: Field) -> i64 {
    let status = key.status.clone().unwrap_or_default();
    let (spec, observed) = match field {
        Field::RotateGeneration => (
            key.spec.rotate_generation,
            status.observed_rotate_generation,
        ),
        Field::ReactivateGeneration => (
            key.spec.reactivate_generation,
            status.observed_reactivate_generation,
        ),
        Field::Active => (0, None),
    };
    spec.max(observed.unwrap_or(0)).saturating_add(1)
}

/// The key a command changes, and who asks.
pub struct Target {
    pub keys: Api<AccessKey>,
    pub namespace: String,
    pub name: String,
    /// The caller's username, as a SelfSubjectReview tells it.
    pub caller: String,
}

/// The apply body: every field the plugin owns at its current value, `field` at `value`, the
/// caller's mark for the generation this produces, guarded by the read `resourceVersion`.
pub fn apply_body(key: &AccessKey, field: Field, value: Value, caller: &str) -> Value {
    let mut spec = Map::new();
    for kept in owned(key) {
        spec.insert(kept.name().into(), kept.value(key));
    }
    let generation = key.metadata.generation.unwrap_or(1);
    let produced = if field.value(key) == value {
        generation
    } else {
        generation + 1
    };
    spec.insert(field.name().into(), value);
    json!({
        "apiVersion": "keywarden.io/v1alpha1",
        "kind": "AccessKey",
        "metadata": {
            "name": key.name_any(),
            "namespace": key.namespace(),
            "resourceVersion": key.resource_version(),
            "annotations": super::requested_by(caller, produced),
        },
        "spec": spec,
    })
}

/// Sets `field` on key `name` to what `decide` makes of the current key; returns the value
/// written. Retries when the key changed meanwhile; refuses when a manifest declares the field
/// (Git wins); overwrites imperative writes (`kubectl edit`, earlier plugin versions) as a merge
/// patch would.
pub async fn write(
    target: &Target,
    field: Field,
    decide: impl Fn(&AccessKey) -> Value,
) -> anyhow::Result<Value> {
    const ATTEMPTS: usize = 5;
    let Target {
        keys,
        namespace,
        name,
        caller,
    } = target;
    let name = name.as_str();
    let mut force = false;
    for _ in 0..ATTEMPTS {
        let key = super::get(keys, namespace, name).await?;
        let value = decide(&key);
        let body = apply_body(&key, field, value.clone(), caller);
        let params = PatchParams {
            force,
            ..PatchParams::apply(FIELD_MANAGER)
        };
        match keys.patch(name, &params, &Patch::Apply(&body)).await {
            Ok(_) => return Ok(value),
            Err(kube::Error::Api(status))
                if status.code == 409 && status.message.starts_with("Apply failed") =>
            {
                let declared = declared_by(&key, field);
                if !declared.is_empty() {
                    anyhow::bail!(
                        "spec.{} of accesskey {name:?} is declared by {} (the manifest in Git): \
                         change it there, it wins over kubectl keywarden",
                        field.name(),
                        declared.join(" and ")
                    );
                }
                // why: only imperative writes hold the fields now; the plugin overwrote them
                // before it applied, and still does.
                force = true;
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(e) => {
                return Err(e).with_context(|| format!("setting spec.{}", field.name()));
            }
        }
    }
    anyhow::bail!(
        "spec.{} of accesskey {name:?} kept changing; try again",
        field.name()
    )
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};

    use super::*;
    use crate::api::AccessKeyStatus;

    fn key() -> AccessKey {
        serde_json::from_value(json!({
            "apiVersion": "keywarden.io/v1alpha1",
            "kind": "AccessKey",
            "metadata": {"name": "ci", "namespace": "team-a", "resourceVersion": "7"},
            "spec": {"owner": {"kind": "User", "name": "alice"}, "active": false},
        }))
        .unwrap()
    }

    fn entry(manager: &str, operation: &str, spec_fields: &[&str]) -> ManagedFieldsEntry {
        let spec: Map<String, Value> = spec_fields
            .iter()
            .map(|f| (format!("f:{f}"), json!({})))
            .collect();
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some(operation.into()),
            fields_v1: Some(FieldsV1(json!({"f:spec": spec}))),
            ..ManagedFieldsEntry::default()
        }
    }

    #[test]
    fn every_owned_field_is_applied_again_with_the_changed_one() {
        let mut key = key();
        key.spec.rotate_generation = 2;
        key.metadata.managed_fields = Some(vec![
            entry(FIELD_MANAGER, "Apply", &["active", "rotateGeneration"]),
            entry(
                "argocd-controller",
                "Apply",
                &["owner", "reactivateGeneration"],
            ),
        ]);
        let body = apply_body(&key, Field::RotateGeneration, json!(3), "alice");
        assert_eq!(
            body["spec"],
            json!({"active": false, "rotateGeneration": 3})
        );
        assert_eq!(body["metadata"]["resourceVersion"], "7");
    }

    #[test]
    fn fields_the_plugin_does_not_own_are_left_out() {
        let mut key = key();
        key.metadata.managed_fields = Some(vec![
            entry("argocd-controller", "Apply", &["active"]),
            entry(FIELD_MANAGER, "Update", &["rotateGeneration"]),
        ]);
        let body = apply_body(&key, Field::ReactivateGeneration, json!(1), "alice");
        assert_eq!(body["spec"], json!({"reactivateGeneration": 1}));
        assert_eq!(
            declared_by(&key, Field::Active),
            vec!["\"argocd-controller\"".to_string()]
        );
        assert!(declared_by(&key, Field::RotateGeneration).is_empty());
    }

    #[test]
    fn a_client_side_apply_that_sets_the_field_declares_it() {
        let mut key = key();
        key.metadata.annotations = Some(
            [(
                LAST_APPLIED_ANNOTATION.to_string(),
                r#"{"spec":{"owner":{"kind":"User","name":"alice"},"active":false}}"#.to_string(),
            )]
            .into(),
        );
        assert_eq!(
            declared_by(&key, Field::Active),
            vec!["kubectl apply (client-side)".to_string()]
        );
        assert!(declared_by(&key, Field::RotateGeneration).is_empty());
    }

    #[test]
    fn a_released_counter_is_bumped_past_what_the_controller_observed() {
        let mut key = key();
        key.spec.rotate_generation = 0;
        key.status = Some(AccessKeyStatus {
            observed_rotate_generation: Some(4),
            observed_reactivate_generation: Some(1),
            ..AccessKeyStatus::default()
        });
        assert_eq!(next_generation(&key, Field::RotateGeneration), 5);
        assert_eq!(next_generation(&key, Field::ReactivateGeneration), 2);
        key.spec.rotate_generation = 9;
        assert_eq!(next_generation(&key, Field::RotateGeneration), 10);
    }
}
