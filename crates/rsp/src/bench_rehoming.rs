//! The re-homing part of `rsp bench cluster`: a registrar process (the
//! victim) is home to N PEs, each with its standby link to a second
//! registrar (the survivor, in this process); the PEs run in helper
//! processes (`rsp bench pe-host`, hidden), 4,000 each, as their two
//! connections apiece would not fit one process's descriptors. The
//! victim is killed (SIGKILL: its connections reset) or frozen (SIGSTOP:
//! they stay open and nothing answers). Measured: from the signal until
//! every PE says it is registered with the survivor and the survivor
//! homes and serves all N (RFC 5353 3.5, over TCP as docs/tcp-mapping.md
//! says); the PEs missing at the survivor then are lost.
//!
//! On loopback every connection goes to one address from one host, so
//! the kernel's search for a free ephemeral port slows down as they
//! pass 20,000 (the old connections to the frozen victim and the PEs'
//! new standby attempts to it): beyond about 6,000 PEs the SIGSTOP
//! figure measures that too.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rserpool::{ClientConfig, PoolElement, PoolElementSpec, RegistrarEndpoint};
use rserpool_registrar::{CoreConfig, EnrpConfig, Registrar, ServiceConfig};
use rserpool_security::apd::Apd;
use rserpool_security::rate_limit::Rate;
use rserpool_security::{PeerIdentity, Psk, PskStore, TlsServer, TlsServerConfig};
use rserpool_wire::{Policy, PoolHandle, ServerId};
use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::bench::tls_client;
use crate::bench_child::RspChild;

/// How the victim is made to fail.
#[derive(Debug, Clone, Copy)]
pub enum Failure {
    /// SIGKILL.
    Kill,
    /// SIGSTOP (SIGCONT and SIGKILL at the end of the run).
    Stop,
}

impl Failure {
    fn signal(self) -> nix::sys::signal::Signal {
        match self {
            Failure::Kill => nix::sys::signal::Signal::SIGKILL,
            Failure::Stop => nix::sys::signal::Signal::SIGSTOP,
        }
    }
}

/// What one run measured.
pub struct Rehoming {
    /// From the signal until all PEs were re-homed and served.
    pub took: Duration,
    /// PEs of the victim that the survivor did not hold at the end.
    pub lost: u64,
}

/// PEs started at once in a PE host (each a TLS handshake with the
/// victim, then one with the survivor for its standby link).
const STARTING_AT_ONCE: usize = 64;

/// PEs per helper process (two descriptors each).
const PES_PER_HOST: u32 = 4_000;

/// Make room for the descriptors of `pes` PEs: in this process the
/// survivor's end of each standby link (the PEs are in helper
/// processes, which inherit the limit: two connections each). The soft
/// limit goes up to what is needed, the hard one too where the process
/// may (root).
pub fn make_room(pes: u32) -> anyhow::Result<()> {
    make_room_for(
        u64::from(pes).max(2 * u64::from(PES_PER_HOST.min(pes))) + 512,
        pes,
    )
}

fn make_room_for(wanted: u64, pes: u32) -> anyhow::Result<()> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft >= wanted {
        return Ok(());
    }
    setrlimit(Resource::RLIMIT_NOFILE, wanted, hard.max(wanted)).with_context(|| {
        format!(
            "{pes} PEs need {wanted} file descriptors, the limit is {hard} \
             (raise it, ulimit -Hn, or use fewer --takeover-pes)"
        )
    })?;
    Ok(())
}

/// One run: a fresh survivor, victim and PEs; `failure` strikes the
/// victim once all PEs are registered with it.
pub async fn run(pes: u32, failure: Failure, limit: Duration) -> anyhow::Result<Rehoming> {
    let dir = tempfile::tempdir()?;
    let victim_key = Psk::generate("bench-victim")?;
    let survivor_key = Psk::generate("bench-survivor")?;
    let pe_key = Psk::generate("bench-pe")?;
    let survivor = start_survivor(&survivor_key, &victim_key, &pe_key, pes).await?;
    let survivor_asap = survivor.local_addrs()[0];
    let survivor_enrp = survivor.handle().enrp_addrs()[0];
    let survivor_id = survivor.handle().server_id();
    let victim = Victim::start(
        dir.path(),
        &victim_key,
        &survivor_key,
        &pe_key,
        survivor_enrp,
        pes,
    )
    .await?;
    let wait_peered = until(limit, "the victim and the survivor peer", || async {
        survivor
            .query(|c| c.peers().any(|p| p.up))
            .await
            .unwrap_or(false)
    });
    wait_peered.await?;

    // The PEs, in helper processes of PES_PER_HOST each (two
    // connections per PE: the descriptors of one process hold 10,000
    // PEs nowhere near): the victim first in their list (their home), the
    // survivor second (their standby link).
    let n = pes as usize;
    let mut hosts = Vec::new();
    let mut first = 0;
    while first < pes {
        let count = PES_PER_HOST.min(pes - first);
        hosts.push(
            PeHost::start(
                &dir.path().join("pe.key"),
                victim.asap,
                survivor_asap,
                first,
                count,
            )
            .await?,
        );
        first += count;
    }
    let registered_at = |hosts: &[PeHost], r: SocketAddr| -> usize {
        hosts.iter().map(|h| h.registered_at(r)).sum()
    };
    // Every PE at the victim, its standby link up, the survivor in sync.
    let ready = until(
        limit,
        "every PE registered with the victim and standing by",
        || async {
            registered_at(&hosts, victim.asap) == n
                && survivor
                    .query(move |c| c.handlespace().len() == n && c.standby_links() == n)
                    .await
                    .unwrap_or(false)
        },
    )
    .await;
    if let Err(e) = ready {
        let (held, standing_by) = survivor
            .query(|c| (c.handlespace().len(), c.standby_links()))
            .await
            .unwrap_or_default();
        anyhow::bail!(
            "{e}: {} of {n} PEs registered with the victim, {} with the survivor; the survivor holds {held} and has {standing_by} standby links",
            registered_at(&hosts, victim.asap),
            registered_at(&hosts, survivor_asap),
        );
    }

    let start = Instant::now();
    victim.signal(failure.signal())?;
    until(limit, "every PE re-homed at the survivor", || async {
        registered_at(&hosts, survivor_asap) == n
            && survivor
                .query(move |c| {
                    c.serves_pool_users() && c.handlespace().by_owner(survivor_id).count() == n
                })
                .await
                .unwrap_or(false)
    })
    .await?;
    let took = start.elapsed();
    let held = survivor.query(|c| c.handlespace().len()).await.unwrap_or(0);
    if matches!(failure, Failure::Stop) {
        let _ = victim.signal(nix::sys::signal::Signal::SIGCONT);
    }
    // Killed without deregistering: the survivor goes with them.
    drop(hosts);
    victim.kill().await;
    survivor.shutdown().await;
    Ok(Rehoming {
        took,
        lost: n.saturating_sub(held) as u64,
    })
}

/// Poll `f` every 5 ms until it holds, at most `limit`.
async fn until<F, Fut>(limit: Duration, what: &str, f: F) -> anyhow::Result<Duration>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if f().await {
            return Ok(start.elapsed());
        }
        anyhow::ensure!(start.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The survivor, in this process: it takes the victim's key as a peer,
/// and its limits hold the PEs' standby links.
async fn start_survivor(own: &Psk, victim: &Psk, pe: &Psk, pes: u32) -> anyhow::Result<Registrar> {
    let mut store = PskStore::default();
    for k in [own, victim, pe] {
        store.insert(k.clone()).map_err(anyhow::Error::msg)?;
    }
    let tls = Arc::new(TlsServer::new(&TlsServerConfig {
        psks: Some(Arc::new(store)),
        ..TlsServerConfig::default()
    })?);
    let ids = [own, victim].map(|k| PeerIdentity::Psk(k.identity.clone()));
    let room = 2 * pes as usize + 64;
    Ok(Registrar::start(ServiceConfig {
        listen: vec!["127.0.0.1:0".parse()?],
        enrp_listen: vec!["127.0.0.1:0".parse()?],
        tls: Some(tls),
        tls_client: Some(Arc::new(tls_client(own)?)),
        apd: Apd::permissive_with_registrars(false, &ids),
        max_connections: room,
        max_connections_per_address: room,
        max_handshakes: room,
        max_handshakes_per_address: room,
        core: CoreConfig {
            server_id: ServerId::new(0x5_0001),
            registration_rate: Rate::UNLIMITED,
            registration_rate_per_address: Rate::UNLIMITED,
            registration_rate_global: Rate::UNLIMITED,
            max_pes_per_identity: room,
            max_connections_per_identity: room,
            enrp: EnrpConfig {
                update_rate: Rate::UNLIMITED,
                ..EnrpConfig::default()
            },
            ..CoreConfig::default()
        },
        ..ServiceConfig::default()
    })
    .await?)
}

/// The victim: `rsp registrar` as a child process (killed if dropped),
/// peered with the survivor, with the default timers and its limits
/// lifted for one identity's N PEs.
struct Victim {
    child: RspChild,
    asap: SocketAddr,
}

impl Victim {
    async fn start(
        dir: &Path,
        own: &Psk,
        survivor: &Psk,
        pe: &Psk,
        survivor_enrp: SocketAddr,
        pes: u32,
    ) -> anyhow::Result<Victim> {
        for (file, key) in [("own.key", own), ("survivor.key", survivor), ("pe.key", pe)] {
            key.write_new(&dir.join(file))?;
        }
        let config = dir.join("victim.toml");
        let unlimited = "{ per_second = inf, burst = 1 }";
        std::fs::write(
            &config,
            format!(
                "listen = [\"127.0.0.1:0\"]\n\
                 json = true\n\
                 peers = [\"{survivor_enrp}\"]\n\
                 [tls]\npsk_files = [\"pe.key\"]\n\
                 [enrp]\nlisten = [\"127.0.0.1:0\"]\npsk_file = \"own.key\"\n\
                 peer_psk_files = [\"survivor.key\"]\n\
                 [connections]\nmax = {max}\nmax_per_address = {max}\nmax_per_identity = {max}\n\
                 max_handshakes = {max}\nmax_handshakes_per_address = {max}\n\
                 [registration]\nmax_pes_per_identity = {max}\n\
                 [limits]\nregistrations_per_identity = {unlimited}\n\
                 registrations_per_address = {unlimited}\n\
                 registrations_global = {unlimited}\n",
                max = 2 * pes + 64
            ),
        )?;
        let (child, asap) = RspChild::registrar("victim registrar", &config).await?;
        Ok(Victim { child, asap })
    }

    fn signal(&self, signal: nix::sys::signal::Signal) -> anyhow::Result<()> {
        self.child.signal(signal)
    }

    async fn kill(self) {
        self.child.kill().await;
    }
}

/// Flags of `rsp bench pe-host` (hidden): the PEs of `rsp bench
/// cluster`'s re-homing runs, in a process of their own.
#[derive(Debug, clap::Args)]
pub struct PeHostArgs {
    /// Their registrars, in order (the first is their home).
    #[arg(long = "registrar", value_name = "ADDR", required = true)]
    pub registrars: Vec<SocketAddr>,
    /// Their key.
    #[arg(long, value_name = "FILE")]
    pub psk_file: std::path::PathBuf,
    /// How many.
    #[arg(long, default_value_t = 1)]
    pub pes: u32,
    /// The first one's number (their ports follow from it).
    #[arg(long, default_value_t = 0)]
    pub first: u32,
}

/// `rsp bench pe-host`: start the PEs, then print a JSON line with the
/// number of PEs registered at each registrar whenever it changes, until
/// killed.
pub async fn pe_host(args: &PeHostArgs) -> anyhow::Result<()> {
    make_room_for(2 * u64::from(args.pes) + 256, args.pes)?;
    let key = Psk::read_file(&args.psk_file)?
        .into_iter()
        .next()
        .context("no key in the key file")?;
    let tls = tls_client(&key)?;
    let registrars: Vec<RegistrarEndpoint> = args
        .registrars
        .iter()
        .map(|&a| RegistrarEndpoint::new(a))
        .collect();
    let handle = PoolHandle::from_static("bench");
    let gate = Arc::new(tokio::sync::Semaphore::new(STARTING_AT_ONCE));
    let mut starting = tokio::task::JoinSet::new();
    for i in args.first..args.first + args.pes {
        let (config, gate) = (
            ClientConfig::new(registrars.clone(), Some(tls.clone())),
            gate.clone(),
        );
        let spec = PoolElementSpec::new(
            handle.clone(),
            Policy::RoundRobin,
            10_000 + (i % 50_000) as u16,
        );
        starting.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            anyhow::Ok(PoolElement::start(config, spec).await?)
        });
    }
    let mut elements = Vec::with_capacity(args.pes as usize);
    while let Some(r) = starting.join_next().await {
        elements.push(r.context("a PE task failed")??);
    }
    let mut last = None;
    loop {
        let mut at: BTreeMap<String, usize> = BTreeMap::new();
        for pe in &elements {
            let s = pe.status();
            if let (true, Some(r)) = (s.registered, s.registrar) {
                *at.entry(r.to_string()).or_default() += 1;
            }
        }
        if last.as_ref() != Some(&at) {
            println!("{}", serde_json::json!({ "registered": at }));
            last = Some(at);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A `rsp bench pe-host` child (killed when dropped) and what it last
/// said.
struct PeHost {
    _child: RspChild,
    registered: Arc<Mutex<BTreeMap<String, usize>>>,
}

impl PeHost {
    async fn start(
        key: &Path,
        home: SocketAddr,
        standby: SocketAddr,
        first: u32,
        pes: u32,
    ) -> anyhow::Result<PeHost> {
        let (home, standby) = (home.to_string(), standby.to_string());
        let (pes, first) = (pes.to_string(), first.to_string());
        let args: Vec<&std::ffi::OsStr> = [
            "--log",
            "error",
            "bench",
            "pe-host",
            "--registrar",
            &home,
            "--registrar",
            &standby,
            "--psk-file",
        ]
        .into_iter()
        .map(std::ffi::OsStr::new)
        .chain([key.as_os_str()])
        .chain(["--pes", &pes, "--first", &first].map(std::ffi::OsStr::new))
        .collect();
        let (child, mut lines) = RspChild::spawn("PE host", &args)?;
        let registered = Arc::new(Mutex::new(BTreeMap::new()));
        let sink = registered.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                if let Ok(at) =
                    serde_json::from_value::<BTreeMap<String, usize>>(v["registered"].clone())
                {
                    if let Ok(mut r) = sink.lock() {
                        *r = at;
                    }
                }
            }
        });
        Ok(PeHost {
            _child: child,
            registered,
        })
    }

    /// How many of its PEs are registered at `r`, by its last line.
    fn registered_at(&self, r: SocketAddr) -> usize {
        self.registered
            .lock()
            .map_or(0, |m| m.get(&r.to_string()).copied().unwrap_or(0))
    }
}
