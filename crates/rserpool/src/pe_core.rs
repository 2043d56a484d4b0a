//! The pool element's ASAP state machine, sans-IO (RFC 5352 sections 3.1,
//! 3.2, 3.4, 3.6 and 3.7): registration with T2-registration,
//! re-registration with T4-reregistration, keep-alive answers and
//! re-homing on the H flag, deregistration with T3-deregistration, and
//! the server hunt when the home registrar is lost. Time is an input;
//! sockets are the driver's ([`crate::PoolElement`]).
//!
//! Home changes (KA2.4) are accepted only from the registrar at the other
//! end of the PE's own registrar connection, and in secure mode
//! ([`HomeTrust::Authenticated`]) only when that connection is TLS with an
//! authenticated registrar identity (RFC 5355 2.6, DESIGN section 4: "a PE
//! switches home registrar only for an authenticated registrar of its
//! operational scope"). Keep-alives anywhere else are not ours to answer,
//! and announcements ([`PeCore::handle_datagram`]) only add addresses to
//! try: neither moves the home. Refusals are counted and their warnings
//! limited.
//!
//! Several PEs may share the core and its one registrar connection; a
//! keep-alive without a PE identifier is answered for each of them in
//! its pool.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use rserpool_wire::{
    AsapMessage, CauseCode, OperationError, PeId, PoolElement, PoolHandle, ServerId, Transport,
    TransportUse,
};

use crate::announce::{AnnounceStats, Announcements, LogBudget};
use crate::config::{check_lifetime, reregistration_interval, AnnounceConfig, Timers};
use crate::error::{ClientError, ConnectFailure, RefusalDetail, RegistrarFailure};
use crate::hunt::Hunter;
use crate::inbound::{take_frame, Inbound};
use crate::standby::Standby;
use crate::{ConnId, Connected, Discovery, LinkAction, LinkSecurity};

/// Which registrar connections may change a PE's home registrar with a
/// keep-alive carrying the H flag (RFC 5352 3.4 KA2.4). Whatever the
/// setting, only the PE's own registrar connection counts (a keep-alive
/// on any other connection, or on the announce channel, is ignored).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum HomeTrust {
    /// The insecure lab mode: the registrar of the current connection,
    /// authenticated or not (the default of a bare core; the driver sets
    /// [`HomeTrust::Authenticated`] whenever it runs TLS).
    #[default]
    ConnectedRegistrar,
    /// Secure mode: only a connection whose TLS handshake authenticated
    /// the registrar (its certificate named the registrar endpoint the
    /// hunt connected to, or it proved the PE's pre-shared key). A plain
    /// connection cannot move the home (RFC 5355 2.6, 2.15).
    Authenticated,
}

/// What a pool element registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolElementSpec {
    /// The pool to join.
    pub pool_handle: PoolHandle,
    /// Selection policy and its value for this PE (RFC 5352 3.1 R2.5).
    pub policy: rserpool_wire::Policy,
    /// The TCP port PUs reach the PE at.
    pub port: u16,
    /// Whether ASAP control messages share the data channel (the pool's
    /// setting must be followed, R2.4); data only by default.
    pub transport_use: TransportUse,
    /// The PE identifier; `None` for a random non-zero one (R2.2). It
    /// stays the same on every re-registration.
    pub identifier: Option<PeId>,
    /// Registration lifetime; `None` for the configured default.
    pub lifetime: Option<Duration>,
    /// The address PUs reach the PE at; `None` for this end's address on
    /// the registrar connection (the registrar refuses other addresses
    /// unless its authorisation database allows them).
    pub address: Option<IpAddr>,
}

impl PoolElementSpec {
    /// A data-only TCP PE at `port` with a random identifier, this end's
    /// address and the default lifetime.
    pub fn new(pool_handle: PoolHandle, policy: rserpool_wire::Policy, port: u16) -> Self {
        PoolElementSpec {
            pool_handle,
            policy,
            port,
            transport_use: TransportUse::DataOnly,
            identifier: None,
            lifetime: None,
            address: None,
        }
    }
}

/// What happened to a pool element.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeEvent {
    /// A registrar confirmed the registration over a connection for the
    /// first time (routine T4 re-registrations are not reported).
    Registered {
        /// The PE.
        identifier: PeId,
        /// The registrar.
        registrar: SocketAddr,
        /// Its server identifier, once a keep-alive told it.
        home_server_id: Option<ServerId>,
    },
    /// A registrar refused the registration (RFC 5352 3.1). Unless the
    /// cause is lack of resources on a re-registration (then it is tried
    /// again after T2), the PE is given up.
    RegistrationRefused {
        /// The PE.
        identifier: PeId,
        /// The registrar.
        registrar: SocketAddr,
        /// The first cause it gave.
        cause: CauseCode,
        /// What that cause said about the pool (its policy or transport,
        /// RFC 5354 3.12.6 and 3.12.8), if anything.
        detail: Option<RefusalDetail>,
    },
    /// A PE that was never registered gave up after MAX-REG-ATTEMPT
    /// failures (RFC 5352 3.1).
    RegistrationFailed {
        /// The PE.
        identifier: PeId,
        /// The last failure.
        error: ClientError,
    },
    /// The connection to the registrar was lost or given up; a server
    /// hunt follows if any PE still needs a registrar.
    RegistrarLost {
        /// The registrar.
        registrar: SocketAddr,
        /// Why.
        reason: String,
    },
    /// A full pass of the server hunt failed; the hunt goes on with T5
    /// back-off.
    NoRegistrar {
        /// Each registrar's last failure.
        failures: Vec<RegistrarFailure>,
    },
    /// A keep-alive with the H flag made its sender the home registrar
    /// (RFC 5352 3.4 KA2.4).
    Rehomed {
        /// The registrar connection it came over.
        registrar: SocketAddr,
        /// The new home's server identifier.
        server_id: ServerId,
    },
    /// The registrar removed the PE by itself (an unsolicited
    /// ASAP_DEREGISTRATION_RESPONSE, RFC 5352 3.2); it registers again.
    RemovedByRegistrar {
        /// The PE.
        identifier: PeId,
        /// The registrar.
        registrar: SocketAddr,
    },
    /// The PE's deregistration finished: confirmed (`error` is `None`),
    /// refused, or not answered within T3. The PE is gone from the core.
    Deregistered {
        /// The PE.
        identifier: PeId,
        /// What went wrong, if anything.
        error: Option<ClientError>,
    },
}

/// What the core asks of its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeOutput {
    /// Connect, send or close on the registrar link; a connection attempt
    /// is answered with [`PeCore::handle_connected`] or
    /// [`PeCore::handle_connect_failed`].
    Link(LinkAction),
    /// Tell the application.
    Event(PeEvent),
}

impl From<LinkAction> for PeOutput {
    fn from(a: LinkAction) -> Self {
        PeOutput::Link(a)
    }
}

/// A pool element's registration state, as the application may watch it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeStatus {
    /// Whether the current registrar confirmed the registration.
    pub registered: bool,
    /// The registrar connected to, if any.
    pub registrar: Option<SocketAddr>,
    /// The home registrar's server identifier, once known.
    pub home_server_id: Option<ServerId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Wants to be registered; waits for a connection.
    Pending,
    /// ASAP_REGISTRATION sent; T2 runs.
    Registering { conn: ConnId, deadline: Instant },
    /// Registered; T4 runs.
    Registered {
        conn: ConnId,
        reregister_at: Instant,
    },
    /// Refused for lack of resources after having been registered: try
    /// again at `until`.
    Backoff { until: Instant },
    /// Leaving: ASAP_DEREGISTRATION sent on `conn` (or to be sent once
    /// connected); given up at `deadline` (T3).
    Deregistering {
        conn: Option<ConnId>,
        deadline: Instant,
    },
}

#[derive(Debug, Clone)]
struct Element {
    pool_handle: PoolHandle,
    identifier: PeId,
    policy: rserpool_wire::Policy,
    port: u16,
    transport_use: TransportUse,
    address: Option<IpAddr>,
    lifetime: Duration,
    state: State,
    /// The connection over which a registration was last confirmed.
    registered_on: Option<ConnId>,
    ever_registered: bool,
    /// Failed attempts since the last success (MAX-REG-ATTEMPT).
    attempts: u32,
}

impl Element {
    /// Whether the registrar may hold a registration of it.
    fn may_be_registered(&self) -> bool {
        self.ever_registered || matches!(self.state, State::Registering { .. })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// No connection (the hunter may be making one).
    Down,
    Up {
        conn: ConnId,
        registrar: SocketAddr,
        local: IpAddr,
        home: Option<ServerId>,
        /// Frames on it that did not decode.
        malformed: u32,
        /// Whether its TLS handshake authenticated the registrar.
        authenticated: bool,
    },
}

/// The pool element core.
#[derive(Debug)]
pub struct PeCore {
    timers: Timers,
    default_lifetime: Duration,
    rng: SmallRng,
    elements: Vec<Element>,
    link: Link,
    hunter: Hunter,
    outputs: VecDeque<PeOutput>,
    home_trust: HomeTrust,
    announcements: Announcements,
    /// Home changes refused (KA2.4 from an untrusted connection).
    home_refused: u64,
    home_log: LogBudget,
    /// The second registrar connection (module `standby`), made only
    /// when `standby_on`.
    standby: Standby,
    standby_on: bool,
}

impl PeCore {
    /// A core that hunts over `registrars` (in this order), with these
    /// timers and default registration lifetime; `seed` seeds the PE
    /// identifiers it draws.
    pub fn new(
        registrars: Vec<SocketAddr>,
        timers: Timers,
        default_lifetime: Duration,
        seed: u64,
    ) -> Self {
        PeCore {
            hunter: Hunter::new(registrars, &timers),
            timers,
            default_lifetime,
            rng: SmallRng::seed_from_u64(seed),
            elements: Vec::new(),
            link: Link::Down,
            outputs: VecDeque::new(),
            home_trust: HomeTrust::default(),
            announcements: Announcements::new(),
            home_refused: 0,
            home_log: LogBudget::new("refused home changes", 5, Duration::from_secs(60)),
            standby: Standby::new(timers.t5_server_hunt, timers.connect_timeout),
            standby_on: false,
        }
    }

    /// Whether to keep a standby link to a second registrar of the list
    /// (docs/tcp-mapping.md): off in a bare core, on in the driver unless
    /// its configuration says otherwise. Turning it off closes the link.
    pub fn set_standby(&mut self, on: bool) {
        self.standby_on = on;
        if !on {
            self.standby.drop_link(&mut self.outputs);
        }
    }

    /// The registrar of the standby link, while it is up.
    pub fn standby_registrar(&self) -> Option<SocketAddr> {
        self.standby.registrar()
    }

    /// Which connections may change the home registrar (KA2.4).
    pub fn set_home_trust(&mut self, trust: HomeTrust) {
        self.home_trust = trust;
    }

    /// Learn registrars from ASAP_SERVER_ANNOUNCE as `config` says (RFC
    /// 5352 3.6); the driver then gives the datagrams of the group to
    /// [`PeCore::handle_datagram`].
    pub fn enable_announcements(&mut self, config: &AnnounceConfig) {
        self.announcements.enable(config, &mut self.hunter);
    }

    /// A datagram arrived from `from` on the announce group: an
    /// ASAP_SERVER_ANNOUNCE adds its registrar to the list (bounded, see
    /// [`crate::registrars`]); anything else, or what does not decode, is
    /// dropped and counted. Never changes the home registrar or the
    /// connection in use.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let added = self
            .announcements
            .handle_datagram(now, from, bytes, &mut self.hunter);
        self.after_learning(now, added);
    }

    /// A decoded message arrived from `from` on the announce group (as
    /// [`PeCore::handle_datagram`]).
    pub fn handle_announcement(&mut self, now: Instant, from: SocketAddr, message: AsapMessage) {
        let added = self
            .announcements
            .handle_message(now, from, message, &mut self.hunter);
        self.after_learning(now, added);
    }

    /// A hunt waiting for T5 tries a newly learned registrar at once (it
    /// has not been tried this round).
    fn after_learning(&mut self, now: Instant, added: bool) {
        if added {
            if let Some(pass) = self.hunter.wake(now, &mut self.outputs) {
                self.hunt_pass_failed(now, &pass);
            }
        }
    }

    /// The announce channel's counters.
    pub fn announce_stats(&self) -> AnnounceStats {
        self.announcements.stats(&self.hunter)
    }

    /// Keep-alives with the H flag that did not move the home because
    /// their connection is not trusted for it ([`HomeTrust`]).
    pub fn home_changes_refused(&self) -> u64 {
        self.home_refused
    }

    /// The registrar list (configured, then learned) and the counters.
    pub fn discovery(&self) -> Discovery {
        Discovery {
            registrars: self.hunter.entries(),
            stats: self.announcements.stats(&self.hunter),
            home_changes_refused: self.home_refused,
        }
    }

    /// Add a PE and start registering it (RFC 5352 3.1). Returns its
    /// identifier.
    pub fn add_element(
        &mut self,
        now: Instant,
        spec: PoolElementSpec,
    ) -> Result<PeId, ClientError> {
        let lifetime = spec.lifetime.unwrap_or(self.default_lifetime);
        check_lifetime(lifetime)?;
        let identifier = match spec.identifier {
            Some(id) if id.get() == 0 => {
                return Err(ClientError::Config("a PE identifier cannot be 0".into()))
            }
            Some(id) if self.find(id).is_some() => {
                return Err(ClientError::Config(format!(
                    "PE identifier {id:#010x} is used twice"
                )))
            }
            Some(id) => id,
            // RFC 5352 3.1 R2.2: a good random number, non-zero here.
            None => loop {
                let id = PeId::new(self.rng.random::<u32>());
                if id.get() != 0 && self.find(id).is_none() {
                    break id;
                }
            },
        };
        self.elements.push(Element {
            pool_handle: spec.pool_handle,
            identifier,
            policy: spec.policy,
            port: spec.port,
            transport_use: spec.transport_use,
            address: spec.address,
            lifetime,
            state: State::Pending,
            registered_on: None,
            ever_registered: false,
            attempts: 0,
        });
        let i = self.elements.len() - 1;
        if matches!(self.link, Link::Up { .. }) {
            self.register(now, i);
        } else {
            self.hunt_if_needed(now);
        }
        Ok(identifier)
    }

    /// Re-register PE `identifier` with a new policy value at once (RFC
    /// 5352 3.1: a registered PE may re-register to update it).
    pub fn update_policy(
        &mut self,
        now: Instant,
        identifier: PeId,
        policy: rserpool_wire::Policy,
    ) -> Result<(), ClientError> {
        let i = self
            .find(identifier)
            .ok_or_else(|| ClientError::Config(format!("no PE {identifier:#010x}")))?;
        let e = &mut self.elements[i];
        if matches!(e.state, State::Deregistering { .. }) {
            return Err(ClientError::Config(format!(
                "PE {identifier:#010x} is deregistering"
            )));
        }
        e.policy = policy;
        if matches!(e.state, State::Backoff { .. }) {
            return Ok(());
        }
        e.state = State::Pending;
        if matches!(self.link, Link::Up { .. }) {
            self.register(now, i);
        }
        Ok(())
    }

    /// Deregister PE `identifier` (RFC 5352 3.2). The outcome comes as a
    /// [`PeEvent::Deregistered`].
    pub fn deregister(&mut self, now: Instant, identifier: PeId) {
        let Some(i) = self.find(identifier) else {
            return;
        };
        let e = &self.elements[i];
        if matches!(e.state, State::Deregistering { .. }) {
            return;
        }
        if !e.may_be_registered() {
            self.remove(i, None);
            return;
        }
        let deadline = now + self.timers.t3_deregistration;
        match self.link {
            Link::Up { conn, .. } => self.send_deregistration(i, conn, deadline),
            _ => {
                self.elements[i].state = State::Deregistering {
                    conn: None,
                    deadline,
                };
                self.hunt_if_needed(now);
            }
        }
    }

    /// Send PE `i`'s ASAP_DEREGISTRATION on `conn`; its answer is due by
    /// `deadline` (T3).
    fn send_deregistration(&mut self, i: usize, conn: ConnId, deadline: Instant) {
        let e = &mut self.elements[i];
        e.state = State::Deregistering {
            conn: Some(conn),
            deadline,
        };
        let message = AsapMessage::Deregistration {
            pool_handle: e.pool_handle.clone(),
            identifier: e.identifier,
        };
        self.outputs
            .push_back(LinkAction::Send { conn, message }.into());
    }

    /// Deregister every PE.
    pub fn deregister_all(&mut self, now: Instant) {
        let ids: Vec<PeId> = self.elements.iter().map(|e| e.identifier).collect();
        for id in ids {
            self.deregister(now, id);
        }
    }

    /// The driver made connection `conn`, which the core asked for
    /// ([`LinkAction::Connect`]). A connection the core no longer wants
    /// is closed.
    pub fn handle_connected(&mut self, now: Instant, conn: ConnId, connected: Connected) {
        if self.standby.is(conn) {
            return self.standby_connected(now, conn, connected);
        }
        let Some(registrar) = self.hunter.connected(conn) else {
            self.outputs.push_back(LinkAction::Close { conn }.into());
            return;
        };
        if let Link::Up { conn: old, .. } = self.link {
            self.outputs
                .push_back(LinkAction::Close { conn: old }.into());
        }
        if self.elements.is_empty() {
            self.outputs.push_back(LinkAction::Close { conn }.into());
            self.link = Link::Down;
            return;
        }
        tracing::info!(%registrar, security = %connected.security, "connected to a registrar");
        self.link = Link::Up {
            conn,
            registrar,
            local: connected.local.ip(),
            home: None,
            malformed: 0,
            authenticated: matches!(connected.security, LinkSecurity::Tls { .. }),
        };
        if self.standby.registrar() == Some(registrar) {
            // The hunt reached the standby registrar: one link to it is
            // enough; another registrar stands by.
            self.standby.drop_link(&mut self.outputs);
        }
        self.use_link(now, conn);
    }

    /// Send what waited for a registrar connection over `conn`, the new
    /// one: registrations, deregistrations.
    fn use_link(&mut self, now: Instant, conn: ConnId) {
        for i in 0..self.elements.len() {
            match self.elements[i].state {
                State::Deregistering {
                    conn: None,
                    deadline,
                } => self.send_deregistration(i, conn, deadline),
                State::Pending | State::Registering { .. } | State::Registered { .. } => {
                    self.register(now, i)
                }
                State::Backoff { .. } | State::Deregistering { .. } => {}
            }
        }
    }

    /// Connection `conn` ended (closed by the registrar, an I/O error).
    pub fn handle_disconnected(&mut self, now: Instant, conn: ConnId, reason: &str) {
        if self.standby.failed(now, conn) {
            tracing::info!("standby link lost: {reason}");
            return;
        }
        if let Link::Up { conn: c, .. } = self.link {
            if c == conn {
                self.lose_registrar(now, reason.to_owned(), false);
            }
        }
    }

    /// The driver could not make connection `conn` (RFC 5352 3.6 SH4):
    /// the hunt tries the next registrar.
    pub fn handle_connect_failed(&mut self, now: Instant, conn: ConnId, failure: ConnectFailure) {
        if self.standby.failed(now, conn) {
            tracing::debug!("no standby link: {}", failure.reason);
            return;
        }
        if let Some(pass) = self
            .hunter
            .connect_failed(now, conn, failure, &mut self.outputs)
        {
            self.hunt_pass_failed(now, &pass);
        }
    }

    /// A pass of the server hunt failed. PEs that were never registered
    /// count it as a failed attempt; the hunt goes on while any PE needs
    /// a registrar.
    fn hunt_pass_failed(&mut self, now: Instant, failures: &[RegistrarFailure]) {
        tracing::warn!(
            "no registrar reachable: {}",
            failures
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        );
        self.outputs
            .push_back(PeOutput::Event(PeEvent::NoRegistrar {
                failures: failures.to_vec(),
            }));
        let error = ClientError::NoRegistrar(failures.to_vec());
        self.count_failed_attempt(&error);
        self.hunt_if_needed(now);
    }

    /// A frame arrived on connection `conn` (one ASAP message, as
    /// [`rserpool_wire::framing::ChannelCodec`] cuts them). What does not
    /// decode is reported and skipped; a registrar that keeps sending
    /// such frames is given up (module `inbound`).
    pub fn handle_frame(&mut self, now: Instant, conn: ConnId, frame: &[u8]) {
        if self.standby.is(conn) {
            return self.standby_frame(now, conn, frame);
        }
        let Link::Up {
            conn: current,
            registrar,
            ref mut malformed,
            ..
        } = self.link
        else {
            return;
        };
        if conn != current {
            // Not the PE's registrar connection (one given up): only
            // looked at for a home change to refuse.
            if let Ok(d) = AsapMessage::decode(frame) {
                self.refuse_foreign(now, conn, &d.message);
            }
            return;
        }
        match take_frame(conn, registrar, frame, malformed, &mut self.outputs) {
            Inbound::Message(m) => self.handle_message(now, conn, m),
            Inbound::Skipped => {}
            Inbound::GiveUp(reason) => self.lose_registrar(now, reason, false),
        }
    }

    /// A message arrived on connection `conn`.
    pub fn handle_message(&mut self, now: Instant, conn: ConnId, message: AsapMessage) {
        if self.standby.is(conn) {
            return self.standby_message(now, conn, message);
        }
        let Link::Up {
            conn: current,
            registrar,
            ..
        } = self.link
        else {
            self.refuse_foreign(now, conn, &message);
            return;
        };
        if conn != current {
            self.refuse_foreign(now, conn, &message);
            return;
        }
        self.hunter.heard(&message);
        match message {
            AsapMessage::RegistrationResponse {
                reject,
                pool_handle,
                identifier,
                error,
            } => self.on_registration_response(
                now,
                conn,
                registrar,
                reject,
                &pool_handle,
                identifier,
                error,
            ),
            AsapMessage::DeregistrationResponse {
                pool_handle,
                identifier,
                error,
            } => self.on_deregistration_response(now, registrar, &pool_handle, identifier, error),
            AsapMessage::EndpointKeepAlive {
                home,
                server_id,
                pool_handle,
                identifier,
            } => self.on_keep_alive(now, conn, home, server_id, &pool_handle, identifier),
            AsapMessage::Error { error } => {
                // Before any answer, the hunter keeps it as the reason of
                // the close it announces ([`Hunter::heard`]).
                let text = crate::error::describe_operation_error(&error);
                tracing::warn!(%registrar, "registrar reports an error: {text}");
            }
            other => {
                tracing::debug!(%registrar, "ignoring unexpected {}", other.name());
            }
        }
    }

    /// Timers: T2, T3, T4, the back-off after a refusal and the server
    /// hunt's.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.announcements.expire(now, &mut self.hunter);
        if let Some(pass) = self.hunter.handle_timeout(now, &mut self.outputs) {
            self.hunt_pass_failed(now, &pass);
        }
        // T3: deregistrations not answered in time are given up.
        let mut i = 0;
        while i < self.elements.len() {
            match self.elements[i].state {
                State::Deregistering { deadline, .. } if deadline <= now => {
                    let id = self.elements[i].identifier;
                    tracing::warn!("PE {id:#010x}: no deregistration response within T3");
                    self.remove(
                        i,
                        Some(ClientError::Timeout {
                            operation: "deregistration",
                            registrars: self.registrar().into_iter().collect(),
                        }),
                    );
                }
                _ => i += 1,
            }
        }
        // T2: the registrar does not answer; RFC 5352 3.1: server hunt.
        let t2_expired = self
            .elements
            .iter()
            .any(|e| matches!(e.state, State::Registering { deadline, .. } if deadline <= now));
        if t2_expired {
            let reason = format!(
                "no ASAP_REGISTRATION_RESPONSE within T2 ({:?})",
                self.timers.t2_registration
            );
            self.lose_registrar(now, reason, true);
        }
        for i in 0..self.elements.len() {
            match self.elements[i].state {
                State::Backoff { until } if until <= now => {
                    self.elements[i].state = State::Pending;
                    if matches!(self.link, Link::Up { .. }) {
                        self.register(now, i);
                    }
                }
                // T4: re-register (RFC 5352 3.1).
                State::Registered { reregister_at, .. } if reregister_at <= now => {
                    self.register(now, i);
                }
                _ => {}
            }
        }
        self.hunt_if_needed(now);
        self.tend_standby(now);
    }

    /// The earliest deadline the driver must wake for.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let hunt = self.hunter.poll_timeout();
        self.elements
            .iter()
            .filter_map(|e| match e.state {
                State::Registering { deadline, .. } | State::Deregistering { deadline, .. } => {
                    Some(deadline)
                }
                State::Registered { reregister_at, .. } => Some(reregister_at),
                State::Backoff { until } => Some(until),
                State::Pending => None,
            })
            .chain(hunt)
            .chain(self.standby.poll_timeout())
            .min()
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<PeOutput> {
        self.outputs.pop_front()
    }

    /// Whether no PE is left (all deregistered, refused or given up).
    pub fn is_finished(&self) -> bool {
        self.elements.is_empty()
    }

    /// The registrar connected to.
    pub fn registrar(&self) -> Option<SocketAddr> {
        match self.link {
            Link::Up { registrar, .. } => Some(registrar),
            _ => None,
        }
    }

    /// The home registrar's server identifier, once a keep-alive told it.
    pub fn home_server_id(&self) -> Option<ServerId> {
        match self.link {
            Link::Up { home, .. } => home,
            _ => None,
        }
    }

    /// The state of PE `identifier`; `None` if it is gone.
    pub fn status(&self, identifier: PeId) -> Option<PeStatus> {
        let e = &self.elements[self.find(identifier)?];
        let registered = match (self.link, e.registered_on) {
            (Link::Up { conn, .. }, Some(on)) => {
                conn == on && !matches!(e.state, State::Deregistering { .. })
            }
            _ => false,
        };
        Some(PeStatus {
            registered,
            registrar: self.registrar(),
            home_server_id: self.home_server_id(),
        })
    }

    /// The identifiers of the PEs.
    pub fn identifiers(&self) -> impl Iterator<Item = PeId> + '_ {
        self.elements.iter().map(|e| e.identifier)
    }

    fn find(&self, identifier: PeId) -> Option<usize> {
        self.elements
            .iter()
            .position(|e| e.identifier == identifier)
    }

    fn find_in(&self, pool_handle: &PoolHandle, identifier: PeId) -> Option<usize> {
        self.elements
            .iter()
            .position(|e| e.identifier == identifier && &e.pool_handle == pool_handle)
    }

    fn remove(&mut self, i: usize, error: Option<ClientError>) {
        let e = self.elements.remove(i);
        self.outputs
            .push_back(PeOutput::Event(PeEvent::Deregistered {
                identifier: e.identifier,
                error,
            }));
        self.close_if_finished();
    }

    fn give_up(&mut self, i: usize, event: PeEvent) {
        self.elements.remove(i);
        self.outputs.push_back(PeOutput::Event(event));
        self.close_if_finished();
    }

    fn close_if_finished(&mut self) {
        if !self.elements.is_empty() {
            return;
        }
        if let Link::Up { conn, .. } = self.link {
            self.outputs.push_back(LinkAction::Close { conn }.into());
        }
        self.link = Link::Down;
        self.hunter.stop(false, &mut self.outputs);
        self.standby.drop_link(&mut self.outputs);
    }

    /// Send ASAP_REGISTRATION for element `i` (RFC 5352 3.1 R2-R4).
    fn register(&mut self, now: Instant, i: usize) {
        let Link::Up {
            conn, local, home, ..
        } = self.link
        else {
            self.elements[i].state = State::Pending;
            return;
        };
        let e = &mut self.elements[i];
        let message = AsapMessage::Registration {
            pool_handle: e.pool_handle.clone(),
            pool_element: PoolElement {
                identifier: e.identifier,
                home_registrar: home.unwrap_or(ServerId::UNDETERMINED),
                // Milliseconds, as RSPLIB sends (checked to fit on entry).
                registration_life: i32::try_from(e.lifetime.as_millis()).unwrap_or(i32::MAX),
                user_transport: Transport::Tcp {
                    port: e.port,
                    transport_use: e.transport_use,
                    address: e.address.unwrap_or(local),
                },
                policy: e.policy.clone(),
                asap_transport: None,
            },
        };
        e.state = State::Registering {
            conn,
            deadline: now + self.timers.t2_registration,
        };
        self.outputs
            .push_back(LinkAction::Send { conn, message }.into());
    }

    /// The home registrar is lost or given up: close, tell, and hunt (RFC
    /// 5352 3.6: a PE that fails to communicate with its home registrar
    /// must establish a new one). `registration_timeout` when T2 expired,
    /// which counts as a failed attempt.
    fn lose_registrar(&mut self, now: Instant, reason: String, registration_timeout: bool) {
        let Link::Up {
            conn, registrar, ..
        } = self.link
        else {
            return;
        };
        let answered = !self.hunter.awaiting_answer();
        let reason = self.hunter.close_reason(&reason);
        tracing::warn!(%registrar, "registrar lost: {reason}");
        self.outputs.push_back(LinkAction::Close { conn }.into());
        self.outputs
            .push_back(PeOutput::Event(PeEvent::RegistrarLost {
                registrar,
                reason: reason.clone(),
            }));
        self.link = Link::Down;
        for e in &mut self.elements {
            e.state = match e.state {
                State::Registering { .. } | State::Registered { .. } => State::Pending,
                State::Deregistering { deadline, .. } => State::Deregistering {
                    conn: None,
                    deadline,
                },
                s => s,
            };
        }
        if registration_timeout {
            // T2: the registrar took the connection and stayed silent;
            // the registration failed (counted below), the connection
            // itself was made.
            self.hunter.confirmed();
        } else if !answered {
            // RFC 5352 3.6 SH4: closed before any answer is a failed
            // attempt of the hunt (the next registrar, or T5), not a
            // connection: a registrar that refuses the client at once is
            // not reconnected to at once, for ever.
            let failure = crate::error::ConnectFailure::new(reason, None);
            if let Some(pass) = self.hunter.lost_unconfirmed(failure) {
                return self.hunt_pass_failed(now, &pass);
            }
        }
        if registration_timeout {
            let error = ClientError::Timeout {
                operation: "registration",
                registrars: vec![registrar],
            };
            self.count_failed_attempt(&error);
        }
        self.hunt_if_needed(now);
    }

    /// A registration attempt of every waiting PE failed; PEs that were
    /// never registered give up after MAX-REG-ATTEMPT (RFC 5352 3.1).
    fn count_failed_attempt(&mut self, error: &ClientError) {
        let mut i = 0;
        while i < self.elements.len() {
            let e = &mut self.elements[i];
            if e.state == State::Pending {
                e.attempts += 1;
                if !e.ever_registered && e.attempts >= self.timers.max_reg_attempts {
                    let identifier = e.identifier;
                    tracing::warn!(
                        "PE {identifier:#010x}: giving up after {} attempts: {error}",
                        e.attempts
                    );
                    self.give_up(
                        i,
                        PeEvent::RegistrationFailed {
                            identifier,
                            error: error.clone(),
                        },
                    );
                    continue;
                }
            }
            i += 1;
        }
    }

    /// With no registrar connection and PEs waiting for one: the standby
    /// link becomes the registrar connection if it is up (no hunt needed),
    /// else the server hunt runs (RFC 5352 3.6).
    fn hunt_if_needed(&mut self, now: Instant) {
        if self.link != Link::Down {
            return;
        }
        let needed = self.elements.iter().any(|e| {
            matches!(
                e.state,
                State::Pending | State::Deregistering { conn: None, .. }
            )
        });
        if !needed {
            return;
        }
        if self.standby.up().is_some() {
            self.hunter.stop(false, &mut self.outputs);
            return self.adopt_standby(now, None);
        }
        if self.hunter.is_active() {
            return;
        }
        if let Some(pass) = self.hunter.start(now, &mut self.outputs) {
            self.hunt_pass_failed(now, &pass);
        }
    }

    // ----- the standby link (module `standby`) ------------------------------

    /// Make the standby link if the PEs have a registrar and one of them
    /// is registered; name the PEs on it when it is time.
    fn tend_standby(&mut self, now: Instant) {
        if self.standby.refresh_due(now, &mut self.outputs) {
            self.name_on_standby(None);
        }
        let Link::Up { registrar, .. } = self.link else {
            return;
        };
        if !self.standby_on || !self.elements.iter().any(|e| e.ever_registered) {
            return;
        }
        let registrars = self.hunter.registrars();
        let hunter = &mut self.hunter;
        self.standby.start(
            now,
            registrar,
            &registrars,
            || hunter.allocate_conn(),
            &mut self.outputs,
        );
    }

    /// Name the PEs (`only` one, or all that are registered) on the
    /// standby link: an ASAP_ENDPOINT_KEEP_ALIVE_ACK each, which tells its
    /// registrar where to call them home.
    fn name_on_standby(&mut self, only: Option<usize>) {
        let Some(up) = self.standby.up() else {
            return;
        };
        for (i, e) in self.elements.iter().enumerate() {
            if only.is_some_and(|o| o != i)
                || !e.ever_registered
                || matches!(e.state, State::Deregistering { .. })
            {
                continue;
            }
            self.outputs.push_back(
                LinkAction::Send {
                    conn: up.conn,
                    message: AsapMessage::EndpointKeepAliveAck {
                        pool_handle: e.pool_handle.clone(),
                        identifier: e.identifier,
                    },
                }
                .into(),
            );
        }
    }

    fn standby_connected(&mut self, now: Instant, conn: ConnId, connected: Connected) {
        let authenticated = matches!(connected.security, LinkSecurity::Tls { .. });
        let Some(registrar) =
            self.standby
                .connected(now, conn, connected.local.ip(), authenticated)
        else {
            return;
        };
        if self.elements.is_empty() || self.registrar() == Some(registrar) {
            // Nothing to stand by for, or it became the registrar meanwhile.
            return self.standby.drop_link(&mut self.outputs);
        }
        tracing::info!(%registrar, security = %connected.security, "standby link up");
        self.tend_standby(now);
    }

    /// A frame on the standby link: keep-alives are answered, and one
    /// with the H flag from a trusted link calls the PEs home to it.
    fn standby_frame(&mut self, now: Instant, conn: ConnId, frame: &[u8]) {
        let Some(up) = self.standby.up() else {
            return;
        };
        let Some(malformed) = self.standby.malformed_mut() else {
            return;
        };
        match take_frame(conn, up.registrar, frame, malformed, &mut self.outputs) {
            Inbound::Message(m) => self.standby_message(now, conn, m),
            Inbound::Skipped => {}
            Inbound::GiveUp(reason) => {
                tracing::warn!(registrar = %up.registrar, "standby link given up: {reason}");
                self.outputs.push_back(LinkAction::Close { conn }.into());
                self.standby.failed(now, conn);
            }
        }
    }

    /// A message on the standby link.
    fn standby_message(&mut self, now: Instant, conn: ConnId, message: AsapMessage) {
        let Some(up) = self.standby.up() else {
            return;
        };
        let AsapMessage::EndpointKeepAlive {
            home,
            server_id,
            pool_handle,
            identifier,
        } = message
        else {
            tracing::debug!(registrar = %up.registrar, "ignoring {} on the standby link", message.name());
            return;
        };
        let ours: Vec<AsapMessage> = self
            .elements
            .iter()
            .filter(|e| e.pool_handle == pool_handle)
            .filter(|e| identifier.map_or(true, |id| id == e.identifier))
            .map(|e| AsapMessage::EndpointKeepAliveAck {
                pool_handle: e.pool_handle.clone(),
                identifier: e.identifier,
            })
            .collect();
        if ours.is_empty() {
            // KA1: not a pool of ours.
            return;
        }
        for message in ours {
            self.outputs
                .push_back(LinkAction::Send { conn, message }.into());
        }
        if !home || self.home_server_id() == Some(server_id) {
            return;
        }
        let trusted = match self.home_trust {
            HomeTrust::ConnectedRegistrar => true,
            HomeTrust::Authenticated => up.authenticated,
        };
        if !trusted {
            self.home_refused += 1;
            if self.home_log.allow(now) {
                tracing::warn!(registrar = %up.registrar, "refusing a home change to registrar {server_id:#010x}: the standby link is not authenticated");
            }
            return;
        }
        // KA2.4 over TCP: the registrar that took the home over calls the
        // PEs to it; they register over this link, which becomes their
        // registrar connection.
        tracing::info!(registrar = %up.registrar, "re-homed to registrar {server_id:#010x} over the standby link");
        if let Link::Up { conn: old, .. } = self.link {
            self.outputs
                .push_back(LinkAction::Close { conn: old }.into());
            self.link = Link::Down;
        }
        self.outputs.push_back(PeOutput::Event(PeEvent::Rehomed {
            registrar: up.registrar,
            server_id,
        }));
        self.hunter.stop(false, &mut self.outputs);
        self.adopt_standby(now, Some(server_id));
    }

    /// The standby link becomes the registrar connection (the old one is
    /// closed or lost): every PE registers over it.
    fn adopt_standby(&mut self, now: Instant, home: Option<ServerId>) {
        let Some(up) = self.standby.take() else {
            return;
        };
        if home.is_none() {
            tracing::info!(registrar = %up.registrar, "registering over the standby link");
        }
        self.link = Link::Up {
            conn: up.conn,
            registrar: up.registrar,
            local: up.local,
            home,
            malformed: 0,
            authenticated: up.authenticated,
        };
        for e in &mut self.elements {
            e.state = match e.state {
                State::Registering { .. } | State::Registered { .. } => State::Pending,
                // A deregistration sent to the old registrar goes again.
                State::Deregistering { deadline, .. } => State::Deregistering {
                    conn: None,
                    deadline,
                },
                s => s,
            };
        }
        self.use_link(now, up.conn);
    }

    #[allow(clippy::too_many_arguments)]
    fn on_registration_response(
        &mut self,
        now: Instant,
        conn: ConnId,
        registrar: SocketAddr,
        reject: bool,
        pool_handle: &PoolHandle,
        identifier: PeId,
        error: Option<OperationError>,
    ) {
        let Some(i) = self.find_in(pool_handle, identifier) else {
            tracing::debug!(%registrar, "registration response for an unknown PE {identifier:#010x}");
            return;
        };
        if !matches!(self.elements[i].state, State::Registering { conn: c, .. } if c == conn) {
            tracing::debug!(%registrar, "unexpected registration response for PE {identifier:#010x}");
            return;
        }
        let first = error.as_ref().and_then(|e| e.causes.first());
        let cause = first.map(|c| c.code);
        if !reject {
            if let Some(c) = cause {
                tracing::warn!(%registrar, "PE {identifier:#010x} registered with a warning: {c}");
            }
            let home_server_id = self.home_server_id();
            let e = &mut self.elements[i];
            e.attempts = 0;
            e.ever_registered = true;
            e.state = State::Registered {
                conn,
                reregister_at: now + reregistration_interval(e.lifetime),
            };
            if e.registered_on != Some(conn) {
                e.registered_on = Some(conn);
                tracing::info!(%registrar, "PE {identifier:#010x} registered in pool {pool_handle}");
                self.outputs.push_back(PeOutput::Event(PeEvent::Registered {
                    identifier,
                    registrar,
                    home_server_id,
                }));
            }
            // Every (re-)registration names the PE on the standby link
            // again, which keeps it known there.
            self.name_on_standby(Some(i));
            self.tend_standby(now);
            return;
        }
        let cause = cause.unwrap_or(CauseCode::UnspecifiedError);
        let detail = first.and_then(RefusalDetail::of);
        match &detail {
            Some(d) => {
                tracing::warn!(%registrar, "registration of PE {identifier:#010x} in pool {pool_handle} refused: {cause}: {d}")
            }
            None => {
                tracing::warn!(%registrar, "registration of PE {identifier:#010x} in pool {pool_handle} refused: {cause}")
            }
        }
        let event = PeEvent::RegistrationRefused {
            identifier,
            registrar,
            cause,
            detail,
        };
        let e = &mut self.elements[i];
        if e.ever_registered && cause == CauseCode::LackOfResources {
            // A rate limit is no error of ours to correct (RFC 5352 3.1):
            // try again after a while rather than leave the pool.
            e.state = State::Backoff {
                until: now + self.timers.t2_registration,
            };
            self.outputs.push_back(PeOutput::Event(event));
        } else {
            self.give_up(i, event);
        }
    }

    fn on_deregistration_response(
        &mut self,
        now: Instant,
        registrar: SocketAddr,
        pool_handle: &PoolHandle,
        identifier: PeId,
        error: Option<OperationError>,
    ) {
        let Some(i) = self.find_in(pool_handle, identifier) else {
            tracing::debug!(%registrar, "deregistration response for an unknown PE {identifier:#010x}");
            return;
        };
        match self.elements[i].state {
            State::Deregistering { .. } => {
                let error = error.and_then(|e| e.causes.first().map(|c| c.code)).map(|cause| {
                    tracing::warn!(%registrar, "deregistration of PE {identifier:#010x} refused: {cause}");
                    ClientError::DeregistrationRefused {
                        registrar,
                        identifier,
                        cause,
                    }
                });
                self.remove(i, error);
            }
            State::Registered { .. } | State::Registering { .. } => {
                // RFC 5352 3.2: the registrar removed the PE (its lifetime
                // expired, or reports removed it). Register again.
                tracing::warn!(%registrar, "registrar removed PE {identifier:#010x}; registering again");
                self.elements[i].registered_on = None;
                self.outputs
                    .push_back(PeOutput::Event(PeEvent::RemovedByRegistrar {
                        identifier,
                        registrar,
                    }));
                self.register(now, i);
            }
            State::Pending | State::Backoff { .. } => {}
        }
    }

    /// A message on a connection that is not the PE's registrar
    /// connection is ignored; a keep-alive with the H flag there is an
    /// attempt to move the home (RFC 5352 3.4 KA2.4 names the sender of
    /// the keep-alive, which over TCP is the registrar of the connection):
    /// counted and logged.
    fn refuse_foreign(&mut self, now: Instant, conn: ConnId, message: &AsapMessage) {
        if let AsapMessage::EndpointKeepAlive {
            home: true,
            server_id,
            ..
        } = message
        {
            self.home_refused += 1;
            if self.home_log.allow(now) {
                tracing::warn!(
                    conn = conn.get(),
                    "refusing a home change to registrar {server_id:#010x}: not on the PE's registrar connection"
                );
            }
        }
    }

    fn on_keep_alive(
        &mut self,
        now: Instant,
        conn: ConnId,
        home: bool,
        server_id: ServerId,
        pool_handle: &PoolHandle,
        identifier: Option<PeId>,
    ) {
        // RFC 5352 3.4 KA1: only for a pool handle we registered, else
        // silently discarded; RSPLIB's identifier names one PE.
        let acks: Vec<AsapMessage> = self
            .elements
            .iter()
            .filter(|e| &e.pool_handle == pool_handle)
            .filter(|e| identifier.map_or(true, |id| id == e.identifier))
            .map(|e| AsapMessage::EndpointKeepAliveAck {
                pool_handle: e.pool_handle.clone(),
                identifier: e.identifier,
            })
            .collect();
        if acks.is_empty() {
            tracing::debug!("discarding a keep-alive for pool {pool_handle} (KA1)");
            return;
        }
        // KA2.1-KA2.3: one ack per PE, on the connection it came over.
        for message in acks {
            self.outputs
                .push_back(LinkAction::Send { conn, message }.into());
        }
        if let Link::Up {
            registrar,
            home: ref mut current,
            authenticated,
            ..
        } = self.link
        {
            let trusted = match self.home_trust {
                HomeTrust::ConnectedRegistrar => true,
                HomeTrust::Authenticated => authenticated,
            };
            if !trusted {
                // Secure mode and a connection that authenticated nobody:
                // its keep-alives are answered (KA2), but they neither
                // move nor name the home (RFC 5355 2.6, 2.15).
                if home && *current != Some(server_id) {
                    self.home_refused += 1;
                    if self.home_log.allow(now) {
                        tracing::warn!(%registrar, "refusing a home change to registrar {server_id:#010x}: the connection is not authenticated");
                    }
                }
                return;
            }
            if home && *current != Some(server_id) {
                // KA2.4: adopt the sender as the new home registrar. Over
                // TCP it is the registrar of this (authenticated)
                // connection, so no other peer can claim the PE.
                *current = Some(server_id);
                tracing::info!(%registrar, "re-homed to registrar {server_id:#010x}");
                self.outputs.push_back(PeOutput::Event(PeEvent::Rehomed {
                    registrar,
                    server_id,
                }));
            } else if current.is_none() {
                // Learn the home registrar's identifier.
                *current = Some(server_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rserpool_wire::{Cause, Policy, WireMessage};

    use super::*;
    use crate::test_outputs::{close, connects, hunts, only_hunt, plain, sends, CoreOutput};

    /// Connect `c` as its hunt asks, asserting that the attempt is `conn`
    /// to `registrar` (a hunt is started if none runs, as a driver whose
    /// core asked earlier would).
    fn connect(c: &mut PeCore, t: Instant, conn: ConnId, registrar: SocketAddr) {
        if c.hunter.attempt().is_none() {
            let mut scratch = VecDeque::<PeOutput>::new();
            c.hunter.start(t, &mut scratch);
        }
        assert_eq!(
            c.hunter.attempt(),
            Some((conn, registrar)),
            "the hunt's attempt"
        );
        c.handle_connected(t, conn, plain());
    }

    impl CoreOutput for PeOutput {
        fn link(&self) -> Option<&LinkAction> {
            match self {
                PeOutput::Link(a) => Some(a),
                _ => None,
            }
        }
    }

    const REG1: SocketAddr =
        SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)), 3863);
    const REG2: SocketAddr =
        SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2)), 3863);
    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 7));

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn handle() -> PoolHandle {
        PoolHandle::from_static("echo")
    }

    fn spec(id: u32) -> PoolElementSpec {
        PoolElementSpec {
            identifier: Some(PeId::new(id)),
            ..PoolElementSpec::new(handle(), Policy::RoundRobin, 7007)
        }
    }

    fn core() -> PeCore {
        PeCore::new(vec![REG1, REG2], Timers::default(), s(30), 7)
    }

    fn drain(c: &mut PeCore) -> Vec<PeOutput> {
        std::iter::from_fn(|| c.poll_output()).collect()
    }

    fn events(outs: &[PeOutput]) -> Vec<PeEvent> {
        outs.iter()
            .filter_map(|o| match o {
                PeOutput::Event(e) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    fn accepted(id: u32) -> AsapMessage {
        AsapMessage::RegistrationResponse {
            reject: false,
            pool_handle: handle(),
            identifier: PeId::new(id),
            error: None,
        }
    }

    fn refused(id: u32, code: CauseCode) -> AsapMessage {
        AsapMessage::RegistrationResponse {
            reject: true,
            pool_handle: handle(),
            identifier: PeId::new(id),
            error: Some(OperationError::single(Cause::new(code))),
        }
    }

    fn keep_alive(home: bool, server_id: ServerId, h: &str, id: Option<u32>) -> AsapMessage {
        AsapMessage::EndpointKeepAlive {
            home,
            server_id,
            pool_handle: PoolHandle::new(h.as_bytes()).expect("handle"),
            identifier: id.map(PeId::new),
        }
    }

    fn registered_element(pe: &AsapMessage) -> &PoolElement {
        match pe {
            AsapMessage::Registration { pool_element, .. } => pool_element,
            other => panic!("expected a registration, got {other:?}"),
        }
    }

    /// A core with PE 42 registered over connection 1 to REG1 at `t0`.
    fn registered(t0: Instant) -> PeCore {
        let mut c = core();
        c.add_element(t0, spec(42)).expect("add");
        connect(&mut c, t0, ConnId::new(1), REG1);
        c.handle_message(t0, ConnId::new(1), accepted(42));
        drain(&mut c);
        c
    }

    #[test]
    fn registers_over_a_new_connection_with_its_own_address_in_milliseconds() {
        let t0 = Instant::now();
        let mut c = core();
        assert_eq!(c.add_element(t0, spec(42)).expect("add"), PeId::new(42));
        assert!(only_hunt(&drain(&mut c)));
        connect(&mut c, t0, ConnId::new(1), REG1);
        let out = drain(&mut c);
        let sent = sends(&out);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, 1);
        let AsapMessage::Registration {
            pool_handle,
            pool_element,
        } = &sent[0].1
        else {
            panic!("{sent:?}")
        };
        assert_eq!(pool_handle, &handle());
        assert_eq!(
            pool_element,
            &PoolElement {
                identifier: PeId::new(42),
                home_registrar: ServerId::UNDETERMINED,
                registration_life: 30_000,
                user_transport: Transport::Tcp {
                    port: 7007,
                    transport_use: TransportUse::DataOnly,
                    address: LOCAL,
                },
                policy: Policy::RoundRobin,
                asap_transport: None,
            }
        );
        // T2 runs until the response.
        assert_eq!(c.poll_timeout(), Some(t0 + s(30)));
        assert!(!c.status(PeId::new(42)).expect("status").registered);
        let t1 = t0 + s(1);
        c.handle_message(t1, ConnId::new(1), accepted(42));
        assert_eq!(
            events(&drain(&mut c)),
            vec![PeEvent::Registered {
                identifier: PeId::new(42),
                registrar: REG1,
                home_server_id: None
            }]
        );
        assert_eq!(
            c.status(PeId::new(42)),
            Some(PeStatus {
                registered: true,
                registrar: Some(REG1),
                home_server_id: None
            })
        );
        // T4 for a 30 s lifetime: 15 s.
        assert_eq!(c.poll_timeout(), Some(t1 + s(15)));
    }

    #[test]
    fn a_configured_address_and_lifetime_are_used() {
        let t0 = Instant::now();
        let mut c = core();
        let addr: IpAddr = "2001:db8::5".parse().expect("ip");
        c.add_element(
            t0,
            PoolElementSpec {
                address: Some(addr),
                lifetime: Some(Duration::from_millis(1500)),
                ..spec(9)
            },
        )
        .expect("add");
        connect(&mut c, t0, ConnId::new(1), REG1);
        let out = drain(&mut c);
        let pe = registered_element(&sends(&out)[0].1).clone();
        assert_eq!(pe.registration_life, 1500);
        assert_eq!(pe.user_transport.addresses(), &[addr]);
    }

    #[test]
    fn identifiers_are_random_nonzero_unique_and_checked() {
        let t0 = Instant::now();
        let mut c = core();
        let mut ids = Vec::new();
        for _ in 0..50 {
            let mut sp = spec(0);
            sp.identifier = None;
            ids.push(c.add_element(t0, sp).expect("add"));
        }
        assert!(ids.iter().all(|&i| i != PeId::new(0)));
        let mut u = ids.clone();
        u.sort_unstable();
        u.dedup();
        assert_eq!(u.len(), ids.len());
        assert!(c.add_element(t0, spec(ids[0].get())).is_err());
        assert!(c.add_element(t0, spec(0)).is_err());
        assert!(c
            .add_element(
                t0,
                PoolElementSpec {
                    lifetime: Some(Duration::ZERO),
                    ..spec(5)
                }
            )
            .is_err());
        // The same seed draws the same identifiers.
        let mut d = core();
        let mut sp = spec(0);
        sp.identifier = None;
        assert_eq!(d.add_element(t0, sp).expect("add"), ids[0]);
    }

    #[test]
    fn t4_reregisters_with_the_same_identifier_without_a_new_event() {
        let t0 = Instant::now();
        let mut c = registered(t0);
        let t4 = c.poll_timeout().expect("T4");
        assert_eq!(t4, t0 + s(15));
        c.handle_timeout(t4 - Duration::from_millis(1));
        assert!(drain(&mut c).is_empty());
        c.handle_timeout(t4);
        let out = drain(&mut c);
        let sent = sends(&out);
        assert_eq!(sent.len(), 1);
        assert_eq!(registered_element(&sent[0].1).identifier, PeId::new(42));
        // Still registered while the re-registration is in flight.
        assert!(c.status(PeId::new(42)).expect("status").registered);
        assert_eq!(c.poll_timeout(), Some(t4 + s(30)));
        c.handle_message(t4, ConnId::new(1), accepted(42));
        assert!(events(&drain(&mut c)).is_empty());
        assert_eq!(c.poll_timeout(), Some(t4 + s(15)));
    }

    #[test]
    fn t2_expiry_hunts_and_a_never_registered_pe_gives_up_after_max_reg_attempt() {
        let t0 = Instant::now();
        let mut c = core();
        c.add_element(t0, spec(42)).expect("add");
        connect(&mut c, t0, ConnId::new(1), REG1);
        drain(&mut c);
        let t2 = t0 + s(30);
        c.handle_timeout(t2);
        let out = drain(&mut c);
        assert!(out.contains(&close(ConnId::new(1))));
        assert!(hunts(&out));
        assert!(matches!(
            events(&out)[..],
            [PeEvent::RegistrarLost {
                registrar: REG1,
                ..
            }]
        ));
        // A message on the old connection is ignored.
        c.handle_message(t2, ConnId::new(1), accepted(42));
        assert!(drain(&mut c).is_empty());
        connect(&mut c, t2, ConnId::new(2), REG2);
        let out = drain(&mut c);
        assert_eq!(
            registered_element(&sends(&out)[0].1).identifier,
            PeId::new(42)
        );
        c.handle_timeout(t2 + s(30));
        let out = drain(&mut c);
        let ev = events(&out);
        assert!(
            ev.contains(&PeEvent::RegistrationFailed {
                identifier: PeId::new(42),
                error: ClientError::Timeout {
                    operation: "registration",
                    registrars: vec![REG2]
                }
            }),
            "{ev:?}"
        );
        assert!(out.contains(&close(ConnId::new(2))));
        assert!(!hunts(&out));
        assert!(c.is_finished());
    }

    /// Fail `n` connection attempts of the hunt ("connection refused"),
    /// waiting out T5 where the hunt waits for it; returns the time then
    /// and what `c` output meanwhile.
    fn fail_attempts(c: &mut PeCore, mut t: Instant, n: usize) -> (Instant, Vec<PeOutput>) {
        let mut out = Vec::new();
        let mut failed = 0;
        while failed < n {
            match c.hunter.attempt() {
                Some((conn, _)) => {
                    c.handle_connect_failed(t, conn, refused_attempt());
                    failed += 1;
                }
                None => {
                    t = c.poll_timeout().expect("the hunt waits for T5");
                    c.handle_timeout(t);
                }
            }
            out.extend(drain(c));
        }
        (t, out)
    }

    fn refused_attempt() -> ConnectFailure {
        ConnectFailure::new("connection refused", None)
    }

    fn refused_by_both() -> Vec<RegistrarFailure> {
        [REG1, REG2]
            .into_iter()
            .map(|registrar| RegistrarFailure {
                registrar,
                reason: "connection refused".into(),
                kind: None,
            })
            .collect()
    }

    #[test]
    fn failed_hunt_passes_give_up_a_never_registered_pe_only() {
        let t0 = Instant::now();
        let failures = refused_by_both();
        let mut c = core();
        c.add_element(t0, spec(42)).expect("add");
        assert_eq!(connects(&drain(&mut c)), vec![(1, 0)]);
        let (t, out) = fail_attempts(&mut c, t0, 2);
        assert_eq!(
            connects(&out),
            vec![(2, 1)],
            "the second registrar is tried"
        );
        assert_eq!(
            events(&out),
            vec![PeEvent::NoRegistrar {
                failures: failures.clone()
            }]
        );
        // Both failed at once: the hunt waits for T5 rather than spinning.
        assert_eq!(c.hunter.attempt(), None);
        assert_eq!(
            c.poll_timeout(),
            Some(t0 + Timers::default().t5_server_hunt)
        );
        let (_, out) = fail_attempts(&mut c, t, 2);
        let ev = events(&out);
        assert_eq!(
            ev[1],
            PeEvent::RegistrationFailed {
                identifier: PeId::new(42),
                error: ClientError::NoRegistrar(failures.clone())
            }
        );
        assert!(c.is_finished());
        assert_eq!(c.poll_timeout(), None, "the hunt stops with the last PE");

        // A PE that was registered keeps hunting.
        let mut c = registered(t0);
        c.handle_disconnected(t0, ConnId::new(1), "reset by peer");
        let out = drain(&mut c);
        assert_eq!(
            out[..2],
            [
                close(ConnId::new(1)),
                PeOutput::Event(PeEvent::RegistrarLost {
                    registrar: REG1,
                    reason: "reset by peer".into()
                }),
            ]
        );
        assert_eq!(
            connects(&out),
            vec![(2, 1)],
            "a new home is another registrar"
        );
        let mut t = t0;
        for _ in 0..5 {
            let (t1, out) = fail_attempts(&mut c, t, 2);
            assert!(events(&out).contains(&PeEvent::NoRegistrar {
                failures: failures.clone()
            }));
            t = t1;
        }
        assert!(!c.is_finished());
        assert!(c.poll_timeout().is_some());
    }

    #[test]
    fn a_registrar_that_keeps_sending_garbage_is_answered_then_given_up() {
        // A broken (or hostile) registrar: every undecodable frame costs
        // one bounded ASAP_ERROR, and after MAX_MALFORMED the PE leaves it
        // for another registrar.
        let t0 = Instant::now();
        let mut c = registered(t0);
        let garbage = [0x01u8, 0, 0, 4];
        for _ in 0..crate::inbound::MAX_MALFORMED {
            c.handle_frame(t0, ConnId::new(1), &garbage);
            let out = drain(&mut c);
            assert!(
                matches!(&sends(&out)[..], [(1, AsapMessage::Error { .. })]),
                "{out:?}"
            );
        }
        c.handle_frame(t0, ConnId::new(1), &garbage);
        let out = drain(&mut c);
        assert!(out.contains(&close(ConnId::new(1))), "{out:?}");
        assert!(matches!(
            events(&out)[..],
            [PeEvent::RegistrarLost {
                registrar: REG1,
                ..
            }]
        ));
        assert_eq!(connects(&out), vec![(2, 1)], "the next registrar is tried");
    }

    #[test]
    fn an_attempt_the_driver_never_answers_is_given_up_for_the_next_registrar() {
        let t0 = Instant::now();
        let mut c = core();
        c.add_element(t0, spec(42)).expect("add");
        assert_eq!(connects(&drain(&mut c)), vec![(1, 0)]);
        let due = c.poll_timeout().expect("the attempt's deadline");
        assert_eq!(
            due,
            t0 + Timers::default().connect_timeout + crate::hunt::ATTEMPT_GRACE
        );
        c.handle_timeout(due);
        let out = drain(&mut c);
        assert_eq!(out[0], close(ConnId::new(1)), "the attempt is abandoned");
        assert_eq!(connects(&out), vec![(2, 1)]);
        // A late success for the abandoned attempt is closed, not used.
        c.handle_connected(due, ConnId::new(1), plain());
        assert_eq!(drain(&mut c), vec![close(ConnId::new(1))]);
        assert_eq!(c.status(PeId::new(42)).map(|s| s.registered), Some(false));
    }

    #[test]
    fn a_lost_registrar_is_replaced_and_the_pe_registers_again_with_its_identifier() {
        let t0 = Instant::now();
        let mut c = registered(t0);
        c.handle_disconnected(t0, ConnId::new(7), "not ours");
        assert!(drain(&mut c).is_empty());
        c.handle_disconnected(t0, ConnId::new(1), "closed by the registrar");
        drain(&mut c);
        assert_eq!(c.status(PeId::new(42)).map(|s| s.registered), Some(false));
        // Nothing is due but the connection attempt.
        assert_eq!(
            c.poll_timeout(),
            Some(t0 + Timers::default().connect_timeout + crate::hunt::ATTEMPT_GRACE)
        );
        let t1 = t0 + s(2);
        connect(&mut c, t1, ConnId::new(2), REG2);
        let out = drain(&mut c);
        let sent = sends(&out);
        assert_eq!(sent[0].0, 2);
        assert_eq!(registered_element(&sent[0].1).identifier, PeId::new(42));
        c.handle_message(t1, ConnId::new(2), accepted(42));
        assert_eq!(
            events(&drain(&mut c)),
            vec![PeEvent::Registered {
                identifier: PeId::new(42),
                registrar: REG2,
                home_server_id: None
            }]
        );
    }

    #[test]
    fn keep_alives_are_answered_per_pe_and_foreign_pools_are_discarded() {
        let t0 = Instant::now();
        let mut c = registered(t0);
        c.add_element(t0, spec(43)).expect("add");
        c.add_element(
            t0,
            PoolElementSpec {
                pool_handle: PoolHandle::from_static("other"),
                ..spec(44)
            },
        )
        .expect("add");
        c.handle_message(t0, ConnId::new(1), accepted(43));
        drain(&mut c);
        let ack = |id| {
            (
                1,
                AsapMessage::EndpointKeepAliveAck {
                    pool_handle: handle(),
                    identifier: id,
                },
            )
        };
        // No identifier (RFC): each PE of that pool answers.
        c.handle_message(
            t0,
            ConnId::new(1),
            keep_alive(false, ServerId::new(5), "echo", None),
        );
        assert_eq!(
            sends(&drain(&mut c)),
            vec![ack(PeId::new(42)), ack(PeId::new(43))]
        );
        // RSPLIB's identifier names one.
        c.handle_message(
            t0,
            ConnId::new(1),
            keep_alive(false, ServerId::new(5), "echo", Some(43)),
        );
        assert_eq!(sends(&drain(&mut c)), vec![ack(PeId::new(43))]);
        // KA1: a pool not registered, or a PE not ours: silently discarded.
        c.handle_message(
            t0,
            ConnId::new(1),
            keep_alive(true, ServerId::new(9), "nope", None),
        );
        assert!(drain(&mut c).is_empty());
        c.handle_message(
            t0,
            ConnId::new(1),
            keep_alive(true, ServerId::new(9), "echo", Some(99)),
        );
        assert!(drain(&mut c).is_empty());
        assert_eq!(c.home_server_id(), Some(ServerId::new(5)));
        // A keep-alive on another connection is not ours to answer.
        c.handle_message(
            t0,
            ConnId::new(3),
            keep_alive(false, ServerId::new(5), "echo", None),
        );
        assert!(drain(&mut c).is_empty());
    }

    #[test]
    fn the_h_flag_rehomes_and_later_registrations_name_the_home() {
        let t0 = Instant::now();
        let mut c = registered(t0);
        // Learned without the H flag: no event.
        c.handle_message(
            t0,
            ConnId::new(1),
            keep_alive(false, ServerId::new(5), "echo", Some(42)),
        );
        let out = drain(&mut c);
        assert!(events(&out).is_empty());
        assert_eq!(c.home_server_id(), Some(ServerId::new(5)));
        // KA2.4: H flag from another server identifier.
        c.handle_message(
            t0,
            ConnId::new(1),
            keep_alive(true, ServerId::new(9), "echo", Some(42)),
        );
        let out = drain(&mut c);
        assert_eq!(sends(&out).len(), 1, "acked too");
        assert_eq!(
            events(&out),
            vec![PeEvent::Rehomed {
                registrar: REG1,
                server_id: ServerId::new(9)
            }]
        );
        // The same home again: nothing new.
        c.handle_message(
            t0,
            ConnId::new(1),
            keep_alive(true, ServerId::new(9), "echo", Some(42)),
        );
        assert!(events(&drain(&mut c)).is_empty());
        assert_eq!(
            c.status(PeId::new(42)).and_then(|s| s.home_server_id),
            Some(ServerId::new(9))
        );
        c.handle_timeout(t0 + s(15));
        let out = drain(&mut c);
        assert_eq!(
            registered_element(&sends(&out)[0].1).home_registrar,
            ServerId::new(9)
        );
        // A new connection forgets the old home.
        c.handle_disconnected(t0 + s(16), ConnId::new(1), "gone");
        connect(&mut c, t0 + s(16), ConnId::new(2), REG2);
        let out = drain(&mut c);
        assert_eq!(
            registered_element(&sends(&out)[0].1).home_registrar,
            ServerId::UNDETERMINED
        );
        // H flag with no home known: adopt (KA2.4 "or it is not set").
        c.handle_message(
            t0 + s(16),
            ConnId::new(2),
            keep_alive(true, ServerId::new(11), "echo", None),
        );
        assert_eq!(
            events(&drain(&mut c)),
            vec![PeEvent::Rehomed {
                registrar: REG2,
                server_id: ServerId::new(11)
            }]
        );
    }

    /// What a test driver reports of a TLS connection that authenticated
    /// the registrar by the PE's pre-shared key.
    fn tls() -> Connected {
        Connected::new(
            crate::test_outputs::LOCAL,
            LinkSecurity::Tls {
                registrar: rserpool_security::PeerIdentity::Psk("pe-1".into()),
            },
        )
    }

    /// A secure-mode core with PE 42 registered over connection 1 to
    /// REG1 at `t0`, its home learned as server 5; `security` is what the
    /// connection turned out to be.
    fn registered_secure(t0: Instant, security: Connected) -> PeCore {
        let mut c = core();
        c.set_home_trust(HomeTrust::Authenticated);
        c.add_element(t0, spec(42)).expect("add");
        drain(&mut c);
        assert_eq!(c.hunter.attempt(), Some((ConnId::new(1), REG1)));
        c.handle_connected(t0, ConnId::new(1), security);
        c.handle_message(t0, ConnId::new(1), accepted(42));
        c.handle_message(
            t0,
            ConnId::new(1),
            keep_alive(false, ServerId::new(5), "echo", Some(42)),
        );
        drain(&mut c);
        c
    }

    #[test]
    fn attack_keep_alives_with_h_on_other_connections_do_not_move_the_home() {
        // RFC 5352 3.4 KA2.4 over TCP: only the registrar at the other end
        // of the PE's own connection may become its home.
        let t0 = Instant::now();
        let mut c = registered_secure(t0, tls());
        assert_eq!(c.home_server_id(), Some(ServerId::new(5)));
        for conn in [0, 2, 3, 99] {
            c.handle_message(
                t0,
                ConnId::new(conn),
                keep_alive(true, ServerId::new(66), "echo", Some(42)),
            );
            let bytes = keep_alive(true, ServerId::new(67), "echo", None)
                .to_bytes()
                .expect("encodes");
            c.handle_frame(t0, ConnId::new(conn), &bytes);
        }
        assert!(drain(&mut c).is_empty(), "not answered, nothing changes");
        assert_eq!(c.home_server_id(), Some(ServerId::new(5)));
        assert_eq!(c.registrar(), Some(REG1));
        assert_eq!(c.home_changes_refused(), 8);
    }

    #[test]
    fn attack_in_secure_mode_an_unauthenticated_connection_cannot_move_the_home() {
        let t0 = Instant::now();
        // A plain connection in secure mode (a driver bug, a mixed
        // deployment: RFC 5355 2.15): answered, but the home stays.
        let mut c = registered_secure(t0, plain());
        assert_eq!(c.home_server_id(), None, "not even learned");
        c.handle_message(
            t0,
            ConnId::new(1),
            keep_alive(true, ServerId::new(66), "echo", Some(42)),
        );
        let out = drain(&mut c);
        assert_eq!(sends(&out).len(), 1, "KA2: acked all the same");
        assert!(events(&out).is_empty(), "no Rehomed");
        assert_eq!(c.home_server_id(), None);
        assert_eq!(c.home_changes_refused(), 1);
        // T4: the registration names no home from that connection.
        c.handle_timeout(t0 + s(15));
        let out = drain(&mut c);
        assert_eq!(
            registered_element(&sends(&out)[0].1).home_registrar,
            ServerId::UNDETERMINED
        );

        // The same keep-alive over an authenticated connection re-homes.
        let mut c = registered_secure(t0, tls());
        c.handle_message(
            t0,
            ConnId::new(1),
            keep_alive(true, ServerId::new(66), "echo", Some(42)),
        );
        assert_eq!(
            events(&drain(&mut c)),
            vec![PeEvent::Rehomed {
                registrar: REG1,
                server_id: ServerId::new(66)
            }]
        );
        assert_eq!(c.home_changes_refused(), 0);
    }

    /// A secure-mode core registered over connection 1 to REG1 (TLS), with
    /// its standby link to REG2 up as connection 2 (`standby` is what that
    /// turned out to be).
    fn standing_by(t0: Instant, standby: Connected) -> PeCore {
        let mut c = registered_secure(t0, tls());
        c.set_standby(true);
        c.handle_timeout(t0);
        let out = drain(&mut c);
        assert_eq!(connects(&out), vec![(2, 1)], "a standby link to REG2");
        c.handle_connected(t0, ConnId::new(2), standby);
        let out = drain(&mut c);
        assert_eq!(
            sends(&out),
            vec![(
                2,
                AsapMessage::EndpointKeepAliveAck {
                    pool_handle: handle(),
                    identifier: PeId::new(42)
                }
            )],
            "the PE names itself on it"
        );
        assert_eq!(c.standby_registrar(), Some(REG2));
        c
    }

    #[test]
    fn the_h_flag_on_an_authenticated_standby_link_moves_the_pe_to_it() {
        let t0 = Instant::now();
        let mut c = standing_by(t0, tls());
        c.handle_message(
            t0,
            ConnId::new(2),
            keep_alive(true, ServerId::new(66), "echo", Some(42)),
        );
        let out = drain(&mut c);
        assert_eq!(
            events(&out),
            vec![PeEvent::Rehomed {
                registrar: REG2,
                server_id: ServerId::new(66)
            }]
        );
        let sent = sends(&out);
        assert!(matches!(
            &sent[0],
            (2, AsapMessage::EndpointKeepAliveAck { .. })
        ));
        assert_eq!(sent[1].0, 2, "registers over the standby link");
        assert_eq!(
            registered_element(&sent[1].1).home_registrar,
            ServerId::new(66)
        );
        assert!(out.contains(&close(ConnId::new(1))), "the old link goes");
        assert_eq!(c.registrar(), Some(REG2));
        assert_eq!(c.home_server_id(), Some(ServerId::new(66)));
        // Registered there, a new standby link goes to REG1.
        c.handle_message(t0, ConnId::new(2), accepted(42));
        let out = drain(&mut c);
        assert_eq!(connects(&out), vec![(3, 0)]);
    }

    #[test]
    fn attack_in_secure_mode_a_plain_standby_link_cannot_move_the_home() {
        let t0 = Instant::now();
        let mut c = standing_by(t0, plain());
        c.handle_message(
            t0,
            ConnId::new(2),
            keep_alive(true, ServerId::new(66), "echo", Some(42)),
        );
        let out = drain(&mut c);
        assert_eq!(sends(&out).len(), 1, "KA2: acked all the same");
        assert!(events(&out).is_empty(), "no Rehomed");
        assert_eq!(c.registrar(), Some(REG1));
        assert_eq!(c.home_server_id(), Some(ServerId::new(5)));
        assert_eq!(c.home_changes_refused(), 1);
        // KA1: a keep-alive for a pool of nobody's here is discarded.
        c.handle_message(
            t0,
            ConnId::new(2),
            keep_alive(true, ServerId::new(67), "other", None),
        );
        assert!(drain(&mut c).is_empty());
    }

    #[test]
    fn a_lost_registrar_is_replaced_by_the_standby_link_and_a_lost_standby_link_by_another() {
        let t0 = Instant::now();
        let mut c = standing_by(t0, tls());
        c.handle_disconnected(t0, ConnId::new(1), "reset");
        let out = drain(&mut c);
        assert!(!hunts(&out), "no hunt: the standby link is a connection");
        let sent = sends(&out);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, 2);
        assert!(matches!(sent[0].1, AsapMessage::Registration { .. }));
        assert_eq!(c.registrar(), Some(REG2));
        assert_eq!(c.home_server_id(), None, "learned from its keep-alives");
        c.handle_message(t0, ConnId::new(2), accepted(42));
        let out = drain(&mut c);
        assert_eq!(connects(&out), vec![(3, 0)], "the next standby link");
        // That one fails: tried again after the back-off, not at once.
        c.handle_connect_failed(t0, ConnId::new(3), ConnectFailure::new("refused", None));
        c.handle_timeout(t0 + s(1));
        assert!(!hunts(&drain(&mut c)));
        let t5 = t0 + Timers::default().t5_server_hunt;
        c.handle_timeout(t5);
        assert_eq!(connects(&drain(&mut c)), vec![(4, 0)]);
        // Deregistering closes it with the rest.
        c.handle_connected(t5, ConnId::new(4), tls());
        drain(&mut c);
        c.deregister(t5, PeId::new(42));
        c.handle_message(
            t5,
            ConnId::new(2),
            AsapMessage::DeregistrationResponse {
                pool_handle: handle(),
                identifier: PeId::new(42),
                error: None,
            },
        );
        let out = drain(&mut c);
        assert!(out.contains(&close(ConnId::new(4))), "{out:?}");
        assert!(c.is_finished());
    }

    #[test]
    fn attack_announcements_never_move_the_home_or_the_connection() {
        let t0 = Instant::now();
        let mut c = registered_secure(t0, tls());
        c.enable_announcements(&AnnounceConfig::default());
        let rogue: SocketAddr = "203.0.113.9:3863".parse().expect("addr");
        // A keep-alive with H over the announce channel, as a datagram.
        let ka = keep_alive(true, ServerId::new(66), "echo", Some(42))
            .to_bytes()
            .expect("encodes");
        c.handle_datagram(t0, rogue, &ka);
        c.handle_announcement(t0, rogue, keep_alive(true, ServerId::new(67), "echo", None));
        // An announcement of another registrar (and one claiming the
        // home's identifier) only adds addresses to try.
        c.handle_announcement(t0, rogue, crate::announce::announce(66, &[rogue]));
        c.handle_announcement(t0, rogue, crate::announce::announce(5, &[REG2]));
        assert!(drain(&mut c).is_empty(), "no send, no close, no connect");
        assert_eq!(c.home_server_id(), Some(ServerId::new(5)));
        assert_eq!(c.registrar(), Some(REG1));
        assert!(c.status(PeId::new(42)).expect("status").registered);
        let stats = c.announce_stats();
        assert_eq!(stats.unexpected, 2);
        assert_eq!(stats.announcements, 2);
        assert_eq!(c.hunter.registrars(), vec![REG1, REG2, rogue]);
    }

    #[test]
    fn a_waiting_hunt_tries_a_newly_learned_registrar_at_once() {
        let t0 = Instant::now();
        let mut c = PeCore::new(vec![REG1], Timers::default(), s(30), 7);
        c.enable_announcements(&AnnounceConfig::default());
        c.add_element(t0, spec(42)).expect("add");
        drain(&mut c);
        c.handle_connect_failed(t0, ConnId::new(1), ConnectFailure::new("refused", None));
        let out = drain(&mut c);
        assert!(!hunts(&out), "the round is over: wait for T5");
        assert!(matches!(&events(&out)[..], [PeEvent::NoRegistrar { .. }]));
        let t1 = t0 + s(1);
        c.handle_announcement(t1, REG2, crate::announce::announce(9, &[REG2]));
        let out = drain(&mut c);
        assert_eq!(connects(&out), vec![(2, 1)], "REG2, index 1, at once");
        c.handle_connected(t1, ConnId::new(2), tls());
        assert_eq!(c.registrar(), Some(REG2));
        // Re-announced, then silent: the entry expires (T7) but the
        // connection made to it stays.
        c.handle_announcement(t1 + s(3), REG2, crate::announce::announce(9, &[REG2]));
        c.handle_timeout(t1 + s(9));
        assert_eq!(c.hunter.registrars(), vec![REG1]);
        assert_eq!(c.announce_stats().expired, 1);
        assert_eq!(c.registrar(), Some(REG2));
    }

    #[test]
    fn a_refusal_gives_the_pe_up_with_the_cause() {
        let t0 = Instant::now();
        let mut c = core();
        c.add_element(t0, spec(42)).expect("add");
        connect(&mut c, t0, ConnId::new(1), REG1);
        drain(&mut c);
        c.handle_message(t0, ConnId::new(1), refused(42, CauseCode::RejectedSecurity));
        let out = drain(&mut c);
        assert_eq!(
            out,
            vec![
                PeOutput::Event(PeEvent::RegistrationRefused {
                    identifier: PeId::new(42),
                    registrar: REG1,
                    cause: CauseCode::RejectedSecurity,
                    detail: None,
                }),
                close(ConnId::new(1))
            ]
        );
        assert!(c.is_finished());
        // A response for nobody is ignored.
        let mut c = registered(t0);
        c.handle_message(t0, ConnId::new(1), accepted(77));
        assert!(drain(&mut c).is_empty());
    }

    #[test]
    fn a_refusal_for_an_inconsistent_policy_says_the_pools_policy() {
        let t0 = Instant::now();
        let mut c = core();
        c.add_element(t0, spec(42)).expect("add");
        connect(&mut c, t0, ConnId::new(1), REG1);
        drain(&mut c);
        let info = Policy::RoundRobin.to_tlv().expect("encodes");
        let refusal = |info: Vec<u8>| AsapMessage::RegistrationResponse {
            reject: true,
            pool_handle: handle(),
            identifier: PeId::new(42),
            error: Some(OperationError::single(Cause::with_info(
                CauseCode::InconsistentPoolingPolicy,
                info,
            ))),
        };
        c.handle_message(t0, ConnId::new(1), refusal(info));
        let detail = Some(RefusalDetail::PoolPolicy(Policy::RoundRobin));
        assert_eq!(
            events(&drain(&mut c)),
            vec![PeEvent::RegistrationRefused {
                identifier: PeId::new(42),
                registrar: REG1,
                cause: CauseCode::InconsistentPoolingPolicy,
                detail: detail.clone(),
            }]
        );
        let e = ClientError::RegistrationRefused {
            registrar: REG1,
            identifier: PeId::new(42),
            cause: CauseCode::InconsistentPoolingPolicy,
            detail,
        };
        assert_eq!(
            e.to_string(),
            format!(
                "registrar {REG1} refused the registration of PE 0x0000002a: Inconsistent \
                 Pooling Policy (0x5): the pool uses round robin (rr); register with the same policy"
            )
        );
        // Information that does not decode leaves just the code.
        let mut c = core();
        c.add_element(t0, spec(42)).expect("add");
        connect(&mut c, t0, ConnId::new(1), REG1);
        drain(&mut c);
        c.handle_message(t0, ConnId::new(1), refusal(vec![0xde, 0xad]));
        assert!(matches!(
            &events(&drain(&mut c))[..],
            [PeEvent::RegistrationRefused { detail: None, .. }]
        ));
    }

    #[test]
    fn refusal_details_read_the_cause_information_of_rfc_5354() {
        let wrr = Policy::WeightedRoundRobin { weight: 3 };
        let cause = Cause::with_info(CauseCode::InconsistentPoolingPolicy, wrr.to_tlv().unwrap());
        let d = RefusalDetail::of(&cause).expect("a detail");
        assert_eq!(
            d.to_string(),
            "the pool uses weighted round robin (wrr); register with the same policy"
        );
        let udp = rserpool_wire::Transport::Udp {
            port: 9,
            address: LOCAL,
        };
        let cause = Cause::with_info(CauseCode::InconsistentTransportType, udp.to_tlv().unwrap());
        assert_eq!(
            RefusalDetail::of(&cause).map(|d| d.to_string()).as_deref(),
            Some("the pool's PEs use UDP transports; register with the same transport type")
        );
        // A policy TLV under another code means nothing.
        let other = Cause::with_info(CauseCode::InvalidValues, wrr.to_tlv().unwrap());
        assert_eq!(RefusalDetail::of(&other), None);
        assert_eq!(
            RefusalDetail::of(&Cause::new(CauseCode::InconsistentPoolingPolicy)),
            None
        );
    }

    #[test]
    fn lack_of_resources_on_a_reregistration_backs_off_and_retries() {
        let t0 = Instant::now();
        let mut c = registered(t0);
        c.handle_timeout(t0 + s(15));
        drain(&mut c);
        c.handle_message(
            t0 + s(15),
            ConnId::new(1),
            refused(42, CauseCode::LackOfResources),
        );
        let out = drain(&mut c);
        assert_eq!(events(&out).len(), 1);
        assert!(sends(&out).is_empty());
        assert!(!c.is_finished());
        assert_eq!(c.poll_timeout(), Some(t0 + s(45)));
        c.handle_timeout(t0 + s(45));
        let out = drain(&mut c);
        assert_eq!(
            registered_element(&sends(&out)[0].1).identifier,
            PeId::new(42)
        );
    }

    #[test]
    fn deregistration_waits_for_the_response_up_to_t3() {
        let t0 = Instant::now();
        let mut c = registered(t0);
        c.deregister(t0, PeId::new(42));
        let out = drain(&mut c);
        assert_eq!(
            sends(&out),
            vec![(
                1,
                AsapMessage::Deregistration {
                    pool_handle: handle(),
                    identifier: PeId::new(42)
                }
            )]
        );
        assert_eq!(c.poll_timeout(), Some(t0 + s(30)));
        c.handle_message(
            t0,
            ConnId::new(1),
            AsapMessage::DeregistrationResponse {
                pool_handle: handle(),
                identifier: PeId::new(42),
                error: None,
            },
        );
        assert_eq!(
            drain(&mut c),
            vec![
                PeOutput::Event(PeEvent::Deregistered {
                    identifier: PeId::new(42),
                    error: None
                }),
                close(ConnId::new(1))
            ]
        );
        assert!(c.is_finished());

        // No answer: given up at T3.
        let mut c = registered(t0);
        c.deregister_all(t0);
        drain(&mut c);
        c.handle_timeout(t0 + s(30));
        let ev = events(&drain(&mut c));
        assert_eq!(
            ev,
            vec![PeEvent::Deregistered {
                identifier: PeId::new(42),
                error: Some(ClientError::Timeout {
                    operation: "deregistration",
                    registrars: vec![REG1]
                })
            }]
        );
        assert!(c.is_finished());

        // Refused.
        let mut c = registered(t0);
        c.deregister(t0, PeId::new(42));
        drain(&mut c);
        c.handle_message(
            t0,
            ConnId::new(1),
            AsapMessage::DeregistrationResponse {
                pool_handle: handle(),
                identifier: PeId::new(42),
                error: Some(OperationError::single(Cause::new(
                    CauseCode::RejectedSecurity,
                ))),
            },
        );
        assert!(matches!(
            &events(&drain(&mut c))[..],
            [PeEvent::Deregistered {
                error: Some(ClientError::DeregistrationRefused { .. }),
                ..
            }]
        ));
    }

    #[test]
    fn deregistration_without_a_registrar_hunts_or_finishes_at_once() {
        let t0 = Instant::now();
        // Never sent: nothing to deregister.
        let mut c = core();
        c.add_element(t0, spec(42)).expect("add");
        drain(&mut c);
        c.deregister(t0, PeId::new(42));
        assert_eq!(
            events(&drain(&mut c)),
            vec![PeEvent::Deregistered {
                identifier: PeId::new(42),
                error: None
            }]
        );
        assert!(c.is_finished());
        // Registered, then the registrar is lost: the deregistration goes
        // to the next one (RFC 5352 3.2).
        let mut c = registered(t0);
        c.handle_disconnected(t0, ConnId::new(1), "gone");
        drain(&mut c);
        c.deregister(t0, PeId::new(42));
        assert!(drain(&mut c).is_empty(), "already hunting");
        connect(&mut c, t0 + s(1), ConnId::new(2), REG2);
        assert_eq!(
            sends(&drain(&mut c)),
            vec![(
                2,
                AsapMessage::Deregistration {
                    pool_handle: handle(),
                    identifier: PeId::new(42)
                }
            )]
        );
        assert_eq!(c.poll_timeout(), Some(t0 + s(30)));
    }

    #[test]
    fn removal_by_the_registrar_triggers_a_new_registration() {
        let t0 = Instant::now();
        let mut c = registered(t0);
        c.handle_message(
            t0,
            ConnId::new(1),
            AsapMessage::DeregistrationResponse {
                pool_handle: handle(),
                identifier: PeId::new(42),
                error: None,
            },
        );
        let out = drain(&mut c);
        assert_eq!(
            events(&out),
            vec![PeEvent::RemovedByRegistrar {
                identifier: PeId::new(42),
                registrar: REG1
            }]
        );
        assert_eq!(
            registered_element(&sends(&out)[0].1).identifier,
            PeId::new(42)
        );
        c.handle_message(t0, ConnId::new(1), accepted(42));
        assert!(matches!(
            events(&drain(&mut c))[..],
            [PeEvent::Registered { .. }]
        ));
    }

    #[test]
    fn a_policy_update_reregisters_at_once() {
        let t0 = Instant::now();
        let mut c = registered(t0);
        c.update_policy(t0, PeId::new(42), Policy::LeastUsed { load: 7 })
            .expect("update");
        let out = drain(&mut c);
        assert_eq!(
            registered_element(&sends(&out)[0].1).policy,
            Policy::LeastUsed { load: 7 }
        );
        assert!(c
            .update_policy(t0, PeId::new(99), Policy::RoundRobin)
            .is_err());
    }
}
