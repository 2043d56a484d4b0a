//! RFC 5355 2.16: cookie security. The client library has no PU-PE
//! sessions and so no cookies yet (DESIGN section 4 asks for cookies
//! signed with a key the pool's PEs share and bound to the session's
//! security level): this row is a gap (docs/threat-matrix.md). What
//! exists is tested here: cookies belong on the PU-PE channel only, so a
//! registrar takes none.

use rserpool_registrar::CoreConfig;
use rserpool_wire::{AsapMessage, CauseCode};

use crate::common::*;

const PE_A: u32 = 0x0a0b_0c0d;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_sent_to_a_registrar_are_unrecognised_and_change_nothing() {
    let lab = Lab::start(CoreConfig::default()).await;
    let _pe = library_pe(&lab, "pe-a", PE_A).await;
    let mut attacker = lab.client("pe-b").await;
    for m in [
        AsapMessage::Cookie {
            cookie: b"forged state".to_vec(),
        },
        AsapMessage::CookieEcho {
            cookie: b"forged state".to_vec(),
        },
    ] {
        match attacker.request(&m).await {
            AsapMessage::Error { error } => {
                assert_eq!(error.causes[0].code, CauseCode::UnrecognizedMessage)
            }
            other => panic!("expected an error, got {other:?}"),
        }
    }
    assert_eq!(lab.pool_ids(HANDLE).await, vec![PE_A]);
    assert_eq!(served(&lab, "pu-1", HANDLE).await, vec![PE_A]);
}
