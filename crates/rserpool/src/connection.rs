//! Connections to registrars (tokio): TCP connect with a timeout, then TLS
//! through [`TlsClient`] (secure mode) or nothing (insecure lab mode),
//! then ASAP messages back to back, framed by [`ChannelCodec`] (DESIGN
//! section 3). Which registrar to connect to, and when, is the cores'
//! business ([`crate::Hunter`]).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rserpool_security::tls::{ClientCredentials, HandshakeFailure};
use rserpool_security::{PeerIdentity, TlsClient};
use rserpool_wire::framing::{ChannelCodec, FramingError};
use rserpool_wire::{AsapMessage, EncodeError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;

use crate::config::RegistrarEndpoint;
use crate::diagnose::{self, Diagnosis, FailureKind, Symptom};

/// A byte stream to a registrar: TLS over TCP, or plain TCP.
pub trait RegistrarStream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> RegistrarStream for T {}

type BoxStream = Box<dyn RegistrarStream>;

/// Why a connection to a registrar could not be made. Its text says what
/// is wrong and what to do, then what OpenSSL or the system said
/// ([`ConnectError::diagnosis`]).
#[derive(Debug)]
pub enum ConnectError {
    /// The TCP connection failed.
    Tcp {
        /// The registrar.
        registrar: SocketAddr,
        /// Why.
        error: io::Error,
    },
    /// TCP connect and handshake took too long.
    Timeout {
        /// The registrar.
        registrar: SocketAddr,
        /// How long it was given.
        after: Duration,
        /// Whether TCP had connected (the TLS handshake took too long).
        tcp_connected: bool,
    },
    /// The TLS handshake failed: the registrar did not authenticate (a
    /// certificate that does not verify, an unknown PSK), refused this
    /// client or broke off.
    Tls {
        /// The registrar.
        registrar: SocketAddr,
        /// The handshake error, with what OpenSSL knew of it.
        error: HandshakeFailure,
    },
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "registrar {}: {}", self.registrar(), self.diagnosis())
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectError::Tcp { error, .. } => Some(error),
            ConnectError::Timeout { .. } => None,
            ConnectError::Tls { error, .. } => Some(error),
        }
    }
}

impl ConnectError {
    /// The registrar.
    pub fn registrar(&self) -> SocketAddr {
        match self {
            ConnectError::Tcp { registrar, .. }
            | ConnectError::Timeout { registrar, .. }
            | ConnectError::Tls { registrar, .. } => *registrar,
        }
    }

    /// What went wrong and what to do, with the lower layer's words.
    pub fn diagnosis(&self) -> Diagnosis {
        diagnose::classify(match self {
            ConnectError::Tcp { error, .. } => Symptom::Tcp(error),
            ConnectError::Timeout {
                after,
                tcp_connected,
                ..
            } => Symptom::Timeout {
                after: *after,
                tcp_connected: *tcp_connected,
            },
            ConnectError::Tls { registrar, error } => Symptom::Handshake {
                failure: error,
                registrar: *registrar,
            },
        })
    }

    /// The failure without the registrar's address (for lists that name
    /// it already).
    pub fn reason(&self) -> String {
        self.diagnosis().to_string()
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
    /// The connection ended before the registrar's first message, for a
    /// reason the client can explain (its certificate was refused, a plain
    /// TCP client met a TLS registrar...).
    #[error("registrar {registrar}: {diagnosis}")]
    EndedBeforeAnswer {
        /// The registrar.
        registrar: SocketAddr,
        /// What went wrong.
        diagnosis: Diagnosis,
    },
}

impl LinkError {
    /// The failure without the registrar's address.
    pub fn reason(&self) -> String {
        match self {
            LinkError::Io { error, .. } => error.to_string(),
            LinkError::Framing { error, .. } => error.to_string(),
            LinkError::Encode { name, error, .. } => format!("cannot encode {name}: {error}"),
            LinkError::WriteTimeout { after, .. } => {
                format!("write did not complete within {after:?}")
            }
            LinkError::EndedBeforeAnswer { diagnosis, .. } => diagnosis.to_string(),
        }
    }

    /// What went wrong, when it could be explained.
    pub fn diagnosis(&self) -> Option<&Diagnosis> {
        match self {
            LinkError::EndedBeforeAnswer { diagnosis, .. } => Some(diagnosis),
            _ => None,
        }
    }
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
    let tcp_connected = AtomicBool::new(false);
    let setup = async {
        let tcp = TcpStream::connect(registrar)
            .await
            .map_err(|error| ConnectError::Tcp { registrar, error })?;
        tcp_connected.store(true, Ordering::Relaxed);
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
                    .handshake(tcp, &endpoint.server_name)
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
                tcp_connected: tcp_connected.load(Ordering::Relaxed),
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
            credentials: tls.map(|t| t.credentials().clone()),
            answered: false,
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
    /// The TLS client's credentials (`None`: plain TCP).
    credentials: Option<ClientCredentials>,
    /// Whether a message has arrived.
    answered: bool,
}

impl MessageReader {
    /// The next message; `None` when the registrar closed the connection.
    /// A message that does not decode is logged and skipped (a tool's
    /// way; the cores take frames, [`MessageReader::recv_frame`], and
    /// report them). Otherwise as [`MessageReader::recv_frame`].
    pub async fn recv(&mut self) -> Result<Option<AsapMessage>, LinkError> {
        loop {
            let Some(frame) = self.recv_frame().await? else {
                return Ok(None);
            };
            match AsapMessage::decode(&frame) {
                Ok(d) => return Ok(Some(d.message)),
                Err(e) => {
                    let registrar = self.registrar;
                    tracing::warn!(%registrar, "skipping a message that does not decode: {e}");
                }
            }
        }
    }

    /// The next frame (one message, not decoded); `None` when the
    /// registrar closed the connection. A stream that cannot be framed is
    /// an error (the connection must be closed). A connection that ends
    /// before the registrar's first message is
    /// [`LinkError::EndedBeforeAnswer`] (a refused client certificate, a
    /// plain client at a TLS registrar, a full registrar). Cancel-safe:
    /// bytes read stay buffered.
    pub async fn recv_frame(&mut self) -> Result<Option<Bytes>, LinkError> {
        let registrar = self.registrar;
        loop {
            let frame = match self.codec.decode(&mut self.buf) {
                Ok(f) => f,
                Err(error) => {
                    // A TLS record read as ASAP does not frame.
                    let d = self.before_answer(None);
                    return Err(match d {
                        Some(d) if d.kind == FailureKind::RegistrarSpeaksTls => {
                            LinkError::EndedBeforeAnswer {
                                registrar,
                                diagnosis: d,
                            }
                        }
                        _ => LinkError::Framing { registrar, error },
                    });
                }
            };
            if let Some(frame) = frame {
                self.answered = true;
                return Ok(Some(frame));
            }
            let n = match self.inner.read_buf(&mut self.buf).await {
                Ok(n) => n,
                Err(error) => {
                    return Err(match self.before_answer(Some(&error)) {
                        Some(diagnosis) => LinkError::EndedBeforeAnswer {
                            registrar,
                            diagnosis,
                        },
                        None => LinkError::Io { registrar, error },
                    })
                }
            };
            if n == 0 {
                return match self.before_answer(None) {
                    Some(diagnosis) => Err(LinkError::EndedBeforeAnswer {
                        registrar,
                        diagnosis,
                    }),
                    None => Ok(None),
                };
            }
        }
    }

    /// Why the connection ended, if it did before the first message.
    fn before_answer(&self, error: Option<&io::Error>) -> Option<Diagnosis> {
        (!self.answered).then(|| {
            diagnose::classify(Symptom::EndedBeforeAnswer {
                error,
                tls: self.credentials.as_ref(),
                received: &self.buf,
            })
        })
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
