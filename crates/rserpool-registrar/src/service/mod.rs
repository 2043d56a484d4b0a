//! The tokio service around [`RegistrarCore`]: ASAP listeners over TCP
//! with TLS (or plain TCP in insecure mode, never both: RFC 5355 2.15),
//! one task per connection for the handshake, framing and encoding, and
//! one task that owns the core. Every queue is bounded: a client that
//! sends faster than the core serves waits (TCP back-pressure), a client
//! that does not read its answers is disconnected. Every stage has a cap
//! and a deadline (DESIGN section 4): connections in total and per source
//! address, handshakes in progress (the oldest is evicted when all slots
//! are taken) with the handshake timeout, each message from its first
//! byte, and silence.
//!
//! * `admission`: the connection and handshake caps.
//! * `connection`: the accept loop and the connection tasks.
//! * `counters`: the service's counters ([`ServiceStats`]).

mod admission;
mod connection;
mod counters;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use rserpool_handlespace::ConnId;
use rserpool_security::apd::{Apd, ApdError, Change, IpNet, Origin};
use rserpool_security::{PeerIdentity, TlsClient, TlsServer};
use rserpool_wire::framing::FramingError;
use rserpool_wire::ServerId;
use rustc_hash::FxHashMap;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use counters::{ServiceLimits, ServiceStats};

use crate::announce::{self, AnnounceConfig};
use crate::authorisation::ApdReport;
use crate::config::{bounds, InvalidSetting, Range};
use crate::log_limit::{LogSource, SummarisedLog};
use crate::revocation::{Revocation, RevocationReport};
use crate::{ClientInfo, ConnKind, CoreConfig, Event, Message, Output, RegistrarCore};
use admission::Admission;
use counters::ServiceCounters;

/// Settings of the service.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// ASAP listen addresses (port 0: any free port).
    pub listen: Vec<SocketAddr>,
    /// Listeners with options: for pool users only, or for some source
    /// addresses only (PIM passive mode, DESIGN section 4).
    pub listeners: Vec<ListenerConfig>,
    /// ENRP listen addresses, for peer registrars (RFC 5353; DESIGN
    /// section 3: ASAP and ENRP use separate listeners). Empty: this
    /// registrar only dials its peers ([`CoreConfig::enrp`]).
    pub enrp_listen: Vec<SocketAddr>,
    /// TLS set-up; `None` is insecure mode (plain TCP, labs only).
    pub tls: Option<Arc<TlsServer>>,
    /// The registrar's own client credentials, for the connections the
    /// core opens to peer registrars ([`Output::Connect`]) in secure
    /// mode; without them such a connection fails at once.
    pub tls_client: Option<Arc<TlsClient>>,
    /// Most open connections over all listeners.
    pub max_connections: usize,
    /// Most open connections from one source address (IPv6: one /64),
    /// including those still in their handshake.
    pub max_connections_per_address: usize,
    /// Most TLS handshakes in progress; beyond, the oldest is evicted.
    pub max_handshakes: usize,
    /// Most TLS handshakes in progress from one source address.
    pub max_handshakes_per_address: usize,
    /// Largest message a client may send (bytes).
    pub max_message_size: usize,
    /// Time a client has to complete its TLS handshake.
    pub handshake_timeout: Duration,
    /// Time a client has to complete a message from its first byte.
    pub message_timeout: Duration,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// Messages queued for one connection before it counts as not reading.
    pub send_queue: usize,
    /// Inputs queued for the core.
    pub core_queue: usize,
    /// Repeated warnings are written once per source and interval and
    /// summed up at its end ([`crate::log_limit`]).
    pub log_summary_interval: Duration,
    /// ASAP_SERVER_ANNOUNCE over UDP (off unless set).
    pub announce: Option<AnnounceConfig>,
    /// The ENRP multicast channel ([`crate::enrp_multicast`]): off when
    /// `None` (RFC 5353 3.2.1 makes it optional; static peers suffice).
    pub enrp_multicast: Option<crate::enrp_multicast::EnrpMulticast>,
    /// The authorised peer database to start with (default: the
    /// permissive one, [`Apd::permissive`]; a configured one needs
    /// secure mode).
    pub apd: Apd,
    /// Where the database lives: changes through
    /// [`RegistrarHandle::change_apd`] are written back to it before they
    /// apply, so that a restart or a reload keeps them. `None`: changes
    /// live in memory only.
    pub apd_file: Option<PathBuf>,
    /// The core's settings.
    pub core: CoreConfig,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            listen: vec![SocketAddr::from(([0, 0, 0, 0], 3864))],
            listeners: Vec::new(),
            enrp_listen: Vec::new(),
            tls: None,
            tls_client: None,
            max_connections: 10_000,
            max_connections_per_address: 256,
            max_handshakes: 512,
            max_handshakes_per_address: 32,
            max_message_size: 4096,
            handshake_timeout: Duration::from_secs(5),
            message_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            send_queue: 1024,
            core_queue: 16_384,
            log_summary_interval: Duration::from_secs(10),
            announce: None,
            enrp_multicast: None,
            apd: Apd::permissive(false),
            apd_file: None,
            core: CoreConfig::default(),
        }
    }
}

/// A listener with options (beyond [`ServiceConfig::listen`]'s plain
/// ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Where it listens (port 0: any free port).
    pub address: SocketAddr,
    /// Pool users only (DESIGN section 4, after PIM's passive mode):
    /// handle resolutions and unreachable reports; registrations and
    /// deregistrations get "rejected due to security considerations".
    /// Not announced (PEs have nothing to do there).
    pub pool_users_only: bool,
    /// The source addresses it accepts (empty: every one); a connection
    /// from another is closed at once, before any TLS, and counted.
    pub allow: Vec<IpNet>,
}

impl ListenerConfig {
    /// The connection kind of what it accepts.
    fn kind(&self) -> ConnKind {
        if self.pool_users_only {
            ConnKind::AsapPoolUser
        } else {
            ConnKind::Asap
        }
    }
}

impl ServiceConfig {
    /// Every listener: the plain ones of `listen`, then `listeners`.
    pub fn all_listeners(&self) -> Vec<ListenerConfig> {
        self.listen
            .iter()
            .map(|&address| ListenerConfig {
                address,
                pool_users_only: false,
                allow: Vec::new(),
            })
            .chain(self.listeners.iter().cloned())
            .collect()
    }

    /// Check every setting against its range ([`bounds`]), the listen
    /// addresses for duplicates, and the settings against each other.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        use bounds::*;
        self.core.validate()?;
        let addresses: Vec<SocketAddr> = self.all_listeners().iter().map(|l| l.address).collect();
        check_listen(&addresses)?;
        // Only pool-user listeners: no PE could register.
        if self.listen.is_empty()
            && !self.listeners.is_empty()
            && self.listeners.iter().all(|l| l.pool_users_only)
        {
            return Err(InvalidSetting::new(
                "listen",
                "every listener is for pool users only: PEs could not register anywhere",
            ));
        }
        CONNECTIONS.check("max_connections", self.max_connections)?;
        Range {
            min: 1,
            max: self.max_connections,
        }
        .check(
            "max_connections_per_address",
            self.max_connections_per_address,
        )?;
        HANDSHAKES.check("max_handshakes", self.max_handshakes)?;
        Range {
            min: 1,
            max: self.max_handshakes,
        }
        .check(
            "max_handshakes_per_address",
            self.max_handshakes_per_address,
        )?;
        MESSAGE_SIZE.check("max_message_size", self.max_message_size)?;
        HANDSHAKE_TIMEOUT.check("handshake_timeout", self.handshake_timeout)?;
        MESSAGE_TIMEOUT.check("message_timeout", self.message_timeout)?;
        IDLE_TIMEOUT.check("idle_timeout", self.idle_timeout)?;
        QUEUE.check("send_queue", self.send_queue)?;
        QUEUE.check("core_queue", self.core_queue)?;
        LOG_SUMMARY_INTERVAL.check("log_summary_interval", self.log_summary_interval)?;
        if let Some(a) = &self.announce {
            ANNOUNCE_INTERVAL.check("announce_interval", a.interval)?;
        }
        // A PE sends only when it answers a keep-alive: a connection must
        // be allowed to stay silent longer than the longest keep-alive
        // interval (150 %) plus the time to answer.
        let c = &self.core;
        let silence = c.keep_alive_interval.mul_f64(1.5) + c.keep_alive_timeout;
        if self.idle_timeout <= silence {
            return Err(InvalidSetting::new(
                "idle_timeout",
                format!(
                    "{} would close PEs between keep-alives: it must be more than 1.5 x the \
                     keep-alive interval plus the keep-alive timeout ({})",
                    crate::config::show_duration(self.idle_timeout),
                    crate::config::show_duration(silence)
                ),
            ));
        }
        Ok(())
    }

    /// The limits, as the metrics show them.
    pub fn limits(&self) -> ServiceLimits {
        ServiceLimits {
            max_connections: self.max_connections,
            max_connections_per_address: self.max_connections_per_address,
            max_connections_per_identity: self.core.max_connections_per_identity,
            max_handshakes: self.max_handshakes,
            max_handshakes_per_address: self.max_handshakes_per_address,
            max_message_size: self.max_message_size,
            handshake_timeout: self.handshake_timeout,
            message_timeout: self.message_timeout,
            idle_timeout: self.idle_timeout,
        }
    }
}

/// Listen addresses must not repeat or overlap ([`addresses_overlap`]).
fn check_listen(listen: &[SocketAddr]) -> Result<(), InvalidSetting> {
    if listen.is_empty() {
        return Err(InvalidSetting::new("listen", "needs at least one address"));
    }
    for (i, a) in listen.iter().enumerate() {
        if let Some(b) = listen[..i].iter().find(|b| addresses_overlap(a, b)) {
            return Err(InvalidSetting::new(
                "listen",
                format!("{a} overlaps {b}: both cannot be bound"),
            ));
        }
    }
    Ok(())
}

/// Whether two listen addresses cannot both be bound: the same address,
/// or a wildcard address and another of its family on the same port
/// (Linux binds `[::]` to IPv4 too unless IPV6_V6ONLY is set). Port 0
/// picks a free port each time, so it overlaps nothing.
pub fn addresses_overlap(a: &SocketAddr, b: &SocketAddr) -> bool {
    if a.port() == 0 || a.port() != b.port() {
        return false;
    }
    let wildcard_v6 = |x: &SocketAddr| x.ip().is_unspecified() && x.is_ipv6();
    a.ip() == b.ip()
        || (a.is_ipv4() == b.is_ipv4() && (a.ip().is_unspecified() || b.ip().is_unspecified()))
        || wildcard_v6(a)
        || wildcard_v6(b)
}

/// Why the service could not start or reload.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    Config(InvalidSetting),
    /// The announce socket could not be set up.
    #[error("cannot send server announcements to {group}: {source}")]
    Announce {
        /// The group.
        group: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The TLS set-up does not complete a handshake with itself.
    #[error("TLS set-up: {0}")]
    Tls(rserpool_security::SecurityError),
    /// Credentials cannot be reloaded in insecure mode.
    #[error("the registrar runs in insecure mode: it has no credentials to reload")]
    Insecure,
    /// An authorised peer database needs identities to match, and
    /// insecure mode proves none.
    #[error(
        "an authorised peer database needs secure mode: insecure mode proves no identity for \
         its entries to match (give keys or certificates, or no database)"
    )]
    ApdNeedsSecureMode,
    /// A change of the database is invalid (nothing changed).
    #[error("{0}")]
    Apd(#[from] ApdError),
    /// The core task is gone.
    #[error("the registrar has stopped")]
    Stopped,
    /// The ENRP multicast channel could not be set up.
    #[error("cannot use the ENRP multicast channel {group}: {source}")]
    EnrpMulticast {
        /// The group.
        group: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

// Not `#[from]`: the message carries the cause already, and a source
// would print it twice in an error chain.
impl From<InvalidSetting> for ServiceError {
    fn from(e: InvalidSetting) -> Self {
        ServiceError::Config(e)
    }
}

impl From<rserpool_security::SecurityError> for ServiceError {
    fn from(e: rserpool_security::SecurityError) -> Self {
        ServiceError::Tls(e)
    }
}

/// What connection tasks tell the core task.
enum Input {
    Connect {
        conn: ConnId,
        info: ClientInfo,
        writer: Writer,
    },
    /// A connection the core asked for ([`Output::Connect`]) is open.
    Connected {
        conn: ConnId,
        identity: Option<PeerIdentity>,
        writer: Writer,
    },
    /// ... or could not be opened.
    ConnectFailed {
        conn: ConnId,
        reason: String,
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
    Revoke {
        revocation: Revocation,
        reply: oneshot::Sender<RevocationReport>,
    },
    Query(Box<dyn FnOnce(&RegistrarCore) + Send>),
    Command(CoreCommand),
    /// A datagram of the ENRP multicast channel.
    PresenceHint {
        from: SocketAddr,
        datagram: Vec<u8>,
    },
}

/// A change to the core, run in its task with the batch's time.
type CoreCommand = Box<dyn FnOnce(&mut RegistrarCore, std::time::Instant) + Send>;

/// The core task's handle on a connection: its answer queue, the count
/// of its frames the core has not handled yet, and its peer's address.
struct Writer {
    out: mpsc::Sender<Outgoing>,
    in_flight: Arc<AtomicUsize>,
    address: SocketAddr,
}

/// What the core task tells a connection task. Boxed: a queue slot is
/// then 16 bytes, not 136, and each queue allocates slots 32 at a time.
enum Outgoing {
    Message(Box<Message>),
    /// Close after what was queued before (the core task logged why).
    Close,
}

/// What the service's tasks share.
struct Shared {
    config: ServiceConfig,
    /// The TLS set-up new handshakes use (secure mode), replaced by a
    /// reload; its generation counts the replacements.
    tls: Option<RwLock<Arc<TlsServer>>>,
    tls_generation: AtomicU64,
    next_conn: AtomicU64,
    admission: Arc<Admission>,
    inputs: mpsc::Sender<Input>,
    counters: Arc<ServiceCounters>,
    log: Arc<SummarisedLog>,
    /// The core's server identifier (it changes only on a collision
    /// while starting: `Event::ServerIdChanged`).
    server_id: std::sync::atomic::AtomicU32,
    /// Held while the database changes: one change at a time, from
    /// reading the current database to writing the file and the core
    /// applying it.
    apd_change: tokio::sync::Mutex<()>,
}

impl Shared {
    /// The TLS set-up for a new handshake and its generation; `None` in
    /// insecure mode.
    fn current_tls(&self) -> Option<(Arc<TlsServer>, u64)> {
        let lock = self.tls.as_ref()?;
        let tls = lock.read().unwrap_or_else(|e| e.into_inner()).clone();
        Some((tls, self.tls_generation()))
    }

    fn tls_generation(&self) -> u64 {
        self.tls_generation.load(Ordering::Acquire)
    }

    fn stats(&self) -> ServiceStats {
        self.counters
            .snapshot(self.admission.handshakes_in_progress())
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

/// A cheap, cloneable handle on a running registrar for the admin
/// interface and other observers: queries to the core, the event stream,
/// the service's counters, facts fixed at start, and credential reloads.
#[derive(Debug, Clone)]
pub struct RegistrarHandle {
    shared: Arc<Shared>,
    events: broadcast::Sender<Event>,
    started: Instant,
    local_addrs: Arc<[SocketAddr]>,
    pool_user_addrs: Arc<[SocketAddr]>,
    enrp_addrs: Arc<[SocketAddr]>,
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
        self.shared.inputs.send(q).await.ok()?;
        rx.await.ok()
    }

    /// Change the core's state in its task (an operator's action such as
    /// [`RegistrarCore::drain`]): `f` gets the core and the time of the
    /// batch it runs in; what it outputs (messages, events) is routed as
    /// any other output. `None` when the core task is gone.
    pub async fn command<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut RegistrarCore, std::time::Instant) -> R + Send + 'static,
    ) -> Option<R> {
        let (tx, rx) = oneshot::channel();
        let c = Input::Command(Box::new(move |core, now| {
            let _ = tx.send(f(core, now));
        }));
        self.shared.inputs.send(c).await.ok()?;
        rx.await.ok()
    }

    /// Replace the TLS set-up (reloaded keys and certificates) and end
    /// what the old credentials covered and the new ones do not: new
    /// handshakes use `tls` at once, handshakes that were in progress are
    /// closed when they complete, and the core closes the connections and
    /// removes the PEs that `revocation` names
    /// ([`RegistrarCore::handle_revocation`]).
    pub async fn reload_credentials(
        &self,
        tls: Arc<TlsServer>,
        revocation: Revocation,
    ) -> Result<RevocationReport, ServiceError> {
        let lock = self.shared.tls.as_ref().ok_or(ServiceError::Insecure)?;
        tls.self_test().await?;
        *lock.write().unwrap_or_else(|e| e.into_inner()) = tls;
        self.shared.tls_generation.fetch_add(1, Ordering::AcqRel);
        let (reply, rx) = oneshot::channel();
        self.shared
            .inputs
            .send(Input::Revoke { revocation, reply })
            .await
            .map_err(|_| ServiceError::Stopped)?;
        rx.await.map_err(|_| ServiceError::Stopped)
    }

    /// The authorised peer database the core decides with now.
    pub async fn apd(&self) -> Result<Apd, ServiceError> {
        self.query(|c| c.apd().clone())
            .await
            .ok_or(ServiceError::Stopped)
    }

    /// Replace the authorised peer database (a reloaded file) and
    /// re-validate everything against it
    /// ([`RegistrarCore::replace_apd`]); the report says what it
    /// removed. The file is not written (it is where `apd` came from).
    pub async fn replace_apd(&self, apd: Apd) -> Result<ApdReport, ServiceError> {
        let _one_at_a_time = self.shared.apd_change.lock().await;
        self.install_apd(apd).await
    }

    /// Apply `change` to the database: checked on a copy first (an
    /// invalid change changes nothing and says why), written to the
    /// database file when there is one (a write that fails changes
    /// nothing), then applied and everything re-validated. Returns the
    /// position the change names and what it removed.
    pub async fn change_apd(&self, change: Change) -> Result<(usize, ApdReport), ServiceError> {
        self.update_apd(|apd| apd.apply(change)).await
    }

    /// Replace the whole database with `apd` as [`Self::change_apd`]
    /// applies a change: written to the database file first, if there is
    /// one.
    pub async fn set_apd(&self, apd: Apd) -> Result<ApdReport, ServiceError> {
        self.update_apd(|current| {
            *current = apd;
            Ok(0)
        })
        .await
        .map(|(_, report)| report)
    }

    /// The file database changes are written to.
    pub fn apd_file(&self) -> Option<&std::path::Path> {
        self.shared.config.apd_file.as_deref()
    }

    async fn update_apd(
        &self,
        f: impl FnOnce(&mut Apd) -> Result<usize, ApdError>,
    ) -> Result<(usize, ApdReport), ServiceError> {
        let _one_at_a_time = self.shared.apd_change.lock().await;
        let mut apd = self.apd().await?;
        let position = f(&mut apd)?;
        self.check_apd_mode(&apd)?;
        if let Some(path) = &self.shared.config.apd_file {
            apd.save(path, rserpool_security::Existing::Replace)?;
        }
        Ok((position, self.install_apd(apd).await?))
    }

    fn check_apd_mode(&self, apd: &Apd) -> Result<(), ServiceError> {
        if !self.is_secure() && !matches!(apd.origin(), Origin::Permissive { .. }) {
            return Err(ServiceError::ApdNeedsSecureMode);
        }
        Ok(())
    }

    async fn install_apd(&self, apd: Apd) -> Result<ApdReport, ServiceError> {
        self.check_apd_mode(&apd)?;
        self.command(move |c, now| c.replace_apd(now, apd))
            .await
            .ok_or(ServiceError::Stopped)
    }

    /// Subscribe to the core's events.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Resolves when the core task has stopped (the registrar was shut
    /// down or dropped).
    pub async fn stopped(&self) {
        self.shared.inputs.closed().await
    }

    /// The service's counters now.
    pub fn service_stats(&self) -> ServiceStats {
        self.shared.stats()
    }

    /// The limits the service runs with.
    pub fn limits(&self) -> ServiceLimits {
        self.shared.config.limits()
    }

    /// The bound ASAP listen addresses (PEs and PUs).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The bound addresses of the listeners for pool users only.
    pub fn pool_user_addrs(&self) -> &[SocketAddr] {
        &self.pool_user_addrs
    }

    /// The bound ENRP listen addresses (peer registrars).
    pub fn enrp_addrs(&self) -> &[SocketAddr] {
        &self.enrp_addrs
    }

    /// Whether the registrar runs in secure mode (TLS on every connection).
    pub fn is_secure(&self) -> bool {
        self.shared.tls.is_some()
    }

    /// The registrar's server identifier.
    pub fn server_id(&self) -> ServerId {
        ServerId::new(self.shared.server_id.load(Ordering::Relaxed))
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
    /// Subscribed before the core started: the first [`Registrar::events`]
    /// call gets it, and with it every event from the start (a peer up
    /// found while the caller was still starting its admin server).
    first_events: std::sync::Mutex<Option<broadcast::Receiver<Event>>>,
}

impl Drop for Registrar {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Registrar {
    /// Check the settings, bind the listeners and start serving.
    pub async fn start(config: ServiceConfig) -> Result<Registrar, ServiceError> {
        let now = Instant::now().into_std();
        config.validate()?;
        let mut core_config = config.core.clone();
        if core_config.seed == 0 {
            core_config.seed = rserpool_security::random_seed();
        }
        if config.tls.is_none() && !matches!(config.apd.origin(), Origin::Permissive { .. }) {
            return Err(ServiceError::ApdNeedsSecureMode);
        }
        // ENRP listeners first: the core announces the first one's address.
        let mut enrp_addrs = Vec::new();
        let mut enrp_listeners = Vec::new();
        for &address in &config.enrp_listen {
            let listener = TcpListener::bind(address)
                .await
                .map_err(|source| ServiceError::Bind { address, source })?;
            let local = listener
                .local_addr()
                .map_err(|source| ServiceError::Bind { address, source })?;
            tracing::info!(%local, "ENRP listener for peer registrars ready");
            enrp_addrs.push(local);
            enrp_listeners.push(listener);
        }
        if core_config.enrp.advertise.is_none() {
            core_config.enrp.advertise = enrp_addrs.first().copied();
        }
        let core = RegistrarCore::new(core_config, now)?.with_apd(config.apd.clone());
        if let Some(tls) = &config.tls {
            // What cannot complete a handshake with itself serves nobody.
            tls.self_test().await?;
        }
        let server_id = core.config().server_id;
        match &config.tls {
            Some(_) => tracing::info!(
                server_id = server_id.get(),
                "registrar in secure mode: TLS on every connection"
            ),
            None => tracing::warn!(
                server_id = server_id.get(),
                "INSECURE MODE: no TLS, no authentication; anyone who can connect can register \
                 and resolve. For labs only (RFC 5355 2.15)."
            ),
        }
        // Said once at start (DESIGN section 4): what the database allows
        // (at info: the default level of `rsp registrar`; an embedded
        // registrar, a benchmark's or the demo's, logs warnings only).
        match config.apd.origin() {
            Origin::Permissive { .. } => tracing::info!("{}", config.apd.origin()),
            _ => tracing::info!(
                entries = config.apd.len(),
                file = ?config.apd_file,
                "authorised peer database: {} entries",
                config.apd.len()
            ),
        }
        let started = Instant::now();
        let (inputs, input_rx) = mpsc::channel(config.core_queue.max(1));
        let (events, first_events) = broadcast::channel(4096);
        let counters = Arc::new(ServiceCounters::default());
        let log = SummarisedLog::new(config.log_summary_interval);
        let mut tasks = Vec::new();
        let mut local_addrs = Vec::new();
        let admission = Admission::new(admission::Limits {
            connections: config.max_connections,
            per_address: config.max_connections_per_address,
            handshakes: config.max_handshakes,
            handshakes_per_address: config.max_handshakes_per_address,
        });
        let shared = Arc::new(Shared {
            tls: config.tls.clone().map(RwLock::new),
            config: config.clone(),
            tls_generation: AtomicU64::new(0),
            next_conn: AtomicU64::new(1),
            admission,
            inputs: inputs.clone(),
            counters: counters.clone(),
            log: log.clone(),
            server_id: std::sync::atomic::AtomicU32::new(server_id.get()),
            apd_change: tokio::sync::Mutex::new(()),
        });
        let mut listeners = Vec::new();
        let mut pool_user_addrs = Vec::new();
        for l in config.all_listeners() {
            let address = l.address;
            let listener = TcpListener::bind(address)
                .await
                .map_err(|source| ServiceError::Bind { address, source })?;
            let local = listener
                .local_addr()
                .map_err(|source| ServiceError::Bind { address, source })?;
            let allow = if l.allow.is_empty() {
                "any".to_string()
            } else {
                l.allow
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            if l.pool_users_only {
                tracing::info!(%local, sources = %allow, "ASAP listener for pool users only ready");
                pool_user_addrs.push(local);
            } else {
                tracing::info!(%local, sources = %allow, "ASAP listener ready");
                local_addrs.push(local);
            }
            listeners.push((listener, l));
        }
        for (listener, l) in listeners {
            tasks.push(tokio::spawn(connection::accept_loop(
                listener,
                l.kind(),
                Arc::from(l.allow),
                shared.clone(),
            )));
        }
        for listener in enrp_listeners {
            tasks.push(tokio::spawn(connection::accept_loop(
                listener,
                ConnKind::Enrp,
                Arc::from(Vec::new()),
                shared.clone(),
            )));
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
        if let Some(m) = &config.enrp_multicast {
            let multicast_error = |source| ServiceError::EnrpMulticast {
                group: m.group,
                source,
            };
            let socket = crate::enrp_multicast::open(m).map_err(multicast_error)?;
            let presence = core.multicast_presence().ok_or_else(|| {
                multicast_error(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "no ENRP listener to announce",
                ))
            })?;
            let inputs = shared.inputs.clone();
            tracing::info!(group = %m.group, "ENRP presences multicast and heard (hints only)");
            tasks.push(tokio::spawn(crate::enrp_multicast::run(
                socket,
                m.group,
                presence,
                config.core.enrp.heartbeat_cycle,
                move |from, datagram| {
                    // Dropped when the core's queue is full: a hint.
                    !matches!(
                        inputs.try_send(Input::PresenceHint { from, datagram }),
                        Err(mpsc::error::TrySendError::Closed(_))
                    )
                },
            )));
        }
        tasks.push(tokio::spawn(crate::log_limit::run_flusher(log.clone())));
        tasks.push(tokio::spawn(core_loop(
            core,
            input_rx,
            events.clone(),
            shared.clone(),
        )));
        let handle = RegistrarHandle {
            shared,
            events,
            started,
            local_addrs: local_addrs.into(),
            pool_user_addrs: pool_user_addrs.into(),
            enrp_addrs: enrp_addrs.into(),
        };
        Ok(Registrar {
            handle,
            tasks,
            first_events: std::sync::Mutex::new(Some(first_events)),
        })
    }

    /// A handle for observers (the admin interface); it stays usable
    /// after the registrar stops, but its queries then answer `None`.
    pub fn handle(&self) -> RegistrarHandle {
        self.handle.clone()
    }

    /// The bound listen addresses (PEs and PUs).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        self.handle.local_addrs()
    }

    /// The bound addresses of the listeners for pool users only.
    pub fn pool_user_addrs(&self) -> &[SocketAddr] {
        self.handle.pool_user_addrs()
    }

    /// Subscribe to the core's events. The first call sees every event
    /// since the registrar started; later ones, those from then on.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        let first = self
            .first_events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        first.unwrap_or_else(|| self.handle.events())
    }

    /// Read the core's state (handlespace, statistics) in its task.
    pub async fn query<R: Send + 'static>(
        &self,
        f: impl FnOnce(&RegistrarCore) -> R + Send + 'static,
    ) -> Option<R> {
        self.handle.query(f).await
    }

    /// Change the core's state in its task ([`RegistrarHandle::command`]).
    pub async fn command<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut RegistrarCore, std::time::Instant) -> R + Send + 'static,
    ) -> Option<R> {
        self.handle.command(f).await
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

/// The task that owns the core.
async fn core_loop(
    mut core: RegistrarCore,
    mut inputs: mpsc::Receiver<Input>,
    events: broadcast::Sender<Event>,
    shared: Arc<Shared>,
) {
    let mut writers: FxHashMap<ConnId, Writer> = FxHashMap::default();
    loop {
        let deadline = core.poll_timeout().map(Instant::from_std);
        let input = tokio::select! {
            i = inputs.recv() => match i {
                Some(i) => Some(i),
                None => return,
            },
            _ = connection::sleep_until_opt(deadline) => None,
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
        route_outputs(&mut core, &mut writers, &events, &shared);
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
        Input::Connected {
            conn,
            identity,
            writer,
        } => {
            writers.insert(conn, writer);
            core.handle_connected(now, conn, identity);
        }
        Input::ConnectFailed { conn, reason } => core.handle_connect_failed(now, conn, &reason),
        Input::PresenceHint { from, datagram } => core.handle_presence_hint(now, from, &datagram),
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
        Input::Revoke { revocation, reply } => {
            let _ = reply.send(core.handle_revocation(now, &revocation));
        }
        Input::Query(f) => f(core),
        Input::Command(f) => f(core, now),
    }
}

fn route_outputs(
    core: &mut RegistrarCore,
    writers: &mut FxHashMap<ConnId, Writer>,
    events: &broadcast::Sender<Event>,
    shared: &Arc<Shared>,
) {
    let (counters, log) = (&*shared.counters, &*shared.log);
    while let Some(o) = core.poll_output() {
        match o {
            Output::Send { conn, msg } => {
                let Some(w) = writers.get(&conn) else {
                    continue;
                };
                if let Err(e) = w.out.try_send(Outgoing::Message(Box::new(msg))) {
                    // Not reading its answers (or gone): drop the writer,
                    // which ends the connection task.
                    if matches!(e, mpsc::error::TrySendError::Full(_)) {
                        ServiceCounters::bump(&counters.slow_clients_closed);
                        let peer = w.address;
                        let source = LogSource::of(peer.ip());
                        log.write(
                            "connection closed (not reading its answers)",
                            source,
                            || {
                                tracing::warn!(
                                    conn = conn.get(),
                                    %peer,
                                    "send queue full: closing a client that does not read"
                                )
                            },
                        );
                    }
                    writers.remove(&conn);
                }
            }
            Output::Close { conn, reason } => {
                if let Some(w) = writers.remove(&conn) {
                    let peer = w.address;
                    let source = LogSource::of(peer.ip());
                    log.write(
                        "connection closed by the registrar",
                        source,
                        || tracing::warn!(conn = conn.get(), %peer, %reason, "closing connection"),
                    );
                    let _ = w.out.try_send(Outgoing::Close);
                }
            }
            Output::Connect {
                conn,
                address,
                kind,
            } => {
                tokio::spawn(connection::connect(shared.clone(), conn, address, kind));
            }
            Output::Event(e) => {
                if let Event::ServerIdChanged { to, .. } = &e {
                    shared.server_id.store(to.get(), Ordering::Relaxed);
                }
                log_event(&e, log);
                let _ = events.send(e);
            }
        }
    }
}

/// The log line of an event; what a client can repeat at will goes
/// through the summarised log.
fn log_event(e: &Event, log: &SummarisedLog) {
    let pe = |h: &rserpool_wire::PoolHandle, id: &rserpool_wire::PeId| {
        LogSource::Identity(format!("{h}/{id:#010x}").into())
    };
    match e {
        Event::Registered {
            pool_handle,
            identifier,
            identity,
            new,
            changed,
            port,
            protocol,
            policy,
            ..
        } => {
            let pe = format_args!("{identifier:#010x}");
            if *new {
                tracing::info!(pool = %pool_handle, %pe, %identity, protocol, port, policy, "PE registered");
            } else if *changed {
                // Debug: a least-used PE changes its load at every re-registration.
                tracing::debug!(pool = %pool_handle, %pe, %identity, protocol, port, policy, "PE re-registered with a new transport or policy");
            } else {
                tracing::debug!(pool = %pool_handle, %pe, %identity, "PE re-registered");
            }
        }
        // The admin API logs who asked, with the request's source address.
        Event::Drained {
            pool_handle,
            identifier,
            by,
            timeout_seconds,
        } => {
            tracing::debug!(pool = %pool_handle, pe = format_args!("{identifier:#010x}"), %by, ?timeout_seconds, "PE drained")
        }
        Event::Undrained {
            pool_handle,
            identifier,
            by,
        } => {
            tracing::debug!(pool = %pool_handle, pe = format_args!("{identifier:#010x}"), %by, "PE undrained")
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
        } => {
            // Built only where it is used: rate-limited refusals come in
            // floods and are not summarised.
            let source = || LogSource::Identity(identity.as_str().into());
            match (refusal, *request) {
                (_, "connection") => log.write("connection refused (per-identity limit)", source(), || {
                    tracing::warn!(conn = conn.get(), %identity, %detail, "connection refused")
                }),
                (crate::Refusal::RateLimited, _) => {
                    tracing::debug!(conn = conn.get(), %identity, request, cause = cause.name(), %detail, "request refused")
                }
                _ => log.write("request refused", source(), || {
                    tracing::warn!(conn = conn.get(), %identity, request, cause = cause.name(), %detail, "request refused")
                }),
            }
        }
        Event::ReportedUnreachable {
            pool_handle,
            identifier,
            reporters,
            check,
        } => log.write(
            "PE reported unreachable",
            pe(pool_handle, identifier),
            || {
                tracing::warn!(
                    pool = %pool_handle,
                    pe = format_args!("{identifier:#010x}"),
                    reporters = %reporters.join(", "),
                    ?check,
                    "PE reported unreachable by {} pool users: checking it with a keep-alive",
                    reporters.len()
                )
            },
        ),
        Event::ReportsRefuted {
            pool_handle,
            identifier,
            reporters,
        } => log.write(
            "PE answered after unreachable reports",
            pe(pool_handle, identifier),
            || {
                tracing::warn!(
                    pool = %pool_handle,
                    pe = format_args!("{identifier:#010x}"),
                    reporters = %reporters.join(", "),
                    "PE answered the keep-alive that checked the unreachable reports: it stays"
                )
            },
        ),
        Event::Revoked {
            identities,
            reauthenticate,
            connections_closed,
            pes_removed,
        } => tracing::warn!(
            revoked = %identities.join(", "),
            reauthenticate = %reauthenticate.join(", "),
            connections_closed,
            pes_removed,
            "credentials reloaded: closed {connections_closed} connections and removed {pes_removed} PEs"
        ),
        Event::AuthorisationChanged {
            entries,
            connections_closed,
            pes_removed,
        } => tracing::warn!(
            entries,
            connections_closed,
            pes_removed,
            "authorised peer database replaced ({entries} entries): re-validation closed \
             {connections_closed} connections and removed {pes_removed} PEs"
        ),
        Event::ConnectFailed {
            conn,
            address,
            kind,
            reason,
        } => tracing::warn!(
            conn = conn.get(),
            %address,
            kind = kind.name(),
            %reason,
            "could not connect to a peer"
        ),
        Event::PeerUp {
            server_id,
            address,
            identity,
        } => tracing::info!(peer = %server_id, %address, %identity, "peer registrar up"),
        Event::PeerDown { server_id, reason } => {
            tracing::warn!(peer = %server_id, %reason, "peer registrar down")
        }
        // The core logged why.
        Event::ServerIdChanged { .. } => {}
        Event::TableSynced {
            from,
            pes,
            pages,
            removed,
            audit,
        } => tracing::info!(peer = %from, pes, pages, removed, audit, "handle table synchronised"),
        Event::TakenOver {
            target,
            winner,
            pes,
        } => {
            tracing::warn!(%target, %winner, pes, "registrar taken over: its PEs are homed at the winner")
        }
        Event::Malformed {
            conn,
            identity,
            error,
        } => log.write(
            "malformed message",
            LogSource::Identity(identity.as_str().into()),
            || tracing::warn!(conn = conn.get(), %identity, %error, "malformed message"),
        ),
    }
}
