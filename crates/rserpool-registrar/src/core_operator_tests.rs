//! Tests of the operators' actions on PEs (drain, undrain, removal) in
//! the core, on the virtual clock of `core_tests`.

use std::time::Duration;

use rserpool_security::PeerIdentity;
use rserpool_wire::{AsapMessage, ConnId, PeId, PoolHandle, ServerId};

use crate::core_tests::{ack, events, handle, reg_cause, registration, resolved_ids, Sim};
use crate::{Event, Message, OperatorError, Output, Removal};

const BY: &str = "admin API from 127.0.0.1";

/// A core with PEs 1, 2 and 3 of `pe-a` (connection 1) and a pool user
/// (connection 9); keep-alives every 5 s with 30 s to answer.
fn three_pes() -> Sim {
    let mut s = Sim::with(crate::CoreConfig {
        server_id: ServerId::new(0x1234),
        seed: 7,
        keep_alive_timeout: Duration::from_secs(30),
        ..crate::CoreConfig::default()
    });
    s.psk(1, "pe-a");
    for id in 1..=3 {
        assert_eq!(reg_cause(&s.send(1, registration(id))), None);
    }
    s.connect(9, Some(PeerIdentity::Anonymous), "10.9.9.9");
    s.outputs();
    s
}

fn resolved_many(s: &mut Sim, rounds: usize) -> Vec<u32> {
    let mut all: Vec<u32> = (0..rounds).flat_map(|_| resolved_ids(s, 9)).collect();
    all.sort_unstable();
    all.dedup();
    all
}

fn deregistration(id: u32) -> AsapMessage {
    AsapMessage::Deregistration {
        pool_handle: handle(),
        identifier: PeId::new(id),
    }
}

#[test]
fn a_drained_pe_stays_registered_but_is_not_handed_out() {
    let mut s = three_pes();
    let now = s.now;
    let o = s
        .core
        .drain(
            now,
            &handle(),
            PeId::new(2),
            Some(Duration::from_secs(600)),
            BY,
        )
        .unwrap();
    assert!(!o.was_drained);
    assert_eq!(o.ends, Some(now + Duration::from_secs(600)));
    assert_eq!(
        events(&s.outputs()),
        vec![Event::Drained {
            pool_handle: handle(),
            identifier: PeId::new(2),
            by: BY.into(),
            timeout_seconds: Some(600),
        }]
    );
    assert_eq!(resolved_many(&mut s, 10), vec![1, 3]);
    // A re-registration renews it but does not undrain it.
    assert_eq!(reg_cause(&s.send(1, registration(2))), None);
    assert_eq!(resolved_many(&mut s, 10), vec![1, 3]);
    // Keep-alives go on: the PE is probed, answers, and stays.
    let out = s.advance(Duration::from_secs(8));
    assert!(
        out.iter().any(|o| matches!(
            o,
            Output::Send {
                msg: Message::Asap(AsapMessage::EndpointKeepAlive {
                    identifier: Some(id),
                    ..
                }),
                ..
            } if *id == PeId::new(2)
        )),
        "keep-alives to the drained PE: {out:?}"
    );
    ack(&mut s, 1, 2);
    s.advance(Duration::from_secs(3));
    assert!(s
        .core
        .handlespace()
        .find(&handle(), PeId::new(2))
        .is_some_and(|e| e.drained));
    assert_eq!(s.core.stats().operator_drains, 1);
    s.core.check_invariants();
}

#[test]
fn the_drain_timeout_removes_the_pe_and_what_follows_is_harmless() {
    let mut s = Sim::with(crate::CoreConfig {
        keep_alive_interval: Duration::from_secs(3600),
        ..crate::CoreConfig::default()
    });
    s.psk(1, "pe-a");
    assert_eq!(reg_cause(&s.send(1, registration(7))), None);
    s.outputs();
    let now = s.now;
    s.core
        .drain(
            now,
            &handle(),
            PeId::new(7),
            Some(Duration::from_secs(600)),
            BY,
        )
        .unwrap();
    // Draining again replaces the timeout.
    let o = s
        .core
        .drain(
            now,
            &handle(),
            PeId::new(7),
            Some(Duration::from_secs(20)),
            BY,
        )
        .unwrap();
    assert!(o.was_drained);
    s.outputs();
    assert!(s.advance(Duration::from_secs(19)).is_empty());
    let out = s.advance(Duration::from_secs(2));
    // Removed, and no message goes to the PE (it would register again at
    // once on an unsolicited deregistration response).
    assert_eq!(
        out,
        vec![Output::Event(Event::Removed {
            pool_handle: handle(),
            identifier: PeId::new(7),
            reason: Removal::DrainTimeout,
        })]
    );
    assert_eq!(s.core.stats().drain_timeout_removals, 1);
    s.core.check_invariants();
    // Its own late deregistration and keep-alive answer are harmless.
    let sent = s.send(1, deregistration(7));
    assert!(matches!(
        &sent[..],
        [(1, AsapMessage::DeregistrationResponse { error: None, .. })]
    ));
    assert!(ack(&mut s, 1, 7).is_empty());
    assert!(events(&s.outputs()).is_empty());
    // A PE process that still runs comes back as a new, undrained PE.
    assert_eq!(reg_cause(&s.send(1, registration(7))), None);
    assert!(s
        .core
        .handlespace()
        .find(&handle(), PeId::new(7))
        .is_some_and(|e| !e.drained));
    s.core.check_invariants();
}

#[test]
fn a_drain_without_a_timeout_lasts_and_an_undrain_ends_it() {
    let mut s = three_pes();
    let now = s.now;
    let o = s
        .core
        .drain(now, &handle(), PeId::new(3), None, BY)
        .unwrap();
    assert_eq!(o.ends, None);
    assert!(matches!(
        &events(&s.outputs())[..],
        [Event::Drained {
            timeout_seconds: None,
            ..
        }]
    ));
    // Re-registrations and keep-alive answers keep it past the default
    // timeout (10 minutes).
    for _ in 0..40 {
        s.advance(Duration::from_secs(20));
        for id in 1..=3 {
            s.send(1, registration(id));
            ack(&mut s, 1, id);
        }
    }
    assert!(s
        .core
        .handlespace()
        .find(&handle(), PeId::new(3))
        .is_some_and(|e| e.drained));
    assert_eq!(resolved_many(&mut s, 10), vec![1, 2]);
    let now = s.now;
    assert_eq!(s.core.undrain(now, &handle(), PeId::new(3), BY), Ok(true));
    assert_eq!(
        events(&s.outputs()),
        vec![Event::Undrained {
            pool_handle: handle(),
            identifier: PeId::new(3),
            by: BY.into(),
        }]
    );
    // Idempotent: no event the second time.
    assert_eq!(s.core.undrain(now, &handle(), PeId::new(3), BY), Ok(false));
    assert!(s.outputs().is_empty());
    assert_eq!(resolved_many(&mut s, 10), vec![1, 2, 3]);
    assert_eq!(s.core.stats().operator_undrains, 2);
}

#[test]
fn an_undrain_cancels_the_timeout() {
    let mut s = three_pes();
    let now = s.now;
    s.core
        .drain(
            now,
            &handle(),
            PeId::new(1),
            Some(Duration::from_secs(5)),
            BY,
        )
        .unwrap();
    s.core.undrain(now, &handle(), PeId::new(1), BY).unwrap();
    s.outputs();
    s.advance(Duration::from_secs(6));
    assert!(s.core.handlespace().find(&handle(), PeId::new(1)).is_some());
}

#[test]
fn a_drained_pe_that_deregisters_is_removed_as_usual() {
    let mut s = three_pes();
    let now = s.now;
    s.core
        .drain(now, &handle(), PeId::new(1), None, BY)
        .unwrap();
    s.outputs();
    s.core
        .handle_message(s.now, ConnId::new(1), deregistration(1));
    assert!(events(&s.outputs()).contains(&Event::Removed {
        pool_handle: handle(),
        identifier: PeId::new(1),
        reason: Removal::Deregistered,
    }));
    assert_eq!(s.core.handlespace().drained_count(), 0);
    s.core.check_invariants();
}

#[test]
fn a_pool_whose_pes_are_all_drained_answers_an_empty_list() {
    let mut s = three_pes();
    let now = s.now;
    for id in 1..=3 {
        s.core
            .drain(now, &handle(), PeId::new(id), None, BY)
            .unwrap();
    }
    s.outputs();
    let sent = s.send(
        9,
        AsapMessage::HandleResolution {
            subscribe: false,
            pool_handle: handle(),
            items: None,
        },
    );
    assert!(
        matches!(
            &sent[..],
            [(9, AsapMessage::HandleResolutionResponse { pool_elements, policy: None, error: None, .. })]
                if pool_elements.is_empty()
        ),
        "{sent:?}"
    );
}

#[test]
fn an_operator_removal_is_final_for_the_core_and_harmless_after() {
    let mut s = three_pes();
    let now = s.now;
    s.core
        .drain(now, &handle(), PeId::new(2), None, BY)
        .unwrap();
    s.outputs();
    assert_eq!(
        s.core.remove_pool_element(now, &handle(), PeId::new(2)),
        Ok(())
    );
    assert_eq!(
        events(&s.outputs()),
        vec![Event::Removed {
            pool_handle: handle(),
            identifier: PeId::new(2),
            reason: Removal::Operator,
        }]
    );
    assert_eq!(s.core.stats().operator_removals, 1);
    assert_eq!(s.core.handlespace().drained_count(), 0);
    s.core.check_invariants();
    assert_eq!(
        s.core.remove_pool_element(now, &handle(), PeId::new(2)),
        Err(OperatorError::NoPoolElement {
            pool_handle: handle(),
            identifier: PeId::new(2)
        })
    );
    // The PE's own deregistration and keep-alive answer find nothing.
    assert!(ack(&mut s, 1, 2).is_empty());
    let sent = s.send(1, deregistration(2));
    assert!(matches!(
        &sent[..],
        [(1, AsapMessage::DeregistrationResponse { error: None, .. })]
    ));
    assert!(events(&s.outputs()).is_empty());
    // Its connection closing later touches only the PEs still there.
    s.core.handle_disconnect(s.now, ConnId::new(1));
    s.core.check_invariants();
    // Removing the last PEs removes the pool.
    for id in [1, 3] {
        s.core
            .remove_pool_element(s.now, &handle(), PeId::new(id))
            .unwrap();
    }
    assert_eq!(s.core.handlespace().pool_count(), 0);
    s.core.check_invariants();
}

#[test]
fn actions_on_what_does_not_exist_and_bad_timeouts_are_refused() {
    let mut s = three_pes();
    let now = s.now;
    let nope = PoolHandle::from_static("nope");
    assert_eq!(
        s.core.drain(now, &nope, PeId::new(1), None, BY),
        Err(OperatorError::NoPool(nope.clone()))
    );
    assert_eq!(
        s.core.undrain(now, &handle(), PeId::new(99), BY),
        Err(OperatorError::NoPoolElement {
            pool_handle: handle(),
            identifier: PeId::new(99)
        })
    );
    assert_eq!(
        s.core.remove_pool_element(now, &nope, PeId::new(1)),
        Err(OperatorError::NoPool(nope))
    );
    for bad in [
        Duration::ZERO,
        Duration::from_millis(1500),
        Duration::from_secs(31 * 86_400),
        Duration::MAX,
    ] {
        let e = s
            .core
            .drain(now, &handle(), PeId::new(1), Some(bad), BY)
            .unwrap_err();
        assert!(matches!(e, OperatorError::Timeout { .. }), "{bad:?}: {e}");
    }
    assert_eq!(
        OperatorError::NoPool(PoolHandle::from_static("x")).to_string(),
        "no pool \"x\""
    );
    assert_eq!(
        OperatorError::NoPoolElement {
            pool_handle: handle(),
            identifier: PeId::new(0x0a0b_0c0d)
        }
        .to_string(),
        "pool \"echo\" has no PE 0x0a0b0c0d"
    );
    // Nothing changed, nothing counted.
    assert!(s.outputs().is_empty());
    assert_eq!(s.core.handlespace().drained_count(), 0);
    let st = s.core.stats();
    assert_eq!(
        (
            st.operator_drains,
            st.operator_undrains,
            st.operator_removals
        ),
        (0, 0, 0)
    );
    assert_eq!(s.pe_count(), 3);
}
