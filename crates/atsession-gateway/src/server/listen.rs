//! The gateway's HTTP/1.1 listener, with the limits a public server needs: a bound on the
//! time a client takes to send a request's headers, a bound on a connection where nothing
//! moves, a cap on open connections, and a graceful shutdown that lets requests in flight
//! finish within a bound.
//!
//! - **Header timeout** (`--header-timeout`): counted from the moment the gateway is ready
//!   for a request on a connection (when it opens, and after each response on a keep-alive
//!   connection) until that request's headers are complete. A client that trickles one byte
//!   every few seconds is cut off, and an idle keep-alive connection is closed after it.
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
use hyper_util::rt::{TokioIo, TokioTimer};
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
    let service = TowerToHyperService::new(app.map_request(
        move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req.map(Body::new)
        },
    ));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(conn);
    let idle = limits.idle_timeout;
    let mut shutting_down = *stop.borrow();
    if shutting_down {
        conn.as_mut().graceful_shutdown();
    }
    // One timer for the connection, re-armed only when it fires (not on every wake-up).
    let timer = tokio::time::sleep(idle);
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
            () = &mut timer => {
                let since = activity.since_last();
                if since >= idle {
                    tracing::debug!(%peer, "closing a connection idle for {idle:?}");
                    return;
                }
                timer.as_mut().reset(tokio::time::Instant::now() + (idle - since));
            }
        }
    }
}

/// When a byte last moved on a connection.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn since_last(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
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
            self.activity.touch();
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
            self.activity.touch();
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
