//! Serving connections: Gantry's own accept loop over hyper's HTTP/1 connection, so
//! that a client cannot hold the server's connections, file descriptors or upload
//! workers without sending what it promised. Each connection is bounded by:
//!
//! - a **header read timeout**: a request head must arrive whole within it, counted
//!   from its first byte (a slowloris sending a header line now and then is cut);
//! - an **idle timeout**: a keep-alive connection with no request under way, or a
//!   response nobody reads (no byte written for that long), is closed;
//! - a **minimum body rate**: a request body must arrive at a least rate, measured
//!   over the time spent *waiting* for it (the server's own slowness is not held
//!   against the client), or the body ends in an error the handler sees — a chunked
//!   upload cut this way loses only that chunk and stays resumable;
//! - a **cap per client address** on open connections (IPv6 by /64): beyond it new
//!   connections are closed at once, so one client cannot take every descriptor.
//!
//! A body the handler answered without reading whole (a refusal before an upload) is
//! read to its end and discarded after the answer, for a bounded time, so that the
//! answer reaches the client and any proxy in front instead of a connection reset.
//!
//! Each request carries its peer address (`ConnectInfo<SocketAddr>`), which the
//! limits on failed credential checks key on. Shutting down stops accepting, lets
//! in-flight requests finish and closes idle connections.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tower::ServiceExt;

/// The bounds every connection is held to (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// How long a request head may take, from its first byte.
    pub header_read_timeout: Duration,
    /// How long a connection may sit with no request under way, or with a response
    /// nobody reads.
    pub idle_timeout: Duration,
    /// The least bytes per second a request body must arrive at, measured over
    /// windows of [`ConnectionLimits::header_read_timeout`] spent waiting for it.
    pub min_body_bytes_per_second: u64,
    /// The most connections one client address may hold open at once.
    pub max_connections_per_address: usize,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(120),
            min_body_bytes_per_second: 1024,
            max_connections_per_address: 512,
        }
    }
}

/// The most header fields hyper parses. Requests with more than `limits::MAX_HEADERS`
/// (but at most this many) reach the server's own check, which answers 431 in the
/// protocol's envelope; beyond this hyper answers 431 itself, without a body.
const PARSED_HEADERS: usize = 4 * crate::limits::MAX_HEADERS;

/// Accepts connections on `listener` and serves `router` on each until `shutdown`
/// resolves; then stops accepting and returns once every connection has finished its
/// in-flight requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let open = Arc::new(OpenConnections::default());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors or a connection reset before it was taken:
                    // wait a moment rather than spin.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = open.take(peer.ip(), limits.max_connections_per_address) else {
            tracing::debug!(%peer, "connection refused: too many from this address");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let stopped = stopped.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, router, limits, stopped).await;
            drop(slot);
        });
    }
    let _ = stop.send(true);
    drop(listener);
    open.drained().await;
}

/// Serves one connection until it closes, a limit cuts it, or the server shuts down.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let service_activity = activity.clone();
    let service =
        hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
            let router = router.clone();
            let activity = service_activity.clone();
            async move {
                let handling = activity.start_request();
                let (mut parts, body) = request.into_parts();
                parts.extensions.insert(ConnectInfo(peer));
                let body = Body::new(MinimumRate::new(Lingering(Some(body)), &limits));
                let response = router.oneshot(http::Request::from_parts(parts, body)).await;
                drop(handling);
                let responding = activity.start_response();
                response.map(|response| {
                    response.map(|body| {
                        Body::new(Responding {
                            body,
                            _responding: responding,
                        })
                    })
                })
            }
        });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // The watchdog below bounds request heads and idle time; hyper's own header
        // timer would also run while a keep-alive connection waits, as the idle bound.
        .header_read_timeout(None)
        .max_headers(PARSED_HEADERS)
        .keep_alive(true);
    let connection = builder.serve_connection(io, service);
    let mut connection = std::pin::pin!(connection);
    let watchdog = watch(&activity, &limits);
    let mut watchdog = std::pin::pin!(watchdog);
    let mut shutting_down = *stopped.borrow();
    if shutting_down {
        connection.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                return;
            }
            reason = &mut watchdog => {
                tracing::debug!(%peer, reason, "connection closed");
                return;
            }
            changed = stopped.changed(), if !shutting_down => {
                if changed.is_err() || *stopped.borrow() {
                    shutting_down = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Resolves (with the reason) once `activity` breaks a limit: a request head slower
/// than the header read timeout, or idle time beyond the idle timeout.
async fn watch(activity: &Activity, limits: &ConnectionLimits) -> &'static str {
    let header = millis(limits.header_read_timeout);
    let idle = millis(limits.idle_timeout);
    loop {
        let now = activity.elapsed();
        let deadline = if activity.handlers.load(Ordering::Acquire) > 0 {
            // A handler is at work: its body is bounded by the minimum rate.
            None
        } else if activity.responses.load(Ordering::Acquire) > 0 {
            Some((
                activity.last_write.load(Ordering::Acquire) + idle,
                "response not read",
            ))
        } else {
            match activity.head_started.load(Ordering::Acquire) {
                NOT_STARTED => Some((activity.idle_since.load(Ordering::Acquire) + idle, "idle")),
                started => Some((started + header, "request head too slow")),
            }
        };
        match deadline {
            Some((at, reason)) if at <= now => return reason,
            Some((at, _)) => {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(at - now)) => {}
                    () = activity.changed.notified() => {}
                }
            }
            None => activity.changed.notified().await,
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX / 4)
}

const NOT_STARTED: u64 = u64::MAX;

/// What one connection is doing, in milliseconds since it opened.
struct Activity {
    opened: Instant,
    last_write: AtomicU64,
    /// When the connection last had no request under way.
    idle_since: AtomicU64,
    /// When the first byte of the next request head arrived, if one has.
    head_started: AtomicU64,
    /// Requests whose handler is running.
    handlers: AtomicU32,
    /// Responses whose body is being sent.
    responses: AtomicU32,
    changed: tokio::sync::Notify,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            opened: Instant::now(),
            last_write: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(NOT_STARTED),
            handlers: AtomicU32::new(0),
            responses: AtomicU32::new(0),
            changed: tokio::sync::Notify::new(),
        }
    }

    fn elapsed(&self) -> u64 {
        millis(self.opened.elapsed())
    }

    fn read(&self) {
        if self.handlers.load(Ordering::Relaxed) == 0
            && self.responses.load(Ordering::Relaxed) == 0
            && self.head_started.load(Ordering::Relaxed) == NOT_STARTED
        {
            self.head_started.store(self.elapsed(), Ordering::Release);
            self.changed.notify_one();
        }
    }

    fn wrote(&self) {
        self.last_write.store(self.elapsed(), Ordering::Release);
    }

    fn start_request(self: &Arc<Self>) -> Counted {
        self.head_started.store(NOT_STARTED, Ordering::Release);
        self.handlers.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_one();
        Counted {
            activity: self.clone(),
            responses: false,
        }
    }

    fn start_response(self: &Arc<Self>) -> Counted {
        self.wrote();
        self.responses.fetch_add(1, Ordering::AcqRel);
        Counted {
            activity: self.clone(),
            responses: true,
        }
    }
}

/// A running handler or a response being sent, counted for as long as it lives.
struct Counted {
    activity: Arc<Activity>,
    responses: bool,
}

impl Drop for Counted {
    fn drop(&mut self) {
        let activity = &self.activity;
        let counter = if self.responses {
            &activity.responses
        } else {
            &activity.handlers
        };
        counter.fetch_sub(1, Ordering::AcqRel);
        if activity.handlers.load(Ordering::Acquire) == 0
            && activity.responses.load(Ordering::Acquire) == 0
        {
            activity
                .idle_since
                .store(activity.elapsed(), Ordering::Release);
        }
        activity.changed.notify_one();
    }
}

/// A response body, counted as being sent until hyper drops it.
struct Responding {
    body: Body,
    _responding: Counted,
}

impl http_body::Body for Responding {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The socket, noting when bytes move.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read();
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Why a request body was cut.
#[derive(Debug)]
struct TooSlow {
    received: u64,
    waited: Duration,
    minimum: u64,
}

impl std::fmt::Display for TooSlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body arrived too slowly ({} bytes in {} s of waiting; at least {} bytes/s \
             are needed), so it was cut",
            self.received,
            self.waited.as_secs(),
            self.minimum
        )
    }
}

impl std::error::Error for TooSlow {}

/// How long a request body a handler left unread is still read (and discarded) after
/// the answer, at most, and how long it may stall while being read.
const LINGER_FOR: Duration = Duration::from_secs(30);
const LINGER_STALL: Duration = Duration::from_secs(5);

/// A request body that, when the handler answers without reading it all (a refusal, an
/// unknown upload session), is read to its end and discarded in the background (for
/// at most [`LINGER_FOR`], stalling at most [`LINGER_STALL`]), as nginx's lingering
/// close does: closing a connection with request bytes still unread resets it, and a
/// proxy in front (or a client still sending) then loses the answer.
struct Lingering(Option<hyper::body::Incoming>);

impl http_body::Body for Lingering {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.0.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.as_ref().is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.0
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), http_body::Body::size_hint)
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        let Some(mut body) = self.0.take() else {
            return;
        };
        if http_body::Body::is_end_stream(&body) {
            return;
        }
        // Outside a runtime (never, in the server) the body is simply dropped.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            use http_body_util::BodyExt as _;
            let deadline = tokio::time::Instant::now() + LINGER_FOR;
            loop {
                let next = tokio::time::timeout(LINGER_STALL, body.frame());
                match tokio::time::timeout_at(deadline, next).await {
                    Ok(Ok(Some(Ok(_)))) => {}
                    _ => return,
                }
            }
        });
    }
}

/// A request body that must arrive at a minimum rate: over every window of time spent
/// waiting for the client, at least `rate × window` bytes.
struct MinimumRate<B> {
    inner: B,
    rate: u64,
    window: Duration,
    /// Time spent waiting in the current window, and bytes received in it.
    waited: Duration,
    received: u64,
    /// Since when the body has been waiting for the client, if it is.
    waiting_since: Option<Instant>,
    /// Made the first time the body waits (most bodies never do).
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B> MinimumRate<B> {
    fn new(inner: B, limits: &ConnectionLimits) -> MinimumRate<B> {
        MinimumRate {
            inner,
            rate: limits.min_body_bytes_per_second,
            window: limits.header_read_timeout.max(Duration::from_millis(1)),
            waited: Duration::ZERO,
            received: 0,
            waiting_since: None,
            timer: None,
        }
    }

    /// Counts the wait that just ended (or is going on) into the window; closes the
    /// window once it is full, failing if too little arrived in it.
    fn account(&mut self, now: Instant) -> Result<(), TooSlow> {
        if let Some(since) = self.waiting_since {
            self.waited += now.saturating_duration_since(since);
            self.waiting_since = Some(now);
        }
        if self.waited < self.window {
            return Ok(());
        }
        let needed = (self.rate as f64 * self.waited.as_secs_f64()) as u64;
        if self.received < needed {
            return Err(TooSlow {
                received: self.received,
                waited: self.waited,
                minimum: self.rate,
            });
        }
        self.waited = Duration::ZERO;
        self.received = 0;
        Ok(())
    }
}

impl<B> http_body::Body for MinimumRate<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let now = Instant::now();
                if let Some(Ok(frame)) = &frame
                    && let Some(data) = frame.data_ref()
                {
                    this.received += data.len() as u64;
                }
                this.account(now).map_err(axum::BoxError::from)?;
                this.waiting_since = None;
                Poll::Ready(frame.map(|result| result.map_err(Into::into)))
            }
            Poll::Pending => {
                if this.rate == 0 {
                    return Poll::Pending;
                }
                let now = Instant::now();
                if this.waiting_since.is_none() {
                    this.waiting_since = Some(now);
                }
                this.account(now).map_err(axum::BoxError::from)?;
                // Wake when the window would be full.
                let wake_at = now + this.window.saturating_sub(this.waited);
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(wake_at)));
                timer.as_mut().reset(wake_at);
                ready!(timer.as_mut().poll(cx));
                // The timer fired already (a zero rest): look again at once.
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Connections open per client address (IPv6 by /64).
#[derive(Default)]
struct OpenConnections {
    by_address: Mutex<HashMap<IpAddr, usize>>,
    total: AtomicU64,
    drained: tokio::sync::Notify,
}

impl OpenConnections {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.by_address
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A slot for one more connection from `address`, unless it holds `max` already.
    fn take(self: &Arc<Self>, address: IpAddr, max: usize) -> Option<Slot> {
        let key = auth::failures::client_key(address);
        let mut open = self.lock();
        let count = open.entry(key).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        self.total.fetch_add(1, Ordering::AcqRel);
        Some(Slot {
            open: self.clone(),
            key,
        })
    }

    /// Resolves once no connection is open.
    async fn drained(&self) {
        loop {
            let notified = self.drained.notified();
            if self.total.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// One open connection of an address, given back when dropped.
struct Slot {
    open: Arc<OpenConnections>,
    key: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock();
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
        drop(open);
        if self.open.total.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.open.drained.notify_waiters();
        }
    }
}
