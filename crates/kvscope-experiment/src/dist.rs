//! Distributions: one number hides the story, so tables carry percentiles.
//!
//! One convention everywhere (lab, simulator, bench): linear interpolation
//! between the closest ranks, numpy's default and what vLLM's benchmarks
//! report, so a p99 here compares with a p99 there.
//!
//! A tail needs values to stand on: below [`P99_MIN_VALUES`] a table shows
//! the maximum and the count instead of the p99 ([`Dist::p99_is_meaningful`]).

use serde::Serialize;

/// The fewest values whose p99 a table shows. Interpolated between closest
/// ranks, the p99 of n ≤ 100 values is max − 0.01·(n − 1)·(max − the
/// second largest): over 5 values, the maximum less 4 % of the top gap,
/// the maximum under another name. Below 20 values tables say "max (n)".
pub const P99_MIN_VALUES: usize = 20;

#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct Dist {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    /// How many values the figures come from.
    pub n: usize,
}

impl Dist {
    /// Mean, percentiles and maximum of the finite `values` (all zero when
    /// there are none).
    pub fn of(values: impl IntoIterator<Item = f64>) -> Dist {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Dist::default();
        }
        v.sort_by(f64::total_cmp);
        Dist {
            mean: v.iter().sum::<f64>() / v.len() as f64,
            p50: percentile_of_sorted(&v, 50.0),
            p90: percentile_of_sorted(&v, 90.0),
            p99: percentile_of_sorted(&v, 99.0),
            max: *v.last().expect("non-empty"),
            n: v.len(),
        }
    }

    /// Whether there are enough values for the p99 to say more than the
    /// maximum (see [`P99_MIN_VALUES`]).
    pub fn p99_is_meaningful(&self) -> bool {
        self.n >= P99_MIN_VALUES
    }

    /// Every figure multiplied by `factor` (seconds to milliseconds).
    pub fn scaled(self, factor: f64) -> Dist {
        Dist {
            mean: self.mean * factor,
            p50: self.p50 * factor,
            p90: self.p90 * factor,
            p99: self.p99 * factor,
            max: self.max * factor,
            n: self.n,
        }
    }
}

/// The `p`-th percentile (0..=100) of ascending `sorted` values, linearly
/// interpolated between the closest ranks; 0 when empty.
pub fn percentile_of_sorted(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = p.clamp(0.0, 100.0) / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_like_numpy() {
        let d = Dist::of((1..=10).map(f64::from));
        // numpy.percentile(range(1, 11), [50, 90, 99]) = 5.5, 9.1, 9.91
        assert!((d.p50 - 5.5).abs() < 1e-12);
        assert!((d.p90 - 9.1).abs() < 1e-12);
        assert!((d.p99 - 9.91).abs() < 1e-12);
        assert_eq!((d.max, d.mean, d.n), (10.0, 5.5, 10));
        assert_eq!(Dist::of([]), Dist::default());
        assert!((Dist::of([3.0, 1.0, 2.0, 4.0]).p90 - 3.7).abs() < 1e-12, "any order");
    }

    #[test]
    fn a_p99_needs_twenty_values() {
        // Five TTFTs: the "p99" is the maximum less 4 % of the top gap.
        let five = Dist::of([1.0, 2.0, 3.0, 4.0, 14.0]);
        assert!((five.p99 - 13.6).abs() < 1e-12 && !five.p99_is_meaningful());
        assert!(!Dist::of((1..20).map(f64::from)).p99_is_meaningful());
        assert!(Dist::of((1..=20).map(f64::from)).p99_is_meaningful());
    }
}
