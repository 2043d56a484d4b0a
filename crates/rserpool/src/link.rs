//! A driver's link to the registrars (tokio): at most one connection at a
//! time with its reader task, and the server hunt running in the
//! background, all turned into [`LinkEvent`]s for a sans-IO core. The
//! cores decide when to hunt and what to send; this only does it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rserpool_security::TlsClient;
use rserpool_wire::AsapMessage;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::{ClientConfig, RegistrarEndpoint};
use crate::connection::{self, HuntFailure, MessageWriter, RegistrarConnection};
use crate::error::RegistrarFailure;
use crate::hunt::ServerHunt;
use crate::{ConnId, LinkAction};

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

/// What happened on the link.
#[derive(Debug)]
pub(crate) enum LinkEvent {
    /// The hunt made a connection.
    Connected {
        conn: ConnId,
        registrar: SocketAddr,
        local: SocketAddr,
    },
    /// Every registrar failed in a pass of the hunt.
    HuntFailed(Vec<RegistrarFailure>),
    /// A message arrived.
    Message { conn: ConnId, message: AsapMessage },
    /// The connection ended.
    Closed { conn: ConnId, reason: String },
}

enum ReaderEvent {
    Message(AsapMessage),
    Closed(String),
}

type HuntResult = Result<(usize, RegistrarConnection), Vec<RegistrarFailure>>;
type HuntFuture = Pin<Box<dyn Future<Output = (ServerHunt<HuntFailure>, HuntResult)> + Send>>;

struct Active {
    id: ConnId,
    registrar: SocketAddr,
    writer: MessageWriter,
    reader: JoinHandle<()>,
}

/// Connection management for one driver.
pub(crate) struct Link {
    endpoints: Arc<[RegistrarEndpoint]>,
    tls: Option<TlsClient>,
    io_timeout: Duration,
    max_message_len: usize,
    /// The hunt schedule while no hunt runs (the hunt future owns it
    /// meanwhile).
    schedule: Option<ServerHunt<HuntFailure>>,
    hunting: Option<HuntFuture>,
    active: Option<Active>,
    next_id: ConnId,
    tx: mpsc::Sender<(ConnId, ReaderEvent)>,
    rx: mpsc::Receiver<(ConnId, ReaderEvent)>,
}

async fn hunt_done(h: &mut Option<HuntFuture>) -> (ServerHunt<HuntFailure>, HuntResult) {
    match h {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

impl Link {
    pub(crate) fn new(config: &ClientConfig) -> Self {
        let (tx, rx) = mpsc::channel(64);
        Link {
            endpoints: config.registrars.clone().into(),
            tls: config.tls.clone(),
            io_timeout: config.timers.connect_timeout,
            max_message_len: config.max_message_len,
            schedule: Some(ServerHunt::new(config.registrars.len(), &config.timers)),
            hunting: None,
            active: None,
            next_id: 1,
            tx,
            rx,
        }
    }

    /// Start (or resume) the server hunt, unless one is running.
    fn start_hunt(&mut self) {
        if self.hunting.is_some() {
            return;
        }
        let Some(mut schedule) = self.schedule.take() else {
            return;
        };
        let endpoints = self.endpoints.clone();
        let tls = self.tls.clone();
        let max = self.max_message_len;
        self.hunting = Some(Box::pin(async move {
            let r = connection::hunt(&mut schedule, &endpoints, tls.as_ref(), max).await;
            (schedule, r)
        }));
    }

    /// Forget the hunt's round after a failed pass, so that the next hunt
    /// tries at once (a pool user starts one per request).
    pub(crate) fn reset_hunt(&mut self) {
        if let Some(s) = &mut self.schedule {
            s.abandon();
        }
    }

    /// The next event. Cancel-safe.
    pub(crate) async fn next(&mut self) -> LinkEvent {
        loop {
            tokio::select! {
                ev = self.rx.recv() => match ev {
                    Some((conn, ReaderEvent::Message(message))) => {
                        return LinkEvent::Message { conn, message }
                    }
                    Some((conn, ReaderEvent::Closed(reason))) => {
                        return LinkEvent::Closed { conn, reason }
                    }
                    // The link holds a sender: never.
                    None => continue,
                },
                (schedule, result) = hunt_done(&mut self.hunting) => {
                    self.hunting = None;
                    self.schedule = Some(schedule);
                    return match result {
                        Ok((_, conn)) => self.install(conn),
                        Err(failures) => LinkEvent::HuntFailed(failures),
                    };
                }
            }
        }
    }

    fn install(&mut self, conn: RegistrarConnection) -> LinkEvent {
        if let Some(old) = self.active.take() {
            old.reader.abort();
        }
        let id = self.next_id;
        self.next_id += 1;
        let registrar = conn.registrar().address;
        let local = conn.local_addr();
        let (mut reader, writer) = conn.split();
        let tx = self.tx.clone();
        let reader = tokio::spawn(async move {
            let reason = loop {
                match reader.recv().await {
                    Ok(Some(m)) => {
                        if tx.send((id, ReaderEvent::Message(m))).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => break "connection closed by the registrar".to_owned(),
                    Err(e) => break e.reason(),
                }
            };
            let _ = tx.send((id, ReaderEvent::Closed(reason))).await;
        });
        self.active = Some(Active {
            id,
            registrar,
            writer,
            reader,
        });
        LinkEvent::Connected {
            conn: id,
            registrar,
            local,
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
            LinkAction::Hunt => {
                self.start_hunt();
                Ok(())
            }
        }
    }

    /// Send on connection `conn`. A message for a connection that is gone
    /// is dropped (the core hears of the loss separately); a failed write
    /// closes the connection and returns the reason.
    async fn send(&mut self, conn: ConnId, message: &AsapMessage) -> Result<(), String> {
        let Some(a) = self.active.as_mut().filter(|a| a.id == conn) else {
            tracing::debug!(conn, "dropping {} for a closed connection", message.name());
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

    /// Drop connection `conn`.
    pub(crate) fn close(&mut self, conn: ConnId) {
        if self.active.as_ref().is_some_and(|a| a.id == conn) {
            if let Some(a) = self.active.take() {
                a.reader.abort();
            }
        }
    }

    /// Close everything, the connection gracefully (bounded in time).
    pub(crate) async fn shutdown(&mut self) {
        self.hunting = None;
        if let Some(mut a) = self.active.take() {
            a.reader.abort();
            let _ = tokio::time::timeout(self.io_timeout, a.writer.shutdown()).await;
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Some(a) = self.active.take() {
            a.reader.abort();
        }
    }
}
