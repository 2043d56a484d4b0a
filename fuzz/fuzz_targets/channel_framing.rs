//! Registrar-channel framing (`ChannelCodec`): never panics, frames are
//! well formed, and no byte is lost or invented (input layout and stream
//! checks: `common::feed_in_chunks`).
//!
//! Every frame must start with a header whose length field is between 4
//! and the configured maximum, must be exactly that length padded to a
//! multiple of 4, and is then decoded as ASAP (errors ignored).
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use rserpool_wire::framing::ChannelCodec;
use rserpool_wire::AsapMessage;

const MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let mut codec = ChannelCodec::new(MAX);
    assert_eq!(codec.max_message_len(), MAX);
    common::feed_in_chunks(data, |src| {
        let Some(frame) = codec.decode(src)? else {
            return Ok(None);
        };
        assert!(frame.len() >= 4, "frame shorter than a header: {frame:02x?}");
        let length = usize::from(u16::from_be_bytes([frame[2], frame[3]]));
        assert!(length >= 4, "frame with header length {length} < 4");
        assert!(length <= MAX, "frame with header length {length} > max {MAX}");
        assert_eq!(frame.len(), (length + 3) & !3, "frame size is not pad4(length)");
        let _ = AsapMessage::decode(&frame);
        Ok(Some(frame.len()))
    });
});
