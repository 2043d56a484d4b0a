//! ASAP decoding: never panics, and whatever decodes round-trips.
//!
//! For every input that `AsapMessage::decode` accepts:
//! * `to_bytes()` must succeed (a decoded message is always encodable);
//! * decoding those bytes must give the same message;
//! * encoding the re-decoded message must give identical bytes
//!   (the encoding is canonical).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rserpool_wire::AsapMessage;

fuzz_target!(|data: &[u8]| {
    let Ok(decoded) = AsapMessage::decode(data) else {
        return;
    };
    let original = decoded.message;
    let encoded = match original.to_bytes() {
        Ok(b) => b,
        Err(e) => panic!("encoding a decoded message failed: {e:?}\nmessage: {original:?}"),
    };
    let again = match AsapMessage::decode(&encoded) {
        Ok(d) => d.message,
        Err(e) => panic!(
            "re-decoding an encoded message failed: {e:?}\nmessage: {original:?}\nencoded: {encoded:02x?}"
        ),
    };
    assert_eq!(again, original, "decode(encode(m)) != m; encoded: {encoded:02x?}");
    let encoded_again = again
        .to_bytes()
        .expect("encoding the re-decoded message failed");
    assert_eq!(encoded_again, encoded, "encoding is not stable");
});
