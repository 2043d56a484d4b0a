//! `rsp apd`: the authorised peer database (docs/security.md).
//!
//! * `init` writes a strict starting file from keys (no registrar
//!   needed); `check` reads a file and lists it, or says what is wrong
//!   with the line and key.
//! * `list`, `add`, `insert`, `modify`, `move`, `delete` and `replace`
//!   go to a running registrar's admin API (`/v1/apd`): each change is
//!   checked there first and changes nothing when invalid; a valid one
//!   is written to the registrar's database file and applied, and what
//!   the registrar removed because of it is printed.
//!
//! Human-readable output by default, the API's JSON with `--json`.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use reqwest::Method;
use rserpool_security::apd::{Apd, Entry, EntrySpec, Grant, Role, RoleSet};
use rserpool_security::{Existing, PeerIdentity, PskStore};
use serde_json::{json, Value};

use crate::admin_client::{percent_encode, AdminArgs, AdminClient};
use crate::display::{plural, printable};

/// `rsp apd ...`.
#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// Write a strict starting database from keys: each identity may do
    /// what it is granted, in every pool, from its own address only; a
    /// final entry denies everyone else.
    Init(InitArgs),
    /// Read a database file and list its entries, or say what is wrong
    /// (line and key). No registrar needed.
    Check(CheckArgs),
    /// List a registrar's database, in order (admin API).
    List(RemoteArgs),
    /// Append an entry (admin API).
    Add(AddArgs),
    /// Insert an entry at a position; the entries from there move down
    /// (admin API).
    Insert(InsertArgs),
    /// Replace an entry, named by position or name (admin API).
    Modify(ModifyArgs),
    /// Move an entry to another position (admin API).
    Move(MoveArgs),
    /// Delete an entry, named by position or name (admin API).
    Delete(DeleteArgs),
    /// Replace the whole database with a file (checked here, then by the
    /// registrar; admin API).
    Replace(ReplaceArgs),
}

impl Args {
    /// The admin flags, for the client file's defaults.
    pub fn admin_mut(&mut self) -> Option<&mut AdminArgs> {
        match self {
            Args::Init(_) | Args::Check(_) => None,
            Args::List(a) => Some(&mut a.admin),
            Args::Add(a) => Some(&mut a.admin),
            Args::Insert(a) => Some(&mut a.admin),
            Args::Modify(a) => Some(&mut a.admin),
            Args::Move(a) => Some(&mut a.admin),
            Args::Delete(a) => Some(&mut a.admin),
            Args::Replace(a) => Some(&mut a.admin),
        }
    }
}

/// Flags of `rsp apd init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// PSK key files: every identity in them is granted --roles.
    #[arg(long = "psk-file", value_name = "FILE")]
    pub psk_files: Vec<PathBuf>,
    /// Roles of the identities of --psk-file (pe, pu, registrar, admin).
    #[arg(
        long,
        value_name = "ROLES",
        value_delimiter = ',',
        default_value = "pe,pu"
    )]
    pub roles: Vec<String>,
    /// One more identity and its roles: IDENTITY=ROLES, the identity as
    /// the registrar logs it (psk:NAME, cert:SUBJECT, dns:NAME, ip:ADDR),
    /// e.g. `--grant psk:r2=registrar` or `--grant cert:pu-7=pu`.
    #[arg(long = "grant", value_name = "IDENTITY=ROLES")]
    pub grants: Vec<String>,
    /// Write the database here (mode 0644) instead of to stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Replace an existing --output file.
    #[arg(long)]
    pub force: bool,
}

/// Flags of `rsp apd check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The database file.
    pub file: PathBuf,
}

/// The admin flags alone.
#[derive(Debug, clap::Args)]
pub struct RemoteArgs {
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// An entry given by flags (see docs/security.md for each value).
#[derive(Debug, Clone, clap::Args)]
pub struct EntryFlags {
    /// The entry's name: letters, digits, '.', '_', '-' (not only digits).
    #[arg(long)]
    pub name: String,
    /// allow or deny.
    #[arg(long, default_value = "allow")]
    pub action: String,
    /// The namespace the identity pattern is in: psk, cert, dns, ip,
    /// anonymous, authenticated or any.
    #[arg(long, default_value = "psk")]
    pub namespace: String,
    /// The identity pattern: exact, `prefix*`, `*suffix`, a glob, `*`;
    /// for ip a CIDR range. Not for anonymous.
    #[arg(long)]
    pub identity: Option<String>,
    /// Roles, comma-separated: pe, pu, registrar, admin.
    #[arg(long, value_delimiter = ',', required = true)]
    pub roles: Vec<String>,
    /// Pool handle patterns, comma-separated (`echo`, `web-*`, `hex:00ff`,
    /// `*`). Default: every pool.
    #[arg(long, value_delimiter = ',')]
    pub pools: Vec<String>,
    /// Addresses, comma-separated: own, any, addresses, CIDR ranges.
    /// Default: own for an allow, any for a deny.
    #[arg(long, value_delimiter = ',')]
    pub addresses: Vec<String>,
    /// A comment kept with the entry.
    #[arg(long)]
    pub comment: Option<String>,
}

impl EntryFlags {
    /// The entry, checked here first (the registrar checks it again).
    fn spec(&self) -> anyhow::Result<EntrySpec> {
        let spec = EntrySpec {
            name: self.name.clone(),
            action: self.action.clone(),
            namespace: self.namespace.clone(),
            identity: self.identity.clone(),
            roles: self.roles.clone(),
            pools: (!self.pools.is_empty()).then(|| self.pools.clone()),
            addresses: (!self.addresses.is_empty()).then(|| self.addresses.clone()),
            comment: self.comment.clone(),
        };
        Entry::from_spec(&spec).map_err(|e| anyhow::anyhow!("the entry: {e}"))?;
        Ok(spec)
    }
}

/// Flags of `rsp apd add`.
#[derive(Debug, clap::Args)]
pub struct AddArgs {
    #[command(flatten)]
    pub entry: EntryFlags,
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// Flags of `rsp apd insert`.
#[derive(Debug, clap::Args)]
pub struct InsertArgs {
    /// Where it goes (from 0; the number of entries appends).
    pub position: usize,
    #[command(flatten)]
    pub entry: EntryFlags,
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// Flags of `rsp apd modify`.
#[derive(Debug, clap::Args)]
pub struct ModifyArgs {
    /// The entry to replace: its position or its name.
    pub target: String,
    #[command(flatten)]
    pub entry: EntryFlags,
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// Flags of `rsp apd move`.
#[derive(Debug, clap::Args)]
pub struct MoveArgs {
    /// The entry to move: its position or its name.
    pub target: String,
    /// Its new position (from 0).
    pub to: usize,
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// Flags of `rsp apd delete`.
#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// The entry to delete: its position or its name.
    pub target: String,
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// Flags of `rsp apd replace`.
#[derive(Debug, clap::Args)]
pub struct ReplaceArgs {
    /// The new database file.
    pub file: PathBuf,
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// Run `rsp apd ...`.
pub async fn run(args: &Args, json: bool) -> anyhow::Result<()> {
    match args {
        Args::Init(a) => init(a, json),
        Args::Check(a) => check(a, json),
        Args::List(a) => list(a, json).await,
        Args::Add(a) => {
            let body = json!({ "entry": a.entry.spec()? });
            change(&a.admin, Method::POST, "/v1/apd/entries", body, json).await
        }
        Args::Insert(a) => {
            let body = json!({ "entry": a.entry.spec()?, "position": a.position });
            change(&a.admin, Method::POST, "/v1/apd/entries", body, json).await
        }
        Args::Modify(a) => {
            let body = json!({ "entry": a.entry.spec()? });
            let path = format!("/v1/apd/entries/{}", percent_encode(a.target.as_bytes()));
            change(&a.admin, Method::PUT, &path, body, json).await
        }
        Args::Move(a) => {
            let path = format!(
                "/v1/apd/entries/{}/move",
                percent_encode(a.target.as_bytes())
            );
            change(&a.admin, Method::POST, &path, json!({ "to": a.to }), json).await
        }
        Args::Delete(a) => {
            let path = format!("/v1/apd/entries/{}", percent_encode(a.target.as_bytes()));
            let client = AdminClient::new(&a.admin)?;
            let answer = client.json(Method::DELETE, &path).await?;
            print_change(&answer, json);
            Ok(())
        }
        Args::Replace(a) => {
            let apd = Apd::load(&a.file)?;
            let client = AdminClient::new(&a.admin)?;
            let answer = client
                .send_toml(Method::PUT, "/v1/apd", apd.to_toml())
                .await?;
            print_change(&answer, json);
            Ok(())
        }
    }
}

/// The grants of `rsp apd init`.
fn grants(a: &InitArgs) -> anyhow::Result<Vec<Grant>> {
    let roles = |list: &[String], what: &str| -> anyhow::Result<RoleSet> {
        let mut set = RoleSet::EMPTY;
        for r in list {
            let role: Role = r
                .trim()
                .parse()
                .map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
            set = set.with(role);
        }
        Ok(set)
    };
    let mut out = Vec::new();
    if !a.psk_files.is_empty() {
        let store = PskStore::load(&a.psk_files)?;
        let set = roles(&a.roles, "--roles")?;
        let mut ids: Vec<&str> = store.iter().map(|p| p.identity.as_str()).collect();
        ids.sort_unstable();
        out.extend(ids.into_iter().map(|id| Grant {
            identity: PeerIdentity::Psk(id.to_owned()),
            roles: set,
        }));
    }
    for g in &a.grants {
        let (identity, list) = g
            .rsplit_once('=')
            .with_context(|| format!("--grant {g:?}: give IDENTITY=ROLES, e.g. psk:pe-1=pe,pu"))?;
        let identity: PeerIdentity = identity
            .parse()
            .map_err(|e| anyhow::anyhow!("--grant {g:?}: {e}"))?;
        let list: Vec<String> = list.split(',').map(str::to_owned).collect();
        out.push(Grant {
            identity,
            roles: roles(&list, &format!("--grant {g:?}"))?,
        });
    }
    if out.is_empty() {
        anyhow::bail!(
            "no keys: give --psk-file FILE (every identity in it) or --grant IDENTITY=ROLES"
        );
    }
    Ok(out)
}

fn init(a: &InitArgs, json: bool) -> anyhow::Result<()> {
    let grants = grants(a)?;
    let apd = Apd::strict(&grants)?;
    match &a.output {
        None => print!("{}", apd.to_toml()),
        Some(path) => {
            let existing = if a.force {
                Existing::Replace
            } else {
                Existing::Refuse
            };
            apd.save(path, existing).map_err(|e| match e {
                rserpool_security::apd::ApdError::File { error, .. }
                    if matches!(
                        *error,
                        rserpool_security::apd::ApdError::Read(
                            rserpool_security::SecurityError::FileExists { .. }
                        )
                    ) =>
                {
                    anyhow::anyhow!("{} exists: give --force to replace it", path.display())
                }
                other => other.into(),
            })?;
            if json {
                println!(
                    "{}",
                    json!({
                        "event": "written",
                        "file": path.display().to_string(),
                        "entries": apd.len(),
                    })
                );
            } else {
                println!(
                    "wrote {} to {}: {} granted, then a deny of everyone else; start the \
                     registrar with --apd {}",
                    plural(apd.len() as u64, "entry", "entries"),
                    path.display(),
                    plural(grants.len() as u64, "identity", "identities"),
                    path.display()
                );
            }
        }
    }
    Ok(())
}

fn check(a: &CheckArgs, json: bool) -> anyhow::Result<()> {
    let apd = Apd::load(&a.file)?;
    let entries: Vec<Value> = apd
        .entries()
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut v = serde_json::to_value(e.to_spec()).unwrap_or(Value::Null);
            v["position"] = json!(i);
            v
        })
        .collect();
    if json {
        println!(
            "{}",
            json!({ "file": a.file.display().to_string(), "valid": true, "entries": entries })
        );
    } else {
        println!(
            "{}: valid, {}",
            a.file.display(),
            plural(apd.len() as u64, "entry", "entries")
        );
        print!("{}", table(&entries));
    }
    Ok(())
}

async fn list(a: &RemoteArgs, json: bool) -> anyhow::Result<()> {
    let client = AdminClient::new(&a.admin)?;
    let doc = client.get_json("/v1/apd").await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    let entries = doc["entries"].as_array().cloned().unwrap_or_default();
    let from = match doc["file"].as_str() {
        Some(f) => format!(" (file {})", printable(f)),
        None => String::new(),
    };
    println!(
        "{}{from}: {}",
        printable(doc["description"].as_str().unwrap_or("")),
        plural(entries.len() as u64, "entry", "entries")
    );
    print!("{}", table(&entries));
    Ok(())
}

/// Entries as a table: position, name, action, namespace, identity,
/// roles, pools, addresses.
fn table(entries: &[Value]) -> String {
    let list = |v: &Value| match v.as_array() {
        Some(a) => a
            .iter()
            .map(|x| printable(x.as_str().unwrap_or("")).into_owned())
            .collect::<Vec<_>>()
            .join(","),
        None => "-".into(),
    };
    let text = |v: &Value| printable(v.as_str().unwrap_or("-")).into_owned();
    let mut rows = vec![[
        "POS".to_string(),
        "NAME".into(),
        "ACTION".into(),
        "NAMESPACE".into(),
        "IDENTITY".into(),
        "ROLES".into(),
        "POOLS".into(),
        "ADDRESSES".into(),
    ]];
    for e in entries {
        rows.push([
            e["position"].to_string(),
            text(&e["name"]),
            text(&e["action"]),
            text(&e["namespace"]),
            text(&e["identity"]),
            list(&e["roles"]),
            list(&e["pools"]),
            list(&e["addresses"]),
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

async fn change(
    admin: &AdminArgs,
    method: Method,
    path: &str,
    body: Value,
    json: bool,
) -> anyhow::Result<()> {
    let client = AdminClient::new(admin)?;
    let answer = client.send_json(method, path, &body).await?;
    print_change(&answer, json);
    Ok(())
}

/// The registrar's answer to a change: what it did and what the
/// re-validation removed.
fn print_change(answer: &Value, json: bool) {
    if json {
        println!("{answer}");
        return;
    }
    let what = answer["change"].as_str().unwrap_or("changed");
    let at = match answer["position"].as_u64() {
        Some(p) => format!(" (position {p})"),
        None => String::new(),
    };
    let closed = answer["connections_closed"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let removed = answer["pes_removed"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let kept = match answer["written_to"].as_str() {
        Some(f) => format!("written to {}", printable(f)),
        None => "in memory only (the registrar has no --apd file; a restart forgets it)".into(),
    };
    println!(
        "{what}{at}; the database has {}, {kept}; re-validation closed {} and removed {}",
        plural(answer["entries"].as_u64().unwrap_or(0), "entry", "entries"),
        plural(closed.len() as u64, "connection", "connections"),
        plural(removed.len() as u64, "PE", "PEs"),
    );
    for c in &closed {
        println!(
            "  closed connection {} of {} from {}: {}",
            c["conn"],
            printable(c["identity"].as_str().unwrap_or("")),
            printable(c["address"].as_str().unwrap_or("")),
            printable(c["decision"].as_str().unwrap_or(""))
        );
    }
    for p in &removed {
        let id = p["identifier"].as_u64().unwrap_or(0);
        println!(
            "  removed PE {id:#010x} of pool {} ({}): {}",
            printable(&pool_text(&p["pool_handle"])),
            printable(p["identity"].as_str().unwrap_or("")),
            printable(p["decision"].as_str().unwrap_or(""))
        );
    }
}

/// A pool handle as the API serialises it (text, or whatever it is).
fn pool_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
