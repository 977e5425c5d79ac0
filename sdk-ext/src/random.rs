//! A small seeded random source for sampling decisions (not for secrets).
//!
//! SplitMix64 (rand_xoshiro's, the generator the harness's `random_get` uses
//! too): tiny, fast, and fully determined by its seed, so scenarios with a
//! configured seed make the same choices on every run.

use std::hash::{BuildHasher, Hasher};

use rand_xoshiro::SplitMix64;
use rand_xoshiro::rand_core::{Rng as _, SeedableRng as _};

#[derive(Debug, Clone)]
pub struct SeededRandom {
    generator: SplitMix64,
}

impl SeededRandom {
    pub fn new(seed: u64) -> Self {
        Self {
            generator: SplitMix64::seed_from_u64(seed),
        }
    }

    /// Seeded from the host's entropy: std's `RandomState` keys come from
    /// WASI `random_get` on wasm32-wasip1 and from the OS natively.
    pub fn from_host_entropy() -> Self {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(0x5eed);
        Self::new(hasher.finish())
    }

    pub fn next_u64(&mut self) -> u64 {
        self.generator.next_u64()
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

    /// The values the hand-written SplitMix64 this replaced gave for seed 42:
    /// configured seeds keep making the same choices.
    #[test]
    fn seed_42_gives_the_sequence_it_always_gave() {
        let mut random = SeededRandom::new(42);
        let first: Vec<u64> = (0..3).map(|_| random.next_u64()).collect();
        assert_eq!(
            first,
            [
                0xbdd7_3226_2feb_6e95,
                0x28ef_e333_b266_f103,
                0x4752_6757_130f_9f52
            ]
        );
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
