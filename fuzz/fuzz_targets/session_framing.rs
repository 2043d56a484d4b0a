//! PU <-> PE session framing (`SessionCodec`): never panics, frames are
//! well formed, and no byte is lost or invented (input layout and stream
//! checks: `common::feed_in_chunks`).
//!
//! Every frame's payload must be at most the configured maximum and must
//! match the length in the 8-byte header it was cut from; every payload is
//! decoded as ASAP (errors ignored; only ppid 11 is ASAP on the wire, but
//! decoding the rest too costs nothing and widens the search).
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use rserpool_wire::framing::{SessionCodec, PPID_ASAP};
use rserpool_wire::AsapMessage;

const MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let mut codec = SessionCodec::new(MAX);
    common::feed_in_chunks(data, |src| {
        let header: Option<[u8; 8]> = src.get(..8).and_then(|h| h.try_into().ok());
        let Some(frame) = codec.decode(src)? else {
            return Ok(None);
        };
        let h = header.expect("a frame without an 8-byte header");
        let ppid = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
        let length = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
        assert_eq!(frame.ppid, ppid, "ppid differs from the header");
        assert_eq!(frame.payload.len(), length, "payload differs from header length");
        assert!(length <= MAX, "payload length {length} > max {MAX}");
        assert_eq!(frame.is_control(), ppid == PPID_ASAP);
        let _ = AsapMessage::decode(&frame.payload);
        Ok(Some(SessionCodec::HEADER_LEN + length))
    });
});
