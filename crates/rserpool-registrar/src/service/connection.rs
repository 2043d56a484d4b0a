//! One listener's accept loop and one task per connection: admission
//! ([`super::admission`]), the TLS handshake with its deadline, then
//! framing in and encoding out with a deadline for each message (from
//! its first byte) and for silence. Every warning an attacker can repeat
//! goes through the service's [`SummarisedLog`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rserpool_security::apd::IpNet;
use rserpool_security::PeerIdentity;
use rserpool_wire::framing::ChannelCodec;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::admission::Refused;
use super::counters::{OpenGuard, ServiceCounters};
use super::{Input, Outgoing, Shared, Writer};
use crate::accept::AcceptBackoff;
use crate::log_limit::LogSource;
use crate::{ClientInfo, ConnKind};
use rserpool_handlespace::ConnId;

/// Read buffer of a connection between messages (bytes).
const IDLE_READ_BUFFER: usize = 512;

/// Accept connections of `kind` (an ASAP or ENRP listener).
pub(super) async fn accept_loop(
    listener: TcpListener,
    kind: ConnKind,
    allow: Arc<[IpNet]>,
    shared: Arc<Shared>,
) {
    let mut backoff = AcceptBackoff::new();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => {
                backoff.succeeded();
                x
            }
            Err(e) => {
                ServiceCounters::bump(&shared.counters.accept_errors);
                let pause = backoff.failed(&e);
                shared.log.write(
                    "accept failed",
                    LogSource::Global,
                    || tracing::warn!(error = %e, ?pause, "accept failed"),
                );
                if let Some(pause) = pause {
                    tokio::time::sleep(pause).await;
                }
                continue;
            }
        };
        // The listener's source filter, before anything else: no slot,
        // no handshake for a source it does not serve.
        let source = crate::client::canonical(peer.ip());
        if !allow.is_empty() && !allow.iter().any(|n| n.contains(source)) {
            ServiceCounters::bump(&shared.counters.refused_source);
            shared.log.write(
                "source address not allowed on this listener",
                LogSource::of(peer.ip()),
                || tracing::warn!(%peer, "source address not allowed on this listener: closing"),
            );
            continue;
        }
        let admitted = match shared.admission.admit(peer.ip()) {
            Ok(a) => a,
            Err(why) => {
                let counter = match why {
                    Refused::Total => &shared.counters.refused_limit,
                    Refused::PerAddress => &shared.counters.refused_per_address,
                    Refused::HandshakesPerAddress => {
                        &shared.counters.refused_handshakes_per_address
                    }
                };
                ServiceCounters::bump(counter);
                let source = LogSource::of(peer.ip());
                shared.log.write(
                    why.describe(),
                    source,
                    || tracing::warn!(%peer, "{}: closing the new connection", why.describe()),
                );
                // Dropping the stream closes it.
                continue;
            }
        };
        if admitted.evicted_one {
            ServiceCounters::bump(&shared.counters.handshakes_evicted);
        }
        ServiceCounters::bump(&shared.counters.connections_accepted);
        let open = OpenGuard::new(&shared.counters);
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let slot = admitted.slot;
            serve_connection(stream, peer, kind, admitted.handshake, &shared).await;
            drop(slot);
            drop(open);
        });
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    kind: ConnKind,
    mut handshake: super::admission::Handshake,
    shared: &Shared,
) {
    let cfg = &shared.config;
    let source = || LogSource::of(peer.ip());
    let Some((tls, generation)) = shared.current_tls() else {
        drop(handshake);
        let conn = ConnId::new(shared.next_conn.fetch_add(1, Ordering::Relaxed));
        return run_connection(stream, peer, conn, Opened::Accepted(kind), None, shared).await;
    };
    let peer_text = peer.to_string();
    let hs = tokio::time::timeout(cfg.handshake_timeout, tls.accept(stream, &peer_text));
    let outcome = tokio::select! {
        r = hs => r,
        _ = &mut handshake.evicted => {
            tracing::debug!(%peer, "handshake evicted for a newer one");
            return;
        }
    };
    drop(handshake);
    match outcome {
        Ok(Ok((tls_stream, identity))) => {
            if shared.tls_generation() != generation {
                // Credentials were replaced during the handshake: this
                // one proved the old ones. The client connects again.
                ServiceCounters::bump(&shared.counters.tls_handshakes_superseded);
                tracing::info!(%peer, %identity, "credentials reloaded during the handshake: closing");
                return;
            }
            let conn = ConnId::new(shared.next_conn.fetch_add(1, Ordering::Relaxed));
            let opened = Opened::Accepted(kind);
            run_connection(tls_stream, peer, conn, opened, Some(identity), shared).await
        }
        Ok(Err(e)) => {
            ServiceCounters::bump(&shared.counters.tls_handshake_failures);
            shared.log.write(
                "TLS handshake failed",
                source(),
                || tracing::warn!(%peer, "refused: {e}"),
            );
        }
        Err(_) => {
            ServiceCounters::bump(&shared.counters.tls_handshake_timeouts);
            shared.log.write("TLS handshake timed out", source(), || {
                tracing::warn!(
                    %peer,
                    "refused: no TLS handshake within {:?}",
                    cfg.handshake_timeout
                )
            });
        }
    }
}

/// Why a connection task ended.
enum End {
    /// Said by the peer or the service: the reason for the log.
    Reason(String),
    /// The core closed it; the core task logged why already.
    ClosedByCore,
    /// A message was not complete within the message timeout.
    MessageTimeout,
    /// Nothing arrived within the idle timeout.
    Idle,
}

/// Messages queued for one peer registrar (handle updates come in
/// bursts of registrations).
const ENRP_SEND_QUEUE: usize = 65_536;

/// How a connection came about.
enum Opened {
    /// Accepted on a listener of this kind.
    Accepted(ConnKind),
    /// Opened for the core ([`crate::Output::Connect`]).
    Dialled,
}

/// Open the connection the core asked for: TCP within the handshake
/// timeout, then in secure mode the TLS client handshake with the
/// registrar's own credentials ([`super::ServiceConfig::tls_client`]),
/// which verifies the peer's certificate against the address dialled
/// (or agrees on the PSK); then serve it like an accepted one. A failure
/// is the core's [`crate::RegistrarCore::handle_connect_failed`].
pub(super) async fn connect(
    shared: Arc<Shared>,
    conn: ConnId,
    address: SocketAddr,
    kind: ConnKind,
) {
    let failed = |reason: String| Input::ConnectFailed { conn, reason };
    let timeout = shared.config.handshake_timeout;
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let _ = shared
                .inputs
                .send(failed(format!("TCP connect: {e}")))
                .await;
            return;
        }
        Err(_) => {
            let reason = format!("TCP connect: no answer within {timeout:?}");
            let _ = shared.inputs.send(failed(reason)).await;
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    tracing::debug!(conn = conn.get(), %address, kind = kind.name(), "outbound connection open");
    if shared.current_tls().is_none() {
        return run_connection(stream, address, conn, Opened::Dialled, None, &shared).await;
    }
    let Some(client) = shared.config.tls_client.clone() else {
        let reason = "secure mode without client credentials (tls_client)".to_string();
        let _ = shared.inputs.send(failed(reason)).await;
        return;
    };
    let name = address.ip().to_string();
    match tokio::time::timeout(timeout, client.connect(stream, &name)).await {
        Ok(Ok((tls, identity))) => {
            run_connection(tls, address, conn, Opened::Dialled, Some(identity), &shared).await
        }
        Ok(Err(e)) => {
            let _ = shared.inputs.send(failed(e.to_string())).await;
        }
        Err(_) => {
            let reason = format!("no TLS handshake within {timeout:?}");
            let _ = shared.inputs.send(failed(reason)).await;
        }
    }
}

/// Serve one established connection until either side closes it.
async fn run_connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    conn: ConnId,
    opened: Opened,
    identity: Option<PeerIdentity>,
    shared: &Shared,
) {
    let cfg = &shared.config;
    // Peer registrars: table pages up to the largest message, and a
    // burst of handle updates (one per registration) queued, not taken
    // for a peer that does not read.
    let enrp = match opened {
        Opened::Accepted(kind) => kind.protocol() == crate::Protocol::Enrp,
        Opened::Dialled => true,
    };
    let (max_message, queue) = if enrp {
        (
            ChannelCodec::ABSOLUTE_MAX,
            cfg.send_queue.max(ENRP_SEND_QUEUE),
        )
    } else {
        (cfg.max_message_size, cfg.send_queue)
    };
    let (out_tx, mut out_rx) = mpsc::channel(queue.max(1));
    let who = identity
        .as_ref()
        .map_or_else(|| "insecure".to_string(), |i| i.to_string());
    tracing::debug!(conn = conn.get(), %peer, identity = %who, "connection open");
    let inputs = &shared.inputs;
    let in_flight = Arc::new(AtomicUsize::new(0));
    let writer = Writer {
        out: out_tx,
        in_flight: in_flight.clone(),
        address: peer,
    };
    let input = match opened {
        Opened::Accepted(kind) => Input::Connect {
            conn,
            info: ClientInfo::new(identity, peer, kind),
            writer,
        },
        Opened::Dialled => Input::Connected {
            conn,
            identity,
            writer,
        },
    };
    if inputs.send(input).await.is_err() {
        return;
    }
    let mut codec = ChannelCodec::new(max_message);
    // Small buffers while idle (thousands of connections mostly are):
    // `rbuf` goes back to IDLE_READ_BUFFER bytes when it holds no partial
    // message (a message usually fits; `read_buf` grows it for more),
    // `wbuf` is dropped after each write.
    let mut rbuf = BytesMut::with_capacity(IDLE_READ_BUFFER);
    let mut wbuf = Vec::new();
    let mut idle_deadline = Instant::now() + cfg.idle_timeout;
    // When the first byte of the message not yet complete arrived.
    let mut partial_since: Option<Instant> = None;
    // Requests are forwarded only while the answers queued for this
    // connection fill less than half its queue: a client that sends faster
    // than it reads is slowed down by TCP, not disconnected.
    let room = (cfg.send_queue / 2).max(1);
    let end: End = 'conn: loop {
        let mut backlog = false;
        let mut decoded = false;
        loop {
            if out_rx.len() + in_flight.load(Ordering::Acquire) >= room {
                backlog = true;
                break;
            }
            match codec.decode(&mut rbuf) {
                Ok(Some(frame)) => {
                    decoded = true;
                    in_flight.fetch_add(1, Ordering::AcqRel);
                    if inputs.send(Input::Frame { conn, frame }).await.is_err() {
                        break 'conn End::Reason("registrar stopping".into());
                    }
                }
                Ok(None) => {
                    if rbuf.is_empty() {
                        if rbuf.capacity() > 4 * IDLE_READ_BUFFER {
                            // A large message grew it: let it go.
                            rbuf = BytesMut::with_capacity(IDLE_READ_BUFFER);
                        } else {
                            // Reclaims the whole allocation in place.
                            rbuf.reserve(IDLE_READ_BUFFER);
                        }
                    }
                    break;
                }
                Err(error) => {
                    // The core answers with an error and closes.
                    let _ = inputs.send(Input::FramingError { conn, error }).await;
                    rbuf.clear();
                    break;
                }
            }
        }
        // Each message must be complete within the message timeout of its
        // first byte, however slowly it trickles in (every byte resets the
        // idle deadline, not this one). While the client does not read its
        // answers we do not read either, and the time is not its.
        if rbuf.is_empty() || backlog {
            partial_since = None;
        } else if decoded || partial_since.is_none() {
            partial_since = Some(Instant::now());
        }
        let message_deadline = partial_since.map(|t| t + cfg.message_timeout);
        tokio::select! {
            r = stream.read_buf(&mut rbuf), if !backlog => {
                match r {
                    Ok(0) => break 'conn End::Reason("closed by the peer".into()),
                    Ok(_) => {}
                    Err(e) => break 'conn End::Reason(format!("read error: {e}")),
                }
                idle_deadline = Instant::now() + cfg.idle_timeout;
            }
            m = out_rx.recv() => {
                let Some(first) = m else {
                    break 'conn End::Reason("registrar stopping".into());
                };
                let mut close = false;
                let mut next = Some(first);
                // Batch what is queued into one write.
                while let Some(o) = next.take() {
                    match o {
                        Outgoing::Message(msg) => {
                            if let Err(e) = msg.encode(&mut wbuf) {
                                tracing::error!(conn = conn.get(), error = %e, msg = msg.name(), "cannot encode a response");
                            }
                        }
                        Outgoing::Close => {
                            close = true;
                            break;
                        }
                    }
                    if wbuf.len() < 64 * 1024 {
                        next = out_rx.try_recv().ok();
                    }
                }
                if !wbuf.is_empty() {
                    match tokio::time::timeout(cfg.idle_timeout, write_flush(&mut stream, &wbuf)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => break 'conn End::Reason(format!("write error: {e}")),
                        Err(_) => break 'conn End::Reason(format!("not reading for {:?}", cfg.idle_timeout)),
                    }
                    wbuf = Vec::new();
                }
                if close {
                    break 'conn End::ClosedByCore;
                }
            }
            _ = sleep_until_opt(message_deadline) => break 'conn End::MessageTimeout,
            _ = tokio::time::sleep_until(idle_deadline) => break 'conn End::Idle,
        }
    };
    let reason = match end {
        End::Reason(r) => r,
        // Not the reason again: one line per close (the core task's).
        End::ClosedByCore => "closed by the registrar".to_string(),
        End::MessageTimeout => {
            ServiceCounters::bump(&shared.counters.message_timeouts);
            let why = format!(
                "message not complete within {:?} of its first byte",
                cfg.message_timeout
            );
            let source = LogSource::of(peer.ip());
            shared.log.write(
                "connection closed (message timeout)",
                source,
                || tracing::warn!(conn = conn.get(), %peer, identity = %who, "closing: {why}"),
            );
            why
        }
        End::Idle => {
            ServiceCounters::bump(&shared.counters.idle_closed);
            format!("idle for {:?}", cfg.idle_timeout)
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
    tracing::debug!(conn = conn.get(), %peer, identity = %who, %reason, "connection closed");
    let _ = inputs.send(Input::Disconnect { conn }).await;
}

async fn write_flush<S: AsyncWrite + Unpin>(s: &mut S, b: &[u8]) -> std::io::Result<()> {
    s.write_all(b).await?;
    s.flush().await
}

pub(super) async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
