#![cfg(feature = "driver")]
//! The threat suite (issue 14): one attack per threat of RFC 5355
//! (sections 2.1 to 2.17) and per row of the PIM lessons of DESIGN
//! section 4, each against real registrars (the rserpool-registrar
//! service, in process, on loopback, over TLS), the client library's PEs
//! and PUs, and attackers on raw connections sending crafted ASAP. Each
//! test checks that nothing false is created and nothing true removed,
//! that the attacker gets the right refusal, and that legitimate clients
//! are still served.
//!
//! `docs/threat-matrix.md` lists every row with its tests; [`matrix`]
//! checks the file against the test functions here, both ways.

/// The scripted registrar and timers of the client tests.
#[path = "../common/mod.rs"]
mod client_support;
/// The registrar's test lab: a registrar with PSK identities and raw
/// ASAP clients.
#[path = "../../../rserpool-registrar/tests/support/mod.rs"]
mod support;

mod common;
/// Sessions of the lab's pool users and a counting PE.
#[path = "../sessions/session_lab.rs"]
mod session_lab;

mod announce;
mod ipsec_ha;
mod matrix;
mod pim;
mod rfc5355_2_1;
mod rfc5355_2_10_2_11;
mod rfc5355_2_12;
mod rfc5355_2_13_2_14;
mod rfc5355_2_15;
mod rfc5355_2_16;
mod rfc5355_2_17;
mod rfc5355_2_2;
mod rfc5355_2_3;
mod rfc5355_2_4;
mod rfc5355_2_5;
mod rfc5355_2_6_2_7;
mod rfc5355_2_8;
mod rfc5355_2_9;
