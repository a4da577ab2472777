//! `paramKind` / `paramRef`: the objects a binding hands its policy as `params`.

use std::sync::Arc;

use serde_json::Value;

use super::matching::{find_kind, label_selector, selects};
use super::policy::{Binding, Policy};
use crate::registry::ResourceType;
use crate::store::{storage_key, State};

/// The resource type of the policy's `paramKind` (`Ok(None)` without one), or the policy's
/// configuration error when no served resource has that kind.
pub(crate) fn param_type(state: &State, policy: &Policy) -> Result<Option<ResourceType>, String> {
    let Some((api_version, kind)) = &policy.param_kind else {
        return Ok(None);
    };
    find_kind(state, api_version, kind)
        .map(Some)
        .ok_or_else(|| {
            let group_version = if api_version.contains('/') {
                api_version.clone()
            } else {
                format!("/{api_version}")
            };
            format!(
                "failed to find resource referenced by paramKind: '{group_version}, Kind={kind}'"
            )
        })
}

/// The params to evaluate the policy with, one evaluation each: `[None]` when the policy or
/// binding takes none, empty when none was found and the binding allows that.
pub(crate) fn collect(
    state: &State,
    param_type: Option<&ResourceType>,
    binding: &Binding,
    request_namespace: &str,
) -> Result<Vec<Option<Arc<Value>>>, String> {
    let (Some(param_type), Some(param_ref)) = (param_type, binding.param_ref.as_ref()) else {
        return Ok(vec![None]);
    };
    let ref_namespace = param_ref.namespace.as_deref().unwrap_or_default();
    let namespace = if !param_type.namespaced {
        if !ref_namespace.is_empty() {
            return Err(
                "paramRef.namespace must not be provided for a cluster-scoped `paramKind`".into(),
            );
        }
        ""
    } else if !ref_namespace.is_empty() {
        ref_namespace
    } else if !request_namespace.is_empty() {
        request_namespace
    } else {
        return Err("cannot use namespaced paramRef in policy binding that matches cluster-scoped resources".into());
    };
    let key = storage_key(param_type);
    let name = param_ref.name.as_deref().unwrap_or_default();
    let params: Vec<Option<Arc<Value>>> = if !name.is_empty() {
        if param_ref.selector.is_some() {
            return Err("paramRef.name and paramRef.selector are mutually exclusive".into());
        }
        state
            .get(&key, namespace, name)
            .map(|found| vec![Some(found.clone())])
            .unwrap_or_default()
    } else if let Some(selector) = &param_ref.selector {
        let selector = label_selector(selector)?;
        state
            .objects(&key, Some(namespace))
            .filter(|(_, obj)| selects(selector.as_ref(), obj))
            .map(|(_, obj)| Some(obj.clone()))
            .collect()
    } else {
        return Err("one of name or selector must be provided".into());
    };
    if params.is_empty() && param_ref.parameter_not_found_action.as_deref() == Some("Deny") {
        return Err(
            "no params found for policy binding with `Deny` parameterNotFoundAction".into(),
        );
    }
    Ok(params)
}
