//! A small certificate authority: enough to give a lab, a demo or a test
//! a CA, a registrar certificate and client certificates (P-256 keys,
//! SHA-256 signatures). Production deployments bring their own PKI and
//! point the TLS configuration at its PEM files.
//!
//! A CA is made with [`CertificateAuthority::generate`], saved with
//! [`Issued::save`] and read back with [`CertificateAuthority::load`];
//! [`CertificateAuthority::issue_as`] issues a certificate for a [`Role`]
//! (which fixes its extended key usage) and checks it against the CA
//! before handing it out.

use std::net::IpAddr;
use std::path::Path;

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::stack::Stack;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{
    X509Builder, X509Name, X509NameBuilder, X509PurposeId, X509StoreContext, X509,
};

use crate::files::{self, Existing};
use crate::tls::CertificateFiles;
use crate::SecurityError;

/// Longest validity accepted (100 years).
pub const MAX_DAYS: u32 = 36_500;

/// What a certificate is for; fixes its extended key usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A registrar: TLS server for PEs and PUs, and TLS client towards
    /// peer registrars (ENRP), so serverAuth and clientAuth.
    Registrar,
    /// A pool element: TLS client of registrars (clientAuth).
    PoolElement,
    /// A pool user: TLS client of registrars (clientAuth).
    PoolUser,
}

impl Role {
    /// The short name used on command lines and in output.
    pub fn name(self) -> &'static str {
        match self {
            Role::Registrar => "registrar",
            Role::PoolElement => "pe",
            Role::PoolUser => "pu",
        }
    }

    fn is_server(self) -> bool {
        self == Role::Registrar
    }
}

/// A certificate and its private key.
pub struct Issued {
    /// The certificate.
    pub certificate: X509,
    /// Its private key.
    pub key: PKey<Private>,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("subject", &self.certificate.subject_name())
            .finish_non_exhaustive()
    }
}

impl Issued {
    /// Write the certificate and the key as PEM files (the key readable by
    /// its owner only), replacing existing files.
    pub fn write_pem(&self, cert: &Path, key: &Path) -> Result<(), SecurityError> {
        self.save(cert, key, Existing::Replace)
    }

    /// Write the certificate (mode 0644) and the key (mode 0600 from its
    /// creation on) as PEM files. With [`Existing::Refuse`] nothing is
    /// written if either file exists.
    pub fn save(&self, cert: &Path, key: &Path, existing: Existing) -> Result<(), SecurityError> {
        if existing == Existing::Refuse {
            for path in [cert, key] {
                if path.exists() {
                    return Err(SecurityError::FileExists {
                        path: path.to_owned(),
                    });
                }
            }
        }
        let pem = self.key.private_key_to_pem_pkcs8()?;
        files::write(key, &pem, 0o600, existing)?;
        files::write(cert, &self.certificate.to_pem()?, 0o644, existing)
    }

    /// Write `NAME.pem` and `NAME.key` into `dir` and name them as the
    /// certificate files of a TLS set-up.
    pub fn write_files(&self, dir: &Path, name: &str) -> Result<CertificateFiles, SecurityError> {
        let files = CertificateFiles {
            chain: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        };
        self.write_pem(&files.chain, &files.key)?;
        Ok(files)
    }

    /// The end of the validity period, as OpenSSL prints it.
    pub fn not_after(&self) -> String {
        self.certificate.not_after().to_string()
    }

    /// The SHA-256 fingerprint of the certificate (hex pairs with colons).
    pub fn fingerprint(&self) -> Result<String, SecurityError> {
        let digest = self.certificate.digest(MessageDigest::sha256())?;
        Ok(digest
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":"))
    }
}

fn new_key() -> Result<PKey<Private>, SecurityError> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    Ok(PKey::from_ec_key(EcKey::generate(&group)?)?)
}

fn name(common_name: &str) -> Result<X509Name, SecurityError> {
    if common_name.is_empty() || common_name.len() > 64 {
        return Err(SecurityError::Invalid(format!(
            "a certificate's common name needs 1 to 64 characters, {common_name:?} has {}",
            common_name.len()
        )));
    }
    let mut n = X509NameBuilder::new()?;
    n.append_entry_by_nid(Nid::COMMONNAME, common_name)?;
    Ok(n.build())
}

fn builder(
    subject: &X509Name,
    key: &PKey<Private>,
    days: u32,
) -> Result<X509Builder, SecurityError> {
    if days == 0 || days > MAX_DAYS {
        return Err(SecurityError::Invalid(format!(
            "a certificate is valid for 1 to {MAX_DAYS} days, not {days}"
        )));
    }
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    let serial = serial.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(subject)?;
    b.set_pubkey(key)?;
    let (from, until) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(days)?);
    b.set_not_before(&from)?;
    b.set_not_after(&until)?;
    Ok(b)
}

fn refused(path: &Path, reason: impl std::fmt::Display) -> SecurityError {
    SecurityError::Certificate {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// A self-signed certificate authority.
#[derive(Debug)]
pub struct CertificateAuthority {
    ca: Issued,
}

impl CertificateAuthority {
    /// A new CA named `common_name`, valid for `days`.
    pub fn generate(common_name: &str, days: u32) -> Result<Self, SecurityError> {
        let key = new_key()?;
        let subject = name(common_name)?;
        let mut b = builder(&subject, &key, days)?;
        b.set_issuer_name(&subject)?;
        b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
        b.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()?,
        )?;
        let skid = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None))?;
        b.append_extension(skid)?;
        b.sign(&key, MessageDigest::sha256())?;
        Ok(CertificateAuthority {
            ca: Issued {
                certificate: b.build(),
                key,
            },
        })
    }

    /// A CA saved as PEM files: its certificate and its private key. The
    /// key file must be readable by its owner only, the key must belong to
    /// the certificate, and the certificate must be self-signed.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, SecurityError> {
        let certificate = X509::from_pem(&files::read(cert, files::Access::Public)?)
            .map_err(|e| refused(cert, e))?;
        let private = PKey::private_key_from_pem(&files::read(key, files::Access::Secret)?)
            .map_err(|e| refused(key, e))?;
        let public = certificate.public_key().map_err(|e| refused(cert, e))?;
        if !public.public_eq(&private) {
            return Err(refused(
                key,
                format!("this key does not belong to {}", cert.display()),
            ));
        }
        if !certificate.verify(&private).map_err(|e| refused(cert, e))? {
            return Err(refused(cert, "not a self-signed CA certificate"));
        }
        Ok(CertificateAuthority {
            ca: Issued {
                certificate,
                key: private,
            },
        })
    }

    /// The CA's own certificate and key.
    pub fn issued(&self) -> &Issued {
        &self.ca
    }

    /// Issue a certificate for `common_name`, valid for `days`, naming the
    /// given DNS names and IP addresses (what clients check against the
    /// name they connected to). Usable as a server and as a client
    /// certificate (the [`Role::Registrar`] usages).
    pub fn issue(
        &self,
        common_name: &str,
        dns: &[&str],
        ips: &[IpAddr],
        days: u32,
    ) -> Result<Issued, SecurityError> {
        self.issue_as(Role::Registrar, common_name, dns, ips, days)
    }

    /// Issue a certificate for `common_name` in `role`, valid for `days`,
    /// with the DNS names and IP addresses as subject alternative names.
    /// The result is verified against this CA for its role's purpose.
    pub fn issue_as(
        &self,
        role: Role,
        common_name: &str,
        dns: &[&str],
        ips: &[IpAddr],
        days: u32,
    ) -> Result<Issued, SecurityError> {
        for d in dns {
            check_dns_name(d)?;
        }
        let key = new_key()?;
        let mut b = builder(&name(common_name)?, &key, days)?;
        b.set_issuer_name(self.ca.certificate.subject_name())?;
        b.append_extension(BasicConstraints::new().critical().build()?)?;
        b.append_extension(
            KeyUsage::new()
                .critical()
                .digital_signature()
                .key_agreement()
                .build()?,
        )?;
        let mut eku = ExtendedKeyUsage::new();
        if role.is_server() {
            eku.server_auth();
        }
        b.append_extension(eku.client_auth().build()?)?;
        let skid = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None))?;
        b.append_extension(skid)?;
        let akid = AuthorityKeyIdentifier::new()
            .keyid(false)
            .build(&b.x509v3_context(Some(&self.ca.certificate), None))?;
        b.append_extension(akid)?;
        if !dns.is_empty() || !ips.is_empty() {
            let mut san = SubjectAlternativeName::new();
            for d in dns {
                san.dns(d);
            }
            for ip in ips {
                san.ip(&ip.to_string());
            }
            let ext = san.build(&b.x509v3_context(Some(&self.ca.certificate), None))?;
            b.append_extension(ext)?;
        }
        b.sign(&self.ca.key, MessageDigest::sha256())?;
        let issued = Issued {
            certificate: b.build(),
            key,
        };
        self.verify(&issued.certificate, role)?;
        Ok(issued)
    }

    /// Check that `cert` chains to this CA for `role`'s TLS purpose.
    fn verify(&self, cert: &X509, role: Role) -> Result<(), SecurityError> {
        let mut store = X509StoreBuilder::new()?;
        store.add_cert(self.ca.certificate.clone())?;
        store.set_purpose(if role.is_server() {
            X509PurposeId::SSL_SERVER
        } else {
            X509PurposeId::SSL_CLIENT
        })?;
        let store = store.build();
        let mut ctx = X509StoreContext::new()?;
        let chain = Stack::new()?;
        let error = ctx.init(&store, cert, &chain, |c| {
            Ok(if c.verify_cert()? {
                None
            } else {
                Some(c.error().error_string())
            })
        })?;
        match error {
            None => Ok(()),
            Some(reason) => Err(SecurityError::Config(format!(
                "the new certificate does not verify against the CA: {reason}"
            ))),
        }
    }
}

/// A DNS name for a subject alternative name: labels of letters, digits
/// and hyphens (a leading `*.` wildcard allowed), at most 253 characters.
fn check_dns_name(name: &str) -> Result<(), SecurityError> {
    let bare = name.strip_prefix("*.").unwrap_or(name);
    let ok = !bare.is_empty()
        && name.len() <= 253
        && bare.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(SecurityError::Config(format!(
            "{name:?} is not a DNS name (letters, digits, hyphens and dots)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_get_their_key_usages_and_verify() {
        let ca = CertificateAuthority::generate("test CA", 1).unwrap();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let reg = ca
            .issue_as(Role::Registrar, "reg", &["localhost"], &[ip], 1)
            .unwrap();
        let pe = ca.issue_as(Role::PoolElement, "pe-1", &[], &[], 1).unwrap();
        // A client certificate is not good for a server.
        assert!(ca.verify(&pe.certificate, Role::Registrar).is_err());
        assert!(ca.verify(&pe.certificate, Role::PoolUser).is_ok());
        assert!(ca.verify(&reg.certificate, Role::PoolElement).is_ok());
        // Another CA's certificate does not verify.
        let other = CertificateAuthority::generate("other CA", 1).unwrap();
        assert!(other.verify(&reg.certificate, Role::Registrar).is_err());
    }

    #[test]
    fn a_saved_ca_loads_and_a_mismatched_key_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let (cert, key) = (d.path().join("ca.pem"), d.path().join("ca.key"));
        let ca = CertificateAuthority::generate("test CA", 1).unwrap();
        ca.issued().save(&cert, &key, Existing::Refuse).unwrap();
        // Refused a second time, replaced on request.
        assert!(ca.issued().save(&cert, &key, Existing::Refuse).is_err());
        ca.issued().save(&cert, &key, Existing::Replace).unwrap();
        let loaded = CertificateAuthority::load(&cert, &key).unwrap();
        assert!(loaded.issue("x", &[], &[], 1).is_ok());

        let other = CertificateAuthority::generate("other", 1).unwrap();
        let other_key = d.path().join("other.key");
        let other_cert = d.path().join("other.pem");
        other
            .issued()
            .save(&other_cert, &other_key, Existing::Refuse)
            .unwrap();
        let e = CertificateAuthority::load(&cert, &other_key).unwrap_err();
        assert!(e.to_string().contains("does not belong"), "{e}");
        // A leaf certificate is not a CA.
        let leaf = ca.issue("leaf", &[], &[], 1).unwrap();
        let (leaf_cert, leaf_key) = (d.path().join("leaf.pem"), d.path().join("leaf.key"));
        leaf.save(&leaf_cert, &leaf_key, Existing::Refuse).unwrap();
        let e = CertificateAuthority::load(&leaf_cert, &leaf_key).unwrap_err();
        assert!(e.to_string().contains("self-signed"), "{e}");
    }

    #[test]
    fn bad_names_and_validities_are_refused() {
        let ca = CertificateAuthority::generate("test CA", 1).unwrap();
        assert!(ca.issue("x", &["bad name"], &[], 1).is_err());
        assert!(ca.issue("x", &["-bad.example"], &[], 1).is_err());
        assert!(ca.issue("x", &["*.example.org"], &[], 1).is_ok());
        assert!(ca.issue("", &[], &[], 1).is_err());
        assert!(ca.issue("x", &[], &[], 0).is_err());
        assert!(CertificateAuthority::generate("x", MAX_DAYS + 1).is_err());
    }
}
