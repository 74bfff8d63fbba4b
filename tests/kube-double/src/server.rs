//! Accepting and serving connections: TLS (with the client certificate's common name
//! handed to the handlers), HTTP/1.1 and HTTP/2 with upgrades, and the
//! connection-level faults — a closed listener for `Refuse`, the impostor
//! certificate for `WrongCertificate`, and TCP resets.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::Router;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::faults::Fault;
use crate::Shared;

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What handlers may know about the connection a request came on.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionInfo {
    /// The common name of the verified client certificate, if one was presented.
    pub(crate) client_common_name: Option<String>,
    /// Notified to reset the connection (for `Fault::ResetMidStream`).
    pub(crate) reset: Arc<Notify>,
    /// The caller's address and port: one per connection.
    pub(crate) peer: SocketAddr,
    /// The application protocol the TLS handshake agreed on by ALPN.
    pub(crate) alpn: Option<String>,
}

#[cfg(test)]
impl ConnectionInfo {
    pub(crate) fn for_tests(client_common_name: Option<&str>) -> Self {
        ConnectionInfo {
            client_common_name: client_common_name.map(str::to_owned),
            reset: Arc::new(Notify::new()),
            peer: SocketAddr::from(([127, 0, 0, 1], 0)),
            alpn: None,
        }
    }
}

/// The listening socket, which `Fault::Refuse` closes and a later fault change
/// re-binds, both synchronously so a test's next connection sees the change.
struct ListenerSlot {
    addr: SocketAddr,
    runtime: tokio::runtime::Handle,
    state: Mutex<SlotState>,
}

struct SlotState {
    listener: Option<TcpListener>,
    accept_task: Option<Waker>,
}

impl ListenerSlot {
    fn poll_accept(
        &self,
        context: &mut Context<'_>,
    ) -> Poll<std::io::Result<(TcpStream, SocketAddr)>> {
        let mut state = self.state.lock().expect("listener slot poisoned");
        state.accept_task = Some(context.waker().clone());
        match &state.listener {
            Some(listener) => listener.poll_accept(context),
            None => Poll::Pending,
        }
    }

    fn close(&self) {
        self.state.lock().expect("listener slot poisoned").listener = None;
    }

    fn reopen(&self) -> std::io::Result<()> {
        let mut state = self.state.lock().expect("listener slot poisoned");
        if state.listener.is_some() {
            return Ok(());
        }
        // The standard library sets SO_REUSEADDR, so the port can be bound again
        // while reset connections linger.
        let listener = std::net::TcpListener::bind(self.addr)?;
        listener.set_nonblocking(true)?;
        let _runtime = self.runtime.enter();
        state.listener = Some(TcpListener::from_std(listener)?);
        if let Some(waker) = state.accept_task.take() {
            waker.wake();
        }
        Ok(())
    }
}

/// The serving side of a running double.
pub(crate) struct Server {
    addr: SocketAddr,
    slot: Arc<ListenerSlot>,
    /// Bumped to reset every open connection.
    generation: watch::Sender<u64>,
    shutdown: watch::Sender<bool>,
    accept_task: JoinHandle<()>,
}

impl Server {
    pub(crate) fn start(
        shared: Arc<Shared>,
        listener: TcpListener,
        tls: bool,
        shutdown: watch::Sender<bool>,
    ) -> anyhow::Result<Server> {
        let addr = listener.local_addr()?;
        let slot = Arc::new(ListenerSlot {
            addr,
            runtime: tokio::runtime::Handle::current(),
            state: Mutex::new(SlotState {
                listener: Some(listener),
                accept_task: None,
            }),
        });
        let (generation, _) = watch::channel(0);
        let router = crate::handlers::router(shared.clone());
        let accept_task = tokio::spawn(accept_connections(
            shared,
            router,
            slot.clone(),
            tls,
            generation.subscribe(),
            shutdown.subscribe(),
        ));
        Ok(Server {
            addr,
            slot,
            generation,
            shutdown,
            accept_task,
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn close_listener(&self) {
        self.slot.close();
    }

    pub(crate) fn reopen_listener(&self) -> std::io::Result<()> {
        self.slot.reopen()
    }

    /// Resets every open connection (upgraded ones excepted).
    pub(crate) fn reset_connections(&self) {
        self.generation.send_modify(|generation| *generation += 1);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Upgraded sessions and streams watch this; the accept task owns every
        // connection task, so aborting it ends them all.
        let _ = self.shutdown.send(true);
        self.accept_task.abort();
    }
}

async fn accept_connections(
    shared: Arc<Shared>,
    router: Router,
    slot: Arc<ListenerSlot>,
    tls: bool,
    generation: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    let mut stopped = std::pin::pin!(stopped(shutdown));
    loop {
        tokio::select! {
            accepted = poll_fn(|context| slot.poll_accept(context)) => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(serve_connection(
                        shared.clone(),
                        router.clone(),
                        stream,
                        peer,
                        tls,
                        generation.clone(),
                    ));
                }
                Err(error) => {
                    tracing::warn!(%error, "kube-double could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = stopped.as_mut() => return,
        }
    }
}

async fn serve_connection(
    shared: Arc<Shared>,
    router: Router,
    stream: TcpStream,
    peer: SocketAddr,
    tls: bool,
    mut generation: watch::Receiver<u64>,
) {
    generation.mark_unchanged();
    let fault = shared.knobs.fault();
    if fault == Fault::Refuse {
        // Accepted in the instant before the listener closed.
        reset_now(&stream);
        return;
    }
    let _ = stream.set_nodelay(true);
    // A second handle on the socket, to set SO_LINGER 0 just before a reset while
    // the connection still owns the original.
    let Ok(control) = stream_control_handle(&stream) else {
        return;
    };
    let reset = Arc::new(Notify::new());
    if tls {
        let acceptor =
            TlsAcceptor::from(shared.tls.server_config(fault == Fault::WrongCertificate));
        let Ok(Ok(stream)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
        else {
            return;
        };
        let client_common_name = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certificates| certificates.first())
            .and_then(crate::tls::common_name);
        let alpn = stream
            .get_ref()
            .1
            .alpn_protocol()
            .map(|protocol| String::from_utf8_lossy(protocol).into_owned());
        let info = ConnectionInfo {
            client_common_name,
            reset: reset.clone(),
            peer,
            alpn,
        };
        serve_http(router, stream, info, control, generation).await;
    } else {
        let info = ConnectionInfo {
            client_common_name: None,
            reset: reset.clone(),
            peer,
            alpn: None,
        };
        serve_http(router, stream, info, control, generation).await;
    }
}

async fn serve_http<IO>(
    router: Router,
    io: IO,
    info: ConnectionInfo,
    control: std::net::TcpStream,
    mut generation: watch::Receiver<u64>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let reset = info.reset.clone();
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(info.clone());
        router.clone().oneshot(request)
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let mut connection =
        Box::pin(builder.serve_connection_with_upgrades(TokioIo::new(io), service));
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = reset.notified() => {
            reset_now(&control);
            drop(connection);
        }
        _ = generation.changed() => {
            reset_now(&control);
            drop(connection);
        }
    }
}

/// Completes when the double stops (its `Server` was dropped).
pub(crate) async fn stopped(mut shutdown: watch::Receiver<bool>) {
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

fn stream_control_handle(stream: &TcpStream) -> std::io::Result<std::net::TcpStream> {
    let socket = socket2::SockRef::from(stream);
    let duplicate: socket2::Socket = socket.try_clone()?;
    Ok(duplicate.into())
}

/// Makes the socket's close send a TCP reset rather than a FIN.
fn reset_now(socket: &impl std::os::fd::AsFd) {
    let _ = socket2::SockRef::from(socket).set_linger(Some(Duration::ZERO));
}
