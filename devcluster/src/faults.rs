//! Fault injection for reliability tests: failed requests, lost responses, latency, ended
//! watches, expired watch resumption and history compaction.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::watch;

use crate::store::Store;

/// Which requests a fault applies to; `None` fields match anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestMatch {
    /// Kubernetes verb: get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: Option<String>,
    /// Plural resource name, e.g. `secrets`.
    pub resource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl RequestMatch {
    /// Matches requests with this verb on this resource.
    pub fn new(verb: &str, resource: &str) -> Self {
        Self {
            verb: Some(verb.into()),
            resource: Some(resource.into()),
            ..Self::default()
        }
    }

    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.into());
        self
    }

    fn matches(&self, request: &RequestInfo<'_>) -> bool {
        let field = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        field(&self.verb, request.verb)
            && field(&self.resource, request.resource)
            && field(&self.namespace, request.namespace)
            && field(&self.name, request.name)
    }
}

/// The identity of a request, for matching faults.
pub struct RequestInfo<'a> {
    pub verb: &'a str,
    pub resource: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

/// What happens to a request a fault matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultAction {
    /// Answer this HTTP status code with a Kubernetes `Status` without doing anything.
    Fail(u16),
    /// Perform the request, then reset the connection instead of answering.
    DropResponse,
}

struct Rule {
    matcher: RequestMatch,
    remaining: u32,
    action: FaultAction,
}

#[derive(Default)]
struct FaultState {
    rules: Vec<Rule>,
    latency: Duration,
    expire_next_watch: bool,
}

/// The fault-injection handle of a running devcluster (cheap to clone).
#[derive(Clone)]
pub struct Faults {
    state: Arc<Mutex<FaultState>>,
    end_watches: Arc<watch::Sender<u64>>,
    store: Arc<Store>,
}

impl Faults {
    pub(crate) fn new(store: Arc<Store>) -> Self {
        let (end_watches, _) = watch::channel(0);
        Self {
            state: Arc::default(),
            end_watches: Arc::new(end_watches),
            store,
        }
    }

    fn lock(&self) -> MutexGuard<'_, FaultState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Fails the next `times` requests matching `matcher` with HTTP `code`.
    pub fn fail_next(&self, matcher: RequestMatch, times: u32, code: u16) {
        self.lock().rules.push(Rule {
            matcher,
            remaining: times,
            action: FaultAction::Fail(code),
        });
    }

    /// Commits the next `times` matching writes but resets the connection instead of answering.
    pub fn drop_response_next(&self, matcher: RequestMatch, times: u32) {
        self.lock().rules.push(Rule {
            matcher,
            remaining: times,
            action: FaultAction::DropResponse,
        });
    }

    /// Delays every API request by `latency` (zero removes it).
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    /// Ends every open watch stream now (clients see a clean end of stream).
    pub fn end_watches(&self) {
        self.end_watches.send_modify(|generation| *generation += 1);
    }

    /// Makes the next watch that resumes from a resourceVersion answer 410 Expired.
    pub fn expire_next_watch(&self) {
        self.lock().expire_next_watch = true;
    }

    /// Drops the change history: every resume from an older resourceVersion gets 410 Expired.
    pub fn compact_history(&self) {
        self.store.lock().compact();
    }

    /// Removes every pending fault and the latency.
    pub fn clear(&self) {
        *self.lock() = FaultState::default();
    }

    pub(crate) fn latency(&self) -> Duration {
        self.lock().latency
    }

    /// Consumes one use of the first fault matching `request`.
    pub(crate) fn take(&self, request: &RequestInfo<'_>) -> Option<FaultAction> {
        let mut state = self.lock();
        let index = state
            .rules
            .iter()
            .position(|rule| rule.remaining > 0 && rule.matcher.matches(request))?;
        let rule = &mut state.rules[index];
        rule.remaining -= 1;
        let action = rule.action.clone();
        if rule.remaining == 0 {
            state.rules.remove(index);
        }
        Some(action)
    }

    pub(crate) fn take_expire_next_watch(&self) -> bool {
        std::mem::take(&mut self.lock().expire_next_watch)
    }

    pub(crate) fn watch_ends(&self) -> watch::Receiver<u64> {
        self.end_watches.subscribe()
    }
}
