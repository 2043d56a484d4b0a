//! The ASAP server side (RFC 5352 sections 3.1-3.5): registration,
//! deregistration, handle resolution, keep-alives and unreachable
//! reports, with the RFC 5355 rules (identity binding, own-address rule,
//! rate limits, the per-PE keep-alive limit).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use rand::RngExt;
use rserpool_handlespace::{
    ConnId, DeadlineKind, Expired, Identity, Inconsistency, KeepAlive, PeRef, Registered,
    Registration,
};
use rserpool_wire::{
    AsapMessage, Cause, CauseCode, OperationError, PeId, PoolElement, PoolHandle, Transport,
    TransportUse, UpdateAction, WireMessage,
};

use crate::client::{Client, ConnKind};
use crate::output::{identity_text, protocol_name, Event, Output, Refusal, Removal, ReportCheck};

use super::connections::MAX_ECHOED;
use super::RegistrarCore;

/// The registrar's rules on the keep-alive state a PE carries in its
/// handlespace entry ([`KeepAlive`]; RFC 5352 3.5, RFC 5355 2.13 and
/// 2.14). `outstanding`: a keep-alive is out and unanswered (or the PE's
/// connection closed), so when the keep-alive deadline passes the PE is
/// removed; `reported`: that keep-alive checks unreachable reports (if it
/// goes unanswered the PE is removed as unreachable, if it is answered
/// the reports are void); `sent`: keep-alives sent recently (the 2.14
/// limit); `reports`: reporter and time, one per reporter, at most
/// MAX-BAD-PE-REPORT (the newest).
pub(super) trait Checks {
    /// Count a report from `reporter`; returns the distinct reporters
    /// within `window`, at most `max`.
    fn report(&mut self, reporter: Identity, now: Instant, window: Duration, max: usize) -> usize;
    /// The reporters, as events name them.
    fn reporters(&self) -> Vec<String>;
    /// The PE showed it is alive: nothing is outstanding and the reports
    /// are void. Returns the reporters if a report check was outstanding.
    fn alive(&mut self) -> Option<Vec<String>>;
    /// Record a keep-alive sent at `now` if fewer than `max` went out in
    /// the last `window`; returns whether it was recorded.
    fn may_send(&mut self, now: Instant, window: Duration, max: usize) -> bool;
}

impl Checks for KeepAlive {
    fn report(&mut self, reporter: Identity, now: Instant, window: Duration, max: usize) -> usize {
        self.reports
            .retain(|(r, t)| *r != reporter && now.saturating_duration_since(*t) <= window);
        if self.reports.len() >= max {
            self.reports.remove(0);
        }
        self.reports.push((reporter, now));
        self.reports.len()
    }

    fn reporters(&self) -> Vec<String> {
        self.reports.iter().map(|(r, _)| identity_text(r)).collect()
    }

    fn alive(&mut self) -> Option<Vec<String>> {
        self.outstanding = false;
        let checked = std::mem::take(&mut self.reported).then(|| self.reporters());
        self.reports.clear();
        checked
    }

    fn may_send(&mut self, now: Instant, window: Duration, max: usize) -> bool {
        self.sent
            .retain(|&t| now.saturating_duration_since(t) < window);
        if self.sent.len() >= max {
            return false;
        }
        self.sent.push(now);
        true
    }
}

impl RegistrarCore {
    /// An ASAP message from an ASAP connection the core knows and is not
    /// closing.
    pub(super) fn asap_message(&mut self, now: Instant, conn: ConnId, msg: AsapMessage) {
        match msg {
            AsapMessage::Registration {
                pool_handle,
                pool_element,
            } => self.registration(now, conn, pool_handle, pool_element),
            AsapMessage::Deregistration {
                pool_handle,
                identifier,
            } => self.deregistration(now, conn, pool_handle, identifier),
            AsapMessage::HandleResolution {
                pool_handle, items, ..
            } => self.resolution(now, conn, pool_handle, items),
            AsapMessage::EndpointKeepAliveAck {
                pool_handle,
                identifier,
            } => self.keep_alive_ack(now, conn, pool_handle, identifier),
            AsapMessage::EndpointUnreachable {
                pool_handle,
                identifier,
            } => self.unreachable(now, conn, pool_handle, identifier),
            // Errors from clients are logged by the driver's event stream.
            AsapMessage::Error { error } => {
                tracing::info!(
                    conn = conn.get(),
                    ?error,
                    "ASAP_ERROR received from a client"
                );
            }
            other => {
                // A message a registrar never receives (RFC 5354 3.12.3).
                let info = other.to_bytes().unwrap_or_default();
                let info = &info[..info.len().min(MAX_ECHOED)];
                self.send_error(conn, Cause::with_info(CauseCode::UnrecognizedMessage, info));
            }
        }
    }

    // ----- RFC 5352 section 3.1: registration -------------------------------

    pub(super) fn registration(
        &mut self,
        now: Instant,
        conn: ConnId,
        pool_handle: PoolHandle,
        mut pe: PoolElement,
    ) {
        let identifier = pe.identifier;
        let checked = self.check_registration(now, conn, &pool_handle, &mut pe);
        let peer = match checked {
            Ok(peer) => peer,
            Err(r) => {
                let (refusal, cause) = r.kind();
                if matches!(r, RegistrationRefusal::Unauthorised(_)) {
                    self.stats.refused_unauthorised += 1;
                }
                return self.refuse_registration(
                    conn,
                    pool_handle,
                    identifier,
                    refusal,
                    cause,
                    r.to_string(),
                );
            }
        };
        let life = Duration::from_millis(pe.registration_life as u64);
        let shown = (
            pe.user_transport.addresses().to_vec(),
            pe.user_transport.port(),
            protocol_name(&pe.user_transport),
            pe.policy.name(),
        );
        // The ownership epoch grows when the PE comes from another home:
        // by two, so that the PE's own choice beats a takeover made from
        // the same epoch meanwhile (which adds one) wherever the two meet.
        let epoch = match self.handlespace.find(&pool_handle, identifier) {
            Some(e) if e.home == self.config.server_id => e.epoch,
            Some(e) => e.epoch + 2,
            None => 0,
        };
        let reg = Registration {
            pool_handle: pool_handle.clone(),
            element: pe,
            home: self.config.server_id,
            expires: Some(now + life),
            keep_alive_due: Some(now + self.keep_alive_interval()),
            connection: Some(conn),
            identity: Some(peer.identity.clone()),
            distance: 0,
            epoch,
            registered_at: now,
        };
        match self.handlespace.register(reg) {
            Ok(outcome) => {
                let new = outcome == Registered::New;
                let changed = !matches!(outcome, Registered::Updated { changed: false });
                if new {
                    self.stats.registrations += 1;
                } else {
                    self.stats.reregistrations += 1;
                }
                // A registration over a live connection shows the PE is
                // alive: outstanding checks and reports are void.
                if let Some(k) = self.handlespace.keep_alive_mut(&pool_handle, identifier) {
                    let _ = k.alive();
                }
                self.send(
                    conn,
                    AsapMessage::RegistrationResponse {
                        reject: false,
                        pool_handle: pool_handle.clone(),
                        identifier,
                        error: None,
                    },
                );
                // RFC 5353 3.3.1: every registration goes to the peers.
                if let Some(e) = self.handlespace.find(&pool_handle, identifier) {
                    let (wire, registrant, epoch) = (e.to_wire(), e.identity.clone(), e.epoch);
                    self.announce_pe(
                        UpdateAction::AddPe,
                        &pool_handle,
                        wire,
                        registrant.as_ref(),
                        epoch,
                    );
                }
                let (addresses, port, protocol, policy) = shown;
                self.outputs.push_back(Output::Event(Event::Registered {
                    pool_handle,
                    identifier,
                    identity: identity_text(&peer.identity),
                    new,
                    changed,
                    addresses,
                    port,
                    protocol,
                    policy,
                }));
            }
            Err(inc) => {
                let (cause, detail) = inconsistency_cause(&inc, &shown.0, shown.1);
                self.refused(
                    conn,
                    "ASAP_REGISTRATION",
                    Refusal::Inconsistent,
                    cause.code,
                    detail,
                );
                self.send(
                    conn,
                    AsapMessage::RegistrationResponse {
                        reject: true,
                        pool_handle,
                        identifier,
                        error: Some(OperationError::single(cause)),
                    },
                );
            }
        }
    }

    /// The checks before a registration touches the handlespace. On
    /// success the PE carries this registrar as home and the connection's
    /// source as its ASAP transport (RFC 5352 3.1 rule 4).
    pub(super) fn check_registration(
        &mut self,
        now: Instant,
        conn: ConnId,
        handle: &PoolHandle,
        pe: &mut PoolElement,
    ) -> Result<Client, RegistrationRefusal> {
        let peer = self
            .clients
            .get(&conn)
            .cloned()
            .ok_or(RegistrationRefusal::UnknownConnection)?;
        if peer.kind == ConnKind::AsapPoolUser {
            return Err(RegistrationRefusal::PoolUserListener);
        }
        if !peer.may_register {
            return Err(RegistrationRefusal::Anonymous);
        }
        if !self
            .limits
            .registrations
            .allow(&peer.identity, peer.address.ip(), now)
        {
            return Err(RegistrationRefusal::RateLimited);
        }
        // The authorised peer database (DESIGN section 4): the pool and
        // every address; its `own` scope is the own-address rule (RFC
        // 5355 2.3). Before the identity binding, so that an identity the
        // database denies learns nothing about the pool's PEs.
        let addresses = pe.user_transport.addresses();
        if addresses.is_empty() {
            return Err(ForeignAddress::NoAddresses.into());
        }
        self.may_register(&peer, handle, addresses)
            .map_err(RegistrationRefusal::Unauthorised)?;
        let existing = self.handlespace.find(handle, pe.identifier);
        if let Some(e) = existing {
            if e.identity.as_ref() != Some(&peer.identity) {
                return Err(RegistrationRefusal::AnotherIdentitysPe);
            }
        } else {
            let owned = self.handlespace.count_by_identity(&peer.identity);
            if owned >= self.config.max_pes_per_identity {
                return Err(RegistrationRefusal::TooManyPes { owned });
            }
        }
        // Registration life in milliseconds (RSPLIB's unit; DESIGN section 5).
        let life = i64::from(pe.registration_life);
        let (min, max) = (
            self.config.min_registration_life.as_millis() as i64,
            self.config.max_registration_life.as_millis() as i64,
        );
        if life < min || life > max {
            return Err(RegistrationRefusal::Lifetime { life, min, max });
        }
        pe.home_registrar = self.config.server_id;
        pe.asap_transport = Some(Transport::Tcp {
            port: peer.address.port(),
            transport_use: TransportUse::DataPlusControl,
            address: peer.address.ip(),
        });
        Ok(peer)
    }

    pub(super) fn refuse_registration(
        &mut self,
        conn: ConnId,
        pool_handle: PoolHandle,
        identifier: PeId,
        refusal: Refusal,
        cause: CauseCode,
        detail: String,
    ) {
        self.refused(conn, "ASAP_REGISTRATION", refusal, cause, detail);
        self.send(
            conn,
            AsapMessage::RegistrationResponse {
                reject: true,
                pool_handle,
                identifier,
                error: Some(OperationError::single(Cause::new(cause))),
            },
        );
    }

    pub(super) fn refused(
        &mut self,
        conn: ConnId,
        request: &'static str,
        refusal: Refusal,
        cause: CauseCode,
        detail: String,
    ) {
        match refusal {
            Refusal::Security => self.stats.refused_security += 1,
            Refusal::RateLimited => {
                self.stats.refused_rate_limited += 1;
                self.stats.rate_limited = self.limits.refused();
            }
            Refusal::Invalid => self.stats.refused_invalid += 1,
            Refusal::Inconsistent => self.stats.refused_inconsistent += 1,
        }
        let identity = self
            .clients
            .get(&conn)
            .map(|p| identity_text(&p.identity))
            .unwrap_or_default();
        self.outputs.push_back(Output::Event(Event::Refused {
            conn,
            identity,
            request,
            refusal,
            cause,
            detail,
        }));
    }

    // ----- RFC 5352 section 3.2: deregistration ------------------------------

    pub(super) fn deregistration(
        &mut self,
        now: Instant,
        conn: ConnId,
        pool_handle: PoolHandle,
        id: PeId,
    ) {
        let Some(peer) = self.clients.get(&conn).cloned() else {
            return;
        };
        let refusal = if peer.kind == ConnKind::AsapPoolUser {
            Some(DeregistrationRefusal::PoolUserListener)
        } else if !self
            .limits
            .registrations
            .allow(&peer.identity, peer.address.ip(), now)
        {
            Some(DeregistrationRefusal::RateLimited)
        } else {
            match self.handlespace.find(&pool_handle, id) {
                Some(e) if e.identity.as_ref() != Some(&peer.identity) => {
                    Some(DeregistrationRefusal::AnotherIdentitysPe)
                }
                _ => None,
            }
        };
        let error = match refusal {
            Some(r) => {
                let (refusal, cause) = r.kind();
                self.refused(conn, "ASAP_DEREGISTRATION", refusal, cause, r.to_string());
                Some(OperationError::single(Cause::new(cause)))
            }
            None => {
                // An unknown PE counts as deregistered (RFC 5352 3.2).
                if self.remove(&pool_handle, id, Removal::Deregistered) {
                    self.stats.deregistrations += 1;
                }
                None
            }
        };
        self.send(
            conn,
            AsapMessage::DeregistrationResponse {
                pool_handle,
                identifier: id,
                error,
            },
        );
    }

    /// Remove a PE with everything the core keeps about it.
    pub(super) fn remove(&mut self, handle: &PoolHandle, id: PeId, reason: Removal) -> bool {
        // Its keep-alive state, registrant and connection go with the
        // entry; the per-identity count is the handlespace's.
        let Some(e) = self.handlespace.deregister(handle, id) else {
            return false;
        };
        if e.home == self.config.server_id {
            // RFC 5353 3.3.2: the removal of an owned PE goes to the peers.
            self.announce_pe(
                UpdateAction::DelPe,
                handle,
                e.to_wire(),
                e.identity.as_ref(),
                e.epoch,
            );
        }
        self.outputs.push_back(Output::Event(Event::Removed {
            pool_handle: handle.clone(),
            identifier: id,
            reason,
        }));
        true
    }

    // ----- RFC 5352 section 3.3: handle resolution ---------------------------

    pub(super) fn resolution(
        &mut self,
        now: Instant,
        conn: ConnId,
        pool_handle: PoolHandle,
        items: Option<u32>,
    ) {
        let Some(peer) = self.clients.get(&conn) else {
            return;
        };
        let refusal = if !self.serves_pool_users() {
            Some(ResolutionRefusal::Initialising)
        } else if !self
            .limits
            .resolutions
            .allow(&peer.identity, peer.address.ip(), now)
        {
            Some(ResolutionRefusal::RateLimited)
        } else {
            // Whether this PU may see the pool: answered the same whether
            // the pool exists or not, so a denial tells nothing about it.
            self.may_use_pool(peer, &pool_handle, false)
                .err()
                .map(ResolutionRefusal::Unauthorised)
        };
        if let Some(r) = refusal {
            let (refusal, cause) = r.kind();
            if matches!(r, ResolutionRefusal::Unauthorised(_)) {
                self.stats.refused_unauthorised += 1;
            }
            self.refused(
                conn,
                "ASAP_HANDLE_RESOLUTION",
                refusal,
                cause,
                r.to_string(),
            );
            return self.send(
                conn,
                AsapMessage::HandleResolutionResponse {
                    accept_updates: false,
                    pool_handle,
                    policy: None,
                    pool_elements: Vec::new(),
                    error: Some(OperationError::single(Cause::new(cause))),
                },
            );
        }
        self.stats.resolutions += 1;
        let mut pool_elements = Vec::new();
        let found = self
            .handlespace
            .resolve_each(&pool_handle, items, &mut self.rng, |e| {
                pool_elements.push(e.to_wire())
            });
        let msg = match found {
            Some(_) => AsapMessage::HandleResolutionResponse {
                accept_updates: false,
                pool_handle,
                policy: pool_elements.first().map(|p| p.policy.clone()),
                pool_elements,
                error: None,
            },
            None => {
                let info = pool_handle.as_bytes().to_vec();
                AsapMessage::HandleResolutionResponse {
                    accept_updates: false,
                    pool_handle,
                    policy: None,
                    pool_elements: Vec::new(),
                    error: Some(OperationError::single(Cause::with_info(
                        CauseCode::UnknownPoolHandle,
                        info,
                    ))),
                }
            }
        };
        self.send(conn, msg);
    }

    // ----- RFC 5352 sections 3.4, 3.5: keep-alives, unreachable reports -----

    pub(super) fn keep_alive_ack(
        &mut self,
        now: Instant,
        conn: ConnId,
        handle: PoolHandle,
        id: PeId,
    ) {
        // An ack on another connection than the PE's names a standby link.
        self.standby_claim(conn, &handle, id);
        let Some(peer) = self.clients.get(&conn) else {
            return;
        };
        // Only the registrant may vouch for its PE: an ack from anyone else
        // would keep a dead PE alive.
        let Some(pe) = self.handlespace.locate(&handle, id) else {
            return;
        };
        match self.handlespace.get(pe) {
            Some(e) if e.identity.as_ref() == Some(&peer.identity) => {}
            _ => return,
        }
        let over_its_connection = self
            .handlespace
            .get(pe)
            .is_some_and(|e| e.home == self.config.server_id && e.connection == Some(conn));
        if over_its_connection && self.enrp.reclaiming.remove(&(handle.clone(), id)) {
            // Still with us, over its own connection, after this
            // registrar was stopped: reclaim it (takeover module,
            // `note_stall`) with epoch + 2, as a registration from
            // another home, so that it beats a takeover made meanwhile.
            // (An ack over a standby link proves it alive, not homed
            // here.)
            if let Some(e) = self.handlespace.get(pe) {
                let (wire, registrant, epoch) = (e.to_wire(), e.identity.clone(), e.epoch + 2);
                self.handlespace.set_epoch_at(pe, epoch);
                self.announce_pe(
                    UpdateAction::AddPe,
                    &handle,
                    wire,
                    registrant.as_ref(),
                    epoch,
                );
            }
        }
        let Some(probe) = self.handlespace.keep_alive_at(pe) else {
            return;
        };
        if probe.outstanding {
            if let Some(reporters) = probe.alive() {
                // RFC 5352 3.5: a PE that answers stays, whatever was
                // reported (RFC 5355 2.13: reports are hints).
                self.stats.unreachable_refuted += 1;
                self.outputs.push_back(Output::Event(Event::ReportsRefuted {
                    pool_handle: handle.clone(),
                    identifier: id,
                    reporters,
                }));
            }
            let due = now + self.keep_alive_interval();
            self.handlespace
                .set_deadline_at(pe, DeadlineKind::KeepAlive, Some(due));
        }
    }

    /// RFC 5352 3.5 with RFC 5355 2.13: a report is a hint. Reports from
    /// MAX-BAD-PE-REPORT distinct reporters within the window make the
    /// registrar probe the PE (within the per-PE keep-alive limit of
    /// 2.14); only a probe that goes unanswered removes it. Reporters are
    /// told apart by identity; anonymous ones by source address (/64),
    /// and only if [`CoreConfig::count_anonymous_reports`] says so.
    pub(super) fn unreachable(&mut self, now: Instant, conn: ConnId, handle: PoolHandle, id: PeId) {
        let Some(peer) = self.clients.get(&conn) else {
            return;
        };
        let refusal = if peer.is_anonymous() && !self.config.count_anonymous_reports {
            Some(ReportRefusal::AnonymousNotCounted)
        } else if !self
            .limits
            .reports
            .allow(&peer.reporter, peer.address.ip(), now)
        {
            Some(ReportRefusal::RateLimited)
        } else {
            self.may_use_pool(peer, &handle, true)
                .err()
                .map(ReportRefusal::Unauthorised)
        };
        if let Some(r) = refusal {
            let (refusal, cause) = r.kind();
            if matches!(r, ReportRefusal::Unauthorised(_)) {
                self.stats.refused_unauthorised += 1;
            }
            self.refused(
                conn,
                "ASAP_ENDPOINT_UNREACHABLE",
                refusal,
                cause,
                r.to_string(),
            );
            return self.send_error(conn, Cause::new(cause));
        }
        let reporter = peer.reporter.clone();
        let Some(pe) = self.handlespace.locate(&handle, id) else {
            return;
        };
        match self.handlespace.get(pe) {
            None => return,
            // RFC 5353 (and 5352 3.5): the home registrar checks its PEs;
            // a report on another registrar's PE is not this one's to act
            // on, unless that home is gone and was not taken over (no
            // majority): then nobody can check it, and the reports count
            // as for a PE of ours with no connection.
            Some(e) if e.home != self.config.server_id && self.peer_is_up(e.home) => {
                tracing::debug!(
                    conn = conn.get(),
                    home = e.home.get(),
                    "unreachable report on a PE homed elsewhere"
                );
                return;
            }
            Some(_) => {}
        }
        self.stats.unreachable_reports += 1;
        let (window, max) = (
            self.config.bad_pe_report_window,
            self.config.max_bad_pe_reports,
        );
        let Some(probe) = self.handlespace.keep_alive_at(pe) else {
            return;
        };
        if probe.report(reporter, now, window, max) < max {
            return;
        }
        let reporters = probe.reporters();
        let unconnected = self
            .handlespace
            .get(pe)
            .is_some_and(|e| e.connection.is_none());
        if unconnected {
            self.outputs
                .push_back(Output::Event(Event::ReportedUnreachable {
                    pool_handle: handle.clone(),
                    identifier: id,
                    reporters,
                    check: ReportCheck::Unconnected,
                }));
            if self.remove(&handle, id, Removal::Unreachable) {
                self.stats.unreachable_removals += 1;
            }
            return;
        }
        let Some(probe) = self.handlespace.keep_alive_at(pe) else {
            return;
        };
        let check = if probe.outstanding {
            // A keep-alive is out already: its answer decides.
            probe.reported = true;
            ReportCheck::Outstanding
        } else if self.probe(now, handle.clone(), pe) {
            if let Some(p) = self.handlespace.keep_alive_at(pe) {
                p.reported = true;
            }
            self.stats.unreachable_probes += 1;
            ReportCheck::Probing
        } else {
            ReportCheck::Limited
        };
        self.outputs
            .push_back(Output::Event(Event::ReportedUnreachable {
                pool_handle: handle,
                identifier: id,
                reporters,
                check,
            }));
    }

    /// Send a keep-alive to a PE unless one is outstanding or the per-PE
    /// limit is reached (RFC 5355 2.14). Returns whether a probe was armed
    /// (and with it the PE's keep-alive deadline).
    pub(super) fn probe(&mut self, now: Instant, handle: PoolHandle, pe: PeRef) -> bool {
        // Only the home registrar sends keep-alives (RFC 5352 3.5).
        let Some((id, conn)) = self
            .handlespace
            .get(pe)
            .filter(|e| e.home == self.config.server_id)
            .map(|e| (e.identifier, e.connection))
        else {
            return false;
        };
        let window = self.config.keep_alive_interval;
        let max = self.config.max_keep_alives_per_interval;
        let Some(probe) = self.handlespace.keep_alive_at(pe) else {
            return false;
        };
        if probe.outstanding || !probe.may_send(now, window, max) {
            return false;
        }
        probe.outstanding = true;
        let due = now + self.config.keep_alive_timeout;
        self.handlespace
            .set_deadline_at(pe, DeadlineKind::KeepAlive, Some(due));
        match conn.filter(|c| self.clients.contains_key(c)) {
            Some(conn) => {
                self.stats.keep_alives_sent += 1;
                self.send(
                    conn,
                    AsapMessage::EndpointKeepAlive {
                        home: false,
                        server_id: self.config.server_id,
                        pool_handle: handle,
                        identifier: Some(id),
                    },
                );
            }
            // Rechecked after a stall with its connection gone: this
            // registrar's claim is stale (the PE moved, or lost it), so
            // no call home; it goes at the deadline, and peers that know
            // another home refuse the removal.
            None if self.enrp.reclaiming.contains(&(handle.clone(), id)) => {}
            // Not connected here (it came with a takeover, or its
            // connection closed): only a standby link can reach it, with
            // the call home; unanswered, it goes at the deadline.
            None => self.call_home(&[(handle, id)]),
        }
        true
    }

    /// The connection of PEs closed: they stay registered but can no
    /// longer be probed, so each must re-register over a new connection
    /// within the keep-alive timeout or it is removed.
    pub(super) fn orphan_pes(&mut self, now: Instant, conn: ConnId) {
        let orphans: Vec<(PoolHandle, PeId)> = self
            .handlespace
            .by_connection(conn)
            .map(|(h, e)| (h.clone(), e.identifier))
            .collect();
        self.await_reregistration(now, orphans);
    }

    /// PEs this registrar is home to but cannot probe (their connection
    /// closed, or they came with a takeover): each must register over a
    /// connection within the keep-alive timeout or it is removed.
    pub(super) fn await_reregistration(&mut self, now: Instant, orphans: Vec<(PoolHandle, PeId)>) {
        let due = now + self.config.keep_alive_timeout;
        for (handle, id) in orphans {
            let Some(probe) = self.handlespace.keep_alive_mut(&handle, id) else {
                continue;
            };
            if !probe.outstanding {
                probe.outstanding = true;
                self.handlespace
                    .set_deadline(&handle, id, DeadlineKind::KeepAlive, Some(due));
            }
        }
    }

    /// A deadline of a PE passed (RFC 5352 3.2 lifetime, 3.4/3.5
    /// keep-alive; an operator's drain timeout).
    pub(super) fn pe_deadline(&mut self, now: Instant, exp: Expired) {
        let (handle, id, pe) = (exp.pool_handle, exp.identifier, exp.pe);
        let Some(home) = self.handlespace.get(pe).map(|e| e.home) else {
            return;
        };
        // RFC 5353: the home registrar is responsible for its PEs; only
        // it ends a registration life or removes a PE that does not
        // answer; a peer's PE goes when its home says so or is taken
        // over, except that a PE whose home is gone (not a peer up:
        // down and not taken over) ends with its registration life.
        let orphan = exp.kind == DeadlineKind::Lifetime && !self.peer_is_up(home);
        if home != self.config.server_id && exp.kind != DeadlineKind::Drain && !orphan {
            return;
        }
        match exp.kind {
            DeadlineKind::Lifetime => {
                let conn = self.handlespace.get(pe).and_then(|e| e.connection);
                if self.remove(&handle, id, Removal::LifetimeExpired) {
                    self.stats.lifetime_expiries += 1;
                    // RFC 5352 3.2: tell the PE it was removed.
                    if let Some(conn) = conn.filter(|c| self.clients.contains_key(c)) {
                        self.send(
                            conn,
                            AsapMessage::DeregistrationResponse {
                                pool_handle: handle,
                                identifier: id,
                                error: None,
                            },
                        );
                    }
                }
            }
            DeadlineKind::Drain => {
                // No message tells the PE (see `operator`).
                if self.remove(&handle, id, Removal::DrainTimeout) {
                    self.stats.drain_timeout_removals += 1;
                }
            }
            DeadlineKind::KeepAlive => {
                let probe = self
                    .handlespace
                    .get(pe)
                    .and_then(|e| e.keep_alive.as_deref());
                let outstanding = probe.is_some_and(|p| p.outstanding);
                if outstanding {
                    if probe.is_some_and(|p| p.reported) {
                        self.stats.unreachable_removals += 1;
                        self.remove(&handle, id, Removal::Unreachable);
                    } else {
                        self.stats.keep_alive_failures += 1;
                        self.remove(&handle, id, Removal::KeepAliveTimeout);
                    }
                } else if !self.probe(now, handle, pe) {
                    // Over the per-PE limit: try again next interval.
                    let due = now + self.keep_alive_interval();
                    self.handlespace
                        .set_deadline_at(pe, DeadlineKind::KeepAlive, Some(due));
                }
            }
        }
    }

    /// A keep-alive interval drawn from 50..150 % of the configured one
    /// (RFC 5352 3.5: spread the keep-alive traffic).
    pub(super) fn keep_alive_interval(&mut self) -> Duration {
        self.config
            .keep_alive_interval
            .mul_f64(self.rng.random_range(0.5..1.5))
    }
}

/// Why a registration is refused before it reaches the handlespace (RFC
/// 5352 3.1; RFC 5355 2.1, 2.3): the reason of the log and the event (its
/// Display), its class ([`Refusal`]) and the cause sent back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum RegistrationRefusal {
    #[error("unknown connection")]
    UnknownConnection,
    #[error("an anonymous client may not register (RFC 5355 2.1)")]
    Anonymous,
    #[error("this listener serves pool users only: no registrations")]
    PoolUserListener,
    #[error("registration rate limit")]
    RateLimited,
    #[error("the PE identifier belongs to another identity")]
    AnotherIdentitysPe,
    #[error("identity already has {owned} PEs registered")]
    TooManyPes { owned: usize },
    #[error("registration life {life} ms is outside {min}..={max} ms")]
    Lifetime { life: i64, min: i64, max: i64 },
    /// A transport the database cannot check.
    #[error(transparent)]
    ForeignAddress(#[from] ForeignAddress),
    /// The authorised peer database denies it (the pool, an address, or
    /// the identity; its `own` address scope is the own-address rule).
    #[error(transparent)]
    Unauthorised(super::authorisation::Unauthorised),
}

impl RegistrationRefusal {
    /// Its class and the cause sent back.
    fn kind(&self) -> (Refusal, CauseCode) {
        match self {
            Self::UnknownConnection
            | Self::Anonymous
            | Self::PoolUserListener
            | Self::AnotherIdentitysPe
            | Self::ForeignAddress(_)
            | Self::Unauthorised(_) => (Refusal::Security, CauseCode::RejectedSecurity),
            Self::RateLimited | Self::TooManyPes { .. } => {
                (Refusal::RateLimited, CauseCode::LackOfResources)
            }
            Self::Lifetime { .. } => (Refusal::Invalid, CauseCode::InvalidValues),
        }
    }
}

/// Why registered addresses cannot be checked against the authorised
/// peer database (whose `own` scope is the own-address rule, DESIGN
/// section 4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum ForeignAddress {
    #[error("a transport without addresses cannot be checked against the source")]
    NoAddresses,
}

/// Why a deregistration is refused (RFC 5352 3.2; RFC 5355 2.1, 2.2): the
/// reason of the log and the event (its Display), its class
/// ([`Refusal`]) and the cause sent back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum DeregistrationRefusal {
    #[error("this listener serves pool users only: no deregistrations")]
    PoolUserListener,
    #[error("deregistration rate limit")]
    RateLimited,
    #[error("the PE identifier belongs to another identity")]
    AnotherIdentitysPe,
}

impl DeregistrationRefusal {
    /// Its class and the cause sent back.
    fn kind(&self) -> (Refusal, CauseCode) {
        match self {
            Self::PoolUserListener | Self::AnotherIdentitysPe => {
                (Refusal::Security, CauseCode::RejectedSecurity)
            }
            Self::RateLimited => (Refusal::RateLimited, CauseCode::LackOfResources),
        }
    }
}

/// Why a handle resolution is refused: its rate limits per identity and
/// per address ([`crate::CoreConfig::resolution_rate`],
/// [`crate::CoreConfig::resolution_rate_per_address`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum ResolutionRefusal {
    #[error("handle resolution rate limit")]
    RateLimited,
    /// RFC 5353 3.2.3 step 5: the handle table from the mentor is not
    /// downloaded yet; the pool user asks another registrar.
    #[error("starting: the handle table download from a peer registrar is not complete")]
    Initialising,
    /// The authorised peer database does not let it see the pool.
    #[error(transparent)]
    Unauthorised(super::authorisation::Unauthorised),
}

impl ResolutionRefusal {
    /// Its class and the cause sent back.
    fn kind(&self) -> (Refusal, CauseCode) {
        match self {
            Self::RateLimited | Self::Initialising => {
                (Refusal::RateLimited, CauseCode::LackOfResources)
            }
            Self::Unauthorised(_) => (Refusal::Security, CauseCode::RejectedSecurity),
        }
    }
}

/// Why an endpoint unreachable report is not counted (RFC 5352 3.5,
/// RFC 5355 2.13).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum ReportRefusal {
    #[error(
        "reports from unauthenticated pool users are not counted \
         (count_anonymous_reports is off)"
    )]
    AnonymousNotCounted,
    #[error("unreachable report rate limit (RFC 5355 2.13)")]
    RateLimited,
    /// The authorised peer database does not let it report in the pool.
    #[error(transparent)]
    Unauthorised(super::authorisation::Unauthorised),
}

impl ReportRefusal {
    /// Its class and the cause sent back.
    fn kind(&self) -> (Refusal, CauseCode) {
        match self {
            Self::AnonymousNotCounted | Self::Unauthorised(_) => {
                (Refusal::Security, CauseCode::RejectedSecurity)
            }
            Self::RateLimited => (Refusal::RateLimited, CauseCode::LackOfResources),
        }
    }
}

/// The cause that refuses an inconsistent registration, with the
/// cause-specific information RFC 5354 asks for: the pool's Pool Member
/// Selection Policy parameter (3.12.6) or a transport of the pool's type
/// (3.12.8); the data/control cause has none (3.12.9). And the detail for
/// the log. What the registrant learns is the pool's policy and transport
/// *type*: the member the handlespace compared with gives its type, but
/// not its policy values (zeroed) nor its addresses and port (the
/// registrant's own `addresses` and `port` stand in), since a registrant
/// need not be allowed to resolve the pool.
fn inconsistency_cause(inc: &Inconsistency, addresses: &[IpAddr], port: u16) -> (Cause, String) {
    let tlv = |r: Result<Vec<u8>, rserpool_wire::EncodeError>| {
        // What came off the wire encodes; should it not, the code alone.
        r.unwrap_or_default()
    };
    match inc {
        Inconsistency::Policy(p) => {
            let mut info = tlv(p.to_tlv());
            // Type (2), length (2), policy type (4), then the values.
            if let Some(values) = info.get_mut(8..) {
                values.fill(0);
            }
            (
                Cause::with_info(CauseCode::InconsistentPoolingPolicy, info),
                format!("the pool uses policy {}", p.name()),
            )
        }
        Inconsistency::Transport(t) => (
            Cause::with_info(
                CauseCode::InconsistentTransportType,
                tlv(transport_like(t, addresses, port).to_tlv()),
            ),
            format!(
                "the pool uses {} transports (type {:#06x})",
                protocol_name(t),
                t.param_type()
            ),
        ),
        Inconsistency::DataControl => (
            Cause::new(CauseCode::InconsistentDataControlConfiguration),
            "the pool uses the other data/control configuration".to_string(),
        ),
    }
}

/// A transport of `pool`'s type and transport use with `addresses` and
/// `port` instead of the pool member's.
fn transport_like(pool: &Transport, addresses: &[IpAddr], port: u16) -> Transport {
    let address = addresses
        .first()
        .copied()
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    match pool {
        Transport::Sctp { transport_use, .. } => Transport::Sctp {
            port,
            transport_use: *transport_use,
            addresses: if addresses.is_empty() {
                vec![address]
            } else {
                addresses.to_vec()
            },
        },
        Transport::Tcp { transport_use, .. } => Transport::Tcp {
            port,
            transport_use: *transport_use,
            address,
        },
        Transport::Udp { .. } => Transport::Udp { port, address },
        Transport::UdpLite { .. } => Transport::UdpLite { port, address },
        Transport::Dccp { .. } => Transport::Dccp {
            port,
            service_code: 0,
            address,
        },
        Transport::Opaque { .. } => Transport::Opaque { data: Vec::new() },
    }
}

#[cfg(test)]
mod refusal_tests {
    use super::*;

    /// The log text (Display) and the wire cause of every refusal, as the
    /// events and the logs have always shown them.
    #[test]
    fn refusals_keep_their_text_and_cause() {
        let (sec, rate) = (
            (Refusal::Security, CauseCode::RejectedSecurity),
            (Refusal::RateLimited, CauseCode::LackOfResources),
        );
        assert_eq!(
            RegistrationRefusal::from(ForeignAddress::NoAddresses).kind(),
            sec
        );
        assert_eq!(
            RegistrationRefusal::from(ForeignAddress::NoAddresses).to_string(),
            "a transport without addresses cannot be checked against the source"
        );
        for (r, text, kind) in [
            (
                DeregistrationRefusal::PoolUserListener,
                "this listener serves pool users only: no deregistrations",
                sec,
            ),
            (
                DeregistrationRefusal::RateLimited,
                "deregistration rate limit",
                rate,
            ),
            (
                DeregistrationRefusal::AnotherIdentitysPe,
                "the PE identifier belongs to another identity",
                sec,
            ),
        ] {
            assert_eq!((r.to_string().as_str(), r.kind()), (text, kind));
        }
        let r = ResolutionRefusal::RateLimited;
        assert_eq!(
            (r.to_string().as_str(), r.kind()),
            ("handle resolution rate limit", rate)
        );
        for (r, text, kind) in [
            (
                ReportRefusal::AnonymousNotCounted,
                "reports from unauthenticated pool users are not counted \
                 (count_anonymous_reports is off)",
                sec,
            ),
            (
                ReportRefusal::RateLimited,
                "unreachable report rate limit (RFC 5355 2.13)",
                rate,
            ),
        ] {
            assert_eq!((r.to_string().as_str(), r.kind()), (text, kind));
        }
    }
}
