//! Label and field selectors, as accepted by list and watch.

use serde_json::Value;

/// A parsed `labelSelector`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LabelSelector {
    _private: (),
}

/// A parsed `fieldSelector`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldSelector {
    _private: (),
}

/// Why a selector could not be parsed; answered 400 BadRequest with this message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

impl LabelSelector {
    /// Parses `=`, `==`, `!=`, `in`, `notin`, `key` and `!key` requirements, comma-separated.
    pub fn parse(_s: &str) -> Result<Self, SelectorError> {
        todo!("LabelSelector::parse")
    }

    /// Whether the object's `metadata.labels` satisfy every requirement.
    pub fn matches(&self, _obj: &Value) -> bool {
        todo!("LabelSelector::matches")
    }
}

impl FieldSelector {
    /// Parses `field=value`, `field==value` and `field!=value` terms. Supported fields:
    /// `metadata.name`, `metadata.namespace`, and for `kind` `Event` also `involvedObject.*`,
    /// `reason`, `type`, `source`; for `Secret` also `type`. Others are a `SelectorError`.
    pub fn parse(_s: &str, _kind: &str) -> Result<Self, SelectorError> {
        todo!("FieldSelector::parse")
    }

    pub fn matches(&self, _obj: &Value) -> bool {
        todo!("FieldSelector::matches")
    }
}
