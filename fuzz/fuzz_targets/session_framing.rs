//! PU <-> PE session framing (`SessionCodec`): never panics, frames are
//! well formed, and no byte is lost or invented.
//!
//! Input layout: byte 0 selects how many chunk-size bytes follow
//! (`(data[0] & 7) + 1`); those bytes give the sizes (`b + 1`, cycled) of the
//! chunks in which the rest of the input is fed to the codec. After each
//! chunk the codec is drained until it asks for more bytes or fails; a
//! failure ends the stream (the connection would be closed).
//!
//! Every frame's payload must be at most the configured maximum and must
//! match the length in the 8-byte header it was cut from; every payload is
//! decoded as ASAP (errors ignored; only ppid 11 is ASAP on the wire, but
//! decoding the rest too costs nothing and widens the search).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rserpool_wire::framing::{SessionCodec, PPID_ASAP};
use rserpool_wire::AsapMessage;

const MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let nsizes = usize::from(first & 7) + 1;
    if rest.len() < nsizes {
        return;
    }
    let (sizes, stream) = rest.split_at(nsizes);

    let mut codec = SessionCodec::new(MAX);
    let mut src = BytesMut::new();
    let mut fed = 0usize;
    let mut framed = 0usize;
    let mut i = 0usize;
    let mut pos = 0usize;
    'feed: while pos < stream.len() {
        let size = usize::from(sizes[i % sizes.len()]) + 1;
        i += 1;
        let end = (pos + size).min(stream.len());
        src.extend_from_slice(&stream[pos..end]);
        fed += end - pos;
        pos = end;
        loop {
            let before = src.len();
            let header: Option<[u8; 8]> = src.get(..8).map(|h| h.try_into().unwrap());
            match codec.decode(&mut src) {
                Ok(Some(frame)) => {
                    let h = header.expect("a frame without an 8-byte header");
                    let ppid = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
                    let length = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
                    assert_eq!(frame.ppid, ppid, "ppid differs from the header");
                    assert_eq!(frame.payload.len(), length, "payload differs from header length");
                    assert!(length <= MAX, "payload length {length} > max {MAX}");
                    assert_eq!(frame.is_control(), ppid == PPID_ASAP);
                    assert_eq!(
                        before,
                        src.len() + SessionCodec::HEADER_LEN + length,
                        "bytes lost or invented"
                    );
                    framed += SessionCodec::HEADER_LEN + length;
                    let _ = AsapMessage::decode(&frame.payload);
                }
                Ok(None) => {
                    assert_eq!(before, src.len(), "need-more consumed bytes");
                    break;
                }
                Err(_) => {
                    assert_eq!(before, src.len(), "error consumed bytes");
                    break 'feed;
                }
            }
        }
    }
    assert_eq!(fed, framed + src.len(), "bytes lost or invented");
});
