//! The pool user API (tokio): [`PoolUser`] runs a [`PuCore`] and a
//! registrar link in a background task, connecting to a registrar when a
//! request needs one, and (opt-in) the announce socket whose datagrams
//! it hands to the core. Cheap to clone; the task ends with the last
//! clone.

use std::collections::HashMap;

use rserpool_wire::{PeId, PoolElement, PoolHandle};
use tokio::sync::{mpsc, oneshot};

use crate::announce::AnnounceSocket;
use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::link::{self, now, Link, LinkEvent};
use crate::pu_core::{PuCore, PuOutput, ReportOutcome, Token};

type Reply<T> = oneshot::Sender<Result<T, ClientError>>;

enum Command {
    Resolve {
        pool_handle: PoolHandle,
        reply: Reply<Vec<PoolElement>>,
    },
    Select {
        pool_handle: PoolHandle,
        reply: Reply<PoolElement>,
    },
    Report {
        pool_handle: PoolHandle,
        identifier: PeId,
        reply: oneshot::Sender<ReportOutcome>,
    },
    Purge {
        pool_handle: PoolHandle,
    },
    Discovery {
        reply: oneshot::Sender<crate::Discovery>,
    },
}

/// A pool user: resolves pool handles through the registrars, caches the
/// answers, picks PEs by the pool policy and reports unreachable ones.
#[derive(Debug, Clone)]
pub struct PoolUser {
    commands: mpsc::Sender<Command>,
}

impl PoolUser {
    /// A pool user for `config`. It connects to a registrar when the
    /// first request needs one. Must be called within a tokio runtime.
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        config.validate()?;
        if config.tls.is_none() {
            tracing::warn!(
                "pool user in INSECURE mode: plain TCP, registrars are not authenticated"
            );
        }
        let mut core = PuCore::new(
            config.registrars.iter().map(|r| r.address).collect(),
            config.timers,
            config.pool_user,
            config.reports,
            crate::random_seed(),
        );
        let announce = match &config.announcements {
            Some(a) => {
                core.enable_announcements(a);
                Some(AnnounceSocket::open(a)?)
            }
            None => None,
        };
        let (commands, rx) = mpsc::channel(64);
        let driver = Driver {
            core,
            announce,
            link: Link::new(&config),
            commands: rx,
            next_token: 1,
            resolves: HashMap::new(),
            selects: HashMap::new(),
        };
        tokio::spawn(driver.run());
        Ok(PoolUser { commands })
    }

    /// The PEs of a pool: from the cache unless it is stale (RFC 5352 3.3),
    /// else from a registrar (none when every PE of the pool is drained).
    /// Errors: [`ClientError::UnknownPoolHandle`],
    /// [`ClientError::NoRegistrar`], [`ClientError::Timeout`],
    /// [`ClientError::Refused`].
    pub async fn resolve(&self, pool_handle: &PoolHandle) -> Result<Vec<PoolElement>, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Resolve {
            pool_handle: pool_handle.clone(),
            reply,
        })
        .await?;
        answer.await.map_err(|_| ClientError::Stopped)?
    }

    /// One PE of the pool, picked by the pool's policy, skipping PEs
    /// reported unreachable. When every PE of the cached list failed, the
    /// handle is resolved again; [`ClientError::NoUsablePoolElement`] if
    /// that does not help, [`ClientError::PoolDrained`] if the registrar
    /// hands out none because every PE of the pool is drained.
    pub async fn select(&self, pool_handle: &PoolHandle) -> Result<PoolElement, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Select {
            pool_handle: pool_handle.clone(),
            reply,
        })
        .await?;
        answer.await.map_err(|_| ClientError::Stopped)?
    }

    /// The application could not reach PE `identifier` of the pool: skip
    /// it from now on, drop the cached resolution, and report it to a
    /// registrar with ASAP_ENDPOINT_UNREACHABLE, within the report limits.
    pub async fn report_unreachable(
        &self,
        pool_handle: &PoolHandle,
        identifier: PeId,
    ) -> Result<ReportOutcome, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Report {
            pool_handle: pool_handle.clone(),
            identifier,
            reply,
        })
        .await?;
        answer.await.map_err(|_| ClientError::Stopped)
    }

    /// Forget the cached resolution of a pool (RFC 5352 6.4).
    pub async fn purge(&self, pool_handle: &PoolHandle) -> Result<(), ClientError> {
        self.send(Command::Purge {
            pool_handle: pool_handle.clone(),
        })
        .await
    }

    /// The registrar list (configured, then learned from announcements)
    /// and the announce channel's counters.
    pub async fn discovery(&self) -> Result<crate::Discovery, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Discovery { reply }).await?;
        answer.await.map_err(|_| ClientError::Stopped)
    }

    async fn send(&self, c: Command) -> Result<(), ClientError> {
        self.commands
            .send(c)
            .await
            .map_err(|_| ClientError::Stopped)
    }
}

enum Wake {
    Command(Option<Command>),
    Link(LinkEvent),
    Datagram(std::net::SocketAddr, usize),
    Timer,
}

struct Driver {
    core: PuCore,
    announce: Option<AnnounceSocket>,
    link: Link,
    commands: mpsc::Receiver<Command>,
    next_token: Token,
    resolves: HashMap<Token, Reply<Vec<PoolElement>>>,
    selects: HashMap<Token, Reply<PoolElement>>,
}

impl Driver {
    async fn run(mut self) {
        loop {
            self.drain().await;
            let deadline = self.core.poll_timeout();
            let wake = tokio::select! {
                c = self.commands.recv() => Wake::Command(c),
                ev = self.link.next() => Wake::Link(ev),
                (from, len) = link::recv_announce(self.announce.as_mut()) => Wake::Datagram(from, len),
                () = link::sleep_until(deadline) => Wake::Timer,
            };
            let now = now();
            match wake {
                Wake::Command(None) => break,
                Wake::Command(Some(c)) => self.command(c),
                Wake::Link(event) => self.link.deliver(now, event, &mut self.core),
                Wake::Datagram(from, len) => {
                    if let Some(a) = &self.announce {
                        self.core.handle_datagram(now, from, a.datagram(len));
                    }
                }
                Wake::Timer => self.core.handle_timeout(now),
            }
        }
        self.link.shutdown().await;
    }

    fn token(&mut self) -> Token {
        let t = self.next_token;
        self.next_token += 1;
        t
    }

    fn command(&mut self, c: Command) {
        let now = now();
        match c {
            Command::Resolve { pool_handle, reply } => {
                let token = self.token();
                self.resolves.insert(token, reply);
                self.core.resolve(now, token, pool_handle);
            }
            Command::Select { pool_handle, reply } => {
                let token = self.token();
                self.selects.insert(token, reply);
                self.core.select(now, token, pool_handle);
            }
            Command::Report {
                pool_handle,
                identifier,
                reply,
            } => {
                let outcome = self.core.report_unreachable(now, &pool_handle, identifier);
                let _ = reply.send(outcome);
            }
            Command::Purge { pool_handle } => self.core.purge(&pool_handle),
            Command::Discovery { reply } => {
                let _ = reply.send(self.core.discovery());
            }
        }
    }

    async fn drain(&mut self) {
        while let Some(out) = self.core.poll_output() {
            match out {
                PuOutput::Link(action) => {
                    if let Err((conn, reason)) = self.link.apply(action).await {
                        self.core.handle_disconnected(now(), conn, &reason);
                    }
                }
                PuOutput::Resolved { token, result } => {
                    if let Some(reply) = self.resolves.remove(&token) {
                        let _ = reply.send(result);
                    }
                }
                PuOutput::Selected { token, result } => {
                    if let Some(reply) = self.selects.remove(&token) {
                        let _ = reply.send(result);
                    }
                }
            }
        }
    }
}
