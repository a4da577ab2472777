//! Requests served, counted by user, verb and resource: `GET /_devcluster/requests`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

/// One row of the request counts.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct RequestCount {
    pub user: String,
    pub verb: String,
    /// `resource` or `resource/subresource`.
    pub resource: String,
    pub count: u64,
}

/// Authenticated resource requests so far (also those later denied), by who asked and what.
// why: a benchmark counts the API requests a process makes over the network, which it cannot
// do from inside a child process it only spawned.
#[derive(Default)]
pub(crate) struct RequestCounts(Mutex<BTreeMap<(String, String, String), u64>>);

impl RequestCounts {
    pub(crate) fn count(&self, user: &str, verb: &str, resource: &str, subresource: Option<&str>) {
        let resource = match subresource {
            Some(sub) => format!("{resource}/{sub}"),
            None => resource.to_string(),
        };
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *counts
            .entry((user.to_string(), verb.to_string(), resource))
            .or_default() += 1;
    }

    /// Every count so far, ordered by user, verb and resource.
    pub(crate) fn snapshot(&self) -> Vec<RequestCount> {
        let counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        counts
            .iter()
            .map(|((user, verb, resource), &count)| RequestCount {
                user: user.clone(),
                verb: verb.clone(),
                resource: resource.clone(),
                count,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_user_verb_and_resource() {
        let counts = RequestCounts::default();
        counts.count("alice", "get", "secrets", None);
        counts.count("alice", "get", "secrets", None);
        counts.count("bob", "patch", "accesskeys", Some("status"));
        assert_eq!(
            counts.snapshot(),
            vec![
                RequestCount {
                    user: "alice".into(),
                    verb: "get".into(),
                    resource: "secrets".into(),
                    count: 2
                },
                RequestCount {
                    user: "bob".into(),
                    verb: "patch".into(),
                    resource: "accesskeys/status".into(),
                    count: 1
                },
            ]
        );
    }
}
