//! One PU-PE connection as frames (DESIGN section 3, docs/tcp-mapping.md):
//! `[u32 ppid][u32 length][payload]` over TLS or, in the lab mode, plain
//! TCP; ppid 11 carries ASAP control messages (cookie, cookie echo,
//! business card, error: RFC 5352 3.8, 3.9), every other ppid user data.
//! Data and control share the connection, so they share its security
//! (RFC 5355 2.16). Every write has a deadline, so a PE or PU that stops
//! reading cannot hold a session forever.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rserpool_wire::framing::{FramingError, SessionCodec, SessionFrame, PPID_ASAP};
use rserpool_wire::{AsapMessage, WireMessage};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A byte stream a session runs on: TLS or plain TCP.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// What went wrong on a connection.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ChannelError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Framing(#[from] FramingError),
    #[error("a write did not finish within {0:?}")]
    WriteTimeout(Duration),
    #[error("control message cannot be encoded: {0}")]
    Encode(#[from] rserpool_wire::EncodeError),
}

/// A framed connection.
pub(crate) struct Channel {
    io: Box<dyn Io>,
    codec: SessionCodec,
    rbuf: BytesMut,
    wbuf: BytesMut,
    write_timeout: Duration,
}

impl Channel {
    pub(crate) fn new(io: Box<dyn Io>, max_payload: usize, write_timeout: Duration) -> Channel {
        Channel {
            io,
            codec: SessionCodec::new(max_payload),
            rbuf: BytesMut::with_capacity(4096),
            wbuf: BytesMut::new(),
            write_timeout,
        }
    }

    /// The next frame, or `None` when the other side closed.
    pub(crate) async fn read_frame(&mut self) -> Result<Option<SessionFrame>, ChannelError> {
        loop {
            if let Some(f) = self.codec.decode(&mut self.rbuf)? {
                return Ok(Some(f));
            }
            if self.io.read_buf(&mut self.rbuf).await? == 0 {
                if self.rbuf.is_empty() {
                    return Ok(None);
                }
                return Err(ChannelError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "closed in the middle of a frame",
                )));
            }
        }
    }

    /// Send one frame.
    pub(crate) async fn write_frame(
        &mut self,
        ppid: u32,
        payload: &[u8],
    ) -> Result<(), ChannelError> {
        self.wbuf.clear();
        self.codec.encode(ppid, payload, &mut self.wbuf)?;
        let (io, buf) = (&mut self.io, &self.wbuf);
        match tokio::time::timeout(self.write_timeout, async {
            io.write_all(buf).await?;
            io.flush().await
        })
        .await
        {
            Ok(r) => Ok(r?),
            Err(_) => Err(ChannelError::WriteTimeout(self.write_timeout)),
        }
    }

    /// Send one ASAP control message.
    pub(crate) async fn write_control(&mut self, msg: &AsapMessage) -> Result<(), ChannelError> {
        let bytes = msg.to_bytes()?;
        self.write_frame(PPID_ASAP, &bytes).await
    }

    /// Close the sending side (TLS close_notify), within the write deadline.
    pub(crate) async fn shutdown(&mut self) {
        let _ = tokio::time::timeout(self.write_timeout, self.io.shutdown()).await;
    }
}

/// A control frame's message, or why it is not one.
pub(crate) fn control_message(payload: &Bytes) -> Result<AsapMessage, rserpool_wire::DecodeError> {
    AsapMessage::decode(payload).map(|d| d.message)
}
