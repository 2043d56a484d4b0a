//! The child processes of the benchmarks: `rsp` itself started with other
//! arguments (`rsp registrar --config FILE`, `rsp bench pe-host`), killed
//! when dropped, its stderr shown on ours under its name, its stdout
//! lines read so that its pipe never fills.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::Signal;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// A child `rsp` process.
pub(crate) struct RspChild {
    child: Child,
    pid: u32,
    name: &'static str,
}

impl RspChild {
    /// Start `rsp ARGS` as `name`; its stdout lines are returned to read.
    pub(crate) fn spawn(
        name: &'static str,
        args: &[&std::ffi::OsStr],
    ) -> anyhow::Result<(RspChild, Lines<BufReader<ChildStdout>>)> {
        let exe = std::env::current_exe().context("cannot find the rsp binary")?;
        let mut child = Command::new(exe)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start the {name}"))?;
        let pid = child
            .id()
            .with_context(|| format!("the {name} exited at once"))?;
        let mut log = BufReader::new(child.stderr.take().context("stderr")?).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = log.next_line().await {
                eprintln!("  {name}: {line}");
            }
        });
        let lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        Ok((RspChild { child, pid, name }, lines))
    }

    /// `rsp --log error registrar --config FILE` (with `json = true` in
    /// it): the process and the address of its first ASAP listener for
    /// PEs and PUs. Its later lines are read and dropped.
    pub(crate) async fn registrar(
        name: &'static str,
        config: &Path,
    ) -> anyhow::Result<(RspChild, SocketAddr)> {
        let args = ["--log", "error", "registrar", "--config"].map(std::ffi::OsStr::new);
        let mut all: Vec<&std::ffi::OsStr> = args.to_vec();
        all.push(config.as_os_str());
        let (child, mut lines) = RspChild::spawn(name, &all)?;
        let addr = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await? {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                if v["event"] == "listening" && v["pool_users_only"].is_null() {
                    if let Some(a) = v["address"].as_str() {
                        return Ok(a.parse::<SocketAddr>()?);
                    }
                }
            }
            anyhow::bail!("the {name} exited before it listened")
        })
        .await
        .with_context(|| format!("the {name} did not listen within 20 s"))??;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok((child, addr))
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Send it `signal`.
    pub(crate) fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        let pid = i32::try_from(self.pid).context("a process id out of range")?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
            .with_context(|| format!("cannot send {signal} to the {}", self.name))
    }

    /// SIGTERM, then SIGKILL if it has not stopped within 5 s.
    pub(crate) async fn stop(mut self) {
        let _ = self.signal(Signal::SIGTERM);
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }

    /// SIGKILL, and wait for it.
    pub(crate) async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}
