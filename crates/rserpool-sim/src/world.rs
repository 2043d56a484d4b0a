//! The event loop of a simulation: the nodes with their cores, the
//! network between them, the application behaviour of pool elements
//! (register, stay registered) and pool users (select a PE now and then;
//! when it is dead, report it and fail over), and the faults.
//!
//! Each node is one process: a registrar, a PE or a PU, each with its own
//! core, address and latency. The world plays the part of the tokio
//! drivers: it carries out what the cores ask (connect, send, close),
//! feeds them what arrives, and wakes them at their deadlines. Events run
//! in time order; ties run in the order they were scheduled.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use rserpool::{
    ConnectFailure, Connected, LinkAction, LinkSecurity, PeCore, PeEvent, PeOutput,
    PoolElementSpec, PoolUserSettings, PuCore, PuOutput, ReportLimits, Timers,
};
use rserpool_registrar::{Apd, ClientInfo, ConnKind, CoreConfig, Output, RegistrarCore};
use rserpool_security::PeerIdentity;
use rserpool_wire::{AsapMessage, ConnId, PeId, Policy, PoolHandle, ServerId};
use rustc_hash::FxHashMap;

use crate::agenda::Agenda;
use crate::check::{Rule, Violation};
use crate::net::{ConnTable, Connection, End, EndPoint, NetConfig, Network, NodeId};
use crate::trace::{Trace, TraceMode};

/// The registrars' ASAP port.
pub const REGISTRAR_PORT: u16 = 3863;
/// The registrars' ENRP port (clusters).
pub const ENRP_PORT: u16 = 9902;

/// Spare message buffers the world keeps.
const MAX_SPARE_BUFFERS: usize = 4096;

/// How long a supervisor waits before it starts a PE process that gave
/// up again.
pub const RESTART_DELAY: Duration = Duration::from_secs(10);

/// A process's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Running.
    Up,
    /// Stopped (SIGSTOP): its connections stay open, it answers nothing;
    /// what arrives waits for it.
    Frozen,
    /// Its host is gone without a word: connections stay open at the
    /// other end, nothing answers.
    Vanished,
    /// The process died and its host reset its connections.
    Crashed,
}

/// A fault, or the end of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The process dies; its host resets its connections.
    Crash(NodeId),
    /// The host disappears silently.
    Vanish(NodeId),
    /// The process stops answering (connections stay open).
    Freeze(NodeId),
    /// A frozen process goes on.
    Thaw(NodeId),
    /// A crashed or vanished process starts again, knowing nothing.
    Restart(NodeId),
    /// The node is cut off from the network.
    Cut(NodeId),
    /// The cut heals.
    Heal(NodeId),
    /// A PE leaves its pool (deregisters) and stays out.
    Stop(NodeId),
    /// A stopped PE registers again.
    Start(NodeId),
}

impl Fault {
    /// The node it concerns.
    pub fn node(self) -> NodeId {
        match self {
            Fault::Crash(n)
            | Fault::Vanish(n)
            | Fault::Freeze(n)
            | Fault::Thaw(n)
            | Fault::Restart(n)
            | Fault::Cut(n)
            | Fault::Heal(n)
            | Fault::Stop(n)
            | Fault::Start(n) => n,
        }
    }
}

/// What a segment carries.
#[derive(Debug, Clone)]
enum Segment {
    Data(Vec<u8>),
    Fin,
    Rst,
}

#[derive(Debug, Clone)]
enum Ev {
    Wake(NodeId),
    Arrive {
        key: u64,
        to: End,
        segment: Segment,
    },
    Established {
        key: u64,
        deadline: Instant,
    },
    ConnectFailed {
        node: NodeId,
        conn: ConnId,
        incarnation: u32,
        reason: &'static str,
    },
    PuUse(NodeId),
    Fault(Fault),
    Check,
}

/// A registrar process.
#[derive(Debug)]
pub struct RegistrarNode {
    /// Its core while it runs.
    pub core: Option<RegistrarCore>,
    config: CoreConfig,
    apd: Apd,
    next_conn: ConnId,
}

/// A pool element process: one PE in one pool.
#[derive(Debug)]
pub struct PeNode {
    /// Its core while it runs.
    pub core: Option<PeCore>,
    /// Its pool.
    pub pool: PoolHandle,
    /// Its identifier (kept across restarts).
    pub identifier: PeId,
    /// Its service port.
    pub port: u16,
    /// Whether it left its pool on purpose (and stays out).
    pub stopped: bool,
}

#[derive(Debug, Clone)]
struct Use {
    pool: PoolHandle,
    token: u64,
    tries: u32,
}

/// A pool user process.
#[derive(Debug)]
pub struct PuNode {
    /// Its core while it runs.
    pub core: Option<PuCore>,
    next_token: u64,
    using: Option<Use>,
}

/// What a node is.
#[derive(Debug)]
pub enum Role {
    /// A registrar.
    Registrar(Box<RegistrarNode>),
    /// A pool element.
    Pe(PeNode),
    /// A pool user.
    Pu(PuNode),
}

/// A process on its host.
#[derive(Debug)]
pub struct Node {
    /// Its name in traces (`reg-0`, `pe-12`, `pu-3`).
    pub name: String,
    /// Its host's address.
    pub addr: IpAddr,
    /// Its latency to the network.
    pub latency: Duration,
    /// Its state.
    pub health: Health,
    /// Whether it is cut off from the network.
    pub cut: bool,
    /// Bumped at every restart.
    pub incarnation: u32,
    /// Since when it has not been usable (down, frozen, cut, stopped).
    pub unusable_since: Option<Instant>,
    /// When it last became usable (started, thawed, healed).
    pub usable_since: Instant,
    /// What it is.
    pub role: Role,
    wake: Option<Instant>,
    backlog: Vec<Ev>,
    /// Its core's connection ids, to the world's connections (FxHash:
    /// no random seed, the same order in every run).
    conns: FxHashMap<ConnId, u64>,
    /// Connections its core closed or was told are closed.
    closed: BTreeSet<ConnId>,
    /// Connection attempts its core asked for, not yet answered.
    attempts: BTreeSet<ConnId>,
}

/// Counters of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events handled.
    pub events: u64,
    /// Messages carried.
    pub messages: u64,
    /// PU uses that ended on a live PE.
    pub uses_ok: u64,
    /// Selections after a report.
    pub failovers: u64,
    /// Uses that ended with an error (no PE, no registrar...).
    pub use_errors: u64,
    /// Faults injected.
    pub faults: u64,
}

/// The world's timing rules and application behaviour.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The registrars' settings (`server_id` and `seed` are set per
    /// registrar).
    pub registrar: CoreConfig,
    /// The clients' ASAP timers.
    pub timers: Timers,
    /// The PEs' registration lifetime.
    pub lifetime: Duration,
    /// The PUs' cache settings.
    pub pool_user: PoolUserSettings,
    /// How often each PU uses its pool: uniformly in this range.
    pub use_interval: (Duration, Duration),
    /// Tries of one use before the PU gives up.
    pub max_tries: u32,
    /// How long a registrar may still hand out a dead PE.
    pub dead_bound: Duration,
    /// The network.
    pub net: NetConfig,
    /// Whether to check each registrar's bookkeeping every ten seconds.
    pub periodic_checks: bool,
    /// Whether the registrars form an ENRP cluster (each dials the ones
    /// added before it).
    pub cluster: bool,
}

impl Default for Settings {
    fn default() -> Self {
        let registrar = CoreConfig::default();
        let net = NetConfig::default();
        Settings {
            // A dead PE goes unnoticed for at most one keep-alive interval
            // (drawn from 50-150 % of the configured one) and its timeout
            // (RFC 5352 3.4), plus the time segments take (a few round
            // trips; retransmissions under loss).
            dead_bound: registrar.keep_alive_interval.mul_f64(1.5)
                + registrar.keep_alive_timeout
                + Duration::from_secs(2),
            registrar,
            timers: Timers::default(),
            lifetime: Duration::from_secs(30),
            pool_user: PoolUserSettings::default(),
            use_interval: (Duration::from_secs(2), Duration::from_secs(10)),
            max_tries: 8,
            net,
            periodic_checks: true,
            cluster: false,
        }
    }
}

/// A simulated system.
#[derive(Debug)]
pub struct World {
    origin: Instant,
    now: Instant,
    /// Since when a majority of the registrars runs and reaches each
    /// other (a cluster takes a dead registrar over only then).
    majority_since: Instant,
    agenda: Agenda<Ev>,
    /// The nodes.
    pub nodes: Vec<Node>,
    conns: ConnTable,
    next_key: u64,
    /// Segments held by cuts.
    held: Vec<(u64, End, Segment)>,
    /// Buffers of delivered segments, for the next messages.
    buffers: Vec<Vec<u8>>,
    net: Network,
    rng: SmallRng,
    settings: Settings,
    registrars: Vec<SocketAddr>,
    /// The registrars' ENRP addresses (clusters).
    enrp_addrs: Vec<SocketAddr>,
    registrar_nodes: Vec<NodeId>,
    pu_count: usize,
    pes: BTreeMap<(PoolHandle, PeId), NodeId>,
    /// PE nodes by identifier - 1 (identifiers are handed out in order).
    pe_nodes: Vec<NodeId>,
    pools: Vec<PoolHandle>,
    /// The trace.
    pub trace: Trace,
    /// What did not hold.
    pub violations: Vec<Violation>,
    /// Counters.
    pub stats: Stats,
}

impl World {
    /// An empty world drawing from `seed`.
    pub fn new(seed: u64, settings: Settings, trace: TraceMode) -> Self {
        // The one clock read: the origin of virtual time, which no output
        // shows (traces print times since it).
        let origin = Instant::now();
        World {
            origin,
            now: origin,
            majority_since: origin,
            agenda: Agenda::default(),
            nodes: Vec::new(),
            conns: ConnTable::default(),
            next_key: 1,
            held: Vec::new(),
            buffers: Vec::new(),
            net: Network::new(settings.net, seed ^ 0x6e65_7477_6f72_6b00),
            rng: SmallRng::seed_from_u64(seed),
            settings,
            registrars: Vec::new(),
            enrp_addrs: Vec::new(),
            registrar_nodes: Vec::new(),
            pu_count: 0,
            pes: BTreeMap::new(),
            pe_nodes: Vec::new(),
            pools: Vec::new(),
            trace: Trace::new(trace),
            violations: Vec::new(),
            stats: Stats::default(),
        }
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.origin
    }

    /// The virtual instant `after` the start.
    pub fn at(&self, after: Duration) -> Instant {
        self.origin + after
    }

    fn host(index: usize, net: u8) -> IpAddr {
        let i = index as u32;
        IpAddr::V4(Ipv4Addr::new(10, net, (i >> 8) as u8, i as u8))
    }

    fn push_node(&mut self, name: String, addr: IpAddr, role: Role) -> NodeId {
        let latency = self.net.node_latency();
        self.nodes.push(Node {
            name,
            addr,
            latency,
            health: Health::Up,
            cut: false,
            incarnation: 0,
            unusable_since: None,
            usable_since: self.now,
            role,
            wake: None,
            backlog: Vec::new(),
            conns: FxHashMap::default(),
            closed: BTreeSet::new(),
            attempts: BTreeSet::new(),
        });
        self.nodes.len() - 1
    }

    /// Add a registrar with server identifier `server_id`. Add every
    /// registrar before the clients (they get the list).
    pub fn add_registrar(&mut self, server_id: ServerId) -> NodeId {
        let index = self.registrars.len();
        let addr = Self::host(index, 255);
        let mut config = self.settings.registrar.clone();
        config.server_id = server_id;
        config.seed = u64::from(server_id.get());
        let enrp = SocketAddr::new(addr, ENRP_PORT);
        if self.settings.cluster {
            config.enrp.peers = self.enrp_addrs.clone();
            config.enrp.advertise = Some(enrp);
        }
        // The registrars' keys (as the dialling side learns them too) may
        // be registrars; every key may be PE and PU.
        let names: Vec<PeerIdentity> = (0..64)
            .map(|i| PeerIdentity::Psk(format!("reg-{i}")))
            .collect();
        let apd = Apd::permissive_with_registrars(false, &names);
        let core = RegistrarCore::new(config.clone(), self.now)
            .ok()
            .map(|c| c.with_apd(apd.clone()));
        self.registrars.push(SocketAddr::new(addr, REGISTRAR_PORT));
        self.enrp_addrs.push(enrp);
        let node = self.push_node(
            format!("reg-{index}"),
            addr,
            Role::Registrar(Box::new(RegistrarNode {
                core,
                config,
                apd,
                next_conn: ConnId::new(1),
            })),
        );
        self.registrar_nodes.push(node);
        // Its first deadlines (a cluster's registrars dial their peers).
        self.after_input(node);
        node
    }

    /// Add a PE to `pool`, started at once.
    pub fn add_pe(&mut self, pool: PoolHandle) -> NodeId {
        let index = self.pes.len();
        let identifier = PeId::new(index as u32 + 1);
        if !self.pools.contains(&pool) {
            self.pools.push(pool.clone());
        }
        let node = self.push_node(
            format!("pe-{index}"),
            Self::host(index, 1 + (index >> 16) as u8),
            Role::Pe(PeNode {
                core: None,
                pool: pool.clone(),
                identifier,
                port: 7000 + (index % 1000) as u16,
                stopped: false,
            }),
        );
        self.pes.insert((pool, identifier), node);
        self.pe_nodes.push(node);
        self.start_process(node);
        node
    }

    /// Add a PU, using the pools of the PEs added so far.
    pub fn add_pu(&mut self) -> NodeId {
        let index = self.pu_count;
        self.pu_count += 1;
        let node = self.push_node(
            format!("pu-{index}"),
            Self::host(index, 200),
            Role::Pu(PuNode {
                core: None,
                next_token: 1,
                using: None,
            }),
        );
        self.start_process(node);
        let first = self.draw(self.settings.use_interval);
        self.schedule(self.now + first, Ev::PuUse(node));
        node
    }

    /// Schedule fault `f` at `after` from the start.
    pub fn schedule_fault(&mut self, after: Duration, f: Fault) {
        let at = self.at(after);
        self.schedule(at, Ev::Fault(f));
    }

    /// Start the periodic bookkeeping checks.
    pub fn start_checks(&mut self) {
        if self.settings.periodic_checks {
            self.schedule(self.now + Duration::from_secs(10), Ev::Check);
        }
    }

    fn draw(&mut self, (lo, hi): (Duration, Duration)) -> Duration {
        if hi <= lo {
            return lo;
        }
        lo + Duration::from_millis(
            self.rng
                .random_range(0..(hi - lo).as_millis().max(1) as u64),
        )
    }

    fn schedule(&mut self, at: Instant, ev: Ev) {
        let at = at.max(self.now) - self.origin;
        self.agenda.push(at.as_nanos() as u64, ev);
    }

    fn violation(&mut self, rule: Rule, detail: String) {
        let at = self.elapsed();
        self.trace
            .line(at, || format!("VIOLATION {rule}: {detail}"));
        self.violations.push(Violation { at, rule, detail });
    }

    fn note(&mut self, text: impl FnOnce() -> String) {
        let at = self.elapsed();
        self.trace.line(at, text);
    }

    /// Run every event up to `after` from the start.
    pub fn run_until(&mut self, after: Duration) {
        let end = self.at(after);
        let end_ns = after.as_nanos() as u64;
        while let Some((at, ev)) = self.agenda.pop_until(end_ns) {
            self.now = self.origin + Duration::from_nanos(at);
            self.stats.events += 1;
            self.handle(ev);
        }
        self.now = self.now.max(end);
    }

    fn handle(&mut self, ev: Ev) {
        // A frozen process does nothing; what is for it waits.
        if let Some(node) = self.target(&ev) {
            if self.nodes[node].health == Health::Frozen {
                self.nodes[node].backlog.push(ev);
                return;
            }
        }
        match ev {
            Ev::Wake(n) => self.wake(n),
            Ev::Arrive { key, to, segment } => self.arrive(key, to, segment),
            Ev::Established { key, deadline } => self.established(key, deadline),
            Ev::ConnectFailed {
                node,
                conn,
                incarnation,
                reason,
            } => self.connect_failed(node, conn, incarnation, reason),
            Ev::PuUse(n) => self.pu_use(n),
            Ev::Fault(f) => self.fault(f),
            Ev::Check => {
                self.check_registrars();
                self.schedule(self.now + Duration::from_secs(10), Ev::Check);
            }
        }
    }

    /// The node an event is for, when a frozen one must hold it.
    fn target(&self, ev: &Ev) -> Option<NodeId> {
        match ev {
            Ev::Wake(n) | Ev::PuUse(n) => Some(*n),
            Ev::Arrive { key, to, .. } => self.conns.get(key).map(|c| c.end(*to).node),
            Ev::ConnectFailed { node, .. } => Some(*node),
            Ev::Established { .. } | Ev::Fault(_) | Ev::Check => None,
        }
    }

    // ---- the cores -------------------------------------------------

    fn wake(&mut self, n: NodeId) {
        let node = &mut self.nodes[n];
        match node.wake {
            Some(w) if w <= self.now => node.wake = None,
            _ => return,
        }
        if node.health != Health::Up {
            return;
        }
        let now = self.now;
        match &mut node.role {
            Role::Registrar(r) => {
                if let Some(c) = r.core.as_mut() {
                    c.handle_timeout(now)
                }
            }
            Role::Pe(p) => {
                if let Some(c) = p.core.as_mut() {
                    c.handle_timeout(now)
                }
            }
            Role::Pu(p) => {
                if let Some(c) = p.core.as_mut() {
                    c.handle_timeout(now)
                }
            }
        }
        self.after_input(n);
    }

    /// Carry out what node `n`'s core asks, then set its wake-up.
    fn after_input(&mut self, n: NodeId) {
        loop {
            let node = &mut self.nodes[n];
            match &mut node.role {
                Role::Registrar(r) => {
                    let Some(out) = r.core.as_mut().and_then(RegistrarCore::poll_output) else {
                        break;
                    };
                    self.registrar_output(n, out);
                }
                Role::Pe(p) => {
                    let Some(out) = p.core.as_mut().and_then(PeCore::poll_output) else {
                        break;
                    };
                    match out {
                        PeOutput::Link(a) => self.link_action(n, a),
                        PeOutput::Event(e) => {
                            let name = &self.nodes[n].name;
                            let at = self.now - self.origin;
                            self.trace.line(at, || format!("{name}: {e:?}"));
                            if matches!(
                                e,
                                PeEvent::RegistrationFailed { .. }
                                    | PeEvent::RegistrationRefused { .. }
                            ) {
                                // The PE gave up: its process exits, and
                                // its supervisor starts it again later
                                // (systemd's Restart=on-failure).
                                self.fault(Fault::Crash(n));
                                let later = self.elapsed() + RESTART_DELAY;
                                self.schedule_fault(later, Fault::Restart(n));
                                return;
                            }
                        }
                    }
                }
                Role::Pu(p) => {
                    let Some(out) = p.core.as_mut().and_then(PuCore::poll_output) else {
                        break;
                    };
                    self.pu_output(n, out);
                }
            }
        }
        self.exit_if_done(n);
        let next = match &self.nodes[n].role {
            Role::Registrar(r) => r.core.as_ref().and_then(RegistrarCore::poll_timeout),
            Role::Pe(p) => p.core.as_ref().and_then(PeCore::poll_timeout),
            Role::Pu(p) => p.core.as_ref().and_then(PuCore::poll_timeout),
        };
        if let Some(t) = next {
            let t = t.max(self.now);
            let node = &mut self.nodes[n];
            if node.wake.map_or(true, |w| t < w) {
                node.wake = Some(t);
                self.schedule(t, Ev::Wake(n));
            }
        }
    }

    fn registrar_output(&mut self, n: NodeId, out: Output) {
        match out {
            Output::Send { conn, msg } => {
                if let Some(AsapMessage::HandleResolutionResponse {
                    pool_handle,
                    pool_elements,
                    ..
                }) = msg.as_asap()
                {
                    self.check_resolution(n, pool_handle, pool_elements);
                }
                self.send(n, conn, msg.name(), |b| msg.encode(b).is_ok());
            }
            Output::Close { conn, reason } => {
                let name = &self.nodes[n].name;
                let at = self.now - self.origin;
                self.trace
                    .line(at, || format!("{name}: closes conn {conn}: {reason}"));
                self.close(n, conn);
                // As the service's connection task does once the
                // connection is gone.
                let now = self.now;
                if let Role::Registrar(r) = &mut self.nodes[n].role {
                    if let Some(core) = r.core.as_mut() {
                        core.handle_disconnect(now, conn);
                    }
                }
            }
            Output::Event(e) => {
                if self.trace.on() {
                    let name = self.nodes[n].name.clone();
                    self.note(|| format!("{name}: {e:?}"));
                }
            }
            Output::Connect { conn, address, .. } => {
                // A peer registrar: the driver's handshake deadline.
                let deadline = self.now + Duration::from_secs(5);
                self.connect(n, conn, address, deadline);
            }
            other => {
                let name = self.nodes[n].name.clone();
                self.note(|| format!("{name}: not simulated: {other:?}"));
            }
        }
    }

    fn link_action(&mut self, n: NodeId, a: LinkAction) {
        match a {
            LinkAction::Connect {
                conn,
                registrar,
                deadline,
                ..
            } => self.connect(n, conn, registrar, deadline),
            LinkAction::Send { conn, message } => {
                self.send(n, conn, message.name(), |b| message.encode(b).is_ok())
            }
            LinkAction::Close { conn } => {
                if self.nodes[n].attempts.remove(&conn) {
                    let name = self.nodes[n].name.clone();
                    self.note(|| format!("{name}: abandons attempt {conn}"));
                } else {
                    self.close(n, conn);
                }
            }
            _ => {}
        }
    }

    fn pu_output(&mut self, n: NodeId, out: PuOutput) {
        match out {
            PuOutput::Link(a) => self.link_action(n, a),
            PuOutput::Selected { token, result } => self.selected(n, token, result),
            _ => {}
        }
    }

    // ---- the network -----------------------------------------------

    fn connect(&mut self, n: NodeId, conn: ConnId, registrar: SocketAddr, deadline: Instant) {
        self.nodes[n].attempts.insert(conn);
        let incarnation = self.nodes[n].incarnation;
        let name = self.nodes[n].name.clone();
        let asap = self.registrars.iter().position(|a| *a == registrar);
        let enrp = self.enrp_addrs.iter().position(|a| *a == registrar);
        let to_enrp = asap.is_none() && enrp.is_some() && self.settings.cluster;
        let server = asap
            .or(enrp.filter(|_| to_enrp))
            .map(|i| self.registrar_nodes[i]);
        let fail = |w: &mut World, at: Instant, reason: &'static str| {
            w.note(|| format!("{name}: attempt {conn} to {registrar} will fail: {reason}"));
            w.schedule(
                at,
                Ev::ConnectFailed {
                    node: n,
                    conn,
                    incarnation,
                    reason,
                },
            );
        };
        let Some(s) = server else {
            return fail(self, deadline, "no route to host");
        };
        let (health, cut) = (self.nodes[s].health, self.nodes[s].cut);
        if cut || self.nodes[n].cut || health == Health::Vanished {
            return fail(self, deadline, "timed out");
        }
        let rtt = self.round_trip(n, s);
        if health == Health::Crashed {
            return fail(self, self.now + rtt, "connection refused");
        }
        // TCP, then the TLS 1.3 handshake: two round trips.
        if self.now + 2 * rtt > deadline {
            return fail(self, deadline, "timed out");
        }
        let Role::Registrar(r) = &mut self.nodes[s].role else {
            return fail(self, self.now + rtt, "connection refused");
        };
        let local = r.next_conn.allocate();
        let key = self.next_key;
        self.next_key += 1;
        self.conns.insert(
            key,
            Connection {
                client: EndPoint {
                    node: n,
                    local: conn,
                    incarnation,
                    open: true,
                },
                server: EndPoint {
                    node: s,
                    local,
                    incarnation: self.nodes[s].incarnation,
                    open: true,
                },
                established: false,
                enrp: to_enrp,
                last_arrival: [self.now; 2],
            },
        );
        self.schedule(self.now + 2 * rtt, Ev::Established { key, deadline });
    }

    fn round_trip(&mut self, a: NodeId, b: NodeId) -> Duration {
        let (la, lb) = (self.nodes[a].latency, self.nodes[b].latency);
        self.net.transit(la, lb) + self.net.transit(lb, la)
    }

    fn established(&mut self, key: u64, deadline: Instant) {
        let Some(c) = self.conns.get(&key) else {
            return;
        };
        let (cl, sv, enrp) = (c.client, c.server, c.enrp);
        let client_ok = self.nodes[cl.node].health == Health::Up
            && self.nodes[cl.node].incarnation == cl.incarnation
            && self.nodes[cl.node].attempts.contains(&cl.local);
        if !client_ok {
            // Abandoned, or the client is gone: the server never hears.
            self.conns.remove(&key);
            return;
        }
        let s = &self.nodes[sv.node];
        if s.health != Health::Up || s.incarnation != sv.incarnation || s.cut {
            // The server froze, died or was cut off mid-handshake: the
            // client's attempt times out (its driver's deadline).
            self.conns.remove(&key);
            self.schedule(
                deadline,
                Ev::ConnectFailed {
                    node: cl.node,
                    conn: cl.local,
                    incarnation: cl.incarnation,
                    reason: "timed out",
                },
            );
            return;
        }
        let now = self.now;
        let Some(c) = self.conns.get_mut(&key) else {
            return;
        };
        c.established = true;
        let client = &mut self.nodes[cl.node];
        client.attempts.remove(&cl.local);
        client.conns.insert(cl.local, key);
        let (client_addr, client_name) = (client.addr, client.name.clone());
        let server = &mut self.nodes[sv.node];
        server.conns.insert(sv.local, key);
        if let Role::Registrar(r) = &mut server.role {
            if let Some(core) = r.core.as_mut() {
                core.handle_connect(
                    now,
                    sv.local,
                    ClientInfo::new(
                        Some(PeerIdentity::Psk(client_name.clone())),
                        SocketAddr::new(client_addr, 40000 + cl.local.get() as u16),
                        if enrp { ConnKind::Enrp } else { ConnKind::Asap },
                    ),
                );
            }
        }
        let server_name = server.name.clone();
        self.after_input(sv.node);
        let connected = Connected::new(
            SocketAddr::new(client_addr, 40000 + cl.local.get() as u16),
            LinkSecurity::Tls {
                registrar: PeerIdentity::Psk(server_name.clone()),
            },
        );
        self.note(|| {
            format!(
                "{client_name}: connected to {server_name} (conn {} / {})",
                cl.local, sv.local
            )
        });
        match &mut self.nodes[cl.node].role {
            Role::Pe(p) => {
                if let Some(core) = p.core.as_mut() {
                    core.handle_connected(now, cl.local, connected)
                }
            }
            Role::Pu(p) => {
                if let Some(core) = p.core.as_mut() {
                    core.handle_connected(now, cl.local, connected)
                }
            }
            Role::Registrar(r) => {
                // A PSK association it dialled: the peer proved it holds
                // the dialler's own key.
                if let Some(core) = r.core.as_mut() {
                    core.handle_connected(now, cl.local, Some(PeerIdentity::Psk(client_name)))
                }
            }
        }
        self.after_input(cl.node);
    }

    fn connect_failed(&mut self, n: NodeId, conn: ConnId, incarnation: u32, reason: &'static str) {
        let node = &mut self.nodes[n];
        if node.incarnation != incarnation || node.health != Health::Up {
            return;
        }
        if !node.attempts.remove(&conn) {
            return;
        }
        let now = self.now;
        let failure = ConnectFailure::new(reason, None);
        match &mut node.role {
            Role::Pe(p) => {
                if let Some(core) = p.core.as_mut() {
                    core.handle_connect_failed(now, conn, failure)
                }
            }
            Role::Pu(p) => {
                if let Some(core) = p.core.as_mut() {
                    core.handle_connect_failed(now, conn, failure)
                }
            }
            Role::Registrar(r) => {
                if let Some(core) = r.core.as_mut() {
                    core.handle_connect_failed(now, conn, reason)
                }
            }
        }
        self.after_input(n);
    }

    /// Node `n`'s core sends message `what` on its connection `conn`;
    /// `encode` appends its bytes.
    fn send(
        &mut self,
        n: NodeId,
        conn: ConnId,
        what: &'static str,
        encode: impl FnOnce(&mut Vec<u8>) -> bool,
    ) {
        let Some(&key) = self.nodes[n].conns.get(&conn) else {
            let closed = self.nodes[n].closed.contains(&conn);
            let name = self.nodes[n].name.clone();
            self.violation(
                Rule::SendOnClosed,
                format!(
                    "{name} sends {what} on conn {conn}, which is {}",
                    if closed { "closed" } else { "unknown" }
                ),
            );
            return;
        };
        let mut bytes = self.buffers.pop().unwrap_or_default();
        if !encode(&mut bytes) {
            let name = self.nodes[n].name.clone();
            self.violation(
                Rule::Panic,
                format!("{name} sends {what} that does not encode"),
            );
            return;
        }
        self.stats.messages += 1;
        if self.trace.on() {
            let name = self.nodes[n].name.clone();
            self.note(|| format!("{name} -> conn {conn}: {what}"));
        }
        let from = self.end_of(key, n);
        self.transmit(key, from.other(), Segment::Data(bytes));
    }

    /// Keep a delivered segment's buffer for the next message (a few
    /// thousand at most: enough for the messages in flight at once).
    fn recycle(&mut self, mut bytes: Vec<u8>) {
        if self.buffers.len() < MAX_SPARE_BUFFERS {
            bytes.clear();
            self.buffers.push(bytes);
        }
    }

    fn end_of(&self, key: u64, n: NodeId) -> End {
        match self.conns.get(&key) {
            Some(c) if c.server.node == n => End::Server,
            _ => End::Client,
        }
    }

    /// Node `n`'s core closes its connection `conn`.
    fn close(&mut self, n: NodeId, conn: ConnId) {
        let node = &mut self.nodes[n];
        let Some(key) = node.conns.remove(&conn) else {
            return;
        };
        node.closed.insert(conn);
        let from = self.end_of(key, n);
        if let Some(c) = self.conns.get_mut(&key) {
            c.end_mut(from).open = false;
        }
        self.transmit(key, from.other(), Segment::Fin);
    }

    /// Put a segment on the wire towards end `to` of connection `key`.
    fn transmit(&mut self, key: u64, to: End, segment: Segment) {
        let Some(c) = self.conns.get(&key) else {
            return;
        };
        let (a, b) = (c.end(to.other()).node, c.end(to).node);
        if self.nodes[a].cut || self.nodes[b].cut {
            self.held.push((key, to, segment));
            return;
        }
        let transit = self
            .net
            .transit(self.nodes[a].latency, self.nodes[b].latency);
        let now = self.now;
        let Some(c) = self.conns.get_mut(&key) else {
            return;
        };
        let at = c.arrival(to, now, transit);
        self.schedule(at, Ev::Arrive { key, to, segment });
    }

    fn arrive(&mut self, key: u64, to: End, segment: Segment) {
        let Some(c) = self.conns.get(&key) else {
            return;
        };
        let end = *c.end(to);
        let node = &self.nodes[end.node];
        match node.health {
            Health::Vanished | Health::Crashed => return,
            Health::Up | Health::Frozen => {}
        }
        if node.incarnation != end.incarnation {
            // A restarted host does not know the connection: reset.
            if let Segment::Data(_) = segment {
                let other_open = c.end(to.other()).open;
                if other_open {
                    self.transmit(key, to.other(), Segment::Rst);
                }
            }
            return;
        }
        if !end.open {
            return;
        }
        let now = self.now;
        let n = end.node;
        match segment {
            Segment::Data(bytes) => {
                let node = &mut self.nodes[n];
                match &mut node.role {
                    Role::Registrar(r) => {
                        if let Some(core) = r.core.as_mut() {
                            core.handle_frame(now, end.local, &bytes)
                        }
                    }
                    Role::Pe(p) => {
                        if let Some(core) = p.core.as_mut() {
                            core.handle_frame(now, end.local, &bytes)
                        }
                    }
                    Role::Pu(p) => {
                        if let Some(core) = p.core.as_mut() {
                            core.handle_frame(now, end.local, &bytes)
                        }
                    }
                }
                self.recycle(bytes);
            }
            Segment::Fin | Segment::Rst => {
                let reason = if matches!(segment, Segment::Fin) {
                    "connection closed by the peer"
                } else {
                    "connection reset by peer"
                };
                if let Some(c) = self.conns.get_mut(&key) {
                    c.end_mut(to).open = false;
                }
                let node = &mut self.nodes[n];
                node.conns.remove(&end.local);
                node.closed.insert(end.local);
                let name = node.name.clone();
                match &mut node.role {
                    Role::Registrar(r) => {
                        if let Some(core) = r.core.as_mut() {
                            core.handle_disconnect(now, end.local)
                        }
                    }
                    Role::Pe(p) => {
                        if let Some(core) = p.core.as_mut() {
                            core.handle_disconnected(now, end.local, reason)
                        }
                    }
                    Role::Pu(p) => {
                        if let Some(core) = p.core.as_mut() {
                            core.handle_disconnected(now, end.local, reason)
                        }
                    }
                }
                self.note(|| format!("{name}: conn {}: {reason}", end.local));
            }
        }
        self.after_input(n);
    }

    // ---- processes and faults --------------------------------------

    /// Start node `n`'s process afresh.
    fn start_process(&mut self, n: NodeId) {
        let now = self.now;
        let registrars = self.registrars.clone();
        let settings = &self.settings;
        let seed = self.rng.random::<u64>();
        let node = &mut self.nodes[n];
        node.health = Health::Up;
        node.wake = None;
        node.backlog.clear();
        node.conns.clear();
        node.closed.clear();
        node.attempts.clear();
        match &mut node.role {
            Role::Registrar(r) => {
                r.core = RegistrarCore::new(r.config.clone(), now)
                    .ok()
                    .map(|c| c.with_apd(r.apd.clone()));
                r.next_conn = ConnId::new(1);
            }
            Role::Pe(p) => {
                let mut core = PeCore::new(registrars, settings.timers, settings.lifetime, seed);
                // As the driver does: a standby link to a second registrar.
                core.set_standby(true);
                if !p.stopped {
                    let spec = PoolElementSpec {
                        identifier: Some(p.identifier),
                        ..PoolElementSpec::new(p.pool.clone(), Policy::RoundRobin, p.port)
                    };
                    // The spec is valid by construction.
                    let _ = core.add_element(now, spec);
                }
                p.core = Some(core);
            }
            Role::Pu(p) => {
                p.core = Some(PuCore::new(
                    registrars,
                    settings.timers,
                    settings.pool_user,
                    ReportLimits::default(),
                    seed,
                ));
                p.using = None;
            }
        }
        if !node.cut && !matches!(&node.role, Role::Pe(p) if p.stopped) {
            node.unusable_since = None;
        }
        node.usable_since = now;
        self.after_input(n);
    }

    fn fault(&mut self, f: Fault) {
        let before = self.registrar_majority();
        self.apply_fault(f);
        if !before && self.registrar_majority() {
            self.majority_since = self.now;
        }
    }

    /// Whether more than half the registrars run and are not cut off
    /// (with one or two, whether one does: the survivor of two takes the
    /// other over alone).
    fn registrar_majority(&self) -> bool {
        let total = self.registrar_nodes.len();
        let up = self
            .registrar_nodes
            .iter()
            .filter(|&&r| self.nodes[r].health == Health::Up && !self.nodes[r].cut)
            .count();
        if total <= 2 {
            up >= 1
        } else {
            up * 2 > total
        }
    }

    fn apply_fault(&mut self, f: Fault) {
        let n = f.node();
        let name = self.nodes[n].name.clone();
        self.note(|| format!("FAULT {f:?} ({name})"));
        self.stats.faults += 1;
        let now = self.now;
        match f {
            Fault::Crash(_) | Fault::Vanish(_) => {
                if !matches!(self.nodes[n].health, Health::Up | Health::Frozen) {
                    return;
                }
                let reset = matches!(f, Fault::Crash(_));
                let mut keys: Vec<u64> = self.nodes[n].conns.values().copied().collect();
                keys.sort_unstable();
                for key in keys {
                    let from = self.end_of(key, n);
                    if let Some(c) = self.conns.get_mut(&key) {
                        c.end_mut(from).open = false;
                    }
                    if reset {
                        self.transmit(key, from.other(), Segment::Rst);
                    }
                }
                let node = &mut self.nodes[n];
                node.health = if reset {
                    Health::Crashed
                } else {
                    Health::Vanished
                };
                node.unusable_since.get_or_insert(now);
                node.conns.clear();
                node.attempts.clear();
                node.backlog.clear();
                node.wake = None;
                match &mut node.role {
                    Role::Registrar(r) => r.core = None,
                    Role::Pe(p) => p.core = None,
                    Role::Pu(p) => p.core = None,
                }
            }
            Fault::Restart(_) => {
                if matches!(self.nodes[n].health, Health::Crashed | Health::Vanished) {
                    self.nodes[n].incarnation += 1;
                    self.start_process(n);
                }
            }
            Fault::Freeze(_) => {
                let node = &mut self.nodes[n];
                if node.health == Health::Up {
                    node.health = Health::Frozen;
                    node.unusable_since.get_or_insert(now);
                }
            }
            Fault::Thaw(_) => {
                let node = &mut self.nodes[n];
                if node.health == Health::Frozen {
                    node.health = Health::Up;
                    node.usable_since = now;
                    if !node.cut && !matches!(&node.role, Role::Pe(p) if p.stopped) {
                        node.unusable_since = None;
                    }
                    let backlog = std::mem::take(&mut node.backlog);
                    for ev in backlog {
                        self.schedule(now, ev);
                    }
                    // Whatever fell due meanwhile.
                    if let Some(w) = self.nodes[n].wake {
                        self.schedule(w, Ev::Wake(n));
                    }
                }
            }
            Fault::Cut(_) => {
                let node = &mut self.nodes[n];
                node.cut = true;
                node.unusable_since.get_or_insert(now);
            }
            Fault::Heal(_) => {
                let node = &mut self.nodes[n];
                if !node.cut {
                    return;
                }
                node.cut = false;
                node.usable_since = now;
                if node.health == Health::Up && !matches!(&node.role, Role::Pe(p) if p.stopped) {
                    node.unusable_since = None;
                }
                let held = std::mem::take(&mut self.held);
                for (key, to, segment) in held {
                    self.transmit(key, to, segment);
                }
            }
            Fault::Stop(_) => {
                let node = &mut self.nodes[n];
                if let Role::Pe(p) = &mut node.role {
                    if p.stopped || node.health != Health::Up {
                        return;
                    }
                    p.stopped = true;
                    node.unusable_since.get_or_insert(now);
                    if let Some(core) = p.core.as_mut() {
                        core.deregister_all(now);
                    }
                    self.after_input(n);
                }
            }
            Fault::Start(_) => {
                let node = &mut self.nodes[n];
                let Role::Pe(p) = &mut node.role else {
                    return;
                };
                if !p.stopped {
                    return;
                }
                if p.core.is_some() {
                    // Still deregistering: a new process starts once the
                    // old one has left.
                    self.schedule(now + Duration::from_secs(1), Ev::Fault(f));
                    return;
                }
                p.stopped = false;
                node.incarnation += 1;
                self.start_process(n);
            }
        }
    }

    /// A stopped PE whose deregistration is over exits: its connections
    /// close (FIN), and its supervisor keeps it down until started.
    fn exit_if_done(&mut self, n: NodeId) {
        let node = &self.nodes[n];
        let done = matches!(&node.role, Role::Pe(p)
            if p.stopped && p.core.as_ref().is_some_and(PeCore::is_finished));
        if !done {
            return;
        }
        let mut conns: Vec<ConnId> = node.conns.keys().copied().collect();
        conns.sort_unstable();
        for c in conns {
            self.close(n, c);
        }
        let node = &mut self.nodes[n];
        node.health = Health::Crashed;
        node.attempts.clear();
        node.wake = None;
        if let Role::Pe(p) = &mut node.role {
            p.core = None;
        }
        let name = node.name.clone();
        self.note(|| format!("{name}: exits"));
    }

    // ---- the applications ------------------------------------------

    fn pu_use(&mut self, n: NodeId) {
        let next = self.draw(self.settings.use_interval);
        self.schedule(self.now + next, Ev::PuUse(n));
        if self.nodes[n].health != Health::Up || self.pools.is_empty() {
            return;
        }
        let pool = self.pools[self.rng.random_range(0..self.pools.len())].clone();
        let now = self.now;
        let Role::Pu(p) = &mut self.nodes[n].role else {
            return;
        };
        if p.using.is_some() {
            return;
        }
        let Some(core) = p.core.as_mut() else {
            return;
        };
        let token = p.next_token;
        p.next_token += 1;
        core.select(now, token, pool.clone());
        p.using = Some(Use {
            pool,
            token,
            tries: 1,
        });
        self.after_input(n);
    }

    fn selected(
        &mut self,
        n: NodeId,
        token: u64,
        result: Result<rserpool_wire::PoolElement, rserpool::ClientError>,
    ) {
        let now = self.now;
        let bound = self.settings.dead_bound;
        let max_tries = self.settings.max_tries;
        let Role::Pu(p) = &self.nodes[n].role else {
            return;
        };
        let Some(u) = p.using.clone().filter(|u| u.token == token) else {
            return;
        };
        let pe = match result {
            Ok(pe) => pe,
            Err(e) => {
                let name = self.nodes[n].name.clone();
                self.note(|| format!("{name}: use of {} failed: {e}", u.pool));
                self.stats.use_errors += 1;
                if let Role::Pu(p) = &mut self.nodes[n].role {
                    p.using = None;
                }
                return;
            }
        };
        let target = self.pe_node(&u.pool, pe.identifier);
        let live = target.is_some_and(|t| self.pe_live(t));
        if u.tries > 1 {
            self.stats.failovers += 1;
            if !live {
                // Counted from when the registrars that run could last
                // notice; with none running, a PU serves what it has
                // (stale entries), which the bound does not cover.
                let noticing = self
                    .nodes
                    .iter()
                    .filter(|x| matches!(x.role, Role::Registrar(_)))
                    .filter(|x| x.health == Health::Up && !x.cut)
                    .map(|x| x.usable_since)
                    .max()
                    .unwrap_or(now);
                let dead_for = target
                    .and_then(|t| self.nodes[t].unusable_since)
                    .map_or(Duration::MAX, |since| now - since.max(noticing));
                if dead_for > bound {
                    let name = self.nodes[n].name.clone();
                    self.violation(
                        Rule::FailoverToDead,
                        format!(
                            "{name} failed over to PE {:#x} of {}, dead for {dead_for:?}",
                            pe.identifier, u.pool
                        ),
                    );
                }
            }
        }
        let name = self.nodes[n].name.clone();
        self.note(|| {
            format!(
                "{name}: selected PE {:#x} of {} ({})",
                pe.identifier,
                u.pool,
                if live { "live" } else { "dead" }
            )
        });
        let Role::Pu(p) = &mut self.nodes[n].role else {
            return;
        };
        if live {
            self.stats.uses_ok += 1;
            p.using = None;
            return;
        }
        let Some(core) = p.core.as_mut() else {
            return;
        };
        // The PE does not answer: report it and fail over (RFC 5352 3.5).
        core.report_unreachable(now, &u.pool, pe.identifier);
        if u.tries >= max_tries {
            self.stats.use_errors += 1;
            p.using = None;
        } else {
            let token = p.next_token;
            p.next_token += 1;
            core.select(now, token, u.pool.clone());
            p.using = Some(Use {
                pool: u.pool,
                token,
                tries: u.tries + 1,
            });
        }
        self.after_input(n);
    }

    /// The node of PE `identifier` of `pool`.
    fn pe_node(&self, pool: &PoolHandle, identifier: PeId) -> Option<NodeId> {
        let n = *self
            .pe_nodes
            .get((identifier.get() as usize).checked_sub(1)?)?;
        matches!(&self.nodes[n].role, Role::Pe(p) if &p.pool == pool).then_some(n)
    }

    /// Whether PE node `n` can serve: running, reachable, not stopped.
    pub fn pe_live(&self, n: NodeId) -> bool {
        let node = &self.nodes[n];
        node.health == Health::Up
            && !node.cut
            && matches!(&node.role, Role::Pe(p) if !p.stopped && p.core.is_some())
    }

    // ---- the checks ------------------------------------------------

    /// A registrar hands out a PE dead for longer than the bound (counted
    /// from when the registrar itself could last notice: it may have been
    /// frozen or cut off too).
    fn check_resolution(
        &mut self,
        registrar: NodeId,
        pool: &PoolHandle,
        pes: &[rserpool_wire::PoolElement],
    ) {
        let bound = self.settings.dead_bound;
        let now = self.now;
        let noticing = self.nodes[registrar].usable_since;
        let mut bad = Vec::new();
        for pe in pes {
            let Some(t) = self.pe_node(pool, pe.identifier) else {
                bad.push(format!(
                    "PE {:#x} of {pool}, which no node is",
                    pe.identifier
                ));
                continue;
            };
            if self.pe_live(t) {
                continue;
            }
            if let Some(since) = self.nodes[t].unusable_since {
                let mut since = since.max(noticing);
                if self.settings.cluster {
                    // A PE whose home died while no majority of the
                    // registrars reached each other waits for the
                    // takeover a majority makes (module takeover of the
                    // registrar's ENRP): the bound runs from then.
                    since = since.max(self.majority_since);
                }
                if now - since > bound {
                    bad.push(format!(
                        "{} (PE {:#x} of {pool}), unusable for {:?}",
                        self.nodes[t].name,
                        pe.identifier,
                        now - since
                    ));
                }
            }
        }
        for b in bad {
            self.violation(Rule::DeadPeResolved, b);
        }
    }

    /// Each running registrar's bookkeeping against its handlespace.
    pub fn check_registrars(&mut self) {
        let mut bad = Vec::new();
        for node in &self.nodes {
            let Role::Registrar(r) = &node.role else {
                continue;
            };
            let Some(core) = r.core.as_ref() else {
                continue;
            };
            if let Err(e) = core.check_bookkeeping() {
                bad.push(format!("{}: {e}", node.name));
            }
        }
        for b in bad {
            self.violation(Rule::Bookkeeping, b);
        }
    }

    /// At quiescence: every live PE registered exactly once (with one
    /// running registrar, and its core says so), no other PE registered.
    /// In a cluster: every running registrar (not cut off) holds every
    /// live PE, all of them with the same home, a running registrar the
    /// PE agrees with, and sees every other running one as a peer up.
    pub fn check_quiescent(&mut self) {
        self.check_registrars();
        let cluster = self.settings.cluster;
        let mut bad = Vec::new();
        let running: Vec<(ServerId, &RegistrarCore)> = self
            .registrar_nodes
            .iter()
            .map(|&r| &self.nodes[r])
            .filter(|x| x.health == Health::Up && !(cluster && x.cut))
            .filter_map(|x| match &x.role {
                Role::Registrar(r) => r.core.as_ref().map(|c| (r.config.server_id, c)),
                _ => None,
            })
            .collect();
        let expected = if cluster { running.len() } else { 1 };
        for (key, &n) in &self.pes {
            let homes: BTreeSet<ServerId> = running
                .iter()
                .filter_map(|(_, c)| c.handlespace().find(&key.0, key.1).map(|e| e.home))
                .collect();
            let count = running
                .iter()
                .filter(|(_, c)| c.handlespace().find(&key.0, key.1).is_some())
                .count();
            let node = &self.nodes[n];
            if self.pe_live(n) {
                let status = match &node.role {
                    Role::Pe(p) => p.core.as_ref().and_then(|c| c.status(key.1)),
                    _ => None,
                };
                let says = status.as_ref().is_some_and(|s| s.registered);
                if count != expected || !says {
                    bad.push((
                        Rule::NotRegisteredOnce,
                        format!(
                            "{} (PE {:#x} of {}): in {count} of {} handlespaces, its core says {}",
                            node.name,
                            key.1,
                            key.0,
                            expected,
                            if says { "registered" } else { "not registered" }
                        ),
                    ));
                } else if cluster {
                    let home = homes.iter().next().copied();
                    let agrees = status
                        .as_ref()
                        .and_then(|s| s.home_server_id)
                        .map_or(true, |h| Some(h) == home);
                    let live = home.is_some_and(|h| running.iter().any(|(id, _)| *id == h));
                    if homes.len() != 1 || !live || !agrees {
                        bad.push((
                            Rule::HomeDisagrees,
                            format!(
                                "{} (PE {:#x} of {}): homes {homes:?}, the PE says {:?}",
                                node.name,
                                key.1,
                                key.0,
                                status.and_then(|s| s.home_server_id)
                            ),
                        ));
                    }
                }
            } else if count != 0 {
                bad.push((
                    Rule::DeadPeRegistered,
                    format!(
                        "{} (PE {:#x} of {}, {:?}{}) is in {count} handlespaces",
                        node.name,
                        key.1,
                        key.0,
                        node.health,
                        if node.cut { ", cut off" } else { "" }
                    ),
                ));
            }
        }
        if cluster {
            for (id, c) in &running {
                for (other, _) in &running {
                    if other != id && !c.peers().any(|p| p.server_id == *other && p.up) {
                        bad.push((Rule::PeerNotUp, format!("{id} does not see {other} up")));
                    }
                }
            }
        }
        for (rule, detail) in bad {
            self.violation(rule, detail);
        }
    }
}
