//! The pool element's side of sessions (tokio): [`SessionServer`] accepts
//! PU connections on the PE's user transport, [`PendingSession`] runs the
//! TLS handshake under a deadline (the application spawns it, so a slow
//! handshake holds no accept loop), and [`ServerSession`] carries user
//! data and the control channel:
//!
//! * cookies it issues ([`ServerSession::send_cookie`]) are signed with
//!   the pool's [`CookieKeys`], carry the session's id, a counter and its
//!   security level (RFC 5355 2.16, 2.8);
//! * a cookie echo (only as the first control message, RFC 5352 3.8) is
//!   verified: a forged, altered, foreign, expired, replayed or
//!   downgraded cookie gets ASAP_ERROR "rejected due to security
//!   considerations" with the reason, a log line, and the session is
//!   closed ([`SessionError::BadCookie`]); a good one is handed to the
//!   application ([`ServerEvent::Resumed`]) and the session continues
//!   under its id.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rserpool_security::{PeerIdentity, TlsServer};
use rserpool_wire::{AsapMessage, Cause, CauseCode, OperationError, PoolElement, PoolHandle};
use tokio::net::{TcpListener, TcpStream};

use super::channel::{control_message, Channel};
use super::client::DEFAULT_MAX_PAYLOAD;
use super::cookie::{CookieContents, CookieKeys, ReplayGuard, SessionId};
use super::{SecurityLevel, SessionError};

/// Undecodable control messages tolerated from one PU.
const MAX_MALFORMED: u32 = 16;

/// How a PE serves sessions.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SessionServerConfig {
    /// TLS towards the PUs (the PUs' pre-shared keys, or a certificate);
    /// `None` is plain TCP, the insecure lab mode.
    pub tls: Option<Arc<TlsServer>>,
    /// The key the pool's PEs share to sign cookies; without it the PE
    /// issues none and refuses every cookie echo.
    pub cookie_keys: Option<CookieKeys>,
    /// Oldest cookie accepted.
    pub cookie_max_age: Duration,
    /// Clock difference between PEs tolerated.
    pub clock_skew: Duration,
    /// Sessions whose newest cookie counter is remembered (replays).
    pub replay_capacity: usize,
    /// Deadline of a PU's TLS handshake.
    pub handshake_timeout: Duration,
    /// Deadline of one write.
    pub write_timeout: Duration,
    /// Largest frame payload, both ways.
    pub max_payload: usize,
}

impl SessionServerConfig {
    /// Sessions over TLS.
    pub fn new(tls: Arc<TlsServer>) -> SessionServerConfig {
        SessionServerConfig {
            tls: Some(tls),
            ..SessionServerConfig::defaults()
        }
    }

    /// Plain-TCP sessions (the lab mode).
    pub fn insecure() -> SessionServerConfig {
        SessionServerConfig::defaults()
    }

    /// With cookies signed by `keys`.
    pub fn with_cookie_keys(mut self, keys: CookieKeys) -> SessionServerConfig {
        self.cookie_keys = Some(keys);
        self
    }

    fn defaults() -> SessionServerConfig {
        SessionServerConfig {
            tls: None,
            cookie_keys: None,
            cookie_max_age: Duration::from_secs(3600),
            clock_skew: Duration::from_secs(30),
            replay_capacity: 100_000,
            handshake_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            max_payload: DEFAULT_MAX_PAYLOAD,
        }
    }
}

struct Shared {
    config: SessionServerConfig,
    replays: Mutex<ReplayGuard>,
}

/// Accepts sessions on a PE's user transport.
pub struct SessionServer {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SessionServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionServer")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

impl SessionServer {
    /// Serve sessions on `listener`.
    pub fn new(listener: TcpListener, config: SessionServerConfig) -> SessionServer {
        if config.tls.is_none() {
            tracing::warn!("PE sessions in INSECURE mode: plain TCP to the pool users");
        }
        let replays = Mutex::new(ReplayGuard::new(config.replay_capacity));
        SessionServer {
            listener,
            shared: Arc::new(Shared { config, replays }),
        }
    }

    /// Its address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The next connection, before its handshake.
    pub async fn accept(&self) -> std::io::Result<PendingSession> {
        let (tcp, peer) = self.listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        Ok(PendingSession {
            tcp,
            peer,
            shared: self.shared.clone(),
        })
    }
}

/// A PU connection whose handshake has not run.
pub struct PendingSession {
    tcp: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
}

impl PendingSession {
    /// The PU's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Run the handshake within its deadline.
    pub async fn establish(self) -> Result<ServerSession, SessionError> {
        let PendingSession { tcp, peer, shared } = self;
        let config = &shared.config;
        let (io, level, identity): (Box<dyn super::channel::Io>, _, _) = match &config.tls {
            None => (Box::new(tcp), SecurityLevel::Plain, None),
            Some(tls) => {
                let name = peer.to_string();
                match tokio::time::timeout(config.handshake_timeout, tls.accept(tcp, &name)).await {
                    Ok(Ok((stream, identity))) => (
                        Box::new(stream),
                        SecurityLevel::of_client(&identity),
                        Some(identity),
                    ),
                    Ok(Err(e)) => {
                        return Err(SessionError::Handshake {
                            peer,
                            reason: e.to_string(),
                        })
                    }
                    Err(_) => {
                        return Err(SessionError::Handshake {
                            peer,
                            reason: format!("not done within {:?}", config.handshake_timeout),
                        })
                    }
                }
            }
        };
        let channel = Channel::new(io, config.max_payload, config.write_timeout);
        Ok(ServerSession {
            channel,
            peer,
            level,
            identity,
            shared: shared.clone(),
            session: None,
            counter: 0,
            control_seen: false,
            malformed: 0,
        })
    }
}

/// What a PE's session receives.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ServerEvent {
    /// User data.
    Data {
        /// Its payload protocol identifier.
        ppid: u32,
        /// The payload.
        payload: Bytes,
    },
    /// The PU failed over to this PE and echoed a cookie that verified:
    /// the state another PE of the pool gave it.
    Resumed(CookieContents),
    /// The PU (part of a PU/PE combination) sent its business card.
    BusinessCard {
        /// Its pool.
        pool_handle: PoolHandle,
        /// Its failover order.
        pool_elements: Vec<PoolElement>,
    },
}

/// One PU's session at this PE.
pub struct ServerSession {
    channel: Channel,
    peer: SocketAddr,
    level: SecurityLevel,
    identity: Option<PeerIdentity>,
    shared: Arc<Shared>,
    session: Option<SessionId>,
    counter: u64,
    control_seen: bool,
    malformed: u32,
}

impl std::fmt::Debug for ServerSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSession")
            .field("peer", &self.peer)
            .field("level", &self.level)
            .field("identity", &self.identity)
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl ServerSession {
    /// The PU's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// How well the session is protected.
    pub fn security(&self) -> SecurityLevel {
        self.level
    }

    /// Who the PU proved to be (`None` on plain TCP; anonymous when it
    /// showed no certificate).
    pub fn identity(&self) -> Option<&PeerIdentity> {
        self.identity.as_ref()
    }

    /// The session's id, once a cookie was issued or resumed.
    pub fn session_id(&self) -> Option<SessionId> {
        self.session
    }

    /// The next event, or `None` when the PU closed the session.
    pub async fn recv(&mut self) -> Result<Option<ServerEvent>, SessionError> {
        loop {
            let frame = match self.channel.read_frame().await {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(None),
                Err(e) => {
                    return Err(SessionError::Connection {
                        peer: self.peer,
                        reason: e.to_string(),
                    })
                }
            };
            if !frame.is_control() {
                return Ok(Some(ServerEvent::Data {
                    ppid: frame.ppid,
                    payload: frame.payload,
                }));
            }
            let first = !self.control_seen;
            self.control_seen = true;
            match control_message(&frame.payload) {
                Ok(AsapMessage::CookieEcho { cookie }) => {
                    return self.cookie_echo(&cookie, first).await.map(Some);
                }
                Ok(AsapMessage::BusinessCard {
                    pool_handle,
                    pool_elements,
                }) => {
                    return Ok(Some(ServerEvent::BusinessCard {
                        pool_handle,
                        pool_elements,
                    }))
                }
                Ok(other) => {
                    tracing::debug!(peer = %self.peer, msg = other.name(), "control message a PE does not take");
                }
                Err(e) => {
                    self.malformed += 1;
                    tracing::debug!(peer = %self.peer, error = %e, "undecodable control message");
                    if self.malformed > MAX_MALFORMED {
                        self.channel.shutdown().await;
                        return Err(SessionError::Protocol {
                            peer: self.peer,
                            reason: "too many undecodable control messages".into(),
                        });
                    }
                }
            }
        }
    }

    /// Send user data (`ppid` anything but 11).
    pub async fn send(&mut self, ppid: u32, payload: &[u8]) -> Result<(), SessionError> {
        if ppid == rserpool_wire::framing::PPID_ASAP {
            return Err(SessionError::Usage("ppid 11 is the ASAP control channel's"));
        }
        self.channel
            .write_frame(ppid, payload)
            .await
            .map_err(|e| SessionError::Connection {
                peer: self.peer,
                reason: e.to_string(),
            })
    }

    /// Send the PU a cookie with `state`, signed with the pool's key; the
    /// newest one is what the PU echoes to the next PE.
    pub async fn send_cookie(&mut self, state: &[u8]) -> Result<(), SessionError> {
        let keys = self
            .shared
            .config
            .cookie_keys
            .as_ref()
            .ok_or(SessionError::Usage("this PE has no cookie key"))?;
        let session = match self.session {
            Some(s) => s,
            None => {
                let mut id = [0u8; 16];
                openssl::rand::rand_bytes(&mut id)
                    .map_err(|e| super::CookieError::Crypto(e.to_string()))?;
                let s = SessionId(id);
                self.session = Some(s);
                s
            }
        };
        self.counter += 1;
        let contents = CookieContents {
            session,
            counter: self.counter,
            issued_at: unix_now(),
            level: self.level,
            state: state.to_vec(),
        };
        let cookie = keys.seal(&contents)?;
        if let Ok(mut g) = self.shared.replays.lock() {
            g.record(session, self.counter);
        }
        self.write_control(&AsapMessage::Cookie { cookie }).await
    }

    /// Send the PU this PE's business card: the failover order it
    /// recommends (RFC 5352 3.9).
    pub async fn send_business_card(
        &mut self,
        pool_handle: PoolHandle,
        pool_elements: Vec<PoolElement>,
    ) -> Result<(), SessionError> {
        self.write_control(&AsapMessage::BusinessCard {
            pool_handle,
            pool_elements,
        })
        .await
    }

    /// Close the session.
    pub async fn close(mut self) {
        self.channel.shutdown().await;
    }

    async fn write_control(&mut self, msg: &AsapMessage) -> Result<(), SessionError> {
        self.channel
            .write_control(msg)
            .await
            .map_err(|e| SessionError::Connection {
                peer: self.peer,
                reason: e.to_string(),
            })
    }

    /// A cookie echo: verified, or refused and the session closed.
    async fn cookie_echo(
        &mut self,
        cookie: &[u8],
        first: bool,
    ) -> Result<ServerEvent, SessionError> {
        let verdict = if !first || self.session.is_some() {
            Err(super::CookieError::Malformed(
                "a cookie echo must be the first control message of a session",
            ))
        } else {
            self.verify(cookie)
        };
        match verdict {
            Ok(contents) => {
                self.session = Some(contents.session);
                self.counter = contents.counter;
                tracing::info!(
                    peer = %self.peer, session = %contents.session, counter = contents.counter,
                    "session resumed from a cookie"
                );
                Ok(ServerEvent::Resumed(contents))
            }
            Err(error) => {
                tracing::warn!(peer = %self.peer, identity = ?self.identity, %error, "cookie echo refused");
                let cause =
                    Cause::with_info(CauseCode::RejectedSecurity, error.to_string().into_bytes());
                let msg = AsapMessage::Error {
                    error: OperationError {
                        causes: vec![cause],
                    },
                };
                let _ = self.channel.write_control(&msg).await;
                self.channel.shutdown().await;
                Err(SessionError::BadCookie {
                    peer: self.peer,
                    error,
                })
            }
        }
    }

    fn verify(&self, cookie: &[u8]) -> Result<CookieContents, super::CookieError> {
        let config = &self.shared.config;
        let keys = config
            .cookie_keys
            .as_ref()
            .ok_or(super::CookieError::Keys("this PE verifies no cookies"))?;
        let contents = keys.open(
            cookie,
            self.level,
            unix_now(),
            config.cookie_max_age.as_secs(),
            config.clock_skew.as_secs(),
        )?;
        match self.shared.replays.lock() {
            Ok(mut g) => g.check(contents.session, contents.counter)?,
            Err(_) => return Err(super::CookieError::Keys("replay table unavailable")),
        }
        Ok(contents)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
