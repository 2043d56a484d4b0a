//! A small certificate authority: enough to give a lab, a demo or a test
//! a CA, a registrar certificate and client certificates (P-256 keys,
//! SHA-256 signatures). Production deployments bring their own PKI and
//! point the TLS configuration at its PEM files.

use std::net::IpAddr;
use std::path::Path;

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509Builder, X509Name, X509NameBuilder, X509};

use crate::files::{self, Existing};
use crate::tls::CertificateFiles;
use crate::SecurityError;

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
    /// its owner only).
    pub fn write_pem(&self, cert: &Path, key: &Path) -> Result<(), SecurityError> {
        files::write(cert, &self.certificate.to_pem()?, 0o644, Existing::Replace)?;
        let pem = self.key.private_key_to_pem_pkcs8()?;
        files::write(key, &pem, 0o600, Existing::Replace)
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
}

fn new_key() -> Result<PKey<Private>, SecurityError> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    Ok(PKey::from_ec_key(EcKey::generate(&group)?)?)
}

fn name(common_name: &str) -> Result<X509Name, SecurityError> {
    let mut n = X509NameBuilder::new()?;
    n.append_entry_by_nid(Nid::COMMONNAME, common_name)?;
    Ok(n.build())
}

fn builder(
    subject: &X509Name,
    key: &PKey<Private>,
    days: u32,
) -> Result<X509Builder, SecurityError> {
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
        b.sign(&key, MessageDigest::sha256())?;
        Ok(CertificateAuthority {
            ca: Issued {
                certificate: b.build(),
                key,
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
    /// certificate.
    pub fn issue(
        &self,
        common_name: &str,
        dns: &[&str],
        ips: &[IpAddr],
        days: u32,
    ) -> Result<Issued, SecurityError> {
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
        b.append_extension(
            ExtendedKeyUsage::new()
                .server_auth()
                .client_auth()
                .build()?,
        )?;
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
        Ok(Issued {
            certificate: b.build(),
            key,
        })
    }
}
