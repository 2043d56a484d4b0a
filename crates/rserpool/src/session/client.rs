//! The pool user's side of a session (tokio): [`Session`] talks to one PE
//! of a pool at a time over TLS and fails over to another when that one
//! fails (RFC 5351 section 3, RFC 5352 3.8 and 3.9):
//!
//! * it reports the failed PE ([`PoolUser::report_unreachable`]) and picks
//!   the next: first in the order of the failed PE's last business card,
//!   else by the pool's policy;
//! * the new PE's session must be at least as secure as the one it
//!   replaces and as [`SessionConfig::min_security`] (RFC 5355 2.9): a PE
//!   that offers less is passed over (not reported, it is alive), and if
//!   every PE does the failover fails with
//!   [`SessionError::SecurityDowngrade`];
//! * the latest cookie the failed PE sent is echoed to the new one as
//!   the first control message (RFC 5352 3.8), and the application hears
//!   of the failover ([`SessionEvent::FailedOver`]: which PE, its level
//!   and identity), so it can do what its own protocol needs (2.9.3).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use rserpool_security::{PeerIdentity, TlsClient};
use rserpool_wire::framing::PPID_ASAP;
use rserpool_wire::{AsapMessage, CauseCode, PeId, PoolElement, PoolHandle, Transport};
use tokio::net::TcpStream;

use super::channel::{control_message, Channel};
use super::error::Skipped;
use super::{SecurityLevel, SessionError};
use crate::PoolUser;

/// Largest payload of one frame a session takes by default.
pub const DEFAULT_MAX_PAYLOAD: usize = 64 * 1024;

/// Undecodable control messages a session tolerates from one PE.
const MAX_MALFORMED: u32 = 16;

/// How a pool user's sessions connect to PEs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SessionConfig {
    /// TLS towards the PEs (their pre-shared key, or the CA that signs
    /// their certificates); `None` is plain TCP, the insecure lab mode.
    pub tls: Option<TlsClient>,
    /// The name PE certificates must carry; `None`: the PE's IP address.
    pub server_name: Option<String>,
    /// The weakest session accepted, from the first PE on; failovers
    /// also keep the level of the session they replace.
    pub min_security: SecurityLevel,
    /// Deadline of one PE's TCP connect and TLS handshake.
    pub connect_timeout: Duration,
    /// Deadline of one write.
    pub write_timeout: Duration,
    /// Largest frame payload, both ways.
    pub max_payload: usize,
    /// PEs tried in one failover before giving up.
    pub max_attempts: usize,
}

impl SessionConfig {
    /// Sessions over `tls`, at least [`SecurityLevel::ServerAuthenticated`].
    pub fn new(tls: TlsClient) -> SessionConfig {
        SessionConfig {
            tls: Some(tls),
            ..SessionConfig::defaults()
        }
    }

    /// Plain-TCP sessions: the lab mode, anyone on the path reads and
    /// changes the data and the cookies.
    pub fn insecure() -> SessionConfig {
        SessionConfig {
            min_security: SecurityLevel::Plain,
            ..SessionConfig::defaults()
        }
    }

    fn defaults() -> SessionConfig {
        SessionConfig {
            tls: None,
            server_name: None,
            min_security: SecurityLevel::ServerAuthenticated,
            connect_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            max_payload: DEFAULT_MAX_PAYLOAD,
            max_attempts: 8,
        }
    }
}

/// The PE a session talks to.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The PE as the registrar handed it out.
    pub pe: PoolElement,
    /// Where the session connected.
    pub address: SocketAddr,
    /// How well the session is protected.
    pub security: SecurityLevel,
    /// Who the PE proved to be (`None` on plain TCP).
    pub identity: Option<PeerIdentity>,
}

/// A failover that happened (RFC 5355 2.9.3: the application is told).
#[derive(Debug, Clone)]
pub struct Failover {
    /// The PE that failed.
    pub from: PeId,
    /// Why it counted as failed.
    pub reason: String,
    /// The PE the session now talks to.
    pub to: Peer,
    /// Whether the latest cookie was echoed to it.
    pub cookie_echoed: bool,
    /// PEs tried before it and why they were not used.
    pub skipped: Vec<Skipped>,
}

/// What a session receives.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SessionEvent {
    /// User data from the PE.
    Data {
        /// Its payload protocol identifier.
        ppid: u32,
        /// The payload.
        payload: Bytes,
    },
    /// The PE failed and the session moved to another.
    FailedOver(Failover),
    /// The PE sent its business card (RFC 5352 3.9): the failover order
    /// it recommends, which the next failover follows.
    BusinessCard {
        /// The pool it names.
        pool_handle: PoolHandle,
        /// The PEs, in order.
        order: Vec<PeId>,
    },
}

/// What became of a message sent.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Sent {
    /// Written to the session's PE.
    Delivered,
    /// The PE had failed: the session failed over and the message was
    /// written to the new PE (ASAP_SEND_FAILOVER, RFC 5352 6.5.5;
    /// anything sent to the failed PE before may be lost).
    AfterFailover(Box<Failover>),
}

/// A pool user's session with a pool (see the module documentation).
pub struct Session {
    pu: PoolUser,
    pool: PoolHandle,
    config: SessionConfig,
    channel: Option<Channel>,
    peer: Peer,
    floor: SecurityLevel,
    cookie: Option<Vec<u8>>,
    echoed_to: Option<PeId>,
    card: Vec<PeId>,
    malformed: u32,
    failovers: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("pool", &self.pool)
            .field("peer", &self.peer)
            .field("floor", &self.floor)
            .field("failovers", &self.failovers)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Open a session with a PE of `pool`, picked by the pool's policy.
    pub async fn open(
        pu: PoolUser,
        pool: PoolHandle,
        config: SessionConfig,
    ) -> Result<Session, SessionError> {
        if config.tls.is_none() && config.min_security > SecurityLevel::Plain {
            return Err(SessionError::Usage(
                "sessions without TLS need SessionConfig::insecure()",
            ));
        }
        if config.tls.is_none() {
            tracing::warn!(pool = %pool, "session in INSECURE mode: plain TCP to the PEs");
        }
        let floor = config.min_security;
        let (channel, peer, _) = connect_some(&pu, &pool, &config, floor, &[]).await?;
        tracing::debug!(pool = %pool, pe = %peer.pe.identifier, security = %peer.security, "session open");
        Ok(Session {
            pu,
            pool,
            floor: floor.max(peer.security),
            config,
            channel: Some(channel),
            peer,
            cookie: None,
            echoed_to: None,
            card: Vec::new(),
            malformed: 0,
            failovers: 0,
        })
    }

    /// The PE the session talks to.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// The weakest level a failover may reach.
    pub fn floor(&self) -> SecurityLevel {
        self.floor
    }

    /// Failovers so far.
    pub fn failovers(&self) -> u64 {
        self.failovers
    }

    /// The latest cookie of the PE, as it sent it.
    pub fn cookie(&self) -> Option<&[u8]> {
        self.cookie.as_deref()
    }

    /// Send user data (`ppid` anything but 11, the ASAP control channel's)
    /// to the PE; if it has failed, fail over and send it to the next.
    pub async fn send(&mut self, ppid: u32, payload: &[u8]) -> Result<Sent, SessionError> {
        if ppid == PPID_ASAP {
            return Err(SessionError::Usage("ppid 11 is the ASAP control channel's"));
        }
        if payload.len() > self.config.max_payload {
            return Err(SessionError::Usage(
                "payload longer than the session's maximum",
            ));
        }
        let channel = self.channel.as_mut().ok_or(SessionError::Closed)?;
        match channel.write_frame(ppid, payload).await {
            Ok(()) => Ok(Sent::Delivered),
            Err(e) => {
                let failover = self.fail_over(&format!("write failed: {e}")).await?;
                let channel = self.channel.as_mut().ok_or(SessionError::Closed)?;
                if let Err(e) = channel.write_frame(ppid, payload).await {
                    // The new PE failed at once: the next call fails over again.
                    tracing::debug!(error = %e, "write to the new PE failed");
                }
                Ok(Sent::AfterFailover(Box::new(failover)))
            }
        }
    }

    /// The next event: user data, a business card, or a failover when the
    /// PE closed the session or failed (cookies are kept, not returned).
    pub async fn recv(&mut self) -> Result<SessionEvent, SessionError> {
        loop {
            let channel = self.channel.as_mut().ok_or(SessionError::Closed)?;
            let frame = match channel.read_frame().await {
                Ok(Some(f)) => f,
                Ok(None) => {
                    let f = self.fail_over("the PE closed the session").await?;
                    return Ok(SessionEvent::FailedOver(f));
                }
                Err(e) => {
                    let f = self.fail_over(&format!("{e}")).await?;
                    return Ok(SessionEvent::FailedOver(f));
                }
            };
            if !frame.is_control() {
                return Ok(SessionEvent::Data {
                    ppid: frame.ppid,
                    payload: frame.payload,
                });
            }
            if let Some(event) = self.control(&frame.payload).await? {
                return Ok(event);
            }
        }
    }

    /// Fail over now (the application decided the PE has failed, for
    /// example it stopped answering): report it, move to the next.
    pub async fn fail_over(&mut self, reason: &str) -> Result<Failover, SessionError> {
        let from = self.peer.pe.identifier;
        if let Some(mut c) = self.channel.take() {
            c.shutdown().await;
        }
        tracing::info!(pool = %self.pool, pe = %from, %reason, "session failing over");
        let _ = self.pu.report_unreachable(&self.pool, from).await;
        let prefer: Vec<PeId> = self.card.iter().copied().filter(|p| *p != from).collect();
        let (mut channel, peer, skipped) =
            connect_some(&self.pu, &self.pool, &self.config, self.floor, &prefer).await?;
        let mut cookie_echoed = false;
        if let Some(cookie) = &self.cookie {
            // RFC 5352 3.8: the latest cookie, unmodified, first.
            let echo = AsapMessage::CookieEcho {
                cookie: cookie.clone(),
            };
            match channel.write_control(&echo).await {
                Ok(()) => cookie_echoed = true,
                Err(e) => tracing::debug!(error = %e, "cookie echo not sent"),
            }
        }
        self.failovers += 1;
        self.floor = self.floor.max(peer.security);
        self.echoed_to = cookie_echoed.then_some(peer.pe.identifier);
        self.channel = Some(channel);
        self.peer = peer.clone();
        self.card.clear();
        self.malformed = 0;
        tracing::info!(
            pool = %self.pool, from = %from, to = %peer.pe.identifier,
            security = %peer.security, cookie_echoed, "session failed over"
        );
        Ok(Failover {
            from,
            reason: reason.to_owned(),
            to: peer,
            cookie_echoed,
            skipped,
        })
    }

    /// Close the session (TLS close_notify to the PE).
    pub async fn close(mut self) {
        if let Some(mut c) = self.channel.take() {
            c.shutdown().await;
        }
    }

    /// One control message from the PE.
    async fn control(&mut self, payload: &Bytes) -> Result<Option<SessionEvent>, SessionError> {
        let pe = self.peer.pe.identifier;
        let msg = match control_message(payload) {
            Ok(m) => m,
            Err(e) => {
                self.malformed += 1;
                tracing::debug!(%pe, error = %e, "undecodable control message from the PE");
                if self.malformed > MAX_MALFORMED {
                    let f = self
                        .fail_over("too many undecodable control messages")
                        .await?;
                    return Ok(Some(SessionEvent::FailedOver(f)));
                }
                return Ok(None);
            }
        };
        match msg {
            AsapMessage::Cookie { cookie } => {
                // RFC 5352 3.8: keep the latest only.
                self.cookie = Some(cookie);
                Ok(None)
            }
            AsapMessage::BusinessCard {
                pool_handle,
                pool_elements,
            } => {
                let order: Vec<PeId> = pool_elements.iter().map(|p| p.identifier).collect();
                if pool_handle == self.pool {
                    self.card = order.clone();
                }
                Ok(Some(SessionEvent::BusinessCard { pool_handle, order }))
            }
            AsapMessage::Error { error } => {
                let refused = error
                    .causes
                    .iter()
                    .find(|c| c.code == CauseCode::RejectedSecurity);
                match (refused, self.echoed_to) {
                    (Some(cause), Some(to)) if to == pe => {
                        let reason = String::from_utf8_lossy(&cause.info).into_owned();
                        if let Some(mut c) = self.channel.take() {
                            c.shutdown().await;
                        }
                        tracing::warn!(%pe, %reason, "the PE refused the session's cookie");
                        Err(SessionError::CookieRefused { pe, reason })
                    }
                    _ => {
                        tracing::debug!(%pe, ?error, "ASAP_ERROR from the PE");
                        Ok(None)
                    }
                }
            }
            other => {
                tracing::debug!(%pe, msg = other.name(), "control message a PU does not take");
                Ok(None)
            }
        }
    }
}

/// Connect to a PE of `pool` at `floor` or better: the `prefer`red ones
/// first (a business card's order), then by the pool's policy. Returns
/// the channel, the PE and what was skipped on the way.
async fn connect_some(
    pu: &PoolUser,
    pool: &PoolHandle,
    config: &SessionConfig,
    floor: SecurityLevel,
    prefer: &[PeId],
) -> Result<(Channel, Peer, Vec<Skipped>), SessionError> {
    let mut tried: Vec<Skipped> = Vec::new();
    let mut weak: Vec<PeId> = Vec::new();
    let mut preferred = prefer.iter();
    for _ in 0..config.max_attempts.max(1) {
        let candidate = match next_candidate(pu, pool, &mut preferred, &tried).await {
            Ok(Some(pe)) => pe,
            Ok(None) => break,
            Err(e) if tried.is_empty() => return Err(e.into()),
            Err(_) => break,
        };
        let id = candidate.identifier;
        let Some(address) = user_address(&candidate) else {
            tried.push(Skipped {
                pe: id,
                reason: "offers no TCP transport".into(),
            });
            continue;
        };
        match connect_one(config, address).await {
            Ok((channel, security, identity)) if security >= floor => {
                let peer = Peer {
                    pe: candidate,
                    address,
                    security,
                    identity,
                };
                return Ok((channel, peer, tried));
            }
            Ok((mut channel, security, _)) => {
                // Alive but weaker: not unreachable, just not usable.
                channel.shutdown().await;
                tracing::warn!(pe = %id, %security, %floor, "PE passed over: weaker than the session");
                weak.push(id);
                tried.push(Skipped {
                    pe: id,
                    reason: format!("offers {security}, the session needs at least {floor}"),
                });
            }
            Err(reason) => {
                let _ = pu.report_unreachable(pool, id).await;
                tried.push(Skipped { pe: id, reason });
            }
        }
    }
    // Every PE that could be reached was weaker (the others are dead,
    // or offer no TCP): a downgrade refused, not a pool without PEs.
    if !weak.is_empty() {
        return Err(SessionError::SecurityDowngrade {
            pool: pool.clone(),
            floor,
            tried,
        });
    }
    Err(SessionError::NoPoolElement {
        pool: pool.clone(),
        tried,
    })
}

/// The next PE to try: a preferred one still in the pool, else the
/// policy's pick, else any resolved PE not tried yet.
async fn next_candidate(
    pu: &PoolUser,
    pool: &PoolHandle,
    preferred: &mut std::slice::Iter<'_, PeId>,
    tried: &[Skipped],
) -> Result<Option<PoolElement>, crate::ClientError> {
    let was_tried = |id: PeId| tried.iter().any(|s| s.pe == id);
    let all = pu.resolve(pool).await?;
    for id in preferred.by_ref() {
        if was_tried(*id) {
            continue;
        }
        if let Some(pe) = all.iter().find(|p| p.identifier == *id) {
            return Ok(Some(pe.clone()));
        }
    }
    match pu.select(pool).await {
        Ok(pe) if !was_tried(pe.identifier) => return Ok(Some(pe)),
        Ok(_) | Err(crate::ClientError::NoUsablePoolElement(_)) => {}
        Err(e) => return Err(e),
    }
    Ok(all.into_iter().find(|p| !was_tried(p.identifier)))
}

/// One connection: TCP, then TLS, within the connect deadline.
async fn connect_one(
    config: &SessionConfig,
    address: SocketAddr,
) -> Result<(Channel, SecurityLevel, Option<PeerIdentity>), String> {
    let attempt = async {
        let tcp = TcpStream::connect(address)
            .await
            .map_err(|e| format!("cannot connect to {address}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        match &config.tls {
            None => Ok((
                Channel::new(Box::new(tcp), config.max_payload, config.write_timeout),
                SecurityLevel::Plain,
                None,
            )),
            Some(tls) => {
                let name = config
                    .server_name
                    .clone()
                    .unwrap_or_else(|| address.ip().to_string());
                let (stream, identity) = tls
                    .connect(tcp, &name)
                    .await
                    .map_err(|e| format!("TLS with {address}: {e}"))?;
                Ok((
                    Channel::new(Box::new(stream), config.max_payload, config.write_timeout),
                    SecurityLevel::of_server(&identity),
                    Some(identity),
                ))
            }
        }
    };
    match tokio::time::timeout(config.connect_timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no session with {address} within {:?}",
            config.connect_timeout
        )),
    }
}

/// The TCP address a PE serves its users on.
pub fn user_address(p: &PoolElement) -> Option<SocketAddr> {
    match &p.user_transport {
        Transport::Tcp { port, address, .. } => Some(SocketAddr::new(*address, *port)),
        _ => None,
    }
}
