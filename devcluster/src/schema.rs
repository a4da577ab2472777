//! Admission of custom resources against their CRD schema: pruning, defaulting, structural
//! validation and CEL `x-kubernetes-validations` rules.

mod cel;
mod defaults;
mod prune;
mod ratchet;
#[cfg(test)]
mod tests;
mod validate;

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

const RULES_NOT_CHECKED: &str = "Invalid value: \"null\": some validation rules were not checked \
because the object was invalid; correct the existing errors to complete validation";

/// A CRD version's `openAPIV3Schema` with an identity of its own, which the cache of its
/// compiled CEL rules keys on (instead of the whole document, serialised on every write).
#[derive(Clone, Debug)]
pub struct Schema {
    value: Value,
    id: u64,
}

impl Schema {
    pub fn new(value: Value) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self {
            value,
            id: NEXT.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Distinct for every schema made with [`Schema::new`]; clones share it (and the value).
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl std::ops::Deref for Schema {
    type Target = Value;

    fn deref(&self) -> &Value {
        &self.value
    }
}

impl PartialEq for Schema {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

/// The `fieldValidation` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    /// Unknown or duplicate fields fail the request with 400 naming the field.
    #[default]
    Strict,
    /// Unknown fields are dropped and reported in a `Warning` header.
    Warn,
    /// Unknown fields are silently dropped.
    Ignore,
}

/// One entry of a 422 Invalid `Status`'s `details.causes`.
#[derive(Debug, Clone, PartialEq)]
pub struct Cause {
    /// e.g. `FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`.
    pub reason: String,
    pub message: String,
    /// e.g. `spec.owner.kind`.
    pub field: String,
}

/// Why admission refused an object.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AdmissionError {
    /// Strict field validation found unknown fields: 400 BadRequest naming them.
    #[error("{0}")]
    UnknownFields(String),
    /// Schema or CEL validation failed: 422 Invalid with one cause per problem.
    #[error("{} validation error(s)", .0.len())]
    Invalid(Vec<Cause>),
}

/// Prunes, defaults and validates `obj` (a whole custom resource) in place against `schema`
/// (the version's `openAPIV3Schema`). `old` is the stored object on updates, for CEL transition
/// rules (`oldSelf`) and for ratcheting: errors in values it left unchanged are not reported
/// (CEL rules that do not read `oldSelf` become warnings, as upstream). Returns the warnings
/// to send in `Warning` headers.
pub fn admit_custom_resource(
    schema: &Schema,
    obj: &mut Value,
    old: Option<&Value>,
    field_validation: FieldValidation,
) -> Result<Vec<String>, AdmissionError> {
    let unknown = prune::prune_object(schema, obj);
    let mut warnings = Vec::new();
    match field_validation {
        FieldValidation::Strict if !unknown.is_empty() => {
            let fields: Vec<String> = unknown
                .iter()
                .map(|field| format!("unknown field \"{field}\""))
                .collect();
            return Err(AdmissionError::UnknownFields(format!(
                "strict decoding error: {}",
                fields.join(", ")
            )));
        }
        FieldValidation::Warn => {
            warnings.extend(
                unknown
                    .iter()
                    .map(|field| format!("unknown field \"{field}\"")),
            );
        }
        _ => {}
    }
    defaults::apply_defaults(schema, obj);
    let unchanged = old
        .map(|old| ratchet::unchanged_paths(schema, obj, old))
        .unwrap_or_default();
    let mut causes = Vec::new();
    validate::validate_object(schema, obj, &mut causes);
    causes.retain(|cause| !ratchet::ratchets(&unchanged, &cause.field));
    // why: like the API server, CEL rules are skipped when a value has the wrong type or an
    // unsupported enum value, and a cause says so.
    let blocking = causes
        .iter()
        .any(|c| c.reason == "FieldValueTypeInvalid" || c.reason == "FieldValueNotSupported");
    if blocking {
        causes.push(Cause {
            reason: "FieldValueInvalid".into(),
            message: RULES_NOT_CHECKED.into(),
            field: "<nil>".into(),
        });
    } else {
        cel::validate_rules(schema, obj, old, &unchanged, &mut causes, &mut warnings);
    }
    if causes.is_empty() {
        Ok(warnings)
    } else {
        Err(AdmissionError::Invalid(causes))
    }
}
