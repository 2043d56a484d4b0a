//! The PE checksum of RFC 5353 section 3.6.2: the RFC 1071 Internet sum
//! over one byte block per PE (pool handle padded to a 32-bit boundary,
//! then the PE identifier), kept per owner and updated incrementally as
//! the implementation note of that section suggests.
//!
//! The running value is the 32-bit sum of 16-bit big-endian words; the
//! checksum is its folded one's complement. Removing a PE subtracts its
//! block, which in one's complement arithmetic is adding its complement.

use rserpool_wire::{PeId, PoolHandle};

/// A running RFC 1071 sum that PEs are added to and removed from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeChecksum {
    /// One's complement sum of all blocks, folded to 16 bits.
    sum: u16,
    /// Blocks with a non-zero word. One's complement has two zeros; the
    /// RFC 1071 sum from scratch is 0x0000 only when every word is zero,
    /// which removal by complement cannot tell from 0xffff without this.
    nonzero: u64,
}

/// One's complement 16-bit addition.
fn add(a: u16, b: u16) -> u16 {
    let s = u32::from(a) + u32::from(b);
    ((s & 0xffff) + (s >> 16)) as u16
}

/// The folded one's complement sum of a pool handle padded with zeros to
/// a 32-bit boundary: the part of a PE's block that its pool fixes (a
/// pool keeps it, so that accounting a PE sums two words, not the handle).
pub fn handle_sum(handle: &PoolHandle) -> u16 {
    let mut s = 0u16;
    for c in handle.as_bytes().chunks(2) {
        let w = u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]);
        s = add(s, w);
    }
    s
}

/// The folded sum of a PE's block from its pool's [`handle_sum`]. The
/// handle is padded to a 32-bit boundary, so the PE identifier always
/// starts on an even offset: its words add as they are.
pub fn block_sum_with(handle_sum: u16, identifier: PeId) -> u16 {
    let identifier = identifier.get();
    add(
        add(handle_sum, (identifier >> 16) as u16),
        identifier as u16,
    )
}

/// The folded one's complement sum of the byte block of one PE.
pub fn block_sum(handle: &PoolHandle, identifier: PeId) -> u16 {
    block_sum_with(handle_sum(handle), identifier)
}

impl PeChecksum {
    /// Account a PE.
    pub fn add(&mut self, handle: &PoolHandle, identifier: PeId) {
        self.add_block(block_sum(handle, identifier));
    }

    /// Remove a PE accounted before.
    pub fn remove(&mut self, handle: &PoolHandle, identifier: PeId) {
        self.remove_block(block_sum(handle, identifier));
    }

    /// Account a PE by its block's sum ([`block_sum_with`]).
    pub fn add_block(&mut self, b: u16) {
        self.sum = add(self.sum, b);
        self.nonzero += u64::from(b != 0);
    }

    /// Remove a PE accounted before, by its block's sum.
    pub fn remove_block(&mut self, b: u16) {
        self.sum = add(self.sum, !b);
        self.nonzero = self.nonzero.saturating_sub(u64::from(b != 0));
    }

    /// The 16-bit checksum to send (RFC 1071: the complement of the sum).
    /// The value is written in network byte order, as RSPLIB does.
    pub fn value(&self) -> u16 {
        match (self.nonzero, self.sum) {
            (0, _) => 0xffff,
            (_, 0) => 0,
            (_, s) => !s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checksum straight from RFC 1071 over the concatenated blocks.
    fn reference(pes: &[(&str, u32)]) -> u16 {
        let mut bytes = Vec::new();
        for (h, id) in pes {
            bytes.extend_from_slice(h.as_bytes());
            while bytes.len() % 4 != 0 {
                bytes.push(0);
            }
            bytes.extend_from_slice(&id.to_be_bytes());
        }
        let mut sum = 0u32;
        for c in bytes.chunks(2) {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    #[test]
    fn incremental_equals_recomputed() {
        let pes = [
            ("echo", 1u32),
            ("abc", 0xdead_beef),
            ("x", 7),
            ("daytime-pool", 0xffff_ffff),
        ];
        let mut c = PeChecksum::default();
        for (h, id) in pes {
            c.add(&PoolHandle::from_static(h), PeId::new(id));
        }
        assert_eq!(c.value(), reference(&pes));
        c.remove(&PoolHandle::from_static("abc"), PeId::new(0xdead_beef));
        assert_eq!(c.value(), reference(&[pes[0], pes[2], pes[3]]));
        for (h, id) in [pes[0], pes[2], pes[3]] {
            c.remove(&PoolHandle::from_static(h), PeId::new(id));
        }
        assert_eq!(c.value(), reference(&[]));
    }
}
