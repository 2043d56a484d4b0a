//! The echo service a demo PE offers, and its client: PU-PE session
//! framing of DESIGN section 3 (`[u32 ppid][u32 length][payload]`), each
//! user-data frame sent back unchanged with its ppid. ASAP control frames
//! (ppid 11) are not part of echo and are dropped.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use bytes::BytesMut;
use rserpool_wire::framing::{SessionCodec, SessionFrame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Payload protocol identifier of echo user data (any value but 11).
pub const PPID_ECHO: u32 = 7;
/// Largest echo payload.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// Serve echo on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "echo accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            if let Err(e) = echo_connection(stream).await {
                tracing::debug!(%peer, error = %e, "echo session ended");
            }
        });
    }
}

async fn echo_connection(mut stream: TcpStream) -> anyhow::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut codec = SessionCodec::new(MAX_PAYLOAD);
    let mut buf = BytesMut::with_capacity(4096);
    let mut out = BytesMut::new();
    loop {
        while let Some(frame) = codec.decode(&mut buf)? {
            if !frame.is_control() {
                codec.encode(frame.ppid, &frame.payload, &mut out)?;
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}

/// Send one echo request to `addr` and return the reply.
pub async fn request(
    addr: SocketAddr,
    payload: &[u8],
    timeout: Duration,
) -> anyhow::Result<Vec<u8>> {
    tokio::time::timeout(timeout, async {
        let mut s = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to the PE at {addr}"))?;
        let _ = s.set_nodelay(true);
        let mut codec = SessionCodec::new(MAX_PAYLOAD);
        let mut out = BytesMut::new();
        codec.encode(PPID_ECHO, payload, &mut out)?;
        s.write_all(&out).await?;
        let mut buf = BytesMut::new();
        loop {
            if let Some(SessionFrame { payload, .. }) = codec.decode(&mut buf)? {
                return Ok(payload.to_vec());
            }
            if s.read_buf(&mut buf).await? == 0 {
                anyhow::bail!("the PE at {addr} closed the session without answering");
            }
        }
    })
    .await
    .with_context(|| format!("no echo from the PE at {addr} within {timeout:?}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn echo_round_trip() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(serve(l));
        let reply = request(addr, b"hello pool", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(reply, b"hello pool");
        server.abort();
    }
}
