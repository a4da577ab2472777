//! Whether the controller can reach the API server: a cheap read every few seconds, exported as
//! `keywarden_controller_api_reachable` and failing `/readyz` once none has succeeded for
//! `--max-api-silence`.
//!
//! Losing the API server never lets the controller issue from what it last saw: every write
//! that issues (the Secret's create or conditional replace, the status apply conditional on the
//! key's resourceVersion) is decided by the API server against the current object.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::api::{Api, ListParams};
use kube::Client;
use tokio_util::sync::CancellationToken;

use crate::api::AccessKey;

/// The default `--max-api-silence`.
pub const DEFAULT_MAX_SILENCE: Duration = Duration::from_secs(60);
/// How long one read may take before it counts as failed.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// When the API server last answered.
pub struct ApiContact {
    max_silence: Duration,
    last: Mutex<LastAnswer>,
}

#[derive(Clone, Copy)]
struct LastAnswer {
    /// The last answer, or the start when none came yet.
    at: Instant,
    answered: bool,
}

impl Default for ApiContact {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_SILENCE, Instant::now())
    }
}

impl ApiContact {
    pub fn new(max_silence: Duration, now: Instant) -> Self {
        Self {
            max_silence,
            last: Mutex::new(LastAnswer {
                at: now,
                answered: false,
            }),
        }
    }

    /// The API server answered a read that started at `at`.
    pub fn answered(&self, at: Instant) {
        let mut last = crate::sync::lock(&self.last);
        last.at = last.at.max(at);
        last.answered = true;
    }

    /// Time since the API server last answered (since the start when it never did).
    pub fn silence(&self, now: Instant) -> Duration {
        now.saturating_duration_since(crate::sync::lock(&self.last).at)
    }

    /// Whether the API server answered within the bound.
    pub fn is_reachable(&self, now: Instant) -> bool {
        crate::sync::lock(&self.last).answered && self.silence(now) <= self.max_silence
    }

    /// Whether the API server has been silent past the bound.
    pub fn is_lost(&self, now: Instant) -> bool {
        self.silence(now) > self.max_silence
    }

    /// How often to read: often enough to notice well within the bound, at most every 5 s.
    pub fn read_interval(&self) -> Duration {
        (self.max_silence / 4).clamp(Duration::from_millis(100), Duration::from_secs(5))
    }
}

/// Reads one AccessKey's metadata every [`ApiContact::read_interval`] until `shutdown`,
/// recording every answer; logs when the API server is lost and when it is back.
pub async fn confirm_until_shutdown(
    client: Client,
    contact: std::sync::Arc<ApiContact>,
    shutdown: CancellationToken,
) {
    let keys: Api<AccessKey> = Api::all(client);
    let one_object = ListParams::default().limit(1);
    let mut ticks = tokio::time::interval(contact.read_interval());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut lost_since: Option<Instant> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let started = Instant::now();
        let read = tokio::select! {
            () = shutdown.cancelled() => return,
            read = tokio::time::timeout(READ_TIMEOUT, keys.list_metadata(&one_object)) => read,
        };
        match read {
            Ok(Ok(_)) => {
                contact.answered(started);
                if let Some(since) = lost_since.take() {
                    tracing::info!(
                        after_seconds = since.elapsed().as_secs(),
                        "API server reachable again"
                    );
                }
            }
            Ok(Err(error)) if lost_since.is_none() && contact.is_lost(Instant::now()) => {
                tracing::warn!(%error, silent_seconds = contact.silence(Instant::now()).as_secs(), "API server lost: not ready until it answers");
                lost_since = Some(started);
            }
            Err(_) if lost_since.is_none() && contact.is_lost(Instant::now()) => {
                tracing::warn!(
                    silent_seconds = contact.silence(Instant::now()).as_secs(),
                    "API server lost (reads time out): not ready until it answers"
                );
                lost_since = Some(started);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_server_is_lost_once_silent_past_the_bound() {
        let start = Instant::now();
        let contact = ApiContact::new(Duration::from_secs(10), start);
        assert!(!contact.is_reachable(start), "never answered yet");
        assert!(!contact.is_lost(start + Duration::from_secs(10)));
        assert!(contact.is_lost(start + Duration::from_secs(11)));
        contact.answered(start + Duration::from_secs(11));
        assert!(contact.is_reachable(start + Duration::from_secs(12)));
        assert!(!contact.is_lost(start + Duration::from_secs(21)));
        assert!(contact.is_lost(start + Duration::from_secs(22)));
        assert!(!contact.is_reachable(start + Duration::from_secs(22)));
        assert_eq!(contact.read_interval(), Duration::from_millis(2500));
    }

    #[test]
    fn an_older_answer_never_moves_the_last_contact_back() {
        let start = Instant::now();
        let contact = ApiContact::new(Duration::from_secs(10), start);
        contact.answered(start + Duration::from_secs(5));
        contact.answered(start + Duration::from_secs(2));
        assert_eq!(
            contact.silence(start + Duration::from_secs(6)),
            Duration::from_secs(1)
        );
    }
}
