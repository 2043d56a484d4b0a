//! `rsp bench cluster`: registrars of one cluster on loopback, over TLS
//! with a key each (the service as `rsp registrar` runs it): how long a
//! new registrar takes to download a handlespace of many PEs from its
//! mentor, how many registrations per second reach a peer as handle
//! updates, and how long the PEs of a registrar process that is killed
//! or frozen take to be re-homed at a survivor and served there
//! (`bench_rehoming`), and whether any was lost. Also: how long a
//! survivor takes to home the PEs of a stopped registrar none of whose
//! PEs is connected to it (the takeover alone, in this process).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rserpool_registrar::{CoreConfig, EnrpConfig, Registrar, RegistrarCore, ServiceConfig};
use rserpool_security::apd::Apd;
use rserpool_security::rate_limit::Rate;
use rserpool_security::{PeerIdentity, Psk, PskStore, TlsServer, TlsServerConfig};
use rserpool_wire::{AsapMessage, PoolHandle};
use serde::Serialize;

use crate::bench::{connect, registration, tls_client};

/// Flags of `rsp bench cluster`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// PEs in the handlespace a new registrar downloads.
    #[arg(long, default_value_t = 100_000)]
    pub download_pes: u32,
    /// PEs registered at one registrar while its peer counts the updates.
    #[arg(long, default_value_t = 20_000)]
    pub update_pes: u32,
    /// PEs of the registrar that is killed, then of the one that is
    /// frozen (PEs of this process, each with a standby link).
    #[arg(long, default_value_t = 10_000)]
    pub takeover_pes: u32,
}

#[derive(Debug, Serialize)]
struct Report {
    download_100k_ms: Option<u64>,
    download_pes: u32,
    /// SIGKILL of a registrar process until its PEs are re-homed.
    takeover_10k_ms: Option<u64>,
    takeover_pes: u32,
    /// The same after SIGSTOP.
    takeover_10k_stop_ms: Option<u64>,
    /// The survivor homes a stopped peer's PEs (none connected to it).
    takeover_unconnected_10k_ms: Option<u64>,
    lost: u64,
    updates_per_s: f64,
    update_pes: u32,
    cores: usize,
}

/// Limits out of the way: the benchmark measures the cluster.
fn core(server: u32, peers: Vec<SocketAddr>) -> CoreConfig {
    CoreConfig {
        server_id: rserpool_wire::ServerId::new(server),
        registration_rate: Rate::UNLIMITED,
        registration_rate_per_address: Rate::UNLIMITED,
        registration_rate_global: Rate::UNLIMITED,
        max_pes_per_identity: rserpool_registrar::config::bounds::PES_PER_IDENTITY.max,
        keep_alive_interval: Duration::from_secs(3600),
        max_registration_life: Duration::from_secs(7200),
        enrp: EnrpConfig {
            peers,
            update_rate: Rate::UNLIMITED,
            ..EnrpConfig::default()
        },
        ..CoreConfig::default()
    }
}

struct Keys {
    registrars: Vec<Psk>,
    pe: Psk,
    tls: Arc<TlsServer>,
    apd: Apd,
}

impl Keys {
    fn new() -> anyhow::Result<Keys> {
        let registrars: Vec<Psk> = (0..4)
            .map(|i| Psk::generate(&format!("bench-registrar-{i}")))
            .collect::<Result<_, _>>()?;
        let pe = Psk::generate("bench-pe")?;
        let mut store = PskStore::default();
        for k in registrars.iter().chain([&pe]) {
            store.insert(k.clone()).map_err(anyhow::Error::msg)?;
        }
        let tls = Arc::new(TlsServer::new(&TlsServerConfig {
            psks: Some(Arc::new(store)),
            ..TlsServerConfig::default()
        })?);
        let ids: Vec<PeerIdentity> = registrars
            .iter()
            .map(|k| PeerIdentity::Psk(k.identity.clone()))
            .collect();
        let apd = Apd::permissive_with_registrars(false, &ids);
        Ok(Keys {
            registrars,
            pe,
            tls,
            apd,
        })
    }

    async fn registrar(&self, i: usize, peers: Vec<SocketAddr>) -> anyhow::Result<Registrar> {
        Ok(Registrar::start(ServiceConfig {
            listen: vec!["127.0.0.1:0".parse()?],
            enrp_listen: vec!["127.0.0.1:0".parse()?],
            tls: Some(self.tls.clone()),
            tls_client: Some(Arc::new(tls_client(&self.registrars[i])?)),
            apd: self.apd.clone(),
            idle_timeout: Duration::from_secs(86_400),
            core: core(0x100 + i as u32, peers),
            ..ServiceConfig::default()
        })
        .await?)
    }
}

/// Register PEs `first..first + n` at `r`, pipelined over one
/// connection.
async fn register(r: &Registrar, key: &Psk, first: u32, n: u32) -> anyhow::Result<()> {
    let handle = PoolHandle::from_static("bench");
    let mut c = connect(r.local_addrs()[0], key).await?;
    const WINDOW: u32 = 256;
    let mut sent = 0;
    let mut answered = 0;
    while answered < n {
        while sent < n && sent - answered < WINDOW {
            c.send(&registration(&handle, first + sent)).await?;
            sent += 1;
        }
        match c.recv().await? {
            Some(AsapMessage::RegistrationResponse { reject: false, .. }) => answered += 1,
            Some(AsapMessage::RegistrationResponse { error, .. }) => {
                anyhow::bail!("a registration was refused: {error:?}")
            }
            Some(_) => {}
            None => anyhow::bail!("the registrar closed the connection"),
        }
    }
    Ok(())
}

/// Wait until `f` holds of `r`'s core (at most `limit`); the time it took.
async fn until(
    r: &Registrar,
    limit: Duration,
    what: &str,
    f: impl Fn(&RegistrarCore) -> bool + Clone + Send + 'static,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        let g = f.clone();
        if r.query(move |c| g(c)).await == Some(true) {
            return Ok(start.elapsed());
        }
        anyhow::ensure!(start.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn say(json: bool, text: &str) {
    if !json {
        eprintln!("{text}");
    }
}

pub async fn run(args: &Args, json: bool) -> anyhow::Result<()> {
    let keys = Keys::new()?;
    let limit = Duration::from_secs(120);

    // The download: A holds the PEs; B starts with A as its mentor.
    say(
        json,
        &format!("registering {} PEs at registrar A ...", args.download_pes),
    );
    let a = keys.registrar(0, Vec::new()).await?;
    register(&a, &keys.pe, 1, args.download_pes).await?;
    let a_enrp = a.handle().enrp_addrs()[0];
    say(json, "starting registrar B, which downloads them ...");
    let start = Instant::now();
    let b = keys.registrar(1, vec![a_enrp]).await?;
    let want = args.download_pes as usize;
    until(&b, limit, "the download", move |c| {
        c.serves_pool_users() && c.handlespace().len() == want
    })
    .await?;
    let download = start.elapsed();

    // Updates: registrations at A, counted as they arrive at B.
    say(
        json,
        &format!(
            "registering {} more PEs at A, counted at B ...",
            args.update_pes
        ),
    );
    let start = Instant::now();
    let (u, first) = (args.update_pes, args.download_pes + 1);
    let register_more = register(&a, &keys.pe, first, u);
    let total = want + u as usize;
    let arrive = until(&b, limit, "the updates", move |c| {
        c.handlespace().len() == total
    });
    let (r, arrived) = tokio::join!(register_more, arrive);
    r?;
    arrived?;
    let updates_per_s = f64::from(u) / start.elapsed().as_secs_f64();
    a.shutdown().await;
    b.shutdown().await;

    // The takeover: C owns the PEs, D is in sync; C stops.
    say(
        json,
        &format!("takeover of a registrar with {} PEs ...", args.takeover_pes),
    );
    let c = keys.registrar(2, Vec::new()).await?;
    register(&c, &keys.pe, 1, args.takeover_pes).await?;
    let d = keys.registrar(3, vec![c.handle().enrp_addrs()[0]]).await?;
    let n = args.takeover_pes as usize;
    until(&d, limit, "the sync before the takeover", move |c| {
        c.handlespace().len() == n
    })
    .await?;
    let d_id = d.handle().server_id();
    let start = Instant::now();
    c.shutdown().await;
    until(&d, limit, "the takeover", move |c| {
        c.handlespace().by_owner(d_id).count() == n
    })
    .await
    .context("the survivor did not home every PE")?;
    let takeover = start.elapsed();
    let held = d.query(|c| c.handlespace().len()).await.unwrap_or(0);
    d.shutdown().await;
    let mut lost = n.saturating_sub(held) as u64;

    // Re-homing: a registrar process killed, then one frozen.
    crate::bench_rehoming::make_room(args.takeover_pes)?;
    let mut rehomed = Vec::new();
    for (failure, name) in [
        (crate::bench_rehoming::Failure::Kill, "SIGKILL"),
        (crate::bench_rehoming::Failure::Stop, "SIGSTOP"),
    ] {
        say(
            json,
            &format!(
                "{name} of a registrar process home to {} PEs of this process ...",
                args.takeover_pes
            ),
        );
        let r = crate::bench_rehoming::run(args.takeover_pes, failure, limit)
            .await
            .with_context(|| format!("re-homing after {name}"))?;
        lost += r.lost;
        rehomed.push(r.took.as_millis() as u64);
    }

    let report = Report {
        download_100k_ms: Some(download.as_millis() as u64),
        download_pes: args.download_pes,
        takeover_10k_ms: rehomed.first().copied(),
        takeover_pes: args.takeover_pes,
        takeover_10k_stop_ms: rehomed.get(1).copied(),
        takeover_unconnected_10k_ms: Some(takeover.as_millis() as u64),
        lost,
        updates_per_s,
        update_pes: args.update_pes,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "download of {} PEs by a new registrar: {} ms",
            report.download_pes,
            download.as_millis()
        );
        println!(
            "handle updates: {:.0}/s ({} registrations at one registrar, all at its peer)",
            updates_per_s, report.update_pes
        );
        let shown = |ms: Option<u64>| ms.map_or("-".to_string(), |ms| format!("{ms} ms"));
        println!(
            "re-homing of {} PEs: {} after SIGKILL of their registrar, {} after SIGSTOP, \
             until every PE is registered with the survivor and it serves them all",
            report.takeover_pes,
            shown(report.takeover_10k_ms),
            shown(report.takeover_10k_stop_ms),
        );
        println!(
            "takeover of a stopped registrar with {} PEs none of which is connected to the survivor: {} ms",
            report.takeover_pes,
            takeover.as_millis(),
        );
        println!("PEs lost: {}", report.lost);
    }
    Ok(())
}
