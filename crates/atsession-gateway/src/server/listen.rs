//! The gateway's HTTP/1.1 listener, with the limits a public server needs: a bound on the
//! time a client takes to send a request's headers, a bound on a connection where nothing
//! moves, a cap on open connections, and a graceful shutdown that lets requests in flight
//! finish within a bound.
//!
//! - **Header timeout** (`--header-timeout`): counted from the moment the gateway is ready
//!   for a request on a connection (when it opens, and after each response on a keep-alive
//!   connection, from its last byte written) until that request's headers are complete. A
//!   client that trickles one byte every few seconds is cut off, and an idle keep-alive
//!   connection is closed after it. The gateway keeps this timeout itself, on the same
//!   timer as the idle timeout, rather than hyper's, which arms and cancels a timer around
//!   every request.
//! - **Idle timeout** (`--idle-timeout`): a connection on which no byte moves in either
//!   direction for this long is closed: a stalled upload or download.
//! - **Connection cap** (`--max-connections`): past it, new connections wait in the kernel's
//!   backlog (holding no file descriptor of the gateway's) until one closes.
//!
//! Each request gets the peer's address as [`ConnectInfo`] in its extensions.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tower::{Service, ServiceExt as _};

/// The listener's limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time allowed for a request's headers, from when the connection is ready for it.
    pub header_timeout: Duration,
    /// A connection where no byte moves for this long is closed.
    pub idle_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
    /// After the shutdown signal, how long requests in flight may take to finish.
    pub shutdown_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 512,
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets the requests in flight
/// finish for at most [`Limits::shutdown_timeout`].
pub async fn serve<S>(
    listener: TcpListener,
    app: S,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: wait a moment instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Reap finished connections so the set does not grow.
        while connections.try_join_next().is_some() {}
        let app = app.clone();
        let stop = stop_rx.clone();
        connections.spawn(async move {
            connection(stream, peer, app, limits, stop).await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(limits.shutdown_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            remaining = connections.len(),
            "requests still in flight after the shutdown timeout; closing them"
        );
        connections.abort_all();
    }
    Ok(())
}

async fn connection<S>(
    stream: TcpStream,
    peer: SocketAddr,
    app: S,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: Arc::clone(&activity),
    });
    let on_request = Arc::clone(&activity);
    let on_response = Arc::clone(&activity);
    let service = TowerToHyperService::new(
        app.map_request(move |mut req: hyper::Request<hyper::body::Incoming>| {
            // The head is complete.
            on_request.head_complete();
            req.extensions_mut().insert(ConnectInfo(peer));
            req.map(Body::new)
        })
        .map_response(move |res: Response| {
            let activity = Arc::clone(&on_response);
            res.map(|inner| Answered { inner, activity })
        }),
    );
    // No timer for hyper: the header timeout is kept here, with the idle timeout, on one
    // timer per connection that is re-armed only when it fires. hyper's own would arm and
    // cancel a timer around every request, and wake the runtime's driver each time.
    let conn = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let mut shutting_down = *stop.borrow();
    if shutting_down {
        conn.as_mut().graceful_shutdown();
    }
    let timer = tokio::time::sleep(limits.header_timeout.min(limits.idle_timeout));
    tokio::pin!(timer);
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            changed = stop.changed(), if !shutting_down => {
                shutting_down = true;
                if changed.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
            () = &mut timer => match activity.check(&limits) {
                Check::Idle => {
                    tracing::debug!(%peer, "closing a connection idle for {:?}", limits.idle_timeout);
                    return;
                }
                Check::HeadTimeout => {
                    tracing::debug!(
                        %peer,
                        "closing a connection whose request head took over {:?}",
                        limits.header_timeout
                    );
                    return;
                }
                Check::Until(wait) => timer.as_mut().reset(tokio::time::Instant::now() + wait),
            },
        }
    }
}

/// What a connection's timer found.
#[derive(Debug, PartialEq, Eq)]
enum Check {
    /// Nothing moved for the idle timeout.
    Idle,
    /// A request's head was not complete within the header timeout.
    HeadTimeout,
    /// Neither yet: look again after this long.
    Until(Duration),
}

/// `Activity::head_since_ms` when no request head is awaited (a request is being served).
const NOT_AWAITING: u64 = u64::MAX;

/// When bytes last moved on a connection, and since when it awaits a request's head; in
/// milliseconds since the connection opened.
struct Activity {
    start: Instant,
    /// A byte read or written.
    last_ms: AtomicU64,
    /// A byte written: the tail of an answer may still be going out after its body ended.
    last_write_ms: AtomicU64,
    /// When the connection became ready for the next request (when it opened, or when the
    /// last answer's body ended), or [`NOT_AWAITING`].
    head_since_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            last_write_ms: AtomicU64::new(0),
            head_since_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    fn touch(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    fn touch_write(&self) {
        let now = self.now_ms();
        self.last_ms.store(now, Ordering::Relaxed);
        self.last_write_ms.store(now, Ordering::Relaxed);
    }

    fn head_complete(&self) {
        self.head_since_ms.store(NOT_AWAITING, Ordering::Relaxed);
    }

    fn answered(&self) {
        self.head_since_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Whether a limit has passed, at this moment.
    fn check(&self, limits: &Limits) -> Check {
        self.check_at(self.now_ms(), limits)
    }

    fn check_at(&self, now_ms: u64, limits: &Limits) -> Check {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 4);
        let idle_at = self
            .last_ms
            .load(Ordering::Relaxed)
            .saturating_add(ms(limits.idle_timeout));
        if now_ms >= idle_at {
            return Check::Idle;
        }
        let mut next = idle_at;
        let since = self.head_since_ms.load(Ordering::Relaxed);
        if since != NOT_AWAITING {
            // Counted from when the answer's last byte was written, at the latest.
            let ready = since.max(self.last_write_ms.load(Ordering::Relaxed));
            let head_at = ready.saturating_add(ms(limits.header_timeout));
            if now_ms >= head_at {
                return Check::HeadTimeout;
            }
            next = next.min(head_at);
        }
        Check::Until(Duration::from_millis(next - now_ms))
    }
}

/// An answer's body, which marks the connection ready for its next request when it ends
/// (when hyper has taken its last frame, or drops it unread).
struct Answered {
    inner: Body,
    activity: Arc<Activity>,
}

impl hyper::body::Body for Answered {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Answered {
    fn drop(&mut self) {
        self.activity.answered();
    }
}

/// A stream that records when bytes move.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch_write();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch_write();
        }
        r
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(limits: Limits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/", get(|| async { "hi" }))
            .route(
                "/peer",
                get(|ConnectInfo(p): ConnectInfo<SocketAddr>| async move { p.ip().to_string() }),
            )
            .route("/big", get(|| async { vec![b'x'; BIG] }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(600)).await;
                    "done"
                }),
            );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, app, limits, async {
            let _ = rx.await;
        }));
        (addr, tx)
    }

    /// Reads until the peer closes; `true` if it closed within `within`.
    async fn closed_within(sock: &mut TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 1024];
        tokio::time::timeout(within, async {
            loop {
                match sock.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .is_ok()
    }

    /// The size of `/big`: far more than the kernel's socket buffers on loopback hold.
    const BIG: usize = 24 << 20;

    fn limits() -> Limits {
        Limits {
            header_timeout: Duration::from_millis(800),
            idle_timeout: Duration::from_secs(5),
            max_connections: 4,
            shutdown_timeout: Duration::from_secs(2),
        }
    }

    #[tokio::test]
    async fn a_trickled_header_is_cut_off() {
        let (addr, _stop) = start(limits()).await;
        let mut sock = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        // One byte every 200 ms: each is progress, none completes the head.
        let request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        for b in request {
            if sock.write_all(&[*b]).await.is_err() {
                break;
            }
            if started.elapsed() > Duration::from_secs(4) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            closed_within(&mut sock, Duration::from_secs(3)).await,
            "the connection stayed open"
        );
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "closed only after {:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_is_closed() {
        let (addr, _stop) = start(limits()).await;
        let mut sock = TcpStream::connect(addr).await.unwrap();
        sock.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let n = sock.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        let t = Instant::now();
        assert!(closed_within(&mut sock, Duration::from_secs(3)).await);
        assert!(
            t.elapsed() >= Duration::from_millis(700),
            "closed too early"
        );
    }

    #[test]
    fn the_timer_finds_each_limit() {
        let l = Limits {
            header_timeout: Duration::from_millis(800),
            idle_timeout: Duration::from_secs(5),
            ..limits()
        };
        let a = Activity::new();
        // A new connection awaits its first head.
        assert_eq!(
            a.check_at(300, &l),
            Check::Until(Duration::from_millis(500))
        );
        assert_eq!(a.check_at(800, &l), Check::HeadTimeout);
        // Bytes of the head arriving do not extend it.
        a.last_ms.store(700, Ordering::Relaxed);
        assert_eq!(a.check_at(800, &l), Check::HeadTimeout);
        // While a request is served only the idle timeout counts.
        a.head_since_ms.store(NOT_AWAITING, Ordering::Relaxed);
        assert_eq!(
            a.check_at(800, &l),
            Check::Until(Duration::from_millis(4900))
        );
        assert_eq!(a.check_at(5700, &l), Check::Idle);
        // The answer ended at 1000 but its bytes went out until 1500: the next head is
        // awaited from 1500.
        a.head_since_ms.store(1000, Ordering::Relaxed);
        a.last_ms.store(1500, Ordering::Relaxed);
        a.last_write_ms.store(1500, Ordering::Relaxed);
        assert_eq!(
            a.check_at(2000, &l),
            Check::Until(Duration::from_millis(300))
        );
        assert_eq!(a.check_at(2300, &l), Check::HeadTimeout);
        // An idle timeout shorter than the header timeout comes first.
        let short_idle = Limits {
            idle_timeout: Duration::from_millis(200),
            ..l
        };
        assert_eq!(
            a.check_at(1600, &short_idle),
            Check::Until(Duration::from_millis(100))
        );
        assert_eq!(a.check_at(1700, &short_idle), Check::Idle);
    }

    #[tokio::test]
    async fn each_request_on_a_keep_alive_connection_gets_the_whole_header_timeout() {
        let (addr, _stop) = start(limits()).await;
        let mut sock = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        // Six requests 300 ms apart: 1.8 s on one connection, each head well within 800 ms.
        for i in 0..6 {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            sock.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let mut buf = [0u8; 256];
            let n = sock.read(&mut buf).await.unwrap();
            let text = String::from_utf8_lossy(&buf[..n]);
            assert!(
                text.starts_with("HTTP/1.1 200") && text.ends_with("hi"),
                "request {i}: {text}"
            );
        }
        assert!(started.elapsed() > limits().header_timeout);
        // And after the last answer, the wait for a head is bounded again.
        let t = Instant::now();
        assert!(closed_within(&mut sock, Duration::from_secs(3)).await);
        assert!(
            t.elapsed() >= Duration::from_millis(700),
            "closed too early"
        );
    }

    #[tokio::test]
    async fn a_slowly_read_answer_is_not_cut_off() {
        let (addr, _stop) = start(limits()).await;
        // A small receive buffer, so that the answer waits in the gateway's send buffer
        // and its tail goes out long after its body has ended.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(64 * 1024).unwrap();
        let mut sock = socket.connect(addr).await.unwrap();
        sock.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        // About 10 MB/s: over two seconds, more than twice the header timeout.
        let started = Instant::now();
        let mut got = 0usize;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf))
                .await
                .expect("the answer stalled")
                .unwrap();
            if n == 0 {
                break;
            }
            got += n;
            if got % (1 << 20) < n {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        assert!(
            started.elapsed() > limits().header_timeout * 2,
            "read too fast to show anything ({:?})",
            started.elapsed()
        );
        assert!(got > BIG, "the answer was cut off after {got} bytes");
    }

    #[tokio::test]
    async fn the_connection_cap_holds_and_frees() {
        let mut l = limits();
        l.max_connections = 2;
        l.header_timeout = Duration::from_secs(30);
        l.idle_timeout = Duration::from_millis(700);
        let (addr, _stop) = start(l).await;
        // Two idle connections fill the cap.
        let _a = TcpStream::connect(addr).await.unwrap();
        let _b = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        // A third is connected by the kernel but not served until one of them goes idle.
        let mut c = TcpStream::connect(addr).await.unwrap();
        let t = Instant::now();
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut buf))
            .await
            .expect("served once the idle ones were closed")
            .unwrap();
        assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"));
        assert!(
            t.elapsed() >= Duration::from_millis(500),
            "served at once: the cap did not hold ({:?})",
            t.elapsed()
        );
    }

    #[tokio::test]
    async fn requests_see_the_peer_address() {
        let (addr, _stop) = start(limits()).await;
        let mut sock = TcpStream::connect(addr).await.unwrap();
        sock.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        sock.read_to_end(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf).ends_with("127.0.0.1"));
    }

    #[tokio::test]
    async fn shutdown_lets_a_request_in_flight_finish() {
        let (addr, stop) = start(limits()).await;
        let mut sock = TcpStream::connect(addr).await.unwrap();
        sock.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.send(()).unwrap();
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(3), sock.read_to_end(&mut buf))
            .await
            .expect("the connection closes after its response")
            .unwrap();
        let text = String::from_utf8_lossy(&buf);
        assert!(
            text.starts_with("HTTP/1.1 200") && text.ends_with("done"),
            "{text}"
        );
        // And nothing new is accepted.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(TcpStream::connect(addr).await.is_err());
    }
}
