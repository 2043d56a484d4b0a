//! `rsp bench registrar`: the registrar's throughput over TLS against the
//! machine's ceiling. In one process it starts a registrar and N clients
//! (TLS 1.3 PSK, one connection each, one request outstanding per
//! client), measures handle resolutions/s and registrations/s, then runs
//! a TLS echo server that answers every request with a reply of the same
//! size as the registrar's, with the same clients: the ratio says how much
//! of the machine's TLS request/response capacity the registrar delivers.
//!
//! With `--apd-entries N` (default 1,000) a second registrar runs beside
//! the first with an authorised peer database of N entries (a mix of
//! exact, prefix, DNS and address-range identities, allows and denies,
//! the benchmark's keys granted last, then the closing deny), and each
//! measurement alternates between the two (without, with, with,
//! without): the ratio with / without is what the database costs.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::BytesMut;
use rserpool::connection::{self, RegistrarConnection};
use rserpool::RegistrarEndpoint;
use rserpool_registrar::{CoreConfig, Registrar, ServiceConfig};
use rserpool_security::apd::{Action, Apd, Entry, NamespaceScope, PoolScope, Role, RoleSet};
use rserpool_security::rate_limit::Rate;
use rserpool_security::{Psk, PskStore, TlsClient, TlsClientConfig, TlsServer, TlsServerConfig};
use rserpool_wire::framing::ChannelCodec;
use rserpool_wire::{
    AsapMessage, PeId, Policy, PoolElement, PoolHandle, ServerId, Transport, TransportUse,
    WireMessage,
};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::duration::parse_duration;

/// What to benchmark.
#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// Registrar resolutions/s and registrations/s against a TLS echo server.
    Registrar(RegistrarArgs),
    /// Registrar memory per idle TLS connection and per handshake in
    /// progress, and what stays after the connections close.
    Connections(crate::bench_connections::Args),
    /// A registrar cluster: handle table download, handle updates per
    /// second between two registrars, takeover of a failed one.
    Cluster(crate::bench_cluster::Args),
    /// The PEs of `bench cluster` in a process of their own.
    #[command(hide = true)]
    PeHost(crate::bench_rehoming::PeHostArgs),
}

/// Flags of `rsp bench registrar`.
#[derive(Debug, clap::Args)]
pub struct RegistrarArgs {
    /// Concurrent clients (one TLS connection each).
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Measuring time of each of the four runs.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub duration: Duration,
    /// PEs in the resolved pool.
    #[arg(long, default_value_t = 10)]
    pub pool_size: u32,
    /// PEs asked for per resolution (the 0x803f option).
    #[arg(long, default_value_t = 3)]
    pub items: u32,
    /// Entries of the authorised peer database of the second registrar
    /// (0: no second registrar).
    #[arg(long, default_value_t = 1000)]
    pub apd_entries: usize,
}

/// One measured run.
#[derive(Debug, Clone, Copy, Serialize)]
struct Run {
    requests_per_second: f64,
    request_bytes: usize,
    response_bytes: usize,
}

#[derive(Debug, Serialize)]
struct Pair {
    registrar: Run,
    tls_echo: Run,
    ratio: f64,
}

/// The registrar with a database of `entries` against the one without.
#[derive(Debug, Serialize)]
struct WithApd {
    entries: usize,
    resolutions_per_second: f64,
    registrations_per_second: f64,
    /// With / without.
    resolutions_ratio: f64,
    registrations_ratio: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    clients: usize,
    duration_s: f64,
    cores: usize,
    resolutions: Pair,
    registrations: Pair,
    #[serde(skip_serializing_if = "Option::is_none")]
    apd: Option<WithApd>,
}

/// How a client builds request number `i`.
type MakeRequest = Arc<dyn Fn(usize, u64) -> AsapMessage + Send + Sync>;

pub async fn run(args: &Args, json: bool) -> anyhow::Result<()> {
    match args {
        Args::Registrar(a) => registrar(a, json).await,
        Args::Connections(a) => crate::bench_connections::run(a, json).await,
        Args::Cluster(a) => crate::bench_cluster::run(a, json).await,
        Args::PeHost(a) => crate::bench_rehoming::pe_host(a).await,
    }
}

async fn registrar(args: &RegistrarArgs, json: bool) -> anyhow::Result<()> {
    anyhow::ensure!(args.clients > 0, "--clients must be at least 1");
    let keys: Vec<Psk> = (0..args.clients)
        .map(|i| Psk::generate(&format!("bench-{i}")))
        .collect::<Result<_, _>>()?;
    let mut store = PskStore::default();
    for k in &keys {
        store.insert(k.clone()).map_err(anyhow::Error::msg)?;
    }
    let tls = Arc::new(TlsServer::new(&TlsServerConfig {
        psks: Some(Arc::new(store)),
        ..TlsServerConfig::default()
    })?);
    let registrar = start_registrar(args, &tls, Apd::permissive(false)).await?;
    let with_apd = match args.apd_entries {
        0 => None,
        n => Some(start_registrar(args, &tls, bench_apd(n)?).await?),
    };
    let addr = registrar.local_addrs()[0];
    let handle = PoolHandle::from_static("bench");

    // The pool to resolve, registered by client 0 (at each registrar).
    let mut replies = None;
    for r in std::iter::once(&registrar).chain(&with_apd) {
        replies = Some(set_up_pool(r.local_addrs()[0], &keys[0], &handle, args).await?);
    }
    let (resolution, resolution_reply, reg_sample, reg_reply) = replies.context("no registrar")?;

    let res_req = resolution.clone();
    let make_resolution: MakeRequest = Arc::new(move |_, _| res_req.clone());
    let h = handle.clone();
    let make_registration: MakeRequest = Arc::new(move |client, n| {
        // A new PE each time: identifiers unique per client.
        let id = ((client as u32) << 20) | (n as u32 & 0xf_ffff);
        registration(&h, id)
    });

    // Without and with the database alternately (A B B A), so that drift
    // of the machine's speed falls on both alike.
    let (res, res_apd) = alternate(
        args,
        json,
        "handle resolutions",
        addr,
        with_apd.as_ref().map(|r| r.local_addrs()[0]),
        &keys,
        &make_resolution,
    )
    .await?;
    let (reg, reg_apd) = alternate(
        args,
        json,
        "registrations",
        addr,
        with_apd.as_ref().map(|r| r.local_addrs()[0]),
        &keys,
        &make_registration,
    )
    .await?;
    registrar.shutdown().await;
    if let Some(r) = with_apd {
        r.shutdown().await;
    }

    let echo_res = EchoServer::start(tls.clone(), resolution_reply.clone().into()).await?;
    progress(args, json, "handle resolutions, TLS echo");
    let echo_res_rate = measure(echo_res.addr, &keys, args.duration, make_resolution).await?;
    drop(echo_res);
    let echo_reg = EchoServer::start(tls, reg_reply.clone().into()).await?;
    progress(args, json, "registrations, TLS echo");
    let echo_reg_rate = measure(echo_reg.addr, &keys, args.duration, make_registration).await?;
    drop(echo_reg);

    let pair = |r: f64, e: f64, req: usize, resp: usize| Pair {
        registrar: Run {
            requests_per_second: r.round(),
            request_bytes: req,
            response_bytes: resp,
        },
        tls_echo: Run {
            requests_per_second: e.round(),
            request_bytes: req,
            response_bytes: resp,
        },
        ratio: ratio(r, e),
    };
    let report = Report {
        clients: args.clients,
        duration_s: args.duration.as_secs_f64(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        resolutions: pair(
            res,
            echo_res_rate,
            resolution.to_bytes()?.len(),
            resolution_reply.len(),
        ),
        registrations: pair(
            reg,
            echo_reg_rate,
            reg_sample.to_bytes()?.len(),
            reg_reply.len(),
        ),
        apd: match (res_apd, reg_apd) {
            (Some(r), Some(g)) => Some(WithApd {
                entries: args.apd_entries,
                resolutions_per_second: r.round(),
                registrations_per_second: g.round(),
                resolutions_ratio: ratio(r, res),
                registrations_ratio: ratio(g, reg),
            }),
            _ => None,
        },
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} TLS 1.3 PSK clients, one request outstanding each, {:.0} s per run, {} cores",
            report.clients, report.duration_s, report.cores
        );
        println!(
            "{:<22} {:>14} {:>14} {:>7} {:>14}",
            "", "registrar/s", "TLS echo/s", "ratio", "bytes req/resp"
        );
        for (name, p) in [
            ("handle resolutions", &report.resolutions),
            ("registrations", &report.registrations),
        ] {
            println!(
                "{:<22} {:>14.0} {:>14.0} {:>7.2} {:>8}/{}",
                name,
                p.registrar.requests_per_second,
                p.tls_echo.requests_per_second,
                p.ratio,
                p.registrar.request_bytes,
                p.registrar.response_bytes
            );
        }
        if let Some(a) = &report.apd {
            println!(
                "with a database of {} entries: handle resolutions {:.0}/s ({:.3} of without), \
                 registrations {:.0}/s ({:.3} of without)",
                a.entries,
                a.resolutions_per_second,
                a.resolutions_ratio,
                a.registrations_per_second,
                a.registrations_ratio
            );
        }
    }
    Ok(())
}

/// `a / b` to three places (0 when `b` is 0).
fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        (a / b * 1000.0).round() / 1000.0
    } else {
        0.0
    }
}

/// A registrar for the benchmark: limits off (this measures capacity, not
/// the flood protection), deciding with `apd`.
async fn start_registrar(
    args: &RegistrarArgs,
    tls: &Arc<TlsServer>,
    apd: Apd,
) -> anyhow::Result<Registrar> {
    let core = CoreConfig {
        registration_rate: Rate::UNLIMITED,
        registration_rate_per_address: Rate::UNLIMITED,
        resolution_rate: Rate::UNLIMITED,
        resolution_rate_per_address: Rate::UNLIMITED,
        registration_rate_global: Rate::UNLIMITED,
        resolution_rate_global: Rate::UNLIMITED,
        max_pes_per_identity: rserpool_registrar::config::bounds::PES_PER_IDENTITY.max,
        keep_alive_interval: Duration::from_secs(3600),
        max_registration_life: Duration::from_secs(7200),
        ..CoreConfig::default()
    };
    Ok(Registrar::start(ServiceConfig {
        listen: vec!["127.0.0.1:0".parse()?],
        tls: Some(tls.clone()),
        max_connections: args.clients + 16,
        max_connections_per_address: args.clients + 16,
        max_handshakes: (args.clients + 16).max(512),
        max_handshakes_per_address: args.clients + 16,
        // PEs that answer a keep-alive an hour stay connected.
        idle_timeout: Duration::from_secs(86_400),
        apd,
        core,
        ..ServiceConfig::default()
    })
    .await?)
}

/// Register the pool to resolve at `addr`; the resolution, its reply, a
/// registration and its reply (for the echo server's sizes).
async fn set_up_pool(
    addr: SocketAddr,
    key: &Psk,
    handle: &PoolHandle,
    args: &RegistrarArgs,
) -> anyhow::Result<(AsapMessage, Vec<u8>, AsapMessage, Vec<u8>)> {
    let mut setup = connect(addr, key).await?;
    for id in 0..args.pool_size {
        let req = registration(handle, 0xb000_0000 + id);
        match request(&mut setup, &req).await? {
            AsapMessage::RegistrationResponse { error: None, .. } => {}
            other => anyhow::bail!("benchmark pool set-up refused: {other:?}"),
        }
    }
    let resolution = AsapMessage::HandleResolution {
        subscribe: false,
        pool_handle: handle.clone(),
        items: Some(args.items),
    };
    let resolution_reply = request(&mut setup, &resolution).await?.to_bytes()?;
    let reg_sample = registration(handle, 1);
    let reg_reply = request(&mut setup, &reg_sample).await?.to_bytes()?;
    Ok((resolution, resolution_reply, reg_sample, reg_reply))
}

/// Measure at `without` and, if given, at `with` in the order A B B A;
/// the mean rate of each.
async fn alternate(
    args: &RegistrarArgs,
    json: bool,
    what: &str,
    without: SocketAddr,
    with: Option<SocketAddr>,
    keys: &[Psk],
    make: &MakeRequest,
) -> anyhow::Result<(f64, Option<f64>)> {
    let Some(with) = with else {
        progress(args, json, &format!("{what}, registrar"));
        return Ok((
            measure(without, keys, args.duration, make.clone()).await?,
            None,
        ));
    };
    let (mut a, mut b) = (0.0, 0.0);
    for (i, addr) in [without, with, with, without].into_iter().enumerate() {
        let label = if addr == without {
            "registrar"
        } else {
            "registrar with the database"
        };
        progress(args, json, &format!("{what}, {label} ({}/4)", i + 1));
        let rate = measure(addr, keys, args.duration, make.clone()).await?;
        if addr == without {
            a += rate / 2.0;
        } else {
            b += rate / 2.0;
        }
    }
    Ok((a, Some(b)))
}

/// A database of `n` entries (at least 2) in which the benchmark's keys
/// (`bench-*`) are allowed by the last entry but the closing deny: every
/// decision passes the others. A mix like a real one: exact PSK
/// identities with their pools, prefixes, DNS names, address ranges,
/// allows and denies.
fn bench_apd(n: usize) -> anyhow::Result<Apd> {
    let pe_pu = RoleSet::EMPTY.with(Role::Pe).with(Role::Pu);
    let mut entries = Vec::with_capacity(n);
    for i in 0..n.saturating_sub(2) {
        let name = format!("filler-{i}");
        let e = match i % 5 {
            0 => Entry::new(
                &name,
                Action::Allow,
                NamespaceScope::Psk,
                &format!("pe-{i}"),
                pe_pu,
            )?
            .with_pools(pools(&format!("pool-{i}"))?),
            1 => Entry::new(
                &name,
                Action::Allow,
                NamespaceScope::Psk,
                &format!("site{i}-*"),
                RoleSet::EMPTY.with(Role::Pu),
            )?,
            2 => Entry::new(
                &name,
                Action::Allow,
                NamespaceScope::DnsName,
                &format!("host{i}.example.net"),
                pe_pu,
            )?,
            3 => Entry::new(
                &name,
                Action::Allow,
                NamespaceScope::IpAddress,
                &format!("10.{}.{}.0/24", (i >> 8) & 0xff, i & 0xff),
                pe_pu,
            )?,
            _ => Entry::new(
                &name,
                Action::Deny,
                NamespaceScope::Psk,
                &format!("bad-{i}"),
                RoleSet::ALL,
            )?,
        };
        entries.push(e);
    }
    entries.push(
        Entry::new(
            "bench",
            Action::Allow,
            NamespaceScope::Psk,
            "bench-*",
            pe_pu,
        )?
        .with_pools(pools("bench")?),
    );
    entries.push(Entry::new(
        "deny-everyone-else",
        Action::Deny,
        NamespaceScope::Any,
        "*",
        RoleSet::ALL,
    )?);
    Ok(Apd::new(entries)?)
}

/// The pool scope of one exact handle.
fn pools(handle: &str) -> anyhow::Result<PoolScope> {
    PoolScope::new(vec![handle.parse()?]).context("an empty pool scope")
}

fn progress(args: &RegistrarArgs, json: bool, what: &str) {
    if !json {
        eprintln!("measuring {what} for {:?} ...", args.duration);
    }
}

pub(crate) fn registration(handle: &PoolHandle, id: u32) -> AsapMessage {
    AsapMessage::Registration {
        pool_handle: handle.clone(),
        pool_element: PoolElement {
            identifier: PeId::new(id),
            home_registrar: ServerId::UNDETERMINED,
            registration_life: 3_600_000,
            user_transport: Transport::Tcp {
                port: 7,
                transport_use: TransportUse::DataOnly,
                address: [127, 0, 0, 1].into(),
            },
            policy: Policy::RoundRobin,
            asap_transport: None,
        },
    }
}

/// Run all clients for `duration` after a short warm-up; requests/s.
async fn measure(
    addr: SocketAddr,
    keys: &[Psk],
    duration: Duration,
    make: MakeRequest,
) -> anyhow::Result<f64> {
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let mut c = connect(addr, key).await?;
        let (counting, stop, done, make) =
            (counting.clone(), stop.clone(), done.clone(), make.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let req = make(i, n);
                request(&mut c, &req).await?;
                n += 1;
                if counting.load(Ordering::Relaxed) {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
            anyhow::Ok(())
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // warm-up
    counting.store(true, Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(duration).await;
    let count = done.load(Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.context("benchmark client")??;
    }
    Ok(count as f64 / elapsed)
}

/// A benchmark client: the client library's registrar connection over
/// TLS with this client's PSK.
pub(crate) async fn connect(addr: SocketAddr, key: &Psk) -> anyhow::Result<RegistrarConnection> {
    let tls = tls_client(key)?;
    let endpoint = RegistrarEndpoint::new(addr);
    Ok(connection::connect(
        &endpoint,
        Some(&tls),
        Duration::from_secs(10),
        ChannelCodec::ABSOLUTE_MAX,
    )
    .await?)
}

/// The TLS set-up of a benchmark client with this PSK.
pub(crate) fn tls_client(key: &Psk) -> anyhow::Result<TlsClient> {
    Ok(TlsClient::new(&TlsClientConfig {
        psk: Some(key.clone()),
        ..TlsClientConfig::default()
    })?)
}

/// One request, one answer.
async fn request(c: &mut RegistrarConnection, req: &AsapMessage) -> anyhow::Result<AsapMessage> {
    c.send(req).await?;
    c.recv().await?.context("server closed the connection")
}

/// The next framed message on `s`; `None` at the end of the stream.
pub(crate) async fn next_frame<S: AsyncRead + Unpin>(
    s: &mut S,
    codec: &mut ChannelCodec,
    buf: &mut BytesMut,
) -> anyhow::Result<Option<bytes::Bytes>> {
    loop {
        if let Some(f) = codec.decode(buf)? {
            return Ok(Some(f));
        }
        if s.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    }
}

/// The ceiling: a TLS server that answers each framed request with a
/// fixed reply, with the registrar's task layout (one task per connection).
struct EchoServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EchoServer {
    async fn start(tls: Arc<TlsServer>, reply: bytes::Bytes) -> anyhow::Result<EchoServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((tcp, peer)) = listener.accept().await {
                let _ = tcp.set_nodelay(true);
                let (tls, reply) = (tls.clone(), reply.clone());
                conns.spawn(async move {
                    let Ok((mut s, _)) = tls.accept(tcp, &peer.to_string()).await else {
                        return;
                    };
                    let mut codec = ChannelCodec::new(4096);
                    let mut buf = BytesMut::with_capacity(8192);
                    while let Ok(Some(_)) = next_frame(&mut s, &mut codec, &mut buf).await {
                        if s.write_all(&reply).await.is_err() || s.flush().await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Ok(EchoServer { addr, task })
    }
}
