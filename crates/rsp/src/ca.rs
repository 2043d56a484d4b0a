//! `rsp ca init|issue`: a small certificate authority for labs, demos and
//! tests (P-256, SHA-256; `rserpool_security::pki`). `init` creates
//! `DIR/ca.pem` and `DIR/ca.key`; `issue` signs a certificate for a
//! registrar, a PE or a PU and writes `NAME.pem` and `NAME.key`. Keys are
//! created with mode 0600 and never overwritten without `--force`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use rserpool_security::pki::{CertificateAuthority, Issued, Role};
use rserpool_security::Existing;

/// What to do with the CA.
#[derive(Debug, Subcommand)]
pub enum Args {
    /// Create a CA: DIR/ca.pem (certificate) and DIR/ca.key (private key).
    Init {
        /// Directory of the CA (created with mode 0700 if missing).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The CA's name (common name of its certificate).
        #[arg(long, default_value = "rsp lab CA")]
        name: String,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
        /// Replace an existing CA (certificates it issued stop verifying).
        #[arg(long)]
        force: bool,
    },
    /// Issue a certificate signed by the CA in DIR: NAME.pem and NAME.key.
    Issue {
        /// Directory of the CA (as given to `rsp ca init`).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Name of the holder: the certificate's common name (the identity
        /// `cert:NAME` a registrar sees) and the file names.
        name: String,
        /// What the certificate is for: a registrar (TLS server and
        /// client), a pool element or a pool user (TLS client).
        #[arg(long, value_enum, default_value_t = RoleArg::Pe)]
        role: RoleArg,
        /// DNS name clients connect to (repeatable; registrars need a DNS
        /// name or an IP address).
        #[arg(long, value_name = "NAME")]
        dns: Vec<String>,
        /// IP address clients connect to (repeatable).
        #[arg(long, value_name = "ADDR")]
        ip: Vec<IpAddr>,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Directory for NAME.pem and NAME.key (default: the CA's DIR).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Replace existing NAME.pem and NAME.key.
        #[arg(long)]
        force: bool,
    },
}

/// `--role` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RoleArg {
    /// A registrar: serverAuth and clientAuth (for ENRP peers).
    Registrar,
    /// A pool element: clientAuth.
    Pe,
    /// A pool user: clientAuth.
    Pu,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Registrar => Role::Registrar,
            RoleArg::Pe => Role::PoolElement,
            RoleArg::Pu => Role::PoolUser,
        }
    }
}

pub fn run(args: &Args, json: bool) -> anyhow::Result<()> {
    match args {
        Args::Init {
            dir,
            name,
            days,
            force,
        } => init(dir, name, *days, *force, json),
        Args::Issue {
            dir,
            name,
            role,
            dns,
            ip,
            days,
            out,
            force,
        } => issue(
            &Request {
                dir,
                name,
                role: (*role).into(),
                dns,
                ips: ip,
                days: *days,
                out: out.as_deref().unwrap_or(dir),
            },
            *force,
            json,
        ),
    }
}

fn ca_files(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("ca.pem"), dir.join("ca.key"))
}

/// Create `dir` with mode 0700 if it does not exist.
fn make_private_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
        .with_context(|| format!("{}: cannot create the directory", dir.display()))
}

/// Refuse to overwrite existing files unless forced.
fn check_absent(paths: &[&Path], force: bool) -> anyhow::Result<Existing> {
    if force {
        return Ok(Existing::Replace);
    }
    if let Some(p) = paths.iter().find(|p| p.exists()) {
        anyhow::bail!(
            "{} exists; refusing to overwrite it (--force replaces it)",
            p.display()
        );
    }
    Ok(Existing::Refuse)
}

fn init(dir: &Path, name: &str, days: u32, force: bool, json: bool) -> anyhow::Result<()> {
    let (cert, key) = ca_files(dir);
    let existing = check_absent(&[&cert, &key], force)?;
    let ca = CertificateAuthority::generate(name, days)?;
    make_private_dir(dir)?;
    ca.issued().save(&cert, &key, existing)?;
    let issued = ca.issued();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "name": name,
                "certificate": cert.display().to_string(),
                "key": key.display().to_string(),
                "not_after": issued.not_after(),
                "fingerprint_sha256": issued.fingerprint()?,
            })
        );
        return Ok(());
    }
    println!(
        "created CA {name:?} (valid until {})\n  {}  certificate: clients verify registrars with it (--ca), registrars verify client certificates with it (--client-ca)\n  {}  private key (mode 0600): keep it secret\n  SHA-256 fingerprint {}\nnext: rsp ca issue --dir {} NAME --role registrar|pe|pu [--dns NAME] [--ip ADDR]",
        issued.not_after(),
        cert.display(),
        key.display(),
        issued.fingerprint()?,
        dir.display(),
    );
    Ok(())
}

/// What `rsp ca issue` was asked for.
struct Request<'a> {
    dir: &'a Path,
    name: &'a str,
    role: Role,
    dns: &'a [String],
    ips: &'a [IpAddr],
    days: u32,
    out: &'a Path,
}

/// A holder name: letters, digits, `.`, `_`, `-`; it names files too.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if !ok {
        anyhow::bail!(
            "{name:?}: a certificate name has 1 to 64 letters, digits, '.', '_' or '-' and does not start with '.'"
        );
    }
    Ok(())
}

fn issue(r: &Request<'_>, force: bool, json: bool) -> anyhow::Result<()> {
    check_name(r.name)?;
    if r.role == Role::Registrar && r.dns.is_empty() && r.ips.is_empty() {
        anyhow::bail!(
            "a registrar certificate needs --dns NAME or --ip ADDR: clients check the name they connect to against it"
        );
    }
    let (ca_cert, ca_key) = ca_files(r.dir);
    let ca = CertificateAuthority::load(&ca_cert, &ca_key)
        .with_context(|| format!("cannot load the CA in {}", r.dir.display()))?;
    let cert = r.out.join(format!("{}.pem", r.name));
    let key = r.out.join(format!("{}.key", r.name));
    let existing = check_absent(&[&cert, &key], force)?;
    let dns: Vec<&str> = r.dns.iter().map(String::as_str).collect();
    let issued = ca.issue_as(r.role, r.name, &dns, r.ips, r.days)?;
    make_private_dir(r.out)?;
    issued.save(&cert, &key, existing)?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "name": r.name,
                "role": r.role.name(),
                "certificate": cert.display().to_string(),
                "key": key.display().to_string(),
                "ca": ca_cert.display().to_string(),
                "dns": r.dns,
                "ip": r.ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "not_after": issued.not_after(),
                "fingerprint_sha256": issued.fingerprint()?,
            })
        );
        return Ok(());
    }
    print_issued(r, &issued, &cert, &key, &ca_cert)
}

fn print_issued(
    r: &Request<'_>,
    issued: &Issued,
    cert: &Path,
    key: &Path,
    ca: &Path,
) -> anyhow::Result<()> {
    let names: Vec<String> = r
        .dns
        .iter()
        .map(|d| format!("DNS:{d}"))
        .chain(r.ips.iter().map(|i| format!("IP:{i}")))
        .collect();
    let names = if names.is_empty() {
        String::new()
    } else {
        format!(", for {}", names.join(" "))
    };
    println!(
        "issued {} certificate {:?}{names} (valid until {}):\n  {}  certificate\n  {}  private key (mode 0600): keep it secret",
        r.role.name(),
        r.name,
        issued.not_after(),
        cert.display(),
        key.display(),
    );
    let (cert, key, ca) = (cert.display(), key.display(), ca.display());
    let host = r
        .dns
        .first()
        .cloned()
        .or_else(|| r.ips.first().map(ToString::to_string))
        .unwrap_or_else(|| "REGISTRAR".into());
    match r.role {
        Role::Registrar => println!(
            "use:     rsp registrar --cert {cert} --key {key} [--client-ca {ca}]\nclients: rsp resolve POOL -r {host}:3864 --ca {ca}"
        ),
        Role::PoolElement => println!(
            "use:     rsp pe POOL -r REGISTRAR:3864 --ca {ca} --cert {cert} --key {key}\n         (the registrar needs --client-ca {ca}; it sees the identity cert:{})",
            r.name
        ),
        Role::PoolUser => println!(
            "use:     rsp resolve POOL -r REGISTRAR:3864 --ca {ca} --cert {cert} --key {key}\n         (the registrar needs --client-ca {ca}; it sees the identity cert:{})",
            r.name
        ),
    }
    Ok(())
}
