//! The HTTP server every service runs: axum's router on hyper, with the
//! bounds a hostile client cannot stretch. A connection must finish its
//! request headers within HEADER_READ_TIMEOUT (which also bounds how long a
//! kept-alive connection may wait before its next request), is closed when
//! no byte has moved either way for IDLE_TIMEOUT (a client that stops
//! reading a stream included), and at most MAX_CONNECTIONS are open at once:
//! the rest wait in the kernel's accept queue instead of taking file
//! descriptors the service needs for its own work.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use clap::Args;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// File descriptors kept back from MAX_CONNECTIONS for the service's own
/// work: its Kafka and store connections, log files, the listener.
const RESERVED_DESCRIPTORS: u64 = 256;

/// How a service bounds the connections its clients open.
#[derive(Debug, Clone, Args)]
pub struct ConnectionArgs {
    /// Longest a client may take to send a request's headers, counted from
    /// its first byte, or to start its next request on a kept-alive
    /// connection.
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,

    /// A connection on which no byte moves either way for this long is
    /// closed: a client that sends nothing, or stops reading its answer.
    #[arg(long, env = "IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,

    /// Most client connections open at once; further ones wait to be
    /// accepted. Lowered to fit the open-file limit if that is smaller.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then stops
/// accepting, lets each connection finish the request it is on, and returns
/// once all are closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &ConnectionArgs,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(fit_to_descriptors(limits.max_connections)));
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let idle_timeout = limits.idle_timeout;
    let connections = TaskTracker::new();
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = shutdown.cancelled() => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    // Out of descriptors or a connection reset before it
                    // was accepted: neither is fatal, and retrying at once
                    // would spin.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        // Small answers (an ack, a probe) go out at once.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY not set");
        }
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Watched {
            inner: stream,
            activity: activity.clone(),
        });
        let service = TowerToHyperService::new(app.clone());
        let builder = builder.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let _slot = slot;
            let connection = builder.serve_connection_with_upgrades(io, service);
            tokio::pin!(connection);
            let mut draining = false;
            loop {
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(error) = result {
                            tracing::debug!(error = %error, "connection ended with an error");
                        }
                        break;
                    }
                    () = activity.idle_for(idle_timeout) => {
                        tracing::debug!(idle_timeout = ?idle_timeout, "idle connection closed");
                        break;
                    }
                    () = shutdown.cancelled(), if !draining => {
                        draining = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
    Ok(())
}

/// MAX_CONNECTIONS, lowered so that connections and the service's own
/// descriptors fit the open-file limit. The soft limit is raised to the
/// hard one first: Debian's soft default of 1,024 would cap a server at a
/// few hundred clients.
fn fit_to_descriptors(max_connections: u32) -> usize {
    let wanted = u64::from(max_connections);
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "cannot read the open-file limit");
            return usize::try_from(wanted).unwrap_or(usize::MAX);
        }
    };
    let room = limit.saturating_sub(RESERVED_DESCRIPTORS).max(1);
    if room < wanted {
        tracing::warn!(
            max_connections = wanted,
            open_file_limit = limit,
            "MAX_CONNECTIONS lowered to fit the open-file limit"
        );
    }
    usize::try_from(wanted.min(room)).unwrap_or(usize::MAX)
}

/// When a byte last moved on a connection, either way.
struct Activity {
    started: Instant,
    /// Milliseconds from `started` to the last byte read or written.
    last: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let elapsed = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(elapsed, Ordering::Relaxed);
    }

    /// Completes once no byte has moved for `timeout`.
    async fn idle_for(&self, timeout: Duration) {
        loop {
            let last = self.started + Duration::from_millis(self.last.load(Ordering::Relaxed));
            let deadline = last + timeout;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// A connection that records in its [`Activity`] each time bytes move.
struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
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
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    fn limits(header_read_timeout: Duration, idle_timeout: Duration, max: u32) -> ConnectionArgs {
        ConnectionArgs {
            header_read_timeout,
            idle_timeout,
            max_connections: max,
        }
    }

    async fn start(limits: ConnectionArgs) -> (String, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let app = Router::new().route("/", get(|| async { "ok" }));
        let shutdown = CancellationToken::new();
        tokio::spawn({
            let shutdown = shutdown.clone();
            async move { serve(listener, app, &limits, shutdown).await }
        });
        (addr, shutdown)
    }

    /// Reads until the server closes the connection; false if it is still
    /// open after `within`.
    async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
        let mut sink = Vec::new();
        matches!(
            tokio::time::timeout(within, stream.read_to_end(&mut sink)).await,
            Ok(Ok(_) | Err(_))
        )
    }

    #[tokio::test]
    async fn unfinished_headers_and_silent_clients_are_closed() {
        let (addr, shutdown) = start(limits(
            Duration::from_millis(300),
            Duration::from_millis(600),
            100,
        ))
        .await;
        let mut trickling = TcpStream::connect(&addr).await.unwrap();
        trickling.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
        let mut silent = TcpStream::connect(&addr).await.unwrap();
        assert!(closed_within(&mut trickling, Duration::from_secs(5)).await);
        assert!(closed_within(&mut silent, Duration::from_secs(5)).await);

        // A whole request still gets its answer.
        let mut client = TcpStream::connect(&addr).await.unwrap();
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        shutdown.cancel();
    }

    #[tokio::test]
    async fn a_trickle_of_header_bytes_does_not_keep_a_connection_open() {
        let (addr, shutdown) = start(limits(
            Duration::from_millis(500),
            Duration::from_secs(30),
            100,
        ))
        .await;
        let mut trickling = TcpStream::connect(&addr).await.unwrap();
        trickling
            .write_all(b"GET / HTTP/1.1\r\nX-Slow: ")
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let mut closed = false;
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if trickling.write_all(b"a").await.is_err() {
                closed = true;
                break;
            }
            let mut byte = [0u8; 1];
            if let Ok(Ok(0) | Err(_)) =
                tokio::time::timeout(Duration::from_millis(1), trickling.read(&mut byte)).await
            {
                closed = true;
                break;
            }
        }
        assert!(closed, "still open after {:?}", started.elapsed());
        assert!(started.elapsed() < Duration::from_secs(3));
        shutdown.cancel();
    }

    #[tokio::test]
    async fn a_kept_alive_connection_must_start_its_next_request_in_time() {
        let (addr, shutdown) = start(limits(
            Duration::from_millis(500),
            Duration::from_secs(30),
            100,
        ))
        .await;
        let mut client = TcpStream::connect(&addr).await.unwrap();
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = [0u8; 12];
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"HTTP/1.1 200");
        // Nothing more is sent: the wait for the next request's headers is
        // bounded as theirs would be, long before IDLE_TIMEOUT.
        assert!(closed_within(&mut client, Duration::from_secs(5)).await);
        shutdown.cancel();
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_wait_to_be_accepted() {
        let (addr, shutdown) =
            start(limits(Duration::from_secs(10), Duration::from_secs(60), 1)).await;
        let mut first = TcpStream::connect(&addr).await.unwrap();
        first
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 12];
        first.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");

        // The kernel completes the handshake, but the server does not read
        // until the first connection closes.
        let mut second = TcpStream::connect(&addr).await.unwrap();
        second
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        let waited = tokio::time::timeout(
            Duration::from_millis(300),
            second.read_to_string(&mut answer),
        )
        .await;
        assert!(waited.is_err(), "answered beyond the cap: {answer}");
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), second.read_to_string(&mut answer))
            .await
            .unwrap()
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        shutdown.cancel();
    }

    #[test]
    fn the_cap_fits_the_open_file_limit() {
        let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap();
        let fitted = fit_to_descriptors(u32::MAX) as u64;
        let room = limit.saturating_sub(RESERVED_DESCRIPTORS).max(1);
        assert_eq!(fitted, room.min(u64::from(u32::MAX)));
        assert_eq!(fit_to_descriptors(10), 10);
    }
}
