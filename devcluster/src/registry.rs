//! The table of resource types devcluster serves: built-in kinds and those registered by CRDs.

use std::sync::Arc;

use serde_json::Value;

/// One served resource type (one group/version/plural).
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceType {
    /// API group; empty for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    pub list_kind: String,
    /// Lower-case plural used in URLs, e.g. `secrets`.
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub namespaced: bool,
    /// Whether a `/status` subresource exists (status is then only written through it).
    pub status_subresource: bool,
    /// `/scale` subresource (CRDs only): the spec/status replica paths.
    pub scale_subresource: Option<Value>,
    /// Verbs advertised in discovery.
    pub verbs: Vec<String>,
    /// Set for resources served from a CustomResourceDefinition.
    pub crd: Option<Arc<CrdVersion>>,
}

/// What a CustomResourceDefinition says about one of its served versions.
#[derive(Clone, Debug, PartialEq)]
pub struct CrdVersion {
    /// Name of the CRD object (`plural.group`).
    pub crd_name: String,
    /// The version's `schema.openAPIV3Schema` (`Value::Null` when absent).
    pub schema: Value,
    /// The version's `additionalPrinterColumns` (an array, possibly empty).
    pub printer_columns: Value,
    /// Whether this version is the storage version.
    pub storage: bool,
}

impl ResourceType {
    /// `group/version`, or just `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}
