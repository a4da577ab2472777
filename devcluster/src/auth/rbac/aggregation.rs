//! The ClusterRole aggregation controller: a ClusterRole with an `aggregationRule` holds the
//! union of the rules of the ClusterRoles its selectors match, kept current with the store lock
//! held so the change is in effect for the next request.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

use super::index::CLUSTER_ROLES;
use crate::store::{State, StorageKey};

/// How deep aggregation may recurse (its own writes run it again); enough for chains such as
/// view -> edit -> admin, and a stop for roles that aggregate each other.
const MAX_DEPTH: usize = 8;

/// Runs the aggregation after ClusterRole commits.
#[derive(Default)]
pub struct Aggregator {
    depth: AtomicUsize,
}

impl Aggregator {
    /// Recomputes every aggregated ClusterRole and rewrites those whose rules changed.
    pub fn sync(&self, state: &mut State) {
        // why: the store lock is held, so only one thread is ever in here; the counter only
        // bounds the recursion through our own writes.
        if self.depth.fetch_add(1, Ordering::SeqCst) >= MAX_DEPTH {
            self.depth.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!("ClusterRole aggregation did not settle");
            return;
        }
        let key = StorageKey::from(CLUSTER_ROLES);
        let aggregated: Vec<String> = state
            .objects(&key, None)
            .filter(|(_, role)| !selectors(role).is_empty())
            .map(|((_, name), _)| name.clone())
            .collect();
        for name in aggregated {
            // why: read the role again; an earlier rewrite in this loop may have recursed
            // into here and already updated it.
            let Some(role) = state.get(&key, "", &name).cloned() else {
                continue;
            };
            let rules = aggregate_rules(state, &key, &role, &name);
            let current = role
                .get("rules")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if rules != current {
                let mut updated = (*role).clone();
                updated["rules"] = Value::Array(rules);
                state.system_replace(&key, "", updated);
            }
        }
        self.depth.fetch_sub(1, Ordering::SeqCst);
    }
}

fn selectors(role: &Value) -> &[Value] {
    role.pointer("/aggregationRule/clusterRoleSelectors")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The rules of every other ClusterRole matched by `role`'s selectors, in selector then name
/// order, without repeats (as the clusterrole-aggregation controller builds them).
fn aggregate_rules(state: &State, key: &StorageKey, role: &Value, name: &str) -> Vec<Value> {
    let mut rules: Vec<Value> = Vec::new();
    for selector in selectors(role) {
        for ((_, other_name), other) in state.objects(key, None) {
            if other_name == name || !selector_matches(selector, other) {
                continue;
            }
            for rule in other
                .get("rules")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if !rules.contains(rule) {
                    rules.push(rule.clone());
                }
            }
        }
    }
    rules
}

/// Whether a `metav1.LabelSelector` (matchLabels and matchExpressions) matches the object's
/// labels; an empty selector matches everything.
pub fn selector_matches(selector: &Value, object: &Value) -> bool {
    let label = |key: &str| {
        object
            .pointer("/metadata/labels")
            .and_then(|labels| labels.get(key))
            .and_then(Value::as_str)
    };
    let labels_match = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|wanted| {
            wanted
                .iter()
                .all(|(key, value)| label(key).is_some_and(|v| Some(v) == value.as_str()))
        });
    let expressions_match = selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .is_none_or(|expressions| {
            expressions.iter().all(|expression| {
                let key = expression
                    .get("key")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let values: Vec<&str> = expression
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|values| values.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let actual = label(key);
                match expression.get("operator").and_then(Value::as_str) {
                    Some("In") => actual.is_some_and(|v| values.contains(&v)),
                    Some("NotIn") => !actual.is_some_and(|v| values.contains(&v)),
                    Some("Exists") => actual.is_some(),
                    Some("DoesNotExist") => actual.is_none(),
                    _ => false,
                }
            })
        });
    labels_match && expressions_match
}
