//! The session tests' lab: sessions of the registrar lab's pool users
//! ([`session`], [`ask`]), and a counting PE ([`CountingPe`]). The PE
//! registers with a registrar (the client library's PE), serves
//! sessions on its user transport ([`SessionServer`]) and counts. Each message adds one to the
//! session's count and is answered with `"<pe id>:<count>:<payload>"`,
//! and, when the PE has the pool's cookie key, followed by a cookie
//! whose state is the count: a PE the session fails over to continues
//! the count from the echoed cookie. A message `card:ID,ID,...` is
//! answered with a business card naming those PEs of the pool, in that
//! order, instead. Everything the PE saw is logged ([`Seen`]) for the
//! tests to check.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rserpool::session::{
    CookieKeys, Failover, SecurityLevel, Sent, ServerEvent, Session, SessionConfig, SessionError,
    SessionEvent, SessionServer, SessionServerConfig,
};
use rserpool::PoolUser;
use rserpool::{ClientConfig, PoolElementSpec};
use rserpool_security::Psk;
use rserpool_security::TlsServer;
use rserpool_wire::{
    PeId, Policy, PoolElement as WirePoolElement, PoolHandle, ServerId, Transport, TransportUse,
};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use crate::common::*;

/// PSK sessions for the lab's pool users, cookies signed by `pool_key`.
pub fn serving(lab: &Lab, pool_key: &Psk) -> Serving {
    Serving {
        tls: Some(Arc::new(psk_server(&[lab.key("pu-1"), lab.key("pu-2")]))),
        cookie_keys: Some(CookieKeys::new(vec![pool_key.clone()]).expect("keys")),
    }
}

/// A session of lab identity `pu` with the pool, over its PSK.
pub async fn session(lab: &Lab, pu: &str) -> Session {
    let user = PoolUser::new(lab_config(lab, pu)).expect("pool user");
    within(Session::open(
        user,
        pool_handle(HANDLE),
        SessionConfig::new(psk_client(&lab.key(pu))),
    ))
    .await
    .expect("session opens")
}

/// Send `text` and return the answer's text.
pub async fn ask(s: &mut Session, text: &str) -> String {
    let sent = within(s.send(7, text.as_bytes())).await.expect("sent");
    assert!(matches!(sent, Sent::Delivered), "{sent:?}");
    next_data(s).await
}

/// The next user data, skipping business cards.
pub async fn next_data(s: &mut Session) -> String {
    loop {
        match within(s.recv()).await.expect("an event") {
            SessionEvent::Data { ppid, payload } => {
                assert_eq!(ppid, 7);
                return String::from_utf8_lossy(&payload).into_owned();
            }
            SessionEvent::BusinessCard { .. } => {}
            other => panic!("expected data, got {other:?}"),
        }
    }
}

/// The failover that the next event must be.
pub async fn failed_over(s: &mut Session) -> Failover {
    match within(s.recv()).await.expect("an event") {
        SessionEvent::FailedOver(f) => f,
        other => panic!("expected a failover, got {other:?}"),
    }
}

/// What a counting PE saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A session was established at this level.
    Established(SecurityLevel),
    /// A handshake failed.
    HandshakeFailed,
    /// A session resumed from a cookie at this count.
    Resumed(u64),
    /// A cookie echo was refused, with the error's text.
    Refused(String),
    /// A message counted to this.
    Counted(u64),
}

/// A counting PE (see the module documentation).
pub struct CountingPe {
    pub id: u32,
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    registration: Option<rserpool::PoolElement>,
    task: JoinHandle<()>,
}

/// How a counting PE serves: TLS (`None`: plain) and the cookie key.
#[derive(Clone, Default)]
pub struct Serving {
    pub tls: Option<Arc<TlsServer>>,
    pub cookie_keys: Option<CookieKeys>,
}

impl CountingPe {
    /// Start PE `id` of `pool`, registered through `client`.
    pub async fn start(client: ClientConfig, pool: &str, id: u32, serving: Serving) -> CountingPe {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        CountingPe::start_on(listener, port, client, pool, id, serving).await
    }

    /// Start PE `id` serving on `listener` but registered at
    /// `advertised` port (where a proxy in front of it listens).
    pub async fn start_on(
        listener: TcpListener,
        advertised: u16,
        client: ClientConfig,
        pool: &str,
        id: u32,
        serving: Serving,
    ) -> CountingPe {
        let addr = listener.local_addr().expect("addr");
        let mut config = match serving.tls {
            Some(tls) => SessionServerConfig::new(tls),
            None => SessionServerConfig::insecure(),
        };
        if let Some(keys) = serving.cookie_keys {
            config = config.with_cookie_keys(keys);
        }
        config.handshake_timeout = Duration::from_secs(5);
        let server = SessionServer::new(listener, config);
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let handle = PoolHandle::new(pool.as_bytes().to_vec()).expect("handle");
        let task = tokio::spawn(serve(server, id, handle.clone(), seen.clone()));
        let mut spec = PoolElementSpec::new(handle, Policy::RoundRobin, advertised);
        spec.identifier = Some(PeId::new(id));
        let registration = tokio::time::timeout(
            Duration::from_secs(20),
            rserpool::PoolElement::start(client, spec),
        )
        .await
        .expect("registers in time")
        .expect("registers");
        CountingPe {
            id,
            addr,
            seen,
            registration: Some(registration),
            task,
        }
    }

    /// What it saw so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    /// Die: every session and the listener close at once (connections
    /// reset or closed), the registration goes with it.
    pub async fn kill(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
        drop(self.registration.take());
    }
}

impl Drop for CountingPe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(server: SessionServer, id: u32, pool: PoolHandle, seen: Arc<Mutex<Vec<Seen>>>) {
    // Dropped with the task: aborts every session.
    let mut sessions = JoinSet::new();
    while let Ok(pending) = server.accept().await {
        let seen = seen.clone();
        let pool = pool.clone();
        sessions.spawn(async move {
            let log = |s: Seen| seen.lock().expect("lock").push(s);
            let mut session = match pending.establish().await {
                Ok(s) => s,
                Err(_) => return log(Seen::HandshakeFailed),
            };
            log(Seen::Established(session.security()));
            let mut count = 0u64;
            loop {
                match session.recv().await {
                    Ok(Some(ServerEvent::Resumed(c))) => {
                        let mut be = [0u8; 8];
                        if c.state.len() == 8 {
                            be.copy_from_slice(&c.state);
                        }
                        count = u64::from_be_bytes(be);
                        log(Seen::Resumed(count));
                    }
                    Ok(Some(ServerEvent::Data { payload, .. }))
                        if payload.starts_with(b"card:") =>
                    {
                        let order = business_card(&payload[5..]);
                        if session
                            .send_business_card(pool.clone(), order)
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Ok(Some(ServerEvent::Data { ppid, payload })) => {
                        count += 1;
                        log(Seen::Counted(count));
                        let answer = format!("{id}:{count}:{}", String::from_utf8_lossy(&payload));
                        if session.send(ppid, answer.as_bytes()).await.is_err() {
                            return;
                        }
                        if session.send_cookie(&count.to_be_bytes()).await.is_err() {
                            // No cookie key: a PE without cookies.
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => return,
                    Err(SessionError::BadCookie { error, .. }) => {
                        return log(Seen::Refused(error.to_string()))
                    }
                    Err(_) => return,
                }
            }
        });
        while sessions.try_join_next().is_some() {}
    }
}

/// The PEs of a `card:` message (`ID,ID,...`, decimal), as a business
/// card names them (only the identifiers matter to the pool user).
fn business_card(ids: &[u8]) -> Vec<WirePoolElement> {
    String::from_utf8_lossy(ids)
        .split(',')
        .filter_map(|i| i.trim().parse::<u32>().ok())
        .map(|i| WirePoolElement {
            identifier: PeId::new(i),
            home_registrar: ServerId::UNDETERMINED,
            registration_life: 30_000,
            user_transport: Transport::Tcp {
                port: 7,
                transport_use: TransportUse::DataOnly,
                address: Ipv4Addr::LOCALHOST.into(),
            },
            policy: Policy::RoundRobin,
            asap_transport: None,
        })
        .collect()
}
