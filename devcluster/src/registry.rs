//! The table of resource types devcluster serves: built-in kinds and those registered by CRDs.

use std::sync::Arc;

use serde_json::Value;

use crate::schema::Schema;

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
    pub schema: Schema,
    /// The version's `additionalPrinterColumns` (an array, possibly empty).
    pub printer_columns: Value,
    /// Whether this version is the storage version.
    pub storage: bool,
    /// The version's `selectableFields`, as field selector names (`spec.owner.name`).
    pub selectable_fields: Vec<String>,
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

/// The live set of served resource types: the built-in kinds plus those of established CRDs.
pub struct Registry {
    served: std::sync::RwLock<Arc<Served>>,
}

/// One immutable snapshot of the served types, indexed by (group, version, plural).
#[derive(Default)]
pub struct Served {
    pub types: Vec<ResourceType>,
    index: std::collections::HashMap<(String, String, String), usize>,
}

impl Served {
    fn new(types: Vec<ResourceType>) -> Self {
        let index = types
            .iter()
            .enumerate()
            .map(|(i, rt)| ((rt.group.clone(), rt.version.clone(), rt.plural.clone()), i))
            .collect();
        Self { types, index }
    }

    /// The type served at `/apis/{group}/{version}/{plural}` (`group` empty for `/api/v1`).
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        let key = (group.to_string(), version.to_string(), plural.to_string());
        self.index.get(&key).map(|&i| &self.types[i])
    }
}

impl Registry {
    pub fn new(types: Vec<ResourceType>) -> Self {
        Self {
            served: std::sync::RwLock::new(Arc::new(Served::new(types))),
        }
    }

    /// The current snapshot; cheap to take once per request.
    pub fn snapshot(&self) -> Arc<Served> {
        self.served
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Replaces the types served for the CRD `crd_name` (an empty list stops serving it).
    pub fn set_crd_types(&self, crd_name: &str, crd_types: Vec<ResourceType>) {
        let mut served = self
            .served
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut types: Vec<ResourceType> = served
            .types
            .iter()
            .filter(|rt| rt.crd.as_ref().is_none_or(|crd| crd.crd_name != crd_name))
            .cloned()
            .collect();
        types.extend(crd_types);
        *served = Arc::new(Served::new(types));
    }
}
