//! Why a registrar could not be used, said so that a user knows what to
//! do: what is wrong and which setting fixes it, with OpenSSL's (or the
//! system's) own words kept after it.
//!
//! [`classify`] is the one place that reads OpenSSL's evidence (the error
//! code, the error stack with the TLS alert the registrar sent, the
//! result of verifying its certificate, I/O error kinds) and turns it into
//! a [`FailureKind`]. Fixes are named by the `rsp` flags; in the library
//! they are the fields of [`rserpool_security::TlsClientConfig`]:
//! `--psk-file`/`--identity` is `psk`, `--ca` is `ca`, `--cert`/`--key` is
//! `certificate`; `--insecure` is a [`crate::ClientConfig`] without TLS;
//! `-r HOST:PORT` is a [`crate::RegistrarEndpoint`] (HOST its
//! `server_name`).
//!
//! What each mismatch produces was found by running it (the tests of this
//! module and `tests/tls_messages.rs`):
//!
//! * a client whose PSK the registrar does not take (it has none, or not
//!   this identity) gets the registrar's certificate instead, which a
//!   client without a CA cannot verify ("unable to get local issuer");
//! * a client without a PSK against a registrar without a certificate
//!   gets alert 40 (handshake failure), and so does a PSK client whose
//!   identity a PSK-only registrar does not know;
//! * a known identity with another key gets alert 47 (illegal parameter:
//!   the binder does not verify);
//! * a registrar refuses a client certificate after the client finished
//!   its side of the handshake (TLS 1.3): the alert (48 unknown CA, 45
//!   expired, 116 certificate required) arrives with the first read;
//! * a full registrar closes new connections at once: the client's
//!   ClientHello is unread, so the connection is reset (or ends);
//! * a plain TCP registrar answers a ClientHello with an ASAP error, which
//!   is no TLS record ("wrong version number"); a TLS registrar resets the
//!   connection of a plain client after its first message.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use openssl::ssl::ErrorCode;
use openssl::x509::{X509Ref, X509VerifyResult};
use rserpool_security::tls::{ClientCredentials, HandshakeError, HandshakeFailure};

use crate::error::RegistrarFailure;

/// OpenSSL's numbers (stable across versions): the error library of TLS,
/// reason codes of `sslerr.h`, alert numbers of RFC 8446 (OpenSSL
/// reports a received alert as reason [`ALERT_OFFSET`] + the alert) and
/// verification results of `x509_vfy.h`.
mod codes {
    use std::os::raw::c_int;

    pub const LIB_SSL: c_int = 20;
    pub const ALERT_OFFSET: c_int = 1000;

    pub const R_PACKET_LENGTH_TOO_LONG: c_int = 198;
    pub const R_UNKNOWN_PROTOCOL: c_int = 252;
    pub const R_WRONG_VERSION_NUMBER: c_int = 267;
    pub const R_UNEXPECTED_EOF_WHILE_READING: c_int = 294;
    pub const R_BAD_RECORD_TYPE: c_int = 443;

    pub const AD_HANDSHAKE_FAILURE: c_int = 40;
    pub const AD_BAD_CERTIFICATE: c_int = 42;
    pub const AD_UNSUPPORTED_CERTIFICATE: c_int = 43;
    pub const AD_CERTIFICATE_REVOKED: c_int = 44;
    pub const AD_CERTIFICATE_EXPIRED: c_int = 45;
    pub const AD_CERTIFICATE_UNKNOWN: c_int = 46;
    pub const AD_ILLEGAL_PARAMETER: c_int = 47;
    pub const AD_UNKNOWN_CA: c_int = 48;
    pub const AD_ACCESS_DENIED: c_int = 49;
    pub const AD_DECRYPT_ERROR: c_int = 51;
    pub const AD_UNKNOWN_PSK_IDENTITY: c_int = 115;
    pub const AD_CERTIFICATE_REQUIRED: c_int = 116;

    pub const V_UNABLE_TO_GET_ISSUER_CERT: c_int = 2;
    pub const V_CERT_NOT_YET_VALID: c_int = 9;
    pub const V_CERT_HAS_EXPIRED: c_int = 10;
    pub const V_DEPTH_ZERO_SELF_SIGNED_CERT: c_int = 18;
    pub const V_SELF_SIGNED_CERT_IN_CHAIN: c_int = 19;
    pub const V_UNABLE_TO_GET_ISSUER_CERT_LOCALLY: c_int = 20;
    pub const V_UNABLE_TO_VERIFY_LEAF_SIGNATURE: c_int = 21;
    pub const V_CERT_UNTRUSTED: c_int = 27;
    pub const V_HOSTNAME_MISMATCH: c_int = 62;
    pub const V_IP_ADDRESS_MISMATCH: c_int = 64;
}

/// Why a client's certificate was refused (the alert the registrar sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateProblem {
    /// It is not signed by a CA the registrar trusts for clients.
    UnknownCa,
    /// It has expired (or is not valid yet).
    Expired,
    /// It has been revoked.
    Revoked,
    /// Anything else (a bad or unsupported certificate, access denied).
    Refused,
}

/// What went wrong with a registrar, as far as the client can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// Nothing listens at the address (TCP connection refused).
    NothingListening,
    /// The TCP connection failed otherwise (no route, ...).
    TcpFailed,
    /// No TCP connection within the connect timeout.
    ConnectTimeout {
        /// The timeout.
        after: Duration,
    },
    /// TCP connected, but no TLS handshake within the connect timeout.
    HandshakeTimeout {
        /// The timeout.
        after: Duration,
    },
    /// The registrar closed or reset the connection before the TLS
    /// handshake finished: a full registrar (at its connection limit, or
    /// evicting handshakes), or one that does not speak TLS.
    ClosedDuringHandshake,
    /// The registrar answered with something that is not TLS: an insecure
    /// (plain TCP) registrar.
    NotTls,
    /// The client offered only a PSK; the registrar did not take it (it
    /// has no PSKs, or not this identity) and showed its certificate,
    /// which the client cannot verify without a CA.
    CertificateInsteadOfPsk {
        /// The client's PSK identity.
        identity: String,
    },
    /// The client has no PSK, and the registrar accepts PSKs only (it has
    /// no certificate).
    PskRequired,
    /// The registrar does not know the client's PSK identity (and has no
    /// certificate to offer instead).
    UnknownPskIdentity {
        /// The client's PSK identity.
        identity: String,
    },
    /// The registrar knows the client's PSK identity with another key.
    WrongPsk {
        /// The client's PSK identity.
        identity: String,
    },
    /// The registrar's certificate is not signed by the client's CA.
    UntrustedCertificate {
        /// Its subject (common name).
        subject: String,
        /// Its issuer (common name).
        issuer: String,
        /// The client's PSK identity, if it offered one (the registrar
        /// did not take it either).
        identity: Option<String>,
    },
    /// The registrar's certificate has expired or is not valid yet.
    CertificateOutOfDate {
        /// Its subject (common name).
        subject: String,
        /// Its validity period, as OpenSSL prints it.
        valid: String,
        /// Expired (else: not valid yet).
        expired: bool,
    },
    /// The registrar's certificate does not name the host the client
    /// connected to.
    NameMismatch {
        /// The name the client asked for (HOST of `-r HOST:PORT`).
        requested: String,
        /// The names the certificate carries.
        names: Vec<String>,
        /// The registrar's port.
        port: u16,
    },
    /// The registrar's certificate does not verify for another reason.
    CertificateRejected {
        /// OpenSSL's verification result.
        reason: String,
    },
    /// The registrar refused the client's certificate.
    ClientCertificateRefused {
        /// Why.
        problem: CertificateProblem,
    },
    /// The registrar requires a client certificate; the client has none.
    ClientCertificateRequired,
    /// The registrar completed a handshake but proved nothing.
    Unauthenticated,
    /// A plain TCP (`--insecure`) client got TLS from the registrar.
    RegistrarSpeaksTls,
    /// The registrar closed the connection before its first answer.
    ClosedBeforeAnswer {
        /// Whether the connection was TLS (else plain TCP).
        tls: bool,
    },
    /// A TLS failure not recognised here (the detail says what).
    Tls,
}

impl FailureKind {
    /// What is wrong, without the fix.
    pub fn problem(&self) -> String {
        self.describe().0
    }

    /// What to do about it (which setting or flag to change).
    pub fn hint(&self) -> String {
        self.describe().1
    }

    /// Whether the registrar may work again, or another one instead: a
    /// registrar that is down, full or slow (not a configuration error).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            FailureKind::NothingListening
                | FailureKind::TcpFailed
                | FailureKind::ConnectTimeout { .. }
                | FailureKind::HandshakeTimeout { .. }
                | FailureKind::ClosedDuringHandshake
        )
    }

    fn describe(&self) -> (String, String) {
        use FailureKind::*;
        let psk_hint = "give a key the registrar knows (--psk-file FILE, with --identity NAME \
                        if the file holds several)";
        match self {
            NothingListening => (
                "TCP connect failed: nothing listens at this address".into(),
                "check the address (-r HOST:PORT) and that the registrar is running".into(),
            ),
            TcpFailed => (
                "TCP connect failed".into(),
                "check the address (-r HOST:PORT) and the network".into(),
            ),
            ConnectTimeout { after } => (
                format!("no TCP connection within {after:?}"),
                "the host may be down or a firewall may drop the packets; check -r HOST:PORT"
                    .into(),
            ),
            HandshakeTimeout { after } => (
                format!("no TLS handshake within {after:?}"),
                "the registrar may be overloaded, or not speak TLS (an insecure registrar: \
                 --insecure)"
                    .into(),
            ),
            ClosedDuringHandshake => (
                "the registrar closed the connection before the TLS handshake finished".into(),
                "it may be at its connection limit (or not speak TLS)".into(),
            ),
            NotTls => (
                "the registrar does not speak TLS (it answered in plain TCP)".into(),
                "it is an insecure (lab) registrar: reach it with --insecure, or configure TLS \
                 on it"
                    .into(),
            ),
            CertificateInsteadOfPsk { identity } => (
                format!(
                    "the registrar did not accept pre-shared key identity {identity:?} and \
                     showed a certificate instead, which this client cannot verify without a CA"
                ),
                "if the registrar uses certificates, give the CA that signed its certificate \
                 (--ca FILE); if it should know this key, check --psk-file and --identity \
                 against its key file"
                    .into(),
            ),
            PskRequired => (
                "the registrar accepts pre-shared keys only (it has no certificate)".into(),
                psk_hint.into(),
            ),
            UnknownPskIdentity { identity } => (
                format!(
                    "the registrar does not know pre-shared key identity {identity:?} (and has \
                     no certificate to offer instead)"
                ),
                format!(
                    "check --identity and that the registrar's key file has {identity:?}, or \
                     {psk_hint}"
                ),
            ),
            WrongPsk { identity } => (
                format!("the registrar has another key for pre-shared key identity {identity:?}"),
                "the key in --psk-file differs from the registrar's: install the same key on \
                 both sides"
                    .into(),
            ),
            UntrustedCertificate {
                subject,
                issuer,
                identity,
            } => {
                let psk = identity.as_ref().map_or_else(String::new, |i| {
                    format!(" (it did not accept pre-shared key identity {i:?} either)")
                });
                (
                    format!(
                        "the registrar's certificate ({subject:?}, issued by {issuer:?}) is not \
                         signed by the CA of --ca{psk}"
                    ),
                    "give the CA that signed it (--ca FILE), or check that this is the \
                     registrar you meant"
                        .into(),
                )
            }
            CertificateOutOfDate {
                subject,
                valid,
                expired,
            } => (
                format!(
                    "the registrar's certificate ({subject:?}, valid {valid}) {}",
                    if *expired {
                        "has expired"
                    } else {
                        "is not valid yet"
                    }
                ),
                if *expired {
                    "the registrar needs a new certificate (rsp ca issue)".into()
                } else {
                    "check the clocks of this host and of the CA's".into()
                },
            ),
            NameMismatch {
                requested,
                names,
                port,
            } => {
                let hint = match names.first() {
                    Some(name) => format!(
                        "connect with a name it carries (-r {}); -r HOST must be a name or \
                         address in the registrar's certificate",
                        host_port(name, *port)
                    ),
                    None => "the registrar needs a certificate that names its host".into(),
                };
                (
                    format!(
                        "the registrar's certificate is for {}, not for {requested:?}",
                        if names.is_empty() {
                            "no name".to_owned()
                        } else {
                            names.join(", ")
                        }
                    ),
                    hint,
                )
            }
            CertificateRejected { reason } => (
                format!("the registrar's certificate does not verify: {reason}"),
                "check the registrar's certificate and the CA of --ca".into(),
            ),
            ClientCertificateRefused { problem } => {
                let (why, fix) = match problem {
                    CertificateProblem::UnknownCa => (
                        "it is not signed by a CA the registrar trusts for clients",
                        "use a certificate issued by the registrar's client CA (--cert FILE \
                         --key FILE), or a pre-shared key (--psk-file)",
                    ),
                    CertificateProblem::Expired => (
                        "it has expired (or is not valid yet)",
                        "renew it (--cert FILE --key FILE)",
                    ),
                    CertificateProblem::Revoked => (
                        "it has been revoked",
                        "get a new one (--cert FILE --key FILE)",
                    ),
                    CertificateProblem::Refused => (
                        "the registrar does not accept it",
                        "check --cert and --key, or use a pre-shared key (--psk-file)",
                    ),
                };
                (
                    format!("the registrar refused this client's certificate: {why}"),
                    fix.into(),
                )
            }
            ClientCertificateRequired => (
                "the registrar requires a client certificate".into(),
                "give one signed by the CA the registrar trusts (--cert FILE --key FILE), or a \
                 pre-shared key (--psk-file)"
                    .into(),
            ),
            Unauthenticated => (
                "the registrar proved nothing (no certificate, no pre-shared key)".into(),
                "give a pre-shared key (--psk-file) or a CA (--ca)".into(),
            ),
            RegistrarSpeaksTls => (
                "the registrar answered with TLS: it is a secure registrar".into(),
                "give --psk-file or --ca instead of --insecure".into(),
            ),
            ClosedBeforeAnswer { tls: false } => (
                "the registrar closed the connection before answering".into(),
                "it may be a secure (TLS) registrar: then give --psk-file or --ca instead of \
                 --insecure; or it is at its connection limit"
                    .into(),
            ),
            ClosedBeforeAnswer { tls: true } => (
                "the registrar closed the connection after the TLS handshake, before answering"
                    .into(),
                "its log says why".into(),
            ),
            Tls => ("the TLS handshake failed".into(), String::new()),
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (problem, hint) = self.describe();
        if hint.is_empty() {
            f.write_str(&problem)
        } else {
            write!(f, "{problem}: {hint}")
        }
    }
}

/// `HOST:PORT`, with an IPv6 address in brackets.
fn host_port(host: &str, port: u16) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => format!("[{host}]:{port}"),
        _ => format!("{host}:{port}"),
    }
}

/// A classified failure and the lower layer's own words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    /// What went wrong.
    pub kind: FailureKind,
    /// What OpenSSL (`OpenSSL: ...`) or the system said.
    pub detail: Option<String>,
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.kind.fmt(f)?;
        if let Some(d) = &self.detail {
            write!(f, " ({d})")?;
        }
        Ok(())
    }
}

/// What a client saw when a registrar failed, for [`classify`].
#[derive(Debug, Clone, Copy)]
pub enum Symptom<'a> {
    /// The TCP connection failed.
    Tcp(&'a io::Error),
    /// The connection was not made (TCP, then TLS) within `after`.
    Timeout {
        /// The connect timeout.
        after: Duration,
        /// Whether TCP had connected (so the TLS handshake was slow).
        tcp_connected: bool,
    },
    /// The TLS handshake failed.
    Handshake {
        /// The failure.
        failure: &'a HandshakeFailure,
        /// The registrar.
        registrar: SocketAddr,
    },
    /// The connection ended (`error` `None`: closed) before the
    /// registrar's first message.
    EndedBeforeAnswer {
        /// The read error, if it was one.
        error: Option<&'a io::Error>,
        /// The client's TLS credentials (`None`: plain TCP).
        tls: Option<&'a ClientCredentials>,
        /// The bytes received and not yet framed.
        received: &'a [u8],
    },
}

/// Classify a failure: the one place that reads OpenSSL's evidence.
pub fn classify(symptom: Symptom<'_>) -> Diagnosis {
    match symptom {
        Symptom::Tcp(e) => Diagnosis {
            kind: if e.kind() == io::ErrorKind::ConnectionRefused {
                FailureKind::NothingListening
            } else {
                FailureKind::TcpFailed
            },
            detail: Some(e.to_string()),
        },
        Symptom::Timeout {
            after,
            tcp_connected,
        } => Diagnosis {
            kind: if tcp_connected {
                FailureKind::HandshakeTimeout { after }
            } else {
                FailureKind::ConnectTimeout { after }
            },
            detail: None,
        },
        Symptom::Handshake { failure, registrar } => handshake(failure, registrar.port()),
        Symptom::EndedBeforeAnswer {
            error,
            tls,
            received,
        } => ended_before_answer(error, tls, received),
    }
}

fn handshake(f: &HandshakeFailure, port: u16) -> Diagnosis {
    let credentials = &f.credentials;
    let e = match &f.error {
        HandshakeError::Setup(stack) => {
            return Diagnosis {
                kind: FailureKind::Tls,
                detail: Some(format!("OpenSSL set-up: {stack}")),
            }
        }
        HandshakeError::Unauthenticated => {
            return Diagnosis {
                kind: FailureKind::Unauthenticated,
                detail: None,
            }
        }
        HandshakeError::Ssl(e) => e,
    };
    let detail = Some(openssl_detail(e, f.verify_result));
    let kind = if f.verify_result != X509VerifyResult::OK {
        certificate_failure(f, port)
    } else if let Some(alert) = received_alert(e) {
        alert_failure(alert, credentials).unwrap_or(FailureKind::Tls)
    } else if ended(e) {
        FailureKind::ClosedDuringHandshake
    } else if ssl_reasons(e).any(|r| {
        matches!(
            r,
            codes::R_WRONG_VERSION_NUMBER
                | codes::R_PACKET_LENGTH_TOO_LONG
                | codes::R_UNKNOWN_PROTOCOL
                | codes::R_BAD_RECORD_TYPE
        )
    }) {
        FailureKind::NotTls
    } else {
        FailureKind::Tls
    };
    Diagnosis { kind, detail }
}

/// The registrar's certificate did not verify.
fn certificate_failure(f: &HandshakeFailure, port: u16) -> FailureKind {
    let cert = f.server_certificate.as_deref();
    let subject = || cert.map_or_else(|| "?".to_owned(), |c| common_name(c, false));
    match f.verify_result.as_raw() {
        codes::V_HOSTNAME_MISMATCH | codes::V_IP_ADDRESS_MISMATCH => FailureKind::NameMismatch {
            requested: f.server_name.clone(),
            names: cert.map(names).unwrap_or_default(),
            port,
        },
        v @ (codes::V_CERT_HAS_EXPIRED | codes::V_CERT_NOT_YET_VALID) => {
            FailureKind::CertificateOutOfDate {
                subject: subject(),
                valid: cert.map_or_else(String::new, |c| {
                    format!("from {} until {}", c.not_before(), c.not_after())
                }),
                expired: v == codes::V_CERT_HAS_EXPIRED,
            }
        }
        codes::V_UNABLE_TO_GET_ISSUER_CERT
        | codes::V_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
        | codes::V_DEPTH_ZERO_SELF_SIGNED_CERT
        | codes::V_SELF_SIGNED_CERT_IN_CHAIN
        | codes::V_UNABLE_TO_VERIFY_LEAF_SIGNATURE
        | codes::V_CERT_UNTRUSTED => match (&f.credentials.psk_identity, f.credentials.ca) {
            // Without a CA nothing verifies: the PSK was the point.
            (Some(identity), false) => FailureKind::CertificateInsteadOfPsk {
                identity: identity.clone(),
            },
            (identity, _) => FailureKind::UntrustedCertificate {
                subject: subject(),
                issuer: cert.map_or_else(|| "?".to_owned(), |c| common_name(c, true)),
                identity: identity.clone(),
            },
        },
        _ => FailureKind::CertificateRejected {
            reason: f.verify_result.error_string().to_owned(),
        },
    }
}

/// What a TLS alert from the registrar means for this client.
fn alert_failure(alert: i32, c: &ClientCredentials) -> Option<FailureKind> {
    let identity = c.psk_identity.clone();
    Some(match (alert, identity) {
        (codes::AD_HANDSHAKE_FAILURE | codes::AD_UNKNOWN_PSK_IDENTITY, Some(identity)) => {
            FailureKind::UnknownPskIdentity { identity }
        }
        (codes::AD_HANDSHAKE_FAILURE, None) => FailureKind::PskRequired,
        (codes::AD_ILLEGAL_PARAMETER | codes::AD_DECRYPT_ERROR, Some(identity)) => {
            FailureKind::WrongPsk { identity }
        }
        (codes::AD_CERTIFICATE_REQUIRED, _) if !c.certificate => {
            FailureKind::ClientCertificateRequired
        }
        (a, _) if c.certificate => FailureKind::ClientCertificateRefused {
            problem: match a {
                codes::AD_UNKNOWN_CA => CertificateProblem::UnknownCa,
                codes::AD_CERTIFICATE_EXPIRED => CertificateProblem::Expired,
                codes::AD_CERTIFICATE_REVOKED => CertificateProblem::Revoked,
                codes::AD_BAD_CERTIFICATE
                | codes::AD_UNSUPPORTED_CERTIFICATE
                | codes::AD_CERTIFICATE_UNKNOWN
                | codes::AD_ACCESS_DENIED
                | codes::AD_CERTIFICATE_REQUIRED => CertificateProblem::Refused,
                _ => return None,
            },
        },
        _ => return None,
    })
}

fn ended_before_answer(
    error: Option<&io::Error>,
    tls: Option<&ClientCredentials>,
    received: &[u8],
) -> Diagnosis {
    let detail = error.map(ToString::to_string);
    let Some(credentials) = tls else {
        let kind = if looks_like_tls(received) {
            FailureKind::RegistrarSpeaksTls
        } else {
            FailureKind::ClosedBeforeAnswer { tls: false }
        };
        return Diagnosis { kind, detail };
    };
    // After the handshake (TLS 1.3): the registrar's verdict on this
    // client's certificate arrives with the first read.
    let ssl = error
        .and_then(|e| e.get_ref())
        .and_then(|e| e.downcast_ref::<openssl::ssl::Error>());
    if let Some(e) = ssl {
        if let Some(kind) = received_alert(e).and_then(|a| alert_failure(a, credentials)) {
            return Diagnosis {
                kind,
                detail: Some(openssl_detail(e, X509VerifyResult::OK)),
            };
        }
    }
    Diagnosis {
        kind: FailureKind::ClosedBeforeAnswer { tls: true },
        detail,
    }
}

/// Whether bytes start like a TLS record (alert or handshake, TLS 1.0 to
/// 1.3 record versions): what a TLS server sends a plain client.
fn looks_like_tls(b: &[u8]) -> bool {
    matches!(b, [0x15 | 0x16, 0x03, 0x01..=0x04, ..])
}

/// The alert the registrar sent, if OpenSSL reports one.
fn received_alert(e: &openssl::ssl::Error) -> Option<i32> {
    e.ssl_error()?.errors().iter().find_map(|x| {
        let r = x.reason_code();
        (x.library_code() == codes::LIB_SSL
            && (codes::ALERT_OFFSET..codes::ALERT_OFFSET + 256).contains(&r))
        .then_some(r - codes::ALERT_OFFSET)
    })
}

/// The reason codes of the TLS library's errors.
fn ssl_reasons(e: &openssl::ssl::Error) -> impl Iterator<Item = i32> + '_ {
    e.ssl_error()
        .into_iter()
        .flat_map(|s| s.errors())
        .filter(|x| x.library_code() == codes::LIB_SSL)
        .map(openssl::error::Error::reason_code)
}

/// Whether the handshake ended because the connection did: closed,
/// reset, or an unexpected end of the stream.
fn ended(e: &openssl::ssl::Error) -> bool {
    if let Some(io) = e.io_error() {
        return matches!(
            io.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof
        );
    }
    match e.code() {
        ErrorCode::ZERO_RETURN => true,
        // A system call failure without an error: the end of the stream.
        ErrorCode::SYSCALL => e.ssl_error().is_none(),
        _ => ssl_reasons(e).any(|r| r == codes::R_UNEXPECTED_EOF_WHILE_READING),
    }
}

/// OpenSSL's words, shorter than its error strings: the reasons of its
/// error stack and the verification result (or the I/O error).
fn openssl_detail(e: &openssl::ssl::Error, verify: X509VerifyResult) -> String {
    let reasons: Vec<String> = match (e.ssl_error(), e.io_error()) {
        (Some(stack), _) => stack
            .errors()
            .iter()
            .map(|x| {
                x.reason()
                    .map_or_else(|| format!("error {:#x}", x.code()), str::to_owned)
            })
            .collect(),
        (None, Some(io)) => return io.to_string(),
        (None, None) => vec![e.to_string()],
    };
    let mut s = format!("OpenSSL: {}", reasons.join(", "));
    if verify != X509VerifyResult::OK {
        s.push_str(": ");
        s.push_str(verify.error_string());
    }
    s
}

/// The common name of a certificate's subject (or issuer), or its whole
/// name.
fn common_name(cert: &X509Ref, issuer: bool) -> String {
    let name = if issuer {
        cert.issuer_name()
    } else {
        cert.subject_name()
    };
    let cn = name
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .next()
        .and_then(|e| e.data().to_string().ok());
    cn.unwrap_or_else(|| format!("{name:?}"))
}

/// The names a certificate is valid for: its DNS names and IP addresses,
/// or its common name when it has none.
fn names(cert: &X509Ref) -> Vec<String> {
    let mut names: Vec<String> = cert
        .subject_alt_names()
        .map(|sans| {
            sans.iter()
                .filter_map(|n| {
                    if let Some(d) = n.dnsname() {
                        return Some(printable(d));
                    }
                    let ip = n.ipaddress()?;
                    let ip = match ip.len() {
                        4 => IpAddr::from(<[u8; 4]>::try_from(ip).ok()?),
                        16 => IpAddr::from(<[u8; 16]>::try_from(ip).ok()?),
                        _ => return None,
                    };
                    Some(ip.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        names.push(printable(&common_name(cert, false)));
    }
    // A certificate may carry thousands of names; a message shows a few.
    if names.len() > MAX_NAMES_SHOWN {
        let more = names.len() - MAX_NAMES_SHOWN;
        names.truncate(MAX_NAMES_SHOWN);
        names.push(format!("{more} more"));
    }
    names
}

/// Most certificate names a message lists.
const MAX_NAMES_SHOWN: usize = 8;

/// Text from an unverified certificate, safe to print on a terminal:
/// control characters (escape sequences) are shown escaped, and it is cut
/// at 256 characters.
fn printable(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().take(256) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The failures of [`crate::ClientError::NoRegistrar`]: each registrar's
/// (the same failure once), and, when only one registrar was tried and it
/// was unavailable, the advice to give another.
pub(crate) fn failure_list(failures: &[RegistrarFailure]) -> String {
    let mut shown: Vec<&RegistrarFailure> = Vec::new();
    for f in failures {
        if !shown
            .iter()
            .any(|s| s.registrar == f.registrar && s.reason == f.reason)
        {
            shown.push(f);
        }
    }
    let mut text = shown
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    let one_registrar = failures
        .iter()
        .all(|f| failures.first().is_some_and(|g| g.registrar == f.registrar));
    let unavailable = failures
        .iter()
        .any(|f| f.kind.as_ref().is_some_and(FailureKind::is_unavailable));
    if one_registrar && unavailable {
        text.push_str(
            "; only this registrar was given: add another one (-r HOST:PORT, repeatable)",
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials(psk: bool, ca: bool, certificate: bool) -> ClientCredentials {
        ClientCredentials {
            psk_identity: psk.then(|| "pe-1".to_owned()),
            ca,
            certificate,
        }
    }

    #[test]
    fn certificate_text_is_printable() {
        assert_eq!(printable("reg\u{1b}[2J.example"), "reg\\u{1b}[2J.example");
        assert_eq!(printable(&"a".repeat(300)).len(), 256);
    }

    #[test]
    fn alerts_mean_what_the_client_offered_makes_of_them() {
        use codes::*;
        let cases = [
            (
                AD_HANDSHAKE_FAILURE,
                credentials(true, false, false),
                Some(FailureKind::UnknownPskIdentity {
                    identity: "pe-1".into(),
                }),
            ),
            (
                AD_HANDSHAKE_FAILURE,
                credentials(false, true, true),
                Some(FailureKind::PskRequired),
            ),
            (
                AD_HANDSHAKE_FAILURE,
                credentials(false, true, false),
                Some(FailureKind::PskRequired),
            ),
            (
                AD_ILLEGAL_PARAMETER,
                credentials(true, false, false),
                Some(FailureKind::WrongPsk {
                    identity: "pe-1".into(),
                }),
            ),
            (
                AD_UNKNOWN_CA,
                credentials(false, true, true),
                Some(FailureKind::ClientCertificateRefused {
                    problem: CertificateProblem::UnknownCa,
                }),
            ),
            (
                AD_CERTIFICATE_EXPIRED,
                credentials(false, true, true),
                Some(FailureKind::ClientCertificateRefused {
                    problem: CertificateProblem::Expired,
                }),
            ),
            (
                AD_CERTIFICATE_REQUIRED,
                credentials(false, true, false),
                Some(FailureKind::ClientCertificateRequired),
            ),
            // A client without a certificate cannot have had it refused.
            (AD_UNKNOWN_CA, credentials(false, true, false), None),
            (AD_ILLEGAL_PARAMETER, credentials(false, true, false), None),
        ];
        for (alert, c, expected) in cases {
            assert_eq!(alert_failure(alert, &c), expected, "alert {alert}, {c:?}");
        }
    }

    #[test]
    fn tls_records_are_told_from_asap_messages() {
        // An alert record (TLS 1.2 record version, as TLS 1.3 sends).
        assert!(looks_like_tls(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46]));
        // A ServerHello record.
        assert!(looks_like_tls(&[0x16, 0x03, 0x03, 0x00, 0x7a]));
        // ASAP messages (type, flags, length) are not.
        assert!(!looks_like_tls(&[0x02, 0x00, 0x00, 0x08]));
        assert!(!looks_like_tls(&[0x15, 0x00, 0x00, 0x08]));
        assert!(!looks_like_tls(&[0x15, 0x03]));
    }

    #[test]
    fn a_plain_client_closed_before_an_answer_hears_both_explanations() {
        let d = classify(Symptom::EndedBeforeAnswer {
            error: None,
            tls: None,
            received: &[],
        });
        assert_eq!(d.kind, FailureKind::ClosedBeforeAnswer { tls: false });
        let text = d.to_string();
        assert!(
            text.contains("--insecure") && text.contains("--psk-file"),
            "{text}"
        );
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        let d = classify(Symptom::EndedBeforeAnswer {
            error: Some(&reset),
            tls: None,
            received: &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46],
        });
        assert_eq!(d.kind, FailureKind::RegistrarSpeaksTls);
        assert!(d.to_string().contains("instead of --insecure"), "{d}");
    }

    #[test]
    fn tcp_failures_and_timeouts() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        let d = classify(Symptom::Tcp(&refused));
        assert_eq!(d.kind, FailureKind::NothingListening);
        assert!(d.to_string().starts_with("TCP connect failed"), "{d}");
        assert!(d.to_string().contains("-r HOST:PORT"), "{d}");
        let after = Duration::from_secs(2);
        for (tcp_connected, kind) in [
            (false, FailureKind::ConnectTimeout { after }),
            (true, FailureKind::HandshakeTimeout { after }),
        ] {
            let d = classify(Symptom::Timeout {
                after,
                tcp_connected,
            });
            assert_eq!(d.kind, kind);
            assert!(d.kind.is_unavailable());
        }
    }

    #[test]
    fn every_kind_has_a_problem_and_most_a_hint_naming_a_flag() {
        let kinds = [
            FailureKind::NothingListening,
            FailureKind::ClosedDuringHandshake,
            FailureKind::NotTls,
            FailureKind::CertificateInsteadOfPsk {
                identity: "pe-1".into(),
            },
            FailureKind::PskRequired,
            FailureKind::UnknownPskIdentity {
                identity: "pe-1".into(),
            },
            FailureKind::WrongPsk {
                identity: "pe-1".into(),
            },
            FailureKind::UntrustedCertificate {
                subject: "r".into(),
                issuer: "ca".into(),
                identity: None,
            },
            FailureKind::NameMismatch {
                requested: "localhost".into(),
                names: vec!["::1".into()],
                port: 3864,
            },
            FailureKind::ClientCertificateRefused {
                problem: CertificateProblem::UnknownCa,
            },
            FailureKind::ClientCertificateRequired,
            FailureKind::RegistrarSpeaksTls,
            FailureKind::ClosedBeforeAnswer { tls: false },
        ];
        for k in kinds {
            assert!(!k.problem().is_empty());
            let hint = k.hint();
            let flag = [
                "--psk-file",
                "--ca",
                "--cert",
                "--insecure",
                "-r ",
                "connection limit",
            ];
            assert!(flag.iter().any(|f| hint.contains(f)), "{k:?}: {hint}");
            assert_eq!(k.to_string(), format!("{}: {hint}", k.problem()));
        }
        let mismatch = FailureKind::NameMismatch {
            requested: "localhost".into(),
            names: vec!["::1".into()],
            port: 3864,
        };
        assert!(mismatch.hint().contains("-r [::1]:3864"), "{mismatch}");
    }

    #[test]
    fn the_list_of_failures_shows_each_once_and_suggests_another_registrar() {
        let addr: SocketAddr = "127.0.0.1:3864".parse().expect("address");
        let full = Diagnosis {
            kind: FailureKind::ClosedDuringHandshake,
            detail: Some("Connection reset by peer (os error 104)".into()),
        };
        let failure = RegistrarFailure {
            registrar: addr,
            reason: full.to_string(),
            kind: Some(full.kind.clone()),
        };
        let text = failure_list(&[failure.clone(), failure.clone()]);
        assert_eq!(text.matches("closed the connection").count(), 1, "{text}");
        assert!(
            text.ends_with("add another one (-r HOST:PORT, repeatable)"),
            "{text}"
        );
        // Another registrar was given: no such advice.
        let other = RegistrarFailure {
            registrar: "127.0.0.2:3864".parse().expect("address"),
            ..failure.clone()
        };
        assert!(!failure_list(&[failure.clone(), other]).contains("add another"));
        // A configuration error: another registrar would not help.
        let config = RegistrarFailure {
            kind: Some(FailureKind::PskRequired),
            reason: FailureKind::PskRequired.to_string(),
            ..failure
        };
        assert!(!failure_list(&[config]).contains("add another"));
    }
}
