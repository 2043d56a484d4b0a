//! The systemd set-up of docs/operations.md ("Running under systemd"), run
//! as written, and its agreement with the shipped files
//! (packaging/registrar.toml, packaging/rsp-registrar.service).
//!
//! The shell block after the `<!-- setup-steps` marker runs in a private
//! mount namespace (`unshare --mount --propagation private`) in which
//! `/etc` and `/usr/local` are overlays whose upper layers are on a tmpfs
//! of that namespace: `useradd`, `/etc/rsp`, `/usr/local/bin/rsp` and the
//! installed unit exist only there and vanish with it, whatever happens;
//! the test checks that the host's user database and paths are unchanged.
//! The block runs from a directory that stands for the source tree:
//! `packaging/` is the repository's, `target/release/rsp` the binary under
//! test. `systemctl` is a stub on PATH that records its arguments. After the
//! block, in the namespace: `rsp registrar --config /etc/rsp/registrar.toml
//! --check-config`, the unit's ExecStartPre= and ExecStart= (with
//! `--check-config`) as its User=/Group=, the same with every optional
//! file of the example turned on, owners and modes, and `systemd-analyze
//! verify` of the installed unit.
//!
//! Without root (or without mount namespaces and overlays) the block runs
//! with its paths moved under a temporary directory, without `useradd`,
//! `chown` and owners, and the checks run as the current user; CI runs as
//! root and must take the first way.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{arg, failure, run};
use serde_json::Value;

/// The marker before the shell block of the set-up steps.
const MARK: &str = "<!-- setup-steps";
/// Where the installed unit goes.
const UNIT_DIR: &str = "/etc/systemd/system";
/// What the set-up steps may write to: overlays in the namespace, moved
/// under the temporary root otherwise.
const WRITABLE: [&str; 2] = ["/etc/", "/usr/local/"];
/// Paths the fallback moves under its root.
const MOVED: [&str; 3] = ["/etc/systemd/system", "/etc/rsp", "/usr/local"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The lines of the shell blocks of `doc` marked as set-up steps.
fn setup_steps(doc: &str) -> Vec<String> {
    let mut steps = Vec::new();
    let mut lines = doc.lines();
    let mut blocks = 0;
    while let Some(line) = lines.next() {
        if !line.starts_with(MARK) {
            continue;
        }
        assert_eq!(
            lines.next(),
            Some("```sh"),
            "a ```sh block must follow {line:?}"
        );
        blocks += 1;
        for l in lines.by_ref() {
            if l == "```" {
                break;
            }
            steps.push(l.to_string());
        }
    }
    assert!(blocks > 0, "no {MARK} marker in docs/operations.md");
    steps
}

/// The commands of the steps (no comments, no blank lines), as words.
fn commands(steps: &[String]) -> Vec<Vec<&str>> {
    steps
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split_whitespace().collect())
        .collect()
}

/// What the tests need of the systemd unit.
struct Unit {
    /// The file name, `rsp-registrar.service`.
    file: String,
    user: String,
    group: String,
    exec_start_pre: Vec<String>,
    exec_start: Vec<String>,
    /// ExecStart's binary (the same in ExecStartPre).
    binary: String,
    /// The `--config` file of both.
    config: String,
    read_only: String,
    limit_nofile: u64,
    /// The man page of `Documentation=man:NAME(SECTION)`, as the steps
    /// install it next to the binary: `/usr/local/share/man/man1/NAME.1`.
    man_page: String,
}

impl Unit {
    fn shipped() -> Unit {
        let text = read("packaging/rsp-registrar.service");
        let values = |key: &str| -> Vec<String> {
            text.lines()
                .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_string)
                .collect()
        };
        let one = |key: &str| -> String {
            let v = values(key);
            assert_eq!(v.len(), 1, "{key}= in the unit: {v:?}");
            v[0].clone()
        };
        let words = |s: String| -> Vec<String> { s.split_whitespace().map(String::from).collect() };
        let exec_start_pre = words(one("ExecStartPre"));
        let exec_start = words(one("ExecStart"));
        let config_of = |cmd: &[String]| -> String {
            let i = cmd.iter().position(|w| w == "--config").expect("--config");
            cmd[i + 1].clone()
        };
        assert_eq!(exec_start_pre[0], exec_start[0]);
        assert_eq!(config_of(&exec_start_pre), config_of(&exec_start));
        let binary = exec_start[0].clone();
        let doc = one("Documentation");
        let (name, section) = doc
            .strip_prefix("man:")
            .and_then(|m| m.strip_suffix(')'))
            .and_then(|m| m.split_once('('))
            .unwrap_or_else(|| panic!("Documentation={doc}: expected man:NAME(SECTION)"));
        let prefix = Path::new(&binary)
            .parent()
            .and_then(Path::parent)
            .expect("a binary in PREFIX/bin");
        let man_page = format!(
            "{}/share/man/man{section}/{name}.{section}",
            prefix.display()
        );
        Unit {
            file: "rsp-registrar.service".into(),
            user: one("User"),
            group: one("Group"),
            config: config_of(&exec_start),
            binary,
            exec_start_pre,
            exec_start,
            read_only: one("ReadOnlyPaths"),
            limit_nofile: one("LimitNOFILE").parse().expect("LimitNOFILE"),
            man_page,
        }
    }

    fn name(&self) -> &str {
        self.file.strip_suffix(".service").expect(".service")
    }

    fn installed(&self) -> String {
        format!("{UNIT_DIR}/{}", self.file)
    }
}

/// The quoted value of `key = "..."` in the example (also in a comment:
/// the examples of optional settings).
fn example_value(toml: &str, key: &str) -> String {
    let pattern = format!("{key} = \"");
    let line = toml
        .lines()
        .find(|l| l.contains(&pattern))
        .unwrap_or_else(|| panic!("no {pattern}...\" in packaging/registrar.toml"));
    let rest = &line[line.find(&pattern).expect("found") + pattern.len()..];
    rest[..rest.find('"').expect("closing quote")].to_string()
}

/// Every quoted absolute path in the example (settings and examples).
fn named_files(toml: &str) -> Vec<String> {
    let mut files: Vec<String> = toml
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with('/'))
        .map(String::from)
        .collect();
    files.sort();
    files.dedup();
    files
}

#[test]
fn the_set_up_steps_agree_with_the_unit_and_the_example() {
    let steps = setup_steps(&read("docs/operations.md"));
    let cmds = commands(&steps);
    let unit = Unit::shipped();
    let line_with = |pred: &dyn Fn(&[&str]) -> bool, what: &str| {
        assert!(
            cmds.iter().any(|c| pred(c)),
            "the set-up steps have no {what}:\n{}",
            steps.join("\n")
        );
    };
    let installs = |src: &'static str, dest: String| {
        move |c: &[&str]| c[0] == "install" && c.contains(&src) && c.last() == Some(&dest.as_str())
    };
    // The binary the unit runs, the configuration it reads, the unit.
    line_with(
        &installs("target/release/rsp", unit.binary.clone()),
        &format!("install of target/release/rsp as {}", unit.binary),
    );
    line_with(
        &installs("packaging/registrar.toml", unit.config.clone()),
        &format!("install of packaging/registrar.toml as {}", unit.config),
    );
    line_with(
        &installs("packaging/rsp-registrar.service", format!("{UNIT_DIR}/")),
        &format!("install of packaging/rsp-registrar.service into {UNIT_DIR}/"),
    );
    // ReadOnlyPaths= is the configuration's directory, which the steps make.
    let dir = Path::new(&unit.config).parent().expect("a directory");
    assert_eq!(Path::new(&unit.read_only), dir);
    line_with(
        &|c| c.starts_with(&["install", "-d"]) && c.last() == Some(&unit.read_only.as_str()),
        &format!("install -d {}", unit.read_only),
    );
    // The unit's user and group are the system user the steps add.
    line_with(
        &|c| {
            c[0] == "useradd"
                && c.contains(&"--system")
                && c.contains(&"--user-group")
                && c.last() == Some(&unit.user.as_str())
        },
        &format!("useradd --system --user-group {}", unit.user),
    );
    assert_eq!(unit.user, unit.group);
    // The man page of Documentation=.
    let man_dir = Path::new(&unit.man_page).parent().expect("dir");
    line_with(
        &|c| c.len() == 4 && c.starts_with(&["rsp", "man", "--out"]) && Path::new(c[3]) == man_dir,
        &format!("rsp man --out {}", man_dir.display()),
    );
    // The check of ExecStartPre=, word for word, as the unit's user.
    let mut check = vec![
        "setpriv".to_string(),
        format!("--reuid={}", unit.user),
        format!("--regid={}", unit.group),
        "--init-groups".into(),
        "rsp".into(),
    ];
    check.extend(unit.exec_start_pre[1..].iter().cloned());
    line_with(
        &|c| c == check.iter().map(String::as_str).collect::<Vec<_>>(),
        &check.join(" "),
    );
    line_with(
        &|c| {
            c.join(" ")
                == format!(
                    "systemctl daemon-reload && systemctl enable --now {}",
                    unit.name()
                )
        },
        &format!(
            "systemctl daemon-reload && systemctl enable --now {}",
            unit.name()
        ),
    );
    // The steps write under /etc and /usr/local only (the overlays of the
    // test): every absolute path is there, but the new user's shell and
    // home directory, which nothing creates.
    for c in &cmds {
        for (i, w) in c.iter().enumerate() {
            let w = w.trim_start_matches(['(', '>']).trim_end_matches(')');
            let exempt = i > 0 && matches!(c[i - 1], "--shell" | "--home-dir");
            assert!(
                !w.starts_with('/') || exempt || WRITABLE.iter().any(|p| w.starts_with(p)),
                "{w} is outside {WRITABLE:?}: {}",
                c.join(" ")
            );
        }
    }
    // The example's files are in the configuration's directory.
    let toml = read("packaging/registrar.toml");
    let files = named_files(&toml);
    assert!(files.len() >= 5, "{files:?}");
    for f in &files {
        assert_eq!(Path::new(f).parent(), Some(dir), "{f}");
    }
}

/// How the steps are isolated from the host.
enum Sandbox {
    /// A private mount namespace with overlays on /etc and /usr/local.
    Namespace,
    /// No namespace: paths moved under a temporary root, for this reason.
    Moved(String),
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid()).ok() == Some(0)
}

fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

fn sandbox() -> Sandbox {
    if !is_root() {
        return Sandbox::Moved("not root".into());
    }
    // The mounts the driver makes, in a namespace of their own.
    let probe = tempfile::tempdir().expect("tempdir");
    let o = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(
            "mount -t tmpfs probe \"$0\" && mkdir \"$0/u\" \"$0/w\" \"$0/m\" \
             && mount -t overlay overlay -o lowerdir=/etc,upperdir=\"$0/u\",workdir=\"$0/w\" \"$0/m\"",
        )
        .arg(probe.path())
        .output();
    match o {
        Ok(o) if o.status.success() => Sandbox::Namespace,
        Ok(o) => Sandbox::Moved(format!(
            "root, but no mount namespace with overlays: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Sandbox::Moved(format!("root, but unshare(1) does not run: {e}")),
    }
}

/// Runs the steps (from the source tree stand-in, `systemctl` stubbed),
/// then each check of `$T/checks` in name order from `/`, with its stdout,
/// stderr and exit code in `$T/out/NAME.{out,err,rc}`. `$2` is
/// `namespace` (mount the overlays first; the caller runs this in a
/// private mount namespace) or `moved`.
const DRIVER: &str = r#"set -euo pipefail
T=$1
if [ "$2" = namespace ]; then
  mount -t tmpfs -o mode=0755 rsp-packaging-test "$T/scratch"
  for d in /etc /usr/local; do
    n=${d//\//_}
    mkdir "$T/scratch/$n.upper" "$T/scratch/$n.work"
    mount -t overlay overlay -o "lowerdir=$d,upperdir=$T/scratch/$n.upper,workdir=$T/scratch/$n.work" "$d"
  done
  bin=/usr/local/sbin:/usr/local/bin
else
  bin=$T/root/usr/local/bin
fi
export PATH="$T/stub:$bin:/usr/sbin:/usr/bin:/sbin:/bin"
rc=0
(cd "$T/src" && bash -euxo pipefail "$T/steps.sh") > "$T/out/steps.log" 2>&1 || rc=$?
echo "$rc" > "$T/out/steps.rc"
[ "$rc" = 0 ] || exit 0
for c in "$T"/checks/*; do
  n=${c##*/}
  rc=0
  (cd / && bash -eu "$c") > "$T/out/$n.out" 2> "$T/out/$n.err" || rc=$?
  echo "$rc" > "$T/out/$n.rc"
done
"#;

fn quote(w: &str) -> String {
    format!("'{}'", w.replace('\'', r"'\''"))
}

fn shell(words: &[String]) -> String {
    words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ") + "\n"
}

/// `text` with each of [`MOVED`] at the start of a path moved under `root`.
fn moved(text: &str, root: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while !rest.is_empty() {
        let at_path_start = !out.ends_with(|c: char| c.is_alphanumeric() || c == '/');
        match MOVED.iter().find(|p| at_path_start && rest.starts_with(*p)) {
            Some(p) => {
                out.push_str(root);
                out.push_str(p);
                rest = &rest[p.len()..];
            }
            None => {
                let c = rest.chars().next().expect("not empty");
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out
}

/// The steps for a run without root: paths under `root`, no user, no
/// owners; the installed `config` names files of `config_dir`, moved too.
fn moved_steps(steps: &[String], root: &str, config: &str, config_dir: &str) -> String {
    let mut out = String::new();
    for line in steps {
        let words: Vec<&str> = line.split_whitespace().collect();
        let kept: Vec<&str> = match words.first() {
            Some(&"useradd") | Some(&"chown") => {
                out.push_str(&format!("# not run here: {line}\n"));
                continue;
            }
            Some(&"setpriv") => words
                .iter()
                .skip(1)
                .skip_while(|w| w.starts_with("--"))
                .copied()
                .collect(),
            Some(&"install") => {
                let mut kept = Vec::new();
                let mut it = words.iter();
                while let Some(w) = it.next() {
                    if matches!(*w, "-o" | "-g") {
                        it.next();
                    } else {
                        kept.push(*w);
                    }
                }
                kept
            }
            _ => {
                out.push_str(&moved(line, root));
                out.push('\n');
                continue;
            }
        };
        out.push_str(&moved(&kept.join(" "), root));
        out.push('\n');
        if kept[0] == "install" && kept.last() == Some(&config) {
            out.push_str(&format!(
                "sed -i 's|{config_dir}/|{root}{config_dir}/|g' {root}{config}\n"
            ));
        }
    }
    out
}

/// What the host has at the paths the steps write to: the user database's
/// content, and whether the installed files exist (with size and time).
fn host_state(unit: &Unit) -> BTreeMap<String, String> {
    let mut state = BTreeMap::new();
    for f in ["/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow"] {
        let content = std::fs::read(f).map(|b| String::from_utf8_lossy(&b).into_owned());
        state.insert(f.to_string(), format!("{content:?}"));
    }
    for p in [
        unit.read_only.clone(),
        unit.binary.clone(),
        unit.installed(),
        unit.man_page.clone(),
    ] {
        let meta = std::fs::symlink_metadata(&p).map(|m| (m.len(), m.mtime(), m.mode()));
        state.insert(p, format!("{meta:?}"));
    }
    state
}

/// The result of one check of the driver: exit code, stdout, stderr.
struct Outcome {
    rc: i32,
    out: String,
    err: String,
}

impl Outcome {
    fn read(out: &Path, name: &str) -> Outcome {
        let file = |ext: &str| {
            std::fs::read_to_string(out.join(format!("{name}.{ext}")))
                .unwrap_or_else(|e| panic!("check {name} left no .{ext}: {e}"))
        };
        Outcome {
            rc: file("rc").trim().parse().expect("an exit code"),
            out: file("out"),
            err: file("err"),
        }
    }

    fn success(self, name: &str) -> Outcome {
        assert_eq!(
            self.rc, 0,
            "check {name} failed:\n{}\n{}",
            self.out, self.err
        );
        self
    }

    fn json(self, name: &str) -> Value {
        let out = self.success(name).out;
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("check {name}: {e}: {out}"))
    }
}

fn systemd_analyze() -> bool {
    let ok = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            !in_ci(),
            "systemd-analyze is missing: CI must verify the unit (.ci/run installs systemd)"
        );
        eprintln!("systemd-analyze is not installed: the unit is not verified here (CI does)");
    }
    ok
}

#[test]
fn the_documented_set_up_runs_as_written_and_passes_check_config() {
    let steps = setup_steps(&read("docs/operations.md"));
    let unit = Unit::shipped();
    let toml = read("packaging/registrar.toml");
    let sandbox = sandbox();
    if let Sandbox::Moved(why) = &sandbox {
        assert!(
            !in_ci(),
            "CI must run the set-up steps as written, in a mount namespace: {why}"
        );
        eprintln!(
            "{why}: the set-up steps run with their paths under a temporary directory, \
             without useradd, chown and owners"
        );
    }
    let before = host_state(&unit);

    let t = tempfile::tempdir().expect("tempdir");
    let tp = t.path();
    assert!(
        !WRITABLE.iter().any(|p| tp.starts_with(p)),
        "the temporary directory {} is under an overlay",
        tp.display()
    );
    for d in ["src/target/release", "stub", "checks", "out", "scratch"] {
        std::fs::create_dir_all(tp.join(d)).expect("mkdir");
    }
    // Copies, not links: the steps run as root, and nothing they do may
    // reach the repository or the test binary.
    std::fs::create_dir_all(tp.join("src/packaging")).expect("mkdir");
    for f in std::fs::read_dir(repo().join("packaging")).expect("packaging/") {
        let f = f.expect("entry").path();
        if f.is_file() {
            std::fs::copy(&f, tp.join("src/packaging").join(f.file_name().unwrap())).unwrap();
        }
    }
    let rsp_bin = env!("CARGO_BIN_EXE_rsp");
    std::fs::copy(rsp_bin, tp.join("src/target/release/rsp")).unwrap();
    let stub = tp.join("stub/systemctl");
    let log = tp.join("out/systemctl.log");
    std::fs::write(
        &stub,
        format!("#!/bin/sh\necho \"$*\" >> {}\n", quote(&arg(&log))),
    )
    .unwrap();
    common::chmod(&stub, 0o755);

    // Where the installed files are: at their paths in the namespace, under
    // $T/root otherwise.
    let root = match sandbox {
        Sandbox::Namespace => String::new(),
        Sandbox::Moved(_) => {
            let r = tp.join("root");
            // What any host has.
            for d in [UNIT_DIR, "/usr/local/bin"] {
                std::fs::create_dir_all(r.join(&d[1..])).unwrap();
            }
            arg(&r)
        }
    };
    let at = |p: &str| format!("{root}{p}");
    let unmove = |p: &str| p.strip_prefix(root.as_str()).unwrap_or(p).to_string();
    let steps_text = match sandbox {
        Sandbox::Namespace => steps.join("\n") + "\n",
        Sandbox::Moved(_) => moved_steps(&steps, &root, &unit.config, &unit.read_only),
    };
    std::fs::write(tp.join("steps.sh"), &steps_text).unwrap();

    // The checks, run after the steps.
    let as_user: Vec<String> = match sandbox {
        Sandbox::Namespace => vec![
            "setpriv".into(),
            format!("--reuid={}", unit.user),
            format!("--regid={}", unit.group),
            "--init-groups".into(),
        ],
        Sandbox::Moved(_) => Vec::new(),
    };
    let in_root = |cmd: &[String]| -> Vec<String> {
        let mut v = as_user.clone();
        v.extend(cmd.iter().map(|w| moved(w, &root)));
        v
    };
    let s = |v: &[&str]| -> Vec<String> { v.iter().map(|w| w.to_string()).collect() };
    let packaging = repo().join("packaging");
    // The shipped configuration; moved: with its files under the root.
    let expected_config = tp.join("out/registrar.toml");
    let config_dir = format!("{}/", unit.read_only);
    std::fs::write(
        &expected_config,
        toml.replace(&config_dir, &at(&config_dir)),
    )
    .unwrap();
    let mut checks: Vec<(&str, String)> = vec![(
        "10-installed-as-shipped",
        [
            s(&["cmp", rsp_bin, &at(&unit.binary)]),
            s(&["cmp", &arg(&expected_config), &at(&unit.config)]),
            s(&[
                "cmp",
                &arg(&packaging.join(&unit.file)),
                &at(&unit.installed()),
            ]),
        ]
        .iter()
        .map(|c| shell(c))
        .collect(),
    )];
    let check_cmd = s(&[
        &at(&unit.binary),
        "registrar",
        "--config",
        &at(&unit.config),
        "--check-config",
        "--json",
    ]);
    checks.push(("20-check-config", shell(&check_cmd)));
    checks.push(("30-exec-start-pre", shell(&in_root(&unit.exec_start_pre))));
    let mut start = unit.exec_start.clone();
    start.push("--check-config".into());
    checks.push(("31-exec-start", shell(&in_root(&start))));
    // Every optional file of the example turned on too.
    let client_ca = example_value(&toml, "client_ca");
    let token_file = example_value(&toml, "token_file");
    let all_on = s(&[
        &unit.binary,
        "registrar",
        "--config",
        &unit.config,
        "--check-config",
        "--json",
        "--client-ca",
        &client_ca,
        "--admin",
        "--admin-token-file",
        &token_file,
    ]);
    checks.push(("40-all-on", shell(&in_root(&all_on))));
    let listed = [
        unit.read_only.clone(),
        unit.binary.clone(),
        unit.installed(),
        unit.man_page.clone(),
    ];
    let mut find = s(&["find"]);
    find.extend(listed.iter().map(|p| at(p)));
    find.extend(s(&["-printf", "%p\\t%m\\t%u\\t%g\\n"]));
    checks.push(("50-listing", shell(&find)));
    let verify = systemd_analyze();
    if verify {
        let unit_file = match sandbox {
            Sandbox::Namespace => unit.installed(),
            Sandbox::Moved(_) => {
                // The unit with its paths moved, so that its binary exists.
                let copy = tp.join("out").join(&unit.file);
                std::fs::write(
                    &copy,
                    moved(&read("packaging/rsp-registrar.service"), &root),
                )
                .unwrap();
                arg(&copy)
            }
        };
        checks.push((
            "60-systemd-analyze-verify",
            shell(&s(&["systemd-analyze", "verify", "--man=no", &unit_file])),
        ));
    }
    for (name, script) in &checks {
        std::fs::write(tp.join("checks").join(name), script).unwrap();
    }

    let driver = tp.join("driver.sh");
    std::fs::write(&driver, DRIVER).unwrap();
    // timeout(1): a step that hangs fails the test instead of hanging it.
    let mut cmd = Command::new("timeout");
    cmd.arg("300");
    match sandbox {
        Sandbox::Namespace => cmd.args(["unshare", "--mount", "--propagation", "private", "bash"]),
        Sandbox::Moved(_) => cmd.arg("bash"),
    };
    let mode = match sandbox {
        Sandbox::Namespace => "namespace",
        Sandbox::Moved(_) => "moved",
    };
    let o = cmd
        .arg(&driver)
        .arg(tp)
        .arg(mode)
        .output()
        .expect("bash runs");
    assert!(
        o.status.success(),
        "driver: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The host is as it was.
    assert_eq!(host_state(&unit), before, "the steps changed the host");

    let out = tp.join("out");
    let steps_log = std::fs::read_to_string(out.join("steps.log")).unwrap();
    let steps_rc = std::fs::read_to_string(out.join("steps.rc")).unwrap();
    assert_eq!(
        steps_rc.trim(),
        "0",
        "the set-up steps failed:\n{steps_text}\n--- output:\n{steps_log}"
    );
    let systemctl = std::fs::read_to_string(&log).expect("systemctl ran");
    assert_eq!(
        systemctl.lines().collect::<Vec<_>>(),
        [
            "daemon-reload".to_string(),
            format!("enable --now {}", unit.name())
        ]
    );
    Outcome::read(&out, "10-installed-as-shipped").success("installed as shipped");

    // rsp registrar --config /etc/rsp/registrar.toml --check-config.
    let unmoved = |v: &Value| -> String { unmove(v.as_str().expect("a path")) };
    let shipped = Outcome::read(&out, "20-check-config").json("check-config");
    assert_eq!(shipped["mode"], "secure");
    assert_eq!(unmoved(&shipped["config_file"]), unit.config);
    let keys = steps
        .iter()
        .filter(|l| l.starts_with("rsp keygen psk "))
        .count();
    assert!(keys > 0);
    assert_eq!(shipped["tls"]["psk_identities"], keys);
    // The unit's commands, as its user.
    let pre = Outcome::read(&out, "30-exec-start-pre").success("ExecStartPre");
    assert!(pre.out.contains("configuration OK"), "{}", pre.out);
    Outcome::read(&out, "31-exec-start").success("ExecStart --check-config");
    // With the optional files of the example.
    let all = Outcome::read(&out, "40-all-on").json("all on");
    assert_eq!(unmoved(&all["tls"]["client_ca"]), client_ca);
    assert_eq!(unmoved(&all["admin"]["token_file"]), token_file);
    let secrets: Vec<String> = all["tls"]["psk_files"]
        .as_array()
        .expect("psk_files")
        .iter()
        .chain([&all["tls"]["key"], &all["admin"]["token_file"]])
        .map(unmoved)
        .collect();
    let public = [unmoved(&all["tls"]["cert"]), client_ca.clone()];
    let mut checked: Vec<String> = secrets.iter().chain(&public).cloned().collect();
    checked.sort();
    assert_eq!(
        checked,
        named_files(&toml),
        "every file the example names is checked"
    );
    // Enough descriptors for every connection the defaults allow.
    let needed = all["connections"]["max"].as_u64().expect("max")
        + all["admin"]["max_connections"].as_u64().expect("admin max")
        + 10;
    assert!(unit.limit_nofile >= needed, "LimitNOFILE < {needed}");

    // Owners and modes.
    let listing = Outcome::read(&out, "50-listing").success("listing").out;
    let files: BTreeMap<String, (u32, String, String)> = listing
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let mode = u32::from_str_radix(f[1], 8).expect("mode");
            (unmove(f[0]), (mode, f[2].into(), f[3].into()))
        })
        .collect();
    let file = |p: &str| -> &(u32, String, String) {
        files
            .get(p)
            .unwrap_or_else(|| panic!("{p} is not installed:\n{listing}"))
    };
    let owned = matches!(sandbox, Sandbox::Namespace);
    let owner = |p: &str, user: &str, group: Option<&str>| {
        let (_, u, g) = file(p);
        if owned {
            assert_eq!(u, user, "owner of {p}");
            if let Some(group) = group {
                assert_eq!(g, group, "group of {p}");
            }
        }
    };
    for p in [&unit.read_only, &unit.config] {
        // The service user may read the configuration, not change it.
        let (mode, _, _) = file(p);
        assert_eq!(mode & 0o022, 0, "{p}: mode {mode:o}");
        owner(p, "root", Some(&unit.group));
    }
    for p in &secrets {
        let (mode, _, _) = file(p);
        assert_eq!(mode & 0o077, 0, "{p}: mode {mode:o}");
        owner(p, &unit.user, None);
    }
    for p in &public {
        let (mode, _, _) = file(p);
        assert_eq!(mode & 0o022, 0, "{p}: mode {mode:o}");
    }
    assert_eq!(file(&unit.binary).0, 0o755);
    owner(&unit.binary, "root", None);
    assert_eq!(file(&unit.installed()).0 & 0o022, 0);
    file(&unit.man_page);
    if verify {
        let v = Outcome::read(&out, "60-systemd-analyze-verify").success("verify");
        assert!(
            !v.err.contains(&unit.file),
            "systemd-analyze verify: {}",
            v.err
        );
    }
}

#[test]
fn a_client_given_several_keys_must_name_its_identity() {
    // The registrar's file of the set-up holds every client's key; a PE or
    // PU given it must say which is its own (docs/security.md).
    let s = common::Setup::new(&["pe-1", "pu-1"]);
    let keys = arg(&s.path("registrar.keys"));
    let resolve = |extra: &[&str]| {
        let mut a = vec!["resolve", "echo", "-r", "127.0.0.1:1", "--psk-file", &keys];
        a.extend_from_slice(extra);
        failure(&run(&a))
    };
    let e = resolve(&[]);
    assert!(
        e.contains("2 keys in the file; choose one with --identity"),
        "{e}"
    );
    let e = resolve(&["--identity", "pe-2"]);
    assert!(e.contains("no key for identity \"pe-2\""), "{e}");
    // With an identity of the file, the client goes on to connect.
    let e = resolve(&["--identity", "pu-1"]);
    assert!(e.contains("no registrar reachable"), "{e}");
}
