//! The rollout opt-in of an AccessKey: workloads whose pods restart after each issuance.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Pod-template annotation prefix the controller writes on rollout targets: the key's name
/// follows, and the value is the access ID of the issuance the pods were restarted for.
pub const ROLLOUT_ANNOTATION_PREFIX: &str = "rollout.keywarden.io/";

/// Workloads in the key's namespace restarted after each issuance of the key (opt-in).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// The workloads, by name or by label selector.
    #[schemars(length(min = 1, max = 16))]
    pub targets: Vec<RolloutTarget>,
}

/// One workload by name, or every workload of a kind matching a label selector.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.name) != has(self.selector)").message("a rollout target has either a name or a selector"),
)]
pub struct RolloutTarget {
    pub kind: WorkloadKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// The kinds of workload a key may restart (API group `apps`).
#[derive(
    schemars::JsonSchema,
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

impl WorkloadKind {
    /// The resource name in API group `apps`.
    pub fn resource(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "deployments",
            WorkloadKind::StatefulSet => "statefulsets",
            WorkloadKind::DaemonSet => "daemonsets",
        }
    }
}
