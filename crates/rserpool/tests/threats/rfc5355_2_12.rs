//! RFC 5355 2.12: registrar discovery thwarted (only dead registrars
//! found) or spoofed (an attacker answers as a registrar). Mechanism: a
//! static list of registrars, each proved by TLS; whatever answers at a
//! listed address without the credentials fails the handshake and the
//! client goes on down the list. (Announcements as untrusted hints are
//! the PIM-announce row.)

use rserpool::PoolElement;
use rserpool_registrar::CoreConfig;

use crate::common::*;

const PE_A: u32 = 0x0a0b_0c0d;
const FORGED: u32 = 0x0bad_0bad;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofers_and_dead_addresses_in_the_list_fail_and_clients_reach_the_genuine_registrar() {
    let lab = Lab::start(CoreConfig::default()).await;
    let dead = crate::client_support::dead_address().await;
    // A plain spoofer that answers every connection with a forged
    // resolution, and a rogue TLS registrar with other keys.
    let spoofer = Spoofer::start(pe(FORGED, "192.0.2.66", 80)).await;
    let rogue = rogue_psk_registrar().await;
    let list = vec![dead, spoofer.addr, rogue.local_addrs()[0], lab.addr];

    let pe_a = within(PoolElement::start(
        config(list.clone(), Some(psk_client(&lab.key("pe-a")))),
        spec(HANDLE, PE_A, 7),
    ))
    .await
    .expect("registered with the genuine registrar");
    assert_eq!(pe_a.status().registrar, Some(lab.addr));
    assert_eq!(pes_of(&rogue).await, 0);

    let pu = config(list, Some(psk_client(&lab.key("pu-1"))));
    assert_eq!(
        resolve_with(pu, HANDLE).await,
        vec![PE_A],
        "never the forged PE"
    );
    assert_eq!(lab.pool_ids(HANDLE).await, vec![PE_A]);
}
