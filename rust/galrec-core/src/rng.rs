//! A counter-based random generator: every (seed, epoch, hop, side, node) owns an independent
//! stream, so a node's sample never depends on which thread draws it or what else is in the
//! batch.

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// The SplitMix64 finaliser: a bijective 64-bit mixer with full avalanche.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The key shared by all nodes of one hop of one sampling call; combine with a node id
/// through [`HopKey::stream`].
#[derive(Clone, Copy, Debug)]
pub struct HopKey(u64);

impl HopKey {
    /// Derives the key of hop `hop` (0-based) whose parents are on `side` (0 users, 1 items).
    pub fn new(seed: u64, epoch: u64, hop: u32, side: u32) -> Self {
        let mut k = mix64(seed ^ 0x6a09_e667_f3bc_c908);
        k = mix64(k ^ epoch.wrapping_mul(GOLDEN));
        k = mix64(k ^ ((u64::from(hop) << 1) | u64::from(side)).wrapping_add(GOLDEN));
        Self(k)
    }

    /// The random stream of `node` at this hop.
    #[inline]
    pub fn stream(self, node: u32) -> NodeRng {
        NodeRng {
            key: mix64(self.0 ^ mix64(u64::from(node).wrapping_add(0x3c6e_f372_fe94_f82b))),
            counter: 0,
            spare: None,
        }
    }
}

/// The stream of one node: output `i` is `mix64(key + i * golden)` (SplitMix64 from `key`).
/// Draws below 2^32 use one half of an output each, so one mix serves two draws.
#[derive(Clone, Debug)]
pub struct NodeRng {
    key: u64,
    counter: u64,
    spare: Option<u32>,
}

impl NodeRng {
    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.counter = self.counter.wrapping_add(1);
        mix64(self.key.wrapping_add(self.counter.wrapping_mul(GOLDEN)))
    }

    /// The next 32 random bits (the halves of one 64-bit output in turn).
    #[inline]
    pub fn next_u32(&mut self) -> u32 {
        if let Some(half) = self.spare.take() {
            return half;
        }
        let x = self.next_u64();
        self.spare = Some((x >> 32) as u32);
        x as u32
    }

    /// A uniform integer in `0..n` (`n > 0`), unbiased (Lemire's multiply-and-reject).
    // Always inlined: it sits in the sampler's innermost loop and the compiler otherwise
    // keeps it out of line because of the (rarely taken) rejection loop.
    #[inline(always)]
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        if let Ok(n32) = u32::try_from(n) {
            let mut m = u64::from(self.next_u32()) * n;
            if (m as u32) < n32 {
                let threshold = n32.wrapping_neg() % n32;
                while (m as u32) < threshold {
                    m = u64::from(self.next_u32()) * n;
                }
            }
            return m >> 32;
        }
        let mut m = u128::from(self.next_u64()) * u128::from(n);
        if (m as u64) < n {
            let threshold = n.wrapping_neg() % n;
            while (m as u64) < threshold {
                m = u128::from(self.next_u64()) * u128::from(n);
            }
        }
        (m >> 64) as u64
    }

    /// A uniform float in `(0, 1]`, never zero so its logarithm is finite.
    #[inline]
    pub fn unit_open(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_draws(key: HopKey, node: u32) -> Vec<u64> {
        let mut rng = key.stream(node);
        (0..4).map(|_| rng.next_u64()).collect()
    }

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let key = HopKey::new(7, 1, 0, 0);
        assert_eq!(first_draws(key, 3), first_draws(key, 3));
        assert_ne!(first_draws(key, 3), first_draws(key, 4));
        assert_ne!(first_draws(key, 3), first_draws(HopKey::new(7, 2, 0, 0), 3));
        assert_ne!(first_draws(key, 3), first_draws(HopKey::new(7, 1, 1, 0), 3));
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = HopKey::new(1, 0, 0, 0).stream(0);
        let mut seen = [0u32; 7];
        for _ in 0..7000 {
            let x = rng.below(7);
            assert!(x < 7);
            seen[x as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800 && c < 1200), "{seen:?}");
        let big = 3u64 << 40;
        assert!((0..1000).all(|_| rng.below(big) < big));
        assert!((0..1000).any(|_| rng.below(big) > u64::from(u32::MAX)));
    }

    #[test]
    fn unit_open_is_in_half_open_interval() {
        let mut rng = HopKey::new(2, 0, 0, 0).stream(9);
        for _ in 0..10_000 {
            let u = rng.unit_open();
            assert!(u > 0.0 && u <= 1.0);
        }
    }
}
