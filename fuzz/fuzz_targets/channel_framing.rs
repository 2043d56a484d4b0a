//! Registrar-channel framing (`ChannelCodec`): never panics, frames are
//! well formed, and no byte is lost or invented.
//!
//! Input layout: byte 0 selects how many chunk-size bytes follow
//! (`(data[0] & 7) + 1`); those bytes give the sizes (`b + 1`, cycled) of the
//! chunks in which the rest of the input is fed to the codec. After each
//! chunk the codec is drained until it asks for more bytes or fails; a
//! failure ends the stream (the connection would be closed).
//!
//! Every frame must start with a header whose length field is between 4
//! and the configured maximum, must be exactly that length padded to a
//! multiple of 4, and is then decoded as ASAP (errors ignored).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rserpool_wire::framing::ChannelCodec;
use rserpool_wire::AsapMessage;

const MAX: usize = 4096;

fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let nsizes = usize::from(first & 7) + 1;
    if rest.len() < nsizes {
        return;
    }
    let (sizes, stream) = rest.split_at(nsizes);

    let mut codec = ChannelCodec::new(MAX);
    assert_eq!(codec.max_message_len(), MAX);
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
            match codec.decode(&mut src) {
                Ok(Some(frame)) => {
                    assert!(frame.len() >= 4, "frame shorter than a header: {frame:02x?}");
                    let length = usize::from(u16::from_be_bytes([frame[2], frame[3]]));
                    assert!(length >= 4, "frame with header length {length} < 4");
                    assert!(length <= MAX, "frame with header length {length} > max {MAX}");
                    assert_eq!(frame.len(), pad4(length), "frame size is not pad4(length)");
                    assert_eq!(before, src.len() + frame.len(), "bytes lost or invented");
                    framed += frame.len();
                    let _ = AsapMessage::decode(&frame);
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
