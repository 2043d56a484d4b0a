//! The tokio service around [`RegistrarCore`]: ASAP listeners over TCP
//! with TLS (or plain TCP in insecure mode, never both: RFC 5355 2.15),
//! one task per connection for the handshake, framing and encoding, and
//! one task that owns the core. Every queue is bounded: a client that
//! sends faster than the core serves waits (TCP back-pressure), a client
//! that does not read its answers is disconnected, a listener over its
//! connection limit closes new connections at once.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rserpool_handlespace::ConnId;
use rserpool_security::TlsServer;
use rserpool_wire::framing::{ChannelCodec, FramingError};
use rserpool_wire::AsapMessage;
use rustc_hash::FxHashMap;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::announce::{self, AnnounceConfig};
use crate::{CoreConfig, Event, Output, PeerInfo, RegistrarCore};

/// Settings of the service.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// ASAP listen addresses (port 0: any free port).
    pub listen: Vec<SocketAddr>,
    /// TLS set-up; `None` is insecure mode (plain TCP, labs only).
    pub tls: Option<Arc<TlsServer>>,
    /// Most open connections over all listeners.
    pub max_connections: usize,
    /// Largest message a client may send (bytes).
    pub max_message_size: usize,
    /// Time a client has to complete its TLS handshake.
    pub handshake_timeout: Duration,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// Messages queued for one connection before it counts as not reading.
    pub send_queue: usize,
    /// Inputs queued for the core.
    pub core_queue: usize,
    /// ASAP_SERVER_ANNOUNCE over UDP (off unless set).
    pub announce: Option<AnnounceConfig>,
    /// The core's settings.
    pub core: CoreConfig,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            listen: vec![SocketAddr::from(([0, 0, 0, 0], 3864))],
            tls: None,
            max_connections: 10_000,
            max_message_size: 4096,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            send_queue: 1024,
            core_queue: 16_384,
            announce: None,
            core: CoreConfig::default(),
        }
    }
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A listen address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The settings are unusable.
    #[error("invalid registrar configuration: {0}")]
    Config(String),
    /// The announce socket could not be set up.
    #[error("cannot send server announcements to {group}: {source}")]
    Announce {
        /// The group.
        group: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

/// What connection tasks tell the core task.
enum Input {
    Connect {
        conn: ConnId,
        info: PeerInfo,
        writer: Writer,
    },
    Frame {
        conn: ConnId,
        frame: Bytes,
    },
    FramingError {
        conn: ConnId,
        error: FramingError,
    },
    Disconnect {
        conn: ConnId,
    },
    Query(Box<dyn FnOnce(&RegistrarCore) + Send>),
}

/// The core task's handle on a connection: its answer queue, and the
/// count of its frames the core has not handled yet.
struct Writer {
    out: mpsc::Sender<Outgoing>,
    in_flight: Arc<AtomicUsize>,
}

/// What the core task tells a connection task.
enum Outgoing {
    Message(AsapMessage),
    Close(String),
}

/// The service's own counters (what happens before and around the core:
/// accepting, TLS handshakes, slow clients), shared by its tasks.
#[derive(Debug, Default)]
struct ServiceCounters {
    connections_open: AtomicU64,
    connections_accepted: AtomicU64,
    connections_refused_limit: AtomicU64,
    accept_errors: AtomicU64,
    tls_handshake_failures: AtomicU64,
    tls_handshake_timeouts: AtomicU64,
    slow_clients_closed: AtomicU64,
}

impl ServiceCounters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> ServiceStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ServiceStats {
            connections_open: get(&self.connections_open),
            connections_accepted: get(&self.connections_accepted),
            connections_refused_limit: get(&self.connections_refused_limit),
            accept_errors: get(&self.accept_errors),
            tls_handshake_failures: get(&self.tls_handshake_failures),
            tls_handshake_timeouts: get(&self.tls_handshake_timeouts),
            slow_clients_closed: get(&self.slow_clients_closed),
        }
    }
}

/// A snapshot of the service's counters (since start, except
/// `connections_open`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ServiceStats {
    /// TCP connections open now (including those still in their TLS
    /// handshake).
    pub connections_open: u64,
    /// TCP connections accepted within the connection limit.
    pub connections_accepted: u64,
    /// TCP connections closed at once because the limit was reached.
    pub connections_refused_limit: u64,
    /// `accept` calls that failed (out of file descriptors and the like).
    pub accept_errors: u64,
    /// TLS handshakes that failed (unknown identity, wrong key, no TLS).
    pub tls_handshake_failures: u64,
    /// TLS handshakes not completed within the handshake timeout.
    pub tls_handshake_timeouts: u64,
    /// Connections closed because they did not read their answers.
    pub slow_clients_closed: u64,
}

/// Counts a connection as open while it lives.
struct OpenGuard(Arc<ServiceCounters>);

impl OpenGuard {
    fn new(counters: &Arc<ServiceCounters>) -> Self {
        counters.connections_open.fetch_add(1, Ordering::Relaxed);
        OpenGuard(counters.clone())
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A cheap, cloneable handle on a running registrar for the admin
/// interface and other observers: queries to the core, the event stream,
/// the service's counters and facts fixed at start.
#[derive(Debug, Clone)]
pub struct RegistrarHandle {
    inputs: mpsc::Sender<Input>,
    events: broadcast::Sender<Event>,
    counters: Arc<ServiceCounters>,
    started: Instant,
    local_addrs: Arc<[SocketAddr]>,
    secure: bool,
    server_id: u32,
}

impl RegistrarHandle {
    /// Read the core's state (handlespace, statistics) in its task.
    /// `None` when the core task is gone.
    pub async fn query<R: Send + 'static>(
        &self,
        f: impl FnOnce(&RegistrarCore) -> R + Send + 'static,
    ) -> Option<R> {
        let (tx, rx) = oneshot::channel();
        let q = Input::Query(Box::new(move |core| {
            let _ = tx.send(f(core));
        }));
        self.inputs.send(q).await.ok()?;
        rx.await.ok()
    }

    /// Subscribe to the core's events.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Resolves when the core task has stopped (the registrar was shut
    /// down or dropped).
    pub async fn stopped(&self) {
        self.inputs.closed().await
    }

    /// The service's counters now.
    pub fn service_stats(&self) -> ServiceStats {
        self.counters.snapshot()
    }

    /// The bound ASAP listen addresses.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Whether the registrar runs in secure mode (TLS on every connection).
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// The registrar's server identifier.
    pub fn server_id(&self) -> u32 {
        self.server_id
    }

    /// Time since the service started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

/// A running registrar. Dropping it stops every task.
#[derive(Debug)]
pub struct Registrar {
    handle: RegistrarHandle,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Registrar {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Registrar {
    /// Bind the listeners and start serving.
    pub async fn start(config: ServiceConfig) -> Result<Registrar, ServiceError> {
        let now = Instant::now().into_std();
        let mut core_config = config.core.clone();
        if core_config.seed == 0 {
            core_config.seed = rserpool_security::random_seed();
        }
        let core = RegistrarCore::new(core_config, now).map_err(ServiceError::Config)?;
        if config.listen.is_empty() {
            return Err(ServiceError::Config("no listen address".into()));
        }
        let server_id = core.config().server_id;
        match &config.tls {
            Some(_) => tracing::info!(
                server_id,
                "registrar in secure mode: TLS on every connection"
            ),
            None => tracing::warn!(
                server_id,
                "INSECURE MODE: no TLS, no authentication; anyone who can connect can register \
                 and resolve. For labs only (RFC 5355 2.15)."
            ),
        }
        let started = Instant::now();
        let (inputs, input_rx) = mpsc::channel(config.core_queue.max(1));
        let (events, _) = broadcast::channel(4096);
        let counters = Arc::new(ServiceCounters::default());
        let mut tasks = Vec::new();
        let mut local_addrs = Vec::new();
        let shared = Arc::new(Shared {
            config: config.clone(),
            next_conn: AtomicU64::new(1),
            permits: Arc::new(Semaphore::new(config.max_connections)),
            inputs: inputs.clone(),
            counters: counters.clone(),
        });
        for &address in &config.listen {
            let listener = TcpListener::bind(address)
                .await
                .map_err(|source| ServiceError::Bind { address, source })?;
            let local = listener
                .local_addr()
                .map_err(|source| ServiceError::Bind { address, source })?;
            tracing::info!(%local, "ASAP listener ready");
            local_addrs.push(local);
            tasks.push(tokio::spawn(accept_loop(listener, shared.clone())));
        }
        if let Some(a) = &config.announce {
            let task = announce::start(a, server_id, &local_addrs)
                .await
                .map_err(|source| ServiceError::Announce {
                    group: a.group,
                    source,
                })?;
            tasks.push(task);
        }
        tasks.push(tokio::spawn(core_loop(
            core,
            input_rx,
            events.clone(),
            counters.clone(),
        )));
        let handle = RegistrarHandle {
            inputs,
            events,
            counters,
            started,
            local_addrs: local_addrs.into(),
            secure: config.tls.is_some(),
            server_id,
        };
        Ok(Registrar { handle, tasks })
    }

    /// A handle for observers (the admin interface); it stays usable
    /// after the registrar stops, but its queries then answer `None`.
    pub fn handle(&self) -> RegistrarHandle {
        self.handle.clone()
    }

    /// The bound listen addresses.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        self.handle.local_addrs()
    }

    /// Subscribe to the core's events.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.handle.events()
    }

    /// Read the core's state (handlespace, statistics) in its task.
    pub async fn query<R: Send + 'static>(
        &self,
        f: impl FnOnce(&RegistrarCore) -> R + Send + 'static,
    ) -> Option<R> {
        self.handle.query(f).await
    }

    /// The service's counters now.
    pub fn service_stats(&self) -> ServiceStats {
        self.handle.service_stats()
    }

    /// Stop serving: listeners, the core and every connection.
    pub async fn shutdown(mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
    }
}

struct Shared {
    config: ServiceConfig,
    next_conn: AtomicU64,
    permits: Arc<Semaphore>,
    inputs: mpsc::Sender<Input>,
    counters: Arc<ServiceCounters>,
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly.
                ServiceCounters::bump(&shared.counters.accept_errors);
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = shared.permits.clone().try_acquire_owned() else {
            ServiceCounters::bump(&shared.counters.connections_refused_limit);
            tracing::warn!(
                %peer,
                limit = shared.config.max_connections,
                "connection limit reached: closing the new connection"
            );
            continue;
        };
        ServiceCounters::bump(&shared.counters.connections_accepted);
        let open = OpenGuard::new(&shared.counters);
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, shared).await;
            drop(open);
            drop(permit);
        });
    }
}

async fn serve_connection(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let cfg = &shared.config;
    match &cfg.tls {
        Some(tls) => {
            let peer_text = peer.to_string();
            let hs = tokio::time::timeout(cfg.handshake_timeout, tls.accept(stream, &peer_text));
            match hs.await {
                Ok(Ok((tls_stream, identity))) => {
                    run_connection(tls_stream, peer, Some(identity), &shared).await
                }
                Ok(Err(e)) => {
                    ServiceCounters::bump(&shared.counters.tls_handshake_failures);
                    tracing::warn!(%peer, "refused: {e}")
                }
                Err(_) => {
                    ServiceCounters::bump(&shared.counters.tls_handshake_timeouts);
                    tracing::warn!(
                        %peer,
                        "refused: no TLS handshake within {:?}",
                        cfg.handshake_timeout
                    )
                }
            }
        }
        None => run_connection(stream, peer, None, &shared).await,
    }
}

/// Serve one established connection until either side closes it.
async fn run_connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    identity: Option<rserpool_security::PeerIdentity>,
    shared: &Shared,
) {
    let cfg = &shared.config;
    let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let (out_tx, mut out_rx) = mpsc::channel(cfg.send_queue.max(1));
    let who = identity
        .as_ref()
        .map_or_else(|| "insecure".to_string(), |i| i.to_string());
    tracing::debug!(conn, %peer, identity = %who, "connection open");
    let info = PeerInfo {
        identity,
        address: peer,
    };
    let inputs = &shared.inputs;
    let in_flight = Arc::new(AtomicUsize::new(0));
    let writer = Writer {
        out: out_tx,
        in_flight: in_flight.clone(),
    };
    if inputs
        .send(Input::Connect { conn, info, writer })
        .await
        .is_err()
    {
        return;
    }
    let mut codec = ChannelCodec::new(cfg.max_message_size);
    let mut rbuf = BytesMut::with_capacity(4096);
    let mut wbuf = Vec::with_capacity(4096);
    let mut idle_deadline = Instant::now() + cfg.idle_timeout;
    // Requests are forwarded only while the answers queued for this
    // connection fill less than half its queue: a client that sends faster
    // than it reads is slowed down by TCP, not disconnected.
    let room = (cfg.send_queue / 2).max(1);
    let reason: String = 'conn: loop {
        let mut backlog = false;
        loop {
            if out_rx.len() + in_flight.load(Ordering::Acquire) >= room {
                backlog = true;
                break;
            }
            match codec.decode(&mut rbuf) {
                Ok(Some(frame)) => {
                    in_flight.fetch_add(1, Ordering::AcqRel);
                    if inputs.send(Input::Frame { conn, frame }).await.is_err() {
                        break 'conn "registrar stopping".into();
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    // The core answers with an error and closes.
                    let _ = inputs.send(Input::FramingError { conn, error }).await;
                    rbuf.clear();
                    break;
                }
            }
        }
        tokio::select! {
            r = stream.read_buf(&mut rbuf), if !backlog => {
                match r {
                    Ok(0) => break 'conn "closed by the peer".into(),
                    Ok(_) => {}
                    Err(e) => break 'conn format!("read error: {e}"),
                }
                idle_deadline = Instant::now() + cfg.idle_timeout;
            }
            m = out_rx.recv() => {
                let Some(first) = m else {
                    break 'conn "registrar stopping".into();
                };
                let mut close = None;
                let mut next = Some(first);
                // Batch what is queued into one write.
                while let Some(o) = next.take() {
                    match o {
                        Outgoing::Message(msg) => {
                            if let Err(e) = rserpool_wire::WireMessage::encode(&msg, &mut wbuf) {
                                tracing::error!(conn, error = %e, msg = msg.name(), "cannot encode a response");
                            }
                        }
                        Outgoing::Close(why) => {
                            close = Some(why);
                            break;
                        }
                    }
                    if wbuf.len() < 64 * 1024 {
                        next = out_rx.try_recv().ok();
                    }
                }
                if !wbuf.is_empty() {
                    match tokio::time::timeout(cfg.idle_timeout, write_flush(&mut stream, &wbuf)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => break 'conn format!("write error: {e}"),
                        Err(_) => break 'conn format!("not reading for {:?}", cfg.idle_timeout),
                    }
                    wbuf.clear();
                }
                if let Some(why) = close {
                    break 'conn why;
                }
            }
            _ = tokio::time::sleep_until(idle_deadline) => {
                break 'conn format!("idle for {:?}", cfg.idle_timeout);
            }
        }
    };
    let _ = stream.shutdown().await;
    tracing::debug!(conn, %peer, identity = %who, %reason, "connection closed");
    let _ = inputs.send(Input::Disconnect { conn }).await;
}

async fn write_flush<S: AsyncWrite + Unpin>(s: &mut S, b: &[u8]) -> std::io::Result<()> {
    s.write_all(b).await?;
    s.flush().await
}

/// The task that owns the core.
async fn core_loop(
    mut core: RegistrarCore,
    mut inputs: mpsc::Receiver<Input>,
    events: broadcast::Sender<Event>,
    counters: Arc<ServiceCounters>,
) {
    let mut writers: FxHashMap<ConnId, Writer> = FxHashMap::default();
    loop {
        let deadline = core.poll_timeout().map(Instant::from_std);
        let input = tokio::select! {
            i = inputs.recv() => match i {
                Some(i) => Some(i),
                None => return,
            },
            _ = sleep_until_opt(deadline) => None,
        };
        // One clock reading per batch of inputs.
        let now = Instant::now().into_std();
        if let Some(first) = input {
            let mut next = Some(first);
            let mut n = 0;
            while let Some(i) = next.take() {
                apply(&mut core, &mut writers, now, i);
                n += 1;
                if n < 256 {
                    next = inputs.try_recv().ok();
                }
            }
        }
        if core.poll_timeout().is_some_and(|t| t <= now) {
            core.handle_timeout(now);
        }
        route_outputs(&mut core, &mut writers, &events, &counters);
    }
}

fn apply(
    core: &mut RegistrarCore,
    writers: &mut FxHashMap<ConnId, Writer>,
    now: std::time::Instant,
    input: Input,
) {
    match input {
        Input::Connect { conn, info, writer } => {
            writers.insert(conn, writer);
            core.handle_connect(now, conn, info);
        }
        Input::Frame { conn, frame } => {
            core.handle_frame(now, conn, &frame);
            if let Some(w) = writers.get(&conn) {
                w.in_flight.fetch_sub(1, Ordering::AcqRel);
            }
        }
        Input::FramingError { conn, error } => core.handle_framing_error(now, conn, &error),
        Input::Disconnect { conn } => {
            writers.remove(&conn);
            core.handle_disconnect(now, conn);
        }
        Input::Query(f) => f(core),
    }
}

fn route_outputs(
    core: &mut RegistrarCore,
    writers: &mut FxHashMap<ConnId, Writer>,
    events: &broadcast::Sender<Event>,
    counters: &ServiceCounters,
) {
    while let Some(o) = core.poll_output() {
        match o {
            Output::Send { conn, msg } => {
                let Some(w) = writers.get(&conn) else {
                    continue;
                };
                if let Err(e) = w.out.try_send(Outgoing::Message(msg)) {
                    // Not reading its answers (or gone): drop the writer,
                    // which ends the connection task.
                    if matches!(e, mpsc::error::TrySendError::Full(_)) {
                        ServiceCounters::bump(&counters.slow_clients_closed);
                        tracing::warn!(
                            conn,
                            "send queue full: closing a client that does not read"
                        );
                    }
                    writers.remove(&conn);
                }
            }
            Output::Close { conn, reason } => {
                tracing::warn!(conn, %reason, "closing connection");
                if let Some(w) = writers.remove(&conn) {
                    let _ = w.out.try_send(Outgoing::Close(reason));
                }
            }
            Output::Event(e) => {
                log_event(&e);
                let _ = events.send(e);
            }
        }
    }
}

fn log_event(e: &Event) {
    match e {
        Event::Registered {
            pool_handle,
            identifier,
            identity,
            new,
        } => {
            if *new {
                tracing::info!(pool = %pool_handle, pe = format_args!("{identifier:#010x}"), %identity, "PE registered");
            } else {
                tracing::debug!(pool = %pool_handle, pe = format_args!("{identifier:#010x}"), %identity, "PE re-registered");
            }
        }
        Event::Removed {
            pool_handle,
            identifier,
            reason,
        } => {
            tracing::info!(pool = %pool_handle, pe = format_args!("{identifier:#010x}"), ?reason, "PE removed")
        }
        Event::Refused {
            conn,
            identity,
            request,
            refusal,
            cause,
            detail,
        } => match refusal {
            crate::Refusal::RateLimited => {
                tracing::debug!(conn, %identity, request, cause = cause.name(), %detail, "request refused")
            }
            _ => {
                tracing::warn!(conn, %identity, request, cause = cause.name(), %detail, "request refused")
            }
        },
        Event::Malformed {
            conn,
            identity,
            error,
        } => tracing::warn!(conn, %identity, %error, "malformed message"),
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
