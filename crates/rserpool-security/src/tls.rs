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
//! Only TLS 1.3; external PSKs need the SHA-256 suites. No 0-RTT, no
//! session tickets and no session cache: every connection authenticates
//! afresh, and the identity it carries is the one its handshake proved.
//!
//! Certificates, keys and CA files are read by this crate (not by
//! OpenSSL from a path), with the checks of [`crate::read_secret_file`]:
//! a FIFO or a directory is refused at once, and a private key that group
//! or others can access is refused like a PSK file. [`TlsServer::self_test`]
//! runs one in-memory handshake per mechanism a server is configured for,
//! so that a configuration that is accepted also works.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::ssl::{
    Ssl, SslContext, SslContextBuilder, SslMethod, SslMode, SslRef, SslSessionCacheMode,
    SslVerifyMode, SslVersion,
};
use openssl::x509::{X509Ref, X509VerifyResult, X509};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_openssl::SslStream;

pub use crate::identity::{Mechanism, PeerIdentity};

use crate::files::{self, Access};
use crate::keyfile::{Psk, PskStore, KEY_LEN};
use crate::SecurityError;

/// TLS 1.3 suites: the SHA-256 ones first (PSK handshakes need them).
const CIPHERSUITES: &str =
    "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384";

/// The session id context of server sessions. OpenSSL turns an external
/// PSK into a session, and a session on a context that verifies peers
/// (a client CA is set) must carry a session id context, or the handshake
/// fails with "session id context uninitialized" (alert 80).
const SESSION_ID_CONTEXT: &[u8] = b"rserpool registrar";

/// Buffer of the in-memory pipe [`TlsServer::self_test`] runs over.
const SELF_TEST_BUFFER: usize = 64 * 1024;

/// What a server does with client certificates in certificate handshakes
/// (PSK handshakes never carry one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCertificates {
    /// No client CA: none is asked for, every certificate client is
    /// [`PeerIdentity::Anonymous`].
    NotRequested,
    /// Asked for and verified against the client CA when shown; a client
    /// without one is [`PeerIdentity::Anonymous`].
    Optional,
    /// Asked for and required: a client without one is refused.
    Required,
}

impl ClientCertificates {
    /// Whether a client certificate can give a connection its identity
    /// ([`PeerIdentity::Certificate`]).
    pub fn accepted(self) -> bool {
        self != ClientCertificates::NotRequested
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

fn refused(path: &Path, reason: &str) -> SecurityError {
    SecurityError::Certificate {
        path: path.to_owned(),
        reason: reason.to_owned(),
    }
}

fn base(method: SslMethod) -> Result<SslContextBuilder, SecurityError> {
    let mut b = SslContext::builder(method)?;
    b.set_min_proto_version(Some(SslVersion::TLS1_3))?;
    b.set_max_proto_version(Some(SslVersion::TLS1_3))?;
    b.set_ciphersuites(CIPHERSUITES)?;
    b.set_max_early_data(0)?;
    b.set_num_tickets(0)?;
    // An idle connection gives its record buffers back (a registrar holds
    // thousands of idle connections, each would keep 16 KiB and more).
    b.set_mode(SslMode::RELEASE_BUFFERS);
    Ok(b)
}

/// The certificates of a PEM file (at least one).
fn read_certificates(path: &Path) -> Result<Vec<X509>, SecurityError> {
    let pem = files::read(path, Access::Public)?;
    let certs = X509::stack_from_pem(&pem).map_err(cert_err(path))?;
    if certs.is_empty() {
        return Err(refused(path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

/// A certificate chain (leaf first) and its private key, which only its
/// owner may access (it is as secret as a PSK).
fn load_certificate(b: &mut SslContextBuilder, c: &CertificateFiles) -> Result<(), SecurityError> {
    let mut chain = read_certificates(&c.chain)?.into_iter();
    let leaf = chain
        .next()
        .ok_or_else(|| refused(&c.chain, "no PEM certificate in the file"))?;
    b.set_certificate(&leaf).map_err(cert_err(&c.chain))?;
    for extra in chain {
        b.add_extra_chain_cert(extra).map_err(cert_err(&c.chain))?;
    }
    let pem = files::read(&c.key, Access::Secret)?;
    if pem.windows(b"ENCRYPTED".len()).any(|w| w == b"ENCRYPTED") {
        return Err(refused(
            &c.key,
            "the private key is encrypted; give it unencrypted, readable by its owner only",
        ));
    }
    // No pass phrase: OpenSSL must never prompt on a terminal for one.
    let key = PKey::private_key_from_pem_callback(&pem, |_| Ok(0)).map_err(cert_err(&c.key))?;
    b.set_private_key(&key).map_err(cert_err(&c.key))?;
    b.check_private_key().map_err(cert_err(&c.key))
}

/// Trust the certificates of a CA file; a server also names them in its
/// certificate request, so a client with several certificates can pick.
fn load_ca(b: &mut SslContextBuilder, path: &Path, server: bool) -> Result<(), SecurityError> {
    for cert in read_certificates(path)? {
        if server {
            b.add_client_ca(&cert).map_err(cert_err(path))?;
        }
        b.cert_store_mut().add_cert(cert).map_err(cert_err(path))?;
    }
    Ok(())
}

/// The identity a verified certificate proves
/// ([`PeerIdentity::of_certificate`]): its subject common name, else its
/// first dNSName subject-alt-name, else its first iPAddress one, else its
/// whole subject.
fn certificate_identity(cert: &X509Ref) -> PeerIdentity {
    let name = cert.subject_name();
    let common_name = name
        .entries_by_nid(Nid::COMMONNAME)
        .next()
        .and_then(|e| e.data().to_string().ok());
    let subject = name
        .entries()
        .filter_map(|e| {
            let key = e.object().nid().short_name().ok()?;
            let value = e.data().to_string().ok()?;
            Some(format!("{key}={value}"))
        })
        .collect::<Vec<_>>()
        .join(",");
    let (mut dns, mut ips) = (Vec::new(), Vec::new());
    if let Some(sans) = cert.subject_alt_names() {
        for san in &sans {
            if let Some(d) = san.dnsname() {
                dns.push(d.to_owned());
            } else if let Some(ip) = san.ipaddress() {
                if let Ok(b) = <[u8; 4]>::try_from(ip) {
                    ips.push(IpAddr::from(b));
                } else if let Ok(b) = <[u8; 16]>::try_from(ip) {
                    ips.push(IpAddr::from(b));
                }
            }
        }
    }
    PeerIdentity::of_certificate(common_name.as_deref(), &subject, &dns, &ips)
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
    /// One of its keys (the first identity), for [`TlsServer::self_test`].
    test_psk: Option<Psk>,
    has_certificate: bool,
    client_certificates: ClientCertificates,
}

impl std::fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServer")
            .field("psks", &self.test_psk.is_some())
            .field("has_certificate", &self.has_certificate)
            .field("client_certificates", &self.client_certificates)
            .finish_non_exhaustive()
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
        b.set_session_id_context(SESSION_ID_CONTEXT)?;
        b.set_session_cache_mode(SslSessionCacheMode::OFF);
        let test_psk = cfg.psks.as_ref().and_then(|s| s.iter().next().cloned());
        if let Some(store) = cfg.psks.clone() {
            b.set_psk_server_callback(move |ssl: &mut SslRef, identity, out: &mut [u8]| {
                let Some(id) = identity.and_then(|b| std::str::from_utf8(b).ok()) else {
                    return Ok(0);
                };
                let Some(psk) = store.get(id) else {
                    // Anyone can send this: debug only. The service logs
                    // the failed handshake, summarised.
                    tracing::debug!(identity = id, "TLS client offered an unknown PSK identity");
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
        let client_certificates = match (&cfg.client_ca, cfg.require_client_certificate) {
            (None, _) => ClientCertificates::NotRequested,
            (Some(_), false) => ClientCertificates::Optional,
            (Some(_), true) => ClientCertificates::Required,
        };
        if let Some(ca) = &cfg.client_ca {
            load_ca(&mut b, ca, true)?;
            let mut mode = SslVerifyMode::PEER;
            if cfg.require_client_certificate {
                mode |= SslVerifyMode::FAIL_IF_NO_PEER_CERT;
            }
            b.set_verify(mode);
        }
        Ok(TlsServer {
            ctx: b.build(),
            psk_identity,
            test_psk,
            has_certificate: cfg.certificate.is_some(),
            client_certificates,
        })
    }

    /// Whether it has pre-shared keys (PSK handshakes).
    pub fn has_psks(&self) -> bool {
        self.test_psk.is_some()
    }

    /// Whether it has a certificate (certificate handshakes).
    pub fn has_certificate(&self) -> bool {
        self.has_certificate
    }

    /// What it does with client certificates: whether a connection can
    /// carry a [`PeerIdentity::Certificate`] at all.
    pub fn client_certificates(&self) -> ClientCertificates {
        self.client_certificates
    }

    /// Run a real handshake, in memory, for each mechanism this server is
    /// configured for, and exchange a few bytes over it: a PSK handshake
    /// with one of its keys (if it has keys), and a certificate handshake
    /// with a client that does not verify the server and shows no
    /// certificate (if it has a certificate and does not require client
    /// certificates). Meant for a configuration check and for start-up:
    /// whatever passes here can serve clients. The first failure is
    /// [`SecurityError::SelfTest`] with what each side reported.
    pub async fn self_test(&self) -> Result<(), SecurityError> {
        if let Some(psk) = &self.test_psk {
            let client = TlsClient::new(&TlsClientConfig {
                psk: Some(psk.clone()),
                ..TlsClientConfig::default()
            })?;
            let ssl = Ssl::new(&client.ctx)?;
            self.handshake_in_memory(
                Mechanism::Psk,
                ssl,
                &PeerIdentity::Psk(psk.identity.clone()),
            )
            .await?;
        }
        if self.has_certificate && self.client_certificates != ClientCertificates::Required {
            let mut b = base(SslMethod::tls_client())?;
            // The self-test checks this server's set-up, not its
            // certificate's names or issuer: PUs do that.
            b.set_verify(SslVerifyMode::NONE);
            let ssl = Ssl::new(&b.build())?;
            self.handshake_in_memory(Mechanism::Certificate, ssl, &PeerIdentity::Anonymous)
                .await?;
        }
        Ok(())
    }

    /// One handshake between this server and `client` over an in-memory
    /// pipe; the server must see `expect`. A failing side drops its end,
    /// so the other side sees the end of the stream and cannot wait.
    async fn handshake_in_memory(
        &self,
        mechanism: Mechanism,
        client: Ssl,
        expect: &PeerIdentity,
    ) -> Result<(), SecurityError> {
        const PEER: &str = "the self-test client";
        let (server_end, client_end) = tokio::io::duplex(SELF_TEST_BUFFER);
        let server = async {
            let (mut s, id) = self.accept(server_end, PEER).await?;
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf)
                .await
                .map_err(|e| handshake_err(PEER, e))?;
            s.write_all(&buf)
                .await
                .map_err(|e| handshake_err(PEER, e))?;
            Ok::<_, SecurityError>(id)
        };
        let client = async {
            let mut s = SslStream::new(client, client_end).map_err(|e| e.to_string())?;
            Pin::new(&mut s)
                .connect()
                .await
                .map_err(|e| e.to_string())?;
            s.write_all(b"ping").await.map_err(|e| e.to_string())?;
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
            if &buf != b"ping" {
                return Err("the server echoed other bytes".to_owned());
            }
            Ok::<_, String>(())
        };
        let (server, client) = tokio::join!(server, client);
        let reason = match (server, client) {
            (Ok(id), Ok(())) if &id == expect => return Ok(()),
            (Ok(id), Ok(())) => format!("the server saw {id}, not {expect}"),
            (Err(s), Err(c)) => format!("server: {s}; client: {c}"),
            (Err(s), Ok(())) => format!("server: {s}"),
            (Ok(_), Err(c)) => format!("client: {c}"),
        };
        Err(SecurityError::SelfTest { mechanism, reason })
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
            certificate_identity(&cert)
        } else {
            PeerIdentity::Anonymous
        };
        tracing::debug!(%peer, %identity, "TLS handshake done");
        Ok((s, identity))
    }
}

/// What a client brings to its handshakes (to explain a failed one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientCredentials {
    /// The identity of its pre-shared key, if it has one.
    pub psk_identity: Option<String>,
    /// Whether it trusts a CA, so can verify a registrar's certificate.
    pub ca: bool,
    /// Whether it has a certificate of its own to show.
    pub certificate: bool,
}

/// How a client handshake failed, as OpenSSL reported it.
#[derive(Debug)]
pub enum HandshakeError {
    /// OpenSSL could not set the connection up (nothing was sent).
    Setup(openssl::error::ErrorStack),
    /// The handshake failed: an OpenSSL error stack, an I/O error or the
    /// end of the stream.
    Ssl(openssl::ssl::Error),
    /// The handshake completed but the server proved nothing (neither a
    /// certificate nor a PSK).
    Unauthenticated,
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::Setup(e) => write!(f, "TLS set-up: {e}"),
            HandshakeError::Ssl(e) => e.fmt(f),
            HandshakeError::Unauthenticated => {
                f.write_str("server presented no certificate and no PSK was agreed")
            }
        }
    }
}

/// A failed client handshake with what is known about it: OpenSSL's
/// error, the result of verifying the server's certificate, the
/// certificate the server showed and what this client offered. Enough to
/// tell a user what is wrong (the `rserpool` crate does).
#[derive(Debug)]
pub struct HandshakeFailure {
    /// The name the server's certificate had to carry.
    pub server_name: String,
    /// What failed.
    pub error: HandshakeError,
    /// The verification of the server's certificate:
    /// [`X509VerifyResult::OK`] when it verified or none was checked.
    pub verify_result: X509VerifyResult,
    /// The certificate the server showed (verified or not), if any.
    pub server_certificate: Option<X509>,
    /// What this client offered.
    pub credentials: ClientCredentials,
}

impl std::fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TLS handshake with {} failed: {}",
            self.server_name, self.error
        )
    }
}

impl std::error::Error for HandshakeFailure {}

impl From<HandshakeFailure> for SecurityError {
    fn from(f: HandshakeFailure) -> SecurityError {
        match f.error {
            HandshakeError::Setup(e) => SecurityError::OpenSsl(e),
            error => handshake_err(&f.server_name, error),
        }
    }
}

/// A client's TLS set-up (PE, PU, registrar peer).
#[derive(Clone)]
pub struct TlsClient {
    ctx: SslContext,
    credentials: ClientCredentials,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("credentials", &self.credentials)
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
            load_ca(&mut b, ca, false)?;
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
            credentials: ClientCredentials {
                psk_identity: cfg.psk.as_ref().map(|p| p.identity.clone()),
                ca: cfg.ca.is_some(),
                certificate: cfg.certificate.is_some(),
            },
        })
    }

    /// What this client offers in its handshakes.
    pub fn credentials(&self) -> &ClientCredentials {
        &self.credentials
    }

    /// Run the client side of a handshake. `server_name` is what the
    /// registrar's certificate must name (a DNS name or an IP address).
    /// Returns the stream and who the server proved to be: for a
    /// certificate handshake the identity of its verified certificate
    /// (common name, else a dNSName or iPAddress subject-alt-name); for a
    /// PSK handshake [`PeerIdentity::Psk`] with the identity of the key
    /// both sides agreed on. That is the shared key's identity (the one
    /// this client offered), since a PSK proves possession of the key and
    /// nothing else: a key shared by a PE and its registrar names the
    /// pair, and the PSK identity of the registrar is the key's.
    pub async fn connect<S>(
        &self,
        stream: S,
        server_name: &str,
    ) -> Result<(SslStream<S>, PeerIdentity), SecurityError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        Ok(self.handshake(stream, server_name).await?)
    }

    /// [`TlsClient::connect`], failing with all that is known about the
    /// failure (to explain it).
    pub async fn handshake<S>(
        &self,
        stream: S,
        server_name: &str,
    ) -> Result<(SslStream<S>, PeerIdentity), HandshakeFailure>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let failure = |error, ssl: Option<&SslRef>| HandshakeFailure {
            server_name: server_name.to_owned(),
            error,
            verify_result: ssl.map_or(X509VerifyResult::OK, SslRef::verify_result),
            // The chain a client receives starts with the server's own
            // certificate; it is kept even when it did not verify.
            server_certificate: ssl
                .and_then(SslRef::peer_cert_chain)
                .and_then(|chain| chain.iter().next().map(X509Ref::to_owned)),
            credentials: self.credentials.clone(),
        };
        let setup = |e| failure(HandshakeError::Setup(e), None);
        let mut ssl = Ssl::new(&self.ctx).map_err(setup)?;
        match server_name.parse::<IpAddr>() {
            Ok(ip) => ssl.param_mut().set_ip(ip).map_err(setup)?,
            Err(_) => {
                ssl.set_hostname(server_name).map_err(setup)?;
                ssl.param_mut().set_host(server_name).map_err(setup)?;
            }
        }
        let mut s = SslStream::new(ssl, stream).map_err(setup)?;
        if let Err(e) = Pin::new(&mut s).connect().await {
            return Err(failure(HandshakeError::Ssl(e), Some(s.ssl())));
        }
        // Who the server proved to be. A certificate handshake: the
        // verified certificate's names. A PSK handshake (the server took
        // our external PSK, which TLS 1.3 reports as a resumption): the
        // identity of the key both sides agreed on. It names the shared
        // key, not a server: whoever holds that key proved it holds it.
        let ssl = s.ssl();
        let identity = match (ssl.peer_certificate(), &self.credentials.psk_identity) {
            (Some(cert), _) => certificate_identity(&cert),
            (None, Some(id)) if ssl.session_reused() => PeerIdentity::Psk(id.clone()),
            _ => {
                return Err(failure(HandshakeError::Unauthenticated, Some(s.ssl())));
            }
        };
        Ok((s, identity))
    }
}
