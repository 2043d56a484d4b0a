//! TLS 1.3 for registrar channels (DESIGN section 4), over OpenSSL.
//!
//! One server set-up serves both kinds of client on one listener: a client
//! that offers an external PSK the registrar knows gets a PSK handshake
//! (mutual authentication: the client proves its identity, the registrar
//! proves it holds the same key); a client without a PSK gets a
//! certificate handshake, in which it verifies the registrar's certificate
//! and may present its own. A PSK the registrar does not know is ignored
//! by OpenSSL, so such a client falls back to the certificate handshake,
//! which a PSK-only client refuses (it trusts no certificate authority),
//! and a registrar without a certificate ends the handshake.
//!
//! Only TLS 1.3; external PSKs need the SHA-256 suites. No 0-RTT and no
//! session tickets: every connection authenticates afresh, and the
//! identity it carries is the one its handshake proved.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use openssl::nid::Nid;
use openssl::ssl::{
    Ssl, SslContext, SslContextBuilder, SslFiletype, SslMethod, SslRef, SslVerifyMode, SslVersion,
};
use openssl::x509::X509Ref;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_openssl::SslStream;

use crate::keyfile::{Psk, PskStore, KEY_LEN};
use crate::SecurityError;

/// TLS 1.3 suites: the SHA-256 ones first (PSK handshakes need them).
const CIPHERSUITES: &str =
    "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384";

/// Who the other end of a connection proved to be.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PeerIdentity {
    /// A PSK handshake with this identity.
    Psk(String),
    /// A verified certificate with this subject (its common name, or the
    /// whole subject when it has none).
    Certificate(String),
    /// A certificate handshake in which the client showed no certificate
    /// (a pool user that authenticated the registrar only).
    Anonymous,
}

impl std::fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerIdentity::Psk(i) => write!(f, "psk:{i}"),
            PeerIdentity::Certificate(s) => write!(f, "cert:{s}"),
            PeerIdentity::Anonymous => write!(f, "anonymous"),
        }
    }
}

/// A certificate chain and its private key, PEM files.
#[derive(Debug, Clone)]
pub struct CertificateFiles {
    /// Certificate chain, leaf first.
    pub chain: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// How a registrar authenticates its clients.
#[derive(Debug, Clone, Default)]
pub struct TlsServerConfig {
    /// Pre-shared keys of the PEs (and peers) it accepts.
    pub psks: Option<Arc<PskStore>>,
    /// Its certificate, for clients without a PSK.
    pub certificate: Option<CertificateFiles>,
    /// CA that signs client certificates; when set, clients are asked for one.
    pub client_ca: Option<PathBuf>,
    /// Refuse certificate handshakes without a client certificate.
    pub require_client_certificate: bool,
}

/// How a PE, PU or registrar authenticates the registrar it connects to.
#[derive(Debug, Clone, Default)]
pub struct TlsClientConfig {
    /// Its pre-shared key (identity + key).
    pub psk: Option<Psk>,
    /// CA that signs registrar certificates.
    pub ca: Option<PathBuf>,
    /// Its own certificate, for registrars that ask for one.
    pub certificate: Option<CertificateFiles>,
}

fn cert_err(path: &Path) -> impl Fn(openssl::error::ErrorStack) -> SecurityError + '_ {
    move |e| SecurityError::Certificate {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

fn base(method: SslMethod) -> Result<SslContextBuilder, SecurityError> {
    let mut b = SslContext::builder(method)?;
    b.set_min_proto_version(Some(SslVersion::TLS1_3))?;
    b.set_max_proto_version(Some(SslVersion::TLS1_3))?;
    b.set_ciphersuites(CIPHERSUITES)?;
    b.set_max_early_data(0)?;
    b.set_num_tickets(0)?;
    Ok(b)
}

fn load_certificate(b: &mut SslContextBuilder, c: &CertificateFiles) -> Result<(), SecurityError> {
    b.set_certificate_chain_file(&c.chain)
        .map_err(cert_err(&c.chain))?;
    b.set_private_key_file(&c.key, SslFiletype::PEM)
        .map_err(cert_err(&c.key))?;
    b.check_private_key().map_err(cert_err(&c.key))
}

/// The subject a certificate names: its common name, or the whole subject.
fn subject(cert: &X509Ref) -> String {
    let name = cert.subject_name();
    if let Some(cn) = name
        .entries_by_nid(Nid::COMMONNAME)
        .next()
        .and_then(|e| e.data().to_string().ok())
    {
        return cn;
    }
    name.entries()
        .filter_map(|e| {
            let key = e.object().nid().short_name().ok()?;
            let value = e.data().to_string().ok()?;
            Some(format!("{key}={value}"))
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn handshake_err(peer: &str, e: impl std::fmt::Display) -> SecurityError {
    SecurityError::Handshake {
        peer: peer.to_owned(),
        reason: e.to_string(),
    }
}

/// A registrar's TLS endpoint.
#[derive(Clone)]
pub struct TlsServer {
    ctx: SslContext,
    psk_identity: openssl::ex_data::Index<Ssl, String>,
}

impl std::fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServer").finish_non_exhaustive()
    }
}

impl TlsServer {
    /// Set up from a configuration; it must allow some handshake (PSKs or
    /// a certificate).
    pub fn new(cfg: &TlsServerConfig) -> Result<TlsServer, SecurityError> {
        if cfg.psks.as_ref().map_or(true, |p| p.is_empty()) && cfg.certificate.is_none() {
            return Err(SecurityError::Config(
                "a secure registrar needs pre-shared keys or a certificate".into(),
            ));
        }
        if cfg.require_client_certificate && cfg.client_ca.is_none() {
            return Err(SecurityError::Config(
                "client certificates are required but no client CA is configured".into(),
            ));
        }
        let psk_identity = Ssl::new_ex_index::<String>()?;
        let mut b = base(SslMethod::tls_server())?;
        if let Some(store) = cfg.psks.clone() {
            b.set_psk_server_callback(move |ssl: &mut SslRef, identity, out: &mut [u8]| {
                let Some(id) = identity.and_then(|b| std::str::from_utf8(b).ok()) else {
                    return Ok(0);
                };
                let Some(psk) = store.get(id) else {
                    tracing::warn!(identity = id, "TLS client offered an unknown PSK identity");
                    return Ok(0);
                };
                let Some(slot) = out.get_mut(..KEY_LEN) else {
                    return Ok(0);
                };
                slot.copy_from_slice(&psk.key);
                ssl.set_ex_data(psk_identity, id.to_owned());
                Ok(KEY_LEN)
            });
        }
        if let Some(c) = &cfg.certificate {
            load_certificate(&mut b, c)?;
        }
        if let Some(ca) = &cfg.client_ca {
            b.set_ca_file(ca).map_err(cert_err(ca))?;
            let mut mode = SslVerifyMode::PEER;
            if cfg.require_client_certificate {
                mode |= SslVerifyMode::FAIL_IF_NO_PEER_CERT;
            }
            b.set_verify(mode);
        }
        Ok(TlsServer {
            ctx: b.build(),
            psk_identity,
        })
    }

    /// Run the server side of a handshake on an accepted stream; `peer`
    /// names the peer in errors (its address).
    pub async fn accept<S>(
        &self,
        stream: S,
        peer: &str,
    ) -> Result<(SslStream<S>, PeerIdentity), SecurityError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let ssl = Ssl::new(&self.ctx)?;
        let mut s = SslStream::new(ssl, stream)?;
        Pin::new(&mut s)
            .accept()
            .await
            .map_err(|e| handshake_err(peer, e))?;
        let ssl = s.ssl();
        let identity = if let Some(id) = ssl.ex_data(self.psk_identity) {
            PeerIdentity::Psk(id.clone())
        } else if let Some(cert) = ssl.peer_certificate() {
            PeerIdentity::Certificate(subject(&cert))
        } else {
            PeerIdentity::Anonymous
        };
        tracing::debug!(%peer, %identity, "TLS handshake done");
        Ok((s, identity))
    }
}

/// A client's TLS set-up (PE, PU, registrar peer).
#[derive(Clone)]
pub struct TlsClient {
    ctx: SslContext,
    psk_identity: Option<String>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("psk_identity", &self.psk_identity)
            .finish_non_exhaustive()
    }
}

impl TlsClient {
    /// Set up from a configuration; it must be able to authenticate the
    /// server (a PSK or a CA).
    pub fn new(cfg: &TlsClientConfig) -> Result<TlsClient, SecurityError> {
        if cfg.psk.is_none() && cfg.ca.is_none() {
            return Err(SecurityError::Config(
                "cannot authenticate the registrar: give a pre-shared key or a CA certificate"
                    .into(),
            ));
        }
        let mut b = base(SslMethod::tls_client())?;
        // Always verify certificates: without a CA the trust store is
        // empty, so a PSK-only client accepts PSK handshakes only.
        b.set_verify(SslVerifyMode::PEER);
        if let Some(ca) = &cfg.ca {
            b.set_ca_file(ca).map_err(cert_err(ca))?;
        }
        if let Some(c) = &cfg.certificate {
            load_certificate(&mut b, c)?;
        }
        if let Some(psk) = cfg.psk.clone() {
            b.set_psk_client_callback(
                move |_ssl, _hint, identity_out: &mut [u8], psk_out: &mut [u8]| {
                    let id = psk.identity.as_bytes();
                    // NUL-terminated identity, and the key.
                    if identity_out.len() <= id.len() || psk_out.len() < KEY_LEN {
                        return Ok(0);
                    }
                    identity_out[..id.len()].copy_from_slice(id);
                    identity_out[id.len()] = 0;
                    psk_out[..KEY_LEN].copy_from_slice(&psk.key);
                    Ok(KEY_LEN)
                },
            );
        }
        Ok(TlsClient {
            ctx: b.build(),
            psk_identity: cfg.psk.as_ref().map(|p| p.identity.clone()),
        })
    }

    /// Run the client side of a handshake. `server_name` is what the
    /// registrar's certificate must name (a DNS name or an IP address).
    /// Returns the stream and who the server proved to be.
    pub async fn connect<S>(
        &self,
        stream: S,
        server_name: &str,
    ) -> Result<(SslStream<S>, PeerIdentity), SecurityError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut ssl = Ssl::new(&self.ctx)?;
        match server_name.parse::<IpAddr>() {
            Ok(ip) => ssl.param_mut().set_ip(ip)?,
            Err(_) => {
                ssl.set_hostname(server_name)?;
                ssl.param_mut().set_host(server_name)?;
            }
        }
        let mut s = SslStream::new(ssl, stream)?;
        Pin::new(&mut s)
            .connect()
            .await
            .map_err(|e| handshake_err(server_name, e))?;
        let identity = match (s.ssl().peer_certificate(), &self.psk_identity) {
            (Some(cert), _) => PeerIdentity::Certificate(subject(&cert)),
            (None, Some(id)) => PeerIdentity::Psk(id.clone()),
            (None, None) => {
                return Err(handshake_err(
                    server_name,
                    "server presented no certificate and no PSK was agreed",
                ))
            }
        };
        Ok((s, identity))
    }
}
