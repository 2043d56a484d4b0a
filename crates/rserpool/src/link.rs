//! A driver's link to the registrars (tokio): the connection attempts
//! the core asks for ([`LinkAction::Connect`]) and the connections made,
//! each with its reader task, all turned into [`LinkEvent`]s for a
//! sans-IO core. The cores decide whom to connect to, when, and what to
//! send, and close what they no longer want; this only does it. A pool
//! user has one connection at a time, a pool element two (its registrar
//! and its standby link); [`MAX_CONNECTIONS`] bounds them whatever a core
//! asks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rserpool_security::TlsClient;
use rserpool_wire::AsapMessage;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::{AnnounceConfig, ClientConfig, RegistrarEndpoint};
use crate::connection::{self, ConnectError, MessageWriter, RegistrarConnection};
use crate::error::ConnectFailure;
use crate::{ConnId, Connected, LinkAction, LinkInputs, LinkSecurity};

/// The driver's clock, as the cores take it (follows tokio's paused clock
/// in tests).
pub(crate) fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// Sleep until `deadline`, or forever without one.
pub(crate) async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

/// The next datagram of the announce socket, or never without one.
pub(crate) async fn recv_announce(
    socket: Option<&mut crate::announce::AnnounceSocket>,
) -> (SocketAddr, usize) {
    match socket {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// What happened on the link.
#[derive(Debug)]
pub(crate) enum LinkEvent {
    /// A connection the core asked for is made.
    Connected { conn: ConnId, connected: Connected },
    /// A connection the core asked for could not be made.
    ConnectFailed {
        conn: ConnId,
        failure: ConnectFailure,
    },
    /// A frame (one message, not yet decoded) arrived.
    Frame { conn: ConnId, frame: Bytes },
    /// The connection ended.
    Closed { conn: ConnId, reason: String },
}

enum TaskEvent {
    Made(Box<RegistrarConnection>),
    Failed(ConnectFailure),
    Frame(Bytes),
    Closed(String),
}

struct Active {
    id: ConnId,
    registrar: SocketAddr,
    writer: MessageWriter,
    reader: JoinHandle<()>,
}

/// The most connection attempts, and the most connections, a driver
/// keeps at once; beyond them the oldest is dropped.
pub(crate) const MAX_CONNECTIONS: usize = 4;

/// Connection management for one driver.
pub(crate) struct Link {
    endpoints: Arc<[RegistrarEndpoint]>,
    /// How learned registrars are named (announcements on).
    announce: Option<AnnounceConfig>,
    tls: Option<TlsClient>,
    io_timeout: Duration,
    max_message_len: usize,
    /// The connection attempts under way, oldest first.
    attempts: Vec<(ConnId, JoinHandle<()>)>,
    /// The connections made, oldest first.
    active: Vec<Active>,
    tx: mpsc::Sender<(ConnId, TaskEvent)>,
    rx: mpsc::Receiver<(ConnId, TaskEvent)>,
}

impl Link {
    pub(crate) fn new(config: &ClientConfig) -> Self {
        let (tx, rx) = mpsc::channel(64);
        Link {
            endpoints: config.registrars.clone().into(),
            announce: config.announcements.clone(),
            tls: config.tls.clone(),
            io_timeout: config.timers.connect_timeout,
            max_message_len: config.max_message_len,
            attempts: Vec::new(),
            active: Vec::new(),
            tx,
            rx,
        }
    }

    /// The endpoint of registrar `index` of the core's list at
    /// `address`: a configured one, else a learned one (named as the
    /// announce settings say). Either way the same TLS client
    /// authenticates it (RFC 5355 2.12: an announcement only proposes an
    /// address).
    fn endpoint(&self, index: usize, address: SocketAddr) -> Option<RegistrarEndpoint> {
        if let Some(e) = self.endpoints.get(index).filter(|e| e.address == address) {
            return Some(e.clone());
        }
        if let Some(e) = self.endpoints.iter().find(|e| e.address == address) {
            return Some(e.clone());
        }
        self.announce.as_ref().map(|a| a.endpoint(address))
    }

    /// Start connection attempt `conn` to registrar `index` at `address`,
    /// to end by `deadline`.
    fn connect(
        &mut self,
        conn: ConnId,
        index: usize,
        address: SocketAddr,
        deadline: std::time::Instant,
    ) {
        if self.attempts.len() >= MAX_CONNECTIONS {
            let (_, old) = self.attempts.remove(0);
            old.abort();
        }
        let endpoint = self.endpoint(index, address);
        let several = self.endpoints.len() > 1 || self.announce.is_some();
        let tls = self.tls.clone();
        let max = self.max_message_len;
        let tx = self.tx.clone();
        let task = tokio::spawn(async move {
            let event = match endpoint {
                None => TaskEvent::Failed(ConnectFailure::new("not configured", None)),
                Some(endpoint) => {
                    let budget = deadline.saturating_duration_since(now());
                    match connection::connect(&endpoint, tls.as_ref(), budget, max).await {
                        Ok(c) => {
                            tracing::debug!(registrar = %endpoint, "server hunt: connected");
                            TaskEvent::Made(Box::new(c))
                        }
                        Err(e) => TaskEvent::Failed(attempt_failed(&endpoint, several, &e)),
                    }
                }
            };
            let _ = tx.send((conn, event)).await;
        });
        self.attempts.push((conn, task));
    }

    /// The next event. Cancel-safe.
    pub(crate) async fn next(&mut self) -> LinkEvent {
        loop {
            // The link holds a sender: `recv` never ends.
            let Some((conn, event)) = self.rx.recv().await else {
                continue;
            };
            match event {
                TaskEvent::Frame(frame) => return LinkEvent::Frame { conn, frame },
                TaskEvent::Closed(reason) => return LinkEvent::Closed { conn, reason },
                TaskEvent::Failed(failure) => {
                    self.attempts.retain(|(c, _)| *c != conn);
                    return LinkEvent::ConnectFailed { conn, failure };
                }
                TaskEvent::Made(c) => {
                    let Some(i) = self.attempts.iter().position(|(c, _)| *c == conn) else {
                        // Abandoned meanwhile: drop it.
                        continue;
                    };
                    self.attempts.remove(i);
                    return self.install(conn, *c);
                }
            }
        }
    }

    /// Give `event` to `core`.
    pub(crate) fn deliver(
        &mut self,
        now: std::time::Instant,
        event: LinkEvent,
        core: &mut impl LinkInputs,
    ) {
        match event {
            LinkEvent::Connected { conn, connected } => core.handle_connected(now, conn, connected),
            LinkEvent::ConnectFailed { conn, failure } => {
                core.handle_connect_failed(now, conn, failure)
            }
            LinkEvent::Frame { conn, frame } => core.handle_frame(now, conn, &frame),
            LinkEvent::Closed { conn, reason } => {
                self.close(conn);
                core.handle_disconnected(now, conn, &reason);
            }
        }
    }

    fn install(&mut self, id: ConnId, conn: RegistrarConnection) -> LinkEvent {
        if self.active.len() >= MAX_CONNECTIONS {
            let old = self.active.remove(0);
            old.reader.abort();
        }
        let registrar = conn.registrar().address;
        let security = match conn.identity() {
            Some(registrar) => LinkSecurity::Tls {
                registrar: registrar.clone(),
            },
            None => LinkSecurity::Insecure,
        };
        let connected = Connected::new(conn.local_addr(), security);
        let (mut reader, writer) = conn.split();
        let tx = self.tx.clone();
        let reader = tokio::spawn(async move {
            let reason = loop {
                match reader.recv_frame().await {
                    Ok(Some(frame)) => {
                        if tx.send((id, TaskEvent::Frame(frame))).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => break "connection closed by the registrar".to_owned(),
                    Err(e) => break e.reason(),
                }
            };
            let _ = tx.send((id, TaskEvent::Closed(reason))).await;
        });
        self.active.push(Active {
            id,
            registrar,
            writer,
            reader,
        });
        LinkEvent::Connected {
            conn: id,
            connected,
        }
    }

    /// Carry out a core's request. A failed send closes the connection and
    /// returns it with the reason, for the core's `handle_disconnected`.
    pub(crate) async fn apply(&mut self, action: LinkAction) -> Result<(), (ConnId, String)> {
        match action {
            LinkAction::Send { conn, message } => self
                .send(conn, &message)
                .await
                .map_err(|reason| (conn, reason)),
            LinkAction::Close { conn } => {
                self.close(conn);
                Ok(())
            }
            LinkAction::Connect {
                conn,
                index,
                registrar,
                deadline,
            } => {
                self.connect(conn, index, registrar, deadline);
                Ok(())
            }
        }
    }

    /// Send on connection `conn`. A message for a connection that is gone
    /// is dropped (the core hears of the loss separately); a failed write
    /// closes the connection and returns the reason.
    async fn send(&mut self, conn: ConnId, message: &AsapMessage) -> Result<(), String> {
        let Some(a) = self.active.iter_mut().find(|a| a.id == conn) else {
            tracing::debug!(
                conn = conn.get(),
                "dropping {} for a closed connection",
                message.name()
            );
            return Ok(());
        };
        tracing::trace!(registrar = %a.registrar, "sending {}", message.name());
        match a.writer.send_within(message, self.io_timeout).await {
            Ok(()) => Ok(()),
            Err(e) => {
                self.close(conn);
                Err(e.to_string())
            }
        }
    }

    /// Drop connection `conn`, or abandon the attempt to make it.
    pub(crate) fn close(&mut self, conn: ConnId) {
        if let Some(i) = self.attempts.iter().position(|(c, _)| *c == conn) {
            let (_, task) = self.attempts.remove(i);
            task.abort();
        }
        if let Some(i) = self.active.iter().position(|a| a.id == conn) {
            let a = self.active.remove(i);
            a.reader.abort();
        }
    }

    /// Close everything, the connection gracefully (bounded in time).
    pub(crate) async fn shutdown(&mut self) {
        for (_, task) in self.attempts.drain(..) {
            task.abort();
        }
        for mut a in std::mem::take(&mut self.active) {
            a.reader.abort();
            let _ = tokio::time::timeout(self.io_timeout, a.writer.shutdown()).await;
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        for (_, task) in self.attempts.drain(..) {
            task.abort();
        }
        for a in self.active.drain(..) {
            a.reader.abort();
        }
    }
}

/// Log a failed attempt and say what the core should know of it.
fn attempt_failed(
    endpoint: &RegistrarEndpoint,
    several: bool,
    error: &ConnectError,
) -> ConnectFailure {
    let diagnosis = error.diagnosis();
    if several && matches!(error, ConnectError::Tls { .. }) {
        // RFC 5355 2.7: a registrar that does not prove its identity may
        // be a rogue one; the hunt goes on.
        tracing::warn!(
            server_name = %endpoint.server_name,
            "server hunt: registrar {endpoint}: {diagnosis}; trying the next registrar"
        );
    } else {
        // A single registrar's failure is the hunt's result, which the
        // core reports.
        tracing::info!(
            server_name = %endpoint.server_name,
            "server hunt: registrar {endpoint}: {diagnosis}"
        );
    }
    ConnectFailure::new(diagnosis.to_string(), Some(diagnosis.kind))
}
