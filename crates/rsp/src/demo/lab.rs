//! The demo's lab: pre-shared keys in a temporary directory, a secure
//! registrar in this process, and the PEs as `rsp pe` child processes
//! (so that killing one is a real crash, not a polite shutdown).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rserpool::{ClientConfig, RegistrarEndpoint};
use rserpool_registrar::{CoreConfig, Event, Registrar, ServiceConfig};
use rserpool_security::{Psk, PskStore, TlsClient, TlsClientConfig, TlsServer, TlsServerConfig};
use rserpool_wire::PeId;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::broadcast;

use super::report::Report;

/// How long a PE process may take to register.
const START_LIMIT: Duration = Duration::from_secs(20);
/// How long a PE process may take to deregister and exit on SIGTERM.
const STOP_LIMIT: Duration = Duration::from_secs(10);
/// Identity of the demo's pool user.
const PU_IDENTITY: &str = "pu";

/// A PE process.
struct PeProcess {
    name: String,
    identifier: PeId,
    child: Child,
    stderr: Arc<Mutex<String>>,
}

/// Everything the demo runs, and the directory that holds its keys
/// (deleted when the lab is dropped).
pub struct Lab {
    dir: Option<tempfile::TempDir>,
    registrar: Option<Registrar>,
    address: SocketAddr,
    pes: Vec<PeProcess>,
    names: BTreeMap<PeId, String>,
}

impl Lab {
    /// Write the keys, start the registrar and `count` PEs.
    pub async fn start(count: u8, keep_alive: Duration, report: &Report) -> anyhow::Result<Lab> {
        let dir = tempfile::Builder::new()
            .prefix("rsp-demo-")
            .tempdir()
            .context("cannot create a temporary directory for the demo's keys")?;
        let names: Vec<String> = (1..=count).map(|i| format!("pe-{i}")).collect();
        let mut key_files = Vec::new();
        for identity in names.iter().map(String::as_str).chain([PU_IDENTITY]) {
            key_files.push(write_key(dir.path(), identity)?);
        }
        report.credentials(dir.path(), &names, PU_IDENTITY);

        let server_id = rserpool_registrar::config::random_server_id()
            .context("cannot draw a random server id")?;
        let tls = TlsServer::new(&TlsServerConfig {
            psks: Some(Arc::new(PskStore::load(&key_files)?)),
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

        let mut lab = Lab {
            dir: Some(dir),
            registrar: Some(registrar),
            address,
            pes: Vec::new(),
            names: BTreeMap::new(),
        };
        // Start them all, then wait for each: registration in parallel.
        let exe = std::env::current_exe().context("cannot find the rsp executable")?;
        let mut starting = Vec::new();
        for (name, key) in names.iter().zip(&key_files) {
            starting.push(spawn_pe(&exe, name, address, key)?);
        }
        for (name, (child, stdout, stderr)) in names.iter().zip(starting) {
            let (pe, address) = registered(name.clone(), child, stdout, stderr).await?;
            report.pe_started(&pe.name, pe.identifier, address, pe.child.id());
            lab.names.insert(pe.identifier, pe.name.clone());
            lab.pes.push(pe);
        }
        Ok(lab)
    }

    /// Names of the PEs by identifier.
    pub fn names(&self) -> &BTreeMap<PeId, String> {
        &self.names
    }

    /// The registrar's events.
    pub fn registrar_events(&self) -> broadcast::Receiver<Event> {
        match &self.registrar {
            Some(r) => r.events(),
            None => broadcast::channel(1).1,
        }
    }

    /// The pool user's client configuration (its own key, this registrar).
    pub fn pool_user_config(&self) -> anyhow::Result<ClientConfig> {
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
            vec![RegistrarEndpoint::new(self.address)],
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
        report.killing(start, &pe.name, pe.identifier, pe.child.id());
        pe.child
            .kill()
            .await
            .with_context(|| format!("cannot kill {}", pe.name))?;
        Ok(pe.identifier)
    }

    /// Stop the PEs with SIGTERM (they deregister), then the registrar.
    pub async fn stop(&mut self, report: &Report) {
        let mut events = self.registrar_events();
        let names: Vec<String> = self.pes.iter().map(|p| p.name.clone()).collect();
        report.stopping(&names);
        let mut waiting = Vec::new();
        for pe in &mut self.pes {
            if let Some(pid) = pe.child.id().and_then(|p| i32::try_from(p).ok()) {
                if let Err(e) = kill(Pid::from_raw(pid), Signal::SIGTERM) {
                    tracing::warn!(pe = %pe.name, error = %e, "cannot send SIGTERM");
                }
            }
            waiting.push(pe.identifier);
        }
        let deadline = tokio::time::Instant::now() + STOP_LIMIT;
        for pe in &mut self.pes {
            match tokio::time::timeout_at(deadline, pe.child.wait()).await {
                Ok(Ok(status)) if status.success() => {}
                Ok(Ok(status)) => report.pe_failed(&pe.name, &status.to_string(), &stderr_of(pe)),
                Ok(Err(e)) => report.pe_failed(&pe.name, &e.to_string(), &stderr_of(pe)),
                Err(_) => {
                    let _ = pe.child.kill().await;
                    report.pe_failed(&pe.name, "did not exit on SIGTERM", &stderr_of(pe));
                }
            }
        }
        // The registrar's word that each PE deregistered (it already
        // happened: the PEs exit only after the answer or their timeout).
        let mut deregistered = 0;
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
        self.pes.clear();
        if let Some(r) = self.registrar.take() {
            r.shutdown().await;
        }
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_owned();
            if let Err(e) = dir.close() {
                tracing::warn!(dir = %path.display(), error = %e, "cannot remove the demo's keys");
            }
            report.stopped(deregistered, &path);
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

/// Start `rsp pe echo` for PE `name` with its key file.
fn spawn_pe(exe: &Path, name: &str, registrar: SocketAddr, key: &Path) -> anyhow::Result<Starting> {
    let mut child = Command::new(exe)
        .args(["--log", "warn", "pe", super::POOL, "--registrar"])
        .arg(registrar.to_string())
        .arg("--psk-file")
        .arg(key)
        .args(["--bind", "127.0.0.1", "--policy", "rr", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {name} ({})", exe.display()))?;
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

/// Wait for the PE's "registered" line; its identifier and echo address.
async fn registered(
    name: String,
    child: Child,
    stdout: ChildStdout,
    stderr: Arc<Mutex<String>>,
) -> anyhow::Result<(PeProcess, SocketAddr)> {
    let mut pe = PeProcess {
        name,
        identifier: PeId::new(0),
        child,
        stderr,
    };
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(START_LIMIT, async {
        while let Some(line) = lines.next_line().await? {
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
    let v = match first {
        Ok(Ok(Some(v))) => v,
        Ok(Ok(None)) | Ok(Err(_)) => {
            let _ = pe.child.wait().await;
            anyhow::bail!("{} exited before registering: {}", pe.name, stderr_of(&pe));
        }
        Err(_) => anyhow::bail!("{} did not register within {START_LIMIT:?}", pe.name),
    };
    pe.identifier = v["identifier"]
        .as_u64()
        .and_then(|i| u32::try_from(i).ok())
        .map(PeId::new)
        .with_context(|| format!("{}: no identifier in {v}", pe.name))?;
    let port = v["port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .with_context(|| format!("{}: no port in {v}", pe.name))?;
    // Drain the rest of its output so that it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((pe, SocketAddr::from(([127, 0, 0, 1], port))))
}

fn stderr_of(pe: &PeProcess) -> String {
    pe.stderr
        .lock()
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
