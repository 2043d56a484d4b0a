//! Property tests of the client cores under random input sequences: a
//! driver model that answers connection attempts, delivers frames (valid
//! messages for the core's PEs and pools, others, garbage), drops
//! connections and lets time pass, and checks after every step:
//!
//! * no panic;
//! * one connection attempt at a time, each with a new id; messages only
//!   on the connection that is open;
//! * timers are consistent: after `handle_timeout(now)` nothing is due at
//!   or before `now` (a driver would spin);
//! * one answer per request: every PU token is answered once, never
//!   twice, and once no registrar can be reached every request ends;
//!   every PE ends with exactly one final event once it is deregistered;
//! * with announcements on (random announcements and garbage on the
//!   announce channel, learned registrars expiring as time passes): the
//!   same, and the registrar list keeps its configured entries first and
//!   never holds more learned ones than the cap.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use rserpool_wire::{
    AsapMessage, Cause, CauseCode, OperationError, PeId, Policy, PoolElement, PoolHandle, ServerId,
    Transport, TransportUse, WireMessage,
};

use crate::config::{PoolUserSettings, ReportLimits, Timers};
use crate::test_outputs::plain;
use crate::{
    ConnId, ConnectFailure, LinkAction, LinkInputs, PeCore, PeEvent, PeOutput, PoolElementSpec,
    PuCore, PuOutput,
};

const ANNOUNCER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)), 3863);

const REGISTRARS: [SocketAddr; 2] = [
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 3863),
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 3863),
];

#[derive(Debug, Clone)]
enum Step {
    /// Let this many milliseconds pass, firing due timers.
    Advance(u32),
    /// The pending attempt succeeds.
    ConnectOk,
    /// The pending attempt fails.
    ConnectFail,
    /// The open connection ends.
    Disconnect,
    /// A frame arrives on the open connection.
    Frame(Frame),
    /// PE side: add PE `n`; deregister PE `n`.
    Add(u8),
    Deregister(u8),
    /// PU side: resolve or select pool `n`; report PE `m` of pool `n`.
    Resolve(u8),
    Select(u8),
    Report(u8, u8),
    /// An announcement of server `n` naming learned addresses `m`.
    Announce(u8, Vec<u8>),
    /// A datagram of garbage on the announce channel.
    Datagram(Vec<u8>),
}

/// Learned registrars a core may hold in the announcement properties.
const MAX_LEARNED: usize = 3;

fn learned_address(m: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, m)), 3864)
}

fn step_with_announcements() -> impl Strategy<Value = Step> {
    prop_oneof![
        10 => step(),
        2 => (0..4u8, proptest::collection::vec(0..8u8, 0..5)).prop_map(|(n, m)| Step::Announce(n, m)),
        1 => proptest::collection::vec(any::<u8>(), 0..24).prop_map(Step::Datagram),
    ]
}

#[derive(Debug, Clone)]
enum Frame {
    Garbage(Vec<u8>),
    RegistrationAnswer {
        pe: u8,
        reject: Option<CauseCode>,
    },
    DeregistrationAnswer {
        pe: u8,
        refused: bool,
    },
    KeepAlive {
        home: bool,
        server: u8,
        pe: Option<u8>,
    },
    Resolution {
        pool: u8,
        pes: Vec<u8>,
    },
    ResolutionRefused {
        pool: u8,
        unknown: bool,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let frame = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..24).prop_map(Frame::Garbage),
        (
            0..4u8,
            proptest::option::of(prop_oneof![
                Just(CauseCode::LackOfResources),
                Just(CauseCode::InvalidValues),
                Just(CauseCode::UnspecifiedError)
            ])
        )
            .prop_map(|(pe, reject)| Frame::RegistrationAnswer { pe, reject }),
        (0..4u8, any::<bool>())
            .prop_map(|(pe, refused)| Frame::DeregistrationAnswer { pe, refused }),
        (any::<bool>(), 0..3u8, proptest::option::of(0..4u8))
            .prop_map(|(home, server, pe)| Frame::KeepAlive { home, server, pe }),
        (0..3u8, proptest::collection::vec(0..6u8, 0..5))
            .prop_map(|(pool, pes)| Frame::Resolution { pool, pes }),
        (0..3u8, any::<bool>())
            .prop_map(|(pool, unknown)| Frame::ResolutionRefused { pool, unknown }),
    ];
    prop_oneof![
        3 => (0..40_000u32).prop_map(Step::Advance),
        3 => Just(Step::ConnectOk),
        2 => Just(Step::ConnectFail),
        1 => Just(Step::Disconnect),
        6 => frame.prop_map(Step::Frame),
        1 => (0..4u8).prop_map(Step::Add),
        1 => (0..4u8).prop_map(Step::Deregister),
        2 => (0..3u8).prop_map(Step::Resolve),
        2 => (0..3u8).prop_map(Step::Select),
        1 => (0..3u8, 0..6u8).prop_map(|(p, m)| Step::Report(p, m)),
    ]
}

fn pool(n: u8) -> PoolHandle {
    PoolHandle::new(format!("pool-{n}").into_bytes())
        .unwrap_or_else(|| PoolHandle::from_static("x"))
}

fn pe_id(n: u8) -> u32 {
    u32::from(n) + 1
}

fn element(id: u32) -> PoolElement {
    PoolElement {
        identifier: PeId::new(id),
        home_registrar: ServerId::new(1),
        registration_life: 30_000,
        user_transport: Transport::Tcp {
            port: 7000,
            transport_use: TransportUse::DataOnly,
            address: IpAddr::V4(Ipv4Addr::new(198, 51, 100, id as u8)),
        },
        policy: Policy::RoundRobin,
        asap_transport: None,
    }
}

fn frame_bytes(f: &Frame) -> Vec<u8> {
    let m = match f {
        Frame::Garbage(b) => return b.clone(),
        Frame::RegistrationAnswer { pe, reject } => AsapMessage::RegistrationResponse {
            reject: reject.is_some(),
            pool_handle: pool(pe % 3),
            identifier: PeId::new(pe_id(*pe)),
            error: reject.map(|c| OperationError::single(Cause::new(c))),
        },
        Frame::DeregistrationAnswer { pe, refused } => AsapMessage::DeregistrationResponse {
            pool_handle: pool(pe % 3),
            identifier: PeId::new(pe_id(*pe)),
            error: refused.then(|| OperationError::single(Cause::new(CauseCode::UnspecifiedError))),
        },
        Frame::KeepAlive { home, server, pe } => AsapMessage::EndpointKeepAlive {
            home: *home,
            server_id: ServerId::new(u32::from(*server) + 1),
            pool_handle: pool(pe.unwrap_or(0) % 3),
            identifier: pe.map(pe_id).map(PeId::new),
        },
        Frame::Resolution { pool: p, pes } => AsapMessage::HandleResolutionResponse {
            accept_updates: false,
            pool_handle: pool(*p),
            policy: None,
            pool_elements: pes.iter().map(|&i| element(pe_id(i))).collect(),
            error: None,
        },
        Frame::ResolutionRefused { pool: p, unknown } => AsapMessage::HandleResolutionResponse {
            accept_updates: false,
            pool_handle: pool(*p),
            policy: None,
            pool_elements: Vec::new(),
            error: Some(OperationError::single(Cause::new(if *unknown {
                CauseCode::UnknownPoolHandle
            } else {
                CauseCode::LackOfResources
            }))),
        },
    };
    m.to_bytes().unwrap_or_default()
}

/// The driver's view of the link, checked as outputs come.
#[derive(Debug, Default)]
struct LinkModel {
    pending: Option<ConnId>,
    open: Option<ConnId>,
    used: BTreeSet<ConnId>,
    /// Learned registrars the list may hold besides the configured ones.
    learned: usize,
}

impl LinkModel {
    fn apply(&mut self, a: &LinkAction) -> Result<(), TestCaseError> {
        match a {
            LinkAction::Connect { conn, index, .. } => {
                prop_assert!(
                    self.pending.is_none(),
                    "a second attempt while {:?} runs",
                    self.pending
                );
                prop_assert!(self.used.insert(*conn), "connection id {conn} reused");
                prop_assert!(*index < REGISTRARS.len() + self.learned);
                self.pending = Some(*conn);
            }
            LinkAction::Send { conn, message } => {
                prop_assert_eq!(
                    self.open,
                    Some(*conn),
                    "{} on a connection not open",
                    message.name()
                );
            }
            LinkAction::Close { conn } => {
                if self.pending == Some(*conn) {
                    self.pending = None;
                }
                if self.open == Some(*conn) {
                    self.open = None;
                }
            }
        }
        Ok(())
    }
}

/// What the property needs of a core: its link inputs and timers
/// ([`LinkInputs`], as the drivers use them), and its outputs checked.
trait Core {
    type Inner: LinkInputs;
    fn inner(&mut self) -> &mut Self::Inner;
    fn next(&self) -> Option<Instant>;
    fn drain(&mut self, link: &mut LinkModel, now: Instant) -> Result<(), TestCaseError>;
    fn connected(&mut self, now: Instant, conn: ConnId) {
        self.inner().handle_connected(now, conn, plain());
    }
    fn failed(&mut self, now: Instant, conn: ConnId) {
        self.inner()
            .handle_connect_failed(now, conn, ConnectFailure::new("refused", None));
    }
    fn frame(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        self.inner().handle_frame(now, conn, bytes);
    }
    fn disconnected(&mut self, now: Instant, conn: ConnId) {
        self.inner().handle_disconnected(now, conn, "reset");
    }
    fn timeout(&mut self, now: Instant);
    /// A datagram on the announce channel.
    fn datagram(&mut self, now: Instant, bytes: &[u8]);
    /// The registrar list.
    fn discovery(&self) -> crate::Discovery;
}

/// Run step `s` if it is one of the link kinds; `false` for the others.
fn run_link_steps<C: Core>(
    core: &mut C,
    link: &mut LinkModel,
    now: &mut Instant,
    s: &Step,
) -> Result<bool, TestCaseError> {
    match s {
        Step::Advance(ms) => {
            *now += Duration::from_millis(u64::from(*ms));
            fire(core, link, *now)?;
        }
        Step::ConnectOk => {
            if let Some(c) = link.pending.take() {
                link.open = Some(c);
                core.connected(*now, c);
            }
        }
        Step::ConnectFail => {
            if let Some(c) = link.pending.take() {
                core.failed(*now, c);
            }
        }
        Step::Disconnect => {
            if let Some(c) = link.open.take() {
                core.disconnected(*now, c);
            }
        }
        Step::Frame(f) => {
            if let Some(c) = link.open {
                core.frame(*now, c, &frame_bytes(f));
            }
        }
        Step::Announce(n, m) => {
            let addresses: Vec<SocketAddr> = m.iter().map(|&m| learned_address(m)).collect();
            let bytes = crate::announce::announce(u32::from(*n), &addresses)
                .to_bytes()
                .unwrap_or_default();
            core.datagram(*now, &bytes);
        }
        Step::Datagram(bytes) => core.datagram(*now, bytes),
        _ => return Ok(false),
    }
    let d = core.discovery();
    prop_assert!(d.registrars.len() <= REGISTRARS.len() + link.learned);
    for (e, r) in d.registrars.iter().zip(REGISTRARS) {
        prop_assert_eq!(e.address, r, "the configured registrars come first");
        prop_assert_eq!(e.origin, crate::RegistrarOrigin::Static);
    }
    Ok(true)
}

/// Fire every timer due at `now`, as a driver does; nothing may stay due.
fn fire<C: Core>(core: &mut C, link: &mut LinkModel, now: Instant) -> Result<(), TestCaseError> {
    for _ in 0..100 {
        match core.next() {
            Some(t) if t <= now => {
                core.timeout(now);
                core.drain(link, now)?;
                if let Some(t) = core.next() {
                    prop_assert!(t > now, "still due after handle_timeout: {t:?} <= {now:?}");
                }
            }
            _ => return Ok(()),
        }
    }
    Err(TestCaseError::fail("timers never settle"))
}

/// Fail every attempt and let time pass until `done`.
fn starve<C: Core>(
    core: &mut C,
    link: &mut LinkModel,
    now: &mut Instant,
    done: impl Fn(&C) -> bool,
) -> Result<(), TestCaseError> {
    if let Some(c) = link.open.take() {
        core.disconnected(*now, c);
        core.drain(link, *now)?;
    }
    for _ in 0..10_000 {
        if done(core) {
            return Ok(());
        }
        if let Some(c) = link.pending.take() {
            core.failed(*now, c);
            core.drain(link, *now)?;
            continue;
        }
        let Some(t) = core.next() else {
            break;
        };
        *now = t.max(*now);
        fire(core, link, *now)?;
    }
    prop_assert!(done(core), "the core never settled without a registrar");
    Ok(())
}

// ---- PE ----------------------------------------------------------------

struct Pe {
    core: PeCore,
    finals: BTreeMap<u32, u32>,
}

impl Core for Pe {
    type Inner = PeCore;
    fn drain(&mut self, link: &mut LinkModel, _now: Instant) -> Result<(), TestCaseError> {
        while let Some(o) = self.core.poll_output() {
            match o {
                PeOutput::Link(a) => link.apply(&a)?,
                PeOutput::Event(
                    PeEvent::Deregistered { identifier, .. }
                    | PeEvent::RegistrationFailed { identifier, .. },
                ) => *self.finals.entry(identifier.get()).or_default() += 1,
                PeOutput::Event(PeEvent::RegistrationRefused { identifier, .. }) => {
                    // Final unless the core keeps the PE to try again.
                    if self.core.status(identifier).is_none() {
                        *self.finals.entry(identifier.get()).or_default() += 1;
                    }
                }
                PeOutput::Event(_) => {}
            }
        }
        Ok(())
    }
    fn inner(&mut self) -> &mut Self::Inner {
        &mut self.core
    }
    fn timeout(&mut self, now: Instant) {
        self.core.handle_timeout(now);
    }
    fn next(&self) -> Option<Instant> {
        self.core.poll_timeout()
    }
    fn datagram(&mut self, now: Instant, bytes: &[u8]) {
        self.core.handle_datagram(now, ANNOUNCER, bytes);
    }
    fn discovery(&self) -> crate::Discovery {
        self.core.discovery()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn pe_core_holds_its_invariants(steps in proptest::collection::vec(step(), 1..120)) {
        pe_core_run(&steps, false)?;
    }

    #[test]
    fn pe_core_holds_its_invariants_with_announcements(
        steps in proptest::collection::vec(step_with_announcements(), 1..120)
    ) {
        pe_core_run(&steps, true)?;
    }
}

/// The PE property over `steps`, with announcements on or off.
fn pe_core_run(steps: &[Step], announcements: bool) -> Result<(), TestCaseError> {
    let mut now = Instant::now();
    let mut pe = Pe {
        core: PeCore::new(
            REGISTRARS.to_vec(),
            Timers::default(),
            Duration::from_secs(30),
            3,
        ),
        finals: BTreeMap::new(),
    };
    let mut link = LinkModel::default();
    if announcements {
        pe.core.enable_announcements(&announce_config());
        link.learned = MAX_LEARNED;
    }
    let mut added = BTreeSet::new();
    for s in steps {
        if !run_link_steps(&mut pe, &mut link, &mut now, s)? {
            match s {
                Step::Add(n) => {
                    let spec = PoolElementSpec {
                        identifier: Some(PeId::new(pe_id(*n))),
                        ..PoolElementSpec::new(pool(n % 3), Policy::RoundRobin, 7000)
                    };
                    if pe.core.add_element(now, spec).is_ok() {
                        added.insert(pe_id(*n));
                    }
                }
                Step::Deregister(n) => pe.core.deregister(now, PeId::new(pe_id(*n))),
                _ => {}
            }
        }
        pe.drain(&mut link, now)?;
    }
    pe.core.deregister_all(now);
    pe.drain(&mut link, now)?;
    starve(&mut pe, &mut link, &mut now, |p| p.core.is_finished())?;
    for id in &added {
        // A PE re-added after it ended counts once per life.
        prop_assert!(
            pe.finals.get(id).copied().unwrap_or(0) >= 1,
            "PE {id} never ended"
        );
    }
    prop_assert!(pe.finals.values().all(|&n| n <= steps.len() as u32));
    Ok(())
}

fn announce_config() -> crate::AnnounceConfig {
    crate::AnnounceConfig {
        max_learned: MAX_LEARNED,
        ..crate::AnnounceConfig::default()
    }
}

// ---- PU ----------------------------------------------------------------

struct Pu {
    core: PuCore,
    answers: BTreeMap<u64, u32>,
}

impl Core for Pu {
    type Inner = PuCore;
    fn drain(&mut self, link: &mut LinkModel, _now: Instant) -> Result<(), TestCaseError> {
        while let Some(o) = self.core.poll_output() {
            match o {
                PuOutput::Link(a) => link.apply(&a)?,
                PuOutput::Resolved { token, .. } | PuOutput::Selected { token, .. } => {
                    let n = self.answers.entry(token).or_default();
                    *n += 1;
                    prop_assert_eq!(*n, 1, "token {} answered twice", token);
                }
            }
        }
        Ok(())
    }
    fn inner(&mut self) -> &mut Self::Inner {
        &mut self.core
    }
    fn timeout(&mut self, now: Instant) {
        self.core.handle_timeout(now);
    }
    fn next(&self) -> Option<Instant> {
        self.core.poll_timeout()
    }
    fn datagram(&mut self, now: Instant, bytes: &[u8]) {
        self.core.handle_datagram(now, ANNOUNCER, bytes);
    }
    fn discovery(&self) -> crate::Discovery {
        self.core.discovery()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn pu_core_answers_every_request_once(steps in proptest::collection::vec(step(), 1..120)) {
        pu_core_run(&steps, false)?;
    }

    #[test]
    fn pu_core_answers_every_request_once_with_announcements(
        steps in proptest::collection::vec(step_with_announcements(), 1..120)
    ) {
        pu_core_run(&steps, true)?;
    }
}

/// The PU property over `steps`, with announcements on or off.
fn pu_core_run(steps: &[Step], announcements: bool) -> Result<(), TestCaseError> {
    let mut now = Instant::now();
    let mut pu = Pu {
        core: PuCore::new(
            REGISTRARS.to_vec(),
            Timers::default(),
            PoolUserSettings::default(),
            ReportLimits::default(),
            5,
        ),
        answers: BTreeMap::new(),
    };
    let mut link = LinkModel::default();
    if announcements {
        pu.core.enable_announcements(&announce_config());
        link.learned = MAX_LEARNED;
    }
    let mut asked = 0u64;
    for s in steps {
        if !run_link_steps(&mut pu, &mut link, &mut now, s)? {
            match s {
                Step::Resolve(p) => {
                    asked += 1;
                    pu.core.resolve(now, asked, pool(*p));
                }
                Step::Select(p) => {
                    asked += 1;
                    pu.core.select(now, asked, pool(*p));
                }
                Step::Report(p, m) => {
                    pu.core
                        .report_unreachable(now, &pool(*p), PeId::new(pe_id(*m)));
                }
                _ => {}
            }
        }
        pu.drain(&mut link, now)?;
    }
    starve(&mut pu, &mut link, &mut now, |p| p.core.outstanding() == 0)?;
    for token in 1..=asked {
        prop_assert_eq!(
            pu.answers.get(&token).copied(),
            Some(1),
            "token {} answered",
            token
        );
    }
    Ok(())
}
