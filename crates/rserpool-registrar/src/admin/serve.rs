//! The admin API's HTTP server: our own accept loop (instead of
//! `axum::serve`) so that every stage is bounded. Each connection is
//! served by hyper's HTTP/1 server, one request per connection, with a
//! small header buffer; it must deliver its request headers within the
//! header timeout; it takes a slot of the caps in [`super::conns`], where
//! a new connection first takes the place of the one that has waited
//! longest for its headers; a semaphore of `max_connections` +
//! [`CLOSING_SLACK`] permits bounds the descriptors. Failed accepts back off (10 ms doubling to
//! 1 s). What an attacker can repeat is counted and logged through
//! [`crate::log_limit`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::response::Response;
use axum::routing::future::RouteFuture;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, OwnedSemaphorePermit};
use tokio::task::JoinSet;
use tower_service::Service as _;

use super::conns::{Admission, Cap};
use super::Shared;
use crate::accept::AcceptBackoff;
use crate::client::source_prefix;
use crate::log_limit::LogSource;

/// Largest request head (request line and headers); beyond it hyper
/// answers 431 and closes.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// A connection's read buffer (hyper's minimum is 8 KiB).
const MAX_BUF_BYTES: usize = MAX_HEADER_BYTES + 8 * 1024;

/// Connections told to close (evicted, timed out) that may still hold
/// their descriptors while the accept loop goes on: beyond, the loop
/// waits for one to be closed. Waiting for each evicted connection
/// instead (no slack) cut the accept rate under a flood twentyfold
/// (about 250 instead of 4000 a second on two busy cores), and the
/// kernel's listen queue overflowed, delaying the operator's SYN by 1 s.
pub(crate) const CLOSING_SLACK: usize = 8;

/// How long a new connection waits for a descriptor permit (all
/// `max_connections + CLOSING_SLACK` held: connections told to close
/// have not yet been) before it is refused instead.
const EVICTION_WAIT: Duration = Duration::from_secs(1);

/// How an accepted connection is told to close.
pub(crate) type Closer = oneshot::Sender<()>;

/// Accept connections until `stop`, then let the open ones finish.
pub(super) async fn run(
    listener: TcpListener,
    s: Shared,
    router: Router,
    mut stop: watch::Receiver<bool>,
) {
    let mut builder = http1::Builder::new();
    builder
        .keep_alive(false)
        .max_buf_size(MAX_BUF_BYTES)
        .max_header_size(MAX_HEADER_BYTES)
        // Our own deadline (from the accept, see `serve`) bounds the head.
        .header_read_timeout(None);
    let mut tasks = JoinSet::new();
    let mut backoff = AcceptBackoff::new();
    loop {
        let next_flush = tokio::time::Instant::from_std(s.log.flush());
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            () = tokio::time::sleep_until(next_flush) => continue,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff.succeeded();
                if let Some(slot) = admit(&s, peer).await {
                    let conn = Conn {
                        s: s.clone(),
                        router: router.clone(),
                        builder: builder.clone(),
                        peer,
                        stop: stop.clone(),
                    };
                    tasks.spawn(conn.serve(stream, slot));
                }
                // else: dropping `stream` closes it at once.
            }
            Err(error) => {
                s.counters.accept_errors.fetch_add(1, Ordering::Relaxed);
                let pause = backoff.failed(&error);
                s.log.write(ACCEPT_FAILED, LogSource::Global, || {
                    let pause_ms = pause.map(|p| p.as_millis() as u64);
                    tracing::warn!(%error, pause_ms, "{ACCEPT_FAILED}");
                });
                if let Some(pause) = pause {
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        _ = stop.wait_for(|s| *s) => break,
                    }
                }
            }
        }
    }
    drop(listener);
    while tasks.join_next().await.is_some() {}
    s.log.flush();
}

const ACCEPT_FAILED: &str = "admin API: accept failed";
const REFUSED_LIMIT: &str = "admin API: connection refused, every connection is busy";
const REFUSED_ADDRESS: &str =
    "admin API: connection refused, every connection from the address is busy";
const EVICTED: &str = "admin API: connection still waiting for its request closed for a new one";
const HEADER_TIMEOUT: &str = "admin API: request headers not complete in time, connection closed";
const TLS_FAILED: &str = "admin API: TLS handshake failed, connection closed";

/// An admitted connection's slot.
struct Slot {
    id: u64,
    close: oneshot::Receiver<()>,
    permit: OwnedSemaphorePermit,
}

/// Take a slot for a connection from `peer`, evicting the oldest waiting
/// one if a cap is reached; `None`: refused (counted and logged).
async fn admit(s: &Shared, peer: SocketAddr) -> Option<Slot> {
    let ip = source_prefix(peer.ip());
    let (closer, close) = oneshot::channel();
    let (admission, live) = {
        let mut table = s.conns();
        let admission = table.admit(ip, closer);
        (admission, table.live_count())
    };
    let id = match admission {
        Admission::Refuse(cap) => {
            refused(s, cap, peer);
            return None;
        }
        Admission::Admit { id, evicted } => {
            if let Some(e) = evicted {
                let _ = e.handle.send(());
                let c = match e.cap {
                    Cap::Total => &s.counters.evicted_limit,
                    Cap::Address => &s.counters.evicted_address,
                };
                c.fetch_add(1, Ordering::Relaxed);
                s.log.write(EVICTED, LogSource::Address(e.ip), || {
                    tracing::warn!(address = %e.ip, connection = e.id, cap = e.cap.label(), new = %peer, "{EVICTED}");
                });
            }
            id
        }
    };
    // Free at once unless CLOSING_SLACK connections told to close have
    // not been closed yet; then free when one of them is.
    match tokio::time::timeout(EVICTION_WAIT, s.permits.clone().acquire_owned()).await {
        Ok(Ok(permit)) => {
            s.counters.accepted.fetch_add(1, Ordering::Relaxed);
            s.counters.peak.fetch_max(live, Ordering::Relaxed);
            Some(Slot { id, close, permit })
        }
        Ok(Err(_)) | Err(_) => {
            s.conns().remove(id);
            refused(s, Cap::Total, peer);
            None
        }
    }
}

fn refused(s: &Shared, cap: Cap, peer: SocketAddr) {
    let (counter, kind) = match cap {
        Cap::Total => (&s.counters.refused_limit, REFUSED_LIMIT),
        Cap::Address => (&s.counters.refused_address, REFUSED_ADDRESS),
    };
    counter.fetch_add(1, Ordering::Relaxed);
    s.log.write(kind, LogSource::of(peer.ip()), || {
        tracing::warn!(%peer, "{kind}");
    });
}

/// What a connection's task needs.
struct Conn {
    s: Shared,
    router: Router,
    builder: http1::Builder,
    peer: SocketAddr,
    stop: watch::Receiver<bool>,
}

impl Conn {
    /// Serve one request (over TLS when the API has a certificate: the
    /// handshake counts against the header deadline), unless the headers
    /// take too long, the connection is evicted, or the server stops while
    /// it waits.
    async fn serve(self, stream: TcpStream, mut slot: Slot) {
        let deadline = tokio::time::Instant::now() + self.s.limits.header_timeout;
        let Some(tls) = self.s.tls.clone() else {
            return self.serve_io(stream, slot, deadline).await;
        };
        let peer = self.peer.to_string();
        let handshake = tokio::select! {
            r = tokio::time::timeout_at(deadline, tls.accept(stream, &peer)) => Some(r),
            _ = &mut slot.close => None,
        };
        match handshake {
            Some(Ok(Ok((ssl, _identity)))) => self.serve_io(ssl, slot, deadline).await,
            Some(failed) => {
                let s = &self.s;
                s.counters.tls_failures.fetch_add(1, Ordering::Relaxed);
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "the handshake did not complete before the header deadline".into(),
                };
                s.log.write(TLS_FAILED, LogSource::of(self.peer.ip()), || {
                    tracing::warn!(peer = %self.peer, error = %why, "{TLS_FAILED}");
                });
                s.conns().remove(slot.id);
            }
            // Evicted during the handshake (counted by the accept loop).
            None => {
                self.s.conns().remove(slot.id);
            }
        }
    }

    async fn serve_io<S>(mut self, stream: S, slot: Slot, deadline: tokio::time::Instant)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Slot {
            id,
            mut close,
            permit,
        } = slot;
        let s = self.s.clone();
        let service = ConnService {
            s: s.clone(),
            router: self.router,
            peer: self.peer,
            id,
        };
        let mut conn = Box::pin(self.builder.serve_connection(TokioIo::new(stream), service));
        let deadline = tokio::time::sleep_until(deadline);
        tokio::pin!(deadline);
        let mut waiting = true;
        let mut stopping = false;
        let ended = loop {
            let step = tokio::select! {
                r = conn.as_mut() => break r.err(),
                // Evicted (counted by the accept loop).
                _ = &mut close => break None,
                () = &mut deadline, if waiting => Step::Deadline,
                _ = self.stop.wait_for(|s| *s), if !stopping => Step::Stop,
            };
            match step {
                Step::Deadline => {
                    waiting = false;
                    if s.conns().header_timeout(id) {
                        s.counters.header_timeouts.fetch_add(1, Ordering::Relaxed);
                        let (peer, timeout) = (self.peer, s.limits.header_timeout);
                        let source = LogSource::of(peer.ip());
                        s.log.write(HEADER_TIMEOUT, source, || {
                            let timeout_ms = timeout.as_millis() as u64;
                            tracing::warn!(%peer, timeout_ms, "{HEADER_TIMEOUT}");
                        });
                        break None;
                    }
                }
                Step::Stop => {
                    stopping = true;
                    if s.conns().is_waiting(id) {
                        break None;
                    }
                    // Let the request in a handler finish.
                    conn.as_mut().graceful_shutdown();
                }
            }
        };
        // Out of the table first, then close, then free the descriptor's
        // permit: whoever sees the close sees the table without it.
        s.conns().remove(id);
        drop(conn);
        drop(permit);
        if let Some(e) = ended {
            tracing::debug!(peer = %self.peer, error = %e, "admin API connection ended with an error");
        }
    }
}

/// What woke a connection's task.
enum Step {
    Deadline,
    Stop,
}

/// The router for one connection: marks the connection busy when its
/// request headers are in, and gives the handlers its peer address.
#[derive(Clone)]
struct ConnService {
    s: Shared,
    router: Router,
    peer: SocketAddr,
    id: u64,
}

impl hyper::service::Service<hyper::Request<Incoming>> for ConnService {
    type Response = Response;
    type Error = Infallible;
    type Future = RouteFuture<Infallible>;

    fn call(&self, mut req: hyper::Request<Incoming>) -> Self::Future {
        self.s.conns().busy(self.id);
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let mut router = self.router.clone();
        router.call(req)
    }
}
