//! Test support shared by the tshark cross-checks (this crate's
//! `tshark_crosscheck.rs` and the registrar's `enrp_tshark.rs`, which
//! includes this file with `#[path]`): RSerPool messages wrapped in IPv4
//! and one SCTP DATA chunk each (RFC 9260; PPID 11 for ASAP, 12 for
//! ENRP, RFC 5352 5.1 and RFC 5353 5) in a classic pcap file, and
//! `tshark` run on it.
//!
//! When `tshark` is missing the callers skip, unless `CI=true`, where
//! they fail. `TSHARK` may name another binary.

#![allow(dead_code)]

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// SCTP payload protocol identifier of ASAP.
pub const PPID_ASAP: u32 = 11;
/// SCTP payload protocol identifier of ENRP.
pub const PPID_ENRP: u32 = 12;

pub const fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

/// CRC32c (Castagnoli), as SCTP uses it (RFC 9260 appendix A).
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The RFC 1071 checksum of an IPv4 header.
fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// IPv4 + SCTP common header + one DATA chunk (B and E set) with `payload`.
pub fn ip_sctp_packet(index: u32, ppid: u32, payload: &[u8]) -> Vec<u8> {
    let (src_port, dst_port): (u16, u16) = if ppid == PPID_ASAP {
        (3863, 3863)
    } else {
        (9901, 9901)
    };
    let mut sctp = Vec::new();
    sctp.extend_from_slice(&src_port.to_be_bytes());
    sctp.extend_from_slice(&dst_port.to_be_bytes());
    sctp.extend_from_slice(&0x5e57_0000u32.wrapping_add(ppid).to_be_bytes()); // verification tag
    sctp.extend_from_slice(&[0; 4]); // checksum, filled in below
    let chunk_len = u16::try_from(16 + payload.len()).expect("small chunk");
    sctp.extend_from_slice(&[0x00, 0x03]); // DATA, flags B|E
    sctp.extend_from_slice(&chunk_len.to_be_bytes());
    sctp.extend_from_slice(&(1000 + index).to_be_bytes()); // TSN
    sctp.extend_from_slice(&0u16.to_be_bytes()); // stream identifier
    sctp.extend_from_slice(&u16::try_from(index).expect("few packets").to_be_bytes()); // SSN
    sctp.extend_from_slice(&ppid.to_be_bytes());
    sctp.extend_from_slice(payload);
    sctp.resize(pad4(sctp.len()), 0);
    let crc = crc32c(&sctp);
    // The CRC32c goes in as its bytes in little-endian order (RFC 9260
    // appendix A: the reflected CRC, first byte first).
    sctp[8..12].copy_from_slice(&crc.to_le_bytes());

    let total = u16::try_from(20 + sctp.len()).expect("small packet");
    let (src, dst) = if ppid == PPID_ASAP {
        ([192, 0, 2, 100], [192, 0, 2, 1])
    } else {
        ([192, 0, 2, 11], [192, 0, 2, 12])
    };
    let mut ipv4 = vec![0x45, 0x00];
    ipv4.extend_from_slice(&total.to_be_bytes());
    ipv4.extend_from_slice(&u16::try_from(index + 1).expect("few packets").to_be_bytes());
    ipv4.extend_from_slice(&[0x40, 0x00, 64, 132, 0, 0]); // DF, TTL 64, SCTP
    ipv4.extend_from_slice(&src);
    ipv4.extend_from_slice(&dst);
    let c = ipv4_checksum(&ipv4);
    ipv4[10..12].copy_from_slice(&c.to_be_bytes());
    ipv4.extend_from_slice(&sctp);
    ipv4
}

/// A classic pcap file (microsecond timestamps, LINKTYPE_RAW = 101).
pub fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes()); // thiszone
    out.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
    out.extend_from_slice(&65_535u32.to_le_bytes()); // snaplen
    out.extend_from_slice(&101u32.to_le_bytes()); // LINKTYPE_RAW
    for (i, f) in frames.iter().enumerate() {
        let len = u32::try_from(f.len()).expect("small frame");
        out.extend_from_slice(&1_700_000_000u32.to_le_bytes());
        out.extend_from_slice(&u32::try_from(i * 1000).expect("few frames").to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(f);
    }
    out
}

/// A capture file in the temporary directory, removed when dropped,
/// whatever the outcome.
pub struct TempFile(pub PathBuf);

impl TempFile {
    /// The messages `(ppid, bytes)`, each in a packet of its own, written
    /// to a new capture file named after `prefix`.
    pub fn capture(prefix: &str, messages: &[(u32, Vec<u8>)]) -> TempFile {
        let frames: Vec<Vec<u8>> = messages
            .iter()
            .enumerate()
            .map(|(i, (ppid, m))| ip_sctp_packet(u32::try_from(i).expect("few"), *ppid, m))
            .collect();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let file = TempFile(
            std::env::temp_dir().join(format!("{prefix}-{}-{nanos}.pcap", std::process::id())),
        );
        std::fs::write(&file.0, pcap(&frames)).expect("write the capture file");
        file
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub fn tshark_binary() -> std::ffi::OsString {
    std::env::var_os("TSHARK").unwrap_or_else(|| "tshark".into())
}

/// Whether tshark can be run; skips `what` (or, under CI, fails) when it
/// cannot.
pub fn tshark_available(what: &str) -> bool {
    match Command::new(tshark_binary()).arg("--version").output() {
        Ok(o) if o.status.success() => true,
        result => {
            let why = match result {
                Err(e) if e.kind() == ErrorKind::NotFound => "tshark was not found".to_owned(),
                Err(e) => format!("tshark could not be run: {e}"),
                Ok(o) => format!("`tshark --version` failed: {}", o.status),
            };
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "{why}: {what} must run in CI (install Wireshark's tshark, \
                     or set TSHARK to its path)"
                );
            }
            eprintln!("note: {why}; skipping {what}");
            false
        }
    }
}

/// One `tshark -T fields` run over `file`: per packet, the values of
/// `columns`, each with all its occurrences in tree order.
pub fn fields(file: &Path, columns: &[String]) -> Vec<Vec<Vec<String>>> {
    let mut cmd = Command::new(tshark_binary());
    cmd.arg("-n")
        .arg("-r")
        .arg(file)
        .args(["-o", "sctp.checksum:CRC 32c"])
        .args(["-o", "ip.check_checksum:TRUE"])
        .args(["-T", "fields"])
        .args(["-E", "header=n", "-E", "separator=/t", "-E", "occurrence=a"])
        .args(["-E", "aggregator=|", "-E", "quote=n"]);
    for c in columns {
        cmd.args(["-e", c]);
    }
    let out = cmd.output().expect("run tshark");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tshark failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|line| {
            let values: Vec<&str> = line.split('\t').collect();
            assert_eq!(values.len(), columns.len(), "{line}");
            values
                .iter()
                .map(|v| {
                    if v.is_empty() {
                        Vec::new()
                    } else {
                        v.split('|').map(str::to_owned).collect()
                    }
                })
                .collect()
        })
        .collect()
}

/// tshark's full dissection of `file` with the bytes, for a failure
/// message.
pub fn verbose(file: &Path) -> String {
    Command::new(tshark_binary())
        .arg("-n")
        .arg("-r")
        .arg(file)
        .args(["-o", "sctp.checksum:CRC 32c", "-V", "-x"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}
