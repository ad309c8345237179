//! A fast hash that gives the same value for the same key in every process.
//!
//! Key groups are derived from it (`keygroup`), so two processes of one job, or a job and
//! the savepoint it restores from, must agree on it. `std`'s `DefaultHasher` is seeded
//! and may change between Rust releases, so Strom carries its own: FxHash-style mixing
//! of 64-bit words with integers widened to `u64` and bytes read little-endian (so the
//! result does not depend on the platform), finished with murmur3's `fmix64` so the low
//! bits used for `% max_parallelism` are well spread.

use std::hash::{BuildHasher, Hash, Hasher};

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// The stable hasher. See the module docs.
#[derive(Clone, Copy, Debug, Default)]
pub struct StableHasher {
    state: u64,
}

impl StableHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.state = (self.state.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

/// murmur3's 64-bit finaliser: every input bit affects every output bit.
#[inline]
pub fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

impl Hasher for StableHasher {
    #[inline]
    fn finish(&self) -> u64 {
        fmix64(self.state)
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            // The length tag keeps "ab" and "ab\0" apart.
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 56));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_u128(&mut self, i: u128) {
        self.add(i as u64);
        self.add((i >> 64) as u64);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn write_i8(&mut self, i: i8) {
        self.add(i as u64);
    }
    #[inline]
    fn write_i16(&mut self, i: i16) {
        self.add(i as u64);
    }
    #[inline]
    fn write_i32(&mut self, i: i32) {
        self.add(i as u64);
    }
    #[inline]
    fn write_i64(&mut self, i: i64) {
        self.add(i as u64);
    }
    #[inline]
    fn write_i128(&mut self, i: i128) {
        self.write_u128(i as u128);
    }
    #[inline]
    fn write_isize(&mut self, i: isize) {
        self.add(i as u64);
    }
}

/// Builds [`StableHasher`]s; use it for in-memory maps that want the same speed.
#[derive(Clone, Copy, Debug, Default)]
pub struct BuildStableHasher;

impl BuildHasher for BuildStableHasher {
    type Hasher = StableHasher;
    #[inline]
    fn build_hasher(&self) -> StableHasher {
        StableHasher::default()
    }
}

/// The stable hash of a value.
#[inline]
pub fn stable_hash<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut h = StableHasher::default();
    value.hash(&mut h);
    h.finish()
}

/// Combines a key hash with a namespace hash (window state is keyed by key and window).
#[inline]
pub fn combine(key_hash: u64, namespace_hash: u64) -> u64 {
    fmix64(key_hash ^ namespace_hash.rotate_left(32).wrapping_mul(SEED))
}

/// A `HashMap` with the stable hasher.
pub type StableHashMap<K, V> = hashbrown::HashMap<K, V, BuildStableHasher>;
/// A `HashSet` with the stable hasher.
pub type StableHashSet<K> = hashbrown::HashSet<K, BuildStableHasher>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_fixed_values() {
        // These numbers are part of the savepoint format: key groups depend on them.
        // If this test fails, existing savepoints would restore keys into wrong groups.
        assert_eq!(stable_hash(&42u64), 0x2558_5839_4b61_ab76);
        assert_eq!(stable_hash("sensor_1"), 0x9825_e80b_ec12_cb1a);
        assert_eq!(stable_hash(&("a".to_string(), 7i32)), 0x7622_ef0c_49b3_5cd3);
    }

    #[test]
    fn integer_widths_agree_with_their_value() {
        assert_eq!(stable_hash(&7u32), stable_hash(&7u64));
        assert_eq!(stable_hash(&7usize), stable_hash(&7u64));
    }

    #[test]
    fn string_prefixes_differ() {
        assert_ne!(stable_hash("ab"), stable_hash("ab\0"));
        assert_ne!(stable_hash("abcdefgh"), stable_hash("abcdefgh\0"));
    }
}
