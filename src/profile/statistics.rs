//! What a set of observed numbers (sizes, counts, TTLs, scores) says: mean and percentiles,
//! and the uniform range a plan draws from so that its mean is the observed mean.

/// Numbers observed for one measure of one stage.
#[derive(Debug, Clone, Default)]
pub(crate) struct Distribution {
    values: Vec<f64>,
    sorted: bool,
}

/// The figures of a [`Distribution`] a plan and its comments need.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Summary {
    /// Values observed.
    pub count: usize,
    /// Their mean.
    pub mean: f64,
    /// 5th percentile (nearest rank).
    pub p5: f64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
}

impl Distribution {
    /// Adds one observed value.
    pub(crate) fn push(&mut self, value: f64) {
        self.values.push(value);
        self.sorted = false;
    }

    /// Adds every value of `other`.
    pub(crate) fn merge(&mut self, other: &Distribution) {
        self.values.extend_from_slice(&other.values);
        self.sorted = false;
    }

    /// Mean, percentiles and count; `None` when nothing was observed.
    pub(crate) fn summary(&mut self) -> Option<Summary> {
        if self.values.is_empty() {
            return None;
        }
        if !self.sorted {
            self.values.sort_by(f64::total_cmp);
            self.sorted = true;
        }
        let count = self.values.len();
        let mean = self.values.iter().sum::<f64>() / count as f64;
        let rank =
            |p: f64| self.values[((p / 100.0 * count as f64).ceil() as usize).clamp(1, count) - 1];
        Some(Summary {
            count,
            mean,
            p5: rank(5.0),
            p50: rank(50.0),
            p95: rank(95.0),
            p99: rank(99.0),
        })
    }
}

/// The integer range `min..=max` a plan draws uniformly from, so that its mean
/// `(min + max) / 2` is the observed mean (to the nearest half): as wide as p5..p95 allows on
/// the side of the mean nearer to it (a skewed distribution gets a narrower, centred range,
/// never the mean of p5 and p95), and never below `floor`.
pub(crate) fn mean_preserving_range(summary: &Summary, floor: u64) -> (u64, u64) {
    let mean = summary.mean.max(floor as f64);
    let twice = (2.0 * mean).round() as u64;
    let half_width = (mean - summary.p5).min(summary.p95 - mean).max(0.0);
    let min = ((mean - half_width).round() as u64).max(floor);
    let max = twice.saturating_sub(min);
    if max < min {
        // The mean lies within a unit of the floor: the narrowest range around it.
        let min = (twice / 2).max(floor);
        return (min, twice.saturating_sub(min).max(min));
    }
    (min, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(values: &[f64]) -> Distribution {
        let mut d = Distribution::default();
        values.iter().for_each(|v| d.push(*v));
        d
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut d = of(&(1..=100).rev().map(f64::from).collect::<Vec<_>>());
        let s = d.summary().unwrap();
        assert_eq!(
            (s.count, s.p5, s.p50, s.p95, s.p99),
            (100, 5.0, 50.0, 95.0, 99.0)
        );
        assert_eq!(s.mean, 50.5);
        assert_eq!(of(&[]).summary(), None);
    }

    #[test]
    fn a_symmetric_distribution_keeps_p5_to_p95() {
        let s = of(&(1..=100).map(f64::from).collect::<Vec<_>>())
            .summary()
            .unwrap();
        assert_eq!(mean_preserving_range(&s, 1), (6, 95));
    }

    #[test]
    fn a_skewed_distribution_keeps_its_mean_not_its_p95() {
        // 90 values of 100 and 10 of 10,000: mean 1090, p5 100, p95 10,000.
        let mut values = vec![100.0; 90];
        values.extend([10_000.0; 10]);
        let s = of(&values).summary().unwrap();
        let (min, max) = mean_preserving_range(&s, 1);
        assert_eq!((min, max), (100, 2080));
        assert_eq!((min + max) as f64 / 2.0, s.mean);
    }

    #[test]
    fn a_range_never_goes_below_its_floor() {
        let s = of(&[1.0, 1.0, 1.0, 1.0]).summary().unwrap();
        assert_eq!(mean_preserving_range(&s, 1), (1, 1));
        let s = of(&[1.0, 2.0]).summary().unwrap();
        assert_eq!(mean_preserving_range(&s, 1), (1, 2));
        let s = of(&[3.0, 3.0]).summary().unwrap();
        assert_eq!(mean_preserving_range(&s, 6), (6, 6));
    }
}
