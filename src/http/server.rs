//! The accept loop: serves `router(state)` over HTTP/1.1 and h2c with the `[server]` limits.
//!
//! It owns what happens to a connection, never what a request means: at most
//! `max_connections` at once (the rest wait in the kernel's accept backlog), a connection
//! without a request in flight is closed when its head is late (`header_timeout`) or it sat
//! idle too long (`idle_timeout`), and on stop it drains within a bound. The body deadline
//! and the body memory budget are applied where the body is read (`body.rs`).
//!
//! hyper's own `header_read_timeout` is not used: it restarts as soon as a keep-alive
//! connection goes idle, so it would also close idle connections after the header timeout.
//! Here the idle clock runs until the next request's first byte, the head clock from then.

use crate::config::Limits;
use crate::swap::Swap;
use crate::telemetry::Metrics;
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// After stop, how long a connection without a request in flight may go on: enough to flush
/// an answer just written, too little for a client to hold the shutdown.
const STOP_LINGER: Duration = Duration::from_secs(1);

/// The most connections the descriptor limit leaves room for, after `reserved` descriptors for
/// the store, actions and logs. Logs a warning when it is below `wanted`.
pub fn connection_cap(wanted: usize, reserved: usize) -> usize {
    let Ok((soft, _hard)) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) else {
        return wanted;
    };
    let room = usize::try_from(soft).unwrap_or(usize::MAX).saturating_sub(reserved).max(1);
    if room < wanted {
        tracing::warn!(
            max_connections = wanted,
            descriptor_limit = soft,
            reserved,
            serving = room,
            "the open-file limit leaves room for fewer connections than max_connections; raise it (LimitNOFILE= in systemd, ulimit -n) to serve more"
        );
    }
    wanted.min(room)
}

/// Accepts and serves connections until `stop` fires, then drains: idle connections close at
/// once, requests in flight get until `drain` to finish, and whatever is left is cut.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    drain: Duration,
) -> io::Result<()> {
    serve_tls(listener, router, limits, metrics, stop, drain, None).await
}

/// Like [`serve`]; with `tls`, each connection first completes a TLS handshake (within
/// `header_timeout`) with the certificate `tls` holds when it is accepted, so a reload that
/// swaps the certificate is seen by the next connection and leaves open ones alone.
pub async fn serve_tls(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    drain: Duration,
    tls: Option<Arc<Swap<rustls::ServerConfig>>>,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let limits = Arc::new(limits);
    let connections = TaskTracker::new();
    let cut = CancellationToken::new();
    loop {
        // Beyond the cap a connection is not accepted: it waits in the kernel's backlog and
        // holds no descriptor of ours.
        let slot = tokio::select! {
            () = stop.cancelled() => break,
            slot = slots.clone().acquire_owned() => slot.expect("the slot semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) if is_connection_error(&err) => continue,
                Err(err) => {
                    // Out of descriptors or memory: wait instead of spinning.
                    tracing::error!(error = %err, "cannot accept a connection");
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            },
        };
        let connection = Connection {
            router: router.clone(),
            limits: limits.clone(),
            metrics: metrics.clone(),
            stop: stop.clone(),
            cut: cut.clone(),
            tls: tls.as_ref().map(|tls| tls.load()),
        };
        connections.spawn(async move {
            let _slot = slot;
            connection.serve(stream, peer).await;
        });
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(drain, connections.wait()).await.is_err() {
        tracing::warn!(
            connections = connections.len(),
            drain = ?drain,
            "requests still in flight after the drain bound; closing their connections"
        );
        cut.cancel();
        connections.wait().await;
    }
    Ok(())
}

/// Errors of one connection that leave the listener fine.
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// Which clock closed a connection, as the `timeout` label of `connections_timed_out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    Header,
    Idle,
}

impl Timeout {
    pub fn label(self) -> &'static str {
        match self {
            Timeout::Header => "header",
            Timeout::Idle => "idle",
        }
    }
}

/// Where a connection is between requests.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// No request in flight since `since`; the next head's first byte came at `head`
    /// (at accept for a new connection: a client that sends nothing gets the header timeout).
    Waiting { since: Instant, head: Option<Instant> },
    /// Requests in flight (more than one on HTTP/2); no clock runs, the handler has its own.
    Busy { requests: usize },
}

/// A connection's phase, shared by its reads, its requests and its watchdog.
struct Activity {
    phase: Mutex<Phase>,
    changed: Notify,
}

impl Activity {
    fn new(accepted: Instant) -> Activity {
        Activity { phase: Mutex::new(Phase::Waiting { since: accepted, head: Some(accepted) }), changed: Notify::new() }
    }

    fn phase(&self) -> Phase {
        *self.phase.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn update(&self, change: impl FnOnce(&mut Phase) -> bool) {
        let mut phase = self.phase.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if change(&mut phase) {
            self.changed.notify_one();
        }
    }

    /// Bytes arrived: if no request is in flight they begin the next head.
    fn bytes_read(&self) {
        self.update(|phase| match phase {
            Phase::Waiting { head: head @ None, .. } => {
                *head = Some(Instant::now());
                true
            }
            _ => false,
        });
    }

    fn request_started(self: &Arc<Self>) -> InFlight {
        self.update(|phase| {
            *phase = match *phase {
                Phase::Waiting { .. } => Phase::Busy { requests: 1 },
                Phase::Busy { requests } => Phase::Busy { requests: requests + 1 },
            };
            true
        });
        InFlight(self.clone())
    }

    /// When the connection is to be closed unless something happens first, and by which clock.
    fn deadline(&self, limits: &Limits, stopped: Option<Instant>) -> Option<(Instant, Timeout)> {
        match self.phase() {
            Phase::Busy { .. } => None,
            Phase::Waiting { since, head } => {
                let (at, clock) = match head {
                    Some(first_byte) => (first_byte + limits.header_timeout, Timeout::Header),
                    None => (since + limits.idle_timeout, Timeout::Idle),
                };
                match stopped {
                    Some(stopped) => Some((at.min(since.max(stopped) + STOP_LINGER), clock)),
                    None => Some((at, clock)),
                }
            }
        }
    }
}

/// A request in flight; its end (the answer's body dropped) starts the idle clock.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.update(|phase| {
            if let Phase::Busy { requests } = *phase {
                *phase = match requests {
                    0 | 1 => Phase::Waiting { since: Instant::now(), head: None },
                    n => Phase::Busy { requests: n - 1 },
                };
            }
            true
        });
    }
}

/// An answer's body that holds its request's `InFlight` until hyper is done with it.
struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl HttpBody for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A stream that tells its connection's `Activity` when bytes arrive.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_read();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What one connection's task needs.
struct Connection {
    router: Router,
    limits: Arc<Limits>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    cut: CancellationToken,
    /// The TLS configuration current when the connection was accepted; `None`: plain HTTP.
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl Connection {
    async fn serve(self, stream: TcpStream, peer: SocketAddr) {
        let _open = self.metrics.connection_opened();
        let Some(tls) = self.tls.clone() else { return self.serve_io(stream, peer).await };
        // The handshake is part of the head: a client that stalls in it gets the header timeout.
        let handshake =
            tokio::time::timeout(self.limits.header_timeout, tokio_rustls::TlsAcceptor::from(tls).accept(stream));
        let stream = tokio::select! {
            shaken = handshake => match shaken {
                Ok(Ok(stream)) => stream,
                Ok(Err(err)) => {
                    tracing::debug!(peer = %peer, error = %err, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    self.metrics.connection_timed_out(Timeout::Header.label());
                    return;
                }
            },
            () = self.stop.cancelled() => return,
        };
        self.serve_io(stream, peer).await;
    }

    async fn serve_io<S>(self, stream: S, peer: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::new(Instant::now()));
        let io = TokioIo::new(Watched { inner: stream, activity: activity.clone() });
        let router = self.router.clone();
        let requests = activity.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            let in_flight = requests.request_started();
            request.extensions_mut().insert(ConnectInfo(peer));
            let answer = tower_service::Service::call(&mut router.clone(), request.map(Body::new));
            async move {
                let response = answer.await?;
                Ok::<_, Infallible>(response.map(|body| Tracked { body, _in_flight: in_flight }))
            }
        });
        // Defaults otherwise: HTTP/1.1 keep-alive, and h2c for clients that open with its preface.
        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        let mut conn = pin!(builder.serve_connection(io, service));
        let mut stopped = None;
        loop {
            let deadline = activity.deadline(&self.limits, stopped);
            let expiry = async move {
                match deadline {
                    Some((at, _)) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                served = conn.as_mut() => {
                    if let Err(err) = served {
                        tracing::debug!(peer = %peer, error = %err, "connection ended with an error");
                    }
                    return;
                }
                () = activity.changed.notified() => {}
                () = expiry => {
                    if let Some((at, clock)) = activity.deadline(&self.limits, stopped)
                        && at <= Instant::now()
                    {
                        if stopped.is_none() {
                            self.metrics.connection_timed_out(clock.label());
                            tracing::debug!(peer = %peer, timeout = clock.label(), "closing a connection");
                        }
                        return;
                    }
                }
                () = self.stop.cancelled(), if stopped.is_none() => {
                    stopped = Some(Instant::now());
                    // HTTP/1.1: no keep-alive after the answer in flight; HTTP/2: GOAWAY.
                    conn.as_mut().graceful_shutdown();
                }
                () = self.cut.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits { header_timeout: Duration::from_secs(10), idle_timeout: Duration::from_secs(60), ..Limits::default() }
    }

    /// Asserts `deadline` is `clock`, `after` past a moment between `before` and now.
    fn assert_deadline(deadline: Option<(Instant, Timeout)>, before: Instant, after: Duration, clock: Timeout) {
        let (at, which) = deadline.expect("a deadline");
        assert_eq!(which, clock);
        assert!(at >= before + after && at <= Instant::now() + after, "{at:?} is not {after:?} after {before:?}");
    }

    #[test]
    fn a_new_connection_gets_the_header_timeout_and_a_kept_alive_one_the_idle_timeout_until_its_next_byte() {
        let accepted = Instant::now();
        let activity = Arc::new(Activity::new(accepted));
        assert_eq!(activity.deadline(&limits(), None), Some((accepted + Duration::from_secs(10), Timeout::Header)));

        let in_flight = activity.request_started();
        assert_eq!(activity.deadline(&limits(), None), None);
        let answered = Instant::now();
        drop(in_flight);
        assert_deadline(activity.deadline(&limits(), None), answered, Duration::from_secs(60), Timeout::Idle);

        let first_byte = Instant::now();
        activity.bytes_read();
        assert_deadline(activity.deadline(&limits(), None), first_byte, Duration::from_secs(10), Timeout::Header);
    }

    #[test]
    fn after_stop_a_connection_without_a_request_lingers_only_briefly_and_one_with_a_request_has_no_clock() {
        let activity = Arc::new(Activity::new(Instant::now()));
        let stopped = Instant::now();
        assert_eq!(activity.deadline(&limits(), Some(stopped)).map(|d| d.0), Some(stopped + STOP_LINGER));
        let first = activity.request_started();
        let second = activity.request_started();
        assert_eq!(activity.deadline(&limits(), Some(stopped)), None);
        drop(first);
        assert_eq!(activity.deadline(&limits(), Some(stopped)), None, "one request is still in flight");
        drop(second);
        assert!(activity.deadline(&limits(), Some(stopped)).is_some());
    }
}
