//! `rsp bench connections`: what a connection costs the registrar in
//! memory. It starts a registrar as a child process (this binary, `rsp
//! registrar`, TLS with a PSK, on an ephemeral loopback port) and reads the
//! child's resident set size (VmRSS in /proc/PID/status):
//!
//! - at start (the baseline);
//! - after N TCP connections that are in the middle of a TLS handshake
//!   (all of a ClientHello sent but its last byte): KiB per handshake;
//! - after N more connections with a completed TLS 1.3 PSK handshake and
//!   one handle resolution answered each, then idle: KiB per idle
//!   connection;
//! - after all of them closed, once the RSS has stopped falling: what the
//!   registrar keeps above its baseline.
//!
//! That is one flood; `--rounds` repeats it in the same registrar, which
//! shows whether memory freed after one flood is given back or reused.
//! The connections come from several loopback source addresses
//! (127.0.0.1, 127.0.0.2, ...), so per-address limits do not get in the
//! way. Figures are for people: nothing here asserts a threshold.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::BytesMut;
use rserpool_security::{Psk, TlsClient};
use rserpool_wire::framing::ChannelCodec;
use rserpool_wire::{AsapMessage, PoolHandle, WireMessage};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::bench::{next_frame, registration, tls_client};
use crate::bench_child::RspChild;
use crate::duration::parse_duration;

/// Flags of `rsp bench connections`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Connections of each kind per flood (idle TLS connections, and as
    /// many handshakes in progress).
    #[arg(long, default_value_t = 2000)]
    pub connections: usize,
    /// Floods, one after the other, in the same registrar.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Loopback source addresses the connections are spread over
    /// (127.0.0.1 up to 127.0.0.N).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u8).range(1..=254))]
    pub source_addresses: u8,
    /// Longest wait for the RSS to stop falling after the connections
    /// of a flood closed.
    #[arg(long, value_parser = parse_duration, default_value = "20s")]
    pub settle: Duration,
}

/// Connections opened at once.
const CONCURRENCY: usize = 64;
/// Pool elements registered in the resolved pool.
const POOL_SIZE: u32 = 10;
/// How long the RSS must stay put to count as settled with connections
/// open, and after they closed (an allocator may start giving memory back
/// only a few seconds after the frees).
const LOADED: Duration = Duration::from_secs(1);
const CLOSED: Duration = Duration::from_secs(4);

/// The registrar's memory at one moment (KiB, from /proc/PID/status).
#[derive(Debug, Clone, Copy, Serialize)]
struct Memory {
    rss_kib: u64,
    rss_anon_kib: u64,
}

/// One flood: the RSS at each step and what it means per connection.
#[derive(Debug, Serialize)]
struct Round {
    round: usize,
    /// The RSS when the round started.
    start: Memory,
    handshakes_in_progress: usize,
    /// With the handshakes in progress open.
    with_handshakes: Memory,
    handshake_kib_per_connection: f64,
    connections_established: usize,
    /// With the handshakes and the idle TLS connections open.
    with_idle_connections: Memory,
    idle_kib_per_connection: f64,
    /// After all closed and the RSS settled.
    after_close: Memory,
    /// `after_close` above the baseline.
    retained_kib: i64,
    /// Time from the last close until the RSS settled.
    settle_s: f64,
    /// Whether it settled within --settle.
    settled: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    /// The global allocator of this binary (and so of the registrar).
    allocator: &'static str,
    connections: usize,
    source_addresses: u8,
    /// Bytes of the partial ClientHello each handshake in progress sent.
    handshake_bytes_sent: usize,
    baseline: Memory,
    /// Round 1's figures (a fresh registrar).
    idle_kib_per_connection: f64,
    handshake_kib_per_connection: f64,
    /// Connections established in every round (the least of them).
    connections_established: usize,
    /// The last round's `retained_kib`.
    retained_kib: i64,
    /// The registrar's highest RSS (VmHWM).
    peak_rss_kib: u64,
    rounds: Vec<Round>,
}

pub async fn run(args: &Args, json: bool) -> anyhow::Result<()> {
    anyhow::ensure!(args.connections > 0, "--connections must be at least 1");
    anyhow::ensure!(args.rounds > 0, "--rounds must be at least 1");
    // Two kinds of connections open at once, both ends in this machine:
    // this process holds 2N sockets, and so does the registrar, which
    // inherits the limit.
    let wanted = 2 * args.connections as u64 + 256;
    let limit = raise_fd_limit()?;
    anyhow::ensure!(
        limit >= wanted,
        "{} connections of each kind need {wanted} file descriptors, the limit is {limit} \
         (raise the hard limit, ulimit -Hn, or use fewer --connections)",
        args.connections
    );

    let dir = tempfile::tempdir()?;
    let key = Psk::generate("bench")?;
    let registrar = RegistrarProcess::start(dir.path(), &key, args).await?;
    let tls = tls_client(&key)?;
    let addr = registrar.addr;
    let hello = partial_client_hello(&tls).await?;
    let mut sources = Sources::new(args.source_addresses);

    // The resolved pool, registered on a connection that stays open.
    let handle = PoolHandle::from_static("bench");
    let mut setup = tls_connect(&tls, addr, Ipv4Addr::LOCALHOST).await?;
    for id in 0..POOL_SIZE {
        match request(&mut setup, &registration(&handle, 0xb000_0000 + id)).await? {
            AsapMessage::RegistrationResponse { error: None, .. } => {}
            other => anyhow::bail!("benchmark pool set-up refused: {other:?}"),
        }
    }
    let resolution = Arc::new(AsapMessage::HandleResolution {
        subscribe: false,
        pool_handle: handle,
        items: Some(3),
    });

    let pid = registrar.child.pid();
    let (baseline, _) = settle(pid, Duration::from_secs(5), LOADED, None).await?;
    eprintln!(
        "registrar {pid} on {addr}: baseline RSS {}",
        mib(baseline.rss_kib)
    );
    let n = args.connections;
    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        let tag = format!("round {round}/{}", args.rounds);
        let start = read_memory(pid)?;
        let fds = open_fds(pid)?;

        eprintln!("{tag}: opening {n} TCP connections that stop in the middle of a handshake ...");
        let stalled = open_many(n, &mut sources, |src| {
            let hello = hello.clone();
            async move {
                let mut s = tcp_connect(addr, src).await?;
                s.write_all(&hello).await?;
                anyhow::Ok(s)
            }
        })
        .await?;
        wait_for_fds(pid, |f| f >= fds + n, "the handshakes to be accepted").await?;
        let (with_handshakes, _) = settle(pid, Duration::from_secs(5), LOADED, None).await?;

        eprintln!("{tag}: opening {n} TLS connections, one handle resolution each ...");
        let established = open_many(n, &mut sources, |src| {
            let (tls, resolution) = (tls.clone(), resolution.clone());
            async move {
                let mut c = tls_connect(&tls, addr, src).await?;
                match request(&mut c, &resolution).await? {
                    AsapMessage::HandleResolutionResponse { .. } => anyhow::Ok(c),
                    other => anyhow::bail!("unexpected answer to a resolution: {other:?}"),
                }
            }
        })
        .await?;
        wait_for_fds(pid, |f| f >= fds + 2 * n, "the TLS connections").await?;
        let (with_idle, _) = settle(pid, Duration::from_secs(5), LOADED, None).await?;
        eprintln!(
            "{tag}: RSS {} with {n} handshakes in progress and {n} idle connections; closing them",
            mib(with_idle.rss_kib)
        );

        let connections_established = established.len();
        let handshakes_in_progress = stalled.len();
        drop(established);
        drop(stalled);
        let closed = Instant::now();
        wait_for_fds(pid, |f| f <= fds, "the connections to close").await?;
        let (after_close, settled) = settle(pid, args.settle, CLOSED, Some(&tag)).await?;
        let per = |hi: Memory, lo: Memory| (hi.rss_kib as f64 - lo.rss_kib as f64) / n as f64;
        let r = Round {
            round,
            start,
            handshakes_in_progress,
            with_handshakes,
            handshake_kib_per_connection: per(with_handshakes, start),
            connections_established,
            with_idle_connections: with_idle,
            idle_kib_per_connection: per(with_idle, with_handshakes),
            after_close,
            retained_kib: after_close.rss_kib as i64 - baseline.rss_kib as i64,
            settle_s: closed.elapsed().as_secs_f64(),
            settled,
        };
        eprintln!(
            "{tag}: {:.1} KiB per handshake, {:.1} KiB per idle connection, {} KiB retained after close",
            r.handshake_kib_per_connection, r.idle_kib_per_connection, r.retained_kib
        );
        rounds.push(r);
    }
    let peak_rss_kib = read_status(pid, "VmHWM:")?;
    drop(setup);
    registrar.stop().await;

    let first = &rounds[0];
    let report = Report {
        allocator: crate::ALLOCATOR,
        connections: n,
        source_addresses: args.source_addresses,
        handshake_bytes_sent: hello.len(),
        baseline,
        idle_kib_per_connection: first.idle_kib_per_connection,
        handshake_kib_per_connection: first.handshake_kib_per_connection,
        connections_established: rounds
            .iter()
            .map(|r| r.connections_established)
            .min()
            .unwrap_or(0),
        retained_kib: rounds.last().map_or(0, |r| r.retained_kib),
        peak_rss_kib,
        rounds,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn print_table(r: &Report) {
    println!(
        "registrar memory (VmRSS), {} connections of each kind from {} source addresses, allocator {}",
        r.connections, r.source_addresses, r.allocator
    );
    println!(
        "baseline {}, peak {}",
        mib(r.baseline.rss_kib),
        mib(r.peak_rss_kib)
    );
    println!(
        "{:<6} {:>16} {:>16} {:>18} {:>12}",
        "round", "KiB/handshake", "KiB/idle conn", "RSS after close", "retained"
    );
    for x in &r.rounds {
        println!(
            "{:<6} {:>16.1} {:>16.1} {:>18} {:>12}{}",
            x.round,
            x.handshake_kib_per_connection,
            x.idle_kib_per_connection,
            mib(x.after_close.rss_kib),
            format!("{:+.1} MiB", x.retained_kib as f64 / 1024.0),
            if x.settled { "" } else { " (still falling)" }
        );
    }
    println!(
        "handshake in progress: {} of a ClientHello sent; idle: TLS 1.3 PSK, one handle resolution",
        r.handshake_bytes_sent
    );
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Raise the soft limit of open files to the hard limit; the new limit.
fn raise_fd_limit() -> anyhow::Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
            .context("cannot raise the open files limit")?;
    }
    Ok(hard)
}

/// The registrar under test: a child process, killed if dropped.
struct RegistrarProcess {
    child: RspChild,
    addr: SocketAddr,
}

impl RegistrarProcess {
    async fn start(dir: &Path, key: &Psk, args: &Args) -> anyhow::Result<RegistrarProcess> {
        let psk_file = dir.join("bench.key");
        key.write_new(&psk_file)?;
        // Limits that would refuse a flood from one identity are lifted:
        // this measures memory, not the flood protection.
        let config = dir.join("registrar.toml");
        let unlimited = "{ per_second = inf, burst = 1 }";
        std::fs::write(
            &config,
            format!(
                "listen = [\"127.0.0.1:0\"]\n\
                 json = true\n\
                 [tls]\npsk_files = [\"bench.key\"]\n\
                 [keep_alive]\ninterval = \"1h\"\n\
                 [connections]\nmax = {max}\nmax_per_address = {max}\nmax_per_identity = {max}\n\
                 max_handshakes = {max}\nmax_handshakes_per_address = {max}\n\
                 handshake_timeout = \"5m\"\nidle_timeout = \"2h\"\n\
                 [limits]\nresolutions_per_identity = {unlimited}\n\
                 resolutions_per_address = {unlimited}\n\
                 registrations_per_identity = {unlimited}\n\
                 registrations_per_address = {unlimited}\n",
                max = 2 * args.connections + 64
            ),
        )?;
        let (child, addr) = RspChild::registrar("registrar", &config).await?;
        Ok(RegistrarProcess { child, addr })
    }

    /// SIGTERM, then SIGKILL if it has not stopped within 5 s.
    async fn stop(self) {
        self.child.stop().await;
    }
}

fn read_status(pid: u32, key: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read the registrar's memory (process {pid})"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {key} in /proc/{pid}/status"))
}

fn read_memory(pid: u32) -> anyhow::Result<Memory> {
    Ok(Memory {
        rss_kib: read_status(pid, "VmRSS:")?,
        rss_anon_kib: read_status(pid, "RssAnon:")?,
    })
}

fn open_fds(pid: u32) -> anyhow::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("cannot list the registrar's files (process {pid})"))?
        .count())
}

/// Wait (up to 60 s) until the registrar's count of open files passes `ok`.
async fn wait_for_fds(pid: u32, ok: impl Fn(usize) -> bool, what: &str) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let n = open_fds(pid)?;
        if ok(n) {
            return Ok(());
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(60),
            "waited 60 s for {what} in the registrar ({n} files open)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Poll the RSS every 250 ms until it has not fallen by more than 1%
/// (and 256 KiB) over the last `window`, or `limit` has passed; the last
/// reading and whether it settled. With `progress`, report on stderr
/// every second.
async fn settle(
    pid: u32,
    limit: Duration,
    window: Duration,
    progress: Option<&str>,
) -> anyhow::Result<(Memory, bool)> {
    const STEP: Duration = Duration::from_millis(250);
    let window = (window.as_millis() / STEP.as_millis()).max(1) as usize;
    let start = Instant::now();
    let mut history = vec![read_memory(pid)?];
    loop {
        tokio::time::sleep(STEP).await;
        let now = read_memory(pid)?;
        history.push(now);
        if history.len() > window {
            let before = history[history.len() - 1 - window].rss_kib;
            let fell = before.saturating_sub(now.rss_kib);
            if fell <= (before / 100).max(256) {
                return Ok((now, true));
            }
        }
        if start.elapsed() >= limit {
            return Ok((now, false));
        }
        if let Some(tag) = progress {
            if history.len() % 4 == 0 {
                eprintln!(
                    "{tag}: closed; RSS {} after {:.0} s, waiting for it to stop falling",
                    mib(now.rss_kib),
                    start.elapsed().as_secs_f64()
                );
            }
        }
    }
}

/// Round-robin over 127.0.0.1 ..= 127.0.0.N.
struct Sources {
    count: u8,
    next: u8,
}

impl Sources {
    fn new(count: u8) -> Self {
        Sources { count, next: 0 }
    }

    fn next(&mut self) -> Ipv4Addr {
        let a = Ipv4Addr::new(127, 0, 0, 1 + self.next);
        self.next = (self.next + 1) % self.count;
        a
    }
}

/// Open `n` connections with `open`, `CONCURRENCY` at a time, each from
/// the next source address.
async fn open_many<T, F, Fut>(n: usize, sources: &mut Sources, open: F) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(Ipv4Addr) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
{
    let mut tasks = tokio::task::JoinSet::new();
    let mut done = Vec::with_capacity(n);
    let mut started = 0;
    while done.len() < n {
        while started < n && tasks.len() < CONCURRENCY {
            tasks.spawn(open(sources.next()));
            started += 1;
        }
        let c = tasks
            .join_next()
            .await
            .context("no connection task")?
            .context("connection task")?
            .with_context(|| format!("connection {} of {n}", done.len() + 1))?;
        done.push(c);
    }
    Ok(done)
}

/// A TCP connection to `addr` from `source` (any port).
async fn tcp_connect(addr: SocketAddr, source: Ipv4Addr) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket
        .bind(SocketAddr::from((source, 0)))
        .with_context(|| format!("cannot bind {source}"))?;
    let s = socket
        .connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr} from {source}"))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// A TLS connection from `source`, with the same client set-up as `rsp
/// bench registrar`'s clients.
async fn tls_connect(
    tls: &TlsClient,
    addr: SocketAddr,
    source: Ipv4Addr,
) -> anyhow::Result<impl AsyncRead + AsyncWrite + Unpin + Send + 'static> {
    let tcp = tcp_connect(addr, source).await?;
    let (s, _) = tls.connect(tcp, &addr.ip().to_string()).await?;
    Ok(s)
}

/// One request, one answer.
async fn request<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    req: &AsapMessage,
) -> anyhow::Result<AsapMessage> {
    s.write_all(&req.to_bytes()?).await?;
    s.flush().await?;
    let mut codec = ChannelCodec::new(ChannelCodec::ABSOLUTE_MAX);
    let mut buf = BytesMut::with_capacity(512);
    let frame = next_frame(s, &mut codec, &mut buf)
        .await?
        .context("the registrar closed the connection")?;
    Ok(AsapMessage::decode(&frame)?.message)
}

/// This client's ClientHello without its last byte: what a handshake in
/// progress has sent (the registrar has read it and waits for the rest).
async fn partial_client_hello(tls: &TlsClient) -> anyhow::Result<Arc<[u8]>> {
    let (client, mut server) = tokio::io::duplex(64 * 1024);
    let tls = tls.clone();
    let handshake = tokio::spawn(async move { tls.connect(client, "127.0.0.1").await.is_ok() });
    let mut record = vec![0u8; 5];
    server.read_exact(&mut record).await?;
    let len = usize::from(u16::from_be_bytes([record[3], record[4]]));
    record.resize(5 + len, 0);
    server.read_exact(&mut record[5..]).await?;
    drop(server);
    handshake.abort();
    anyhow::ensure!(record[0] == 22, "the first TLS record is not a handshake");
    record.pop();
    Ok(record.into())
}
