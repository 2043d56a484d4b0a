//! Standby links of pool elements (docs/tcp-mapping.md, "Re-homing PEs
//! over TCP"): the ASAP connections on which a PE named PEs that it keeps
//! registered with another registrar (an ASAP_ENDPOINT_KEEP_ALIVE_ACK
//! that answers no keep-alive of this registrar), and calling those PEs
//! home over them once their home was taken over. RFC 5353 3.5.2 has the
//! new home send each PE a keep-alive with the H flag; over SCTP that
//! reaches the PE's ASAP endpoint, over TCP only a connection the PE
//! made can carry it.
//!
//! A claim is a hint (RFC 5355 2.13): it is recorded only within bounds
//! (per connection, per PE), and used only if the connection's identity
//! is the PE's registrant identity when the call goes out, so that a
//! claim by anyone else calls nobody.

use rserpool_handlespace::ConnId;
use rserpool_wire::{AsapMessage, PeId, PoolHandle};
use rustc_hash::FxHashMap;

use super::RegistrarCore;

/// Connections one PE may be named on (the newest are kept).
const MAX_LINKS_PER_PE: usize = 2;

/// What became of a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    New,
    Known,
    OverBound,
}

/// Which connections stand by for which PEs.
#[derive(Debug, Default)]
pub(super) struct Standbys {
    by_pe: FxHashMap<(PoolHandle, PeId), Vec<ConnId>>,
    by_conn: FxHashMap<ConnId, Vec<(PoolHandle, PeId)>>,
}

impl Standbys {
    /// `conn` names PE `id` of `handle`; at most `max_per_conn` PEs per
    /// connection.
    fn claim(&mut self, conn: ConnId, handle: &PoolHandle, id: PeId, max_per_conn: usize) -> Claim {
        let key = (handle.clone(), id);
        let named = self.by_conn.entry(conn).or_default();
        if named.contains(&key) {
            return Claim::Known;
        }
        if named.len() >= max_per_conn {
            return Claim::OverBound;
        }
        named.push(key.clone());
        let links = self.by_pe.entry(key).or_default();
        if links.len() >= MAX_LINKS_PER_PE {
            let old = links.remove(0);
            if let Some(n) = self.by_conn.get_mut(&old) {
                n.retain(|k| !(k.0 == *handle && k.1 == id));
            }
        }
        links.push(conn);
        Claim::New
    }

    /// Connection `conn` closed: it stands by for nobody.
    pub(super) fn closed(&mut self, conn: ConnId) {
        for key in self.by_conn.remove(&conn).unwrap_or_default() {
            if let Some(links) = self.by_pe.get_mut(&key) {
                links.retain(|&c| c != conn);
                if links.is_empty() {
                    self.by_pe.remove(&key);
                }
            }
        }
    }

    /// The connections PE `id` of `handle` was named on.
    fn links(&self, handle: &PoolHandle, id: PeId) -> Vec<ConnId> {
        self.by_pe
            .get(&(handle.clone(), id))
            .cloned()
            .unwrap_or_default()
    }

    /// PEs named on some connection.
    fn len(&self) -> usize {
        self.by_pe.len()
    }
}

impl RegistrarCore {
    /// How many PEs named a standby link to this registrar.
    pub fn standby_links(&self) -> usize {
        self.standby.len()
    }

    /// An ASAP_ENDPOINT_KEEP_ALIVE_ACK on `conn` for a PE that is not
    /// registered over `conn`: the PE names `conn` as its standby link.
    /// (An ack over the PE's registration connection answers a
    /// keep-alive of ours and is no claim.)
    pub(super) fn standby_claim(&mut self, conn: ConnId, handle: &PoolHandle, id: PeId) {
        let Some(peer) = self.clients.get(&conn) else {
            return;
        };
        let mut unconnected_here = false;
        if let Some(e) = self.handlespace.find(handle, id) {
            if e.connection == Some(conn) {
                return;
            }
            if e.identity.as_ref() != Some(&peer.identity) {
                // Not the registrant's: calls nobody (RFC 5355 2.3).
                self.stats.standby_claims_refused += 1;
                return;
            }
            // A PE rechecked after a stall is ours only on the word of a
            // registrar that did not run: a standby link here says it is
            // homed elsewhere, so it is not called (its claim stands).
            unconnected_here = e.home == self.config.server_id
                && !e.connection.is_some_and(|c| self.clients.contains_key(&c))
                && !self.enrp.reclaiming.contains(&(handle.clone(), id));
        }
        // Unknown yet (its registration may still be on its way from the
        // peer it registered with): kept, checked when used.
        let max = self.config.max_pes_per_identity;
        match self.standby.claim(conn, handle, id, max) {
            Claim::OverBound => self.stats.standby_claims_refused += 1,
            Claim::New if unconnected_here => {
                // Ours (a takeover made it so) and reachable only here:
                // call it home now rather than at its next keep-alive
                // (once per link: its answer is an ack here too).
                self.call_home(&[(handle.clone(), id)]);
            }
            Claim::New | Claim::Known => {}
        }
    }

    /// The PEs `moved` got a new home after a takeover: call those named
    /// on a standby link here to this registrar (the H-flag keep-alive of
    /// RFC 5353 3.5.2 and RFC 5352 3.4 KA2.4). They register over it,
    /// which makes this registrar their home (RFC 5352 3.1).
    pub(super) fn call_home(&mut self, moved: &[(PoolHandle, PeId)]) {
        let me = self.config.server_id;
        for (handle, id) in moved {
            let Some(registrant) = self
                .handlespace
                .find(handle, *id)
                .and_then(|e| e.identity.clone())
            else {
                continue;
            };
            for conn in self.standby.links(handle, *id) {
                let ours = self
                    .clients
                    .get(&conn)
                    .is_some_and(|c| c.identity == registrant);
                if !ours || self.is_closing(conn) {
                    continue;
                }
                self.stats.standby_calls += 1;
                self.send(
                    conn,
                    AsapMessage::EndpointKeepAlive {
                        home: true,
                        server_id: me,
                        pool_handle: handle.clone(),
                        identifier: Some(*id),
                    },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: &'static str) -> PoolHandle {
        PoolHandle::from_static(n)
    }

    #[test]
    fn claims_are_bounded_per_connection_and_per_pe_and_go_with_their_connection() {
        let mut s = Standbys::default();
        let (a, b, c) = (ConnId::new(1), ConnId::new(2), ConnId::new(3));
        assert_eq!(s.claim(a, &h("p"), PeId::new(1), 2), Claim::New);
        assert_eq!(s.claim(a, &h("p"), PeId::new(1), 2), Claim::Known);
        assert_eq!(s.claim(a, &h("p"), PeId::new(2), 2), Claim::New);
        assert_eq!(s.claim(a, &h("p"), PeId::new(3), 2), Claim::OverBound);
        assert_eq!(s.claim(b, &h("p"), PeId::new(1), 2), Claim::New);
        assert_eq!(s.claim(c, &h("p"), PeId::new(1), 2), Claim::New);
        // Two links per PE: the oldest went.
        assert_eq!(s.links(&h("p"), PeId::new(1)), vec![b, c]);
        s.closed(b);
        assert_eq!(s.links(&h("p"), PeId::new(1)), vec![c]);
        s.closed(a);
        s.closed(c);
        assert_eq!(s.len(), 0);
        assert!(s.by_conn.is_empty());
    }
}
