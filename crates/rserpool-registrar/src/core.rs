//! The registrar's sans-IO state machine (DESIGN section 2): connections
//! come and go, frames arrive, time passes; the core answers with
//! [`Output`]s. It owns the handlespace and applies the rules of RFC 5352
//! sections 3.1-3.5 with the security rules of RFC 5355 (identity
//! binding, own-address rule, rate limits, keep-alive limit).
//!
//! This module owns the core's state, its clock-driven work
//! ([`RegistrarCore::handle_timeout`]) and the output queue. By concern:
//!
//! * [`connections`]: connections in and out, their kinds, frames, the
//!   one path for undecodable input, revocations.
//! * [`asap`]: the ASAP server side (RFC 5352 3.1-3.5).
//! * [`enrp`]: ENRP (RFC 5353) on peer connections; not implemented
//!   yet, so every message is answered as an unprepared server does.
//! * [`limits`]: the rate limits per identity and per source address.
//! * [`authorisation`]: the authorised peer database: where it applies
//!   and the re-validation after a change.
//! * [`operator`]: operators' drains, undrains and removals of PEs.
//!
//! ENRP (RFC 5353) modules sit beside them.

mod asap;
mod authorisation;
mod bookkeeping;
mod connections;
mod enrp;
mod limits;
pub mod operator;
mod standby;

pub use bookkeeping::BookkeepingError;
pub use connections::{ConnectError, OUTBOUND_CONNECTIONS};
pub use limits::{RateLimited, RefusedByLayer};

use std::collections::VecDeque;
use std::time::Instant;

use rand::rngs::SmallRng;
use rand::SeedableRng;
use rserpool_handlespace::{ConnId, Handlespace, Identity};
use rserpool_security::apd::Apd;
use rserpool_wire::{AsapMessage, Cause, EnrpMessage, OperationError, ServerId};
use rustc_hash::FxHashMap;

use crate::client::{Client, OpenConnection, Protocol};
use crate::config::{CoreConfig, InvalidSetting};
use crate::output::{Event, Message, Output, Stats};

use limits::Limits;

/// The registrar core.
#[derive(Debug)]
pub struct RegistrarCore {
    config: CoreConfig,
    handlespace: Handlespace,
    clients: FxHashMap<ConnId, Client>,
    /// Connections asked of the driver ([`Output::Connect`]) and not
    /// yet established or failed.
    pending: FxHashMap<ConnId, connections::Pending>,
    /// The next handle [`RegistrarCore::connect`] gives out.
    next_outbound: ConnId,
    connections_per_identity: FxHashMap<Identity, usize>,
    limits: Limits,
    /// The authorised peer database ([`Apd::permissive`] until one is
    /// given).
    apd: Apd,
    rng: SmallRng,
    /// ENRP: peers, initialisation, transfers.
    enrp: enrp::Enrp,
    /// The PEs' standby links (module `standby`).
    standby: standby::Standbys,
    outputs: VecDeque<Output>,
    stats: Stats,
}

impl RegistrarCore {
    /// A core with an empty handlespace. `now` starts the rate limiters.
    pub fn new(config: CoreConfig, now: Instant) -> Result<Self, InvalidSetting> {
        config.validate()?;
        let mut rng = SmallRng::seed_from_u64(config.seed);
        let enrp = enrp::Enrp::new(&config.enrp, enrp::draw_nonce(&mut rng), now);
        Ok(RegistrarCore {
            handlespace: Handlespace::new(rserpool_handlespace::Config {
                default_items: config.default_items,
            }),
            clients: FxHashMap::default(),
            pending: FxHashMap::default(),
            next_outbound: OUTBOUND_CONNECTIONS,
            connections_per_identity: FxHashMap::default(),
            limits: Limits::new(&config, now),
            apd: Apd::permissive(false),
            rng,
            enrp,
            standby: standby::Standbys::default(),
            outputs: VecDeque::new(),
            stats: Stats::default(),
            config,
        })
    }

    /// The core deciding with `apd` from the start (no re-validation: it
    /// holds nothing yet). Without it: [`Apd::permissive`] without
    /// foreign addresses. Later changes: [`Self::replace_apd`].
    pub fn with_apd(mut self, apd: Apd) -> Self {
        self.apd = apd;
        self
    }

    /// The settings.
    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    /// The handlespace (read-only).
    pub fn handlespace(&self) -> &Handlespace {
        &self.handlespace
    }

    /// Counters since start.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Open connections (of every kind; not those still being opened).
    pub fn connections(&self) -> usize {
        self.clients.len()
    }

    /// The open connections, in no particular order.
    pub fn open_connections(&self) -> impl Iterator<Item = OpenConnection<'_>> {
        self.clients.iter().map(|(&conn, p)| OpenConnection {
            conn,
            identity: &p.identity,
            address: p.address,
            kind: p.kind,
            peer: p.peer.as_ref(),
            may_register: p.may_register,
            connected_at: p.connected_at,
        })
    }

    // ----- time -------------------------------------------------------------

    /// The earliest time [`Self::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let hs = self.handlespace.next_deadline();
        let prune = self.limits.next_prune();
        let earliest = [hs, self.enrp_deadline()]
            .into_iter()
            .flatten()
            .fold(prune, Instant::min);
        Some(earliest)
    }

    /// Deadlines that passed: lifetimes end, keep-alives go out, PEs that
    /// did not answer are removed.
    pub fn handle_timeout(&mut self, now: Instant) {
        for exp in self.handlespace.pop_expired(now) {
            self.pe_deadline(now, exp);
        }
        self.limits.handle_timeout(now);
        self.enrp_timeout(now);
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The handlespace, to put PEs of other registrars in (tests, until
    /// ENRP brings them).
    #[cfg(test)]
    pub(crate) fn handlespace_mut(&mut self) -> &mut Handlespace {
        &mut self.handlespace
    }

    /// Check the core's own bookkeeping against the handlespace (tests).
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        if let Err(e) = self.check_bookkeeping() {
            panic!("{e}");
        }
    }

    /// Report an event.
    pub(super) fn push_event(&mut self, e: Event) {
        self.outputs.push_back(Output::Event(e));
    }

    /// Queue a message; every error cause that goes out is counted here.
    pub(super) fn send(&mut self, conn: ConnId, msg: impl Into<Message>) {
        let msg = msg.into();
        match &msg {
            Message::Asap(
                AsapMessage::Error { error }
                | AsapMessage::RegistrationResponse {
                    error: Some(error), ..
                }
                | AsapMessage::DeregistrationResponse {
                    error: Some(error), ..
                }
                | AsapMessage::HandleResolutionResponse {
                    error: Some(error), ..
                },
            )
            | Message::Enrp(EnrpMessage::Error { error, .. }, _) => self.stats.count_errors(error),
            _ => {}
        }
        self.outputs.push_back(Output::Send { conn, msg });
    }

    /// The protocol `conn` speaks (ASAP for a connection the core does
    /// not know).
    pub(super) fn protocol_of(&self, conn: ConnId) -> Protocol {
        self.clients
            .get(&conn)
            .map_or(Protocol::Asap, |c| c.kind.protocol())
    }

    /// An operation error in `protocol`: ASAP_ERROR (RFC 5352 2.2.14) or
    /// ENRP_ERROR (RFC 5353 2.10). Peer server identifiers are learnt
    /// with ENRP; until then the receiver is 0, as for a receiver not yet
    /// known (RFC 5353 2.1).
    pub(super) fn send_operation_error_in(
        &mut self,
        conn: ConnId,
        protocol: Protocol,
        error: OperationError,
    ) {
        let msg: Message = match protocol {
            Protocol::Asap => AsapMessage::Error { error }.into(),
            Protocol::Enrp => EnrpMessage::Error {
                sender: self.config.server_id,
                receiver: ServerId::UNDETERMINED,
                error,
            }
            .into(),
        };
        self.send(conn, msg);
    }

    /// An error with one cause in `protocol` (for a connection refused as
    /// it opens, which the core does not know).
    pub(super) fn send_error_in(&mut self, conn: ConnId, protocol: Protocol, cause: Cause) {
        self.send_operation_error_in(conn, protocol, OperationError::single(cause));
    }

    /// An error with one cause in the protocol of `conn`.
    pub(super) fn send_error(&mut self, conn: ConnId, cause: Cause) {
        let protocol = self.protocol_of(conn);
        self.send_error_in(conn, protocol, cause);
    }

    /// Ask the driver to close `conn`, once.
    pub(super) fn close(&mut self, conn: ConnId, reason: String) {
        if let Some(p) = self.clients.get_mut(&conn) {
            if p.closing {
                return;
            }
            p.closing = true;
        }
        self.outputs.push_back(Output::Close { conn, reason });
    }
}
