//! The pool element API (tokio): [`PoolElement`] runs a [`PeCore`] and a
//! registrar link in a background task: it registers, answers
//! keep-alives, re-registers, finds another registrar when the home one is
//! lost, and deregisters on [`PoolElement::shutdown`].
//! [`PoolElement::start`] returns once registered;
//! [`PoolElement::spawn`] returns at once and reports by events (for an
//! application that must stay responsive meanwhile, such as `rsp pe
//! register` with its health check and signals).
//!
//! In secure mode (TLS) the core accepts home changes only from an
//! authenticated registrar connection ([`crate::HomeTrust`]); with
//! announcements on, the driver also owns the announce socket and hands
//! its datagrams to the core.

use rserpool_wire::{PeId, Policy, PoolHandle};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::announce::AnnounceSocket;
use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::link::{self, now, Link, LinkEvent};
use crate::pe_core::{PeCore, PeEvent, PeOutput, PeStatus, PoolElementSpec};

enum Command {
    UpdatePolicy {
        policy: Policy,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    Shutdown {
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    Discovery {
        reply: oneshot::Sender<crate::Discovery>,
    },
}

/// A registered pool element. Dropping it deregisters it in the
/// background; [`PoolElement::shutdown`] waits for the outcome.
#[derive(Debug)]
pub struct PoolElement {
    identifier: PeId,
    pool_handle: PoolHandle,
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<PeEvent>,
    status: watch::Receiver<PeStatus>,
}

impl PoolElement {
    /// Register a PE with a registrar of `config` (hunting through the
    /// list, RFC 5352 3.6) and keep it registered. Returns after the first
    /// successful registration, or with the reason it failed: the
    /// registrar's refusal ([`ClientError::RegistrationRefused`] with its
    /// cause), no registrar reachable in MAX-REG-ATTEMPT hunt passes
    /// ([`ClientError::NoRegistrar`]), or registration timeouts
    /// ([`ClientError::Timeout`]).
    ///
    /// Must be called within a tokio runtime.
    pub async fn start(config: ClientConfig, spec: PoolElementSpec) -> Result<Self, ClientError> {
        let (started_tx, started) = oneshot::channel();
        let (pe, _) = Self::launch(config, spec, Some(started_tx))?;
        match started.await {
            Ok(Ok(())) => Ok(pe),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ClientError::Stopped),
        }
    }

    /// Like [`PoolElement::start`], but returns at once, before anything
    /// has been sent, with a receiver that sees every event from the first
    /// one: [`PeEvent::Registered`] when the registration is confirmed,
    /// [`PeEvent::RegistrationRefused`] or [`PeEvent::RegistrationFailed`]
    /// if it is given up (then [`PoolElement::stopped`] resolves).
    /// [`PoolElement::shutdown`] works in every state: a PE not yet sent
    /// to a registrar just stops.
    ///
    /// Must be called within a tokio runtime.
    pub fn spawn(
        config: ClientConfig,
        spec: PoolElementSpec,
    ) -> Result<(Self, broadcast::Receiver<PeEvent>), ClientError> {
        Self::launch(config, spec, None)
    }

    fn launch(
        config: ClientConfig,
        spec: PoolElementSpec,
        started: Option<oneshot::Sender<Result<(), ClientError>>>,
    ) -> Result<(Self, broadcast::Receiver<PeEvent>), ClientError> {
        config.validate()?;
        if config.tls.is_none() {
            tracing::warn!(
                "pool element in INSECURE mode: plain TCP, registrars are not authenticated"
            );
        }
        let mut core = PeCore::new(
            config.registrars.iter().map(|r| r.address).collect(),
            config.timers,
            config.registration_lifetime,
            crate::random_seed(),
        );
        if config.tls.is_some() {
            core.set_home_trust(crate::HomeTrust::Authenticated);
        }
        core.set_standby(config.standby_link);
        let announce = match &config.announcements {
            Some(a) => {
                core.enable_announcements(a);
                Some(AnnounceSocket::open(a)?)
            }
            None => None,
        };
        let pool_handle = spec.pool_handle.clone();
        let identifier = core.add_element(now(), spec)?;
        let (events, first_events) = broadcast::channel(64);
        let (commands, command_rx) = mpsc::channel(8);
        let (status_tx, status) = watch::channel(PeStatus {
            registered: false,
            registrar: None,
            home_server_id: None,
        });
        let driver = Driver {
            core,
            announce,
            link: Link::new(&config),
            commands: command_rx,
            commands_open: true,
            events: events.clone(),
            status: status_tx,
            identifier,
            started,
            shutdown: None,
            outcome: Ok(()),
        };
        tokio::spawn(driver.run());
        let pe = PoolElement {
            identifier,
            pool_handle,
            commands,
            events,
            status,
        };
        Ok((pe, first_events))
    }

    /// The PE identifier (the same on every registration).
    pub fn identifier(&self) -> PeId {
        self.identifier
    }

    /// The pool.
    pub fn pool_handle(&self) -> &PoolHandle {
        &self.pool_handle
    }

    /// Events from now on (registrar lost, re-registered, re-homed...).
    pub fn events(&self) -> broadcast::Receiver<PeEvent> {
        self.events.subscribe()
    }

    /// The registration state now.
    pub fn status(&self) -> PeStatus {
        self.status.borrow().clone()
    }

    /// Resolves when the PE has stopped by itself or been shut down: its
    /// registration refused or given up (the event before says why), or
    /// its deregistration finished. It does not resolve while the PE is
    /// registered or still trying.
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut status = self.status.clone();
        // The driver holds the sender until it ends.
        async move { while status.changed().await.is_ok() {} }
    }

    /// Re-register at once with a new policy value (a new load, for
    /// example; RFC 5352 3.1).
    pub async fn update_policy(&self, policy: Policy) -> Result<(), ClientError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::UpdatePolicy { policy, reply })
            .await
            .map_err(|_| ClientError::Stopped)?;
        answer.await.map_err(|_| ClientError::Stopped)?
    }

    /// The registrar list (configured, then learned from announcements),
    /// the announce channel's counters and the refused home changes.
    pub async fn discovery(&self) -> Result<crate::Discovery, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Discovery { reply })
            .await
            .map_err(|_| ClientError::Stopped)?;
        answer.await.map_err(|_| ClientError::Stopped)
    }

    /// Deregister (RFC 5352 3.2), waiting up to T3-deregistration for the
    /// registrar's answer, and close. A PE that has already stopped (the
    /// registrar refused it) returns `Ok`.
    pub async fn shutdown(self) -> Result<(), ClientError> {
        let (reply, answer) = oneshot::channel();
        if self
            .commands
            .send(Command::Shutdown { reply })
            .await
            .is_err()
        {
            return Ok(());
        }
        answer.await.unwrap_or(Ok(()))
    }
}

enum Wake {
    Command(Option<Command>),
    Link(LinkEvent),
    Datagram(std::net::SocketAddr, usize),
    Timer,
}

struct Driver {
    core: PeCore,
    announce: Option<AnnounceSocket>,
    link: Link,
    commands: mpsc::Receiver<Command>,
    commands_open: bool,
    events: broadcast::Sender<PeEvent>,
    status: watch::Sender<PeStatus>,
    identifier: PeId,
    started: Option<oneshot::Sender<Result<(), ClientError>>>,
    shutdown: Option<oneshot::Sender<Result<(), ClientError>>>,
    outcome: Result<(), ClientError>,
}

impl Driver {
    async fn run(mut self) {
        loop {
            self.drain().await;
            if let Some(s) = self.core.status(self.identifier) {
                self.status.send_if_modified(|old| {
                    let changed = *old != s;
                    *old = s;
                    changed
                });
            }
            if self.core.is_finished() {
                break;
            }
            let deadline = self.core.poll_timeout();
            let wake = tokio::select! {
                c = self.commands.recv(), if self.commands_open => Wake::Command(c),
                ev = self.link.next() => Wake::Link(ev),
                (from, len) = link::recv_announce(self.announce.as_mut()) => Wake::Datagram(from, len),
                () = link::sleep_until(deadline) => Wake::Timer,
            };
            let now = now();
            match wake {
                Wake::Command(Some(Command::Shutdown { reply })) => {
                    if let Some(old) = self.shutdown.replace(reply) {
                        let _ = old.send(Err(ClientError::Stopped));
                    }
                    self.core.deregister_all(now);
                }
                Wake::Command(Some(Command::UpdatePolicy { policy, reply })) => {
                    let _ = reply.send(self.core.update_policy(now, self.identifier, policy));
                }
                Wake::Command(None) => {
                    // Every handle is gone: leave the pool.
                    self.commands_open = false;
                    self.core.deregister_all(now);
                }
                Wake::Command(Some(Command::Discovery { reply })) => {
                    let _ = reply.send(self.core.discovery());
                }
                Wake::Link(event) => self.link.deliver(now, event, &mut self.core),
                Wake::Datagram(from, len) => {
                    if let Some(a) = &self.announce {
                        self.core.handle_datagram(now, from, a.datagram(len));
                    }
                }
                Wake::Timer => self.core.handle_timeout(now),
            }
        }
        self.status.send_modify(|s| s.registered = false);
        self.link.shutdown().await;
        if let Some(started) = self.started.take() {
            let _ = started.send(Err(self
                .outcome
                .clone()
                .err()
                .unwrap_or(ClientError::Stopped)));
        }
        if let Some(reply) = self.shutdown.take() {
            let _ = reply.send(self.outcome);
        }
    }

    async fn drain(&mut self) {
        while let Some(out) = self.core.poll_output() {
            match out {
                PeOutput::Link(action) => {
                    if let Err((conn, reason)) = self.link.apply(action).await {
                        self.core.handle_disconnected(now(), conn, &reason);
                    }
                }
                PeOutput::Event(e) => {
                    self.note(&e);
                    let _ = self.events.send(e);
                }
            }
        }
    }

    /// What an event means for `start` and `shutdown`.
    fn note(&mut self, e: &PeEvent) {
        let result = match e {
            PeEvent::Registered { identifier, .. } if *identifier == self.identifier => Ok(()),
            PeEvent::RegistrationRefused {
                identifier,
                registrar,
                cause,
                detail,
            } if *identifier == self.identifier => Err(ClientError::RegistrationRefused {
                registrar: *registrar,
                identifier: *identifier,
                cause: *cause,
                detail: detail.clone(),
            }),
            PeEvent::RegistrationFailed { identifier, error } if *identifier == self.identifier => {
                Err(error.clone())
            }
            PeEvent::Deregistered { identifier, error } if *identifier == self.identifier => {
                // The answer for `shutdown`.
                self.outcome = error.clone().map_or(Ok(()), Err);
                self.outcome.clone()
            }
            _ => return,
        };
        if let Some(started) = self.started.take() {
            if let Err(e) = &result {
                self.outcome = Err(e.clone());
            }
            let _ = started.send(result);
        }
    }
}
