//! Connections to registrars (tokio): TCP connect with a timeout, then TLS
//! through [`TlsClient`] (secure mode) or nothing (insecure lab mode),
//! then ASAP messages back to back, framed by [`ChannelCodec`] (DESIGN
//! section 3). [`hunt`] runs the server hunt of RFC 5352 section 3.6 over
//! a registrar list with the [`ServerHunt`] schedule.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use rserpool_security::{PeerIdentity, SecurityError, TlsClient};
use rserpool_wire::framing::{ChannelCodec, FramingError};
use rserpool_wire::{AsapMessage, EncodeError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::RegistrarEndpoint;
use crate::error::RegistrarFailure;
use crate::hunt::{HuntStep, ServerHunt};

/// A byte stream to a registrar: TLS over TCP, or plain TCP.
pub trait RegistrarStream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> RegistrarStream for T {}

type BoxStream = Box<dyn RegistrarStream>;

/// Why a connection to a registrar could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The TCP connection failed.
    #[error("registrar {registrar}: TCP connect failed: {error}")]
    Tcp {
        /// The registrar.
        registrar: SocketAddr,
        /// Why.
        error: io::Error,
    },
    /// TCP connect and handshake took too long.
    #[error("registrar {registrar}: no connection within {after:?}")]
    Timeout {
        /// The registrar.
        registrar: SocketAddr,
        /// How long it was given.
        after: Duration,
    },
    /// The TLS handshake failed: the registrar did not authenticate (a
    /// certificate that does not verify, an unknown PSK) or broke off.
    #[error("registrar {registrar}: {error}")]
    Tls {
        /// The registrar.
        registrar: SocketAddr,
        /// The handshake error (it names the expected server name).
        error: SecurityError,
    },
}

impl ConnectError {
    /// The failure without the registrar's address (for lists that name
    /// it already).
    pub fn reason(&self) -> String {
        match self {
            ConnectError::Tcp { error, .. } => format!("TCP connect failed: {error}"),
            ConnectError::Timeout { after, .. } => format!("no connection within {after:?}"),
            ConnectError::Tls { error, .. } => error.to_string(),
        }
    }
}

/// Why a connection to a registrar ended or a message could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Reading or writing failed.
    #[error("registrar {registrar}: {error}")]
    Io {
        /// The registrar.
        registrar: SocketAddr,
        /// Why.
        error: io::Error,
    },
    /// The registrar sent a stream that cannot be framed.
    #[error("registrar {registrar}: {error}")]
    Framing {
        /// The registrar.
        registrar: SocketAddr,
        /// What is wrong.
        error: FramingError,
    },
    /// A message could not be encoded.
    #[error("cannot encode {name} for registrar {registrar}: {error}")]
    Encode {
        /// The registrar.
        registrar: SocketAddr,
        /// The message type.
        name: &'static str,
        /// Why.
        error: EncodeError,
    },
    /// A write did not complete in time (the registrar does not read).
    #[error("registrar {registrar}: write did not complete within {after:?}")]
    WriteTimeout {
        /// The registrar.
        registrar: SocketAddr,
        /// How long it was given.
        after: Duration,
    },
}

/// A connection to one registrar.
pub struct RegistrarConnection {
    registrar: RegistrarEndpoint,
    local_addr: SocketAddr,
    identity: Option<PeerIdentity>,
    reader: MessageReader,
    writer: MessageWriter,
}

impl std::fmt::Debug for RegistrarConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrarConnection")
            .field("registrar", &self.registrar)
            .field("local_addr", &self.local_addr)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// Connect to `endpoint`: TCP, then the TLS handshake with `tls` (or
/// none: insecure mode), all within `timeout`. Messages longer than
/// `max_message_len` end the connection.
pub async fn connect(
    endpoint: &RegistrarEndpoint,
    tls: Option<&TlsClient>,
    timeout: Duration,
    max_message_len: usize,
) -> Result<RegistrarConnection, ConnectError> {
    let registrar = endpoint.address;
    let setup = async {
        let tcp = TcpStream::connect(registrar)
            .await
            .map_err(|error| ConnectError::Tcp { registrar, error })?;
        let local_addr = tcp
            .local_addr()
            .map_err(|error| ConnectError::Tcp { registrar, error })?;
        // Messages are small and each one matters: no Nagle delay.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%registrar, "cannot set TCP_NODELAY: {e}");
        }
        let (stream, identity): (BoxStream, _) = match tls {
            Some(tls) => {
                let (s, id) = tls
                    .connect(tcp, &endpoint.server_name)
                    .await
                    .map_err(|error| ConnectError::Tls { registrar, error })?;
                (Box::new(s), Some(id))
            }
            None => (Box::new(tcp), None),
        };
        Ok::<_, ConnectError>((stream, local_addr, identity))
    };
    let (stream, local_addr, identity) =
        tokio::time::timeout(timeout, setup)
            .await
            .map_err(|_| ConnectError::Timeout {
                registrar,
                after: timeout,
            })??;
    match &identity {
        Some(id) => tracing::debug!(registrar = %endpoint, %id, "connected to registrar over TLS"),
        None => {
            tracing::debug!(registrar = %endpoint, "connected to registrar (insecure, plain TCP)")
        }
    }
    let (r, w) = tokio::io::split(stream);
    Ok(RegistrarConnection {
        registrar: endpoint.clone(),
        local_addr,
        identity,
        reader: MessageReader {
            registrar,
            inner: r,
            buf: BytesMut::with_capacity(4096),
            codec: ChannelCodec::new(max_message_len),
        },
        writer: MessageWriter {
            registrar,
            inner: w,
            buf: Vec::with_capacity(256),
        },
    })
}

impl RegistrarConnection {
    /// The registrar.
    pub fn registrar(&self) -> &RegistrarEndpoint {
        &self.registrar
    }

    /// This end's address: the address a PE registers (the registrar
    /// refuses addresses other than the connection's source).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Who the registrar proved to be (`None` in insecure mode).
    pub fn identity(&self) -> Option<&PeerIdentity> {
        self.identity.as_ref()
    }

    /// Send one message.
    pub async fn send(&mut self, message: &AsapMessage) -> Result<(), LinkError> {
        self.writer.send(message).await
    }

    /// The next message; `None` when the registrar closed the connection.
    pub async fn recv(&mut self) -> Result<Option<AsapMessage>, LinkError> {
        self.reader.recv().await
    }

    /// Separate reading and writing (for a reader task).
    pub fn split(self) -> (MessageReader, MessageWriter) {
        (self.reader, self.writer)
    }
}

/// The receiving half of a registrar connection.
pub struct MessageReader {
    registrar: SocketAddr,
    inner: ReadHalf<BoxStream>,
    buf: BytesMut,
    codec: ChannelCodec,
}

impl MessageReader {
    /// The next message; `None` when the registrar closed the connection.
    /// A message that does not decode is logged and skipped; a stream that
    /// cannot be framed is an error (the connection must be closed).
    /// Cancel-safe: bytes read stay buffered.
    pub async fn recv(&mut self) -> Result<Option<AsapMessage>, LinkError> {
        let registrar = self.registrar;
        loop {
            let frame = self
                .codec
                .decode(&mut self.buf)
                .map_err(|error| LinkError::Framing { registrar, error })?;
            if let Some(frame) = frame {
                match AsapMessage::decode(&frame) {
                    Ok(d) => return Ok(Some(d.message)),
                    Err(e) => {
                        tracing::warn!(%registrar, "skipping a message that does not decode: {e}");
                        continue;
                    }
                }
            }
            let n = self
                .inner
                .read_buf(&mut self.buf)
                .await
                .map_err(|error| LinkError::Io { registrar, error })?;
            if n == 0 {
                return Ok(None);
            }
        }
    }
}

/// The sending half of a registrar connection.
pub struct MessageWriter {
    registrar: SocketAddr,
    inner: WriteHalf<BoxStream>,
    buf: Vec<u8>,
}

impl MessageWriter {
    /// Send one message.
    pub async fn send(&mut self, message: &AsapMessage) -> Result<(), LinkError> {
        let registrar = self.registrar;
        self.buf.clear();
        message
            .encode(&mut self.buf)
            .map_err(|error| LinkError::Encode {
                registrar,
                name: message.name(),
                error,
            })?;
        self.inner
            .write_all(&self.buf)
            .await
            .map_err(|error| LinkError::Io { registrar, error })?;
        self.inner
            .flush()
            .await
            .map_err(|error| LinkError::Io { registrar, error })
    }

    /// Send one message, giving up after `timeout`.
    pub async fn send_within(
        &mut self,
        message: &AsapMessage,
        timeout: Duration,
    ) -> Result<(), LinkError> {
        let registrar = self.registrar;
        tokio::time::timeout(timeout, self.send(message))
            .await
            .map_err(|_| LinkError::WriteTimeout {
                registrar,
                after: timeout,
            })?
    }

    /// Close the sending side (TLS close_notify, TCP FIN).
    pub async fn shutdown(&mut self) {
        let _ = self.inner.shutdown().await;
    }
}

/// Run a server hunt (RFC 5352 section 3.6) over `endpoints` with the
/// `schedule`: returns the first registrar that accepts a connection and
/// authenticates (its index and the connection), or, once every registrar
/// has failed in a pass, each one's last failure. A registrar whose
/// certificate or key does not verify counts as failed and the hunt moves
/// on to the next one (RFC 5355 section 2.7). The schedule keeps its
/// state between calls: calling again after a failed pass goes on with
/// the T5 back-off.
pub async fn hunt(
    schedule: &mut ServerHunt,
    endpoints: &[RegistrarEndpoint],
    tls: Option<&TlsClient>,
    max_message_len: usize,
) -> Result<(usize, RegistrarConnection), Vec<RegistrarFailure>> {
    schedule.begin(Instant::now().into_std());
    loop {
        let now = Instant::now();
        match schedule.step(now.into_std()) {
            HuntStep::Wait { until } => {
                tracing::debug!(
                    "server hunt: every registrar failed this round, waiting {:?}",
                    until.saturating_duration_since(now.into_std())
                );
                tokio::time::sleep_until(Instant::from_std(until)).await;
            }
            HuntStep::Try { index, deadline } => {
                let Some(endpoint) = endpoints.get(index) else {
                    // The list is shorter than the schedule: count it failed.
                    if let Some(pass) = schedule.failed(index, "not configured".into()) {
                        return Err(failures(endpoints, pass));
                    }
                    continue;
                };
                let budget = deadline.saturating_duration_since(now.into_std());
                let reason = match connect(endpoint, tls, budget, max_message_len).await {
                    Ok(conn) => {
                        schedule.connected(index);
                        tracing::debug!(registrar = %endpoint, "server hunt: connected");
                        return Ok((index, conn));
                    }
                    Err(e @ ConnectError::Tls { .. }) => {
                        // RFC 5355 2.7: a registrar that does not prove
                        // its identity may be a rogue one.
                        tracing::warn!(
                            registrar = %endpoint,
                            server_name = %endpoint.server_name,
                            "server hunt: registrar failed authentication, trying the next: {e}"
                        );
                        e.reason()
                    }
                    Err(e) => {
                        tracing::info!(registrar = %endpoint, "server hunt: {e}");
                        e.reason()
                    }
                };
                if let Some(pass) = schedule.failed(index, reason) {
                    return Err(failures(endpoints, pass));
                }
            }
        }
    }
}

fn failures(endpoints: &[RegistrarEndpoint], pass: Vec<(usize, String)>) -> Vec<RegistrarFailure> {
    pass.into_iter()
        .filter_map(|(i, reason)| {
            endpoints.get(i).map(|e| RegistrarFailure {
                registrar: e.address,
                reason,
            })
        })
        .collect()
}
