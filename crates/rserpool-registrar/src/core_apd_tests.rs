//! Tests of the authorised peer database in the registrar core: the four
//! places it applies, insecure mode, and the re-validation after a
//! change (what it removes and how it says so).

use rserpool_security::apd::{Apd, Change, EntrySelector};
use rserpool_security::PeerIdentity;
use rserpool_wire::{AsapMessage, CauseCode, ConnId, PeId, Policy, PoolHandle};

use crate::core_tests::{events, pe, reg_cause, Sim, PE_ADDR};
use crate::{Event, Output, Removal};

/// Two PE keys, each for its own pool; a PU key for "echo" only; the
/// closing deny written out.
const STRICT: &str = r#"
[[entry]]
name = "echo-pe"
action = "allow"
namespace = "psk"
identity = "pe-echo"
roles = ["pe"]
pools = ["echo"]

[[entry]]
name = "db-pe"
action = "allow"
namespace = "psk"
identity = "pe-db"
roles = ["pe"]
pools = ["db"]

[[entry]]
name = "echo-pu"
action = "allow"
namespace = "psk"
identity = "pu-echo"
roles = ["pu"]
pools = ["echo"]

[[entry]]
name = "deny-everyone-else"
action = "deny"
namespace = "any"
identity = "*"
roles = ["pe", "pu", "registrar", "admin"]
"#;

fn strict() -> Sim {
    let mut s = Sim::new();
    let now = s.now;
    let report = s.core.replace_apd(now, Apd::from_toml(STRICT).unwrap());
    assert!(report.is_empty());
    s.outputs();
    s
}

fn register_in(pool: &str, id: u32) -> AsapMessage {
    AsapMessage::Registration {
        pool_handle: PoolHandle::new(pool.as_bytes().to_vec()).unwrap(),
        pool_element: pe(id, PE_ADDR, Policy::RoundRobin),
    }
}

fn resolve_in(s: &mut Sim, conn: u64, pool: &str) -> Option<CauseCode> {
    let sent = s.send(
        conn,
        AsapMessage::HandleResolution {
            subscribe: false,
            pool_handle: PoolHandle::new(pool.as_bytes().to_vec()).unwrap(),
            items: None,
        },
    );
    match &sent[..] {
        [(_, AsapMessage::HandleResolutionResponse { error, .. })] => {
            error.as_ref().map(|e| e.causes[0].code)
        }
        other => panic!("{other:?}"),
    }
}

/// The refusal events' details.
fn refusals(out: &[Output]) -> Vec<String> {
    events(out)
        .into_iter()
        .filter_map(|e| match e {
            Event::Refused { detail, .. } => Some(detail),
            _ => None,
        })
        .collect()
}

#[test]
fn a_key_registers_only_in_the_pools_its_entry_grants() {
    let mut s = strict();
    s.psk(1, "pe-echo");
    s.psk(2, "pe-db");
    assert_eq!(reg_cause(&s.send(1, register_in("echo", 1))), None);
    // The attack of the issue: any PE key joining "echo", or taking a
    // pool name first.
    s.core
        .handle_message(s.now, ConnId::new(2), register_in("echo", 2));
    let out = s.outputs();
    assert_eq!(
        reg_cause(
            &out.iter()
                .filter_map(|o| match o {
                    Output::Send {
                        conn,
                        msg: crate::Message::Asap(m),
                    } => Some((conn.get(), m.clone())),
                    _ => None,
                })
                .collect::<Vec<_>>()
        ),
        Some(CauseCode::RejectedSecurity)
    );
    let why = refusals(&out);
    assert_eq!(
        why,
        vec![
            "psk:pe-db may not register in pool echo: denied by entry 3 \"deny-everyone-else\" \
             for 10.0.0.1"
                .to_string()
        ]
    );
    assert_eq!(
        reg_cause(&s.send(1, register_in("other", 3))),
        Some(CauseCode::RejectedSecurity)
    );
    assert_eq!(reg_cause(&s.send(2, register_in("db", 4))), None);
    assert_eq!(s.pe_count(), 2);
    assert_eq!(s.core.stats().refused_unauthorised, 2);
}

#[test]
fn the_own_address_rule_is_the_entrys_address_scope() {
    let mut s = strict();
    s.psk(1, "pe-echo");
    let mut foreign = pe(1, "10.0.0.99", Policy::RoundRobin);
    let msg = AsapMessage::Registration {
        pool_handle: PoolHandle::from_static("echo"),
        pool_element: foreign.clone(),
    };
    s.core.handle_message(s.now, ConnId::new(1), msg);
    let why = refusals(&s.outputs());
    assert_eq!(why.len(), 1);
    assert!(
        why[0].ends_with("(10.0.0.99 is not the connection's source address 10.0.0.1)"),
        "{why:?}"
    );
    // An entry with addresses "any" lets the key register another host.
    let now = s.now;
    let change = Change::Insert {
        position: 0,
        entry: rserpool_security::apd::Entry::from_toml(
            r#"name = "echo-anywhere"
action = "allow"
namespace = "psk"
identity = "pe-echo"
roles = ["pe"]
pools = ["echo"]
addresses = ["10.0.0.0/24"]"#,
        )
        .unwrap(),
    };
    s.core.change_apd(now, change).unwrap();
    s.outputs();
    foreign.identifier = PeId::new(2);
    let msg = AsapMessage::Registration {
        pool_handle: PoolHandle::from_static("echo"),
        pool_element: foreign,
    };
    assert_eq!(reg_cause(&s.send(1, msg)), None);
}

#[test]
fn connections_need_a_role_of_their_listener() {
    let mut s = strict();
    // Unknown key: an error and a close, at once.
    s.psk(1, "intruder");
    let out = s.outputs();
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Close { conn, .. } if conn.get() == 1)),
        "{out:?}"
    );
    assert_eq!(
        refusals(&out),
        vec![
            "psk:intruder may not connect as pe or pu: denied by entry 3 \"deny-everyone-else\""
                .to_string()
        ]
    );
    assert_eq!(s.core.connections(), 0);
    // Anonymous TLS clients have no entry in the strict database.
    s.connect(2, Some(PeerIdentity::Anonymous), "10.0.0.2");
    assert_eq!(s.core.connections(), 0);
    // The keys it names connect.
    s.psk(3, "pu-echo");
    s.psk(4, "pe-db");
    assert_eq!(s.core.connections(), 2);
}

#[test]
fn a_pool_user_sees_only_the_pools_it_may() {
    let mut s = strict();
    s.psk(1, "pe-echo");
    s.psk(2, "pe-db");
    s.psk(3, "pu-echo");
    s.send(1, register_in("echo", 1));
    s.send(2, register_in("db", 2));
    assert_eq!(resolve_in(&mut s, 3, "echo"), None);
    // Denied, and answered the same whether the pool exists or not.
    assert_eq!(
        resolve_in(&mut s, 3, "db"),
        Some(CauseCode::RejectedSecurity)
    );
    assert_eq!(
        resolve_in(&mut s, 3, "nonexistent"),
        Some(CauseCode::RejectedSecurity)
    );
    // A PE key is no PU here.
    assert_eq!(
        resolve_in(&mut s, 1, "echo"),
        Some(CauseCode::RejectedSecurity)
    );
}

#[test]
fn reports_count_only_from_those_who_may_use_the_pool() {
    let mut s = strict();
    s.psk(1, "pe-echo");
    s.psk(2, "pe-db");
    s.send(1, register_in("echo", 1));
    s.send(2, register_in("db", 2));
    s.outputs();
    // pe-echo is no PU of "db": its report is refused, not counted.
    s.core.handle_message(
        s.now,
        ConnId::new(1),
        AsapMessage::EndpointUnreachable {
            pool_handle: PoolHandle::from_static("db"),
            identifier: PeId::new(2),
        },
    );
    let out = s.outputs();
    assert_eq!(refusals(&out).len(), 1, "{out:?}");
    assert_eq!(s.core.stats().unreachable_reports, 0);
    assert_eq!(s.core.stats().refused_unauthorised, 1);
}

#[test]
fn a_change_removes_exactly_what_it_now_denies() {
    let mut s = strict();
    s.psk(1, "pe-echo");
    s.psk(2, "pe-db");
    s.psk(3, "pu-echo");
    s.send(1, register_in("echo", 1));
    s.send(1, register_in("echo", 11));
    s.send(2, register_in("db", 2));
    s.outputs();
    // Delete pe-echo's entry: its connection and both its PEs go; the
    // others stay.
    let now = s.now;
    let (position, report) = s
        .core
        .change_apd(now, Change::Delete(EntrySelector::Name("echo-pe".into())))
        .unwrap();
    assert_eq!(position, 0);
    assert_eq!(report.entries, 3);
    let closed: Vec<_> = report
        .connections_closed
        .iter()
        .map(|c| (c.conn.get(), c.identity.as_str(), c.decision.as_str()))
        .collect();
    assert_eq!(
        closed,
        vec![(1, "psk:pe-echo", "denied by entry 2 \"deny-everyone-else\"")]
    );
    let removed: Vec<_> = report
        .pes_removed
        .iter()
        .map(|p| {
            (
                p.pool_handle.to_string(),
                p.identifier.get(),
                p.identity.as_str(),
            )
        })
        .collect();
    assert_eq!(
        removed,
        vec![
            ("echo".to_string(), 1, "psk:pe-echo"),
            ("echo".to_string(), 11, "psk:pe-echo")
        ]
    );
    assert_eq!(s.pe_count(), 1);
    let out = s.outputs();
    let ev = events(&out);
    assert!(ev.contains(&Event::AuthorisationChanged {
        entries: 3,
        connections_closed: 1,
        pes_removed: 2,
    }));
    assert_eq!(
        ev.iter()
            .filter(|e| matches!(
                e,
                Event::Removed {
                    reason: Removal::Unauthorised,
                    ..
                }
            ))
            .count(),
        2
    );
    let st = s.core.stats();
    assert_eq!((st.apd_removals, st.apd_connections_closed), (2, 1));
    assert_eq!(s.core.connections(), 2);

    // A change that denies nothing removes nothing.
    let now = s.now;
    let (_, report) = s
        .core
        .change_apd(
            now,
            Change::Move {
                entry: EntrySelector::Name("echo-pu".into()),
                to: 0,
            },
        )
        .unwrap();
    assert!(report.is_empty());
    assert_eq!(s.pe_count(), 1);
}

#[test]
fn an_invalid_change_changes_nothing() {
    let mut s = strict();
    s.psk(1, "pe-echo");
    s.send(1, register_in("echo", 1));
    let before = s.core.apd().to_toml();
    let now = s.now;
    assert!(s
        .core
        .change_apd(now, Change::Delete(EntrySelector::Name("nope".into())))
        .is_err());
    assert!(s
        .core
        .change_apd(
            now,
            Change::Move {
                entry: EntrySelector::Index(0),
                to: 99
            }
        )
        .is_err());
    assert_eq!(s.core.apd().to_toml(), before);
    assert_eq!(s.pe_count(), 1);
    assert_eq!(s.core.stats().apd_changes, 1);
}

#[test]
fn a_pe_denied_only_by_its_addresses_is_removed_and_its_connection_stays() {
    let mut s = Sim::new();
    let now = s.now;
    s.core.replace_apd(now, Apd::permissive(true));
    s.psk(1, "pe-a");
    let foreign = AsapMessage::Registration {
        pool_handle: PoolHandle::from_static("echo"),
        pool_element: pe(7, "10.0.0.99", Policy::RoundRobin),
    };
    assert_eq!(reg_cause(&s.send(1, foreign)), None);
    assert_eq!(reg_cause(&s.send(1, register_in("echo", 8))), None);
    // Back to own addresses only: the foreign PE goes, the other stays,
    // and so does the connection.
    let now = s.now;
    let report = s.core.replace_apd(now, Apd::permissive(false));
    assert!(report.connections_closed.is_empty());
    assert_eq!(
        report
            .pes_removed
            .iter()
            .map(|p| p.identifier.get())
            .collect::<Vec<_>>(),
        vec![7]
    );
    assert_eq!(s.pe_count(), 1);
    assert_eq!(s.core.connections(), 1);
}

#[test]
fn insecure_clients_have_the_permissive_rights_and_no_configured_ones() {
    // Permissive default: register own addresses, resolve.
    let mut s = Sim::new();
    s.connect(1, None, PE_ADDR);
    assert_eq!(reg_cause(&s.send(1, register_in("echo", 1))), None);
    let foreign = AsapMessage::Registration {
        pool_handle: PoolHandle::from_static("echo"),
        pool_element: pe(2, "10.0.0.99", Policy::RoundRobin),
    };
    assert_eq!(
        reg_cause(&s.send(1, foreign.clone())),
        Some(CauseCode::RejectedSecurity)
    );
    assert_eq!(resolve_in(&mut s, 1, "echo"), None);
    // With foreign addresses allowed, that too.
    let now = s.now;
    let report = s.core.replace_apd(now, Apd::permissive(true));
    assert!(report.is_empty(), "{report:?}");
    assert_eq!(reg_cause(&s.send(1, foreign)), None);
    // A configured database names identities nobody proved: the insecure
    // connection and its PEs go.
    let now = s.now;
    let report = s.core.replace_apd(now, Apd::from_toml(STRICT).unwrap());
    assert_eq!(report.connections_closed.len(), 1);
    assert_eq!(report.pes_removed.len(), 2);
    s.connect(2, None, PE_ADDR);
    assert_eq!(s.core.connections(), 0);
}
