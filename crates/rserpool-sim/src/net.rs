//! The in-memory network: how long a segment takes from one node to
//! another, and the connections between nodes.
//!
//! * Each node has its own latency to the network; a segment from `a` to
//!   `b` takes both latencies plus a uniform jitter.
//! * Loss is modelled as TCP sees it: a lost segment arrives one
//!   retransmission timeout later (maybe several), never not at all, and
//!   never out of order on its connection.
//! * A node cut off from the network (a partition) sends and receives
//!   nothing: what its connections carry is held, and goes on when the
//!   cut heals (TCP keeps retransmitting; the time TCP gives up after is
//!   longer than any cut here).
//! * A crashed process's host resets its connections (the peer learns at
//!   once); a vanished host, or a frozen process, says nothing.

use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use rserpool_wire::ConnId;

/// A node in the world.
pub type NodeId = usize;

/// The network's behaviour.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetConfig {
    /// Each node's latency to the network is drawn from this range.
    pub latency: (Duration, Duration),
    /// Added to every segment, uniformly from zero to this.
    pub jitter: Duration,
    /// Probability that a segment is lost (and retransmitted).
    pub loss: f64,
    /// TCP's retransmission timeout for a lost segment.
    pub rto: Duration,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            latency: (Duration::from_micros(100), Duration::from_millis(20)),
            jitter: Duration::from_millis(2),
            loss: 0.0,
            rto: Duration::from_millis(200),
        }
    }
}

/// The network's random draws.
#[derive(Debug)]
pub struct Network {
    config: NetConfig,
    rng: SmallRng,
}

impl Network {
    /// A network with `config`, drawing from `seed`.
    pub fn new(config: NetConfig, seed: u64) -> Self {
        Network {
            config,
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &NetConfig {
        &self.config
    }

    /// A node's latency to the network.
    pub fn node_latency(&mut self) -> Duration {
        let (lo, hi) = self.config.latency;
        if hi <= lo {
            return lo;
        }
        lo + Duration::from_nanos(self.rng.random_range(0..(hi - lo).as_nanos() as u64))
    }

    /// How long one segment takes between nodes of latencies `a` and `b`.
    pub fn transit(&mut self, a: Duration, b: Duration) -> Duration {
        let mut t = a + b;
        let jitter = self.config.jitter.as_nanos() as u64;
        if jitter > 0 {
            t += Duration::from_nanos(self.rng.random_range(0..=jitter));
        }
        if self.config.loss > 0.0 {
            let mut rto = self.config.rto;
            // Each retransmission may be lost too; RTO doubles (RFC 6298).
            while self.rng.random_bool(self.config.loss.min(0.9)) {
                t += rto;
                rto *= 2;
            }
        }
        t
    }
}

/// Which end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The side that dialled (a PE or PU).
    Client,
    /// The registrar.
    Server,
}

impl End {
    /// The other end.
    pub fn other(self) -> End {
        match self {
            End::Client => End::Server,
            End::Server => End::Client,
        }
    }
}

/// One end of a connection.
#[derive(Debug, Clone, Copy)]
pub struct EndPoint {
    /// Its node.
    pub node: NodeId,
    /// The connection id its core knows it by.
    pub local: ConnId,
    /// The node's incarnation that owns it (a restarted process does not
    /// know the connections of the one before).
    pub incarnation: u32,
    /// Whether its core still has it (neither closed it nor was told it
    /// closed).
    pub open: bool,
}

/// A TCP connection between a client and a registrar.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The dialling side.
    pub client: EndPoint,
    /// The registrar side.
    pub server: EndPoint,
    /// Whether the handshake finished (both cores were told).
    pub established: bool,
    /// Registrar to registrar (ENRP), dialled to the server's ENRP port.
    pub enrp: bool,
    /// When the last segment towards each end arrives (segments of one
    /// connection arrive in order): to the client, to the server.
    pub last_arrival: [Instant; 2],
}

impl Connection {
    /// One end.
    pub fn end(&self, end: End) -> &EndPoint {
        match end {
            End::Client => &self.client,
            End::Server => &self.server,
        }
    }

    /// One end, to change.
    pub fn end_mut(&mut self, end: End) -> &mut EndPoint {
        match end {
            End::Client => &mut self.client,
            End::Server => &mut self.server,
        }
    }

    /// When a segment sent now towards `to`, taking `transit`, arrives:
    /// never before the one sent before it.
    pub fn arrival(&mut self, to: End, now: Instant, transit: Duration) -> Instant {
        let slot = &mut self.last_arrival[to as usize];
        let at = (now + transit).max(*slot);
        *slot = at;
        at
    }
}

/// The connections of a world, by key (keys are handed out in order, so
/// a vector holds them).
#[derive(Debug, Default)]
pub struct ConnTable {
    slots: Vec<Option<Connection>>,
}

impl ConnTable {
    /// Connection `key`.
    pub fn get(&self, key: &u64) -> Option<&Connection> {
        self.slots.get(*key as usize)?.as_ref()
    }

    /// Connection `key`, to change.
    pub fn get_mut(&mut self, key: &u64) -> Option<&mut Connection> {
        self.slots.get_mut(*key as usize)?.as_mut()
    }

    /// Store connection `key`.
    pub fn insert(&mut self, key: u64, c: Connection) {
        let i = key as usize;
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, || None);
        }
        self.slots[i] = Some(c);
    }

    /// Forget connection `key`.
    pub fn remove(&mut self, key: &u64) {
        if let Some(s) = self.slots.get_mut(*key as usize) {
            *s = None;
        }
    }
}
