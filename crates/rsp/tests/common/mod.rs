//! Helpers of the process tests: the `rsp` binary, a child process whose
//! stdout and stderr lines arrive on channels (killed when dropped),
//! credentials.

#![allow(dead_code)]

pub mod lab;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long to wait for an expected line.
pub const LIMIT: Duration = Duration::from_secs(20);

/// `rsp --log warn`.
pub fn rsp() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rsp"));
    c.args(["--log", "warn"]);
    isolate(&mut c);
    c
}

/// A loopback port kept for one test: a socket bound with SO_REUSEPORT
/// that never listens holds it (connections are refused while nothing
/// listens), and [`HeldPort::listen`] opens a listener on it as often as
/// needed, so that no other test takes the port between two listeners.
pub struct HeldPort {
    _holder: tokio::net::TcpSocket,
    pub port: u16,
}

impl HeldPort {
    pub fn new() -> HeldPort {
        let holder = reusable_socket();
        holder.bind("127.0.0.1:0".parse().unwrap()).expect("bind");
        let port = holder.local_addr().expect("address").port();
        HeldPort {
            _holder: holder,
            port,
        }
    }

    /// A listener on the port (drop it to refuse connections again).
    pub fn listen(&self) -> std::net::TcpListener {
        // Creating the listener needs a reactor; it leaves it at once.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let s = reusable_socket();
            s.bind(([127, 0, 0, 1], self.port).into()).expect("bind");
            s.listen(16)
                .expect("listen")
                .into_std()
                .expect("std listener")
        })
    }
}

fn reusable_socket() -> tokio::net::TcpSocket {
    let s = tokio::net::TcpSocket::new_v4().expect("socket");
    s.set_reuseport(true).expect("SO_REUSEPORT");
    s
}

/// Keep the user's client defaults out of a test: no RSP_* variables, no
/// ~/.config/rsp/client.toml.
pub fn isolate(c: &mut Command) -> &mut Command {
    for v in [
        "RSP_REGISTRAR",
        "RSP_ADMIN",
        "RSP_ADMIN_TOKEN_FILE",
        "RSP_CLIENT_CONFIG",
        "RUST_LOG",
    ] {
        c.env_remove(v);
    }
    c.env("XDG_CONFIG_HOME", "/nonexistent/rsp-tests")
}

/// Run `rsp ARGS` to completion.
pub fn run(args: &[&str]) -> Output {
    rsp().args(args).output().expect("rsp runs")
}

/// The stderr of a run that must have failed.
pub fn failure(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "expected a failure, got: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The stdout of a run that must have succeeded, as JSON.
pub fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("JSON")
}

/// Send each line of a pipe to a channel.
fn lines_of(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A child process with its stdout and stderr lines, killed when dropped
/// (its stderr is printed if the test failed).
pub struct Proc {
    child: Child,
    out: mpsc::Receiver<String>,
    err: mpsc::Receiver<String>,
}

impl Proc {
    pub fn spawn(cmd: &mut Command) -> Proc {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("rsp starts");
        let out = lines_of(child.stdout.take().expect("stdout"));
        let err = lines_of(child.stderr.take().expect("stderr"));
        Proc { child, out, err }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The next stdout line, within the limit.
    pub fn line(&self) -> String {
        self.out
            .recv_timeout(LIMIT)
            .unwrap_or_else(|_| panic!("no output line within {LIMIT:?}"))
    }

    /// The next JSON line on stdout whose "event" is `event`.
    pub fn wait_event(&self, event: &str) -> serde_json::Value {
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .out
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {event:?} event within {LIMIT:?}"));
            let v: serde_json::Value = serde_json::from_str(&line).expect("JSON line");
            if v["event"] == event {
                return v;
            }
        }
    }

    /// The address of a `rsp registrar --json`'s first `listening` event.
    pub fn listening_address(&self) -> String {
        let v = self.wait_event("listening");
        v["address"].as_str().expect("an address").to_string()
    }

    /// Wait for a stderr line containing `text`, within the limit.
    pub fn wait_stderr(&self, text: &str) {
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.err.recv_timeout(left) {
                Ok(l) if l.contains(text) => return,
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("rsp exited before {text:?} appeared on stderr")
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("no {text:?} on stderr within {LIMIT:?}")
                }
            }
        }
    }

    /// Send a signal (`-TERM`, `-KILL`, ...) with kill(1).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok);
    }

    /// Wait for the exit (within the limit): exit code and stderr.
    pub fn exit(&mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + LIMIT;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "rsp did not exit within {LIMIT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        // The pipe closed with the process: the reader thread ends.
        let err: Vec<String> = self.err.iter().collect();
        (status.code(), err.join("\n"))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            for line in self.err.try_iter() {
                eprintln!("rsp stderr: {line}");
            }
        }
    }
}

/// Set a file's permission bits.
pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A file's permission bits.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

/// PSK files in `dir`: `ID.key` per identity and `registrar.keys` with
/// all of them (mode 0600).
pub fn psk_files(dir: &Path, identities: &[&str]) -> PathBuf {
    let mut all = String::new();
    for id in identities {
        let psk = rserpool_security::Psk::generate(id).expect("key");
        psk.write_new(&dir.join(format!("{id}.key")))
            .expect("write");
        all.push_str(&psk.to_file_text());
    }
    let path = dir.join("registrar.keys");
    std::fs::write(&path, all).expect("write");
    chmod(&path, 0o600);
    path
}

/// Write a key file for registrar `name` in `dir`: its path, as an
/// argument.
pub fn registrar_key(dir: &Path, name: &str) -> String {
    let path = dir.join(format!("{name}.key"));
    rserpool_security::Psk::generate(name)
        .expect("key")
        .write_new(&path)
        .expect("write");
    arg(&path)
}

/// Path as a string argument.
pub fn arg(p: &Path) -> String {
    p.display().to_string()
}

/// A temporary directory with PSK files (`ID.key` each, `registrar.keys`
/// with all) and a registrar configuration file.
pub struct Setup {
    pub dir: tempfile::TempDir,
}

impl Setup {
    pub fn new(identities: &[&str]) -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        psk_files(dir.path(), identities);
        Setup { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The key file of one identity, as an argument.
    pub fn key(&self, id: &str) -> String {
        arg(&self.path(&format!("{id}.key")))
    }

    /// `rsp registrar` on a free loopback port with every key of the set
    /// and 300 ms keep-alives, plus `extra` flags; the process and its
    /// ASAP address.
    pub fn registrar(&self, extra: &[&str]) -> (Proc, String) {
        let reg = Proc::spawn(
            rsp()
                .args(["registrar", "--listen", "127.0.0.1:0", "--psk-file"])
                .arg(self.path("registrar.keys"))
                .args([
                    "--keep-alive-interval",
                    "300ms",
                    "--keep-alive-timeout",
                    "300ms",
                ])
                .arg("--json")
                .args(extra),
        );
        let addr = reg.listening_address();
        (reg, addr)
    }

    /// `rsp pe echo -r ADDR` with `pe-1`'s key, once registered: the
    /// process and its identifier.
    pub fn echo_pe(&self, addr: &str) -> (Proc, u64) {
        let key = self.key("pe-1");
        let pe = Proc::spawn(rsp().args(["pe", "echo", "-r", addr, "--psk-file", &key, "--json"]));
        let id = pe.wait_event("registered")["identifier"]
            .as_u64()
            .expect("id");
        (pe, id)
    }

    /// Write `registrar.toml` and return its path.
    pub fn config(&self, text: &str) -> String {
        let p = self.path("registrar.toml");
        std::fs::write(&p, text).expect("write");
        arg(&p)
    }

    /// `rsp registrar --config FILE --check-config EXTRA...`.
    pub fn check(&self, text: &str, extra: &[&str]) -> Output {
        let file = self.config(text);
        let mut args = vec!["registrar", "--config", &file, "--check-config"];
        args.extend_from_slice(extra);
        run(&args)
    }

    /// The same as a process that must end within [`LIMIT`] whatever the
    /// files are: its exit code and stderr.
    pub fn check_bounded(&self, text: &str, extra: &[&str]) -> (Option<i32>, String) {
        let file = self.config(text);
        let mut p = Proc::spawn(
            rsp()
                .args(["registrar", "--config", &file, "--check-config"])
                .args(extra),
        );
        p.exit()
    }
}

/// A lab CA in `dir` and a registrar certificate `registrar-1` for
/// 127.0.0.1 (`rsp ca init`, `rsp ca issue`).
pub fn registrar_certificate(dir: &Path) {
    let o = run(&["ca", "init", "--dir", &arg(dir)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&[
        "ca",
        "issue",
        "--dir",
        &arg(dir),
        "registrar-1",
        "--role",
        "registrar",
        "--ip",
        "127.0.0.1",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
