//! ENRP between registrar cores (RFC 5353), on a virtual clock: a
//! cluster of cores whose outbound connections and messages the harness
//! carries (encoded and decoded, as on the wire), with links that can
//! drop messages, and frozen registrars. PEs are ASAP connections the
//! harness answers keep-alives for.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rserpool_security::PeerIdentity;
use rserpool_wire::{
    AsapMessage, CauseCode, ConnId, EnrpExtensions, EnrpMessage, PeId, Policy, PoolElement,
    ServerId, Transport, TransportUse, UpdateAction,
};

use crate::core_tests::{handle, pe};
use crate::{ClientInfo, ConnKind, CoreConfig, EnrpConfig, Event, Message, Output, RegistrarCore};

/// Accepted connection numbers of the harness (below the cores' own
/// outbound numbers).
const FIRST_ACCEPTED: u64 = 1_000;

pub(crate) struct Node {
    pub core: RegistrarCore,
    pub addr: SocketAddr,
    pub name: String,
    pub frozen: bool,
    pub events: Vec<Event>,
}

/// One end of a link: node and connection.
type End = (usize, ConnId);

pub(crate) struct Cluster {
    pub nodes: Vec<Node>,
    pub now: Instant,
    links: BTreeMap<End, End>,
    next_conn: u64,
    /// Messages from one node to another the network loses, by type.
    pub drop_next: Vec<(usize, usize, u8)>,
    /// PE connections: node, connection, identity.
    pes: BTreeSet<End>,
    /// H-flag keep-alives sent to PE connections: node, connection, PE,
    /// the home it names.
    pub calls: Vec<(usize, ConnId, PeId, ServerId)>,
}

pub(crate) fn id_of(i: usize) -> ServerId {
    ServerId::new(0x100 + i as u32)
}

fn enrp_addr(i: usize) -> SocketAddr {
    format!("10.9.0.{}:9902", i + 1).parse().unwrap()
}

impl Cluster {
    /// `n` registrars; each lists the ones before it as its peers.
    pub fn new(n: usize) -> Cluster {
        Cluster::with(n, |_, c| c)
    }

    pub fn with(n: usize, tweak: impl Fn(usize, EnrpConfig) -> EnrpConfig) -> Cluster {
        let now = Instant::now();
        let mut c = Cluster {
            nodes: Vec::new(),
            now,
            links: BTreeMap::new(),
            next_conn: FIRST_ACCEPTED,
            drop_next: Vec::new(),
            pes: BTreeSet::new(),
            calls: Vec::new(),
        };
        for i in 0..n {
            let enrp = EnrpConfig {
                peers: (0..i).map(enrp_addr).collect(),
                advertise: Some(enrp_addr(i)),
                ..EnrpConfig::default()
            };
            c.add_node(i, tweak(i, enrp));
        }
        c.settle();
        c
    }

    pub fn add_node(&mut self, i: usize, enrp: EnrpConfig) {
        let config = CoreConfig {
            server_id: id_of(i),
            seed: i as u64 + 1,
            enrp,
            ..CoreConfig::default()
        };
        // The permissive default, with the registrars' keys as peer keys.
        let registrars: Vec<PeerIdentity> = (0..8)
            .map(|j| PeerIdentity::Psk(format!("registrar-{j}")))
            .collect();
        let apd = crate::Apd::permissive_with_registrars(false, &registrars);
        let node = Node {
            core: RegistrarCore::new(config, self.now).unwrap().with_apd(apd),
            addr: enrp_addr(i),
            name: format!("registrar-{i}"),
            frozen: false,
            events: Vec::new(),
        };
        if i < self.nodes.len() {
            self.nodes[i] = node;
        } else {
            self.nodes.push(node);
        }
    }

    fn identity(&self, i: usize) -> PeerIdentity {
        PeerIdentity::Psk(self.nodes[i].name.clone())
    }

    /// Carry every output until nothing moves.
    pub fn pump(&mut self) {
        for _ in 0..100_000 {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                if self.nodes[i].frozen {
                    continue;
                }
                while let Some(o) = self.nodes[i].core.poll_output() {
                    moved = true;
                    self.carry(i, o);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the cluster never settles");
    }

    fn carry(&mut self, i: usize, o: Output) {
        let now = self.now;
        match o {
            Output::Connect { conn, address, .. } => {
                let target = self.nodes.iter().position(|n| n.addr == address);
                match target {
                    Some(t) if !self.nodes[t].frozen => {
                        let accepted = ConnId::new(self.next_conn);
                        self.next_conn += 1;
                        let info = ClientInfo::new(
                            Some(self.identity(i)),
                            self.nodes[i].addr,
                            ConnKind::Enrp,
                        );
                        self.nodes[t].core.handle_connect(now, accepted, info);
                        let id = self.identity(t);
                        self.nodes[i].core.handle_connected(now, conn, Some(id));
                        self.links.insert((i, conn), (t, accepted));
                        self.links.insert((t, accepted), (i, conn));
                    }
                    _ => self.nodes[i]
                        .core
                        .handle_connect_failed(now, conn, "refused"),
                }
            }
            Output::Send { conn, msg } => {
                if self.pes.contains(&(i, conn)) {
                    if let Message::Asap(AsapMessage::EndpointKeepAlive {
                        pool_handle,
                        identifier: Some(identifier),
                        home,
                        server_id,
                    }) = msg
                    {
                        if home {
                            self.calls.push((i, conn, identifier, server_id));
                        }
                        let ack = AsapMessage::EndpointKeepAliveAck {
                            pool_handle,
                            identifier,
                        };
                        self.nodes[i].core.handle_message(now, conn, ack);
                    }
                    return;
                }
                let Some(&(t, tc)) = self.links.get(&(i, conn)) else {
                    return;
                };
                let mut bytes = Vec::new();
                msg.encode(&mut bytes).unwrap();
                if let Some(k) = self
                    .drop_next
                    .iter()
                    .position(|&(f, to, ty)| f == i && to == t && ty == bytes[0])
                {
                    self.drop_next.remove(k);
                    return;
                }
                if !self.nodes[t].frozen {
                    self.nodes[t].core.handle_frame(now, tc, &bytes);
                }
            }
            Output::Close { conn, .. } => {
                if let Some(other) = self.links.remove(&(i, conn)) {
                    self.links.remove(&other);
                    self.nodes[other.0].core.handle_disconnect(now, other.1);
                }
                self.nodes[i].core.handle_disconnect(now, conn);
            }
            Output::Event(e) => self.nodes[i].events.push(e),
        }
    }

    /// Let time pass, running every deadline of the live registrars.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            self.pump();
            let next = self
                .nodes
                .iter()
                .filter(|n| !n.frozen)
                .filter_map(|n| n.core.poll_timeout())
                .min()
                .filter(|t| *t <= end);
            let Some(t) = next else { break };
            self.now = t.max(self.now);
            for n in self.nodes.iter_mut().filter(|n| !n.frozen) {
                if n.core.poll_timeout().is_some_and(|d| d <= self.now) {
                    n.core.handle_timeout(self.now);
                }
            }
        }
        self.now = end;
        self.pump();
    }

    /// Run until the start-up exchanges are done.
    pub fn settle(&mut self) {
        self.advance(Duration::from_millis(100));
    }

    /// Kill registrar `i`: every association resets.
    pub fn kill(&mut self, i: usize) {
        let ends: Vec<(End, End)> = self
            .links
            .iter()
            .filter(|(a, _)| a.0 == i)
            .map(|(a, b)| (*a, *b))
            .collect();
        for (a, b) in ends {
            self.links.remove(&a);
            self.links.remove(&b);
            self.nodes[b.0].core.handle_disconnect(self.now, b.1);
        }
        self.nodes[i].frozen = true;
        self.pump();
    }

    /// A PE connection to registrar `i` for PSK identity `name`.
    pub fn pe_conn(&mut self, i: usize, conn: u64, name: &str) -> ConnId {
        let c = ConnId::new(conn);
        let address: SocketAddr = format!("10.0.0.1:{}", 40_000 + conn).parse().unwrap();
        let info = ClientInfo::new(
            Some(PeerIdentity::Psk(name.into())),
            address,
            ConnKind::Asap,
        );
        self.nodes[i].core.handle_connect(self.now, c, info);
        self.pes.insert((i, c));
        c
    }

    /// Register PE `id` at registrar `i` over `conn`; returns whether it
    /// was accepted.
    pub fn register(&mut self, i: usize, conn: ConnId, id: u32) -> bool {
        let msg = AsapMessage::Registration {
            pool_handle: handle(),
            pool_element: pe(id, "10.0.0.1", Policy::RoundRobin),
        };
        self.send_asap(i, conn, msg)
    }

    fn send_asap(&mut self, i: usize, conn: ConnId, msg: AsapMessage) -> bool {
        let now = self.now;
        self.nodes[i].core.handle_message(now, conn, msg);
        let mut ok = false;
        let mut rest = Vec::new();
        while let Some(o) = self.nodes[i].core.poll_output() {
            match &o {
                Output::Send {
                    conn: c,
                    msg: Message::Asap(AsapMessage::RegistrationResponse { reject, .. }),
                } if *c == conn => ok = !reject,
                _ => rest.push(o),
            }
        }
        for o in rest {
            self.carry(i, o);
        }
        self.pump();
        ok
    }

    /// PE `id` names `conn` at registrar `i` as its standby link (an
    /// unsolicited keep-alive ack, docs/tcp-mapping.md).
    pub fn stand_by(&mut self, i: usize, conn: ConnId, id: u32) {
        let msg = AsapMessage::EndpointKeepAliveAck {
            pool_handle: handle(),
            identifier: PeId::new(id),
        };
        self.send_asap(i, conn, msg);
    }

    pub fn deregister(&mut self, i: usize, conn: ConnId, id: u32) {
        let msg = AsapMessage::Deregistration {
            pool_handle: handle(),
            identifier: PeId::new(id),
        };
        self.send_asap(i, conn, msg);
    }

    /// The PEs of pool "echo" at registrar `i`: identifier, home.
    pub fn pes_at(&self, i: usize) -> Vec<(u32, u32)> {
        let hs = self.nodes[i].core.handlespace();
        let mut v: Vec<(u32, u32)> = hs
            .pool_elements(&handle())
            .map(|e| (e.identifier.get(), e.home.get()))
            .collect();
        v.sort_unstable();
        v
    }

    /// Inject a message on the association from `from` to `to`, as
    /// `from` would send it.
    pub fn inject(&mut self, from: usize, to: usize, msg: EnrpMessage, ext: EnrpExtensions) {
        let conn = self
            .links
            .iter()
            .find(|(a, b)| a.0 == to && b.0 == from)
            .map(|(a, _)| a.1)
            .expect("an association");
        let mut bytes = Vec::new();
        ext.encode(&msg, &mut bytes).unwrap();
        let now = self.now;
        self.nodes[to].core.handle_frame(now, conn, &bytes);
        self.pump();
    }

    pub fn events(&self, i: usize) -> &[Event] {
        &self.nodes[i].events
    }
}

fn peer_pe(id: u32, home: ServerId) -> PoolElement {
    PoolElement {
        home_registrar: home,
        asap_transport: Some(Transport::Tcp {
            port: 40_001,
            transport_use: TransportUse::DataPlusControl,
            address: "10.0.0.1".parse().unwrap(),
        }),
        ..pe(id, "10.0.0.1", Policy::RoundRobin)
    }
}

fn update(from: ServerId, action: UpdateAction, pe: PoolElement) -> EnrpMessage {
    EnrpMessage::HandleUpdate {
        takeover_suggested: false,
        sender: from,
        receiver: ServerId::UNDETERMINED,
        action,
        pool_handle: handle(),
        pool_element: pe,
    }
}

fn registrant(name: &str) -> EnrpExtensions {
    EnrpExtensions {
        registrant: Some(format!("psk:{name}")),
        ..EnrpExtensions::default()
    }
}

#[test]
fn registrars_find_each_other_and_a_pe_registered_at_one_is_at_every_one() {
    let mut c = Cluster::new(3);
    for i in 0..3 {
        let peers: Vec<ServerId> = c.nodes[i]
            .core
            .peers()
            .filter(|p| p.up)
            .map(|p| p.server_id)
            .collect();
        let others: Vec<ServerId> = (0..3).filter(|&j| j != i).map(id_of).collect();
        assert_eq!(peers, others, "registrar {i} knows both others");
        assert!(c.nodes[i].core.serves_pool_users());
    }
    let pe_conn = c.pe_conn(0, 1, "pe-1");
    assert!(c.register(0, pe_conn, 7));
    for i in 0..3 {
        assert_eq!(c.pes_at(i), vec![(7, id_of(0).get())], "at registrar {i}");
        let e = c.nodes[i]
            .core
            .handlespace()
            .find(&handle(), PeId::new(7))
            .unwrap();
        assert_eq!(
            e.identity.as_ref().map(|x| &*x.0),
            Some("psk:pe-1"),
            "the registrant travels"
        );
    }
    c.deregister(0, pe_conn, 7);
    for i in 0..3 {
        assert!(c.pes_at(i).is_empty(), "gone at registrar {i}");
    }
    // Heartbeats keep the peers up, and their checksums agree.
    c.advance(Duration::from_secs(10));
    for i in 0..3 {
        assert!(c.nodes[i].core.peers().all(|p| p.up && p.checksum_agrees));
    }
}

#[test]
fn a_new_registrar_downloads_the_table_in_pages_before_it_serves() {
    let mut c = Cluster::with(1, |_, e| EnrpConfig {
        page_bytes: 1024,
        ..e
    });
    // Two identities: one may register 200 at once (its burst).
    let (a, b) = (c.pe_conn(0, 1, "pe-1"), c.pe_conn(0, 2, "pe-2"));
    for id in 1..=300 {
        assert!(c.register(0, if id % 2 == 0 { a } else { b }, id));
    }
    c.add_node(
        1,
        EnrpConfig {
            peers: vec![enrp_addr(0)],
            advertise: Some(enrp_addr(1)),
            ..EnrpConfig::default()
        },
    );
    assert!(
        !c.nodes[1].core.serves_pool_users(),
        "not before the download"
    );
    c.settle();
    assert!(c.nodes[1].core.serves_pool_users());
    assert_eq!(c.pes_at(1).len(), 300);
    let synced = c.events(1).iter().find_map(|e| match e {
        Event::TableSynced {
            pes,
            pages,
            audit: false,
            ..
        } => Some((*pes, *pages)),
        _ => None,
    });
    let (pes, pages) = synced.expect("a download");
    assert_eq!(pes, 300);
    assert!(pages > 5, "{pages} pages of at most 1 KiB");
}

#[test]
fn a_registrar_whose_peers_are_all_down_serves_alone_after_the_mentor_timeout() {
    let mut c = Cluster::with(1, |_, e| EnrpConfig {
        peers: vec!["10.9.9.9:9902".parse().unwrap()],
        ..e
    });
    assert!(!c.nodes[0].core.serves_pool_users());
    c.advance(Duration::from_secs(6));
    assert!(c.nodes[0].core.serves_pool_users());
}

#[test]
fn a_lost_update_is_healed_by_the_audit_after_the_next_heartbeat() {
    let mut c = Cluster::new(2);
    let pe_conn = c.pe_conn(0, 1, "pe-1");
    // The update for PE 7 is lost on the way to registrar 1, and so is
    // the removal of PE 8.
    assert!(c.register(0, pe_conn, 8));
    c.drop_next
        .push((0, 1, rserpool_wire::enrp::msg_type::HANDLE_UPDATE));
    assert!(c.register(0, pe_conn, 7));
    c.drop_next
        .push((0, 1, rserpool_wire::enrp::msg_type::HANDLE_UPDATE));
    c.deregister(0, pe_conn, 8);
    let home = id_of(0).get();
    assert_eq!(c.pes_at(1), vec![(8, home)], "out of sync");
    c.advance(Duration::from_millis(1_500));
    assert_eq!(
        c.pes_at(1),
        vec![(7, home)],
        "the audit added 7 and removed 8"
    );
    assert!(c.events(1).iter().any(|e| matches!(
        e,
        Event::TableSynced {
            audit: true,
            removed: 1,
            ..
        }
    )));
    assert_eq!(c.nodes[1].core.stats().enrp.audits, 1);
    assert!(c.nodes[1].core.peers().all(|p| p.checksum_agrees));
}

#[test]
fn a_peer_speaks_for_itself_only_and_only_for_the_pes_it_is_home_of() {
    let mut c = Cluster::new(3);
    let pe_conn = c.pe_conn(0, 1, "pe-1");
    assert!(c.register(0, pe_conn, 7));
    // Registrar 2 claims to be registrar 0 on its association with 1.
    c.inject(
        2,
        1,
        update(id_of(0), UpdateAction::DelPe, peer_pe(7, id_of(0))),
        EnrpExtensions::default(),
    );
    assert_eq!(c.nodes[1].core.stats().enrp.spoofed, 1);
    // As itself: it is not the PE's home.
    c.inject(
        2,
        1,
        update(id_of(2), UpdateAction::DelPe, peer_pe(7, id_of(0))),
        EnrpExtensions::default(),
    );
    c.inject(
        2,
        1,
        update(id_of(2), UpdateAction::AddPe, peer_pe(7, id_of(0))),
        registrant("pe-1"),
    );
    assert_eq!(c.pes_at(1), vec![(7, id_of(0).get())], "nothing moved");
    // Taking PE 7 over as its home, with another registrant.
    c.inject(
        2,
        1,
        update(id_of(2), UpdateAction::AddPe, peer_pe(7, id_of(2))),
        registrant("mallory"),
    );
    assert_eq!(
        c.pes_at(1),
        vec![(7, id_of(0).get())],
        "identity binding holds"
    );
    // Without a registrant on an authenticated association.
    c.inject(
        2,
        1,
        update(id_of(2), UpdateAction::AddPe, peer_pe(9, id_of(2))),
        EnrpExtensions::default(),
    );
    assert_eq!(c.nodes[1].core.stats().enrp.updates_refused, 4);
    let refused: Vec<CauseCode> = c
        .events(1)
        .iter()
        .filter_map(|e| match e {
            Event::Refused {
                request: "ENRP_HANDLE_UPDATE",
                cause,
                ..
            } => Some(*cause),
            _ => None,
        })
        .collect();
    assert_eq!(refused, vec![CauseCode::RejectedSecurity; 4]);
    // A PE of its own, properly announced, is taken.
    c.inject(
        2,
        1,
        update(id_of(2), UpdateAction::AddPe, peer_pe(9, id_of(2))),
        registrant("pe-2"),
    );
    assert_eq!(c.pes_at(1), vec![(7, id_of(0).get()), (9, id_of(2).get())]);
}

#[test]
fn a_pe_reregistering_at_another_registrar_moves_there_with_its_identity_only() {
    let mut c = Cluster::new(2);
    let at0 = c.pe_conn(0, 1, "pe-1");
    assert!(c.register(0, at0, 7));
    // Another identity at registrar 1: refused, for the whole cluster.
    let other = c.pe_conn(1, 2, "pe-2");
    assert!(!c.register(1, other, 7));
    // The same identity: registrar 1 owns it now, everywhere.
    let at1 = c.pe_conn(1, 3, "pe-1");
    assert!(c.register(1, at1, 7));
    for i in 0..2 {
        assert_eq!(c.pes_at(i), vec![(7, id_of(1).get())], "at registrar {i}");
    }
    assert_eq!(c.nodes[0].core.stats().enrp.pes_moved_away, 1);
    // Its old home no longer probes or expires it (within its life).
    c.advance(Duration::from_secs(20));
    assert_eq!(c.pes_at(0), vec![(7, id_of(1).get())]);
}

#[test]
fn a_silent_peer_is_asked_for_its_presence_and_then_is_down() {
    let mut c = Cluster::new(2);
    c.nodes[0].frozen = true;
    c.advance(Duration::from_millis(2_500));
    assert!(
        c.nodes[1].core.peers().all(|p| p.up),
        "probed, not down yet"
    );
    c.advance(Duration::from_millis(1_000));
    assert!(c.nodes[1].core.peers().all(|p| !p.up));
    assert!(c
        .events(1)
        .iter()
        .any(|e| matches!(e, Event::PeerDown { server_id, .. } if *server_id == id_of(0))));
}

#[test]
fn a_killed_peer_is_redialled_and_rejoins_with_a_fresh_download() {
    let mut c = Cluster::new(2);
    let pe_conn = c.pe_conn(0, 1, "pe-1");
    assert!(c.register(0, pe_conn, 7));
    c.kill(1);
    assert!(c.nodes[0].core.peers().all(|p| !p.up));
    // Registrar 1 restarts empty and downloads the table again.
    c.add_node(
        1,
        EnrpConfig {
            peers: vec![enrp_addr(0)],
            advertise: Some(enrp_addr(1)),
            ..EnrpConfig::default()
        },
    );
    c.settle();
    assert_eq!(c.pes_at(1), vec![(7, id_of(0).get())]);
    assert!(c.nodes[0]
        .core
        .peers()
        .any(|p| p.up && p.server_id == id_of(1)));
}

#[test]
fn a_registrar_that_dials_itself_stops() {
    let mut c = Cluster::with(1, |i, e| EnrpConfig {
        peers: vec![enrp_addr(i)],
        ..e
    });
    c.advance(Duration::from_secs(10));
    let s = c.nodes[0].core.stats();
    assert_eq!(s.enrp.self_connections, 1);
    assert_eq!(s.connects, 1, "dialled once");
}

#[test]
fn a_flood_of_updates_from_one_peer_is_bounded() {
    let mut c = Cluster::with(2, |_, e| EnrpConfig {
        update_rate: rserpool_security::rate_limit::Rate::new(10.0, 20.0),
        ..e
    });
    for id in 0..100 {
        c.inject(
            0,
            1,
            update(id_of(0), UpdateAction::AddPe, peer_pe(1000 + id, id_of(0))),
            registrant("pe-1"),
        );
    }
    let s = &c.nodes[1].core.stats().enrp;
    assert_eq!(s.updates_rate_limited, 80);
    assert_eq!(c.pes_at(1).len(), 20);
}

fn takeover_msg(from: usize, target: usize, server: bool) -> EnrpMessage {
    if server {
        EnrpMessage::TakeoverServer {
            sender: id_of(from),
            receiver: ServerId::UNDETERMINED,
            target: id_of(target),
        }
    } else {
        EnrpMessage::InitTakeover {
            sender: id_of(from),
            receiver: ServerId::UNDETERMINED,
            target: id_of(target),
        }
    }
}

/// Register PEs `ids` at registrar `i`.
fn pes_at_registrar(c: &mut Cluster, i: usize, ids: std::ops::RangeInclusive<u32>) {
    let conn = c.pe_conn(i, 1, "pe-1");
    for id in ids {
        assert!(c.register(i, conn, id));
    }
}

#[test]
fn a_killed_registrars_pes_are_taken_over_by_exactly_one_survivor() {
    let mut c = Cluster::new(3);
    pes_at_registrar(&mut c, 0, 1..=20);
    c.kill(0);
    // Both survivors started; the larger identifier (registrar 2) won.
    let winner = id_of(2).get();
    for i in [1, 2] {
        let pes = c.pes_at(i);
        assert_eq!(pes.len(), 20, "no PE lost at registrar {i}");
        assert!(
            pes.iter().all(|&(_, home)| home == winner),
            "at registrar {i}: {pes:?}"
        );
        assert!(c.nodes[i].core.peers().all(|p| p.server_id != id_of(0)));
    }
    let s1 = &c.nodes[1].core.stats().enrp;
    let s2 = &c.nodes[2].core.stats().enrp;
    assert_eq!((s2.takeovers_won, s1.takeovers_won), (1, 0));
    assert_eq!(s1.takeovers_lost, 1);
    assert!(c.events(2).iter().any(|e| matches!(
        e,
        Event::TakenOver { target, winner: w, pes: 20 } if *target == id_of(0) && *w == id_of(2)
    )));
    // The winner's checksum of its own PEs agrees at the other survivor.
    c.advance(Duration::from_secs(3));
    assert!(c.nodes[1].core.peers().all(|p| p.checksum_agrees));
}

#[test]
fn with_two_registrars_the_survivor_takes_over_at_once() {
    let mut c = Cluster::new(2);
    pes_at_registrar(&mut c, 0, 1..=5);
    c.kill(0);
    assert_eq!(
        c.pes_at(1),
        (1..=5).map(|id| (id, id_of(1).get())).collect::<Vec<_>>()
    );
    assert_eq!(c.nodes[1].core.stats().enrp.takeovers_won, 1);
}

#[test]
fn a_frozen_registrar_is_taken_over_within_the_silence_bound() {
    let mut c = Cluster::new(2);
    pes_at_registrar(&mut c, 0, 1..=5);
    // The PEs stand by with registrar 1 (docs/tcp-mapping.md).
    let standby = c.pe_conn(1, 2, "pe-1");
    for id in 1..=5 {
        c.stand_by(1, standby, id);
    }
    c.nodes[0].frozen = true;
    // MAX-TIME-LAST-HEARD (2 s) + MAX-TIME-NO-RESPONSE (1 s).
    c.advance(Duration::from_millis(3_200));
    assert_eq!(c.nodes[1].core.stats().enrp.takeovers_won, 1);
    assert!(c.pes_at(1).iter().all(|&(_, home)| home == id_of(1).get()));
    // Each is called home over its standby link and registers there.
    assert_eq!(c.calls.len(), 5);
    assert!(c
        .calls
        .iter()
        .all(|&(i, conn, _, home)| i == 1 && conn == standby && home == id_of(1)));
    for id in 1..=5 {
        assert!(c.register(1, standby, id));
    }
    // It resumes, and finds the PEs' connection closed (they left it
    // for their new home): its stale claims (older ownership epochs)
    // lose everywhere, and nobody loses a PE.
    c.nodes[0].frozen = false;
    let now = c.now;
    c.nodes[0].core.handle_disconnect(now, ConnId::new(1));
    // Their new standby link goes to it before it heard its peers: its
    // claim is stale, so it calls nobody back (the PEs would follow).
    let calls = c.calls.len();
    let back = c.pe_conn(0, 9, "pe-1");
    for id in 1..=5 {
        c.stand_by(0, back, id);
    }
    assert_eq!(c.calls.len(), calls, "{:?}", c.calls);
    c.advance(Duration::from_secs(15));
    assert_eq!(c.calls.len(), calls, "{:?}", c.calls);
    for i in 0..2 {
        let pes = c.pes_at(i);
        assert_eq!(pes.len(), 5, "at registrar {i}");
        assert!(
            pes.iter().all(|&(_, home)| home == id_of(1).get()),
            "at registrar {i}: {pes:?}"
        );
    }
    assert!(c.nodes[0].core.peers().all(|p| p.checksum_agrees));
    assert!(c.nodes[1].core.peers().all(|p| p.checksum_agrees));
}

#[test]
fn a_pe_that_stays_with_its_thawed_registrar_takes_it_back_as_home() {
    let mut c = Cluster::new(2);
    pes_at_registrar(&mut c, 0, 1..=5);
    c.nodes[0].frozen = true;
    c.advance(Duration::from_millis(3_200));
    assert_eq!(c.nodes[1].core.stats().enrp.takeovers_won, 1);
    c.nodes[0].frozen = false;
    // No standby link: the PEs, still connected to registrar 0,
    // re-register there (their T4); it is their home again, everywhere,
    // as the PEs agree.
    let conn = ConnId::new(1);
    for id in 1..=5 {
        assert!(c.register(0, conn, id));
    }
    c.advance(Duration::from_secs(15));
    for i in 0..2 {
        let pes = c.pes_at(i);
        assert!(
            pes.iter().all(|&(_, home)| home == id_of(0).get()),
            "at registrar {i}: {pes:?}"
        );
        assert_eq!(pes.len(), 5, "at registrar {i}: {:?}", c.events(i));
    }
    assert!(c.nodes[1].core.peers().all(|p| p.checksum_agrees));
}

#[test]
fn a_takeover_of_a_registrar_that_is_still_heard_moves_nothing() {
    let mut c = Cluster::new(3);
    pes_at_registrar(&mut c, 0, 1..=3);
    // Registrar 2 (authenticated, an insider) claims registrar 0 failed.
    c.inject(2, 1, takeover_msg(2, 0, false), EnrpExtensions::default());
    c.inject(2, 1, takeover_msg(2, 0, true), EnrpExtensions::default());
    assert!(c.pes_at(1).iter().all(|&(_, home)| home == id_of(0).get()));
    assert_eq!(c.nodes[1].core.stats().enrp.takeovers_refused, 2);
    assert!(c.nodes[1]
        .core
        .peers()
        .any(|p| p.server_id == id_of(0) && p.up));
    // A takeover of registrar 1 itself: it announces its presence, and
    // keeps its PEs when told it was taken over.
    let conn = c.pe_conn(1, 2, "pe-2");
    assert!(c.register(1, conn, 50));
    c.inject(2, 1, takeover_msg(2, 1, false), EnrpExtensions::default());
    c.inject(2, 1, takeover_msg(2, 1, true), EnrpExtensions::default());
    assert_eq!(c.nodes[1].core.stats().enrp.takeovers_refused, 4);
    let home = c.nodes[1]
        .core
        .handlespace()
        .find(&handle(), PeId::new(50))
        .map(|e| e.home);
    assert_eq!(home, Some(id_of(1)));
}

#[test]
fn a_taken_over_pe_nobody_can_check_goes_when_enough_pool_users_report_it() {
    let mut c = Cluster::new(2);
    pes_at_registrar(&mut c, 0, 1..=2);
    c.kill(0);
    assert_eq!(c.pes_at(1).len(), 2);
    // Not connected to the winner: MAX-BAD-PE-REPORT (3) reporters
    // remove it, as no keep-alive can check it.
    for (i, pu) in ["pu-1", "pu-2", "pu-3"].iter().enumerate() {
        let conn = c.pe_conn(1, 10 + i as u64, pu);
        let now = c.now;
        c.nodes[1].core.handle_message(
            now,
            conn,
            AsapMessage::EndpointUnreachable {
                pool_handle: handle(),
                identifier: PeId::new(1),
            },
        );
        c.pump();
    }
    assert_eq!(c.pes_at(1), vec![(2, id_of(1).get())]);
    assert!(c.events(1).iter().any(|e| matches!(
        e,
        Event::ReportedUnreachable {
            check: crate::ReportCheck::Unconnected,
            ..
        }
    )));
}

#[test]
fn a_takeover_calls_the_pes_home_over_their_standby_links_for_the_registrant_only() {
    let mut c = Cluster::new(3);
    let home = c.pe_conn(0, 1, "pe-1");
    for id in 1..=4 {
        assert!(c.register(0, home, id));
    }
    // PE 1 stands by at registrar 1, PE 2 at registrar 2 (the winner to
    // be); another key holder names PE 3 at registrar 2: not recorded.
    let at1 = c.pe_conn(1, 2, "pe-1");
    c.stand_by(1, at1, 1);
    let at2 = c.pe_conn(2, 3, "pe-1");
    c.stand_by(2, at2, 2);
    let rogue = c.pe_conn(2, 4, "pe-2");
    c.stand_by(2, rogue, 3);
    assert_eq!(c.nodes[2].core.stats().standby_claims_refused, 1);
    assert_eq!(c.nodes[2].core.standby_links(), 1);
    c.kill(0);
    // Each survivor calls home the PEs that stand by with it, naming
    // itself (RFC 5353 3.5.2, over the PE's own connection).
    let mut calls = c.calls.clone();
    calls.sort();
    assert_eq!(
        calls,
        vec![
            (1, at1, PeId::new(1), id_of(1)),
            (2, at2, PeId::new(2), id_of(2)),
        ]
    );
    // They register over those links: the PE's own choice (epoch + 2)
    // beats the takeover (epoch + 1) at every registrar.
    assert!(c.register(1, at1, 1));
    assert!(c.register(2, at2, 2));
    // PE 3 names its standby link at the winner only now: it is called
    // at once (it cannot be reached otherwise).
    let late = c.pe_conn(2, 5, "pe-1");
    c.stand_by(2, late, 3);
    assert_eq!(c.calls.last(), Some(&(2, late, PeId::new(3), id_of(2))));
    assert!(c.register(2, late, 3));
    c.advance(Duration::from_secs(1));
    for i in [1, 2] {
        let pes = c.pes_at(i);
        assert_eq!(
            pes,
            vec![
                (1, id_of(1).get()),
                (2, id_of(2).get()),
                (3, id_of(2).get()),
                (4, id_of(2).get())
            ],
            "at registrar {i}"
        );
    }
    // PE 4 has no link to anyone: unchecked, it goes after the
    // keep-alive timeout, like a PE whose connection closed.
    c.advance(Duration::from_secs(6));
    for i in [1, 2] {
        assert_eq!(c.pes_at(i).len(), 3, "at registrar {i}");
    }
}
