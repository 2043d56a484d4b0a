//! Handle table transfers (RFC 5353 3.2.3 and 3.6): the mentor's whole
//! table at start, a peer's own PEs in an audit, and serving both to
//! peers. Pages are bounded by [`crate::EnrpConfig::page_bytes`] of PE
//! parameters and by the 64 KiB of a message with the registrant
//! identities (our extension, one per PE); the receiver asks for each
//! next page (M flag), and either side gives up a transfer whose next
//! step does not come within MAX-TIME-NO-RESPONSE.

use std::collections::BTreeSet;
use std::time::Instant;

use rserpool_handlespace::ConnId;
use rserpool_wire::framing::ChannelCodec;
use rserpool_wire::{EnrpExtensions, EnrpMessage, PoolEntry, ServerId};

use super::peers::Audit;
use super::{Init, MentorStep, Served};
use crate::output::Event;
use crate::RegistrarCore;

/// Audits of one peer at most this often (one that ends still
/// mismatched, for example after a refused update, is not repeated at
/// every heartbeat), in heartbeat cycles.
const AUDIT_COOLDOWN_CYCLES: u32 = 10;

impl RegistrarCore {
    /// Ask `from` for the next page: of its whole table while mentoring,
    /// of its own PEs in an audit.
    pub(super) fn request_table(
        &mut self,
        now: Instant,
        from: ServerId,
        step: MentorStep,
        pages: u32,
        pes: usize,
    ) {
        let me = self.config.server_id;
        let deadline = now + self.config.enrp.max_time_no_response;
        self.enrp.init = Init::Mentoring {
            mentor: from,
            step,
            deadline,
            pages,
            pes,
        };
        if let Some(conn) = self.peer_conn(from) {
            self.send_enrp(
                conn,
                EnrpMessage::HandleTableRequest {
                    own_children_only: false,
                    sender: me,
                    receiver: from,
                },
            );
        }
    }

    /// A peer's checksum of its own PEs (3.6.1): if ours of them
    /// differs, audit them (3.6.3).
    pub(super) fn check_checksum(&mut self, now: Instant, peer: ServerId, theirs: u16) {
        let ours = self.handlespace.checksum(peer);
        if ours == theirs {
            return;
        }
        let Some(p) = self.enrp.peers.peers.get(&peer) else {
            return;
        };
        if p.audit.is_some() || now < p.audit_after || self.enrp.init != Init::Ready {
            return;
        }
        let marked: BTreeSet<_> = self
            .handlespace
            .by_owner(peer)
            .map(|(h, e)| (h.clone(), e.identifier))
            .collect();
        tracing::info!(%peer, ours, theirs, marked = marked.len(), "PE checksums disagree: auditing the peer's PEs");
        self.stats.enrp.audits += 1;
        let deadline = now + self.config.enrp.max_time_no_response;
        if let Some(p) = self.enrp.peers.peers.get_mut(&peer) {
            p.audit = Some(Audit {
                marked,
                deadline: Some(deadline),
                pages: 0,
                pes: 0,
            });
        }
        self.ask_own_pes(peer);
    }

    fn ask_own_pes(&mut self, peer: ServerId) {
        let me = self.config.server_id;
        if let Some(conn) = self.peer_conn(peer) {
            self.send_enrp(
                conn,
                EnrpMessage::HandleTableRequest {
                    own_children_only: true,
                    sender: me,
                    receiver: peer,
                },
            );
        }
    }

    /// A peer asks for (the next page of) our table.
    pub(super) fn serve_table(
        &mut self,
        now: Instant,
        conn: ConnId,
        peer: ServerId,
        own_only: bool,
    ) {
        let me = self.config.server_id;
        let held = self.enrp.table_held_until.is_some_and(|t| now < t);
        if self.enrp.init != Init::Ready || held {
            // 3.2.3: a registrar still starting rejects; so does one
            // re-checking its PEs after it was stopped (`note_stall`).
            self.send_enrp(
                conn,
                EnrpMessage::HandleTableResponse {
                    more_to_send: false,
                    reject: true,
                    sender: me,
                    receiver: peer,
                    pools: Vec::new(),
                },
            );
            return;
        }
        let after = match self.enrp.serving.get(&conn) {
            Some(s) if s.own_only == own_only => Some(s.cursor.clone()),
            _ => None,
        };
        let owner = own_only.then_some(me);
        let mut budget = self.config.enrp.page_bytes;
        loop {
            let page = self.handlespace.table_page(after.as_ref(), budget, owner);
            // Our extensions: each PE's registrant and ownership epoch.
            let (registrants, epochs): (Vec<String>, Vec<u64>) = page
                .pools
                .iter()
                .flat_map(|p| {
                    p.pool_elements
                        .iter()
                        .map(move |pe| (&p.pool_handle, pe.identifier))
                })
                .map(|(h, id)| match self.handlespace.find(h, id) {
                    Some(e) => (
                        e.identity
                            .as_ref()
                            .map(|i| i.0.to_string())
                            .unwrap_or_default(),
                        e.epoch,
                    ),
                    None => (String::new(), 0),
                })
                .unzip();
            let msg = EnrpMessage::HandleTableResponse {
                more_to_send: page.next.is_some(),
                reject: false,
                sender: me,
                receiver: peer,
                pools: page.pools,
            };
            let ext = EnrpExtensions {
                registrants,
                epochs,
                ..EnrpExtensions::default()
            };
            let fits = {
                let mut bytes = Vec::new();
                ext.encode(&msg, &mut bytes).is_ok() && bytes.len() <= ChannelCodec::ABSOLUTE_MAX
            };
            if !fits && budget > 1 {
                budget /= 2;
                continue;
            }
            match page.next {
                Some(cursor) => {
                    self.enrp.serving.insert(
                        conn,
                        Served {
                            cursor,
                            own_only,
                            expires: now + self.config.enrp.max_time_no_response * 4,
                        },
                    );
                }
                None => {
                    self.enrp.serving.remove(&conn);
                }
            }
            self.stats.enrp.pages_sent += 1;
            self.send_enrp(conn, (msg, ext));
            return;
        }
    }

    /// A page of a handle table from a peer.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_table_page(
        &mut self,
        now: Instant,
        conn: ConnId,
        peer: ServerId,
        more: bool,
        reject: bool,
        pools: Vec<PoolEntry>,
        ext: EnrpExtensions,
    ) {
        let mentoring = matches!(
            self.enrp.init,
            Init::Mentoring { mentor, step: MentorStep::Table, .. } if mentor == peer
        );
        let auditing = self
            .enrp
            .peers
            .peers
            .get(&peer)
            .is_some_and(|p| p.audit.is_some());
        if !mentoring && !auditing {
            self.stats.enrp.unsolicited += 1;
            return;
        }
        if reject {
            // 3.2.3: ask again after a while (the deadline), or another
            // mentor; an audit is simply tried again later.
            if auditing && !mentoring {
                self.end_audit(now, peer, false);
            }
            return;
        }
        self.stats.enrp.pages_received += 1;
        let count: usize = pools.iter().map(|p| p.pool_elements.len()).sum();
        let registrants = if ext.registrants.len() == count {
            ext.registrants.into_iter().map(Some).collect()
        } else {
            vec![None; count]
        };
        let epochs = if ext.epochs.len() == count {
            ext.epochs
        } else {
            vec![0; count]
        };
        let mut epoch_of = epochs.into_iter();
        let mut who = registrants.into_iter();
        let mut seen = Vec::new();
        for entry in pools {
            for pe in entry.pool_elements {
                let registrant = who.next().flatten();
                let epoch = epoch_of.next().unwrap_or(0);
                seen.push((entry.pool_handle.clone(), pe.identifier));
                let id = pe.identifier;
                if let Err(r) = self.apply_peer_pe(
                    now,
                    conn,
                    peer,
                    &entry.pool_handle,
                    pe,
                    registrant,
                    epoch,
                    !mentoring,
                ) {
                    self.stats.enrp.table_entries_refused += 1;
                    tracing::debug!(%peer, pool = %entry.pool_handle, pe = id.get(), reason = %r, "table entry refused");
                }
            }
        }
        if mentoring {
            let (pages, pes) = match self.enrp.init {
                Init::Mentoring { pages, pes, .. } => (pages + 1, pes + count),
                _ => (1, count),
            };
            if more {
                self.request_table(now, peer, MentorStep::Table, pages, pes);
            } else {
                tracing::info!(mentor = %peer, pes, pages, "handle table downloaded from the mentor");
                self.enrp.init = Init::Ready;
                self.enrp.alone_at = None;
                self.push_event(Event::TableSynced {
                    from: peer,
                    pes,
                    pages,
                    removed: 0,
                    audit: false,
                });
            }
            return;
        }
        let deadline = now + self.config.enrp.max_time_no_response;
        if let Some(a) = self
            .enrp
            .peers
            .peers
            .get_mut(&peer)
            .and_then(|p| p.audit.as_mut())
        {
            for k in &seen {
                a.marked.remove(k);
            }
            a.pages += 1;
            a.pes += count;
            a.deadline = Some(deadline);
        }
        if more {
            self.ask_own_pes(peer);
        } else {
            self.end_audit(now, peer, true);
        }
    }

    /// An audit ends: after its last page, what is still marked goes
    /// (3.6.3 step 5); given up, nothing changes.
    fn end_audit(&mut self, now: Instant, peer: ServerId, complete: bool) {
        let cooldown = self.config.enrp.heartbeat_cycle * AUDIT_COOLDOWN_CYCLES;
        let Some(audit) = self.enrp.peers.peers.get_mut(&peer).and_then(|p| {
            p.audit_after = now + cooldown;
            p.audit.take()
        }) else {
            return;
        };
        if !complete {
            return;
        }
        let mut removed = 0;
        for (pool, id) in &audit.marked {
            let still_theirs = self
                .handlespace
                .find(pool, *id)
                .is_some_and(|e| e.home == peer);
            if still_theirs && self.remove(pool, *id, crate::Removal::PeerRemoved) {
                removed += 1;
            }
        }
        tracing::info!(%peer, pes = audit.pes, pages = audit.pages, removed, "audit done");
        self.push_event(Event::TableSynced {
            from: peer,
            pes: audit.pes,
            pages: audit.pages,
            removed,
            audit: true,
        });
    }

    /// Transfers whose next step is overdue.
    pub(super) fn expire_transfers(&mut self, now: Instant) {
        self.enrp.serving.retain(|_, s| s.expires > now);
        let overdue: Vec<ServerId> = self
            .enrp
            .peers
            .peers
            .values()
            .filter(|p| {
                p.audit
                    .as_ref()
                    .and_then(|a| a.deadline)
                    .is_some_and(|d| now >= d)
            })
            .map(|p| p.id)
            .collect();
        for peer in overdue {
            tracing::warn!(%peer, "audit abandoned: the peer did not answer in time");
            self.end_audit(now, peer, false);
        }
    }
}
