//! From merged settings to a runnable registrar configuration: reads the
//! files they name (pre-shared keys, certificate and key, client CA, the
//! admin token), builds the TLS context and draws a server identifier.
//! Errors name the setting whose file is at fault. Binds no socket.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rserpool_registrar::admin::{AdminConfig, AdminError, AdminToken};
use rserpool_registrar::ListenerConfig;
use rserpool_registrar::ServiceConfig;
use rserpool_security::apd::{Apd, IpNet};
use rserpool_security::tls::CertificateFiles;
use rserpool_security::{
    PeerIdentity, Psk, PskStore, SecurityError, TlsClient, TlsClientConfig, TlsServer,
    TlsServerConfig,
};

use super::check::check;
use super::locate::Origins;
use super::merge::{Merged, TlsFiles, ENRP_PLAIN_PORT, ENRP_TLS_PORT};

/// Everything `rsp registrar` runs with.
#[derive(Debug)]
pub struct RegistrarSettings {
    /// The registrar service (listeners, TLS context, limits, core).
    pub service: ServiceConfig,
    /// The admin HTTP API, when on.
    pub admin: Option<AdminSettings>,
    /// Events (and the `--check-config` summary) as JSON lines.
    pub json: bool,
    /// Where the settings came from, for the summary.
    pub details: Details,
    /// The credentials loaded, to tell what a reload revokes.
    pub credentials: Option<Credentials>,
}

/// The credentials a secure registrar loaded.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The pre-shared keys.
    pub psks: Option<Arc<PskStore>>,
    /// The client CA file's content, if client certificates are accepted.
    pub client_ca: Option<Vec<u8>>,
}

/// The admin HTTP API.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// Its listen address.
    pub listen: SocketAddr,
    /// The file with its bearer token.
    pub token_file: PathBuf,
    /// The token it holds (private file, one line of 32 or more
    /// characters: [`AdminToken::load`]).
    pub token: AdminToken,
    /// Everything the API runs with (address, token, limits).
    pub config: AdminConfig,
}

/// What the summary shows beyond the service settings.
#[derive(Debug, Default)]
pub struct Details {
    /// The configuration file read, if any.
    pub config_file: Option<PathBuf>,
    /// The credential files (`None`: insecure mode).
    pub tls: Option<TlsFiles>,
    /// PSK identities loaded from them.
    pub psk_identities: usize,
    /// Whether the server identifier was drawn at random.
    pub random_server_id: bool,
    /// The cluster's key files.
    pub enrp: super::merge::EnrpFiles,
}

/// Check the merged settings and read every file they name.
pub fn build(m: Merged) -> anyhow::Result<RegistrarSettings> {
    check(&m)?;
    let o = &m.origins;
    let admin_https = match m.admin {
        Some(_) => admin_tls(&m, o)?,
        None => None,
    };
    let mut service = m.service;
    let mut psk_identities = 0;
    let mut dials_with_certificate = false;
    let mut credentials = None;
    let tls = if m.insecure {
        None
    } else {
        let t = &m.tls;
        // The peers' keys are accepted like the others (the database
        // decides that only they may be registrars).
        let files: Vec<PathBuf> = t
            .psk_files
            .iter()
            .chain(&m.enrp.peer_psks)
            .cloned()
            .collect();
        let psks = if files.is_empty() {
            None
        } else {
            let key = if t.psk_files.is_empty() {
                "enrp.peer_psk_files"
            } else {
                "tls.psk_files"
            };
            let store = PskStore::load(&files).map_err(|e| o.error(key, e))?;
            psk_identities = store.len();
            Some(Arc::new(store))
        };
        let certificate = match (&t.cert, &t.key) {
            (Some(chain), Some(key)) => Some(CertificateFiles {
                chain: chain.clone(),
                key: key.clone(),
            }),
            _ => None,
        };
        if let Some(own) = &m.enrp.own_psk {
            let key = Psk::read_file(own)
                .map_err(|e| o.error("enrp.psk_file", e))?
                .into_iter()
                .next()
                .ok_or_else(|| {
                    o.error("enrp.psk_file", format!("{}: no key in it", own.display()))
                })?;
            let client = TlsClient::new(&TlsClientConfig {
                psk: Some(key),
                ..TlsClientConfig::default()
            })
            .map_err(|e| o.error("enrp.psk_file", e))?;
            service.tls_client = Some(Arc::new(client));
        } else if let (Some(own), Some(ca)) = (&certificate, &t.client_ca) {
            // Certificate mode: peers are dialled with this registrar's
            // own certificate (a registrar certificate is for TLS server
            // and client: `rsp ca issue --role registrar`), and theirs is
            // checked against the client CA for the address dialled.
            let client = TlsClient::new(&TlsClientConfig {
                ca: Some(ca.clone()),
                certificate: Some(own.clone()),
                ..TlsClientConfig::default()
            })
            .map_err(|e| o.error("tls.cert", e))?;
            service.tls_client = Some(Arc::new(client));
            dials_with_certificate = true;
        } else if !service.core.enrp.peers.is_empty() {
            return Err(o.error(
                "peers",
                "dialling peer registrars needs this registrar's own key (enrp.psk_file, --enrp-psk-file) or, with a certificate, tls.client_ca (--client-ca) to check theirs",
            ));
        }
        let client_ca = match &t.client_ca {
            Some(ca) => Some(
                rserpool_security::read_credential_file(ca)
                    .map_err(|e| o.error("tls.client_ca", e))?,
            ),
            None => None,
        };
        credentials = Some(Credentials {
            psks: psks.clone(),
            client_ca,
        });
        let cfg = TlsServerConfig {
            psks,
            certificate,
            client_ca: t.client_ca.clone(),
            require_client_certificate: t.require_client_cert,
        };
        service.tls = Some(Arc::new(
            TlsServer::new(&cfg).map_err(|e| tls_error(o, t, e))?,
        ));
        Some(m.tls)
    };
    let admin = match m.admin {
        Some(listen) => {
            let token_file = m
                .admin_token_file
                .context("the admin API needs a token file")?;
            let token =
                AdminToken::load(&token_file).map_err(|e| o.error("admin.token_file", e))?;
            let l = m.admin_limits;
            let config = AdminConfig {
                tls: admin_https,
                header_timeout: l.header_timeout,
                max_connections: l.max_connections,
                max_connections_per_address: l.max_connections_per_address,
                max_event_streams: l.max_event_streams,
                ..AdminConfig::new(listen, token.clone())
            };
            config.check().map_err(|e| match e {
                AdminError::Config { setting, reason } => {
                    let key = match setting {
                        "header_timeout" => "admin.header_timeout",
                        "max_connections" => "admin.max_connections",
                        "max_connections_per_address" => "admin.max_connections_per_address",
                        "max_event_streams" => "admin.max_event_streams",
                        _ => "admin",
                    };
                    o.error(key, reason)
                }
                other => o.error("admin", other),
            })?;
            Some(AdminSettings {
                listen,
                token_file,
                token,
                config,
            })
        }
        None => None,
    };
    // Listeners with options: their source filters parsed here, so that
    // an error names the listener and the item.
    for (i, l) in m.listeners.iter().enumerate() {
        let allow = l
            .allow
            .iter()
            .enumerate()
            .map(|(j, a)| {
                a.parse::<IpNet>().map_err(|e| {
                    o.error("listener", format!("listener[{i}].allow[{j}] {a:?}: {e}"))
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        service.listeners.push(ListenerConfig {
            address: l.address,
            pool_users_only: l.pool_users_only,
            allow,
        });
    }
    // The authorised peer database, or the permissive default (with the
    // old switch's address scope: what a configuration without a
    // database allowed before).
    match &m.apd_file {
        Some(path) => {
            service.apd = Apd::load(path).map_err(|e| o.error("apd", e))?;
            service.apd_file = Some(path.clone());
        }
        None if dials_with_certificate
            && m.enrp.peer_psks.is_empty()
            && m.enrp.clustered(&service.core.enrp.peers) =>
        {
            // The certificate names that may be registrars come from the
            // database alone.
            return Err(o.error(
                "peers",
                "a cluster with certificates needs an authorised peer database (apd, --apd) that gives the peers' certificate identities the registrar role",
            ));
        }
        None => {
            // Without a database the peer keys, and only they, are
            // registrars (in insecure mode, labs, everyone is: nobody is
            // authenticated).
            // Our own key too: on an association we dial, the peer is
            // known only as a holder of our key (TLS PSK names the
            // client), and only peers hold it.
            let mut registrars = Vec::new();
            for f in m.enrp.own_psk.iter().chain(&m.enrp.peer_psks) {
                for k in Psk::read_file(f).map_err(|e| o.error("enrp.peer_psk_files", e))? {
                    registrars.push(PeerIdentity::Psk(k.identity.clone()));
                }
            }
            service.apd = Apd::permissive_with_registrars(
                m.allow_foreign_addresses.unwrap_or(false),
                &registrars,
            );
        }
    }
    if m.enrp.clustered(&service.core.enrp.peers) || service.enrp_multicast.is_some() {
        let port = if m.insecure {
            ENRP_PLAIN_PORT
        } else {
            ENRP_TLS_PORT
        };
        service.enrp_listen = m
            .enrp
            .listen
            .clone()
            .unwrap_or_else(|| vec![SocketAddr::from(([0, 0, 0, 0], port))]);
    }
    let random_server_id = m.server_id.is_none();
    service.core.server_id = match m.server_id {
        Some(id) => id,
        None => rserpool_registrar::config::random_server_id()
            .context("cannot draw a random server id")?,
    };
    service.core.server_id_drawn = random_server_id;
    service
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid registrar settings: {e}"))?;
    Ok(RegistrarSettings {
        service,
        admin,
        json: m.json,
        details: Details {
            config_file: o.file().map(Path::to_owned),
            tls,
            psk_identities,
            random_server_id,
            enrp: m.enrp.clone(),
        },
        credentials,
    })
}

/// The admin API's HTTPS set-up: the registrar's certificate and key,
/// and the admin clients' CA (required when given).
fn admin_tls(m: &Merged, o: &Origins) -> anyhow::Result<Option<Arc<TlsServer>>> {
    if !m.admin_https {
        if m.admin_client_ca.is_some() {
            return Err(o.error(
                "admin.client_ca",
                "client certificates need HTTPS: give admin.https = true (--admin-https) too",
            ));
        }
        return Ok(None);
    }
    let (Some(chain), Some(key)) = (&m.tls.cert, &m.tls.key) else {
        return Err(o.error(
            "admin.https",
            "HTTPS serves the registrar's certificate: give tls.cert and tls.key (--cert, --key)",
        ));
    };
    let cfg = TlsServerConfig {
        psks: None,
        certificate: Some(CertificateFiles {
            chain: chain.clone(),
            key: key.clone(),
        }),
        client_ca: m.admin_client_ca.clone(),
        require_client_certificate: m.admin_client_ca.is_some(),
    };
    let tls = TlsServer::new(&cfg).map_err(|e| match &m.admin_client_ca {
        Some(ca) if e.path() == Some(ca.as_path()) => o.error("admin.client_ca", e),
        _ => o.error("admin.https", e),
    })?;
    Ok(Some(Arc::new(tls)))
}

/// Place a TLS set-up error at the setting naming the file OpenSSL refused.
fn tls_error(o: &Origins, t: &TlsFiles, e: SecurityError) -> anyhow::Error {
    let key = match e.path().map(Path::to_path_buf) {
        Some(path) => {
            if Some(&path) == t.cert.as_ref() {
                "tls.cert"
            } else if Some(&path) == t.key.as_ref() {
                "tls.key"
            } else if Some(&path) == t.client_ca.as_ref() {
                "tls.client_ca"
            } else {
                "tls"
            }
        }
        None => "tls",
    };
    o.error(key, e)
}
