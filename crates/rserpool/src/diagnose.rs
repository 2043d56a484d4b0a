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
use std::net::IpAddr;
use std::time::Duration;

use crate::error::RegistrarFailure;

#[cfg(feature = "driver")]
mod classify;
#[cfg(feature = "driver")]
pub use classify::{classify, Symptom};

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
