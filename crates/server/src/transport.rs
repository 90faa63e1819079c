//! The accept loop: HTTP/1.1 and HTTP/2 (hyper), over TLS or not, with the
//! limits that keep slow and idle clients from holding the server: a header
//! read timeout, an idle keep-alive timeout, a body read timeout, a TLS
//! handshake timeout, a cap on open connections and a cap on the request head.
//!
//! Hand-written rather than `axum::serve` / `axum-server`, which have none of
//! these; hyper has a header read timeout, but it counts the idle time between
//! requests too, so this module keeps its own clock for both (see [`Watched`]).

use crate::http::envelope;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

/// How long clients may take, and how many may be connected at once.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From a connection's first byte of a request (or from its opening) to
    /// the end of that request's head.
    pub header_read_timeout: Duration,
    /// From the end of a response to the end of the next request's head.
    pub idle_timeout: Duration,
    /// From a request's head to the end of its body; also how long a client
    /// may leave a response unread.
    pub body_read_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    /// Connections beyond this are closed as soon as they are accepted.
    pub max_connections: usize,
    /// The largest request head (request line and header fields); larger ones get 431.
    pub max_header_bytes: usize,
}

pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The most connections held by default, whatever the descriptor limit.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;
/// hyper's smallest read buffer.
pub const MIN_HEADER_BYTES: usize = 8192;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            tls_handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
        }
    }
}

/// Raises this process's soft limit of open files to its hard limit, and
/// returns the connection cap that leaves room under it for the database,
/// log and certificate files: half of it, at most [`DEFAULT_MAX_CONNECTIONS`].
pub fn raise_descriptor_limit() -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "could not read the open-file limit; assuming 1024");
            1024
        }
    };
    usize::try_from(limit / 2)
        .unwrap_or(usize::MAX)
        .clamp(1, DEFAULT_MAX_CONNECTIONS)
}

/// Serves `app` on `listener` (HTTPS with `tls`) until `shutdown` resolves,
/// then stops accepting and finishes the requests in flight.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Watched keeps the header clock, apart from the idle one.
        .header_read_timeout(None)
        .max_buf_size(limits.max_header_bytes.max(MIN_HEADER_BYTES));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let builder = Arc::new(builder);
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors, or a connection reset before it was
                    // accepted: wait a little rather than spin.
                    tracing::warn!(%error, "accept error");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "connection refused: at the connection cap");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let watcher = graceful.watcher();
        let builder = builder.clone();
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match acceptor {
                None => {
                    let io = Watched::new(stream, limits, None);
                    connection(&builder, io, app, peer, limits, watcher).await;
                }
                Some(acceptor) => {
                    let handshake = acceptor.accept(stream);
                    let stream =
                        match tokio::time::timeout(limits.tls_handshake_timeout, handshake).await {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(error)) => {
                                tracing::debug!(%peer, %error, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    let http2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                    let io = Watched::new(stream, limits, Some(http2));
                    connection(&builder, io, app, peer, limits, watcher).await;
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Serves the requests of one connection, until it closes or times out.
async fn connection<IO>(
    builder: &auto::Builder<TokioExecutor>,
    io: Watched<IO>,
    app: Router,
    peer: SocketAddr,
    limits: Limits,
    watcher: hyper_util::server::graceful::Watcher,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let state = io.state.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let in_flight = InFlight::start(&state);
        let (mut parts, body) = request.into_parts();
        parts.extensions.insert(ConnectInfo(peer));
        // A request without a body (most GETs) has nothing to time.
        let body = if hyper::body::Body::is_end_stream(&body) {
            Body::new(body)
        } else {
            Body::new(TimedBody::new(
                body,
                limits.body_read_timeout,
                &mut parts.extensions,
            ))
        };
        let request = hyper::Request::from_parts(parts, body);
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await?;
            in_flight.responding();
            Ok::<_, std::convert::Infallible>(response.map(|body| {
                Body::new(ResponseBody {
                    inner: body,
                    in_flight,
                })
            }))
        }
    });
    let served = watcher.watch(builder.serve_connection(TokioIo::new(io), service));
    if let Err(error) = served.await {
        tracing::debug!(%peer, %error, "connection ended");
    }
}

/// What a connection is doing, as its reads and writes must know it.
struct ConnectionState {
    /// Requests whose response is not over yet.
    in_flight: usize,
    /// Requests received on this connection.
    requests: u64,
    /// When the connection opened, or its last response ended.
    idle_since: Instant,
    /// When the first byte of the next request came (HTTP/1 only).
    head_started: Option<Instant>,
    /// `None` until the first bytes tell (plain TCP) or ALPN did (TLS).
    http2: Option<bool>,
    /// The read waiting while a request was served: woken when the last
    /// response ends, so that it starts the idle clock.
    reader: Option<std::task::Waker>,
    /// HTTP/2 responses waiting for the client to take their next bytes
    /// (flow control), by request, with the time since when: a client that
    /// never opens its window must not hold the connection for ever.
    waiting_on_client: HashMap<u64, Instant>,
}

/// Counts a request in flight until dropped (with its response body).
struct InFlight {
    state: Arc<Mutex<ConnectionState>>,
    /// The request's number on its connection.
    request: u64,
    /// Over HTTP/2, where the client's flow control paces the response.
    http2: bool,
}

impl InFlight {
    fn start(state: &Arc<Mutex<ConnectionState>>) -> InFlight {
        let mut s = lock(state);
        s.in_flight += 1;
        s.requests += 1;
        s.head_started = None;
        let (request, http2) = (s.requests, s.http2 == Some(true));
        drop(s);
        InFlight {
            state: state.clone(),
            request,
            http2,
        }
    }

    /// The response is ready: from now its bytes wait on the client.
    fn responding(&self) {
        self.waiting_on_client(true);
    }

    /// Notes whether the response's next bytes wait on the client (they are
    /// made and not yet taken) or on the server (they are being made).
    fn waiting_on_client(&self, waiting: bool) {
        if !self.http2 {
            return;
        }
        let mut s = lock(&self.state);
        if waiting {
            s.waiting_on_client.insert(self.request, Instant::now());
            // The read may be waiting without a deadline: it sets one now.
            if let Some(reader) = s.reader.take() {
                reader.wake();
            }
        } else {
            s.waiting_on_client.remove(&self.request);
        }
    }
}

/// A response body, which tells its connection when it waits on the client.
struct ResponseBody {
    inner: Body,
    in_flight: InFlight,
}

impl hyper::body::Body for ResponseBody {
    type Data = hyper::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        // Pending: the server makes the next bytes; a frame: the client must take it.
        this.in_flight
            .waiting_on_client(matches!(frame, Poll::Ready(Some(Ok(_)))));
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut s = lock(&self.state);
        if self.http2 {
            s.waiting_on_client.remove(&self.request);
        }
        s.in_flight -= 1;
        if s.in_flight == 0 {
            s.idle_since = Instant::now();
            s.head_started = None;
            if let Some(reader) = s.reader.take() {
                reader.wake();
            }
        }
    }
}

fn lock(state: &Mutex<ConnectionState>) -> std::sync::MutexGuard<'_, ConnectionState> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// A connection's stream, which fails its reads when the client is too slow
/// to send a request head (or sends none), and its writes when the client
/// leaves a response unread. While a request is being served no read deadline
/// applies: a long poll is a response being computed, not an idle connection.
/// It also gives hyper's own answers to unparseable requests an MDE body.
struct Watched<IO> {
    inner: IO,
    state: Arc<Mutex<ConnectionState>>,
    limits: Limits,
    read_timer: Pin<Box<Sleep>>,
    write_timer: Pin<Box<Sleep>>,
    write_stalled: bool,
    /// An error response written in place of hyper's bare one, not yet sent.
    replacement: Option<(Vec<u8>, usize)>,
}

impl<IO> Watched<IO> {
    fn new(inner: IO, limits: Limits, http2: Option<bool>) -> Self {
        let now = Instant::now();
        Watched {
            inner,
            state: Arc::new(Mutex::new(ConnectionState {
                in_flight: 0,
                requests: 0,
                idle_since: now,
                head_started: None,
                http2,
                reader: None,
                waiting_on_client: HashMap::new(),
            })),
            limits,
            read_timer: Box::pin(tokio::time::sleep_until(now)),
            write_timer: Box::pin(tokio::time::sleep_until(now)),
            write_stalled: false,
            replacement: None,
        }
    }

    /// When the next request's head must have arrived; while one is served,
    /// `None` (the read is woken when it ends), except over HTTP/2 when a
    /// response has waited on the client: then the client must take it
    /// within the body read timeout.
    fn read_deadline(&self, cx: &Context<'_>) -> Option<Instant> {
        let mut s = lock(&self.state);
        if s.in_flight > 0 {
            let waiting_since = s.waiting_on_client.values().min().copied();
            if waiting_since.is_none() {
                s.reader = Some(cx.waker().clone());
            }
            return waiting_since.map(|since| since + self.limits.body_read_timeout);
        }
        if s.requests == 0 {
            return Some(s.idle_since + self.limits.header_read_timeout);
        }
        let idle = s.idle_since + self.limits.idle_timeout;
        Some(match s.head_started {
            Some(started) => idle.min(started + self.limits.header_read_timeout),
            None => idle,
        })
    }

    /// Notes the first bytes of a request; tells HTTP/2 by its preface.
    fn received(&self, bytes: &[u8]) {
        let mut s = lock(&self.state);
        if s.http2.is_none() {
            s.http2 = Some(bytes.starts_with(b"PRI * HTTP/2"));
        }
        // HTTP/2 sends frames between requests too: only its idle clock counts.
        if s.in_flight == 0 && s.requests > 0 && s.head_started.is_none() && s.http2 == Some(false)
        {
            s.head_started = Some(Instant::now());
        }
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what.to_string())
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.received(&buf.filled()[before..]);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                // Moving a timer costs a visit to the timer wheel, and every
                // request moves the idle deadline later: the timer is moved
                // only when the deadline comes earlier, or when it fires
                // before the deadline (then it is set to the deadline, as it
                // is when it fires).
                let Some(deadline) = this.read_deadline(cx) else {
                    return Poll::Pending;
                };
                if deadline < this.read_timer.deadline() {
                    this.read_timer.as_mut().reset(deadline);
                }
                loop {
                    ready!(this.read_timer.as_mut().poll(cx));
                    let Some(deadline) = this.read_deadline(cx) else {
                        return Poll::Pending;
                    };
                    if Instant::now() >= deadline {
                        return Poll::Ready(Err(timed_out(
                            "the client sent no complete request, or took no response, in time",
                        )));
                    }
                    this.read_timer.as_mut().reset(deadline);
                }
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> Watched<IO> {
    /// Writes the replacement error response, if any; `Ready` once it is out.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.replacement {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
            if *written == bytes.len() {
                self.replacement = None;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Passes a write's outcome on, failing it when the client has read
    /// nothing for the body read timeout.
    fn watch_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        outcome: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if outcome.is_ready() {
            self.write_stalled = false;
            return outcome;
        }
        if !self.write_stalled {
            self.write_stalled = true;
            let deadline = Instant::now() + self.limits.body_read_timeout;
            self.write_timer.as_mut().reset(deadline);
        }
        ready!(self.write_timer.as_mut().poll(cx));
        Poll::Ready(Err(timed_out("the client read no response in time")))
    }

    /// hyper answers a request it cannot parse (400, 414, 431) with a bare
    /// head of its own and offers no hook to change it; every response of
    /// Palisade's carries `request-id`, so a head without it is hyper's, and
    /// is sent with an MDE error body instead.
    fn replace_bare_error(&mut self, buf: &[u8]) -> bool {
        if lock(&self.state).http2 == Some(true) {
            return false;
        }
        let Some(status) = envelope::bare_http1_error_status(buf) else {
            return false;
        };
        let response = envelope::http1_error_response(status, self.limits.max_header_bytes);
        self.replacement = Some((response, 0));
        true
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let outcome = this.poll_replacement(cx);
        ready!(this.watch_write(cx, outcome))?;
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            if this.replace_bare_error(first) {
                let outcome = this.poll_replacement(cx);
                ready!(this.watch_write(cx, outcome))?;
                return Poll::Ready(Ok(first.len()));
            }
        }
        let outcome = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch_write(cx, outcome)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let outcome = this.poll_replacement(cx);
        ready!(this.watch_write(cx, outcome))?;
        let outcome = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch_write(cx, outcome)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let outcome = this.poll_replacement(cx);
        ready!(this.watch_write(cx, outcome))?;
        let outcome = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.watch_write(cx, outcome)
    }
}

/// Set when a request's body did not arrive within the body read timeout:
/// the envelope then answers 408.
#[derive(Debug, Clone, Default)]
pub struct BodyTimedOut(Arc<std::sync::atomic::AtomicBool>);

impl BodyTimedOut {
    pub fn is_set(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A request body that fails when it stops arriving: it has `timeout` for
/// its first [`PROGRESS_BYTES`], and again for each further such run, so
/// that a large upload at any sound rate goes through while a trickle (or
/// a stalled client) does not hold its connection.
struct TimedBody {
    inner: Incoming,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    /// Bytes since the deadline last moved on.
    since_deadline: usize,
    timed_out: BodyTimedOut,
}

/// What a body must deliver within each timeout.
const PROGRESS_BYTES: usize = 64 * 1024;

/// What a body read that timed out fails with.
#[derive(Debug)]
pub struct BodyReadTimeout;

impl std::fmt::Display for BodyReadTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body did not arrive in time")
    }
}

impl std::error::Error for BodyReadTimeout {}

impl TimedBody {
    fn new(inner: Incoming, timeout: Duration, extensions: &mut axum::http::Extensions) -> Self {
        let timed_out = BodyTimedOut::default();
        extensions.insert(timed_out.clone());
        TimedBody {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            since_deadline: 0,
            timed_out,
        }
    }
}

impl hyper::body::Body for TimedBody {
    type Data = hyper::body::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)) {
                this.since_deadline += data.map_or(0, |d| d.len());
                if this.since_deadline >= PROGRESS_BYTES {
                    this.since_deadline = 0;
                    this.deadline.as_mut().reset(Instant::now() + this.timeout);
                }
            }
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        ready!(this.deadline.as_mut().poll(cx));
        this.timed_out
            .0
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Poll::Ready(Some(Err(BodyReadTimeout.into())))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
