//! Watch streams: replay from a resourceVersion, live changes, bookmarks, timeouts and 410s.

use std::sync::Arc;
use std::time::Duration;

use ::http::{header, HeaderValue, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use super::http::Body;
use super::read::{metadata_only, rendering, Filter, Rendering};
use super::{to_wire, wire_ready, Call, Server};
use crate::registry::ResourceType;
use crate::status::ApiError;
use crate::store::{Change, ChangeType, StorageKey};

/// One watch stream's fixed parameters.
struct Watcher {
    rt: ResourceType,
    key: StorageKey,
    filter: Filter,
    rendering: Rendering,
    /// Whether a Table event already carried the column definitions (sent once per watch).
    headers_sent: std::cell::Cell<bool>,
    include_object: bool,
    bookmarks: bool,
    lines: mpsc::Sender<Bytes>,
}

/// One line of a watch stream: `{"type":...,"object":...}` and a newline.
///
/// why: written field by field rather than through `json!`, which would copy the whole
/// object into a new value before serializing it.
fn event_line(event_type: &str, object: &Value) -> Bytes {
    let mut line = Vec::with_capacity(512);
    line.extend_from_slice(b"{\"type\":");
    let written = serde_json::to_writer(&mut line, event_type)
        .and_then(|()| {
            line.extend_from_slice(b",\"object\":");
            serde_json::to_writer(&mut line, object)
        })
        .is_ok();
    if !written {
        return Bytes::new();
    }
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

fn expired_line(message: &str) -> Bytes {
    event_line("ERROR", &ApiError::expired(message).to_status())
}

impl Watcher {
    /// The line reporting `obj` with `event_type`, in the form this watch asked for.
    fn object_line(&self, event_type: &str, obj: &Value) -> Bytes {
        if self.rendering == Rendering::Full && wire_ready(&self.rt, obj) {
            return event_line(event_type, obj);
        }
        event_line(event_type, &self.render(obj))
    }

    fn render(&self, obj: &Value) -> Value {
        match self.rendering {
            Rendering::Full => to_wire(&self.rt, obj),
            Rendering::Metadata => metadata_only(obj),
            Rendering::Table => {
                let metadata =
                    json!({ "resourceVersion": obj.pointer("/metadata/resourceVersion") });
                let wire = to_wire(&self.rt, obj);
                let mut table = crate::table::to_table(
                    &self.rt,
                    &[wire],
                    metadata,
                    self.include_object,
                    chrono::Utc::now(),
                );
                // why: like the API server, only the first event of a watch carries the headers.
                if self.headers_sent.replace(true) {
                    table["columnDefinitions"] = json!([]);
                }
                table
            }
        }
    }

    fn in_scope(&self, change: &Change) -> bool {
        change.key == self.key
            && self
                .filter
                .namespace
                .as_ref()
                .is_none_or(|ns| *ns == change.namespace)
    }

    /// The event this watch reports for `change`, if any (selector transitions included).
    fn line_for(&self, change: &Change) -> Option<Bytes> {
        if !self.in_scope(change) {
            return None;
        }
        let now = self.filter.matches(&change.object);
        let event_type = match change.change_type {
            ChangeType::Added if now => "ADDED",
            ChangeType::Deleted if now => "DELETED",
            ChangeType::Modified => {
                let before = change
                    .previous
                    .as_ref()
                    .is_some_and(|p| self.filter.matches(p));
                match (before, now) {
                    (true, true) => "MODIFIED",
                    (false, true) => "ADDED",
                    (true, false) => "DELETED",
                    (false, false) => return None,
                }
            }
            _ => return None,
        };
        Some(self.object_line(event_type, &change.object))
    }

    fn bookmark(&self, rv: u64, initial_events_end: bool) -> Bytes {
        let mut metadata = json!({ "resourceVersion": rv.to_string() });
        if initial_events_end {
            metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        let object = json!({ "kind": self.rt.kind, "apiVersion": self.rt.api_version(), "metadata": metadata });
        event_line("BOOKMARK", &object)
    }
}

fn stream_response(lines: mpsc::Receiver<Bytes>) -> Response<Body> {
    let stream = futures::stream::unfold(lines, |mut lines| async move {
        lines
            .recv()
            .await
            .map(|line| (Ok(Frame::data(line)), lines))
    });
    let mut response = Response::new(BodyExt::boxed_unsync(StreamBody::new(stream)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

pub(crate) fn watch(server: &Server, call: &Call) -> Result<Response<Body>, ApiError> {
    let filter = Filter::from_call(call)?;
    let (tx, rx) = mpsc::channel(256);
    let watcher = Watcher {
        rt: call.rt.clone(),
        key: call.key.clone(),
        filter,
        rendering: rendering(&call.accept),
        headers_sent: std::cell::Cell::new(false),
        include_object: !call.accept.contains("includeObject=None"),
        bookmarks: call.query.flag("allowWatchBookmarks"),
        lines: tx,
    };
    let timeout = call
        .query
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs);
    let send_initial = call.query.flag("sendInitialEvents");
    let requested_rv = call.query.get("resourceVersion").filter(|rv| *rv != "0");
    let resume_rv = match requested_rv {
        Some(rv) if !send_initial => Some(
            rv.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?,
        ),
        _ => None,
    };

    let mut initial: Vec<Bytes> = Vec::new();
    let (changes, start_rv) = {
        let state = server.store.lock();
        let current = state.resource_version();
        match resume_rv {
            Some(rv) => {
                let replay = if server.faults.take_expire_next_watch() {
                    None
                } else {
                    state.changes_since(rv)
                };
                match replay {
                    Some(replay) => {
                        initial.extend(replay.iter().filter_map(|c| watcher.line_for(c)))
                    }
                    None => {
                        let message = format!(
                            "too old resource version: {rv} ({})",
                            state.compacted_rv() + 1
                        );
                        drop(state);
                        let (tx, rx) = mpsc::channel(1);
                        let _ = tx.try_send(expired_line(&message));
                        return Ok(stream_response(rx));
                    }
                }
            }
            None => {
                for (_, obj) in state.objects(&call.key, watcher.filter.namespace.as_deref()) {
                    if watcher.filter.matches(obj) {
                        initial.push(watcher.object_line("ADDED", obj));
                    }
                }
                if send_initial && watcher.bookmarks {
                    initial.push(watcher.bookmark(current, true));
                }
            }
        }
        (server.store.subscribe(), current)
    };
    let ends = server.faults.watch_ends();
    tokio::spawn(run(
        watcher,
        initial,
        changes,
        start_rv,
        timeout,
        server.bookmark_interval,
        ends,
    ));
    Ok(stream_response(rx))
}

async fn run(
    watcher: Watcher,
    initial: Vec<Bytes>,
    mut changes: broadcast::Receiver<Arc<Change>>,
    mut last_rv: u64,
    timeout: Option<Duration>,
    bookmark_interval: Duration,
    mut ends: tokio::sync::watch::Receiver<u64>,
) {
    for line in initial {
        if watcher.lines.send(line).await.is_err() {
            return;
        }
    }
    let deadline = tokio::time::sleep(timeout.unwrap_or(Duration::from_secs(365 * 24 * 3600)));
    tokio::pin!(deadline);
    let mut bookmarks = tokio::time::interval_at(
        tokio::time::Instant::now() + bookmark_interval,
        bookmark_interval,
    );
    ends.mark_unchanged();
    loop {
        let line = tokio::select! {
            _ = &mut deadline => return,
            _ = ends.changed() => return,
            _ = bookmarks.tick() => {
                if !watcher.bookmarks {
                    if watcher.lines.is_closed() { return; }
                    continue;
                }
                watcher.bookmark(last_rv, false)
            }
            change = changes.recv() => match change {
                Ok(change) => {
                    last_rv = change.rv;
                    match watcher.line_for(&change) {
                        Some(line) => line,
                        None => continue,
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let _ = watcher.lines.send(expired_line("watch fell behind the change stream; resume from a list")).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        if watcher.lines.send(line).await.is_err() {
            return;
        }
    }
}
