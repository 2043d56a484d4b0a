//! The pool user's ASAP state machine, sans-IO (RFC 5352 sections 3.3,
//! 3.5, 3.6 and 3.7): the handle resolution cache with its stale timeout
//! (C1-C4), outstanding resolutions with T1 retransmissions and failover
//! to another registrar, the choice of one PE by the pool's policy with
//! local failure marks ([`PoolUserSelection`]), and unreachable reports
//! limited per PE and in all (RFC 5355 2.13). Time is an input; sockets
//! are the driver's ([`crate::PoolUser`]).
//!
//! Resolutions of one handle asked while one is outstanding share it.
//! A stale cache entry blocks the caller until it is refreshed (C3); if no
//! registrar answers, a stale entry is used rather than nothing (when
//! [`PoolUserSettings::serve_stale_on_failure`] is set).
//!
//! Registrars learned from announcements ([`PuCore::handle_datagram`],
//! opt-in) join the hunt after the configured ones, bounded and expiring
//! ([`crate::registrars`]); they are authenticated like any registrar.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use rand::rngs::SmallRng;
use rand::SeedableRng;
use rserpool_handlespace::PoolUserSelection;
use rserpool_wire::{AsapMessage, CauseCode, OperationError, PeId, PoolElement, PoolHandle};

use crate::announce::{AnnounceStats, Announcements};
use crate::config::{AnnounceConfig, PoolUserSettings, ReportLimits, Timers};
use crate::error::{ClientError, ConnectFailure, RegistrarFailure};
use crate::hunt::Hunter;
use crate::inbound::{take_frame, Inbound};
use crate::{ConnId, Connected, Discovery, LinkAction};

/// Names one waiting caller of a [`PuCore`].
pub type Token = u64;

/// What the core asks of its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PuOutput {
    /// Connect, send or close on the registrar link; a connection attempt
    /// is answered with [`PuCore::handle_connected`] or
    /// [`PuCore::handle_connect_failed`].
    Link(LinkAction),
    /// The answer to [`PuCore::resolve`].
    Resolved {
        /// The caller.
        token: Token,
        /// The PEs of the pool, as the registrar listed them.
        result: Result<Vec<PoolElement>, ClientError>,
    },
    /// The answer to [`PuCore::select`].
    Selected {
        /// The caller.
        token: Token,
        /// The PE to use.
        result: Result<PoolElement, ClientError>,
    },
}

impl From<LinkAction> for PuOutput {
    fn from(a: LinkAction) -> Self {
        PuOutput::Link(a)
    }
}

/// What became of an unreachable report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportOutcome {
    /// ASAP_ENDPOINT_UNREACHABLE is sent (or will be, once a registrar is
    /// connected).
    Reported,
    /// This PE was reported less than
    /// [`ReportLimits::per_pe_interval`] ago: one report per event (RFC
    /// 5352 3.5).
    AlreadyReported,
    /// Too many reports in the last second (RFC 5355 2.13).
    RateLimited,
    /// The PE is not in a resolution this user got: RFC 5352 3.5 allows
    /// reports only of PEs the user was sent to. It is still skipped
    /// locally.
    NotResolved,
}

#[derive(Debug, Clone)]
struct CacheEntry {
    /// The registrar that answered.
    registrar: SocketAddr,
    /// The PEs it handed out: none when every PE of the pool is drained
    /// (the pool exists; an unknown one is an error).
    elements: Vec<PoolElement>,
    selection: PoolUserSelection,
    fetched_at: Instant,
    stale_at: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiter {
    Resolve(Token),
    Select(Token),
}

#[derive(Debug, Clone)]
struct Request {
    pool_handle: PoolHandle,
    waiters: Vec<Waiter>,
    /// T1, while sent on the current connection.
    deadline: Option<Instant>,
    /// Transmissions on the current connection.
    sent: u32,
    /// The registrars it failed at.
    failures: Vec<RegistrarFailure>,
    /// Whether all of them failed by not answering.
    all_timeouts: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// No connection (the hunter may be making one).
    Down,
    Up {
        conn: ConnId,
        registrar: SocketAddr,
        /// Frames on it that did not decode.
        malformed: u32,
    },
}

/// A token bucket: `rate` per second, at most `rate` at once.
#[derive(Debug, Clone)]
struct Bucket {
    rate: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl Bucket {
    fn new(per_second: u32) -> Self {
        Bucket {
            rate: f64::from(per_second),
            tokens: f64::from(per_second),
            last: None,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last {
            let elapsed = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Bounds of the per-PE bookkeeping (pruned of expired entries beyond).
const MAX_MARKS: usize = 4096;

/// The pool user core.
#[derive(Debug)]
pub struct PuCore {
    timers: Timers,
    settings: PoolUserSettings,
    limits: ReportLimits,
    rng: SmallRng,
    link: Link,
    hunter: Hunter,
    cache: BTreeMap<PoolHandle, CacheEntry>,
    requests: Vec<Request>,
    /// PEs reported unreachable: skipped until then.
    failed: BTreeMap<(PoolHandle, PeId), Instant>,
    /// When each PE was last reported.
    reported: BTreeMap<(PoolHandle, PeId), Instant>,
    bucket: Bucket,
    pending_reports: VecDeque<AsapMessage>,
    outputs: VecDeque<PuOutput>,
    announcements: Announcements,
}

impl PuCore {
    /// A core that hunts over `registrars` (in this order) with these
    /// timers, settings and report limits; `seed` seeds the random
    /// selection policies.
    pub fn new(
        registrars: Vec<SocketAddr>,
        timers: Timers,
        settings: PoolUserSettings,
        limits: ReportLimits,
        seed: u64,
    ) -> Self {
        PuCore {
            timers,
            settings,
            limits,
            hunter: Hunter::new(registrars, &timers),
            rng: SmallRng::seed_from_u64(seed),
            link: Link::Down,
            cache: BTreeMap::new(),
            requests: Vec::new(),
            failed: BTreeMap::new(),
            reported: BTreeMap::new(),
            bucket: Bucket::new(limits.max_per_second),
            pending_reports: VecDeque::new(),
            outputs: VecDeque::new(),
            announcements: Announcements::new(),
        }
    }

    /// Learn registrars from ASAP_SERVER_ANNOUNCE as `config` says (RFC
    /// 5352 3.6); the driver then gives the datagrams of the group to
    /// [`PuCore::handle_datagram`].
    pub fn enable_announcements(&mut self, config: &AnnounceConfig) {
        self.announcements.enable(config, &mut self.hunter);
    }

    /// A datagram arrived from `from` on the announce group: an
    /// ASAP_SERVER_ANNOUNCE adds its registrar to the list (bounded, see
    /// [`crate::registrars`]); anything else, or what does not decode, is
    /// dropped and counted. The connection in use is not touched.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let added = self
            .announcements
            .handle_datagram(now, from, bytes, &mut self.hunter);
        self.after_learning(now, added);
    }

    /// A decoded message arrived from `from` on the announce group (as
    /// [`PuCore::handle_datagram`]).
    pub fn handle_announcement(&mut self, now: Instant, from: SocketAddr, message: AsapMessage) {
        let added = self
            .announcements
            .handle_message(now, from, message, &mut self.hunter);
        self.after_learning(now, added);
    }

    /// A hunt waiting for T5 tries a newly learned registrar at once.
    fn after_learning(&mut self, now: Instant, added: bool) {
        if added {
            if let Some(pass) = self.hunter.wake(now, &mut self.outputs) {
                self.hunt_pass_failed(&pass);
            }
        }
    }

    /// The announce channel's counters.
    pub fn announce_stats(&self) -> AnnounceStats {
        self.announcements.stats(&self.hunter)
    }

    /// The registrar list (configured, then learned) and the counters.
    pub fn discovery(&self) -> Discovery {
        Discovery {
            registrars: self.hunter.entries(),
            stats: self.announcements.stats(&self.hunter),
            home_changes_refused: 0,
        }
    }

    /// Resolve `pool_handle`: from the cache unless stale (RFC 5352 3.3
    /// C1, C4), else by asking a registrar (C2, C3). The answer comes as
    /// [`PuOutput::Resolved`].
    pub fn resolve(&mut self, now: Instant, token: Token, pool_handle: PoolHandle) {
        if let Some(e) = self.cache.get(&pool_handle) {
            if now < e.stale_at {
                let result = Ok(e.elements.clone());
                self.outputs.push_back(PuOutput::Resolved { token, result });
                return;
            }
        }
        self.enqueue(now, pool_handle, Waiter::Resolve(token));
    }

    /// Pick one PE of `pool_handle` by the pool's policy, skipping PEs
    /// reported unreachable; resolves first if the cache entry is stale
    /// or every PE of it failed. The answer comes as
    /// [`PuOutput::Selected`].
    pub fn select(&mut self, now: Instant, token: Token, pool_handle: PoolHandle) {
        if let Some(e) = self.cache.get_mut(&pool_handle) {
            if now < e.stale_at {
                if let Some(pe) = e.selection.select(&mut self.rng) {
                    let result = Ok(pe.clone());
                    self.outputs.push_back(PuOutput::Selected { token, result });
                    return;
                }
            }
        }
        self.enqueue(now, pool_handle, Waiter::Select(token));
    }

    /// The application found PE `identifier` of `pool_handle` unreachable
    /// (RFC 5352 3.5, 6.9.2): skip it locally, invalidate the cache entry,
    /// and report it to a registrar within the limits.
    pub fn report_unreachable(
        &mut self,
        now: Instant,
        pool_handle: &PoolHandle,
        identifier: PeId,
    ) -> ReportOutcome {
        let key = (pool_handle.clone(), identifier);
        if self.failed.len() >= MAX_MARKS {
            self.failed.retain(|_, until| *until > now);
        }
        if self.failed.len() < MAX_MARKS || self.failed.contains_key(&key) {
            self.failed
                .insert(key.clone(), now + self.settings.failed_pe_memory);
        }
        let known = match self.cache.get_mut(pool_handle) {
            Some(e) => {
                e.stale_at = e.stale_at.min(now);
                e.selection.mark_failed(identifier)
            }
            None => false,
        };
        if !known {
            return ReportOutcome::NotResolved;
        }
        if let Some(last) = self.reported.get(&key) {
            if now < *last + self.limits.per_pe_interval {
                return ReportOutcome::AlreadyReported;
            }
        }
        if !self.bucket.take(now) {
            tracing::debug!("unreachable report of PE {identifier:#010x} suppressed: rate limit");
            return ReportOutcome::RateLimited;
        }
        if self.reported.len() >= MAX_MARKS {
            let interval = self.limits.per_pe_interval;
            self.reported.retain(|_, last| now < *last + interval);
        }
        self.reported.insert(key, now);
        let message = AsapMessage::EndpointUnreachable {
            pool_handle: pool_handle.clone(),
            identifier,
        };
        match self.link {
            Link::Up { conn, .. } => self
                .outputs
                .push_back(LinkAction::Send { conn, message }.into()),
            _ => {
                if self.pending_reports.len() >= (self.limits.max_per_second as usize).max(1) {
                    self.pending_reports.pop_front();
                }
                self.pending_reports.push_back(message);
                self.hunt(now);
            }
        }
        ReportOutcome::Reported
    }

    /// Forget the cache entry of `pool_handle` (RFC 5352 6.4).
    pub fn purge(&mut self, pool_handle: &PoolHandle) {
        self.cache.remove(pool_handle);
    }

    /// The cached PEs of `pool_handle` and whether they are still fresh.
    pub fn cached(&self, now: Instant, pool_handle: &PoolHandle) -> Option<(&[PoolElement], bool)> {
        self.cache
            .get(pool_handle)
            .map(|e| (e.elements.as_slice(), now < e.stale_at))
    }

    /// The driver made connection `conn`, which the core asked for
    /// ([`LinkAction::Connect`]): outstanding requests and reports go
    /// there (RFC 5352 3.7.1: requests are re-sent to the new registrar).
    /// A connection the core no longer wants is closed.
    pub fn handle_connected(&mut self, now: Instant, conn: ConnId, connected: Connected) {
        let Some(registrar) = self.hunter.connected(conn) else {
            self.outputs.push_back(LinkAction::Close { conn }.into());
            return;
        };
        if let Link::Up { conn: old, .. } = self.link {
            self.outputs
                .push_back(LinkAction::Close { conn: old }.into());
        }
        tracing::debug!(%registrar, security = %connected.security, "connected to a registrar");
        self.link = Link::Up {
            conn,
            registrar,
            malformed: 0,
        };
        for i in 0..self.requests.len() {
            self.requests[i].sent = 0;
            self.transmit(now, i, conn);
        }
        while let Some(message) = self.pending_reports.pop_front() {
            self.outputs
                .push_back(LinkAction::Send { conn, message }.into());
        }
    }

    /// Connection `conn` ended. Requests sent on it count a failure of
    /// that registrar and go to the next one.
    pub fn handle_disconnected(&mut self, now: Instant, conn: ConnId, reason: &str) {
        let Link::Up {
            conn: current,
            registrar,
            ..
        } = self.link
        else {
            return;
        };
        if current != conn {
            return;
        }
        // Closed before it answered, while a request waited for its
        // answer or after an error: the registrar refused (a connection
        // that only carried reports, which have no answer, just ended).
        let refused = self.hunter.was_refused()
            || (self.hunter.awaiting_answer() && !self.requests.is_empty());
        let reason = self.hunter.close_reason(reason);
        if self.requests.is_empty() {
            tracing::debug!(%registrar, "registrar connection ended: {reason}");
        } else {
            tracing::warn!(%registrar, "registrar connection lost: {reason}");
        }
        self.link = Link::Down;
        if refused {
            // RFC 5352 3.6 SH4: a connection closed before any answer is a
            // failed attempt of the hunt (T5 back-off), not a connection.
            let failure = ConnectFailure::new(reason.clone(), None);
            if let Some(pass) = self.hunter.lost_unconfirmed(failure) {
                return self.hunt_pass_failed(&pass);
            }
        } else {
            // It served (reports need no answer): the hunt that made it
            // is over.
            self.hunter.confirmed();
        }
        self.move_requests(now, registrar, &reason, false);
    }

    /// The driver could not make connection `conn` (RFC 5352 3.6 SH4):
    /// the hunt tries the next registrar.
    pub fn handle_connect_failed(&mut self, now: Instant, conn: ConnId, failure: ConnectFailure) {
        if let Some(pass) = self
            .hunter
            .connect_failed(now, conn, failure, &mut self.outputs)
        {
            self.hunt_pass_failed(&pass);
        }
    }

    /// A pass of the server hunt failed: every waiting caller gets
    /// [`ClientError::NoRegistrar`] (or a stale answer), and waiting
    /// reports are dropped. The next request starts a fresh round at once.
    fn hunt_pass_failed(&mut self, failures: &[RegistrarFailure]) {
        self.hunter.stop(true, &mut self.outputs);
        if !self.pending_reports.is_empty() {
            tracing::warn!(
                "dropping {} unreachable reports: no registrar reachable",
                self.pending_reports.len()
            );
            self.pending_reports.clear();
        }
        let error = ClientError::NoRegistrar(failures.to_vec());
        for r in std::mem::take(&mut self.requests) {
            self.fail(r.pool_handle, r.waiters, error.clone());
        }
    }

    /// A frame arrived on connection `conn` (one ASAP message, as
    /// [`rserpool_wire::framing::ChannelCodec`] cuts them). What does not
    /// decode is reported and skipped; a registrar that keeps sending
    /// such frames is given up (module `inbound`).
    pub fn handle_frame(&mut self, now: Instant, conn: ConnId, frame: &[u8]) {
        let Link::Up {
            conn: current,
            registrar,
            ref mut malformed,
            ..
        } = self.link
        else {
            return;
        };
        if conn != current {
            return;
        }
        match take_frame(conn, registrar, frame, malformed, &mut self.outputs) {
            Inbound::Message(m) => self.handle_message(now, conn, m),
            Inbound::Skipped => {}
            Inbound::GiveUp(reason) => self.give_registrar_up(now, conn, registrar, &reason),
        }
    }

    /// A message arrived on connection `conn`.
    pub fn handle_message(&mut self, now: Instant, conn: ConnId, message: AsapMessage) {
        let Link::Up {
            conn: current,
            registrar,
            ..
        } = self.link
        else {
            return;
        };
        if conn != current {
            return;
        }
        self.hunter.heard(&message);
        match message {
            AsapMessage::HandleResolutionResponse {
                pool_handle,
                pool_elements,
                error,
                ..
            } => self.on_response(now, registrar, pool_handle, pool_elements, error),
            AsapMessage::Error { error } => {
                // Before any answer, the hunter keeps it as the reason of
                // the close it announces ([`Hunter::heard`]).
                let text = crate::error::describe_operation_error(&error);
                tracing::warn!(%registrar, "registrar reports an error: {text}");
            }
            other => tracing::debug!(%registrar, "ignoring unexpected {}", other.name()),
        }
    }

    /// T1-ENRPrequest expiries (RFC 5352 3.7.2): re-send up to
    /// MAX-REQUEST-RETRANSMIT times, then give the registrar up and go to
    /// the next one.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.announcements.expire(now, &mut self.hunter);
        if let Some(pass) = self.hunter.handle_timeout(now, &mut self.outputs) {
            self.hunt_pass_failed(&pass);
        }
        let Link::Up {
            conn, registrar, ..
        } = self.link
        else {
            return;
        };
        let mut give_up = false;
        for i in 0..self.requests.len() {
            let r = &self.requests[i];
            if r.deadline.is_some_and(|d| d <= now) {
                if r.sent <= self.timers.max_request_retransmit {
                    tracing::debug!(%registrar, "T1 expired for pool {}: re-sending", r.pool_handle);
                    self.transmit(now, i, conn);
                } else {
                    give_up = true;
                }
            }
        }
        if give_up {
            let reason = format!(
                "no answer within T1 ({:?}) after {} transmissions",
                self.timers.t1_request,
                self.timers.max_request_retransmit + 1
            );
            self.give_registrar_up(now, conn, registrar, &reason);
        }
    }

    /// Close the connection to `registrar` and move the requests sent to
    /// it on (as a registrar that does not answer).
    fn give_registrar_up(
        &mut self,
        now: Instant,
        conn: ConnId,
        registrar: SocketAddr,
        reason: &str,
    ) {
        tracing::warn!(%registrar, "giving the registrar up: {reason}");
        self.outputs.push_back(LinkAction::Close { conn }.into());
        self.link = Link::Down;
        self.move_requests(now, registrar, reason, true);
    }

    /// The earliest deadline the driver must wake for.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.requests
            .iter()
            .filter_map(|r| r.deadline)
            .chain(self.hunter.poll_timeout())
            .min()
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<PuOutput> {
        self.outputs.pop_front()
    }

    /// Requests (by pool handle) waiting for an answer.
    pub fn outstanding(&self) -> usize {
        self.requests.len()
    }

    fn enqueue(&mut self, now: Instant, pool_handle: PoolHandle, waiter: Waiter) {
        if let Some(r) = self
            .requests
            .iter_mut()
            .find(|r| r.pool_handle == pool_handle)
        {
            r.waiters.push(waiter);
            return;
        }
        self.requests.push(Request {
            pool_handle,
            waiters: vec![waiter],
            deadline: None,
            sent: 0,
            failures: Vec::new(),
            all_timeouts: true,
        });
        match self.link {
            Link::Up { conn, .. } => self.transmit(now, self.requests.len() - 1, conn),
            Link::Down => self.hunt(now),
        }
    }

    /// Find a registrar, unless connected or hunting already.
    fn hunt(&mut self, now: Instant) {
        if self.link == Link::Down {
            if let Some(pass) = self.hunter.start(now, &mut self.outputs) {
                self.hunt_pass_failed(&pass);
            }
        }
    }

    /// Send request `i` (RFC 5352 3.3 NR1, NR3, NR4).
    fn transmit(&mut self, now: Instant, i: usize, conn: ConnId) {
        let r = &mut self.requests[i];
        r.deadline = Some(now + self.timers.t1_request);
        r.sent += 1;
        let message = AsapMessage::HandleResolution {
            subscribe: false,
            pool_handle: r.pool_handle.clone(),
            items: self.settings.items,
        };
        self.outputs
            .push_back(LinkAction::Send { conn, message }.into());
    }

    /// The registrar failed: requests sent to it count the failure; those
    /// that failed at enough registrars are answered, the others wait for
    /// the next registrar (hunt).
    fn move_requests(&mut self, now: Instant, registrar: SocketAddr, reason: &str, timeout: bool) {
        // Every registrar once, and at least two tries in all (a single
        // registrar may just have restarted).
        let limit = self.hunter.len().max(2);
        let mut kept = Vec::new();
        for mut r in std::mem::take(&mut self.requests) {
            if r.deadline.take().is_some() {
                r.failures.push(RegistrarFailure {
                    registrar,
                    reason: reason.to_owned(),
                    kind: None,
                });
                r.all_timeouts &= timeout;
            }
            r.sent = 0;
            if r.failures.len() >= limit {
                let error = if r.all_timeouts {
                    ClientError::Timeout {
                        operation: "handle resolution",
                        registrars: r.failures.iter().map(|f| f.registrar).collect(),
                    }
                } else {
                    ClientError::NoRegistrar(r.failures.clone())
                };
                self.fail(r.pool_handle, r.waiters, error);
            } else {
                kept.push(r);
            }
        }
        self.requests = kept;
        if !self.requests.is_empty() || !self.pending_reports.is_empty() {
            self.hunt(now);
        }
    }

    fn on_response(
        &mut self,
        now: Instant,
        registrar: SocketAddr,
        pool_handle: PoolHandle,
        elements: Vec<PoolElement>,
        error: Option<OperationError>,
    ) {
        let waiters = match self
            .requests
            .iter()
            .position(|r| r.pool_handle == pool_handle)
        {
            Some(i) => self.requests.remove(i).waiters,
            None => Vec::new(),
        };
        if let Some(err) = error {
            let cause = err
                .causes
                .first()
                .map_or(CauseCode::UnspecifiedError, |c| c.code);
            let error = if cause == CauseCode::UnknownPoolHandle {
                self.cache.remove(&pool_handle);
                ClientError::UnknownPoolHandle(pool_handle.clone())
            } else {
                tracing::warn!(%registrar, "handle resolution of {pool_handle} refused: {cause}");
                ClientError::Refused {
                    registrar,
                    pool_handle: pool_handle.clone(),
                    cause,
                }
            };
            self.answer_error(waiters, error);
            return;
        }
        // C2: a fresh entry, with the PEs this user found unreachable
        // still skipped.
        let mut selection = PoolUserSelection::new(elements.clone());
        for e in &elements {
            let key = (pool_handle.clone(), e.identifier);
            if self.failed.get(&key).is_some_and(|until| *until > now) {
                selection.mark_failed(e.identifier);
            }
        }
        self.evict_for(&pool_handle);
        self.cache.insert(
            pool_handle.clone(),
            CacheEntry {
                registrar,
                elements,
                selection,
                fetched_at: now,
                stale_at: now + self.settings.stale_timeout,
            },
        );
        self.answer_from_cache(&pool_handle, waiters);
    }

    /// Make room for one more entry: the oldest goes, and of entries
    /// fetched at the same instant the one with the smallest handle (the
    /// maps are ordered, never randomly seeded: the same inputs evict the
    /// same entry in every run).
    fn evict_for(&mut self, pool_handle: &PoolHandle) {
        while self.cache.len() >= self.settings.max_cache_entries
            && !self.cache.contains_key(pool_handle)
        {
            let Some(oldest) = self
                .cache
                .iter()
                .min_by_key(|(_, e)| e.fetched_at)
                .map(|(h, _)| h.clone())
            else {
                return;
            };
            self.cache.remove(&oldest);
        }
    }

    fn answer_from_cache(&mut self, pool_handle: &PoolHandle, waiters: Vec<Waiter>) {
        let Some(entry) = self.cache.get_mut(pool_handle) else {
            return;
        };
        for w in waiters {
            let out = match w {
                Waiter::Resolve(token) => PuOutput::Resolved {
                    token,
                    result: Ok(entry.elements.clone()),
                },
                Waiter::Select(token) => PuOutput::Selected {
                    token,
                    result: match entry.selection.select(&mut self.rng) {
                        Some(pe) => Ok(pe.clone()),
                        // An empty answer from a pool that exists: every
                        // PE is drained (rserpool-registrar's drain).
                        None if entry.elements.is_empty() => Err(ClientError::PoolDrained {
                            registrar: entry.registrar,
                            pool_handle: pool_handle.clone(),
                        }),
                        None => Err(ClientError::NoUsablePoolElement(pool_handle.clone())),
                    },
                },
            };
            self.outputs.push_back(out);
        }
    }

    fn answer_error(&mut self, waiters: Vec<Waiter>, error: ClientError) {
        for w in waiters {
            let out = match w {
                Waiter::Resolve(token) => PuOutput::Resolved {
                    token,
                    result: Err(error.clone()),
                },
                Waiter::Select(token) => PuOutput::Selected {
                    token,
                    result: Err(error.clone()),
                },
            };
            self.outputs.push_back(out);
        }
    }

    /// No registrar answered: a stale entry if allowed, else the error.
    fn fail(&mut self, pool_handle: PoolHandle, waiters: Vec<Waiter>, error: ClientError) {
        if self.settings.serve_stale_on_failure && self.cache.contains_key(&pool_handle) {
            tracing::warn!("answering for pool {pool_handle} from a stale cache entry: {error}");
            self.answer_from_cache(&pool_handle, waiters);
            return;
        }
        self.answer_error(waiters, error);
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    use rserpool_wire::{Cause, Policy, ServerId, Transport, TransportUse, WireMessage};

    use super::*;
    use crate::test_outputs::{close, hunts, only_hunt, plain, send, sends, CoreOutput};

    /// Fail the hunt's attempts ("refused") until a pass fails.
    fn fail_pass(c: &mut PuCore, t: Instant) {
        while let Some((conn, _)) = c.hunter.attempt() {
            c.handle_connect_failed(t, conn, ConnectFailure::new("refused", None));
        }
    }

    /// Connect `c` as its hunt asks, asserting that the attempt is `conn`
    /// to `registrar` (a hunt is started if none runs, as a driver whose
    /// core asked earlier would).
    fn connect(c: &mut PuCore, t: Instant, conn: ConnId, registrar: SocketAddr) {
        if c.hunter.attempt().is_none() {
            let mut scratch = VecDeque::<PuOutput>::new();
            c.hunter.start(t, &mut scratch);
        }
        assert_eq!(
            c.hunter.attempt(),
            Some((conn, registrar)),
            "the hunt's attempt"
        );
        c.handle_connected(t, conn, plain());
    }

    impl CoreOutput for PuOutput {
        fn link(&self) -> Option<&LinkAction> {
            match self {
                PuOutput::Link(a) => Some(a),
                _ => None,
            }
        }
    }
    /// What a test core is made of.
    struct ClientConfig {
        registrars: Vec<SocketAddr>,
        timers: Timers,
        pool_user: PoolUserSettings,
        reports: ReportLimits,
    }

    const REG1: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 3863);
    const REG2: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 3863);

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn handle() -> PoolHandle {
        PoolHandle::from_static("echo")
    }

    fn config() -> ClientConfig {
        ClientConfig {
            registrars: vec![REG1, REG2],
            timers: Timers::default(),
            pool_user: PoolUserSettings::default(),
            reports: ReportLimits::default(),
        }
    }

    fn core_with(config: &ClientConfig) -> PuCore {
        PuCore::new(
            config.registrars.clone(),
            config.timers,
            config.pool_user,
            config.reports,
            1,
        )
    }

    fn pe(id: u32) -> PoolElement {
        PoolElement {
            identifier: PeId::new(id),
            home_registrar: ServerId::new(1),
            registration_life: 30_000,
            user_transport: Transport::Tcp {
                port: 7000 + id as u16,
                transport_use: TransportUse::DataOnly,
                address: IpAddr::V4(Ipv4Addr::new(198, 51, 100, id as u8)),
            },
            policy: Policy::RoundRobin,
            asap_transport: None,
        }
    }

    fn response(ids: &[u32]) -> AsapMessage {
        AsapMessage::HandleResolutionResponse {
            accept_updates: false,
            pool_handle: handle(),
            policy: None,
            pool_elements: ids.iter().map(|&i| pe(i)).collect(),
            error: None,
        }
    }

    fn error_response(code: CauseCode) -> AsapMessage {
        AsapMessage::HandleResolutionResponse {
            accept_updates: false,
            pool_handle: handle(),
            policy: None,
            pool_elements: Vec::new(),
            error: Some(OperationError::single(Cause::new(code))),
        }
    }

    fn request() -> AsapMessage {
        AsapMessage::HandleResolution {
            subscribe: false,
            pool_handle: handle(),
            items: None,
        }
    }

    fn drain(c: &mut PuCore) -> Vec<PuOutput> {
        std::iter::from_fn(|| c.poll_output()).collect()
    }

    fn ids(r: &Result<Vec<PoolElement>, ClientError>) -> Vec<u32> {
        r.as_ref()
            .map(|v| v.iter().map(|p| p.identifier.get()).collect())
            .unwrap_or_default()
    }

    fn selected(out: &[PuOutput]) -> Vec<Result<u32, ClientError>> {
        out.iter()
            .filter_map(|o| match o {
                PuOutput::Selected { result, .. } => {
                    Some(result.clone().map(|p| p.identifier.get()))
                }
                _ => None,
            })
            .collect()
    }

    /// A core connected to REG1 over connection 1 with `ids` cached at `t0`.
    fn resolved(t0: Instant, ids: &[u32]) -> PuCore {
        let mut c = core_with(&config());
        connect(&mut c, t0, ConnId::new(1), REG1);
        c.resolve(t0, 1, handle());
        c.handle_message(t0, ConnId::new(1), response(ids));
        drain(&mut c);
        c
    }

    fn announcing(max_learned: usize) -> AnnounceConfig {
        AnnounceConfig {
            max_learned,
            ..AnnounceConfig::default()
        }
    }

    fn learned(c: &PuCore) -> Vec<SocketAddr> {
        c.discovery()
            .registrars
            .iter()
            .filter(|e| matches!(e.origin, crate::RegistrarOrigin::Learned { .. }))
            .map(|e| e.address)
            .collect()
    }

    #[test]
    fn attack_an_announcement_flood_stays_bounded_and_keeps_the_static_registrars() {
        let t0 = Instant::now();
        let mut c = core_with(&config());
        c.enable_announcements(&announcing(4));
        let rogue: SocketAddr = "203.0.113.66:3863".parse().expect("addr");
        for i in 0..10_000u32 {
            // Many addresses, one per announcement, and some of the
            // static ones among them.
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            let address = SocketAddr::new(IpAddr::V4(ip), 3864);
            let a = crate::announce::announce(i, &[address, REG1]);
            c.handle_datagram(t0, rogue, &a.to_bytes().expect("encodes"));
        }
        // One announcement naming thousands of addresses.
        let many: Vec<SocketAddr> = (0..2000u32)
            .map(|i| SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::from(0x0b00_0000 + i)), 1))
            .collect();
        c.handle_announcement(t0, rogue, crate::announce::announce(7, &many));
        let d = c.discovery();
        assert_eq!(d.registrars.len(), 2 + 4, "static + the cap");
        assert_eq!(d.registrars[0].address, REG1);
        assert_eq!(d.registrars[0].origin, crate::RegistrarOrigin::Static);
        assert_eq!(d.registrars[1].address, REG2);
        assert_eq!(d.registrars[1].origin, crate::RegistrarOrigin::Static);
        assert_eq!(d.stats.datagrams, 10_000);
        assert_eq!(d.stats.announcements, 10_001);
        assert_eq!(d.stats.learned, 10_004);
        assert_eq!(d.stats.replaced, 10_000);
        assert!(
            drain(&mut c).is_empty(),
            "announcements connect nowhere by themselves"
        );
        // Bounded log lines: a few, the rest counted for one summary.
        let (logged, suppressed) = c.announcements.log_lines();
        assert!(logged <= 5, "{logged} lines");
        assert!(suppressed > 9_000, "{suppressed} suppressed");
        // The static registrar is still the first tried.
        c.resolve(t0, 1, handle());
        assert_eq!(c.hunter.attempt(), Some((ConnId::new(1), REG1)));
    }

    #[test]
    fn learned_registrars_expire_unless_announced_again() {
        let t0 = Instant::now();
        let mut c = core_with(&config());
        c.enable_announcements(&announcing(8));
        let a: SocketAddr = "192.0.2.10:3864".parse().expect("addr");
        let b: SocketAddr = "192.0.2.11:3864".parse().expect("addr");
        c.handle_announcement(t0, a, crate::announce::announce(10, &[a]));
        c.handle_announcement(t0, b, crate::announce::announce(11, &[b]));
        assert_eq!(learned(&c), vec![a, b]);
        // T7-ENRPoutdate (5 s) restarts for a, not for b.
        c.handle_announcement(t0 + s(3), a, crate::announce::announce(10, &[a]));
        c.handle_timeout(t0 + s(6));
        assert_eq!(learned(&c), vec![a]);
        c.handle_timeout(t0 + s(8));
        assert_eq!(learned(&c), Vec::<SocketAddr>::new());
        let st = c.announce_stats();
        assert_eq!((st.expired, st.refreshed, st.learned), (2, 1, 2));
        // Expiry adds no wake-ups of its own.
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn bad_datagrams_are_dropped_and_counted() {
        let t0 = Instant::now();
        let mut c = core_with(&config());
        c.enable_announcements(&announcing(8));
        let from: SocketAddr = "203.0.113.1:9".parse().expect("addr");
        let good = crate::announce::announce(3, &["192.0.2.3:3864".parse().expect("addr")])
            .to_bytes()
            .expect("encodes");
        for bad in [
            &[][..],
            &[0x0a],
            &[0x0a, 0, 0, 4],
            &[0xff; 64],
            &good[..good.len() - 1],
        ] {
            c.handle_datagram(t0, from, bad);
        }
        // A registrar-side message, and announcements with nothing usable:
        // SCTP only, no transport, unspecified address or port 0.
        c.handle_datagram(t0, from, &request().to_bytes().expect("encodes"));
        let sctp = AsapMessage::ServerAnnounce {
            server_id: ServerId::new(4),
            transports: vec![Transport::Sctp {
                port: 3863,
                transport_use: TransportUse::DataPlusControl,
                addresses: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 4))],
            }],
        };
        c.handle_announcement(t0, from, sctp);
        c.handle_announcement(t0, from, crate::announce::announce(5, &[]));
        c.handle_announcement(
            t0,
            from,
            crate::announce::announce(6, &["0.0.0.0:3864".parse().expect("addr")]),
        );
        c.handle_announcement(
            t0,
            from,
            crate::announce::announce(7, &["192.0.2.7:0".parse().expect("addr")]),
        );
        assert!(drain(&mut c).is_empty());
        assert_eq!(learned(&c), Vec::<SocketAddr>::new());
        let st = c.announce_stats();
        assert_eq!(st.datagrams, 6);
        assert_eq!(st.undecodable, 5);
        assert_eq!(st.unexpected, 1);
        assert_eq!(st.unusable, 4);
    }

    #[test]
    fn configured_registrars_in_an_announcement_do_not_use_up_the_cap() {
        let t0 = Instant::now();
        let mut c = core_with(&config());
        c.enable_announcements(&announcing(1));
        let a: SocketAddr = "192.0.2.10:3864".parse().expect("addr");
        c.handle_announcement(t0, a, crate::announce::announce(10, &[REG1, REG2, a]));
        assert_eq!(learned(&c), vec![a]);
    }

    #[test]
    fn without_enabling_announcements_nothing_is_learned() {
        let t0 = Instant::now();
        let mut c = core_with(&config());
        let a: SocketAddr = "192.0.2.10:3864".parse().expect("addr");
        c.handle_announcement(t0, a, crate::announce::announce(10, &[a]));
        assert_eq!(c.discovery().registrars.len(), 2);
        assert_eq!(c.announce_stats().ignored, 1);
    }

    #[test]
    fn the_hunt_tries_learned_registrars_after_the_static_ones() {
        let t0 = Instant::now();
        let mut c = core_with(&ClientConfig {
            registrars: vec![REG1],
            ..config()
        });
        c.enable_announcements(&announcing(8));
        let learned_one: SocketAddr = "192.0.2.10:3864".parse().expect("addr");
        c.handle_announcement(
            t0,
            learned_one,
            crate::announce::announce(10, &[learned_one]),
        );
        c.resolve(t0, 1, handle());
        assert_eq!(c.hunter.attempt(), Some((ConnId::new(1), REG1)));
        c.handle_connect_failed(t0, ConnId::new(1), ConnectFailure::new("refused", None));
        assert_eq!(c.hunter.attempt(), Some((ConnId::new(2), learned_one)));
        c.handle_connected(t0, ConnId::new(2), plain());
        assert_eq!(
            sends(&drain(&mut c)),
            vec![(2, request())],
            "the request goes to the learned registrar"
        );
        // A pass counts the learned registrars too: an answer that never
        // comes fails over to the next (REG1), and the request fails
        // after both.
        assert_eq!(c.hunter.len(), 2);
    }

    #[test]
    fn a_pu_with_no_static_registrar_waits_for_an_announcement() {
        let t0 = Instant::now();
        let mut c = core_with(&ClientConfig {
            registrars: Vec::new(),
            ..config()
        });
        c.enable_announcements(&announcing(8));
        // Nothing to try: the request waits for the round (T5, 10 s).
        c.resolve(t0, 1, handle());
        assert!(drain(&mut c).is_empty());
        assert_eq!(c.poll_timeout(), Some(t0 + s(10)));
        // Nothing announced by then: it fails.
        c.handle_timeout(t0 + s(10));
        assert!(matches!(
            &drain(&mut c)[..],
            [PuOutput::Resolved { result: Err(ClientError::NoRegistrar(f)), .. }]
                if f[0].reason.contains("none was announced")
        ));
        // The next one waits again, and an announcement ends the wait.
        let t1 = t0 + s(11);
        c.resolve(t1, 2, handle());
        assert!(drain(&mut c).is_empty());
        let a: SocketAddr = "192.0.2.10:3864".parse().expect("addr");
        c.handle_announcement(t1, a, crate::announce::announce(10, &[a]));
        let (conn, to) = c.hunter.attempt().expect("an attempt at once");
        assert_eq!(to, a);
        c.handle_connected(t1, conn, plain());
        assert_eq!(sends(&drain(&mut c)), vec![(conn.get(), request())]);
    }

    #[test]
    fn resolves_through_a_registrar_and_caches_until_stale() {
        let t0 = Instant::now();
        let mut c = core_with(&config());
        c.resolve(t0, 1, handle());
        assert!(only_hunt(&drain(&mut c)));
        connect(&mut c, t0, ConnId::new(1), REG1);
        assert_eq!(drain(&mut c), vec![send(ConnId::new(1), request())]);
        assert_eq!(c.poll_timeout(), Some(t0 + s(15)));
        c.handle_message(t0, ConnId::new(1), response(&[1, 2]));
        let out = drain(&mut c);
        assert!(
            matches!(&out[..], [PuOutput::Resolved { token: 1, result }] if ids(result) == [1, 2])
        );
        assert_eq!(c.poll_timeout(), None);
        // C4: fresh entries are used without asking.
        let t1 = t0 + Duration::from_millis(999);
        c.resolve(t1, 2, handle());
        let out = drain(&mut c);
        assert!(
            matches!(&out[..], [PuOutput::Resolved { token: 2, result }] if ids(result) == [1, 2])
        );
        assert_eq!(
            c.cached(t1, &handle()).map(|(v, fresh)| (v.len(), fresh)),
            Some((2, true))
        );
        // C2: a stale entry is refreshed before answering (C3: blocking).
        let t2 = t0 + s(1);
        c.resolve(t2, 3, handle());
        assert_eq!(drain(&mut c), vec![send(ConnId::new(1), request())]);
        c.handle_message(t2, ConnId::new(1), response(&[2]));
        let out = drain(&mut c);
        assert!(
            matches!(&out[..], [PuOutput::Resolved { token: 3, result }] if ids(result) == [2])
        );
        c.purge(&handle());
        assert!(c.cached(t2, &handle()).is_none());
    }

    #[test]
    fn concurrent_requests_for_one_handle_share_one_resolution() {
        let t0 = Instant::now();
        let mut c = core_with(&config());
        connect(&mut c, t0, ConnId::new(1), REG1);
        c.resolve(t0, 1, handle());
        c.resolve(t0, 2, handle());
        c.select(t0, 3, handle());
        assert_eq!(drain(&mut c).len(), 1, "one request on the wire");
        c.handle_message(t0, ConnId::new(1), response(&[5]));
        let out = drain(&mut c);
        assert_eq!(out.len(), 3);
        assert_eq!(selected(&out), vec![Ok(5)]);
        // A late duplicate response refreshes the cache, answers nobody.
        c.handle_message(t0, ConnId::new(1), response(&[5, 6]));
        assert!(drain(&mut c).is_empty());
        assert_eq!(c.cached(t0, &handle()).map(|(v, _)| v.len()), Some(2));
    }

    #[test]
    fn t1_retransmits_then_fails_over_then_times_out() {
        let t0 = Instant::now();
        let mut c = core_with(&config());
        connect(&mut c, t0, ConnId::new(1), REG1);
        c.resolve(t0, 1, handle());
        drain(&mut c);
        // RFC 5352 3.7.2: re-send on T1, MAX-REQUEST-RETRANSMIT (2) times.
        for k in 1..=2 {
            let t = t0 + s(15 * k);
            c.handle_timeout(t);
            assert_eq!(drain(&mut c), vec![send(ConnId::new(1), request())]);
            assert_eq!(c.poll_timeout(), Some(t + s(15)));
        }
        // Then the registrar is given up and another one hunted.
        let t = t0 + s(45);
        c.handle_timeout(t);
        let out = drain(&mut c);
        assert_eq!(out[0], close(ConnId::new(1)));
        assert!(only_hunt(&out[1..]));
        assert_eq!(c.outstanding(), 1);
        connect(&mut c, t, ConnId::new(2), REG2);
        assert_eq!(drain(&mut c), vec![send(ConnId::new(2), request())]);
        for k in 1..=3 {
            c.handle_timeout(t + s(15 * k));
        }
        let out = drain(&mut c);
        assert!(out.contains(&PuOutput::Resolved {
            token: 1,
            result: Err(ClientError::Timeout {
                operation: "handle resolution",
                registrars: vec![REG1, REG2]
            })
        }));
        assert!(out.contains(&close(ConnId::new(2))));
        assert!(!hunts(&out), "nothing left to ask");
        assert_eq!(c.outstanding(), 0);
    }

    #[test]
    fn a_lost_connection_moves_requests_to_the_next_registrar() {
        let t0 = Instant::now();
        let mut c = core_with(&config());
        connect(&mut c, t0, ConnId::new(1), REG1);
        c.resolve(t0, 1, handle());
        drain(&mut c);
        c.handle_disconnected(t0, ConnId::new(1), "reset");
        assert!(only_hunt(&drain(&mut c)));
        // No T1 runs: the only timer is the connection attempt's.
        assert_eq!(
            c.poll_timeout(),
            Some(t0 + Timers::default().connect_timeout + crate::hunt::ATTEMPT_GRACE)
        );
        connect(&mut c, t0, ConnId::new(2), REG2);
        assert_eq!(drain(&mut c), vec![send(ConnId::new(2), request())]);
        c.handle_disconnected(t0, ConnId::new(2), "reset again");
        let out = drain(&mut c);
        assert!(matches!(
            &out[..],
            [PuOutput::Resolved { token: 1, result: Err(ClientError::NoRegistrar(f)) }] if f.len() == 2
        ));
        // An idle connection that ends is no failure of anything.
        let mut c = core_with(&config());
        connect(&mut c, t0, ConnId::new(1), REG1);
        c.handle_disconnected(t0, ConnId::new(1), "idle");
        assert!(drain(&mut c).is_empty());
    }

    #[test]
    fn unknown_pool_handles_and_refusals_are_typed() {
        let t0 = Instant::now();
        let mut c = resolved(t0, &[1]);
        c.resolve(t0 + s(2), 2, handle());
        drain(&mut c);
        c.handle_message(
            t0 + s(2),
            ConnId::new(1),
            error_response(CauseCode::UnknownPoolHandle),
        );
        assert_eq!(
            drain(&mut c),
            vec![PuOutput::Resolved {
                token: 2,
                result: Err(ClientError::UnknownPoolHandle(handle()))
            }]
        );
        assert!(c.cached(t0, &handle()).is_none(), "the pool is gone");
        c.select(t0 + s(2), 3, handle());
        drain(&mut c);
        c.handle_message(
            t0 + s(2),
            ConnId::new(1),
            error_response(CauseCode::LackOfResources),
        );
        assert_eq!(
            selected(&drain(&mut c)),
            vec![Err(ClientError::Refused {
                registrar: REG1,
                pool_handle: handle(),
                cause: CauseCode::LackOfResources
            })]
        );
    }

    #[test]
    fn without_a_registrar_a_stale_entry_answers_if_allowed() {
        let t0 = Instant::now();
        let failures: Vec<RegistrarFailure> = [REG1, REG2]
            .into_iter()
            .map(|registrar| RegistrarFailure {
                registrar,
                reason: "refused".into(),
                kind: None,
            })
            .collect();
        let mut c = resolved(t0, &[1, 2]);
        c.handle_disconnected(t0, ConnId::new(1), "idle");
        let t1 = t0 + s(5);
        c.resolve(t1, 2, handle());
        assert!(only_hunt(&drain(&mut c)));
        fail_pass(&mut c, t1);
        let out = drain(&mut c);
        // The second registrar was tried, then the stale entry answered.
        assert!(only_hunt(&out[..1]));
        assert!(
            matches!(&out[1..], [PuOutput::Resolved { token: 2, result }] if ids(result) == [1, 2])
        );

        let mut cfg = config();
        cfg.pool_user.serve_stale_on_failure = false;
        let mut c = core_with(&cfg);
        connect(&mut c, t0, ConnId::new(1), REG1);
        c.resolve(t0, 1, handle());
        c.handle_message(t0, ConnId::new(1), response(&[1]));
        c.handle_disconnected(t0, ConnId::new(1), "idle");
        drain(&mut c);
        c.select(t1, 2, handle());
        drain(&mut c);
        fail_pass(&mut c, t1);
        assert_eq!(
            selected(&drain(&mut c)),
            vec![Err(ClientError::NoRegistrar(failures))]
        );
    }

    #[test]
    fn selection_follows_the_policy_and_skips_reported_pes() {
        let t0 = Instant::now();
        let mut c = resolved(t0, &[1, 2, 3]);
        for t in 10..14 {
            c.select(t0, t, handle());
        }
        let picks = selected(&drain(&mut c));
        assert_eq!(picks, vec![Ok(1), Ok(2), Ok(3), Ok(1)]);
        assert_eq!(
            c.report_unreachable(t0, &handle(), PeId::new(2)),
            ReportOutcome::Reported
        );
        assert_eq!(
            drain(&mut c),
            vec![send(
                ConnId::new(1),
                AsapMessage::EndpointUnreachable {
                    pool_handle: handle(),
                    identifier: PeId::new(2)
                }
            )]
        );
        // The entry is invalidated: the next selection resolves again, and
        // the registrar (one report is not enough for it) still lists 2.
        let t1 = t0 + Duration::from_millis(10);
        c.select(t1, 20, handle());
        assert_eq!(drain(&mut c), vec![send(ConnId::new(1), request())]);
        c.handle_message(t1, ConnId::new(1), response(&[1, 2, 3]));
        c.select(t1, 21, handle());
        c.select(t1, 22, handle());
        c.select(t1, 23, handle());
        assert_eq!(selected(&drain(&mut c)), vec![Ok(1), Ok(3), Ok(1), Ok(3)]);
        // After the failure memory (5 s) it is used again.
        let t2 = t0 + s(6);
        c.select(t2, 30, handle());
        c.handle_message(t2, ConnId::new(1), response(&[1, 2, 3]));
        c.select(t2, 31, handle());
        assert_eq!(selected(&drain(&mut c)), vec![Ok(1), Ok(2)]);
    }

    #[test]
    fn an_exhausted_list_is_resolved_again_before_giving_up() {
        let t0 = Instant::now();
        let mut c = resolved(t0, &[1]);
        c.report_unreachable(t0, &handle(), PeId::new(1));
        drain(&mut c);
        c.select(t0, 2, handle());
        assert_eq!(drain(&mut c).len(), 1, "a new resolution");
        c.handle_message(t0, ConnId::new(1), response(&[1]));
        assert_eq!(
            selected(&drain(&mut c)),
            vec![Err(ClientError::NoUsablePoolElement(handle()))]
        );
        c.select(t0, 3, handle());
        c.handle_message(t0, ConnId::new(1), response(&[1, 4]));
        assert_eq!(selected(&drain(&mut c)), vec![Ok(4)]);
    }

    #[test]
    fn an_empty_answer_says_every_pe_is_drained() {
        let t0 = Instant::now();
        let mut c = resolved(t0, &[]);
        c.select(t0, 2, handle());
        assert_eq!(
            drain(&mut c),
            vec![send(ConnId::new(1), request())],
            "asked again"
        );
        c.handle_message(t0, ConnId::new(1), response(&[]));
        let got = selected(&drain(&mut c));
        let err = ClientError::PoolDrained {
            registrar: REG1,
            pool_handle: handle(),
        };
        assert_eq!(got, vec![Err(err.clone())]);
        assert_eq!(
            err.to_string(),
            format!(
                "registrar {REG1} handed out no pool element of pool echo: the pool exists, \
                 but every PE in it is drained (or has weight 0); try again later"
            )
        );
        // Resolving lists none, without an error; once undrained the PEs
        // are handed out again.
        c.resolve(t0, 3, handle());
        assert!(matches!(
            &drain(&mut c)[..],
            [PuOutput::Resolved { token: 3, result: Ok(v) }] if v.is_empty()
        ));
        c.select(t0, 4, handle());
        c.handle_message(t0, ConnId::new(1), response(&[5]));
        assert_eq!(selected(&drain(&mut c)), vec![Ok(5)]);
    }

    #[test]
    fn reports_are_limited_per_pe_and_in_all() {
        let t0 = Instant::now();
        let mut cfg = config();
        cfg.reports.max_per_second = 2;
        let mut c = core_with(&cfg);
        connect(&mut c, t0, ConnId::new(1), REG1);
        c.resolve(t0, 1, handle());
        c.handle_message(t0, ConnId::new(1), response(&[1, 2, 3, 4]));
        drain(&mut c);
        let h = handle();
        assert_eq!(
            c.report_unreachable(t0, &h, PeId::new(1)),
            ReportOutcome::Reported
        );
        // RFC 5352 3.5: once per event, however many callers see it.
        assert_eq!(
            c.report_unreachable(t0 + Duration::from_millis(500), &h, PeId::new(1)),
            ReportOutcome::AlreadyReported
        );
        assert_eq!(
            c.report_unreachable(t0, &h, PeId::new(2)),
            ReportOutcome::Reported
        );
        // RFC 5355 2.13: a cap in all.
        assert_eq!(
            c.report_unreachable(t0, &h, PeId::new(3)),
            ReportOutcome::RateLimited
        );
        // Only PEs this user got from a registrar.
        assert_eq!(
            c.report_unreachable(t0, &h, PeId::new(99)),
            ReportOutcome::NotResolved
        );
        let other = PoolHandle::from_static("other");
        assert_eq!(
            c.report_unreachable(t0, &other, PeId::new(1)),
            ReportOutcome::NotResolved
        );
        let sent = sends(&drain(&mut c))
            .into_iter()
            .filter(|(_, m)| matches!(m, AsapMessage::EndpointUnreachable { .. }))
            .count();
        assert_eq!(sent, 2);
        // A second later the bucket has refilled and 1 may be reported again.
        let t1 = t0 + s(1);
        assert_eq!(
            c.report_unreachable(t1, &h, PeId::new(1)),
            ReportOutcome::Reported
        );
        assert_eq!(
            c.report_unreachable(t1, &h, PeId::new(3)),
            ReportOutcome::Reported
        );
        assert_eq!(
            c.report_unreachable(t1, &h, PeId::new(4)),
            ReportOutcome::RateLimited
        );
        // Disabled reports.
        let mut cfg = config();
        cfg.reports.max_per_second = 0;
        let mut c = core_with(&cfg);
        connect(&mut c, t0, ConnId::new(1), REG1);
        c.resolve(t0, 1, handle());
        c.handle_message(t0, ConnId::new(1), response(&[1]));
        assert_eq!(
            c.report_unreachable(t0, &h, PeId::new(1)),
            ReportOutcome::RateLimited
        );
    }

    #[test]
    fn a_report_without_a_connection_waits_for_one() {
        let t0 = Instant::now();
        let mut c = resolved(t0, &[1, 2]);
        c.handle_disconnected(t0, ConnId::new(1), "idle");
        drain(&mut c);
        assert_eq!(
            c.report_unreachable(t0, &handle(), PeId::new(2)),
            ReportOutcome::Reported
        );
        assert!(only_hunt(&drain(&mut c)));
        connect(&mut c, t0, ConnId::new(2), REG2);
        assert_eq!(
            drain(&mut c),
            vec![send(
                ConnId::new(2),
                AsapMessage::EndpointUnreachable {
                    pool_handle: handle(),
                    identifier: PeId::new(2)
                }
            )]
        );
        // Dropped when no registrar can be found.
        c.handle_disconnected(t0, ConnId::new(2), "idle");
        assert_eq!(
            c.report_unreachable(t0, &handle(), PeId::new(1)),
            ReportOutcome::Reported
        );
        drain(&mut c);
        fail_pass(&mut c, t0);
        assert_eq!(c.hunter.attempt(), None, "no hunt without anything to send");
        drain(&mut c);
        connect(&mut c, t0, ConnId::new(5), REG1);
        assert!(drain(&mut c).is_empty());
    }

    /// Resolve pool `name` (token `token`) at `t` and answer it from
    /// registrar connection 1 with one PE.
    fn cache_one(c: &mut PuCore, t: Instant, token: u64, name: &str) {
        let h = PoolHandle::new(name.as_bytes()).expect("handle");
        c.resolve(t, token, h.clone());
        c.handle_message(
            t,
            ConnId::new(1),
            AsapMessage::HandleResolutionResponse {
                accept_updates: false,
                pool_handle: h,
                policy: None,
                pool_elements: vec![pe(1)],
                error: None,
            },
        );
    }

    #[test]
    fn the_cache_is_bounded() {
        let t0 = Instant::now();
        let mut cfg = config();
        cfg.pool_user.max_cache_entries = 2;
        let mut c = core_with(&cfg);
        connect(&mut c, t0, ConnId::new(1), REG1);
        for (k, name) in ["a", "b", "c"].iter().enumerate() {
            cache_one(&mut c, t0 + Duration::from_millis(k as u64), k as u64, name);
        }
        let has = |n: &'static str| c.cached(t0, &PoolHandle::from_static(n)).is_some();
        assert!(!has("a") && has("b") && has("c"));
    }

    #[test]
    fn eviction_ties_break_the_same_way_in_every_run() {
        let t0 = Instant::now();
        let mut cfg = config();
        cfg.pool_user.max_cache_entries = 3;
        for _ in 0..20 {
            let mut c = core_with(&cfg);
            connect(&mut c, t0, ConnId::new(1), REG1);
            // Three entries fetched at the same instant, then a fourth.
            for (k, name) in ["q", "e", "x", "a"].iter().enumerate() {
                let t = if k < 3 {
                    t0
                } else {
                    t0 + Duration::from_millis(1)
                };
                cache_one(&mut c, t, k as u64, name);
            }
            let has = |n: &'static str| c.cached(t0, &PoolHandle::from_static(n)).is_some();
            assert!(!has("e") && has("q") && has("x") && has("a"));
        }
    }

    #[test]
    fn items_are_asked_for_when_configured() {
        let t0 = Instant::now();
        let mut cfg = config();
        cfg.pool_user.items = Some(8);
        let mut c = core_with(&cfg);
        connect(&mut c, t0, ConnId::new(1), REG1);
        c.resolve(t0, 1, handle());
        assert_eq!(
            drain(&mut c),
            vec![send(
                ConnId::new(1),
                AsapMessage::HandleResolution {
                    subscribe: false,
                    pool_handle: handle(),
                    items: Some(8)
                }
            )]
        );
    }
}
