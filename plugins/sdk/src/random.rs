//! Draws from the run's seeded random stream (`runtime::random-u64`): the
//! same seed gives the same choices.

use crate::runtime;

/// A uniform index in `0..len`; `None` when `len` is 0 (and nothing is drawn).
///
/// Uses rejection sampling, not a plain `% len`: draws at or above the largest
/// multiple of `len` are discarded and drawn again, so every index is equally
/// likely. With `len` far below 2^64 a redraw is vanishingly rare, and the
/// result stays a pure function of the random stream.
pub fn index(len: usize) -> Option<usize> {
    if len == 0 {
        return None;
    }
    let n = len as u64;
    // The largest multiple of `n` that fits, as an exclusive bound.
    let limit = u64::MAX - (u64::MAX % n);
    loop {
        let draw = runtime::random_u64();
        if draw < limit {
            return Some((draw % n) as usize);
        }
    }
}

/// Pick one element uniformly at random, see [`index`].
pub fn pick<T>(items: &[T]) -> Option<&T> {
    index(items.len()).map(|i| &items[i])
}

/// A uniform number in `[0, 1)`, from the top 53 bits of one draw.
pub fn unit() -> f64 {
    (runtime::random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// True with probability `p` (clamped to `0..=1`). Always consumes exactly
/// one draw, so the stream stays aligned whatever `p` is.
pub fn chance(p: f64) -> bool {
    unit() < p.clamp(0.0, 1.0)
}
