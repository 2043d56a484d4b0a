//! A pool element's standby link (docs/tcp-mapping.md, "Re-homing PEs
//! over TCP"): a second registrar connection, to another registrar of the
//! list than the one the PEs are registered with, made and authenticated
//! like the first. This module owns the link's state: which registrar to
//! try, the attempt and its deadline, the back-off after a failure, and
//! when the PE names its PEs on it again. The core decides what goes
//! over it ([`crate::PeCore`]):
//!
//! * the PE names each of its PEs on it with an unsolicited
//!   ASAP_ENDPOINT_KEEP_ALIVE_ACK, again every [`REFRESH`] (which also
//!   keeps the connection from going idle at the registrar);
//! * a registrar that took the PEs' home over (RFC 5353 3.5.2) sends the
//!   H-flag ASAP_ENDPOINT_KEEP_ALIVE over it, as SCTP would reach the
//!   PE's ASAP endpoint; the PE answers it and, if the link is trusted
//!   ([`crate::HomeTrust`]), makes it its registrar connection and
//!   registers over it (RFC 5352 3.4 KA2.4);
//! * when the registrar connection is lost, the PE registers over the
//!   standby link at once instead of hunting (RFC 5352 3.6).

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::hunt::ATTEMPT_GRACE;
use crate::{ConnId, LinkAction};

/// How often the PE names its PEs on the standby link again: well within
/// the registrar's idle timeout, and soon enough that a registrar which
/// lost them (restarted) has them back before it needs them.
pub const REFRESH: Duration = Duration::from_secs(30);

/// The standby link as the core sees it once it is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StandbyUp {
    pub conn: ConnId,
    pub registrar: SocketAddr,
    /// This end's address on it (what the PE registers if it becomes the
    /// registrar connection).
    pub local: IpAddr,
    /// Whether its TLS handshake authenticated the registrar.
    pub authenticated: bool,
    /// Frames on it that did not decode.
    pub malformed: u32,
    refresh_at: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No link; the next attempt not before `retry_at` (`None`: as soon
    /// as one is wanted).
    Idle {
        retry_at: Option<Instant>,
    },
    Connecting {
        conn: ConnId,
        registrar: SocketAddr,
        deadline: Instant,
    },
    Up(StandbyUp),
}

/// The standby link of one PE core.
#[derive(Debug, Clone)]
pub(crate) struct Standby {
    state: State,
    /// Which of the other registrars to try next (moves on after a
    /// failure).
    cursor: usize,
    /// The wait after a failed attempt or a lost link.
    retry: Duration,
    /// The longest attempt.
    connect_timeout: Duration,
}

impl Standby {
    pub(crate) fn new(retry: Duration, connect_timeout: Duration) -> Self {
        Standby {
            state: State::Idle { retry_at: None },
            cursor: 0,
            retry,
            connect_timeout,
        }
    }

    /// The link, if it is up.
    pub(crate) fn up(&self) -> Option<StandbyUp> {
        match self.state {
            State::Up(u) => Some(u),
            _ => None,
        }
    }

    /// Its registrar, if it is up.
    pub(crate) fn registrar(&self) -> Option<SocketAddr> {
        self.up().map(|u| u.registrar)
    }

    /// Whether `conn` is the standby link or the attempt to make it.
    pub(crate) fn is(&self, conn: ConnId) -> bool {
        match self.state {
            State::Connecting { conn: c, .. } => c == conn,
            State::Up(u) => u.conn == conn,
            State::Idle { .. } => false,
        }
    }

    /// The undecodable-frame count of the link (for [`crate::inbound`]).
    pub(crate) fn malformed_mut(&mut self) -> Option<&mut u32> {
        match &mut self.state {
            State::Up(u) => Some(&mut u.malformed),
            _ => None,
        }
    }

    /// Make a standby link if none is up or under way and the back-off
    /// allows it: to the next registrar of `registrars` that is not
    /// `primary`. `conn` is the handle to use.
    pub(crate) fn start<O: From<LinkAction>>(
        &mut self,
        now: Instant,
        primary: SocketAddr,
        registrars: &[SocketAddr],
        conn: impl FnOnce() -> ConnId,
        out: &mut VecDeque<O>,
    ) {
        match self.state {
            State::Idle { retry_at: Some(t) } if now < t => return,
            State::Idle { .. } => {}
            State::Connecting { .. } | State::Up(_) => return,
        }
        let others: Vec<(usize, SocketAddr)> = registrars
            .iter()
            .copied()
            .enumerate()
            .filter(|&(_, a)| a != primary)
            .collect();
        if others.is_empty() {
            // One registrar in the list: nobody to stand by with.
            self.state = State::Idle { retry_at: None };
            return;
        }
        let (index, registrar) = others[self.cursor % others.len()];
        let conn = conn();
        let deadline = now + self.connect_timeout;
        self.state = State::Connecting {
            conn,
            registrar,
            deadline,
        };
        tracing::debug!(%registrar, "opening a standby link");
        out.push_back(
            LinkAction::Connect {
                conn,
                index,
                registrar,
                deadline,
            }
            .into(),
        );
    }

    /// The attempt `conn` made its connection; the PE names its PEs on it
    /// at once ([`Standby::refresh_due`]). Returns the registrar, or
    /// `None` if `conn` is not the attempt.
    pub(crate) fn connected(
        &mut self,
        now: Instant,
        conn: ConnId,
        local: IpAddr,
        authenticated: bool,
    ) -> Option<SocketAddr> {
        let State::Connecting {
            conn: c, registrar, ..
        } = self.state
        else {
            return None;
        };
        if c != conn {
            return None;
        }
        self.state = State::Up(StandbyUp {
            conn,
            registrar,
            local,
            authenticated,
            malformed: 0,
            refresh_at: now,
        });
        Some(registrar)
    }

    /// The attempt failed or the link ended: try another registrar after
    /// the back-off. Returns whether `conn` was the standby link's.
    pub(crate) fn failed(&mut self, now: Instant, conn: ConnId) -> bool {
        if !self.is(conn) {
            return false;
        }
        self.cursor = self.cursor.wrapping_add(1);
        self.state = State::Idle {
            retry_at: Some(now + self.retry),
        };
        true
    }

    /// Close the link (or abandon the attempt), to make another when one
    /// is wanted.
    pub(crate) fn drop_link<O: From<LinkAction>>(&mut self, out: &mut VecDeque<O>) {
        let conn = match self.state {
            State::Connecting { conn, .. } => conn,
            State::Up(u) => u.conn,
            State::Idle { .. } => return,
        };
        out.push_back(LinkAction::Close { conn }.into());
        self.state = State::Idle { retry_at: None };
    }

    /// Take the link over as the registrar connection: the standby link
    /// is no more (a new one is made when wanted).
    pub(crate) fn take(&mut self) -> Option<StandbyUp> {
        let up = self.up()?;
        self.state = State::Idle { retry_at: None };
        Some(up)
    }

    /// Timers: an attempt the driver did not report in time is closed and
    /// counts as failed; a back-off that ended is forgotten. Returns
    /// whether the PE must name its PEs on the link now (and schedules the
    /// next time).
    pub(crate) fn refresh_due<O: From<LinkAction>>(
        &mut self,
        now: Instant,
        out: &mut VecDeque<O>,
    ) -> bool {
        match &mut self.state {
            State::Connecting { conn, deadline, .. } if *deadline + ATTEMPT_GRACE <= now => {
                let conn = *conn;
                out.push_back(LinkAction::Close { conn }.into());
                self.failed(now, conn);
                false
            }
            State::Idle { retry_at: Some(t) } if *t <= now => {
                self.state = State::Idle { retry_at: None };
                false
            }
            State::Up(u) if u.refresh_at <= now => {
                u.refresh_at = now + REFRESH;
                true
            }
            _ => false,
        }
    }

    /// When [`Standby::refresh_due`] has something to do.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Idle { retry_at } => retry_at,
            State::Connecting { deadline, .. } => Some(deadline + ATTEMPT_GRACE),
            State::Up(u) => Some(u.refresh_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(n: u8) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, n], 3863))
    }

    fn connects(out: &VecDeque<LinkAction>) -> Vec<SocketAddr> {
        out.iter()
            .filter_map(|a| match a {
                LinkAction::Connect { registrar, .. } => Some(*registrar),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn it_stands_by_with_another_registrar_and_rotates_after_failures() {
        let t0 = Instant::now();
        let mut s = Standby::new(Duration::from_secs(10), Duration::from_secs(5));
        let mut out = VecDeque::new();
        let list = [addr(1), addr(2), addr(3)];
        let mut next = ConnId::new(1);
        s.start(t0, addr(1), &list, || next.allocate(), &mut out);
        assert_eq!(connects(&out), vec![addr(2)]);
        // Only one attempt at a time.
        s.start(t0, addr(1), &list, || next.allocate(), &mut out);
        assert_eq!(connects(&out).len(), 1);
        assert!(s.failed(t0, ConnId::new(1)));
        // The back-off holds, then the next registrar is tried.
        s.start(t0, addr(1), &list, || next.allocate(), &mut out);
        assert_eq!(connects(&out).len(), 1);
        let t1 = t0 + Duration::from_secs(10);
        assert!(!s.refresh_due(t1, &mut out));
        s.start(t1, addr(1), &list, || next.allocate(), &mut out);
        assert_eq!(connects(&out), vec![addr(2), addr(3)]);
        assert_eq!(
            s.connected(t1, ConnId::new(2), addr(9).ip(), true),
            Some(addr(3))
        );
        // Named at once, then every REFRESH.
        assert!(s.refresh_due(t1, &mut out));
        assert!(!s.refresh_due(t1, &mut out));
        assert!(s.refresh_due(t1 + REFRESH, &mut out));
        let up = s.take().map(|u| u.registrar);
        assert_eq!(up, Some(addr(3)));
        assert!(s.up().is_none());
    }

    #[test]
    fn a_single_registrar_has_no_standby_and_a_silent_attempt_is_given_up() {
        let t0 = Instant::now();
        let mut s = Standby::new(Duration::from_secs(10), Duration::from_secs(5));
        let mut out = VecDeque::new();
        let mut next = ConnId::new(1);
        s.start(t0, addr(1), &[addr(1)], || next.allocate(), &mut out);
        assert!(out.is_empty());
        assert_eq!(s.poll_timeout(), None);
        s.start(
            t0,
            addr(1),
            &[addr(1), addr(2)],
            || next.allocate(),
            &mut out,
        );
        let late = s.poll_timeout().unwrap_or(t0);
        assert_eq!(late, t0 + Duration::from_secs(5) + ATTEMPT_GRACE);
        assert!(!s.refresh_due(late, &mut out));
        assert!(matches!(out.back(), Some(LinkAction::Close { conn }) if *conn == ConnId::new(1)));
        assert!(!s.is(ConnId::new(1)));
    }
}
