//! Taking over a failed peer (RFC 5353 3.5), secured as RFC 5355 2.17
//! asks: a takeover starts only for a peer this registrar found down
//! (silent past MAX-TIME-LAST-HEARD and MAX-TIME-NO-RESPONSE, or its
//! associations gone), and a peer's ENRP_INIT_TAKEOVER or
//! ENRP_TAKEOVER_SERVER for a registrar this one still hears moves
//! nothing: it is not acknowledged, and is counted.
//!
//! * The initiator sends ENRP_INIT_TAKEOVER to every peer up and needs an
//!   ENRP_INIT_TAKEOVER_ACK from each of them but the target; with no
//!   other peer (two registrars), it wins at once.
//! * Two initiators for one target: the larger server identifier wins
//!   (3.5.1 rule 2.A); the smaller aborts and acknowledges.
//! * The winner announces ENRP_TAKEOVER_SERVER and becomes the home of
//!   the target's PEs (their registration lives run from now: a PE that
//!   never re-registers anywhere expires); the others move them to the
//!   winner. A registrar told that it was taken over gives its PEs to
//!   the winner; a PE still connected to it takes it back by its next
//!   re-registration (RFC 5352 3.1).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rserpool_handlespace::Registration;
use rserpool_wire::{EnrpMessage, PeId, PoolHandle, ServerId};

use super::peers::Peer;
use crate::output::Event;
use crate::RegistrarCore;

/// A takeover this registrar started.
#[derive(Debug, Clone)]
pub(crate) struct Takeover {
    /// The peers whose acknowledgement is still awaited.
    pub waiting_for: BTreeSet<ServerId>,
    /// Given up if they are not all in by then.
    pub deadline: Instant,
}

impl RegistrarCore {
    /// A peer is down: take its PEs over if it has any.
    pub(super) fn start_takeover(&mut self, now: Instant, target: ServerId) {
        if self.handlespace.by_owner(target).next().is_none()
            || self.enrp.takeovers.contains_key(&target)
        {
            return;
        }
        self.note_stall(now);
        if self.enrp.no_takeover_until.is_some_and(|t| now < t) {
            tracing::warn!(%target, "this registrar was stopped a while ago: no takeover of a peer it lost touch with meanwhile");
            self.stats.enrp.takeovers_abandoned += 1;
            return;
        }
        // A majority of the scope (beyond two registrars, where the
        // survivor cannot tell a crash from a cut and takes over).
        let reachable = 1 + self.enrp.peers.up().filter(|p| p.id != target).count();
        let scope = self.enrp.scope_size;
        if scope > 2 && reachable * 2 <= scope {
            tracing::warn!(%target, reachable, scope, "no takeover: this registrar reaches no majority of the registrars (cut off?)");
            self.stats.enrp.takeovers_abandoned += 1;
            return;
        }
        let me = self.config.server_id;
        let waiting_for: BTreeSet<ServerId> = self
            .enrp
            .peers
            .up()
            .map(|p| p.id)
            .filter(|&id| id != target)
            .collect();
        tracing::warn!(%target, peers = waiting_for.len(), "peer down with PEs: takeover arbitration (RFC 5353 3.5.1)");
        let conns: Vec<_> = self.enrp.peers.up().filter_map(Peer::conn).collect();
        for conn in conns {
            self.send_enrp(
                conn,
                EnrpMessage::InitTakeover {
                    sender: me,
                    receiver: ServerId::UNDETERMINED,
                    target,
                },
            );
        }
        if waiting_for.is_empty() {
            return self.win_takeover(now, target);
        }
        self.enrp.takeovers.insert(
            target,
            Takeover {
                waiting_for,
                deadline: now + self.config.enrp.max_time_no_response * 2,
            },
        );
    }

    /// Whether `id` is a peer this registrar hears: up, and heard
    /// within MAX-TIME-LAST-HEARD.
    fn hears(&self, now: Instant, id: ServerId) -> bool {
        self.enrp.peers.peers.get(&id).is_some_and(|p| {
            !p.conns.is_empty()
                && now.saturating_duration_since(p.last_heard)
                    < self.config.enrp.max_time_last_heard
        })
    }

    /// A peer's ENRP_INIT_TAKEOVER.
    pub(super) fn on_init_takeover(&mut self, now: Instant, sender: ServerId, target: ServerId) {
        let me = self.config.server_id;
        if target == me {
            // 3.5.1 rule 1: a false failure detection; show we live.
            tracing::warn!(initiator = %sender, "a peer started a takeover of this registrar: announcing presence");
            self.stats.enrp.takeovers_refused += 1;
            let hello = self.presence(false);
            let conns: Vec<_> = self.enrp.peers.up().filter_map(Peer::conn).collect();
            for conn in conns {
                self.send_enrp(conn, hello.clone());
            }
            return;
        }
        if self.hears(now, target) {
            // RFC 5355 2.17: not for a registrar we still hear.
            tracing::warn!(initiator = %sender, %target, "takeover of a peer this registrar still hears: not acknowledged");
            self.stats.enrp.takeovers_refused += 1;
            return;
        }
        if self.enrp.takeovers.contains_key(&target) {
            if me > sender {
                // Rule 2.B: ours goes on; the initiator aborts when it
                // sees our ENRP_INIT_TAKEOVER.
                return;
            }
            // Rule 2.A.
            tracing::info!(%target, winner = %sender, "takeover arbitration lost to a peer with a larger identifier");
            self.enrp.takeovers.remove(&target);
            self.stats.enrp.takeovers_lost += 1;
        }
        // Rule 3 (and 2.A): not active here any more; acknowledge.
        self.forget_peer(target, "not active");
        if let Some(conn) = self.peer_conn(sender) {
            self.send_enrp(
                conn,
                EnrpMessage::InitTakeoverAck {
                    sender: me,
                    receiver: sender,
                    target,
                },
            );
        }
    }

    /// A peer's ENRP_INIT_TAKEOVER_ACK.
    pub(super) fn on_takeover_ack(&mut self, now: Instant, sender: ServerId, target: ServerId) {
        let Some(t) = self.enrp.takeovers.get_mut(&target) else {
            return;
        };
        t.waiting_for.remove(&sender);
        if t.waiting_for.is_empty() {
            self.enrp.takeovers.remove(&target);
            self.win_takeover(now, target);
        }
    }

    /// A peer's ENRP_TAKEOVER_SERVER: the winner takes the target's PEs.
    pub(super) fn on_takeover_server(&mut self, now: Instant, sender: ServerId, target: ServerId) {
        let me = self.config.server_id;
        if target == me {
            // A peer that tells us we were taken over hears us: we are
            // not dead (RFC 5355 2.17: it would take our PEs). A
            // registrar that was really taken over (frozen, cut off) was
            // dropped by its peers first and never gets this; its stale
            // claims lose to the winner's newer ownership epochs.
            tracing::warn!(claimed_winner = %sender, "a peer claims it took this registrar over: refused");
            self.stats.enrp.takeovers_refused += 1;
            let hello = self.presence(false);
            if let Some(conn) = self.peer_conn(sender) {
                self.send_enrp(conn, hello);
            }
            return;
        }
        if self.hears(now, target) {
            tracing::warn!(winner = %sender, %target, "takeover of a peer this registrar still hears: refused");
            self.stats.enrp.takeovers_refused += 1;
            return;
        }
        if self.enrp.takeovers.remove(&target).is_some() {
            self.stats.enrp.takeovers_lost += 1;
        }
        self.forget_peer(target, "not active");
        self.enrp.lost.remove(&target);
        let moved = self.move_pes(target, sender, None);
        self.enrp.scope_size = self.enrp.scope_size.saturating_sub(1).max(1);
        tracing::info!(%target, winner = %sender, pes = moved.len(), "a peer took over a failed registrar");
        self.push_event(Event::TakenOver {
            target,
            winner: sender,
            pes: moved.len(),
        });
        // Those that stand by here come here (module `standby`).
        self.call_home(&moved);
    }

    /// This registrar won: announce it and become the home of the
    /// target's PEs (3.5.2).
    fn win_takeover(&mut self, now: Instant, target: ServerId) {
        let me = self.config.server_id;
        let conns: Vec<_> = self.enrp.peers.up().filter_map(Peer::conn).collect();
        for conn in conns {
            self.send_enrp(
                conn,
                EnrpMessage::TakeoverServer {
                    sender: me,
                    receiver: ServerId::UNDETERMINED,
                    target,
                },
            );
        }
        self.forget_peer(target, "not active");
        self.enrp.lost.remove(&target);
        let moved = self.move_pes(target, me, Some(now));
        self.stats.enrp.takeovers_won += 1;
        self.enrp.scope_size = self.enrp.scope_size.saturating_sub(1).max(1);
        tracing::warn!(%target, pes = moved.len(), "took over a failed peer registrar: its PEs are homed here, and those on a standby link here are called home");
        self.push_event(Event::TakenOver {
            target,
            winner: me,
            pes: moved.len(),
        });
        // Ours now, but not connected here: those on a standby link here
        // are called home; all must register within the keep-alive
        // timeout (with a peer that called them, or here), as PEs whose
        // connection closed must (RFC 5352 3.5: a PE that cannot be
        // checked does not stay).
        self.call_home(&moved);
        self.await_reregistration(now, moved);
    }

    /// Give the PEs homed at `from` to `to`. `expiring_from`: they are
    /// ours, and their registration lives run from then. Returns the PEs
    /// moved.
    fn move_pes(
        &mut self,
        from: ServerId,
        to: ServerId,
        expiring_from: Option<Instant>,
    ) -> Vec<(PoolHandle, PeId)> {
        let pes: Vec<Registration> = self
            .handlespace
            .by_owner(from)
            .map(|(h, e)| Registration {
                pool_handle: h.clone(),
                element: e.to_wire(),
                home: to,
                registered_at: e.registered_at,
                expires: expiring_from
                    .map(|t| t + Duration::from_millis(e.registration_life.max(0) as u64)),
                keep_alive_due: None,
                connection: None,
                identity: e.identity.clone(),
                distance: e.distance,
                epoch: e.epoch + 1,
            })
            .collect();
        let mut moved = Vec::with_capacity(pes.len());
        for mut r in pes {
            r.element.home_registrar = to;
            let key = (r.pool_handle.clone(), r.element.identifier);
            match self.handlespace.register(r) {
                Ok(_) => moved.push(key),
                Err(e) => tracing::error!(error = ?e, "PE could not change its home"),
            }
        }
        moved
    }

    /// Stop monitoring a peer (down, or taken over) and close what is
    /// left of its associations.
    pub(super) fn forget_peer(&mut self, id: ServerId, why: &str) {
        for conn in self.enrp.peers.remove(id) {
            self.enrp.serving.remove(&conn);
            self.close(conn, format!("peer {id}: {why}"));
        }
    }

    /// With a peer up a heartbeat is due every cycle: if ENRP's timers
    /// have not run for longer than a peer may be silent, this registrar
    /// was stopped itself (frozen, suspended), and the peers it lost
    /// touch with meanwhile were dead to nobody but it. No takeover
    /// starts until it had time to hear them again.
    ///
    /// Its peers may have taken it over meanwhile (raising the PEs'
    /// ownership epochs by one), and its own PEs may have died, or been
    /// removed by those peers. So it probes them all at once, serves its
    /// table to no peer until the probes had time to fail (it never
    /// brings back a PE its peers saw go), and reclaims each PE that
    /// answers over its own connection (epoch + 2, as a registration
    /// from another home: the PE is still with it) with a handle update.
    /// Until then its claims are suspect: it calls no PE home over a
    /// standby link, and a peer's newer claim (a takeover) replaces its
    /// own. A PE that moved meanwhile registered elsewhere, and stays.
    pub(super) fn note_stall(&mut self, now: Instant) {
        let c = &self.config.enrp;
        let stalled = now.saturating_duration_since(self.enrp.last_tick);
        let had_peers = !self.enrp.peers.peers.is_empty();
        if had_peers && stalled > c.heartbeat_cycle + c.max_time_last_heard {
            let until = now + c.max_time_last_heard + c.max_time_no_response;
            if !self.enrp.no_takeover_until.is_some_and(|t| t >= until) {
                tracing::warn!(?stalled, "this registrar did not run for a while: no takeovers until it heard its peers again, and its own PEs are checked before its table goes to peers");
                self.enrp.no_takeover_until = Some(until);
            }
            self.enrp.last_tick = now;
            self.recheck_own_pes(now);
            return;
        }
        self.enrp.last_tick = now;
    }

    /// Probe every PE homed here, and hold the table back from peers
    /// until the probes are answered or have failed.
    fn recheck_own_pes(&mut self, now: Instant) {
        let me = self.config.server_id;
        let own: Vec<(PoolHandle, PeId)> = self
            .handlespace
            .by_owner(me)
            .map(|(h, e)| (h.clone(), e.identifier))
            .collect();
        self.enrp.reclaiming.clear();
        for (handle, id) in own {
            if let Some(pe) = self.handlespace.locate(&handle, id) {
                self.enrp.reclaiming.insert((handle.clone(), id));
                self.probe(now, handle, pe);
            }
        }
        self.enrp.table_held_until = Some(now + self.config.keep_alive_timeout);
    }

    /// Takeovers whose acknowledgements did not all come.
    pub(super) fn expire_takeovers(&mut self, now: Instant) {
        let late: Vec<ServerId> = self
            .enrp
            .takeovers
            .iter()
            .filter(|(_, t)| now >= t.deadline)
            .map(|(id, _)| *id)
            .collect();
        for target in late {
            if let Some(t) = self.enrp.takeovers.remove(&target) {
                tracing::warn!(%target, missing = t.waiting_for.len(), "takeover abandoned: not every peer acknowledged (some still hear the target)");
                self.stats.enrp.takeovers_abandoned += 1;
            }
        }
    }

    /// The target of a takeover spoke again: 3.5.1, stop.
    pub(super) fn takeover_target_alive(&mut self, target: ServerId) {
        if self.enrp.takeovers.remove(&target).is_some() {
            tracing::info!(%target, "takeover stopped: the target is alive");
            self.stats.enrp.takeovers_abandoned += 1;
        }
    }
}
