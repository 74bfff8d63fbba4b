//! HTTP/1.1 connections to a cluster (over TLS, or plain HTTP), each driven
//! by the task of the request it carries.
//!
//! A pooled hyper client runs every connection as a task of its own: a
//! request is handed to that task through a channel, and its response and
//! each piece of its body handed back, so every request wakes two tasks.
//! Here the connection's state machine is polled by whoever waits on it:
//! the request's task while it waits for the response headers, then the
//! task that reads the body (for a proxied response, the client's
//! connection task, as it writes the body out). A connection is back in
//! the pool once its response is read to the end; a response dropped before
//! its end takes its connection with it, as HTTP/1.1 has no other way to
//! abandon a response.
//!
//! The connection's parts wake one another as they go (the state machine
//! hands the response over a channel and wakes its reader, the reader asks
//! for more and wakes the state machine). Those wakes happen while the task
//! is polling them anyway: a [`LocalWaker`] turns them into another pass of
//! the same poll instead of a schedule of the task, which on a multi-thread
//! runtime would also wake an idle worker to look for work.
//!
//! An idle connection waits for no one: while a pool holds any, a task
//! looks at them every [`SWEEP_EVERY`] and closes those the cluster closed
//! (or wrote to unasked) and those idle for longer than [`IDLE_TIMEOUT`]. A
//! connection checked out is polled first, so one closed since is noticed
//! there. A request that a reused connection could not take (the cluster
//! closed it as the request was written) is sent again on another, as
//! hyper's pooled client does.
//!
//! A pool opens at most [`MAX_OPEN`] connections, in use or idle: a
//! request that finds none idle and no room for another is handed back,
//! for the cluster's shared connection to carry.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use futures::task::AtomicWaker;
use http::{HeaderValue, Request, Response, Uri};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

use super::ClusterConnector;

/// How long a connection may wait in the pool before it is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Connections a pool may have open at once, in use or idle.
const MAX_OPEN: usize = 256;
/// How often a pool's idle connections are looked at, to close those the
/// cluster closed and those idle too long.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

type Io = <ClusterConnector as tower::Service<Uri>>::Response;

/// One HTTP/1.1 connection: the handle requests are sent through and the
/// state machine that reads and writes its socket.
struct Connection {
    sender: http1::SendRequest<Body>,
    /// `None` once the connection is over. Dropping the state machine
    /// answers a request it had not written with that request, to be sent
    /// on another connection.
    driver: Option<Pin<Box<http1::Connection<Io, Body>>>>,
    waker: LocalWaker,
    /// Its place among the pool's open connections, given up when it closes.
    _room: OwnedSemaphorePermit,
}

/// Polls the socket's state machine: ready once the connection is over
/// (closed by the cluster, failed, or shut down after its response), with
/// the error it ended with.
fn poll_driver(
    driver: &mut Option<Pin<Box<http1::Connection<Io, Body>>>>,
    context: &mut Context<'_>,
) -> Poll<Result<(), hyper::Error>> {
    let Some(running) = driver else {
        return Poll::Ready(Ok(()));
    };
    let outcome = std::task::ready!(running.as_mut().poll(context));
    if let Err(error) = &outcome {
        tracing::debug!(%error, "cluster connection ended");
    }
    *driver = None;
    Poll::Ready(outcome)
}

/// [`poll_driver`]: whether the connection is over.
fn poll_over(
    driver: &mut Option<Pin<Box<http1::Connection<Io, Body>>>>,
    context: &mut Context<'_>,
) -> bool {
    poll_driver(driver, context).is_ready()
}

impl Connection {
    /// Whether the connection can take a request now: its state machine is
    /// polled until it waits for one, or is over (with the error it ended
    /// with, if any).
    async fn ready(&mut self) -> Result<(), Option<hyper::Error>> {
        let Connection {
            sender,
            driver,
            waker,
            ..
        } = self;
        poll_fn(|context| {
            waker.poll(context, |context| {
                if let Poll::Ready(ended) = poll_driver(driver, context) {
                    return Poll::Ready(Err(ended.err()));
                }
                sender.poll_ready(context).map_err(Some)
            })
        })
        .await
    }
}

/// The waker a connection's parts are polled with. A wake while they are
/// being polled asks for another pass of the same poll; any other wake (the
/// socket is ready) wakes the task that polls them.
struct LocalWaker {
    shared: Arc<WakeState>,
    waker: Waker,
}

struct WakeState {
    task: AtomicWaker,
    state: AtomicU8,
}

const IDLE: u8 = 0;
const POLLING: u8 = 1;
const WOKEN: u8 = 2;
/// Passes of one poll before a wake goes to the task after all: tokio's
/// cooperative budget, once spent, wakes whoever it turns away, and only
/// the scheduler renews it.
const PASSES: usize = 4;

impl Wake for WakeState {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self
            .state
            .compare_exchange(POLLING, WOKEN, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            self.task.wake();
        }
    }
}

impl LocalWaker {
    fn new() -> Self {
        let shared = Arc::new(WakeState {
            task: AtomicWaker::new(),
            state: AtomicU8::new(IDLE),
        });
        let waker = Waker::from(shared.clone());
        Self { shared, waker }
    }

    /// Runs `f` as the start of a poll that follows at once: what it wakes
    /// (handing the state machine a request wakes it) is polled then, and
    /// asks for no schedule of the task.
    fn quietly<T>(&self, f: impl FnOnce() -> T) -> T {
        self.shared.state.store(POLLING, Ordering::Release);
        let done = f();
        self.shared.state.store(IDLE, Ordering::Release);
        done
    }

    /// Runs `poll` with this waker, again while it is woken during a pass.
    fn poll<T>(
        &self,
        context: &Context<'_>,
        mut poll: impl FnMut(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        self.shared.task.register(context.waker());
        let mut local = Context::from_waker(&self.waker);
        for _ in 0..PASSES {
            self.shared.state.store(POLLING, Ordering::Release);
            let polled = poll(&mut local);
            let woken = self.shared.state.swap(IDLE, Ordering::AcqRel) == WOKEN;
            if polled.is_ready() || !woken {
                return polled;
            }
        }
        context.waker().wake_by_ref();
        Poll::Pending
    }
}

struct Idle {
    connection: Connection,
    since: Instant,
}

/// A pool's idle connections, the most recently used on top.
struct IdleConnections {
    stack: Mutex<Stack>,
    timeout: Duration,
    sweep_every: Duration,
}

struct Stack {
    idle: Vec<Idle>,
    /// Whether a task sweeps the stack (while it holds connections).
    sweeping: bool,
}

impl IdleConnections {
    fn lock(&self) -> std::sync::MutexGuard<'_, Stack> {
        self.stack
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The most recently given back connection, unless it waited too long
    /// (and then so did all the others, which are closed).
    fn pop(&self) -> Option<Connection> {
        let now = Instant::now();
        let mut stack = self.lock();
        while let Some(Idle { connection, since }) = stack.idle.pop() {
            if now.duration_since(since) < self.timeout {
                return Some(connection);
            }
        }
        None
    }

    /// Gives a connection back, and has the stack swept while it holds any.
    fn push(self: &Arc<Self>, connection: Connection) {
        let mut stack = self.lock();
        stack.idle.push(Idle {
            connection,
            since: Instant::now(),
        });
        if !stack.sweeping {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                stack.sweeping = true;
                runtime.spawn(sweep(Arc::downgrade(self)));
            }
        }
    }

    /// Closes the connections that waited too long, and those the cluster
    /// closed or wrote to unasked: each is polled once, with no one to wake,
    /// and reads the end of its stream or the bytes no request asked for.
    /// Whether any connection is left to sweep.
    fn sweep(&self) -> bool {
        let now = Instant::now();
        let mut unwatched = Context::from_waker(Waker::noop());
        let mut stack = self.lock();
        let mut swept = Vec::new();
        for mut idle in std::mem::take(&mut stack.idle) {
            if now.duration_since(idle.since) >= self.timeout
                || poll_over(&mut idle.connection.driver, &mut unwatched)
            {
                swept.push(idle);
            } else {
                stack.idle.push(idle);
            }
        }
        stack.sweeping = !stack.idle.is_empty();
        let more = stack.sweeping;
        drop(stack);
        drop(swept);
        more
    }
}

/// Sweeps a pool's idle connections now and then, until it holds none or
/// is gone.
async fn sweep(idle: std::sync::Weak<IdleConnections>) {
    loop {
        let Some(every) = idle.upgrade().map(|idle| idle.sweep_every) else {
            return;
        };
        tokio::time::sleep(every).await;
        match idle.upgrade() {
            Some(idle) if idle.sweep() => {}
            _ => return,
        }
    }
}

/// The idle connections of one cluster's TLS configuration.
pub(super) struct DrivenPool {
    connector: ClusterConnector,
    /// Where connections go: the cluster's scheme and authority.
    origin: Uri,
    /// Every request's `Host`: the cluster's authority, as the HTTP/1.1
    /// client writes it.
    host: HeaderValue,
    idle: Arc<IdleConnections>,
    /// Room for the connections not yet open.
    room: Arc<Semaphore>,
}

/// Why a request could not be sent; never holds a credential.
#[derive(Debug, thiserror::Error)]
pub(super) enum SendError {
    #[error("{0}")]
    Connect(String),
    #[error(transparent)]
    Http(#[from] hyper::Error),
    /// Every connection the pool may open is in use: the request, as it was.
    #[error("every connection the pool may open is in use")]
    Full(Box<Request<Body>>),
}

/// The connection a request goes on next.
enum Next {
    Reuse(Connection),
    Open(OwnedSemaphorePermit),
}

impl DrivenPool {
    pub(super) fn new(connector: ClusterConnector, origin: Uri, host: HeaderValue) -> Self {
        Self::with_limits(connector, origin, host, IDLE_TIMEOUT, SWEEP_EVERY, MAX_OPEN)
    }

    fn with_limits(
        connector: ClusterConnector,
        origin: Uri,
        host: HeaderValue,
        timeout: Duration,
        sweep_every: Duration,
        max_open: usize,
    ) -> Self {
        Self {
            connector,
            origin,
            host,
            room: Arc::new(Semaphore::new(max_open)),
            idle: Arc::new(IdleConnections {
                stack: Mutex::new(Stack {
                    idle: Vec::new(),
                    sweeping: false,
                }),
                timeout,
                sweep_every,
            }),
        }
    }

    /// Sends a request (its URI in absolute form; it goes in origin form
    /// with the cluster's `Host`) and returns the response with the
    /// connection that reads its body; hands the request back, as it was,
    /// when no connection is idle and the pool has no room for another.
    pub(super) async fn send(
        &self,
        mut request: Request<Body>,
    ) -> Result<Response<DrivenBody>, SendError> {
        let mut next = match self.checkout().await {
            Some(connection) => Next::Reuse(connection),
            None => match self.room.clone().try_acquire_owned() {
                Ok(room) => Next::Open(room),
                Err(_) => return Err(SendError::Full(Box::new(request))),
            },
        };
        if let Some(origin_form) = request.uri().path_and_query().cloned() {
            *request.uri_mut() = Uri::from(origin_form);
        }
        let original_host = request
            .headers_mut()
            .insert(http::header::HOST, self.host.clone());
        loop {
            let (mut connection, reused) = match next {
                Next::Reuse(connection) => (connection, true),
                Next::Open(room) => (self.connect(room).await?, false),
            };
            let Connection { sender, waker, .. } = &mut connection;
            let sending = waker.quietly(|| sender.try_send_request(request));
            let mut sending = std::pin::pin!(sending);
            let sent = poll_fn(|context| {
                connection.waker.poll(context, |context| {
                    // The connection first, so that a response it reads now
                    // is in the channel when the request's future looks.
                    poll_over(&mut connection.driver, context);
                    sending.as_mut().poll(context)
                })
            })
            .await;
            match sent {
                Ok(response) => {
                    let (parts, body) = response.into_parts();
                    let body = DrivenBody {
                        body,
                        connection: Some(connection),
                        idle: self.idle.clone(),
                        ended: false,
                    };
                    return Ok(Response::from_parts(parts, body));
                }
                Err(mut error) => match error.take_message() {
                    // Never written: the cluster had closed the connection.
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(error.into_error().into()),
                },
            }
            // Closed, it makes room for the next, unless another request
            // took the room first.
            drop(connection);
            next = match self.checkout().await {
                Some(connection) => Next::Reuse(connection),
                None => match self.room.clone().try_acquire_owned() {
                    Ok(room) => Next::Open(room),
                    Err(_) => return Err(self.hand_back(request, original_host)),
                },
            };
        }
    }

    /// [`SendError::Full`] with the request as it came: in absolute form,
    /// with the `Host` it had.
    fn hand_back(&self, mut request: Request<Body>, host: Option<HeaderValue>) -> SendError {
        let mut parts = request.uri().clone().into_parts();
        parts.scheme = self.origin.scheme().cloned();
        parts.authority = self.origin.authority().cloned();
        if let Ok(absolute) = Uri::from_parts(parts) {
            *request.uri_mut() = absolute;
        }
        match host {
            Some(host) => request.headers_mut().insert(http::header::HOST, host),
            None => request.headers_mut().remove(http::header::HOST),
        };
        SendError::Full(Box::new(request))
    }

    /// The most recently used idle connection that is still open and ready
    /// for a request.
    async fn checkout(&self) -> Option<Connection> {
        loop {
            let mut connection = self.idle.pop()?;
            if connection.ready().await.is_ok() {
                return Some(connection);
            }
        }
    }

    async fn connect(&self, room: OwnedSemaphorePermit) -> Result<Connection, SendError> {
        let io = self
            .connector
            .clone()
            .oneshot(self.origin.clone())
            .await
            .map_err(|error| SendError::Connect(super::describe(error.as_ref())))?;
        let (sender, driver) = http1::Builder::new().handshake(io).await?;
        let mut connection = Connection {
            sender,
            driver: Some(Box::pin(driver)),
            waker: LocalWaker::new(),
            _room: room,
        };
        match connection.ready().await {
            Ok(()) => Ok(connection),
            Err(Some(error)) => Err(error.into()),
            Err(None) => Err(SendError::Connect(
                "the cluster closed the connection at once".into(),
            )),
        }
    }

    /// The number of idle connections (for tests).
    #[cfg(test)]
    pub(super) fn idle(&self) -> usize {
        self.idle.lock().idle.len()
    }
}

/// A response body read from a connection that this body drives. The
/// connection goes back to its pool when the body is dropped after its
/// end, and is closed when it is dropped before.
pub struct DrivenBody {
    body: Incoming,
    /// `None` once reading the body failed: the connection carries no other
    /// request.
    connection: Option<Connection>,
    idle: Arc<IdleConnections>,
    /// Set when the body reads its end; a body of known length is at its end
    /// once `is_end_stream` says so, a chunked one only then.
    ended: bool,
}

impl hyper::body::Body for DrivenBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let body = &mut this.body;
        let frame = match &mut this.connection {
            Some(Connection { driver, waker, .. }) => waker.poll(context, |context| {
                // Reads what the body waits for into its channel (or, when
                // the channel is full, waits to be woken when it is read).
                poll_over(driver, context);
                Pin::new(&mut *body).poll_frame(context)
            }),
            None => Pin::new(&mut *body).poll_frame(context),
        };
        let Poll::Ready(frame) = frame else {
            return Poll::Pending;
        };
        match &frame {
            None => this.ended = true,
            Some(Ok(_)) => {}
            Some(Err(_)) => this.connection = None,
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for DrivenBody {
    fn drop(&mut self) {
        if !(self.ended || self.body.is_end_stream()) {
            return;
        }
        // A connection that is over (its state machine gone) carries no other.
        if let Some(connection) = self.connection.take().filter(|open| open.driver.is_some()) {
            // The socket's wakes while idle are for no one's task.
            connection.waker.shared.task.take();
            self.idle.push(connection);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A cluster that answers by path, as written here, and counts the
    /// connections it accepted and saw closed.
    struct Cluster {
        origin: Uri,
        accepted: Arc<AtomicUsize>,
        closed: Arc<AtomicUsize>,
    }

    /// What the cluster writes for a request to `path`, and whether it then
    /// closes the connection (without saying so in the response).
    fn answer(path: &str) -> (Vec<u8>, bool) {
        match path {
            "/small" => (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello".to_vec(), false),
            "/chunked" => (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n"
                    .to_vec(),
                false,
            ),
            "/empty" => (b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(), false),
            "/then-close" | "/close-soon" => (
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello".to_vec(),
                true,
            ),
            "/big" => {
                let mut answer = b"HTTP/1.1 200 OK\r\ncontent-length: 4000000\r\n\r\n".to_vec();
                answer.resize(answer.len() + 4_000_000, b'x');
                (answer, false)
            }
            _ => (b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_vec(), false),
        }
    }

    async fn cluster() -> Cluster {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin: Uri = format!("http://{}/", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let (counting, ending) = (accepted.clone(), closed.clone());
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                counting.fetch_add(1, Ordering::SeqCst);
                let ending = ending.clone();
                tokio::spawn(async move {
                    let mut read = Vec::new();
                    let mut buffer = [0u8; 4096];
                    loop {
                        let Some(end) = read.windows(4).position(|w| w == b"\r\n\r\n") else {
                            match socket.read(&mut buffer).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => read.extend_from_slice(&buffer[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&read[..end]).into_owned();
                        read.drain(..end + 4);
                        let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
                        let (bytes, close) = answer(&path);
                        if socket.write_all(&bytes).await.is_err() || close {
                            if path == "/close-soon" {
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                            break;
                        }
                    }
                    drop(socket);
                    ending.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Cluster {
            origin,
            accepted,
            closed,
        }
    }

    fn connector() -> ClusterConnector {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        super::super::cluster_connector(tls, false, Duration::from_secs(5))
    }

    fn host(cluster: &Cluster) -> HeaderValue {
        HeaderValue::from_str(cluster.origin.authority().unwrap().as_str()).unwrap()
    }

    fn pool(cluster: &Cluster) -> DrivenPool {
        DrivenPool::new(connector(), cluster.origin.clone(), host(cluster))
    }

    fn get(cluster: &Cluster, path: &str) -> Request<Body> {
        let authority = cluster.origin.authority().unwrap();
        Request::get(format!("http://{authority}{path}"))
            .body(Body::empty())
            .unwrap()
    }

    async fn read(pool: &DrivenPool, cluster: &Cluster, path: &str) -> (u16, Bytes) {
        let response = pool.send(get(cluster, path)).await.unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, body)
    }

    async fn until(what: &str, condition: impl Fn() -> bool) {
        for _ in 0..500 {
            if condition() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{what}");
    }

    #[tokio::test]
    async fn one_connection_carries_request_after_request() {
        let cluster = cluster().await;
        let pool = pool(&cluster);
        for round in 0..3 {
            assert_eq!(read(&pool, &cluster, "/small").await, (200, "hello".into()));
            assert_eq!(
                read(&pool, &cluster, "/chunked").await,
                (200, "hello".into())
            );
            assert_eq!(read(&pool, &cluster, "/empty").await, (204, Bytes::new()));
            assert_eq!(read(&pool, &cluster, "/nothing").await, (404, Bytes::new()));
            assert_eq!(pool.idle(), 1, "round {round}");
        }
        assert_eq!(cluster.accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn concurrent_requests_take_a_connection_each_and_give_it_back() {
        let cluster = cluster().await;
        let pool = pool(&cluster);
        let first = pool.send(get(&cluster, "/small")).await.unwrap();
        let second = pool.send(get(&cluster, "/chunked")).await.unwrap();
        assert_eq!(pool.idle(), 0);
        for response in [first, second] {
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, "hello");
        }
        assert_eq!(pool.idle(), 2);
        assert_eq!(cluster.accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_end_closes_its_connection() {
        let cluster = cluster().await;
        let pool = pool(&cluster);
        let mut body = pool.send(get(&cluster, "/big")).await.unwrap().into_body();
        let frame = body.frame().await.unwrap().unwrap();
        assert!(!frame.data_ref().unwrap().is_empty());
        drop(body);
        assert_eq!(pool.idle(), 0);
        until("the cluster sees the connection closed", || {
            cluster.closed.load(Ordering::SeqCst) == 1
        })
        .await;
        assert_eq!(read(&pool, &cluster, "/small").await, (200, "hello".into()));
        assert_eq!(cluster.accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_response_never_read_closes_its_connection_unless_it_is_empty() {
        let cluster = cluster().await;
        let pool = pool(&cluster);
        drop(pool.send(get(&cluster, "/small")).await.unwrap());
        assert_eq!(pool.idle(), 0);
        drop(pool.send(get(&cluster, "/empty")).await.unwrap());
        assert_eq!(pool.idle(), 1);
        assert_eq!(read(&pool, &cluster, "/small").await, (200, "hello".into()));
        assert_eq!(cluster.accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_connection_the_cluster_closed_is_not_used_again() {
        let cluster = cluster().await;
        let pool = pool(&cluster);
        assert_eq!(
            read(&pool, &cluster, "/then-close").await,
            (200, "hello".into())
        );
        until("the cluster closes the connection", || {
            cluster.closed.load(Ordering::SeqCst) == 1
        })
        .await;
        assert_eq!(read(&pool, &cluster, "/small").await, (200, "hello".into()));
        assert_eq!(cluster.accepted.load(Ordering::SeqCst), 2);
        assert_eq!(pool.idle(), 1);
    }

    fn sweeping_pool(cluster: &Cluster, timeout: Duration) -> DrivenPool {
        let every = Duration::from_millis(50);
        DrivenPool::with_limits(
            connector(),
            cluster.origin.clone(),
            host(cluster),
            timeout,
            every,
            MAX_OPEN,
        )
    }

    #[tokio::test]
    async fn connections_idle_too_long_are_closed() {
        let cluster = cluster().await;
        let pool = sweeping_pool(&cluster, Duration::from_millis(300));
        let first = pool.send(get(&cluster, "/small")).await.unwrap();
        let second = pool.send(get(&cluster, "/small")).await.unwrap();
        first.into_body().collect().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        second.into_body().collect().await.unwrap();
        assert_eq!(pool.idle(), 2);
        until("the first is closed, having waited too long", || {
            cluster.closed.load(Ordering::SeqCst) == 1
        })
        .await;
        assert_eq!(pool.idle(), 1);
        until("the second is closed too", || {
            cluster.closed.load(Ordering::SeqCst) == 2
        })
        .await;
        assert_eq!(pool.idle(), 0);
        assert_eq!(read(&pool, &cluster, "/small").await, (200, "hello".into()));
        assert_eq!(cluster.accepted.load(Ordering::SeqCst), 3);
    }

    /// A trickle of requests takes the top connection each time; those
    /// under it, which the cluster closed, are closed all the same.
    #[tokio::test]
    async fn connections_the_cluster_closed_while_idle_are_closed() {
        let cluster = cluster().await;
        let pool = sweeping_pool(&cluster, IDLE_TIMEOUT);
        let mut closing = Vec::new();
        for _ in 0..3 {
            closing.push(pool.send(get(&cluster, "/close-soon")).await.unwrap());
        }
        let staying = pool.send(get(&cluster, "/small")).await.unwrap();
        for response in closing {
            response.into_body().collect().await.unwrap();
        }
        staying.into_body().collect().await.unwrap();
        assert_eq!(pool.idle(), 4);
        until("the cluster closes three", || {
            cluster.closed.load(Ordering::SeqCst) == 3
        })
        .await;
        until("the three leave the pool", || pool.idle() == 1).await;
        for _ in 0..3 {
            assert_eq!(read(&pool, &cluster, "/small").await, (200, "hello".into()));
        }
        assert_eq!(cluster.accepted.load(Ordering::SeqCst), 4);
        assert_eq!(pool.idle(), 1);
    }

    /// A full pool hands a request back untouched; a connection given back
    /// or closed makes room again.
    #[tokio::test]
    async fn a_full_pool_hands_requests_back_until_a_connection_is_free() {
        let cluster = cluster().await;
        let pool = DrivenPool::with_limits(
            connector(),
            cluster.origin.clone(),
            host(&cluster),
            IDLE_TIMEOUT,
            SWEEP_EVERY,
            1,
        );
        let first = pool.send(get(&cluster, "/small")).await.unwrap();
        match pool.send(get(&cluster, "/chunked")).await {
            Err(SendError::Full(request)) => {
                assert_eq!(*request.uri(), *get(&cluster, "/chunked").uri());
                assert!(request.headers().is_empty());
            }
            Err(error) => panic!("not handed back: {error}"),
            Ok(response) => panic!("sent while full: {}", response.status()),
        }
        first.into_body().collect().await.unwrap();
        assert_eq!(
            read(&pool, &cluster, "/chunked").await,
            (200, "hello".into())
        );
        drop(pool.send(get(&cluster, "/big")).await.unwrap());
        assert_eq!(pool.idle(), 0);
        assert_eq!(read(&pool, &cluster, "/small").await, (200, "hello".into()));
        assert_eq!(cluster.accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_cluster_that_refuses_connections_is_an_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let origin: Uri = format!("http://{}/", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        drop(listener);
        let cluster = Cluster {
            origin,
            accepted: Arc::default(),
            closed: Arc::default(),
        };
        match pool(&cluster).send(get(&cluster, "/small")).await {
            Err(SendError::Connect(cause)) => assert!(cause.contains("refused"), "{cause}"),
            Err(error) => panic!("not a connection error: {error}"),
            Ok(response) => panic!("answered: {}", response.status()),
        }
    }
}
