//! `java.util.Random`, bit for bit: the Nexmark rules draw every field of an event from a
//! `Random` seeded with the event's id, and Flink's side of the comparison uses the JDK's
//! own class, so this port must produce exactly the same numbers.

/// Java's 48-bit linear congruential generator (`java.util.Random`).
pub struct JavaRandom {
    seed: u64,
}

const MULTIPLIER: u64 = 0x5_DEEC_E66D;
const ADDEND: u64 = 0xB;
const MASK: u64 = (1 << 48) - 1;

impl JavaRandom {
    /// `new Random(seed)`.
    pub fn new(seed: i64) -> Self {
        JavaRandom {
            seed: (seed as u64 ^ MULTIPLIER) & MASK,
        }
    }

    /// `next(bits)`: the top `bits` bits of the next state, as Java's signed int.
    #[inline]
    fn next(&mut self, bits: u32) -> i32 {
        self.seed = self.seed.wrapping_mul(MULTIPLIER).wrapping_add(ADDEND) & MASK;
        (self.seed >> (48 - bits)) as i32
    }

    /// `nextInt()`.
    #[inline]
    pub fn next_int(&mut self) -> i32 {
        self.next(32)
    }

    /// `nextInt(bound)`: uniform in `0..bound`, with Java's rejection of the biased tail.
    #[inline]
    pub fn next_int_bounded(&mut self, bound: i32) -> i32 {
        debug_assert!(bound > 0, "bound must be positive");
        let mut r = self.next(31);
        let m = bound - 1;
        if bound & m == 0 {
            return ((bound as i64 * r as i64) >> 31) as i32;
        }
        let mut u = r;
        loop {
            r = u % bound;
            // Java's `u - r + m < 0`: the addition overflows exactly when `u` lies in the
            // incomplete last block of `bound` values.
            if u.wrapping_sub(r).wrapping_add(m) >= 0 {
                return r;
            }
            u = self.next(31);
        }
    }

    /// `nextLong()`.
    #[inline]
    pub fn next_long(&mut self) -> i64 {
        ((self.next(32) as i64) << 32).wrapping_add(self.next(32) as i64)
    }

    /// `nextDouble()`: uniform in `[0, 1)` with 53 random bits.
    #[inline]
    pub fn next_double(&mut self) -> f64 {
        let hi = self.next(26) as i64;
        let lo = self.next(27) as i64;
        ((hi << 27) + lo) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Values printed by OpenJDK 17.0.15 for
    // `Random r = new Random(42); r.nextInt(); r.nextInt(10); r.nextInt(1 << 20);
    //  r.nextLong(); r.nextDouble(); r.nextInt(1_000_000_007)`.
    #[test]
    fn matches_the_jdk() {
        let mut r = JavaRandom::new(42);
        assert_eq!(r.next_int(), -1_170_105_035);
        assert_eq!(r.next_int_bounded(10), 3);
        assert_eq!(r.next_int_bounded(1 << 20), 716_411);
        assert_eq!(r.next_long(), 884_324_181_205_335_268);
        assert_eq!(r.next_double(), 0.9420735430282128);
        assert_eq!(r.next_int_bounded(1_000_000_007), 519_796_911);
    }
}
