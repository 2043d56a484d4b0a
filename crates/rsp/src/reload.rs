//! `rsp registrar` on SIGHUP: read the settings again and apply what can
//! change without a restart: the pre-shared keys, the certificate and
//! key, the client CA, the admin token and the authorised peer database
//! (its file read again). Identities whose key is gone lose their
//! connections and PEs; identities whose key changed (and, when the
//! client CA changed, every certificate identity) must authenticate
//! again; what the new database denies is removed. An invalid new file
//! (settings, keys or database) changes nothing and is reported; other
//! changed settings wait for the next restart.

use rserpool_registrar::{ApdReport, RegistrarHandle, Revocation, RevocationReport};
use rserpool_security::PeerIdentity;

use crate::registrar_config::{self, Credentials, RegistrarSettings};

/// What the new credentials take away from the old ones.
pub fn revocation(old: &Credentials, new: &Credentials) -> Revocation {
    let mut r = Revocation::default();
    let empty = rserpool_security::PskStore::default();
    if let Some(old_psks) = &old.psks {
        let new_psks = new.psks.as_deref().unwrap_or(&empty);
        let d = old_psks.diff(new_psks);
        for id in d.removed {
            r.revoke(&PeerIdentity::Psk(id));
        }
        for id in d.changed {
            r.reauthenticate(&PeerIdentity::Psk(id));
        }
    }
    r.reauthenticate_certificates = old.client_ca.is_some() && old.client_ca != new.client_ca;
    r
}

/// The outcome of a reload, for the output.
pub struct Reloaded {
    pub report: RevocationReport,
    /// What the database read again removed (`None`: not applied, its
    /// file changed place, which needs a restart).
    pub apd: Option<ApdReport>,
    pub restart_needed: bool,
}

/// Load the settings again and apply the credentials. On error nothing
/// changed.
pub async fn reload(
    args: &crate::registrar::Args,
    current: &mut RegistrarSettings,
    registrar: &RegistrarHandle,
    admin: Option<&rserpool_registrar::admin::AdminServer>,
) -> anyhow::Result<Reloaded> {
    let new = registrar_config::load(args)?;
    let (Some(old_creds), Some(new_creds), Some(tls)) =
        (&current.credentials, &new.credentials, &new.service.tls)
    else {
        anyhow::bail!(
            "switching between secure and insecure mode needs a restart; nothing changed"
        );
    };
    if current.admin.is_some() != new.admin.is_some() {
        anyhow::bail!("turning the admin API on or off needs a restart; nothing changed");
    }
    let revocation = revocation(old_creds, new_creds);
    let report = registrar
        .reload_credentials(tls.clone(), revocation)
        .await?;
    if let (Some(server), Some(a)) = (admin, &new.admin) {
        server.set_token(a.token.clone());
    }
    let mut restart_needed = registrar_config::restart_needed(current, &new);
    // The database: read again from the same file (or the permissive
    // default again); another file is a restart (changes are written to
    // the file the registrar started with).
    let apd = if current.service.apd_file == new.service.apd_file {
        let report = registrar.replace_apd(new.service.apd.clone()).await?;
        current.service.apd = new.service.apd;
        Some(report)
    } else {
        restart_needed = true;
        None
    };
    current.credentials = new.credentials;
    current.service.tls = new.service.tls;
    current.details = new.details;
    if let (Some(cur), Some(a)) = (&mut current.admin, new.admin) {
        cur.config.token = a.token.clone();
        cur.token = a.token;
        cur.token_file = a.token_file;
    }
    Ok(Reloaded {
        report,
        apd,
        restart_needed,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rserpool_security::{Psk, PskStore};

    use super::*;

    fn store(keys: &[&Psk]) -> Option<Arc<PskStore>> {
        let mut s = PskStore::default();
        for k in keys {
            s.insert((*k).clone()).unwrap();
        }
        Some(Arc::new(s))
    }

    #[test]
    fn removed_keys_revoke_changed_keys_reauthenticate() {
        let a = Psk::generate("a").unwrap();
        let b = Psk::generate("b").unwrap();
        let b2 = Psk::generate("b").unwrap();
        let c = Psk::generate("c").unwrap();
        let old = Credentials {
            psks: store(&[&a, &b]),
            client_ca: Some(b"ca1".to_vec()),
        };
        let new = Credentials {
            psks: store(&[&b2, &c]),
            client_ca: Some(b"ca1".to_vec()),
        };
        let r = revocation(&old, &new);
        let names = |s: &std::collections::BTreeSet<rserpool_registrar::Identity>| {
            s.iter().map(|i| i.0.to_string()).collect::<Vec<_>>()
        };
        assert_eq!(names(&r.revoked), ["psk:a"]);
        assert_eq!(names(&r.reauthenticate), ["psk:b"]);
        assert!(!r.reauthenticate_certificates);
        let new = Credentials {
            psks: None,
            client_ca: None,
        };
        let r = revocation(&old, &new);
        assert_eq!(names(&r.revoked), ["psk:a", "psk:b"]);
        assert!(r.reauthenticate_certificates);
    }
}
