//! The echo service a demo PE offers, and its client: PU-PE session
//! framing of DESIGN section 3 (`[u32 ppid][u32 length][payload]`), each
//! user-data frame sent back unchanged with its ppid. ASAP control frames
//! (ppid 11) are not part of echo and are dropped. The client side picks
//! a PE through a [`PoolUser`] and fails over to the next one.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::BytesMut;
use rserpool::PoolUser;
use rserpool_wire::framing::{SessionCodec, SessionFrame};
use rserpool_wire::{PeId, PoolElement, PoolHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Payload protocol identifier of echo user data (any value but 11).
pub const PPID_ECHO: u32 = 7;
/// Largest echo payload.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// Serve echo on `listener` until the task is dropped; dropping it also
/// ends every open session (they live in the server's task set), so an
/// aborted server is gone like a crashed process.
pub async fn serve(listener: TcpListener) {
    let mut sessions = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "echo accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => continue,
        };
        sessions.spawn(async move {
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

/// An echo answered by some PE of a pool, after `failed` PEs did not.
#[derive(Debug)]
pub struct Answered {
    /// The PE that answered.
    pub pe: PoolElement,
    /// Its reply.
    pub reply: Vec<u8>,
    /// PEs tried before it, with what went wrong.
    pub failed: Vec<(PeId, String)>,
    /// Time from the first attempt to the answer.
    pub took: Duration,
}

/// A pool user's echo request with failover: pick a PE by the pool's
/// policy, send `payload`, and on failure report the PE (RFC 5352 3.5)
/// and try the next one, until one answers or the pool has none left.
pub async fn request_with_failover(
    pu: &PoolUser,
    handle: &PoolHandle,
    payload: &[u8],
    timeout: Duration,
) -> anyhow::Result<Answered> {
    let start = Instant::now();
    let mut failed = Vec::new();
    loop {
        let pe = match pu.select(handle).await {
            Ok(pe) => pe,
            Err(e) if !failed.is_empty() => {
                let tried: Vec<String> = failed
                    .iter()
                    .map(|(id, why)| format!("PE {id:#010x}: {why}"))
                    .collect();
                anyhow::bail!("{e}; tried {}", tried.join("; "))
            }
            Err(e) => return Err(e.into()),
        };
        let Some(addr) = user_address(&pe) else {
            pu.report_unreachable(handle, pe.identifier).await?;
            failed.push((pe.identifier, "not a TCP PE".to_string()));
            continue;
        };
        match request(addr, payload, timeout).await {
            Ok(reply) => {
                return Ok(Answered {
                    pe,
                    reply,
                    failed,
                    took: start.elapsed(),
                })
            }
            Err(e) => {
                pu.report_unreachable(handle, pe.identifier).await?;
                failed.push((pe.identifier, format!("{e:#}")));
            }
        }
    }
}

/// The TCP address a PE serves its users on.
pub use rserpool::session::user_address;

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
