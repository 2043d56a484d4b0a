//! [`classify`]: OpenSSL's evidence (and the system's) turned into a
//! [`FailureKind`] with the words to fix it (the tokio driver's side).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use openssl::ssl::ErrorCode;
use openssl::x509::{X509Ref, X509VerifyResult};
use rserpool_security::tls::{ClientCredentials, HandshakeError, HandshakeFailure};

use super::{CertificateProblem, Diagnosis, FailureKind};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::failure_list;
    use crate::RegistrarFailure;

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
