//! The registrar's sans-IO core, built without tokio and OpenSSL
//! (`default-features = false`), driven by the input as a driver would:
//! connections of every kind open and close, frames arrive, outbound
//! connections succeed or fail, time passes. Never panics; every message
//! goes to an open connection (or one being refused as it opens), a
//! connection is closed only while open (so at most once), and
//! `Output::Connect` comes only from `connect`.
#![no_main]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rserpool_registrar::{ClientInfo, ConnKind, CoreConfig, Output, RegistrarCore};
use rserpool_security::PeerIdentity;
use rserpool_wire::{ConnId, ServerId};

const KINDS: [ConnKind; 3] = [ConnKind::Asap, ConnKind::AsapPoolUser, ConnKind::Enrp];

fn identity(b: u8) -> Option<PeerIdentity> {
    match b % 4 {
        0 => None,
        1 => Some(PeerIdentity::Anonymous),
        2 => Some(PeerIdentity::Psk(format!("pe-{}", b % 3))),
        _ => Some(PeerIdentity::Certificate(format!("pu-{}", b % 3))),
    }
}

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut now = t0;
    let config = CoreConfig {
        server_id: ServerId::new(0x1234),
        seed: 1,
        ..CoreConfig::default()
    };
    let Ok(mut core) = RegistrarCore::new(config, now) else {
        return;
    };
    // Open connections (known to the driver) and those it was asked for.
    let mut open: BTreeSet<ConnId> = BTreeSet::new();
    let mut asked: BTreeSet<ConnId> = BTreeSet::new();
    let mut i = 0;
    while i < data.len() {
        let op = data[i];
        let arg = data.get(i + 1).copied().unwrap_or(0);
        i += 2;
        let conn = ConnId::new(u64::from(arg % 8));
        let address = SocketAddr::from(([10, 0, 0, arg % 4], 4000 + u16::from(arg)));
        match op % 8 {
            0 => {
                if !open.contains(&conn) {
                    let kind = KINDS[usize::from(arg / 8) % KINDS.len()];
                    open.insert(conn);
                    core.handle_connect(now, conn, ClientInfo::new(identity(op / 8), address, kind));
                }
            }
            1 | 2 => {
                // A frame: the next `len` bytes.
                let len = usize::from(arg);
                let start = i.min(data.len());
                let end = (start + len).min(data.len());
                let frame = &data[start..end];
                i = end;
                let target = open.iter().next().copied().unwrap_or(conn);
                core.handle_frame(now, target, frame);
            }
            3 => {
                open.remove(&conn);
                core.handle_disconnect(now, conn);
            }
            4 => {
                now += Duration::from_millis(u64::from(arg) * 250);
                core.handle_timeout(now);
            }
            5 => {
                if let Ok(c) = core.connect(now, address, ConnKind::EnrpOutbound) {
                    asked.insert(c);
                }
            }
            6 => {
                if let Some(c) = asked.pop_first() {
                    if arg % 2 == 0 {
                        open.insert(c);
                        core.handle_connected(now, c, identity(arg / 2));
                    } else {
                        core.handle_connect_failed(now, c, "refused");
                    }
                }
            }
            _ => {
                let _ = core.poll_timeout();
            }
        }
        while let Some(o) = core.poll_output() {
            match o {
                Output::Send { conn, .. } => {
                    assert!(open.contains(&conn), "send to an unknown connection {conn}")
                }
                Output::Close { conn, .. } => {
                    assert!(open.contains(&conn), "close of an unknown connection {conn}");
                    // The driver closes it: it is gone.
                    open.remove(&conn);
                    core.handle_disconnect(now, conn);
                }
                Output::Connect { conn, .. } => assert!(asked.contains(&conn)),
                _ => {}
            }
        }
    }
});
