//! The verifier's HTTP/1 server and its limits against hostile clients: a header-read timeout,
//! an idle keep-alive timeout, a cap on open connections (idle ones are closed first to make
//! room), a cap on header size, and the process's open-file limit raised to hold the cap.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::sync::lock;

/// Limits of the verifier's HTTP server.
#[derive(Clone, Debug)]
pub struct HttpLimits {
    /// Time a client has to send a whole request head, from its first byte (or, for a new
    /// connection, from the accept); also the time `/v1/verify` has to receive its body.
    pub header_read_timeout: Duration,
    /// Time a keep-alive connection may sit between requests.
    pub idle_timeout: Duration,
    /// Open connections; at the cap the longest-idle connection is closed for a new one.
    pub max_connections: usize,
    /// Bytes of a request line and headers; larger heads are answered 431.
    pub max_header_bytes: usize,
    /// Bytes of a `POST /v1/verify` body; larger bodies are answered 413.
    pub max_body_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            // why: longer than nginx's and Envoy's upstream keep-alive (60 s, 1 h idle in
            // Envoy only when configured so), so the proxy, not the verifier, closes pooled
            // connections and never sends a request on one being closed.
            idle_timeout: Duration::from_secs(75),
            max_connections: 10_000,
            max_header_bytes: 16 * 1024,
            max_body_bytes: 16 * 1024,
        }
    }
}

/// hyper refuses buffers below 8 KiB; smaller caps would panic.
const MIN_HEADER_BYTES: usize = 8 * 1024;
const ACCEPT_RETRY: Duration = Duration::from_millis(50);
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How often expired connections are looked for.
const REAP_EVERY: Duration = Duration::from_millis(250);
/// How long a connection asked to close gracefully may take before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Where a connection is in its request cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    /// Accepted, no byte received yet.
    New = 0,
    /// Between requests.
    Idle = 1,
    /// Reading a request head.
    Head = 2,
    /// A request is being answered.
    Busy = 3,
}

impl Phase {
    fn from_u8(value: u8) -> Phase {
        match value {
            0 => Phase::New,
            1 => Phase::Idle,
            2 => Phase::Head,
            _ => Phase::Busy,
        }
    }
}

/// Milliseconds since the first call, a cheap clock for atomics.
fn now_millis() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// One connection's phase, shared by its IO, its service and the reaper.
struct Tracker {
    phase: AtomicU8,
    /// When the current phase began (`now_millis`).
    since: AtomicU64,
    close_requested: AtomicBool,
    close: Notify,
}

impl Tracker {
    fn new() -> Self {
        Self {
            phase: AtomicU8::new(Phase::New as u8),
            since: AtomicU64::new(now_millis()),
            close_requested: AtomicBool::new(false),
            close: Notify::new(),
        }
    }

    fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    fn enter(&self, phase: Phase) {
        self.since.store(now_millis(), Ordering::Release);
        self.phase.store(phase as u8, Ordering::Release);
    }

    /// A request is being answered; no timeout applies, so the clock is not read.
    fn busy(&self) {
        self.phase.store(Phase::Busy as u8, Ordering::Release);
    }

    /// Bytes arrived: a new request head starts unless one is already being read or answered.
    fn received(&self) {
        if matches!(self.phase(), Phase::New | Phase::Idle) {
            self.enter(Phase::Head);
        }
    }

    /// Whether the connection has outlived its phase's timeout at `now`.
    fn expired(&self, now: u64, limits: &HttpLimits) -> bool {
        let limit = match self.phase() {
            Phase::New | Phase::Head => limits.header_read_timeout,
            Phase::Idle => limits.idle_timeout,
            Phase::Busy => return false,
        };
        let limit = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        now.saturating_sub(self.since.load(Ordering::Acquire)) >= limit
    }

    fn request_close(&self) {
        if !self.close_requested.swap(true, Ordering::AcqRel) {
            self.close.notify_one();
        }
    }
}

/// The open connections, for the cap, the reaper and shutdown.
#[derive(Default)]
struct Connections {
    open: Mutex<HashMap<u64, Arc<Tracker>>>,
    next_id: AtomicU64,
    closed: Notify,
}

impl Connections {
    fn register(&self) -> (u64, Arc<Tracker>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let tracker = Arc::new(Tracker::new());
        lock(&self.open).insert(id, tracker.clone());
        (id, tracker)
    }

    fn unregister(&self, id: u64) {
        lock(&self.open).remove(&id);
        self.closed.notify_waiters();
    }

    fn len(&self) -> usize {
        lock(&self.open).len()
    }

    /// Asks the connection that has waited longest without a request in progress to close:
    /// idle keep-alive and new connections first, then ones still sending their head.
    fn close_one_waiting(&self) {
        let open = lock(&self.open);
        let waiting = |phases: &[Phase]| {
            open.values()
                .filter(|t| !t.close_requested.load(Ordering::Acquire))
                .filter(|t| phases.contains(&t.phase()))
                .min_by_key(|t| t.since.load(Ordering::Acquire))
                .cloned()
        };
        if let Some(victim) =
            waiting(&[Phase::Idle, Phase::New]).or_else(|| waiting(&[Phase::Head]))
        {
            victim.request_close();
        }
    }

    /// Asks every connection past its phase's timeout to close.
    fn close_expired(&self, limits: &HttpLimits) {
        let now = now_millis();
        for tracker in lock(&self.open).values() {
            if tracker.expired(now, limits) {
                tracker.request_close();
            }
        }
    }

    fn close_all(&self) {
        for tracker in lock(&self.open).values() {
            tracker.request_close();
        }
    }
}

/// A TCP stream that tells its tracker when request bytes arrive.
struct TrackedStream {
    stream: TcpStream,
    tracker: Arc<Tracker>,
}

impl AsyncRead for TrackedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.tracker.received();
        }
        polled
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Serves `handler` on `listener` within `limits` until `shutdown`, then lets open requests
/// finish (up to 10 s).
pub async fn serve<H, F>(
    listener: TcpListener,
    limits: HttpLimits,
    handler: H,
    shutdown: CancellationToken,
) -> io::Result<()>
where
    H: Fn(SocketAddr, Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<axum::body::Body>> + Send + 'static,
{
    let connections = Arc::new(Connections::default());
    let reaper = tokio::spawn(reap(connections.clone(), limits.clone(), shutdown.clone()));
    let max_connections = limits.max_connections.max(1);
    loop {
        if !wait_for_room(&connections, max_connections, &shutdown).await {
            break;
        }
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // why: EMFILE and friends pass; spinning on them would burn a core.
                    tracing::warn!(%err, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
        };
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%err, "setting TCP_NODELAY failed");
        }
        let (id, tracker) = connections.register();
        let connection = serve_connection(stream, peer, tracker, &limits, handler.clone());
        let connections = connections.clone();
        tokio::spawn(async move {
            connection.await;
            connections.unregister(id);
        });
    }
    drop(listener);
    reaper.abort();
    connections.close_all();
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.len() > 0 {
            let closed = connections.closed.notified();
            if connections.len() == 0 {
                break;
            }
            closed.await;
        }
    });
    if drained.await.is_err() {
        tracing::warn!("requests still open after {SHUTDOWN_GRACE:?}; closing them");
    }
    Ok(())
}

/// Waits until fewer than `max` connections are open, closing waiting ones to make room;
/// `false` when shut down meanwhile.
async fn wait_for_room(
    connections: &Connections,
    max: usize,
    shutdown: &CancellationToken,
) -> bool {
    loop {
        let closed = connections.closed.notified();
        tokio::pin!(closed);
        closed.as_mut().enable();
        if connections.len() < max {
            return true;
        }
        connections.close_one_waiting();
        tokio::select! {
            () = shutdown.cancelled() => return false,
            () = closed => {}
            // why: a connection asked to close may have started a request meanwhile and stay;
            // look again for another one rather than wait for it.
            () = tokio::time::sleep(CLOSE_GRACE) => {}
        }
    }
}

/// Closes connections past their timeouts until shutdown.
async fn reap(connections: Arc<Connections>, limits: HttpLimits, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(REAP_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => connections.close_expired(&limits),
        }
    }
}

/// Serves one connection until it ends, or until it is asked to close: at once when no request
/// is in progress, else after the request (keep-alive disabled).
fn serve_connection<H, F>(
    stream: TcpStream,
    peer: SocketAddr,
    tracker: Arc<Tracker>,
    limits: &HttpLimits,
    handler: H,
) -> impl Future<Output = ()>
where
    H: Fn(SocketAddr, Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<axum::body::Body>> + Send + 'static,
{
    let service = {
        let tracker = tracker.clone();
        service_fn(move |request| {
            tracker.busy();
            let answer = handler(peer, request);
            let tracker = tracker.clone();
            async move {
                let response = answer.await;
                tracker.enter(Phase::Idle);
                Ok::<_, std::convert::Infallible>(response)
            }
        })
    };
    let io = TokioIo::new(TrackedStream {
        stream,
        tracker: tracker.clone(),
    });
    let connection = http1::Builder::new()
        .max_buf_size(limits.max_header_bytes.max(MIN_HEADER_BYTES) * 2)
        .max_header_size(limits.max_header_bytes)
        .header_read_timeout(None)
        .serve_connection(io, service);
    async move {
        tokio::pin!(connection);
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(err) = served {
                    tracing::debug!(%err, "connection closed with an error");
                }
                return;
            }
            () = tracker.close.notified() => {}
        }
        // why: a client still sending its head has no request to finish; hyper would wait for
        // the head before closing, so the connection is dropped instead.
        if tracker.phase() == Phase::Head {
            tracing::debug!(%peer, "request head not received in time; connection closed");
            return;
        }
        connection.as_mut().graceful_shutdown();
        let grace = if tracker.phase() == Phase::Busy {
            SHUTDOWN_GRACE
        } else {
            CLOSE_GRACE
        };
        if let Ok(Err(err)) = tokio::time::timeout(grace, connection).await {
            tracing::debug!(%err, "connection closed with an error");
        }
    }
}

/// Raises the soft open-file limit to the hard limit (Linux) so the connection cap, not the
/// file table, is what bounds connections; returns the soft limit now in force.
pub fn raise_open_file_limit() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
        if soft < hard {
            if let Err(err) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!(%err, soft, hard, "raising the open-file limit failed");
                return Some(soft);
            }
        }
        Some(hard)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_phase_expires_after_its_own_timeout_and_busy_never_does() {
        let limits = HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            ..HttpLimits::default()
        };
        let tracker = Tracker::new();
        let start = tracker.since.load(Ordering::Acquire);
        let at = |seconds: u64| start + seconds * 1000;
        assert!(
            !tracker.expired(at(9), &limits),
            "new, within the head timeout"
        );
        assert!(
            tracker.expired(at(10), &limits),
            "new, past the head timeout"
        );
        tracker.received();
        assert_eq!(tracker.phase(), Phase::Head);
        tracker.busy();
        tracker.received();
        assert_eq!(tracker.phase(), Phase::Busy, "body bytes start no new head");
        assert!(!tracker.expired(u64::MAX, &limits), "busy never expires");
        tracker.enter(Phase::Idle);
        let idle_since = tracker.since.load(Ordering::Acquire);
        assert!(!tracker.expired(idle_since + 74_000, &limits));
        assert!(tracker.expired(idle_since + 75_000, &limits));
    }

    #[test]
    fn at_the_cap_idle_connections_are_chosen_before_ones_sending_a_head() {
        let connections = Connections::default();
        let (_, sending) = connections.register();
        sending.enter(Phase::Head);
        let (_, busy) = connections.register();
        busy.busy();
        let (_, idle) = connections.register();
        idle.enter(Phase::Idle);
        connections.close_one_waiting();
        assert!(idle.close_requested.load(Ordering::Acquire));
        assert!(!sending.close_requested.load(Ordering::Acquire));
        connections.close_one_waiting();
        assert!(sending.close_requested.load(Ordering::Acquire));
        connections.close_one_waiting();
        assert!(
            !busy.close_requested.load(Ordering::Acquire),
            "busy is never chosen"
        );
    }
}
