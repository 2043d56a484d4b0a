//! The hash of the connection index: connection identifiers are handed
//! out by a counter (the driver numbers its associations), so PEs that
//! register one after the other have neighbouring keys. A general hash
//! scatters them over the whole table, one cache miss per registration
//! in a large handlespace; this one keeps each block of 8 neighbouring
//! keys in 8 neighbouring buckets (one or two cache lines) and scatters
//! the blocks with a full 64-bit mix, so that keys of any pattern still
//! spread (at most 8 keys share a block, whatever the keys).
//!
//! Deterministic: no random seed (the handlespace never seeds anything
//! itself).

use std::hash::{BuildHasher, Hasher};

/// Keys per block of neighbouring buckets, as a shift.
const BLOCK_BITS: u32 = 3;

/// Builds [`BlockHasher`]s.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BlockBuild;

impl BuildHasher for BlockBuild {
    type Hasher = BlockHasher;
    fn build_hasher(&self) -> BlockHasher {
        BlockHasher(0)
    }
}

/// Hashes one `u64` (other input is folded in, for completeness).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockHasher(u64);

/// A full avalanche of 64 bits (the splitmix64 finaliser).
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Hasher for BlockHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = mix(self.0 ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, k: u64) {
        self.0 ^= k;
    }

    fn finish(&self) -> u64 {
        let k = self.0;
        let low = (1 << BLOCK_BITS) - 1;
        // The table takes the bucket from the low bits and a 7-bit tag,
        // compared first, from the top bits: the keys of a block share
        // their bucket run but must not share their tag (each lookup
        // would compare all 8 keys).
        let bucket = (mix(k >> BLOCK_BITS) << BLOCK_BITS) | (k & low);
        bucket ^ ((k & low) << 57)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(k: u64) -> u64 {
        BlockBuild.hash_one(k)
    }

    #[test]
    fn neighbours_stay_together_and_blocks_spread() {
        // Keys 8b..8b+7 share their bucket run and differ in their tag
        // (the top 7 bits).
        let run = |h: u64| (h & ((1 << 57) - 1)) >> BLOCK_BITS;
        let tags: std::collections::BTreeSet<u64> = (8..16).map(|k| hash(k) >> 57).collect();
        assert_eq!(tags.len(), 8);
        for k in 8..16 {
            assert_eq!(run(hash(k)), run(hash(8)));
            assert_eq!(hash(k) & 7, k & 7);
        }
        // Keys that differ only in high bits land in different places.
        let spread: std::collections::BTreeSet<u64> =
            (0..64u64).map(|i| hash(i << 40) & 0xfff).collect();
        assert!(spread.len() > 56, "{} distinct of 64", spread.len());
    }
}
