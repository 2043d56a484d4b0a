//! The demo's lab: pre-shared keys in a temporary directory, the
//! registrars, and the PEs as `rsp pe` child processes (so that killing
//! one is a real crash, not a polite shutdown). One secure registrar runs
//! in this process; with `--cluster`, three run as `rsp registrar` child
//! processes peered with each other (ENRP over TLS), for the same reason
//! as the PEs. Every child is killed when the lab is dropped.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rserpool::{ClientConfig, RegistrarEndpoint};
use rserpool_registrar::{CoreConfig, Event, Registrar, ServiceConfig};
use rserpool_security::{Psk, PskStore, TlsClient, TlsClientConfig, TlsServer, TlsServerConfig};
use rserpool_wire::{PeId, ServerId};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use super::report::Report;

/// How long a PE or registrar process may take to start (register, or
/// listen and meet its peers).
pub const START_LIMIT: Duration = Duration::from_secs(20);
/// How long a PE process may take to deregister and exit on SIGTERM.
const STOP_LIMIT: Duration = Duration::from_secs(10);
/// Identity of the demo's pool user.
const PU_IDENTITY: &str = "pu";
/// Registrars of `--cluster`.
pub const CLUSTER_SIZE: usize = 3;
/// Lines of the children waiting to be read by the demo.
const LINE_QUEUE: usize = 1024;

/// Who printed a [`Line`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Registrar process `index` of [`Lab::registrars`].
    Registrar(usize),
    /// A PE process.
    Pe(PeId),
}

/// A JSON line a child printed on stdout.
#[derive(Debug)]
pub struct Line {
    pub from: Source,
    pub event: serde_json::Value,
}

/// A child process: its name and what it wrote on stderr.
struct Process {
    name: String,
    child: Child,
    stderr: Arc<Mutex<String>>,
    /// The task that reads its stdout (it ends at the child's exit).
    reader: Option<JoinHandle<()>>,
}

impl Process {
    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }

    fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Send `signal`, logging a failure.
    fn signal(&self, signal: Signal) {
        if let Some(pid) = self.pid().and_then(|p| i32::try_from(p).ok()) {
            if let Err(e) = kill(Pid::from_raw(pid), signal) {
                tracing::warn!(process = %self.name, error = %e, "cannot send {signal}");
            }
        }
    }

    /// Wait for the exit (until `deadline`, then SIGKILL) and for the
    /// last stdout line to be read; `Err`: what went wrong, for people.
    async fn exit(&mut self, deadline: tokio::time::Instant) -> Result<(), String> {
        let outcome = match tokio::time::timeout_at(deadline, self.child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(status.to_string()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => {
                let _ = self.child.kill().await;
                Err("did not exit on SIGTERM".to_string())
            }
        };
        if let Some(reader) = self.reader.take() {
            // Its stdout closed with it: the reader reaches the end.
            if tokio::time::timeout_at(deadline, reader).await.is_err() {
                tracing::warn!(process = %self.name, "its output did not end with it");
            }
        }
        outcome
    }
}

/// A PE process.
struct PeProcess {
    process: Process,
    identifier: PeId,
    /// Its "deregistered" line came (the registrar confirmed).
    deregistered: Arc<AtomicBool>,
}

/// A registrar process of the cluster.
pub struct RegistrarProcess {
    pub name: String,
    pub server_id: ServerId,
    pub asap: SocketAddr,
    pub enrp: SocketAddr,
    process: Option<Process>,
}

/// Everything the demo runs, and the directory that holds its keys
/// (deleted when the lab is dropped).
pub struct Lab {
    dir: Option<tempfile::TempDir>,
    /// The in-process registrar (`rsp demo`).
    registrar: Option<Registrar>,
    /// The registrar processes (`rsp demo --cluster`).
    registrars: Vec<RegistrarProcess>,
    /// The registrars' ASAP addresses, in the pool user's order.
    addresses: Vec<SocketAddr>,
    pes: Vec<PeProcess>,
    names: BTreeMap<PeId, String>,
    /// Where the children's lines go (cluster only), and where they come
    /// out until the demo takes them.
    lines_in: Option<mpsc::Sender<Line>>,
    lines_out: Option<mpsc::Receiver<Line>>,
}

impl Lab {
    /// Write the keys, start the registrar (or, with `cluster`, three
    /// peered registrar processes) and `count` PEs.
    pub async fn start(
        count: u8,
        keep_alive: Duration,
        cluster: bool,
        report: &Report,
    ) -> anyhow::Result<Lab> {
        let dir = tempfile::Builder::new()
            .prefix("rsp-demo-")
            .tempdir()
            .context("cannot create a temporary directory for the demo's keys")?;
        let names: Vec<String> = (1..=count).map(|i| format!("pe-{i}")).collect();
        let registrar_names: Vec<String> = if cluster {
            (1..=CLUSTER_SIZE).map(|i| format!("reg-{i}")).collect()
        } else {
            Vec::new()
        };
        let mut key_files = Vec::new();
        for identity in names.iter().map(String::as_str).chain([PU_IDENTITY]) {
            key_files.push(write_key(dir.path(), identity)?);
        }
        let mut registrar_keys = Vec::new();
        for identity in &registrar_names {
            registrar_keys.push(write_key(dir.path(), identity)?);
        }
        report.credentials(dir.path(), &names, PU_IDENTITY, &registrar_names);

        let (lines_in, lines_out) = if cluster {
            let (tx, rx) = mpsc::channel(LINE_QUEUE);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let mut lab = Lab {
            dir: Some(dir),
            registrar: None,
            registrars: Vec::new(),
            addresses: Vec::new(),
            pes: Vec::new(),
            names: BTreeMap::new(),
            lines_in,
            lines_out,
        };
        let exe = std::env::current_exe().context("cannot find the rsp executable")?;
        if cluster {
            lab.start_cluster(
                &exe,
                &registrar_names,
                &registrar_keys,
                &key_files,
                keep_alive,
                report,
            )
            .await?;
        } else {
            lab.start_registrar(&key_files, keep_alive, report).await?;
        }

        // Start them all, then wait for each: registration in parallel.
        let mut starting = Vec::new();
        for (i, (name, key)) in names.iter().zip(&key_files).enumerate() {
            let registrars = lab.registrars_of_pe(i);
            starting.push(spawn_pe(&exe, name, &registrars, key)?);
        }
        for (name, (child, stdout, stderr)) in names.iter().zip(starting) {
            let process = Process {
                name: name.clone(),
                child,
                stderr,
                reader: None,
            };
            let (pe, address, registrar) =
                registered(process, stdout, lab.lines_in.clone()).await?;
            let home = lab.registrar_name(registrar);
            report.pe_started(
                &pe.process.name,
                pe.identifier,
                address,
                pe.process.pid(),
                home.as_deref(),
            );
            lab.names.insert(pe.identifier, pe.process.name.clone());
            lab.pes.push(pe);
        }
        Ok(lab)
    }

    /// The registrar in this process.
    async fn start_registrar(
        &mut self,
        key_files: &[PathBuf],
        keep_alive: Duration,
        report: &Report,
    ) -> anyhow::Result<()> {
        let server_id = rserpool_registrar::config::random_server_id()
            .context("cannot draw a random server id")?;
        let tls = TlsServer::new(&TlsServerConfig {
            psks: Some(Arc::new(PskStore::load(key_files)?)),
            ..TlsServerConfig::default()
        })?;
        let registrar = Registrar::start(ServiceConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            tls: Some(Arc::new(tls)),
            core: CoreConfig {
                server_id,
                keep_alive_interval: keep_alive,
                keep_alive_timeout: keep_alive,
                ..CoreConfig::default()
            },
            ..ServiceConfig::default()
        })
        .await?;
        let address = *registrar
            .local_addrs()
            .first()
            .context("the registrar has no listen address")?;
        report.registrar(server_id, address, keep_alive);
        self.registrar = Some(registrar);
        self.addresses = vec![address];
        Ok(())
    }

    /// Three `rsp registrar` processes, each with its own key and the
    /// others' as peer keys; each dials the ones started before it, so
    /// that all three are peers of each other. Returns once each saw the
    /// other two.
    async fn start_cluster(
        &mut self,
        exe: &Path,
        names: &[String],
        own_keys: &[PathBuf],
        client_keys: &[PathBuf],
        keep_alive: Duration,
        report: &Report,
    ) -> anyhow::Result<()> {
        let lines = self
            .lines_in
            .clone()
            .context("the cluster lab has no line queue")?;
        for (i, (name, own)) in names.iter().zip(own_keys).enumerate() {
            let peer_keys: Vec<&PathBuf> = own_keys
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, k)| k)
                .collect();
            let peers: Vec<SocketAddr> = self.registrars.iter().map(|r| r.enrp).collect();
            let mut cmd = Command::new(exe);
            cmd.args(["--log", "warn", "registrar", "--listen", "127.0.0.1:0"])
                .args(["--enrp-listen", "127.0.0.1:0", "--enrp-psk-file"])
                .arg(own)
                .arg("--keep-alive-interval")
                .arg(humantime::format_duration(keep_alive).to_string())
                .arg("--keep-alive-timeout")
                .arg(humantime::format_duration(keep_alive).to_string())
                .arg("--json");
            for k in client_keys {
                cmd.arg("--psk-file").arg(k);
            }
            for k in peer_keys {
                cmd.arg("--peer-psk-file").arg(k);
            }
            for p in &peers {
                cmd.arg("--peer").arg(p.to_string());
            }
            let (child, stdout, stderr) = spawn(&mut cmd, name)?;
            let mut process = Process {
                name: name.clone(),
                child,
                stderr,
                reader: None,
            };
            let mut out = BufReader::new(stdout).lines();
            let first = tokio::time::timeout(START_LIMIT, listening(&mut out)).await;
            let (server_id, asap, enrp) = match first {
                Ok(Ok(Some(x))) => x,
                Ok(Ok(None)) | Ok(Err(_)) => {
                    let _ = process.child.wait().await;
                    anyhow::bail!("{name} exited before listening: {}", process.stderr());
                }
                Err(_) => anyhow::bail!("{name} did not listen within {START_LIMIT:?}"),
            };
            report.registrar_process(
                name,
                server_id,
                asap,
                enrp,
                process.pid(),
                &peers,
                keep_alive,
            );
            process.reader = Some(forward(
                out,
                Source::Registrar(i),
                Some(lines.clone()),
                None,
            ));
            self.registrars.push(RegistrarProcess {
                name: name.clone(),
                server_id,
                asap,
                enrp,
                process: Some(process),
            });
        }
        self.addresses = self.registrars.iter().map(|r| r.asap).collect();

        // Every pair associated: the first of the two to report the
        // other up is enough (the three agreeing on the PEs later shows
        // that updates flow between all of them).
        let ids: Vec<ServerId> = self.registrars.iter().map(|r| r.server_id).collect();
        let rx = self
            .lines_out
            .as_mut()
            .context("the cluster lab has no line queue")?;
        let mut up = std::collections::BTreeSet::new();
        let pairs = ids.len() * (ids.len() - 1) / 2;
        let deadline = tokio::time::Instant::now() + START_LIMIT;
        while up.len() < pairs {
            let line = match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(l)) => l,
                Ok(None) => anyhow::bail!("the registrars' output ended"),
                Err(_) => anyhow::bail!(
                    "the registrars did not all become peers within {START_LIMIT:?}{}",
                    self.registrar_errors()
                ),
            };
            tracing::debug!(from = ?line.from, event = %line.event, "child process line");
            if let (Source::Registrar(i), Some("peer_up")) =
                (line.from, line.event["event"].as_str())
            {
                let peer = serde_json::from_value::<ServerId>(line.event["server_id"].clone())
                    .ok()
                    .and_then(|id| ids.iter().position(|&x| x == id));
                if let Some(j) = peer.filter(|&j| j != i) {
                    up.insert((i.min(j), i.max(j)));
                }
            }
        }
        report.cluster_formed(names);
        Ok(())
    }

    /// What the registrar processes wrote on stderr, for an error.
    fn registrar_errors(&self) -> String {
        self.registrars
            .iter()
            .filter_map(|r| {
                let s = r.process.as_ref()?.stderr();
                (!s.is_empty()).then(|| format!("\n{}: {s}", r.name))
            })
            .collect()
    }

    /// The registrars PE `index` is given, in its order of preference.
    /// In a cluster the orders differ, so that the PEs spread: most start
    /// with the first registrar, which thus is the home of most; the
    /// others start with the second or the third; and after the first,
    /// the orders alternate, so that a PE that loses its registrar hunts
    /// to one survivor or the other (RFC 5352 3.6: the next of its list).
    fn registrars_of_pe(&self, index: usize) -> Vec<SocketAddr> {
        let a = &self.addresses;
        if a.len() < CLUSTER_SIZE {
            return a.clone();
        }
        let order: [usize; CLUSTER_SIZE] = match index % 4 {
            0 => [0, 1, 2],
            1 => [1, 2, 0],
            2 => [0, 2, 1],
            _ => [2, 0, 1],
        };
        order.iter().map(|&i| a[i]).collect()
    }

    /// The name of the registrar process at ASAP address `address`.
    pub fn registrar_name(&self, address: SocketAddr) -> Option<String> {
        self.registrars
            .iter()
            .find(|r| r.asap == address)
            .map(|r| r.name.clone())
    }

    /// The registrar processes (empty without `--cluster`).
    pub fn registrars(&self) -> &[RegistrarProcess] {
        &self.registrars
    }

    /// The children's JSON lines from now on (cluster only; once).
    pub fn take_lines(&mut self) -> Option<mpsc::Receiver<Line>> {
        self.lines_out.take()
    }

    /// Names of the PEs by identifier.
    pub fn names(&self) -> &BTreeMap<PeId, String> {
        &self.names
    }

    /// The in-process registrar's events.
    pub fn registrar_events(&self) -> broadcast::Receiver<Event> {
        match &self.registrar {
            Some(r) => r.events(),
            None => broadcast::channel(1).1,
        }
    }

    /// The pool user's client configuration (its own key, every
    /// registrar).
    pub fn pool_user_config(&self) -> anyhow::Result<ClientConfig> {
        self.client_config(&self.addresses)
    }

    /// A client configuration with the pool user's key for `registrars`.
    pub fn client_config(&self, registrars: &[SocketAddr]) -> anyhow::Result<ClientConfig> {
        let dir = self.dir.as_ref().context("the demo has stopped")?;
        let path = dir.path().join(format!("{PU_IDENTITY}.key"));
        let psk = Psk::read_file(&path)?
            .into_iter()
            .next()
            .with_context(|| format!("{}: no key", path.display()))?;
        let tls = TlsClient::new(&TlsClientConfig {
            psk: Some(psk),
            ..TlsClientConfig::default()
        })?;
        Ok(ClientConfig::new(
            registrars
                .iter()
                .map(|a| RegistrarEndpoint::new(*a))
                .collect(),
            Some(tls),
        ))
    }

    /// The PE to kill: the middle one.
    pub fn victim(&self) -> usize {
        self.pes.len() / 2
    }

    /// Kill PE `index` with SIGKILL; its identifier.
    pub async fn kill(
        &mut self,
        index: usize,
        report: &Report,
        start: Instant,
    ) -> anyhow::Result<PeId> {
        let mut pe = self.pes.remove(index);
        report.killing(start, &pe.process.name, pe.identifier, pe.process.pid());
        pe.process
            .child
            .kill()
            .await
            .with_context(|| format!("cannot kill {}", pe.process.name))?;
        Ok(pe.identifier)
    }

    /// Kill registrar process `index` with SIGKILL (and reap it).
    pub async fn kill_registrar(&mut self, index: usize) -> anyhow::Result<()> {
        let r = self
            .registrars
            .get_mut(index)
            .with_context(|| format!("no registrar {index}"))?;
        if let Some(mut p) = r.process.take() {
            p.child
                .kill()
                .await
                .with_context(|| format!("cannot kill {}", r.name))?;
        }
        Ok(())
    }

    /// The process id of registrar process `index`.
    pub fn registrar_pid(&self, index: usize) -> Option<u32> {
        self.registrars
            .get(index)?
            .process
            .as_ref()
            .and_then(Process::pid)
    }

    /// Stop the PEs with SIGTERM (they deregister), then the registrars.
    pub async fn stop(&mut self, report: &Report) {
        let mut events = self.registrar_events();
        let names: Vec<String> = self.pes.iter().map(|p| p.process.name.clone()).collect();
        report.stopping(&names);
        // Nobody reads the children's lines any more: their readers only
        // drain from now on.
        self.lines_out = None;
        self.lines_in = None;
        for pe in &self.pes {
            pe.process.signal(Signal::SIGTERM);
        }
        let deadline = tokio::time::Instant::now() + STOP_LIMIT;
        for pe in &mut self.pes {
            if let Err(why) = pe.process.exit(deadline).await {
                report.pe_failed(&pe.process.name, &why, &pe.process.stderr());
            }
        }
        let mut deregistered = 0;
        if self.registrar.is_some() {
            // The registrar's word that each PE deregistered (it already
            // happened: the PEs exit only after the answer or their
            // timeout).
            let waiting: Vec<PeId> = self.pes.iter().map(|p| p.identifier).collect();
            while let Ok(e) = events.try_recv() {
                if let Event::Removed {
                    identifier, reason, ..
                } = e
                {
                    if waiting.contains(&identifier) {
                        deregistered += 1;
                        report.pe_stopped(&self.names, identifier, reason);
                    }
                }
            }
        } else {
            // The PE's word: its registrar confirmed the deregistration.
            for pe in &self.pes {
                if pe.deregistered.load(Ordering::Relaxed) {
                    deregistered += 1;
                    report.pe_stopped(
                        &self.names,
                        pe.identifier,
                        rserpool_registrar::Removal::Deregistered,
                    );
                }
            }
        }
        self.pes.clear();
        if let Some(r) = self.registrar.take() {
            r.shutdown().await;
        }
        for r in &self.registrars {
            if let Some(p) = &r.process {
                p.signal(Signal::SIGTERM);
            }
        }
        let deadline = tokio::time::Instant::now() + STOP_LIMIT;
        for r in &mut self.registrars {
            if let Some(mut p) = r.process.take() {
                if let Err(why) = p.exit(deadline).await {
                    report.registrar_failed(&p.name, &why, &p.stderr());
                }
            }
        }
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_owned();
            if let Err(e) = dir.close() {
                tracing::warn!(dir = %path.display(), error = %e, "cannot remove the demo's keys");
            }
            report.stopped(deregistered, self.registrars.len().max(1), &path);
        }
    }
}

/// Write a new key file for `identity` in `dir`.
fn write_key(dir: &Path, identity: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("{identity}.key"));
    Psk::generate(identity)?.write_new(&path)?;
    Ok(path)
}

type Starting = (Child, ChildStdout, Arc<Mutex<String>>);

/// Start `cmd` (killed when dropped) with its stdout piped to us and its
/// stderr kept.
fn spawn(cmd: &mut Command, name: &str) -> anyhow::Result<Starting> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    let stdout = child.stdout.take().context("no stdout pipe")?;
    let stderr = Arc::new(Mutex::new(String::new()));
    if let Some(pipe) = child.stderr.take() {
        let sink = stderr.clone();
        // Keep the first 64 KiB for error messages, and keep draining so
        // that the child never blocks on a full pipe.
        tokio::spawn(async move {
            let mut lines = BufReader::new(pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(mut s) = sink.lock() {
                    if s.len() < 64 * 1024 {
                        s.push_str(&line);
                        s.push('\n');
                    }
                }
            }
        });
    }
    Ok((child, stdout, stderr))
}

/// Start `rsp pe echo` for PE `name` with its key file and registrars.
fn spawn_pe(
    exe: &Path,
    name: &str,
    registrars: &[SocketAddr],
    key: &Path,
) -> anyhow::Result<Starting> {
    let list: Vec<String> = registrars.iter().map(ToString::to_string).collect();
    let mut cmd = Command::new(exe);
    cmd.args(["--log", "warn", "pe", super::POOL, "--registrar"])
        .arg(list.join(","))
        .arg("--psk-file")
        .arg(key)
        .args(["--bind", "127.0.0.1", "--policy", "rr", "--json"]);
    spawn(&mut cmd, name).with_context(|| format!("({})", exe.display()))
}

/// Read the rest of a child's stdout: JSON lines go to `lines` (while
/// someone reads them), a "deregistered" line sets `deregistered`.
fn forward(
    mut out: Lines<BufReader<ChildStdout>>,
    from: Source,
    mut lines: Option<mpsc::Sender<Line>>,
    deregistered: Option<Arc<AtomicBool>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok(Some(line)) = out.next_line().await {
            let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if let Some(flag) = &deregistered {
                if event["event"] == "deregistered" {
                    flag.store(true, Ordering::Relaxed);
                }
            }
            if let Some(tx) = &lines {
                if tx.send(Line { from, event }).await.is_err() {
                    lines = None;
                }
            }
        }
    })
}

/// A registrar's first lines: its server id, ASAP and ENRP addresses.
async fn listening(
    out: &mut Lines<BufReader<ChildStdout>>,
) -> std::io::Result<Option<(ServerId, SocketAddr, SocketAddr)>> {
    let mut asap = None;
    while let Some(line) = out.next_line().await? {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let address = v["address"].as_str().and_then(|a| a.parse().ok());
        match (v["event"].as_str(), address) {
            (Some("listening"), Some(a)) if v["pool_users_only"].is_null() => {
                let id = serde_json::from_value::<ServerId>(v["server_id"].clone()).ok();
                asap = id.map(|id| (id, a));
            }
            (Some("enrp_listening"), Some(enrp)) => {
                return Ok(asap.map(|(id, a)| (id, a, enrp)));
            }
            _ => {}
        }
    }
    Ok(None)
}

/// Wait for the PE's "registered" line; the PE, its echo address and
/// the registrar it registered with. Its later lines go to `lines`.
async fn registered(
    mut process: Process,
    stdout: ChildStdout,
    lines: Option<mpsc::Sender<Line>>,
) -> anyhow::Result<(PeProcess, SocketAddr, SocketAddr)> {
    let mut out = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(START_LIMIT, async {
        while let Some(line) = out.next_line().await? {
            let v: serde_json::Value = match serde_json::from_str(&line) {
                Ok(v) => v,
                Err(_) => continue,
            };
            if v["event"] == "registered" {
                return Ok(Some(v));
            }
        }
        Ok::<_, std::io::Error>(None)
    })
    .await;
    let name = process.name.clone();
    let v = match first {
        Ok(Ok(Some(v))) => v,
        Ok(Ok(None)) | Ok(Err(_)) => {
            let _ = process.child.wait().await;
            anyhow::bail!("{name} exited before registering: {}", process.stderr());
        }
        Err(_) => anyhow::bail!("{name} did not register within {START_LIMIT:?}"),
    };
    let identifier = v["identifier"]
        .as_u64()
        .and_then(|i| u32::try_from(i).ok())
        .map(PeId::new)
        .with_context(|| format!("{name}: no identifier in {v}"))?;
    let port = v["port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .with_context(|| format!("{name}: no port in {v}"))?;
    let registrar = v["registrar"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .with_context(|| format!("{name}: no registrar in {v}"))?;
    let deregistered = Arc::new(AtomicBool::new(false));
    process.reader = Some(forward(
        out,
        Source::Pe(identifier),
        lines,
        Some(deregistered.clone()),
    ));
    let pe = PeProcess {
        process,
        identifier,
        deregistered,
    };
    Ok((pe, SocketAddr::from(([127, 0, 0, 1], port)), registrar))
}
