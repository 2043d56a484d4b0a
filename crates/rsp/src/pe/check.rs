//! The health checks of `rsp pe register` (tokio): a TCP connect or a
//! shell command, run every interval with a timeout by a background task
//! whose results arrive on a channel. Checks never overlap: the next one
//! starts an interval after the previous one started, or at once if it
//! took longer.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// What is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// A TCP connection to HOST:PORT can be made.
    Tcp(String),
    /// `sh -c COMMAND` exits with status 0.
    Command(String),
}

/// How much of a failing command's output goes into its error message.
const OUTPUT_KEPT: usize = 200;

impl Check {
    /// What the check does, for messages.
    pub fn describe(&self) -> String {
        match self {
            Check::Tcp(target) => format!("TCP connect to {target}"),
            Check::Command(cmd) => format!("command {cmd:?}"),
        }
    }

    /// Run the check once: `Err` says why it failed.
    pub async fn run(&self, timeout: Duration) -> Result<(), String> {
        match self {
            Check::Tcp(target) => {
                match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(target)).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(format!("connect to {target}: {}", io_reason(&e))),
                    Err(_) => Err(format!("connect to {target}: no answer within {timeout:?}")),
                }
            }
            Check::Command(cmd) => run_command(cmd, timeout).await,
        }
    }
}

/// An I/O error without the "(os error N)" suffix.
fn io_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// How long the output of a command that has exited may take to end
/// (a background process it left may hold its pipes: it is killed).
const OUTPUT_GRACE: Duration = Duration::from_millis(100);

/// A check command's process group: killed whole (SIGKILL) when this is
/// dropped, so that neither a timeout, nor a signal that ends `rsp`
/// during a check, nor a command that exits but leaves a background
/// process behind leaves anything running.
struct ProcessGroup(Option<nix::unistd::Pid>);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            // ESRCH (the group is gone already) is the usual outcome.
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// `sh -c CMD` in its own process group (killed whole when the check
/// ends, whatever way), stdin closed; of its output only the first bytes
/// are kept, for the error message (the rest is read and dropped so that
/// it never blocks).
async fn run_command(cmd: &str, timeout: Duration) -> Result<(), String> {
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run sh -c {cmd:?}: {}", io_reason(&e)))?;
    let group = ProcessGroup(
        child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .map(nix::unistd::Pid::from_raw),
    );
    // The pipes are read while the command runs (a full pipe would block
    // it); tasks end when the pipes close, at the latest when the group
    // is killed.
    let stdout = tokio::spawn(head(child.stdout.take()));
    let stderr = tokio::spawn(head(child.stderr.take()));
    let status = tokio::time::timeout(timeout, child.wait()).await;
    drop(group);
    let said = async {
        let out = tokio::time::timeout(OUTPUT_GRACE, stdout).await;
        let err = tokio::time::timeout(OUTPUT_GRACE, stderr).await;
        let text =
            |r: Result<Result<String, _>, _>| r.ok().and_then(Result::ok).unwrap_or_default();
        let (out, err) = (text(out), text(err));
        // stderr says more than stdout when both have something.
        let said = if err.is_empty() { out } else { err };
        if said.is_empty() {
            String::new()
        } else {
            format!(": {said}")
        }
    };
    match status {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("{cmd:?} {status}{}", said.await)),
        Ok(Err(e)) => Err(format!("{cmd:?}: {}", io_reason(&e))),
        Err(_) => {
            let _ = child.kill().await;
            Err(format!("{cmd:?} did not finish within {timeout:?}"))
        }
    }
}

/// The first [`OUTPUT_KEPT`] bytes of a pipe as one trimmed line; the
/// rest is read to the end and dropped.
async fn head(pipe: Option<impl AsyncRead + Unpin>) -> String {
    let Some(mut pipe) = pipe else {
        return String::new();
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = pipe.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let room = OUTPUT_KEPT.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    let text = String::from_utf8_lossy(&kept);
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if kept.len() >= OUTPUT_KEPT {
        format!("{line}…")
    } else {
        line
    }
}

/// Checks running in the background; stopped when dropped.
pub struct Checker {
    results: mpsc::Receiver<Result<(), String>>,
    task: JoinHandle<()>,
}

impl Checker {
    /// Run `check` now and then every `interval`, each within `timeout`.
    pub fn spawn(check: Check, interval: Duration, timeout: Duration) -> Checker {
        let (tx, results) = mpsc::channel(1);
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let result = check.run(timeout).await;
                if let Err(e) = &result {
                    tracing::debug!("health check failed: {e}");
                }
                if tx.send(result).await.is_err() {
                    break;
                }
            }
        });
        Checker { results, task }
    }

    /// The next result.
    pub async fn next(&mut self) -> Result<(), String> {
        match self.results.recv().await {
            Some(r) => r,
            // The task ended (it does not by itself): no more results.
            None => std::future::pending().await,
        }
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_command_passes_on_exit_0_and_says_why_it_failed() {
        assert_eq!(Check::Command("true".into()).run(T).await, Ok(()));
        let err = Check::Command("echo out; echo broken >&2; exit 3".into())
            .run(T)
            .await
            .unwrap_err();
        assert!(
            err.contains("exit status: 3") && err.ends_with(": broken"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_chatty_command_is_cut_short_in_the_message() {
        let err = Check::Command("yes | head -c 100000; exit 1".into())
            .run(T)
            .await
            .unwrap_err();
        assert!(err.len() < OUTPUT_KEPT + 100, "{err}");
        assert!(err.ends_with('…'), "{err}");
    }

    /// Wait (at most `T`) until the process whose id is in `pid_file` is
    /// gone: the check killed it.
    async fn ends(pid_file: &std::path::Path) {
        let pid = std::fs::read_to_string(pid_file).unwrap();
        let pid = pid.trim();
        let deadline = std::time::Instant::now() + T;
        while !gone(pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "process {pid} survived"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Whether process `pid` is gone (or a zombie nobody reaped yet).
    fn gone(pid: &str) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        }
    }

    #[tokio::test]
    async fn a_command_that_hangs_is_killed_with_its_children_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let cmd = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
        let err = Check::Command(cmd)
            .run(Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(err.contains("did not finish within 1s"), "{err}");
        ends(&pid_file).await;
    }

    #[tokio::test]
    async fn a_command_that_exits_is_judged_by_its_status_and_leaves_nothing_running() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        // Exits 0 at once, with a background process holding its stdout.
        let cmd = format!("sleep 30 & echo $! > {}; true", pid_file.display());
        Check::Command(cmd)
            .run(Duration::from_secs(5))
            .await
            .expect("its status is 0");
        ends(&pid_file).await;
    }

    #[tokio::test]
    async fn a_check_stopped_midway_kills_its_command() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let cmd = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
        let check = Check::Command(cmd);
        let run = check.run(Duration::from_secs(30));
        // Dropped (as when SIGTERM ends rsp during a check) once it started.
        let started = async {
            while std::fs::read_to_string(&pid_file).map_or(true, |s| !s.ends_with('\n')) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::select! {
            _ = run => panic!("the check finished"),
            () = started => {}
        }
        ends(&pid_file).await;
    }

    #[tokio::test]
    async fn a_tcp_check_connects_and_names_the_target_when_it_cannot() {
        // A socket that never listens holds the port (SO_REUSEPORT), so
        // that no other test takes it once the listener is gone.
        let reusable = || {
            let s = tokio::net::TcpSocket::new_v4().unwrap();
            s.set_reuseport(true).unwrap();
            s
        };
        let holder = reusable();
        holder.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = holder.local_addr().unwrap();
        let listening = reusable();
        listening.bind(addr).unwrap();
        let listener = listening.listen(8).unwrap();
        let target = addr.to_string();
        assert_eq!(Check::Tcp(target.clone()).run(T).await, Ok(()));
        drop(listener);
        let err = Check::Tcp(target.clone()).run(T).await.unwrap_err();
        assert_eq!(err, format!("connect to {target}: Connection refused"));
    }
}
