//! Tests of the registrar core on a virtual clock.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rserpool_security::PeerIdentity;
use rserpool_wire::{
    AsapMessage, CauseCode, ConnId, PeId, Policy, PoolElement, PoolHandle, ServerId, Transport,
    TransportUse, WireMessage,
};

use crate::{ClientInfo, ConnKind, CoreConfig, Event, Message, Output, RegistrarCore, Removal};

pub(crate) struct Sim {
    pub(crate) core: RegistrarCore,
    pub(crate) now: Instant,
}

pub(crate) const PE_ADDR: &str = "10.0.0.1";

impl Sim {
    pub(crate) fn new() -> Sim {
        Sim::with(CoreConfig {
            server_id: ServerId::new(0x1234),
            seed: 7,
            ..CoreConfig::default()
        })
    }

    pub(crate) fn with(config: CoreConfig) -> Sim {
        let now = Instant::now();
        Sim {
            core: RegistrarCore::new(config, now).unwrap(),
            now,
        }
    }

    pub(crate) fn connect(&mut self, conn: u64, identity: Option<PeerIdentity>, addr: &str) {
        let address: SocketAddr = format!("{addr}:{}", 40000 + conn).parse().unwrap();
        self.core.handle_connect(
            self.now,
            ConnId::new(conn),
            ClientInfo::new(identity, address, ConnKind::Asap),
        );
    }

    pub(crate) fn psk(&mut self, conn: u64, name: &str) {
        self.connect(conn, Some(PeerIdentity::Psk(name.into())), PE_ADDR);
    }

    pub(crate) fn outputs(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.core.poll_output()).collect()
    }

    /// The messages sent, by connection.
    pub(crate) fn sent(&mut self) -> Vec<(u64, AsapMessage)> {
        self.outputs()
            .into_iter()
            .filter_map(|o| match o {
                Output::Send {
                    conn,
                    msg: Message::Asap(msg),
                } => Some((conn.get(), msg)),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn send(&mut self, conn: u64, msg: AsapMessage) -> Vec<(u64, AsapMessage)> {
        self.core.handle_message(self.now, ConnId::new(conn), msg);
        self.sent()
    }

    pub(crate) fn advance(&mut self, d: Duration) -> Vec<Output> {
        let end = self.now + d;
        let mut out = Vec::new();
        while let Some(t) = self.core.poll_timeout().filter(|t| *t <= end) {
            self.now = t.max(self.now);
            self.core.handle_timeout(self.now);
            out.extend(self.outputs());
        }
        self.now = end;
        out
    }

    pub(crate) fn pe_count(&self) -> usize {
        self.core.handlespace().len()
    }
}

pub(crate) fn handle() -> PoolHandle {
    PoolHandle::from_static("echo")
}

pub(crate) fn pe(id: u32, addr: &str, policy: Policy) -> PoolElement {
    PoolElement {
        identifier: PeId::new(id),
        home_registrar: ServerId::UNDETERMINED,
        registration_life: 30_000,
        user_transport: Transport::Tcp {
            port: 7,
            transport_use: TransportUse::DataOnly,
            address: addr.parse().unwrap(),
        },
        policy,
        asap_transport: None,
    }
}

pub(crate) fn registration(id: u32) -> AsapMessage {
    AsapMessage::Registration {
        pool_handle: handle(),
        pool_element: pe(id, PE_ADDR, Policy::RoundRobin),
    }
}

/// The cause of a single response to a registration: `None` if accepted.
pub(crate) fn reg_cause(sent: &[(u64, AsapMessage)]) -> Option<CauseCode> {
    match sent {
        [(_, AsapMessage::RegistrationResponse { reject, error, .. })] => {
            assert_eq!(*reject, error.is_some());
            error.as_ref().map(|e| e.causes[0].code)
        }
        other => panic!("expected one registration response, got {other:?}"),
    }
}

pub(crate) fn resolve(s: &mut Sim, conn: u64) -> AsapMessage {
    let sent = s.send(
        conn,
        AsapMessage::HandleResolution {
            subscribe: false,
            pool_handle: handle(),
            items: None,
        },
    );
    assert_eq!(sent.len(), 1);
    sent.into_iter().next().unwrap().1
}

pub(crate) fn resolved_ids(s: &mut Sim, conn: u64) -> Vec<u32> {
    match resolve(s, conn) {
        AsapMessage::HandleResolutionResponse { pool_elements, .. } => {
            pool_elements.iter().map(|p| p.identifier.get()).collect()
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn registered_events_show_the_transport_and_whether_anything_changed() {
    let mut s = Sim::new();
    s.psk(1, "pe-a");
    s.send(1, registration(42));
    let reg = |s: &mut Sim, msg| {
        s.core.handle_message(s.now, ConnId::new(1), msg);
        events(&s.outputs())
    };
    assert_eq!(
        reg(&mut s, registration(43)),
        vec![Event::Registered {
            pool_handle: handle(),
            identifier: PeId::new(43),
            identity: "psk:pe-a".into(),
            new: true,
            changed: true,
            addresses: vec![PE_ADDR.parse().unwrap()],
            port: 7,
            protocol: "tcp",
            policy: "RR",
        }]
    );
    s.advance(Duration::from_secs(1));
    let again = reg(&mut s, registration(43));
    assert!(
        matches!(
            &again[..],
            [Event::Registered {
                new: false,
                changed: false,
                ..
            }]
        ),
        "{again:?}"
    );
    let mut moved = pe(43, PE_ADDR, Policy::RoundRobin);
    moved.user_transport = Transport::Tcp {
        port: 8,
        transport_use: TransportUse::DataOnly,
        address: PE_ADDR.parse().unwrap(),
    };
    let msg = AsapMessage::Registration {
        pool_handle: handle(),
        pool_element: moved,
    };
    let changed = reg(&mut s, msg);
    assert!(
        matches!(
            &changed[..],
            [Event::Registered {
                new: false,
                changed: true,
                port: 8,
                ..
            }]
        ),
        "{changed:?}"
    );
    let json = serde_json::to_value(&changed[0]).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"event": "registered", "pool_handle": "echo", "identifier": 43,
            "identity": "psk:pe-a", "new": false, "changed": true, "addresses": [PE_ADDR],
            "port": 8, "protocol": "tcp", "policy": "RR"})
    );
}

#[test]
fn registration_is_accepted_and_resolvable() {
    let mut s = Sim::new();
    s.psk(1, "pe-a");
    assert_eq!(reg_cause(&s.send(1, registration(42))), None);
    let e = s.core.handlespace().find(&handle(), PeId::new(42)).unwrap();
    assert_eq!(e.home, ServerId::new(0x1234));
    assert_eq!(
        e.asap_transport.as_ref().unwrap().addresses(),
        &[PE_ADDR.parse::<std::net::IpAddr>().unwrap()]
    );
    s.connect(2, Some(PeerIdentity::Anonymous), "10.9.9.9");
    assert_eq!(resolved_ids(&mut s, 2), vec![42]);
    assert_eq!(s.core.stats().registrations, 1);
}

#[test]
fn unknown_pool_handle_is_an_error() {
    let mut s = Sim::new();
    s.connect(2, Some(PeerIdentity::Anonymous), "10.9.9.9");
    match resolve(&mut s, 2) {
        AsapMessage::HandleResolutionResponse {
            pool_elements,
            error: Some(e),
            ..
        } => {
            assert!(pool_elements.is_empty());
            assert_eq!(e.causes[0].code, CauseCode::UnknownPoolHandle);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn anonymous_clients_may_not_register() {
    let mut s = Sim::new();
    s.connect(1, Some(PeerIdentity::Anonymous), PE_ADDR);
    assert_eq!(
        reg_cause(&s.send(1, registration(1))),
        Some(CauseCode::RejectedSecurity)
    );
    assert_eq!(s.pe_count(), 0);
    assert_eq!(s.core.stats().refused_security, 1);
}

#[test]
fn foreign_addresses_are_refused_unless_allowed() {
    let mut s = Sim::new();
    s.psk(1, "pe-a");
    let foreign = AsapMessage::Registration {
        pool_handle: handle(),
        pool_element: pe(1, "10.0.0.99", Policy::RoundRobin),
    };
    assert_eq!(
        reg_cause(&s.send(1, foreign.clone())),
        Some(CauseCode::RejectedSecurity)
    );
    assert_eq!(s.pe_count(), 0);

    // The permissive default with foreign addresses (what the old
    // allow_foreign_addresses switch gave).
    let mut s = Sim::new();
    let now = s.now;
    s.core
        .replace_apd(now, rserpool_security::apd::Apd::permissive(true));
    s.outputs();
    s.psk(1, "pe-a");
    assert_eq!(reg_cause(&s.send(1, foreign)), None);
}

#[test]
fn another_identity_cannot_touch_a_pe() {
    let mut s = Sim::new();
    s.psk(1, "pe-a");
    s.psk(2, "pe-b");
    assert_eq!(reg_cause(&s.send(1, registration(42))), None);
    let before = s
        .core
        .handlespace()
        .find(&handle(), PeId::new(42))
        .unwrap()
        .to_wire();

    // Re-registration with other values by pe-b: refused, PE unchanged.
    let mut hijack = pe(42, PE_ADDR, Policy::RoundRobin);
    hijack.registration_life = 60_000;
    let sent = s.send(
        2,
        AsapMessage::Registration {
            pool_handle: handle(),
            pool_element: hijack,
        },
    );
    assert_eq!(reg_cause(&sent), Some(CauseCode::RejectedSecurity));
    assert_eq!(
        s.core
            .handlespace()
            .find(&handle(), PeId::new(42))
            .unwrap()
            .to_wire(),
        before
    );

    // Deregistration by pe-b: refused, PE still there.
    let sent = s.send(
        2,
        AsapMessage::Deregistration {
            pool_handle: handle(),
            identifier: PeId::new(42),
        },
    );
    match &sent[..] {
        [(2, AsapMessage::DeregistrationResponse { error: Some(e), .. })] => {
            assert_eq!(e.causes[0].code, CauseCode::RejectedSecurity)
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.pe_count(), 1);

    // The owner may, even over a new connection.
    s.psk(3, "pe-a");
    let sent = s.send(
        3,
        AsapMessage::Deregistration {
            pool_handle: handle(),
            identifier: PeId::new(42),
        },
    );
    assert!(matches!(
        &sent[..],
        [(3, AsapMessage::DeregistrationResponse { error: None, .. })]
    ));
    assert_eq!(s.pe_count(), 0);
}

#[test]
fn a_policy_refusal_tells_the_type_but_not_another_pes_values() {
    let mut s = Sim::new();
    s.psk(1, "pe-a");
    let wrr = AsapMessage::Registration {
        pool_handle: handle(),
        pool_element: pe(1, PE_ADDR, Policy::WeightedRoundRobin { weight: 5 }),
    };
    assert_eq!(reg_cause(&s.send(1, wrr)), None);
    let lu = AsapMessage::Registration {
        pool_handle: handle(),
        pool_element: pe(2, PE_ADDR, Policy::LeastUsed { load: 0 }),
    };
    let sent = s.send(1, lu);
    let info = match &sent[..] {
        [(_, AsapMessage::RegistrationResponse { error: Some(e), .. })] => e.causes[0].info.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        Policy::from_tlv(&info),
        Ok(Policy::WeightedRoundRobin { weight: 0 })
    );
}

#[test]
fn inconsistent_policy_and_bad_lifetimes_are_refused() {
    let mut s = Sim::new();
    s.psk(1, "pe-a");
    assert_eq!(reg_cause(&s.send(1, registration(1))), None);
    let lu = AsapMessage::Registration {
        pool_handle: handle(),
        pool_element: pe(2, PE_ADDR, Policy::LeastUsed { load: 0 }),
    };
    // RFC 5354 3.12.6: the cause carries the pool's policy parameter.
    let sent = s.send(1, lu);
    assert_eq!(reg_cause(&sent), Some(CauseCode::InconsistentPoolingPolicy));
    let info = match &sent[..] {
        [(_, AsapMessage::RegistrationResponse { error: Some(e), .. })] => e.causes[0].info.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(info, [0x00, 0x08, 0x00, 0x08, 0x00, 0x00, 0x00, 0x01]);
    assert_eq!(Policy::from_tlv(&info), Ok(Policy::RoundRobin));
    // RFC 5354 3.12.8: and the transport for an inconsistent transport.
    let mut udp = pe(2, PE_ADDR, Policy::RoundRobin);
    udp.user_transport = Transport::Udp {
        port: 9,
        address: PE_ADDR.parse().unwrap(),
    };
    let sent = s.send(
        1,
        AsapMessage::Registration {
            pool_handle: handle(),
            pool_element: udp,
        },
    );
    assert_eq!(reg_cause(&sent), Some(CauseCode::InconsistentTransportType));
    let info = match &sent[..] {
        [(_, AsapMessage::RegistrationResponse { error: Some(e), .. })] => e.causes[0].info.clone(),
        other => panic!("{other:?}"),
    };
    // The pool's type (TCP) with the registrant's own port, not the
    // member's (7): a registrant learns the type, not another PE.
    assert_eq!(
        Transport::from_tlv(&info),
        Ok(Transport::Tcp {
            port: 9,
            transport_use: TransportUse::DataOnly,
            address: PE_ADDR.parse().unwrap(),
        })
    );
    for life in [0, -1, 500, i32::MAX] {
        let mut p = pe(3, PE_ADDR, Policy::RoundRobin);
        p.registration_life = life;
        let msg = AsapMessage::Registration {
            pool_handle: handle(),
            pool_element: p,
        };
        assert_eq!(
            reg_cause(&s.send(1, msg)),
            Some(CauseCode::InvalidValues),
            "life {life}"
        );
    }
    assert_eq!(s.pe_count(), 1);
}

#[test]
fn lifetime_expiry_removes_and_tells_the_pe() {
    let mut s = Sim::with(CoreConfig {
        keep_alive_interval: Duration::from_secs(3600),
        ..CoreConfig::default()
    });
    s.psk(1, "pe-a");
    reg_cause(&s.send(1, registration(5)));
    assert!(s.advance(Duration::from_secs(29)).is_empty());
    let out = s.advance(Duration::from_secs(2));
    assert!(out.contains(&Output::Send {
        conn: ConnId::new(1),
        msg: Message::Asap(AsapMessage::DeregistrationResponse {
            pool_handle: handle(),
            identifier: PeId::new(5),
            error: None
        })
    }));
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Event(Event::Removed {
            reason: Removal::LifetimeExpired,
            ..
        })
    )));
    assert_eq!(s.pe_count(), 0);
}

fn keep_alives(out: &[Output]) -> usize {
    out.iter()
        .filter(|o| {
            matches!(
                o,
                Output::Send {
                    msg: Message::Asap(AsapMessage::EndpointKeepAlive { .. }),
                    ..
                }
            )
        })
        .count()
}

#[test]
fn answered_keep_alives_keep_a_pe_and_silence_removes_it() {
    let mut s = Sim::with(CoreConfig {
        max_registration_life: Duration::from_secs(3600),
        ..CoreConfig::default()
    });
    s.psk(1, "pe-a");
    let mut p = pe(5, PE_ADDR, Policy::RoundRobin);
    p.registration_life = 3_600_000;
    s.send(
        1,
        AsapMessage::Registration {
            pool_handle: handle(),
            pool_element: p,
        },
    );
    // Ten keep-alive rounds, each answered: the PE stays.
    for _ in 0..10 {
        let out = s.advance(Duration::from_millis(7_500));
        assert_eq!(keep_alives(&out), 1, "{out:?}");
        s.send(
            1,
            AsapMessage::EndpointKeepAliveAck {
                pool_handle: handle(),
                identifier: PeId::new(5),
            },
        );
    }
    assert_eq!(s.pe_count(), 1);
    // An ack from another identity does not count.
    let out = s.advance(Duration::from_millis(7_500));
    assert_eq!(keep_alives(&out), 1);
    s.psk(2, "pe-b");
    s.send(
        2,
        AsapMessage::EndpointKeepAliveAck {
            pool_handle: handle(),
            identifier: PeId::new(5),
        },
    );
    s.advance(Duration::from_secs(6));
    assert_eq!(s.pe_count(), 0);
    assert_eq!(s.core.stats().keep_alive_failures, 1);
}

#[test]
fn a_pe_whose_connection_closed_has_one_timeout_to_come_back() {
    let mut s = Sim::new();
    s.psk(1, "pe-a");
    s.send(1, registration(5));
    s.send(1, registration(6));
    s.core.handle_disconnect(s.now, ConnId::new(1));
    s.advance(Duration::from_secs(2));
    // PE 6 comes back over a new connection, PE 5 does not.
    s.psk(2, "pe-a");
    assert_eq!(reg_cause(&s.send(2, registration(6))), None);
    s.advance(Duration::from_millis(3_100));
    assert!(s.core.handlespace().find(&handle(), PeId::new(5)).is_none());
    assert!(s.core.handlespace().find(&handle(), PeId::new(6)).is_some());
}

pub(crate) fn report(s: &mut Sim, conn: u64, id: u32) -> Vec<(u64, AsapMessage)> {
    s.send(
        conn,
        AsapMessage::EndpointUnreachable {
            pool_handle: handle(),
            identifier: PeId::new(id),
        },
    )
}

pub(crate) fn ack(s: &mut Sim, conn: u64, id: u32) -> Vec<(u64, AsapMessage)> {
    s.send(
        conn,
        AsapMessage::EndpointKeepAliveAck {
            pool_handle: handle(),
            identifier: PeId::new(id),
        },
    )
}

pub(crate) fn events(out: &[Output]) -> Vec<Event> {
    out.iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// Reports from pu-1..pu-n (new connections from their own addresses);
/// returns the outputs of the last one.
fn reports_from(s: &mut Sim, first_conn: u64, names: &[&str], id: u32) -> Vec<Output> {
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let conn = first_conn + i as u64;
        s.connect(
            conn,
            Some(PeerIdentity::Psk((*name).into())),
            &format!("10.2.0.{}", i + 1),
        );
        s.core.handle_message(
            s.now,
            ConnId::new(conn),
            AsapMessage::EndpointUnreachable {
                pool_handle: handle(),
                identifier: PeId::new(id),
            },
        );
        out = s.outputs();
    }
    out
}

#[test]
fn reports_only_trigger_a_check_and_a_pe_that_answers_stays() {
    let mut s = Sim::new();
    s.psk(1, "pe-a");
    s.send(1, registration(5));
    // One PU reporting many times (within its rate) counts once: no check.
    s.connect(10, Some(PeerIdentity::Psk("pu-1".into())), "10.2.0.1");
    for _ in 0..5 {
        assert!(report(&mut s, 10, 5).is_empty());
    }
    assert_eq!(
        s.core.stats().keep_alives_sent,
        0,
        "one reporter probes nothing"
    );
    // pu-2 and pu-3 make MAX-BAD-PE-REPORT (3): a keep-alive checks the PE.
    let out = reports_from(&mut s, 11, &["pu-2", "pu-3"], 5);
    assert_eq!(keep_alives(&out), 1, "{out:?}");
    assert_eq!(
        events(&out),
        vec![Event::ReportedUnreachable {
            pool_handle: handle(),
            identifier: PeId::new(5),
            reporters: vec!["psk:pu-1".into(), "psk:pu-2".into(), "psk:pu-3".into()],
            check: crate::ReportCheck::Probing,
        }]
    );
    // The PE answers: it stays, however long the reporters keep at it.
    s.core.handle_message(
        s.now,
        ConnId::new(1),
        AsapMessage::EndpointKeepAliveAck {
            pool_handle: handle(),
            identifier: PeId::new(5),
        },
    );
    let out = s.outputs();
    assert!(
        matches!(&events(&out)[..], [Event::ReportsRefuted { reporters, .. }] if reporters.len() == 3),
        "{out:?}"
    );
    assert_eq!(s.core.stats().unreachable_refuted, 1);
    for round in 0..45 {
        s.advance(Duration::from_secs(1));
        let out = reports_from(&mut s, 100 + 10 * round, &["pu-1", "pu-2", "pu-3"], 5);
        if keep_alives(&out) > 0 {
            ack(&mut s, 1, 5);
        }
        // The regular keep-alives are answered too, and the PE
        // re-registers before its life ends.
        let _ = ack(&mut s, 1, 5);
        if round % 10 == 9 {
            assert_eq!(reg_cause(&s.send(1, registration(5))), None);
        }
        assert_eq!(s.pe_count(), 1, "round {round}");
    }
    assert_eq!(s.core.stats().unreachable_removals, 0);
    assert!(s.core.stats().unreachable_probes >= 2);
    s.core.check_invariants();
}

#[test]
fn a_reported_pe_that_does_not_answer_its_check_is_removed() {
    let mut s = Sim::new();
    s.psk(1, "pe-a");
    s.send(1, registration(5));
    let out = reports_from(&mut s, 10, &["pu-1", "pu-2", "pu-3"], 5);
    assert_eq!(keep_alives(&out), 1);
    let out = s.advance(Duration::from_millis(4_900));
    assert_eq!(s.pe_count(), 1, "{out:?}");
    let out = s.advance(Duration::from_millis(200));
    assert_eq!(s.pe_count(), 0);
    assert!(events(&out).contains(&Event::Removed {
        pool_handle: handle(),
        identifier: PeId::new(5),
        reason: Removal::Unreachable,
    }));
    assert_eq!(s.core.stats().unreachable_removals, 1);
    assert_eq!(s.core.stats().keep_alive_failures, 0);
    s.core.check_invariants();
}

#[test]
fn reports_older_than_the_window_do_not_count() {
    let mut s = Sim::with(CoreConfig {
        bad_pe_report_window: Duration::from_secs(10),
        ..CoreConfig::default()
    });
    s.psk(1, "pe-a");
    s.send(1, registration(5));
    reports_from(&mut s, 10, &["pu-1", "pu-2"], 5);
    for _ in 0..11 {
        s.advance(Duration::from_secs(1));
        ack(&mut s, 1, 5); // the regular keep-alives
    }
    let out = reports_from(&mut s, 20, &["pu-3"], 5);
    assert_eq!(keep_alives(&out), 0, "pu-1 and pu-2 aged out");
    let out = reports_from(&mut s, 30, &["pu-1", "pu-2"], 5);
    assert_eq!(keep_alives(&out), 1);
}

#[test]
fn anonymous_reporters_count_once_per_address_or_not_at_all() {
    let mut s = Sim::new();
    s.psk(1, "pe-a");
    s.send(1, registration(5));
    // Fifty anonymous connections from one address: one reporter.
    for c in 0..50 {
        s.connect(100 + c, Some(PeerIdentity::Anonymous), "10.7.0.1");
        report(&mut s, 100 + c, 5);
    }
    assert_eq!(s.core.stats().keep_alives_sent, 0);
    // Addresses of one IPv6 /64: one reporter.
    for c in 0..5 {
        s.connect(
            200 + c,
            Some(PeerIdentity::Anonymous),
            &format!("[2001:db8::{c}]"),
        );
        report(&mut s, 200 + c, 5);
    }
    assert_eq!(s.core.stats().keep_alives_sent, 0);
    // A third source makes three.
    s.connect(300, Some(PeerIdentity::Anonymous), "10.7.0.2");
    report(&mut s, 300, 5);
    assert_eq!(s.core.stats().keep_alives_sent, 1);

    // Configured not to count them: refused with an error.
    let mut s = Sim::with(CoreConfig {
        count_anonymous_reports: false,
        ..CoreConfig::default()
    });
    s.psk(1, "pe-a");
    s.send(1, registration(5));
    for c in 0..3 {
        s.connect(
            10 + c,
            Some(PeerIdentity::Anonymous),
            &format!("10.8.0.{}", c + 1),
        );
        let sent = report(&mut s, 10 + c, 5);
        assert!(
            matches!(&sent[..], [(_, AsapMessage::Error { error })] if error.causes[0].code == CauseCode::RejectedSecurity),
            "{sent:?}"
        );
    }
    assert_eq!(s.core.stats().unreachable_reports, 0);
    assert_eq!(s.core.stats().keep_alives_sent, 0);
}

#[test]
fn keep_alives_to_one_pe_are_limited_under_a_report_flood() {
    // RFC 5355 2.14: many reporters, each answer comes back at once.
    let mut s = Sim::with(CoreConfig {
        max_bad_pe_reports: 1,
        ..CoreConfig::default()
    });
    s.psk(1, "pe-a");
    s.send(1, registration(5));
    let mut sent = 0;
    for i in 0..200u64 {
        let addr = format!("10.1.{}.{}", i / 200, i % 200 + 1);
        s.connect(100 + i, Some(PeerIdentity::Psk(format!("pu-{i}"))), &addr);
        sent += report(&mut s, 100 + i, 5)
            .iter()
            .filter(|(_, m)| matches!(m, AsapMessage::EndpointKeepAlive { .. }))
            .count();
        ack(&mut s, 1, 5);
    }
    assert_eq!(sent, 3);
    assert_eq!(s.core.stats().unreachable_reports, 200);
    assert_eq!(s.pe_count(), 1);
    // The next interval allows more.
    s.advance(Duration::from_secs(5));
    ack(&mut s, 1, 5);
    s.connect(99, Some(PeerIdentity::Psk("pu-late".into())), "10.3.0.1");
    let late = report(&mut s, 99, 5);
    assert!(late
        .iter()
        .any(|(_, m)| matches!(m, AsapMessage::EndpointKeepAlive { .. })));
}

#[test]
fn an_identity_over_its_connection_limit_is_refused_and_others_connect() {
    let mut s = Sim::with(CoreConfig {
        max_connections_per_identity: 3,
        ..CoreConfig::default()
    });
    for c in 1..=3 {
        s.psk(c, "flooder");
    }
    assert!(s.outputs().is_empty());
    s.psk(4, "flooder");
    let out = s.outputs();
    assert!(
        matches!(
            &out[..],
            [
                Output::Event(Event::Refused {
                    request: "connection",
                    ..
                }),
                Output::Send {
                    conn: sent_on,
                    msg: Message::Asap(AsapMessage::Error { .. })
                },
                Output::Close { conn: closed, .. }
            ] if *sent_on == ConnId::new(4) && *closed == ConnId::new(4)
        ),
        "{out:?}"
    );
    assert_eq!(s.core.connections(), 3);
    assert_eq!(s.core.stats().connections_refused_per_identity, 1);
    s.psk(5, "pe-a");
    assert_eq!(reg_cause(&s.send(5, registration(9))), None);
    // A connection that closes makes room; the refused one was never in.
    s.core.handle_disconnect(s.now, ConnId::new(4));
    s.core.handle_disconnect(s.now, ConnId::new(1));
    s.psk(6, "flooder");
    assert!(s.outputs().is_empty());
    assert_eq!(s.core.connections(), 4);
}

#[test]
fn revoked_identities_lose_connections_and_pes_replaced_ones_reconnect() {
    let mut s = Sim::new();
    s.psk(1, "pe-a");
    s.send(1, registration(5));
    s.psk(2, "pe-b");
    s.send(2, registration(6));
    s.psk(3, "pe-c");
    s.send(3, registration(7));
    let mut r = crate::Revocation::default();
    r.revoke(&PeerIdentity::Psk("pe-a".into()));
    r.reauthenticate(&PeerIdentity::Psk("pe-b".into()));
    let report = s.core.handle_revocation(s.now, &r);
    assert_eq!(
        report.connections_closed,
        vec![("psk:pe-a".to_string(), 1), ("psk:pe-b".to_string(), 1)]
    );
    assert_eq!(report.pes_removed.len(), 1);
    assert_eq!(report.pes_removed[0].identifier, PeId::new(5));
    let out = s.outputs();
    let closed: Vec<u64> = out
        .iter()
        .filter_map(|o| match o {
            Output::Close { conn, .. } => Some(conn.get()),
            _ => None,
        })
        .collect();
    assert_eq!(closed, vec![1, 2]);
    assert!(events(&out).contains(&Event::Removed {
        pool_handle: handle(),
        identifier: PeId::new(5),
        reason: Removal::Revoked,
    }));
    assert!(s.core.handlespace().find(&handle(), PeId::new(5)).is_none());
    // pe-b comes back with its new key within the grace period.
    s.psk(4, "pe-b");
    assert_eq!(reg_cause(&s.send(4, registration(6))), None);
    s.advance(Duration::from_secs(6));
    assert!(s.core.handlespace().find(&handle(), PeId::new(6)).is_some());
    assert!(s.core.handlespace().find(&handle(), PeId::new(7)).is_some());
    assert_eq!(s.core.connections(), 2);
    s.core.check_invariants();
}

#[test]
fn registration_flood_is_limited_and_others_are_served() {
    let mut s = Sim::new();
    s.psk(1, "flooder");
    let mut accepted = 0;
    let mut limited = 0;
    for id in 0..10_000 {
        match reg_cause(&s.send(1, registration(id))) {
            None => accepted += 1,
            Some(CauseCode::LackOfResources) => limited += 1,
            Some(c) => panic!("{c:?}"),
        }
    }
    assert_eq!(accepted, 200, "the burst");
    assert_eq!(limited, 9_800);
    // Another PE identity from another address is still served.
    s.connect(2, Some(PeerIdentity::Psk("pe-b".into())), "10.0.0.2");
    let msg = AsapMessage::Registration {
        pool_handle: handle(),
        pool_element: pe(99_999, "10.0.0.2", Policy::RoundRobin),
    };
    assert_eq!(reg_cause(&s.send(2, msg)), None);
    // One second later the flooder gets its sustained rate back.
    s.advance(Duration::from_secs(1));
    assert_eq!(reg_cause(&s.send(1, registration(50_000))), None);
}

#[test]
fn malformed_frames_get_errors_then_the_connection_closes() {
    let mut s = Sim::with(CoreConfig {
        max_malformed_per_connection: 2,
        ..CoreConfig::default()
    });
    s.psk(1, "pe-a");
    // A registration with a truncated parameter.
    let mut bad = registration(1).to_bytes().unwrap();
    bad.truncate(12);
    bad[2..4].copy_from_slice(&12u16.to_be_bytes());
    for round in 0..3 {
        s.core.handle_frame(s.now, ConnId::new(1), &bad);
        let out = s.outputs();
        assert!(out.iter().any(|o| matches!(
            o,
            Output::Send {
                msg: Message::Asap(AsapMessage::Error { .. }),
                ..
            }
        )));
        let closed = out.iter().any(|o| matches!(o, Output::Close { .. }));
        assert_eq!(closed, round == 2);
    }
    assert_eq!(s.pe_count(), 0);
    assert_eq!(s.core.stats().malformed, 3);
    // What was still in flight when the core decided to close is ignored:
    // no second close (one log line per close), no more answers.
    for _ in 0..5 {
        s.core.handle_frame(s.now, ConnId::new(1), &bad);
        s.core
            .handle_message(s.now, ConnId::new(1), registration(2));
        s.core.handle_framing_error(
            s.now,
            ConnId::new(1),
            &rserpool_wire::framing::FramingError::LengthTooShort(2),
        );
    }
    assert_eq!(s.outputs(), Vec::new());
    assert_eq!((s.core.stats().malformed, s.pe_count()), (3, 0));
}

#[test]
fn messages_only_registrars_send_are_unrecognized() {
    let mut s = Sim::new();
    s.psk(1, "pe-a");
    let sent = s.send(
        1,
        AsapMessage::EndpointKeepAlive {
            home: true,
            server_id: ServerId::new(9),
            pool_handle: handle(),
            identifier: None,
        },
    );
    match &sent[..] {
        [(1, AsapMessage::Error { error })] => {
            assert_eq!(error.causes[0].code, CauseCode::UnrecognizedMessage)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn many_identities_behind_one_address_share_its_limit() {
    let mut s = Sim::new();
    let mut accepted = 0;
    for i in 0..3_000u32 {
        s.psk(u64::from(i) + 1, &format!("pe-{i}"));
        if reg_cause(&s.send(u64::from(i) + 1, registration(i))).is_none() {
            accepted += 1;
        }
    }
    assert_eq!(accepted, 2_000, "the per-address burst");
}

#[test]
fn resolution_and_report_floods_are_limited_per_identity() {
    let mut s = Sim::new();
    s.psk(1, "pe-a");
    s.send(1, registration(5));
    s.connect(2, Some(PeerIdentity::Anonymous), "10.9.9.9");
    let mut limited = 0;
    for _ in 0..5_000 {
        if let AsapMessage::HandleResolutionResponse { error: Some(e), .. } = resolve(&mut s, 2) {
            assert_eq!(e.causes[0].code, CauseCode::LackOfResources);
            limited += 1;
        }
    }
    assert_eq!(limited, 1_000, "burst of 4000 served, the rest refused");
    // Another client is still served.
    s.connect(3, Some(PeerIdentity::Anonymous), "10.9.9.10");
    assert_eq!(resolved_ids(&mut s, 3), vec![5]);
    // One reporter flooding reports: 5 counted (the burst), the rest
    // refused with an error each.
    let mut errors = 0;
    for _ in 0..100 {
        errors += report(&mut s, 2, 5).len();
    }
    assert_eq!(errors, 95);
    assert_eq!(s.core.stats().unreachable_reports, 5);
    assert_eq!(s.core.stats().refused_rate_limited, 1_000 + 95);
    assert_eq!(s.pe_count(), 1);
}
