//! What the fuzz targets share: the round trip of a decoded message, and
//! feeding a stream to a framer in chunks whose sizes come from the input.
// Each target uses one of the two.
#![allow(dead_code)]

use bytes::BytesMut;
use rserpool_wire::framing::FramingError;
use rserpool_wire::WireMessage;

/// Decoding never panics; whatever decodes encodes, decodes back to the
/// same message, and re-encodes to identical bytes (canonical encoding).
pub fn round_trip<M: WireMessage>(data: &[u8]) {
    let Ok(decoded) = M::decode(data) else {
        return;
    };
    let original = decoded.message;
    let encoded = match original.to_bytes() {
        Ok(b) => b,
        Err(e) => panic!("encoding a decoded message failed: {e:?}\nmessage: {original:?}"),
    };
    let again = match M::decode(&encoded) {
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
}

/// Feed a stream to a framer. Input layout: byte 0 selects how many
/// chunk-size bytes follow (`(data[0] & 7) + 1`); those give the sizes
/// (`b + 1`, cycled) of the chunks in which the rest is fed. After each
/// chunk `next_frame` is called until it needs more bytes (`Ok(None)`) or
/// fails (which ends the stream, as the connection would be closed). It
/// returns the bytes a frame consumed, which must be exactly what left the
/// buffer; need-more and errors must consume nothing; and at the end every
/// byte fed is in a frame or still buffered.
pub fn feed_in_chunks(
    data: &[u8],
    mut next_frame: impl FnMut(&mut BytesMut) -> Result<Option<usize>, FramingError>,
) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let nsizes = usize::from(first & 7) + 1;
    if rest.len() < nsizes {
        return;
    }
    let (sizes, stream) = rest.split_at(nsizes);
    let mut src = BytesMut::new();
    let (mut fed, mut framed, mut i, mut pos) = (0usize, 0usize, 0usize, 0usize);
    'feed: while pos < stream.len() {
        let size = usize::from(sizes[i % sizes.len()]) + 1;
        i += 1;
        let end = (pos + size).min(stream.len());
        src.extend_from_slice(&stream[pos..end]);
        fed += end - pos;
        pos = end;
        loop {
            let before = src.len();
            match next_frame(&mut src) {
                Ok(Some(consumed)) => {
                    assert_eq!(before, src.len() + consumed, "bytes lost or invented");
                    framed += consumed;
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
}
