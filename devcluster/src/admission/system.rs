//! Admission of the deletions devcluster's own controllers make: kube-apiserver admits every
//! object the garbage collector or the namespace controller deletes, as those controllers'
//! ServiceAccounts.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::{decide, AdmissionRequest, Operation};
use crate::auth::{Authorizer, UserInfo, AUTHENTICATED_GROUP, SERVICE_ACCOUNTS_GROUP};
use crate::store::{DeleteGate, Deleter, State};

/// The identity a system controller's requests carry.
fn identity(actor: Deleter) -> UserInfo {
    let name = match actor {
        Deleter::GarbageCollector => "generic-garbage-collector",
        Deleter::NamespaceController => "namespace-controller",
    };
    UserInfo {
        username: format!("system:serviceaccount:kube-system:{name}"),
        uid: String::new(),
        groups: vec![
            SERVICE_ACCOUNTS_GROUP.to_string(),
            format!("{SERVICE_ACCOUNTS_GROUP}:kube-system"),
            AUTHENTICATED_GROUP.to_string(),
        ],
        extra: BTreeMap::new(),
    }
}

/// Runs ValidatingAdmissionPolicies on the garbage collector's and namespace cleanup's deletes.
pub struct SystemAdmission {
    authorizer: Arc<dyn Authorizer>,
}

impl SystemAdmission {
    pub fn new(authorizer: Arc<dyn Authorizer>) -> Self {
        Self { authorizer }
    }
}

impl DeleteGate for SystemAdmission {
    fn may_delete(&self, state: &State, object: &Value, by: Deleter) -> bool {
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(rt) = super::matching::find_kind(state, api_version, kind) else {
            return true;
        };
        let text = |pointer| {
            object
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        let user = identity(by);
        let request = AdmissionRequest {
            operation: Operation::Delete,
            rt: &rt,
            namespace: text("/metadata/namespace"),
            name: text("/metadata/name"),
            subresource: "",
            object: None,
            old_object: Some(object),
            user: &user,
            dry_run: false,
        };
        let verdict = decide(state, &self.authorizer, &request);
        match verdict.denials.first() {
            Some(denial) => {
                tracing::info!(
                    deleter = user.username,
                    message = %super::messages::denied(&request, denial).message,
                    "deletion refused by admission; retried on the next collection"
                );
                false
            }
            None => true,
        }
    }
}
