//! The ENRP server hunt (RFC 5352 section 3.6), sans-IO. [`ServerHunt`]
//! is the schedule: which registrar to try next, how long one attempt
//! may take, when to wait, and when a whole pass over the list has
//! failed. [`Hunter`] runs it inside a client core: it asks the driver
//! for one connection at a time ([`LinkAction::Connect`]), keeps the
//! attempt's deadline and the T5 wait as the core's timers, and turns
//! "connected" and "connect failed" into the hunt's progress. Drivers
//! only make the connections.
//!
//! The rules as applied over TCP, one connection attempt at a time:
//!
//! * A hunt runs in rounds of T5-Serverhunt (SH2). In a round every
//!   registrar is tried at most once, in list order, starting after the
//!   one used last (SH4: on failure the next address; 3.6: a new home is a
//!   *different* server). An attempt lasts at most the connect timeout and
//!   never past the end of the round.
//! * If all registrars of a round failed before T5 expires, the hunt waits
//!   for the expiry rather than spinning.
//! * When T5 expires, it doubles, capped at RETRAN-MAX (SH5.1), and a new
//!   round starts with the next registrar (SH5.2).
//! * A connection stops the hunt and resets T5 (SH3).
//! * Once every registrar has failed at least once since the hunt began
//!   (or since the last such report), the pass is reported with the last
//!   reason of each, so a caller can give up (a pool user) or just report
//!   it and go on (a pool element).
//! * The list may change while a hunt runs: registrars learned from
//!   ASAP_SERVER_ANNOUNCE are appended after the configured ones and
//!   removed when their T7-ENRPoutdate expires (RFC 5352 3.6, bounded as
//!   [`crate::registrars`] says). A new registrar joins the round and the
//!   pass (it has not failed yet); a removed one leaves both, and the
//!   rotation goes on with the registrar that followed it. An attempt in
//!   flight to a removed registrar runs to its end.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rserpool_wire::{AsapMessage, ServerId};

use crate::config::Timers;
use crate::diagnose::FailureKind;
use crate::error::{ConnectFailure, RegistrarFailure};
use crate::registrars::{Change, Entry, Learned, RegistrarList};
use crate::{ConnId, LinkAction};

/// What the hunt wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HuntStep {
    /// Try registrar `index` of the list; give up on it at `deadline`.
    Try {
        /// Index into the registrar list.
        index: usize,
        /// End of this attempt.
        deadline: Instant,
    },
    /// Every registrar of this round failed: wait for T5 to expire.
    Wait {
        /// End of the round.
        until: Instant,
    },
}

#[derive(Debug, Clone, Copy)]
struct Round {
    ends: Instant,
    tried: usize,
}

/// The state of a server hunt over a list of `count` registrars; `F` is
/// what the driver records of a failed attempt (a reason, by default).
#[derive(Debug, Clone)]
pub struct ServerHunt<F = String> {
    /// Registrars in the list (the schedule has at least one slot).
    len: usize,
    count: usize,
    t5_initial: Duration,
    t5: Duration,
    retran_max: Duration,
    connect_timeout: Duration,
    next: usize,
    round: Option<Round>,
    pass: Vec<Option<F>>,
    /// The registrar connected to, until it answers ([`Self::confirmed`]):
    /// a connection it ends before answering is a failed attempt of the
    /// round ([`Self::lost_unconfirmed`]), not a success.
    provisional: Option<usize>,
}

impl<F> ServerHunt<F> {
    /// A hunt over `count` registrars (at least one) with these timers.
    pub fn new(count: usize, timers: &Timers) -> Self {
        let len = count;
        let count = count.max(1);
        ServerHunt {
            len,
            count,
            t5_initial: timers.t5_server_hunt.min(timers.retran_max),
            t5: timers.t5_server_hunt.min(timers.retran_max),
            retran_max: timers.retran_max,
            connect_timeout: timers.connect_timeout,
            next: 0,
            round: None,
            pass: std::iter::repeat_with(|| None).take(count).collect(),
            provisional: None,
        }
    }

    /// Whether a hunt is under way.
    pub fn is_active(&self) -> bool {
        self.round.is_some()
    }

    /// The current value of T5-Serverhunt.
    pub fn t5(&self) -> Duration {
        self.t5
    }

    /// Start a hunt (SH1, SH2); nothing if one is under way.
    pub fn begin(&mut self, now: Instant) {
        if self.round.is_none() {
            self.round = Some(Round {
                ends: now + self.t5,
                tried: 0,
            });
        }
    }

    /// What to do now.
    pub fn step(&mut self, now: Instant) -> HuntStep {
        let mut round = self.round.unwrap_or(Round {
            ends: now + self.t5,
            tried: 0,
        });
        if now >= round.ends {
            // RFC 5352 3.6 SH5.1: double T5, capped at RETRAN-MAX; SH5.2:
            // start over with other addresses.
            self.t5 = (self.t5 * 2).min(self.retran_max);
            round = Round {
                ends: now + self.t5,
                tried: 0,
            };
        }
        let step = if round.tried >= self.count {
            HuntStep::Wait { until: round.ends }
        } else {
            let index = self.next;
            self.next = (index + 1) % self.count;
            round.tried += 1;
            HuntStep::Try {
                index,
                deadline: (now + self.connect_timeout).min(round.ends),
            }
        };
        self.round = Some(round);
        step
    }

    /// Registrar `index` could not be reached (SH4). Returns the last
    /// failure of every registrar when this completes a pass in which all
    /// of them failed.
    pub fn failed(&mut self, index: usize, reason: F) -> Option<Vec<(usize, F)>> {
        let slot = self.pass.get_mut(index)?;
        *slot = Some(reason);
        self.complete_pass()
    }

    /// The last failure of every registrar if all of them failed in this
    /// pass (which then starts over).
    fn complete_pass(&mut self) -> Option<Vec<(usize, F)>> {
        if self.pass.iter().any(Option::is_none) {
            return None;
        }
        let reasons = self
            .pass
            .iter_mut()
            .enumerate()
            .filter_map(|(i, r)| r.take().map(|r| (i, r)))
            .collect();
        Some(reasons)
    }

    /// A connection to registrar `index` was made (SH3): the next hunt
    /// starts with the registrar after it. The round and T5 stay as they
    /// are until the registrar answers ([`Self::confirmed`]): a registrar
    /// that closes the connection before answering (it refused the
    /// client, or it is not what the client speaks) failed this attempt
    /// ([`Self::lost_unconfirmed`]), so the T5 back-off applies and a
    /// refused client does not reconnect at once, for ever.
    pub fn connected(&mut self, index: usize) {
        self.next = (index + 1) % self.count;
        self.provisional = Some(index);
    }

    /// The registrar connected to answered: the hunt is over, T5 is reset
    /// (SH3).
    pub fn confirmed(&mut self) {
        if self.provisional.take().is_some() {
            self.round = None;
            self.t5 = self.t5_initial;
            self.pass.iter_mut().for_each(|r| *r = None);
        }
    }

    /// The connection ended before the registrar answered: its attempt
    /// failed with `reason` (SH4). Returns the last failure of every
    /// registrar when this completes a failed pass, as
    /// [`Self::failed`]; `None` also when no connection was waiting for
    /// its answer.
    pub fn lost_unconfirmed(&mut self, reason: F) -> Option<Vec<(usize, F)>> {
        let index = self.provisional.take()?;
        // A round is under way while a connection waits for its answer
        // (only `confirmed` and `abandon` end it).
        self.round?;
        self.failed(index, reason)
    }

    /// A registrar was appended to the list: it joins the rotation and
    /// the pass (it has not failed yet).
    pub fn registrar_added(&mut self) {
        if self.len == 0 {
            // The one slot stood for "no registrar": now it is one, not
            // tried yet in this round.
            self.pass[0] = None;
            if let Some(r) = self.round.as_mut() {
                r.tried = 0;
            }
        } else {
            self.pass.push(None);
            self.count += 1;
            // A round that has wrapped to the start of the list would try
            // the start again: the new registrar, untried, comes first.
            if self.next == 0 && self.round.is_some_and(|r| r.tried > 0) {
                self.next = self.count - 1;
            }
        }
        self.len += 1;
    }

    /// Registrar `index` was removed from the list (the later ones move
    /// down): it leaves the rotation and the pass; the rotation goes on
    /// with the registrar that followed it.
    pub fn registrar_removed(&mut self, index: usize) {
        if index >= self.len {
            return;
        }
        self.provisional = match self.provisional {
            Some(p) if p == index => None,
            Some(p) if p > index => Some(p - 1),
            other => other,
        };
        self.len -= 1;
        if self.len == 0 {
            self.pass[0] = None;
            self.next = 0;
            return;
        }
        self.pass.remove(index);
        self.count -= 1;
        if self.next > index {
            self.next -= 1;
        }
        self.next %= self.count;
    }

    /// Give up the hunt under way without a connection (a pool user whose
    /// requests failed): the next hunt starts a fresh round at once, with
    /// the current T5 and the next registrar.
    pub fn abandon(&mut self) {
        self.round = None;
        self.provisional = None;
        self.pass.iter_mut().for_each(|r| *r = None);
    }
}

/// How long past an attempt's deadline the core waits for the driver to
/// report it: the driver times the attempt out itself, with what it knows
/// (whether TCP connected), and normally answers first.
pub const ATTEMPT_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Attempt {
    conn: ConnId,
    /// Its registrar's position in the list; `None` once the registrar
    /// was removed from the list (the attempt still runs to its end).
    index: Option<usize>,
    address: SocketAddr,
    deadline: Instant,
}

/// What one announcement did to the registrar list
/// ([`Hunter::learn`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LearnOutcome {
    /// New entries.
    pub added: usize,
    /// New entries that replaced the least recently announced one.
    pub replaced: usize,
    /// Known entries whose expiry restarted.
    pub refreshed: usize,
    /// Addresses of configured registrars (nothing to learn).
    pub configured: usize,
    /// Addresses not learned because learning is off.
    pub refused: usize,
}

/// The server hunt of a client core: the [`ServerHunt`] schedule over the
/// registrar list (configured entries, then learned ones), the one
/// connection attempt in flight and the wait for T5. Connection ids for
/// attempts come from here (the only way a client core gets a
/// connection).
#[derive(Debug, Clone)]
pub struct Hunter {
    list: RegistrarList,
    schedule: ServerHunt<ConnectFailure>,
    timeout: Duration,
    active: bool,
    attempt: Option<Attempt>,
    wait_until: Option<Instant>,
    next_conn: ConnId,
    changes: Vec<Change>,
    /// The list was empty at the last attempt and a round was spent
    /// waiting for an announcement.
    waited_for_announcement: bool,
    /// Learned registrars removed by their expiry, in all.
    expired: u64,
    /// The error the registrar connected to sent before answering
    /// anything (why it is about to close the connection).
    refusal: Option<String>,
}

impl Hunter {
    /// A hunt over `registrars`, in this order, with these timers. It
    /// learns no registrars until [`Hunter::set_max_learned`] allows it.
    pub fn new(registrars: Vec<SocketAddr>, timers: &Timers) -> Self {
        Hunter {
            schedule: ServerHunt::new(registrars.len(), timers),
            list: RegistrarList::new(registrars),
            timeout: timers.connect_timeout,
            active: false,
            attempt: None,
            wait_until: None,
            next_conn: ConnId::new(1),
            changes: Vec::new(),
            waited_for_announcement: false,
            expired: 0,
            refusal: None,
        }
    }

    /// Whether a hunt is under way.
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// A connection handle for a connection the core makes besides the
    /// hunt's (a pool element's standby link): from the same counter, so
    /// no two connections of a core share one.
    pub fn allocate_conn(&mut self) -> ConnId {
        self.next_conn.allocate()
    }

    /// The registrars hunted over, in list order: the configured ones,
    /// then the learned ones.
    pub fn registrars(&self) -> Vec<SocketAddr> {
        self.list.entries().iter().map(|e| e.address).collect()
    }

    /// The registrar list with where each entry came from.
    pub fn entries(&self) -> Vec<Entry> {
        self.list.entries()
    }

    /// How many registrars the list has now.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether the list is empty (nothing configured, nothing learned).
    pub fn is_empty(&self) -> bool {
        self.list.len() == 0
    }

    /// Whether `address` is one of the configured registrars.
    pub fn is_configured(&self, address: SocketAddr) -> bool {
        self.list.is_static(address)
    }

    /// How many of them were learned from announcements.
    pub fn learned_len(&self) -> usize {
        self.list.learned_len()
    }

    /// Learn up to `max` registrars from announcements (0, the default:
    /// none); a lower cap drops the least recently announced.
    pub fn set_max_learned(&mut self, max: usize) {
        let mut changes = std::mem::take(&mut self.changes);
        self.list.set_max_learned(max, &mut changes);
        self.apply(&mut changes);
        self.changes = changes;
    }

    /// An ASAP_SERVER_ANNOUNCE of `server_id` named `addresses` (RFC 5352
    /// 3.6): each is added to the list, or its expiry restarts, until
    /// `expires`. Configured registrars are not touched.
    pub fn learn(
        &mut self,
        server_id: ServerId,
        addresses: impl IntoIterator<Item = SocketAddr>,
        expires: Instant,
    ) -> LearnOutcome {
        let mut changes = std::mem::take(&mut self.changes);
        let mut outcome = LearnOutcome::default();
        for address in addresses {
            match self.list.learn(address, server_id, expires, &mut changes) {
                Some(Learned::Added) => outcome.added += 1,
                Some(Learned::Replaced) => outcome.replaced += 1,
                Some(Learned::Refreshed) => outcome.refreshed += 1,
                Some(Learned::Static) => outcome.configured += 1,
                None => outcome.refused += 1,
            }
            self.apply(&mut changes);
        }
        self.changes = changes;
        outcome
    }

    /// Drop the learned registrars whose T7-ENRPoutdate expired by `now`;
    /// returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        if self.list.learned_len() == 0 {
            return 0;
        }
        let mut changes = std::mem::take(&mut self.changes);
        let n = self.list.expire(now, &mut changes);
        self.apply(&mut changes);
        self.changes = changes;
        self.expired += n as u64;
        n
    }

    /// Learned registrars removed by their expiry so far.
    pub fn expired_total(&self) -> u64 {
        self.expired
    }

    /// Tell the schedule and the attempt in flight how the list changed.
    fn apply(&mut self, changes: &mut Vec<Change>) {
        for change in changes.drain(..) {
            match change {
                Change::Appended => {
                    self.schedule.registrar_added();
                    self.waited_for_announcement = false;
                }
                Change::Removed(i) => {
                    self.schedule.registrar_removed(i);
                    if let Some(a) = self.attempt.as_mut() {
                        a.index = match a.index {
                            Some(j) if j == i => None,
                            Some(j) if j > i => Some(j - 1),
                            other => other,
                        };
                    }
                }
            }
        }
    }

    /// Start a hunt, or resume one after a failed pass (with the T5
    /// back-off where the last one stopped); nothing if one is under way.
    /// Returns the failures of a pass that failed at once (an empty
    /// registrar list).
    pub fn start<O: From<LinkAction>>(
        &mut self,
        now: Instant,
        out: &mut VecDeque<O>,
    ) -> Option<Vec<RegistrarFailure>> {
        if self.active {
            return None;
        }
        self.active = true;
        self.schedule.begin(now);
        self.advance(now, out)
    }

    /// Ask for the next attempt, unless one is in flight or T5 is awaited.
    fn advance<O: From<LinkAction>>(
        &mut self,
        now: Instant,
        out: &mut VecDeque<O>,
    ) -> Option<Vec<RegistrarFailure>> {
        if !self.active || self.attempt.is_some() || self.wait_until.is_some_and(|w| now < w) {
            return None;
        }
        self.wait_until = None;
        // RFC 5352 3.6: an address whose T7-ENRPoutdate expired is deleted
        // from the list, so it is not tried.
        self.expire(now);
        loop {
            match self.schedule.step(now) {
                HuntStep::Wait { until } => {
                    tracing::debug!(
                        "server hunt: every registrar failed this round, waiting {:?}",
                        until.saturating_duration_since(now)
                    );
                    self.wait_until = Some(until);
                    return None;
                }
                HuntStep::Try { index, deadline } => {
                    let Some(address) = self.list.address(index) else {
                        if self.list.is_learning() && !self.waited_for_announcement {
                            // RFC 5352 3.6: with multicast the list is
                            // what announcements fill; wait for one for
                            // the rest of this round (a registrar learned
                            // meanwhile is tried at once, see `wake`).
                            self.waited_for_announcement = true;
                            if let Some(r) = self.schedule.round.as_mut() {
                                r.tried = r.tried.saturating_sub(1);
                                self.wait_until = Some(r.ends);
                                return None;
                            }
                        }
                        self.waited_for_announcement = false;
                        // No registrar configured (or announced): the
                        // pass fails at once.
                        let failure = ConnectFailure::new(
                            if self.list.is_learning() {
                                "no registrar is configured and none was announced"
                            } else {
                                "no registrar is configured"
                            },
                            None,
                        );
                        if let Some(pass) = self.schedule.failed(index, failure) {
                            return Some(self.pass_failed(pass));
                        }
                        continue;
                    };
                    let conn = self.next_conn.allocate();
                    self.attempt = Some(Attempt {
                        conn,
                        index: Some(index),
                        address,
                        deadline,
                    });
                    out.push_back(
                        LinkAction::Connect {
                            conn,
                            index,
                            registrar: address,
                            deadline,
                        }
                        .into(),
                    );
                    return None;
                }
            }
        }
    }

    /// Registrars were added to the list: a hunt waiting for T5 tries
    /// them at once (each is tried once per round, like the others).
    /// Returns the failures of a pass this completed.
    pub fn wake<O: From<LinkAction>>(
        &mut self,
        now: Instant,
        out: &mut VecDeque<O>,
    ) -> Option<Vec<RegistrarFailure>> {
        if !self.active || self.attempt.is_some() || self.wait_until.is_none() {
            return None;
        }
        self.wait_until = None;
        self.advance(now, out)
    }

    /// When the core must call [`Hunter::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.attempt {
            Some(a) => Some(a.deadline + ATTEMPT_GRACE),
            None => self.wait_until.filter(|_| self.active),
        }
    }

    /// Timers: an attempt the driver did not report in time fails (and is
    /// closed); the end of a T5 wait starts the next round. Returns the
    /// failures of a pass this completed.
    pub fn handle_timeout<O: From<LinkAction>>(
        &mut self,
        now: Instant,
        out: &mut VecDeque<O>,
    ) -> Option<Vec<RegistrarFailure>> {
        if let Some(a) = self.attempt.filter(|a| a.deadline + ATTEMPT_GRACE <= now) {
            out.push_back(LinkAction::Close { conn: a.conn }.into());
            let failure = ConnectFailure::new(
                format!("no connection within {:?}", self.timeout),
                Some(FailureKind::ConnectTimeout {
                    after: self.timeout,
                }),
            );
            return self.connect_failed(now, a.conn, failure, out);
        }
        if self.active && self.wait_until.is_some_and(|w| w <= now) {
            self.wait_until = None;
            return self.advance(now, out);
        }
        None
    }

    /// The driver could not make connection `conn` (SH4): the next
    /// registrar is tried. Returns the last failure of every registrar
    /// when this completes a pass in which all of them failed; the hunt
    /// then pauses until [`Hunter::start`] resumes it. A report for an
    /// attempt the hunt gave up already is ignored.
    pub fn connect_failed<O: From<LinkAction>>(
        &mut self,
        now: Instant,
        conn: ConnId,
        failure: ConnectFailure,
        out: &mut VecDeque<O>,
    ) -> Option<Vec<RegistrarFailure>> {
        let a = self.attempt.filter(|a| a.conn == conn)?;
        self.attempt = None;
        let pass = match a.index {
            Some(index) => self.schedule.failed(index, failure),
            // Its registrar left the list meanwhile: nothing to record,
            // but the others may all have failed by now.
            None => self.schedule.complete_pass(),
        };
        match pass {
            Some(pass) => Some(self.pass_failed(pass)),
            None => self.advance(now, out),
        }
    }

    /// A whole pass failed: the hunt pauses; each registrar's last failure.
    fn pass_failed(&mut self, pass: Vec<(usize, ConnectFailure)>) -> Vec<RegistrarFailure> {
        self.active = false;
        let unnamed = SocketAddr::from(([0, 0, 0, 0], 0));
        pass.into_iter()
            .map(|(i, f)| RegistrarFailure {
                registrar: self.list.address(i).unwrap_or(unnamed),
                reason: f.reason,
                kind: f.kind,
            })
            .collect()
    }

    /// The driver made connection `conn` (SH3): the hunt stops and T5 is
    /// reset. Returns the registrar, or `None` if `conn` is not the
    /// attempt in flight (one given up): the caller closes it.
    pub fn connected(&mut self, conn: ConnId) -> Option<SocketAddr> {
        let a = self.attempt.filter(|a| a.conn == conn)?;
        self.attempt = None;
        self.active = false;
        self.wait_until = None;
        match a.index {
            Some(index) => self.schedule.connected(index),
            None => {
                // Its registrar left the list: the rotation goes on from
                // where it is.
                let next = self.schedule.next;
                self.schedule.connected(next + self.schedule.count - 1);
            }
        }
        Some(a.address)
    }

    /// The registrar connected to answered (its first message): the hunt
    /// is over and T5 is reset (SH3).
    pub fn confirmed(&mut self) {
        self.schedule.confirmed();
        self.refusal = None;
    }

    /// Whether the connection made last waits for the registrar's first
    /// answer (until then the hunt that made it is not over).
    pub fn awaiting_answer(&self) -> bool {
        self.schedule.provisional.is_some()
    }

    /// A message from the registrar connected to: an answer ends the
    /// hunt ([`Hunter::confirmed`]); an error before any answer is kept
    /// as the reason of the close it announces (a refusal at connection).
    pub fn heard(&mut self, message: &AsapMessage) {
        if !self.awaiting_answer() {
            return;
        }
        match message {
            AsapMessage::Error { error } => {
                self.refusal = Some(crate::error::describe_operation_error(error));
            }
            _ => self.confirmed(),
        }
    }

    /// Whether the registrar connected to sent an error before answering.
    pub fn was_refused(&self) -> bool {
        self.awaiting_answer() && self.refusal.is_some()
    }

    /// Why the connection made last ended: `reason`, with the registrar's
    /// refusal when it sent one before answering.
    pub fn close_reason(&mut self, reason: &str) -> String {
        match self.refusal.take() {
            Some(refusal) if self.awaiting_answer() => {
                format!("{reason}: the registrar refused: {refusal}")
            }
            _ => reason.to_owned(),
        }
    }

    /// The connection ended before the registrar answered: that attempt
    /// failed with `failure`, as a connection that could not be made
    /// (SH4). Returns the failures of a pass this completed; otherwise the
    /// caller resumes the hunt ([`Hunter::start`]), which goes on with
    /// the next registrar or waits for T5.
    pub fn lost_unconfirmed(&mut self, failure: ConnectFailure) -> Option<Vec<RegistrarFailure>> {
        self.refusal = None;
        let pass = self.schedule.lost_unconfirmed(failure)?;
        Some(self.pass_failed(pass))
    }

    /// The attempt in flight (tests).
    #[cfg(test)]
    pub(crate) fn attempt(&self) -> Option<(ConnId, SocketAddr)> {
        self.attempt.map(|a| (a.conn, a.address))
    }

    /// Stop the hunt: an attempt in flight is closed. With `forget_round`
    /// the next hunt starts a fresh round at once (a pool user whose
    /// requests all failed); without, it resumes the T5 back-off.
    pub fn stop<O: From<LinkAction>>(&mut self, forget_round: bool, out: &mut VecDeque<O>) {
        if let Some(a) = self.attempt.take() {
            out.push_back(LinkAction::Close { conn: a.conn }.into());
        }
        self.active = false;
        self.wait_until = None;
        if forget_round {
            self.schedule.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timers() -> Timers {
        Timers {
            t5_server_hunt: Duration::from_secs(10),
            retran_max: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(4),
            ..Timers::default()
        }
    }

    fn tried(step: HuntStep) -> usize {
        match step {
            HuntStep::Try { index, .. } => index,
            HuntStep::Wait { .. } => panic!("expected an attempt, got {step:?}"),
        }
    }

    #[test]
    fn tries_each_registrar_in_turn_then_waits_for_t5() {
        let t0 = Instant::now();
        let mut h: ServerHunt = ServerHunt::new(3, &timers());
        h.begin(t0);
        assert!(h.is_active());
        assert_eq!(
            h.step(t0),
            HuntStep::Try {
                index: 0,
                deadline: t0 + Duration::from_secs(4)
            }
        );
        assert_eq!(h.failed(0, "refused".into()), None);
        assert_eq!(tried(h.step(t0)), 1);
        assert_eq!(h.failed(1, "refused".into()), None);
        assert_eq!(tried(h.step(t0)), 2);
        let pass = h.failed(2, "bad certificate".into()).expect("pass done");
        assert_eq!(
            pass,
            vec![
                (0, "refused".to_owned()),
                (1, "refused".to_owned()),
                (2, "bad certificate".to_owned())
            ]
        );
        // All failed quickly: wait for the round to end, no spinning.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(
            h.step(t1),
            HuntStep::Wait {
                until: t0 + Duration::from_secs(10)
            }
        );
    }

    #[test]
    fn t5_doubles_up_to_retran_max_and_rounds_rotate() {
        let t0 = Instant::now();
        let mut h: ServerHunt = ServerHunt::new(2, &timers());
        h.begin(t0);
        assert_eq!(tried(h.step(t0)), 0);
        // The attempt hangs past the round (SH5): a new round with T5
        // doubled starts with the next registrar.
        let t = t0 + Duration::from_secs(10);
        h.failed(0, "timed out".into());
        let mut now = t;
        let mut seen = Vec::new();
        for _ in 0..5 {
            match h.step(now) {
                HuntStep::Try { index, deadline } => {
                    seen.push((index, h.t5().as_secs()));
                    assert!(deadline <= now + Duration::from_secs(4));
                    h.failed(index, "timed out".into());
                    now = deadline;
                }
                HuntStep::Wait { until } => now = until,
            }
        }
        assert_eq!(seen[0], (1, 20));
        assert_eq!(seen[1], (0, 20));
        let t5s: Vec<u64> = seen.iter().map(|s| s.1).collect();
        assert!(t5s.windows(2).all(|w| w[0] <= w[1]), "{t5s:?}");
        // Keep going until the cap.
        for _ in 0..20 {
            match h.step(now) {
                HuntStep::Try { index, deadline } => {
                    h.failed(index, "x".into());
                    now = deadline;
                }
                HuntStep::Wait { until } => now = until,
            }
        }
        assert_eq!(h.t5(), Duration::from_secs(60));
    }

    #[test]
    fn an_attempt_never_outlasts_the_round() {
        let t0 = Instant::now();
        let mut h: ServerHunt = ServerHunt::new(
            3,
            &Timers {
                t5_server_hunt: Duration::from_secs(5),
                connect_timeout: Duration::from_secs(4),
                ..timers()
            },
        );
        h.begin(t0);
        assert_eq!(tried(h.step(t0)), 0);
        let t = t0 + Duration::from_secs(4);
        assert_eq!(
            h.step(t),
            HuntStep::Try {
                index: 1,
                deadline: t0 + Duration::from_secs(5)
            }
        );
    }

    #[test]
    fn a_connection_resets_t5_and_the_next_hunt_starts_after_it() {
        let t0 = Instant::now();
        let mut h: ServerHunt = ServerHunt::new(3, &timers());
        h.begin(t0);
        assert_eq!(tried(h.step(t0)), 0);
        h.failed(0, "refused".into());
        let late = t0 + Duration::from_secs(10);
        assert_eq!(tried(h.step(late)), 1);
        assert_eq!(h.t5(), Duration::from_secs(20));
        h.connected(1);
        // Not over until the registrar answers.
        assert!(h.is_active());
        assert_eq!(h.t5(), Duration::from_secs(20));
        h.confirmed();
        assert!(!h.is_active());
        assert_eq!(h.t5(), Duration::from_secs(10));
        // The home is lost: the hunt starts with a different registrar.
        h.begin(late);
        assert_eq!(tried(h.step(late)), 2);
        // The earlier failure of 0 does not count towards this pass.
        assert_eq!(h.failed(2, "refused".into()), None);
    }

    fn addr(n: u8) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, n], 3864))
    }

    fn attempted(out: &VecDeque<LinkAction>) -> Vec<(usize, SocketAddr)> {
        out.iter()
            .filter_map(|a| match a {
                LinkAction::Connect {
                    index, registrar, ..
                } => Some((*index, *registrar)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_growing_list_joins_the_round_and_the_pass() {
        let t0 = Instant::now();
        let mut h: ServerHunt = ServerHunt::new(2, &timers());
        h.begin(t0);
        assert_eq!(tried(h.step(t0)), 0);
        assert_eq!(h.failed(0, "refused".into()), None);
        assert_eq!(tried(h.step(t0)), 1);
        assert!(h.failed(1, "refused".into()).is_some(), "a pass over two");
        // The pass over two was reported; a third joins the next pass.
        h.registrar_added();
        assert_eq!(tried(h.step(t0)), 2, "the new one, untried this round");
        assert!(matches!(h.step(t0), HuntStep::Wait { .. }));
        // Removing the registrar before the one next in turn keeps the
        // rotation on the same registrar.
        let late = t0 + Duration::from_secs(10);
        h.registrar_removed(0);
        assert_eq!(tried(h.step(late)), 0, "what was index 1 is now 0");
        h.registrar_removed(5);
        h.registrar_removed(1);
        h.registrar_removed(0);
        assert!(matches!(h.step(late), HuntStep::Wait { .. }));
        let later = late + Duration::from_secs(40);
        assert_eq!(tried(h.step(later)), 0, "an empty list still has its slot");
    }

    #[test]
    fn an_attempt_to_a_registrar_that_leaves_the_list_runs_to_its_end() {
        let t0 = Instant::now();
        let mut h = Hunter::new(vec![addr(1)], &timers());
        h.set_max_learned(4);
        let out = &mut VecDeque::<LinkAction>::new();
        let exp = t0 + Duration::from_secs(5);
        assert_eq!(h.learn(ServerId::new(2), [addr(2), addr(3)], exp).added, 2);
        assert_eq!(h.learn(ServerId::new(1), [addr(1)], exp).configured, 1);
        assert!(h.start(t0, out).is_none());
        h.connect_failed(
            t0,
            ConnId::new(1),
            ConnectFailure::new("refused", None),
            out,
        );
        assert_eq!(
            attempted(out),
            vec![(0, addr(1)), (1, addr(2))],
            "configured first, then learned"
        );
        // addr(2) expires while it is being tried; addr(3) moves down.
        assert_eq!(h.expire(exp), 2);
        assert_eq!(h.registrars(), vec![addr(1)]);
        let t = exp;
        // The failure of the removed one records nothing, but the pass
        // over what is left (addr(1)) is complete.
        let pass = h.connect_failed(t, ConnId::new(2), ConnectFailure::new("refused", None), out);
        assert_eq!(pass.map(|p| p.len()), Some(1));
        // A connection to a removed one is still a connection.
        let out = &mut VecDeque::<LinkAction>::new();
        let exp2 = t + Duration::from_secs(5);
        h.learn(ServerId::new(4), [addr(4)], exp2);
        h.start(t + Duration::from_secs(10), out);
        let (conn, to) = h.attempt().expect("an attempt");
        h.expire(exp2 + Duration::from_secs(1));
        assert_eq!(h.connected(conn), Some(to));
    }

    #[test]
    fn abandoning_allows_an_immediate_fresh_round() {
        let t0 = Instant::now();
        let mut h: ServerHunt = ServerHunt::new(1, &timers());
        h.begin(t0);
        assert_eq!(tried(h.step(t0)), 0);
        assert!(h.failed(0, "refused".into()).is_some());
        assert!(matches!(h.step(t0), HuntStep::Wait { .. }));
        h.abandon();
        h.begin(t0);
        assert_eq!(tried(h.step(t0)), 0);
        assert_eq!(h.failed(7, "no such registrar".into()), None);
    }
}
