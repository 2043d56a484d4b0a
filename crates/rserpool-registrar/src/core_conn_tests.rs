//! Tests of connection kinds, outbound connections and the protocol of
//! each connection (issue 13 item 3).

use std::net::SocketAddr;

use rserpool_security::PeerIdentity;
use rserpool_wire::{AsapMessage, CauseCode, ConnId, EnrpMessage, PeId, ServerId, WireMessage};

use crate::core_tests::{registration, Sim, PE_ADDR};
use crate::{
    ClientInfo, ConnKind, ConnectError, Event, Message, Output, Refusal, OUTBOUND_CONNECTIONS,
};
use crate::{CoreConfig, EnrpConfig};

fn open(s: &mut Sim, conn: u64, identity: PeerIdentity, kind: ConnKind) {
    let address: SocketAddr = format!("{PE_ADDR}:{}", 40000 + conn).parse().unwrap();
    s.core.handle_connect(
        s.now,
        ConnId::new(conn),
        ClientInfo::new(Some(identity), address, kind),
    );
}

/// A core that takes the peer keys `registrar-2` and (certificate)
/// `registrar-9` as peer registrars.
fn with_peer_keys() -> Sim {
    peer_keys_at(Sim::new())
}

/// The same for the core of `s`.
fn peer_keys_at(mut s: Sim) -> Sim {
    let now = s.now;
    s.core.replace_apd(
        now,
        rserpool_security::apd::Apd::permissive_with_registrars(
            false,
            &[
                PeerIdentity::Psk("registrar-2".into()),
                PeerIdentity::Certificate("registrar-9".into()),
            ],
        ),
    );
    s.outputs();
    s
}

fn presence() -> EnrpMessage {
    EnrpMessage::Presence {
        reply_required: true,
        sender: ServerId::new(0x99),
        receiver: ServerId::new(0),
        checksum: None,
        server_info: None,
    }
}

fn enrp_sent(out: &[Output]) -> Vec<(u64, EnrpMessage)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send {
                conn,
                msg: Message::Enrp(m, _),
            } => Some((conn.get(), m.clone())),
            _ => None,
        })
        .collect()
}

fn cause_of(error: &rserpool_wire::OperationError) -> CauseCode {
    error.causes[0].code
}

#[test]
fn a_pool_user_listener_refuses_registrations_and_serves_resolutions() {
    let mut s = Sim::new();
    open(
        &mut s,
        1,
        PeerIdentity::Psk("pe".into()),
        ConnKind::AsapPoolUser,
    );
    let sent = s.send(1, registration(5));
    assert!(matches!(
        &sent[..],
        [(1, AsapMessage::RegistrationResponse { reject: true, error: Some(e), .. })]
            if cause_of(e) == CauseCode::RejectedSecurity
    ));
    assert_eq!(s.pe_count(), 0);
    let sent = s.send(
        1,
        AsapMessage::Deregistration {
            pool_handle: crate::core_tests::handle(),
            identifier: PeId::new(5),
        },
    );
    assert!(matches!(
        &sent[..],
        [(1, AsapMessage::DeregistrationResponse { error: Some(e), .. })]
            if cause_of(e) == CauseCode::RejectedSecurity
    ));
    let sent = s.send(
        1,
        AsapMessage::HandleResolution {
            subscribe: false,
            pool_handle: crate::core_tests::handle(),
            items: None,
        },
    );
    assert!(matches!(
        &sent[..],
        [(1, AsapMessage::HandleResolutionResponse { .. })]
    ));
    let c = s.core.open_connections().next().unwrap();
    assert_eq!(c.kind, ConnKind::AsapPoolUser);
    assert!(!c.may_register);
}

#[test]
fn the_first_presence_binds_the_association_and_is_answered() {
    let mut s = with_peer_keys();
    open(
        &mut s,
        1,
        PeerIdentity::Psk("registrar-2".into()),
        ConnKind::Enrp,
    );
    let frame = presence().to_bytes().unwrap();
    s.core.handle_frame(s.now, ConnId::new(1), &frame);
    let out = s.outputs();
    match &enrp_sent(&out)[..] {
        [(
            1,
            EnrpMessage::Presence {
                reply_required: false,
                sender,
                checksum,
                ..
            },
        )] => {
            assert_eq!(*sender, ServerId::new(0x1234));
            assert!(checksum.is_some());
        }
        other => panic!("{other:?}"),
    }
    assert!(out.iter().any(|o| matches!(o, Output::Event(Event::PeerUp { server_id, .. }) if *server_id == ServerId::new(0x99))));
    // An ENRP_ERROR is counted, not answered.
    s.core.handle_message(
        s.now,
        ConnId::new(1),
        EnrpMessage::Error {
            sender: ServerId::new(0x99),
            receiver: ServerId::new(0x1234),
            error: rserpool_wire::OperationError::single(rserpool_wire::Cause::new(
                CauseCode::UnrecognizedMessage,
            )),
        },
    );
    assert!(enrp_sent(&s.outputs()).is_empty());
    assert_eq!(s.core.stats().enrp.errors_received, 1);
    assert_eq!(s.core.stats().malformed, 0);
}

#[test]
fn the_wrong_protocol_is_a_protocol_error_on_the_malformed_path() {
    let mut s = with_peer_keys();
    open(
        &mut s,
        1,
        PeerIdentity::Psk("registrar-2".into()),
        ConnKind::Enrp,
    );
    s.psk(2, "pe");
    // ASAP on an ENRP connection: an ENRP_ERROR.
    s.core
        .handle_message(s.now, ConnId::new(1), registration(5));
    let out = s.outputs();
    assert!(matches!(
        &enrp_sent(&out)[..],
        [(1, EnrpMessage::Error { error, .. })] if cause_of(error) == CauseCode::UnrecognizedMessage
    ));
    assert!(out.iter().any(
        |o| matches!(o, Output::Event(Event::Malformed { conn, .. }) if *conn == ConnId::new(1))
    ));
    // ENRP on an ASAP connection: an ASAP_ERROR.
    let sent = {
        s.core.handle_message(s.now, ConnId::new(2), presence());
        s.sent()
    };
    assert!(matches!(
        &sent[..],
        [(2, AsapMessage::Error { error })] if cause_of(error) == CauseCode::UnrecognizedMessage
    ));
    assert_eq!(s.core.stats().malformed, 2);
    assert_eq!(s.pe_count(), 0);
    // Over the limit the connection closes, once.
    let max = s.core.config().max_malformed_per_connection;
    for _ in 0..max + 3 {
        s.core
            .handle_message(s.now, ConnId::new(1), registration(5));
    }
    let closes = s
        .outputs()
        .iter()
        .filter(|o| matches!(o, Output::Close { conn, .. } if *conn == ConnId::new(1)))
        .count();
    assert_eq!(closes, 1);
}

#[test]
fn a_peer_registrar_must_authenticate() {
    let mut s = Sim::new();
    open(&mut s, 1, PeerIdentity::Anonymous, ConnKind::Enrp);
    let out = s.outputs();
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Event(Event::Refused {
            refusal: Refusal::Security,
            ..
        })
    )));
    assert!(matches!(
        &enrp_sent(&out)[..],
        [(1, EnrpMessage::Error { error, .. })] if cause_of(error) == CauseCode::RejectedSecurity
    ));
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Close { conn, .. } if *conn == ConnId::new(1))));
    assert_eq!(s.core.connections(), 0);
}

#[test]
fn outbound_connections_are_asked_for_and_then_like_accepted_ones() {
    let mut s = with_peer_keys();
    let to: SocketAddr = "10.0.0.9:9902".parse().unwrap();
    assert_eq!(
        s.core.connect(s.now, to, ConnKind::Enrp),
        Err(ConnectError::NotOutbound(ConnKind::Enrp))
    );
    let a = s.core.connect(s.now, to, ConnKind::EnrpOutbound).unwrap();
    let b = s.core.connect(s.now, to, ConnKind::EnrpOutbound).unwrap();
    assert!(a >= OUTBOUND_CONNECTIONS && b > a);
    let out = s.outputs();
    assert_eq!(
        out,
        vec![
            Output::Connect {
                conn: a,
                address: to,
                kind: ConnKind::EnrpOutbound
            },
            Output::Connect {
                conn: b,
                address: to,
                kind: ConnKind::EnrpOutbound
            },
        ]
    );
    assert_eq!(s.core.pending_connections().count(), 2);
    assert_eq!(s.core.connections(), 0);
    let peer = PeerIdentity::Certificate("registrar-9".into());
    s.core.handle_connected(s.now, a, Some(peer.clone()));
    // The dialler speaks first: a presence asking for one.
    assert!(matches!(
        &enrp_sent(&s.outputs())[..],
        [(c, EnrpMessage::Presence { reply_required: true, .. })] if *c == a.get()
    ));
    s.core.handle_connect_failed(s.now, b, "connection refused");
    let out = s.outputs();
    assert!(matches!(
        &out[..],
        [Output::Event(Event::ConnectFailed { conn, address, kind: ConnKind::EnrpOutbound, reason })]
            if *conn == b && *address == to && reason == "connection refused"
    ));
    // Answers for unknown handles are ignored.
    s.core.handle_connected(s.now, b, None);
    s.core.handle_connect_failed(s.now, a, "late");
    assert!(s.outputs().is_empty());
    let c = s.core.open_connections().next().unwrap();
    assert_eq!(
        (c.conn, c.kind, c.peer),
        (a, ConnKind::EnrpOutbound, Some(&peer))
    );
    assert_eq!(s.core.pending_connections().count(), 0);
    let st = s.core.stats();
    assert_eq!(
        (st.connects, st.connect_failures, st.connections),
        (2, 1, 1)
    );
    // It speaks ENRP.
    s.core.handle_message(s.now, a, presence());
    assert_eq!(enrp_sent(&s.outputs()).len(), 1);
    s.core.handle_disconnect(s.now, a);
    assert_eq!(s.core.connections(), 0);
}

/// A PE whose home is another registrar (as ENRP will bring them).
fn foreign_pe(s: &mut Sim, id: u32) {
    let now = s.now;
    let reg = rserpool_handlespace::Registration {
        pool_handle: crate::core_tests::handle(),
        element: crate::core_tests::pe(id, PE_ADDR, rserpool_wire::Policy::RoundRobin),
        home: ServerId::new(0x9999),
        expires: Some(now + std::time::Duration::from_secs(30)),
        keep_alive_due: Some(now + std::time::Duration::from_secs(5)),
        connection: None,
        identity: Some(rserpool_handlespace::Identity("psk:elsewhere".into())),
        distance: 0,
        epoch: 0,
        registered_at: now,
    };
    s.core.handlespace_mut().register(reg).unwrap();
}

#[test]
fn only_the_home_registrar_probes_a_pe_and_an_orphan_ends_with_its_life() {
    let mut s = Sim::with(crate::CoreConfig {
        server_id: ServerId::new(0x1234),
        seed: 7,
        max_bad_pe_reports: 1,
        ..crate::CoreConfig::default()
    });
    foreign_pe(&mut s, 9);
    foreign_pe(&mut s, 10);
    s.psk(1, "pu");
    // Its home is no peer up (gone, not taken over: no majority), so
    // nobody can check it: MAX-BAD-PE-REPORT reports remove it here, as
    // for a PE of ours with no connection (nothing goes to the peers).
    let sent = s.send(
        1,
        AsapMessage::EndpointUnreachable {
            pool_handle: crate::core_tests::handle(),
            identifier: PeId::new(9),
        },
    );
    assert!(sent.is_empty(), "{sent:?}");
    assert_eq!(s.core.stats().unreachable_removals, 1);
    assert!(s
        .core
        .handlespace()
        .find(&crate::core_tests::handle(), PeId::new(9))
        .is_none());
    // Not probed; one nobody reports ends with its registration life.
    let out = s.advance(std::time::Duration::from_secs(20));
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::Event(Event::Removed { .. }))),
        "{out:?}"
    );
    let out = s.advance(std::time::Duration::from_secs(20));
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Event(Event::Removed {
            reason: crate::Removal::LifetimeExpired,
            ..
        })
    )));
    assert_eq!(s.core.stats().keep_alives_sent, 0);
    assert_eq!(s.core.stats().unreachable_reports, 1);
    // The registrar's own PEs still end as before.
    s.psk(2, "pe");
    assert_eq!(
        crate::core_tests::reg_cause(&s.send(2, registration(5))),
        None
    );
    s.core.handle_disconnect(s.now, ConnId::new(2));
    let out = s.advance(std::time::Duration::from_secs(120));
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Event(Event::Removed { identifier, .. }) if *identifier == PeId::new(5))));
}

#[test]
fn a_tls_client_at_a_plain_listener_gets_an_error_and_the_close() {
    let mut s = Sim::new();
    let address: SocketAddr = format!("{PE_ADDR}:40001").parse().unwrap();
    let now = s.now;
    s.core.handle_connect(
        now,
        ConnId::new(1),
        ClientInfo::new(None, address, ConnKind::Asap),
    );
    s.outputs();
    // A ClientHello's record header (content type 22, TLS 1.0 legacy
    // version, 271 bytes) read as ASAP: type 0x16, whose top bits say
    // "discard unreported", and length 0x0101. Cut as such a frame, it is
    // still answered, and the connection closes.
    let mut frame = vec![0x16, 0x03, 0x01, 0x01, 0x0f, 0x01];
    frame.resize(260, 0xab);
    s.core.handle_frame(now, ConnId::new(1), &frame);
    let out = s.outputs();
    assert!(
        out.iter().any(|o| matches!(
            o,
            Output::Send { conn, msg: Message::Asap(AsapMessage::Error { error }) }
                if *conn == ConnId::new(1) && error.causes[0].code == CauseCode::UnrecognizedMessage
        )),
        "{out:?}"
    );
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Close { conn, .. } if *conn == ConnId::new(1))));
    assert_eq!(s.core.stats().malformed, 1);
    // The same bytes inside TLS (an authenticated client) are just an
    // unknown type: discarded, the connection stays.
    open(&mut s, 2, PeerIdentity::Psk("pe".into()), ConnKind::Asap);
    s.outputs();
    s.core.handle_frame(now, ConnId::new(2), &frame);
    assert!(!s
        .outputs()
        .iter()
        .any(|o| matches!(o, Output::Close { conn, .. } if *conn == ConnId::new(2))));
}

/// An association of key holder `registrar-2` on connection `conn`,
/// naming server identifier 0x1000 + `conn`: what the core answered,
/// and whether it closed the association.
fn insider_presence(s: &mut Sim, conn: u64) -> (Vec<(u64, EnrpMessage)>, bool) {
    open(
        s,
        conn,
        PeerIdentity::Psk("registrar-2".into()),
        ConnKind::Enrp,
    );
    let msg = EnrpMessage::Presence {
        reply_required: true,
        sender: ServerId::new(0x1000 + conn as u32),
        receiver: ServerId::new(0),
        checksum: None,
        server_info: None,
    };
    let now = s.now;
    s.core
        .handle_frame(now, ConnId::new(conn), &msg.to_bytes().unwrap());
    let out = s.outputs();
    let closed = out
        .iter()
        .any(|o| matches!(o, Output::Close { conn: c, .. } if *c == ConnId::new(conn)));
    (enrp_sent(&out), closed)
}

fn refused_with(sent: &[(u64, EnrpMessage)], code: CauseCode) -> bool {
    sent.iter()
        .any(|(_, m)| matches!(m, EnrpMessage::Error { error, .. } if cause_of(error) == code))
}

#[test]
fn an_insider_speaks_for_few_server_ids_and_all_peers_are_bounded() {
    // One key holder, a new server identifier on each association: two
    // (a registrar and its restart) become peers, the others are
    // refused for security and closed; other registrars still join.
    let mut s = with_peer_keys();
    let max = s.core.config().enrp.max_ids_per_identity as u64;
    for conn in 1..=max + 6 {
        let (sent, closed) = insider_presence(&mut s, conn);
        let refused = refused_with(&sent, CauseCode::RejectedSecurity);
        assert_eq!(
            (closed, refused),
            (conn > max, conn > max),
            "association {conn}"
        );
    }
    assert_eq!(s.core.peers().filter(|p| p.up).count() as u64, max);
    // When those go, the identity may speak for new identifiers.
    for conn in 1..=max {
        let now = s.now;
        s.core.handle_disconnect(now, ConnId::new(conn));
    }
    s.outputs();
    assert!(!insider_presence(&mut s, 100).1);

    // Where one identity may speak for many (a key shared by all the
    // registrars), max_peers still bounds the peer table: the rest get
    // "lack of resources", and the slots come back when peers go.
    let mut s = peer_keys_at(Sim::with(CoreConfig {
        server_id: ServerId::new(0x1234),
        seed: 7,
        enrp: EnrpConfig {
            max_ids_per_identity: 1_024,
            ..EnrpConfig::default()
        },
        ..CoreConfig::default()
    }));
    let max = s.core.config().enrp.max_peers as u64;
    for conn in 1..=max + 6 {
        let (sent, closed) = insider_presence(&mut s, conn);
        let refused = refused_with(&sent, CauseCode::LackOfResources);
        assert_eq!(
            (closed, refused),
            (conn > max, conn > max),
            "association {conn}"
        );
    }
    assert_eq!(s.core.peers().count() as u64, max);
    for conn in 1..=max + 6 {
        let now = s.now;
        s.core.handle_disconnect(now, ConnId::new(conn));
    }
    s.outputs();
    assert!(s.core.peers().all(|p| !p.up));
    assert!(!insider_presence(&mut s, 1000).1);
    assert!(s
        .core
        .peers()
        .any(|p| p.server_id == ServerId::new(0x1000 + 1000) && p.up));
}

/// An ENRP_PRESENCE as a registrar multicasts it, naming `sender` and
/// its ENRP transport `at`.
fn multicast_presence(sender: u32, at: SocketAddr) -> Vec<u8> {
    EnrpMessage::Presence {
        reply_required: false,
        sender: ServerId::new(sender),
        receiver: ServerId::new(0),
        checksum: Some(0),
        server_info: Some(rserpool_wire::ServerInformation {
            server_id: ServerId::new(sender),
            transport: rserpool_wire::Transport::Tcp {
                port: at.port(),
                transport_use: rserpool_wire::TransportUse::DataPlusControl,
                address: at.ip(),
            },
        }),
    }
    .to_bytes()
    .unwrap()
}

fn dials(out: &[Output]) -> Vec<(ConnId, SocketAddr)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Connect {
                conn,
                address,
                kind: ConnKind::EnrpOutbound,
            } => Some((*conn, *address)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_multicast_presence_is_a_hint_to_dial_bounded_and_never_aimed_elsewhere() {
    let mut s = with_peer_keys();
    let at = |n: u8| -> SocketAddr { format!("10.0.1.{n}:9902").parse().unwrap() };
    let now = s.now;
    // A presence from the host it names: dialled (as a registrar it
    // must prove to be), once.
    s.core
        .handle_presence_hint(now, at(1), &multicast_presence(0x77, at(1)));
    let first = dials(&s.outputs());
    assert_eq!(first.iter().map(|d| d.1).collect::<Vec<_>>(), [at(1)]);
    s.core
        .handle_presence_hint(now, at(1), &multicast_presence(0x77, at(1)));
    assert!(dials(&s.outputs()).is_empty());
    // One naming another host (a reflection) or no transport, or garbage:
    // nothing.
    s.core
        .handle_presence_hint(now, at(2), &multicast_presence(0x78, at(3)));
    s.core
        .handle_presence_hint(now, at(2), b"\x16\x03\x01 not ENRP");
    assert!(dials(&s.outputs()).is_empty());
    // A flood of hosts: the burst of four (the first included), then
    // one a second.
    for n in 10..40 {
        s.core
            .handle_presence_hint(now, at(n), &multicast_presence(0x100 + n as u32, at(n)));
    }
    assert_eq!(dials(&s.outputs()).len(), 3);
    assert_eq!(s.core.stats().enrp.presence_hints_dialled, 4);
    // A hinted address whose dial fails is forgotten, not redialled.
    let (conn, _) = first[0];
    s.core.handle_connect_failed(now, conn, "refused");
    s.outputs();
    s.now += std::time::Duration::from_secs(30);
    let now = s.now;
    s.core.handle_timeout(now);
    assert!(
        !dials(&s.outputs()).iter().any(|d| d.1 == at(1)),
        "a failed hint was redialled"
    );
    // Later hints are taken again, at the rate.
    s.core
        .handle_presence_hint(now, at(1), &multicast_presence(0x77, at(1)));
    assert_eq!(
        dials(&s.outputs()).iter().map(|d| d.1).collect::<Vec<_>>(),
        [at(1)]
    );
}

#[test]
fn a_starting_registrar_with_a_drawn_identifier_draws_another_on_a_collision() {
    for drawn in [true, false] {
        let mut s = peer_keys_at(Sim::with(CoreConfig {
            server_id: ServerId::new(0x1234),
            seed: 7,
            server_id_drawn: drawn,
            enrp: EnrpConfig {
                // Still starting: its mentor has not answered.
                peers: vec!["10.9.9.9:9902".parse().unwrap()],
                ..EnrpConfig::default()
            },
            ..CoreConfig::default()
        }));
        s.outputs();
        open(
            &mut s,
            1,
            PeerIdentity::Psk("registrar-2".into()),
            ConnKind::Enrp,
        );
        // A peer that has our identifier (another nonce).
        let now = s.now;
        s.core.handle_frame(
            now,
            ConnId::new(1),
            &presence_of(0x1234).to_bytes().unwrap(),
        );
        let out = s.outputs();
        let id = s.core.config().server_id;
        assert!(out
            .iter()
            .any(|o| matches!(o, Output::Close { conn, .. } if *conn == ConnId::new(1))));
        assert_eq!(s.core.stats().enrp.id_collisions, 1);
        if drawn {
            assert_ne!(id, ServerId::new(0x1234));
            assert!(out.iter().any(|o| matches!(
                o,
                Output::Event(Event::ServerIdChanged { from, to })
                    if *from == ServerId::new(0x1234) && *to == id
            )));
        } else {
            // Configured, or in use: kept; the other side is told, with
            // our presence, and may be the one to draw again.
            assert_eq!(id, ServerId::new(0x1234));
            let sent = enrp_sent(&out);
            assert!(sent
                .iter()
                .any(|(_, m)| matches!(m, EnrpMessage::Presence { sender, .. } if *sender == id)));
            assert!(refused_with(&sent, CauseCode::InvalidValues));
        }
    }
}

fn presence_of(sender: u32) -> EnrpMessage {
    EnrpMessage::Presence {
        reply_required: true,
        sender: ServerId::new(sender),
        receiver: ServerId::new(0),
        checksum: None,
        server_info: None,
    }
}
