//! A small seeded random source for sampling decisions (not for secrets).
//!
//! SplitMix64: tiny, fast, and fully determined by its seed, so scenarios
//! with a configured seed make the same choices on every run.

use std::hash::{BuildHasher, Hasher};

#[derive(Debug, Clone)]
pub struct SeededRandom {
    state: u64,
}

impl SeededRandom {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// Seeded from the host's entropy: std's `RandomState` keys come from
    /// WASI `random_get` on wasm32-wasip1 and from the OS natively.
    pub fn from_host_entropy() -> Self {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(0x5eed);
        Self::new(hasher.finish())
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        // 53 random mantissa bits.
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `percent / 100` (0 never, 100 always).
    pub fn chance(&mut self, percent: f64) -> bool {
        self.next_f64() * 100.0 < percent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let mut a = SeededRandom::new(42);
        let mut b = SeededRandom::new(42);
        let xs: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(SeededRandom::new(43).next_u64(), xs[0]);
    }

    #[test]
    fn chance_matches_the_percentage_over_many_draws() {
        let mut random = SeededRandom::new(7);
        let hits = (0..100_000).filter(|_| random.chance(30.0)).count();
        assert!((29_000..31_000).contains(&hits), "{hits}");
        assert!((0..1000).all(|_| !random.chance(0.0)));
        assert!((0..1000).all(|_| random.chance(100.0)));
    }

    #[test]
    fn floats_stay_in_the_unit_interval() {
        let mut random = SeededRandom::from_host_entropy();
        assert!(
            (0..10_000)
                .map(|_| random.next_f64())
                .all(|x| (0.0..1.0).contains(&x))
        );
    }
}
