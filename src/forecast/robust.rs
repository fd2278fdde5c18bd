//! Robust statistics used by the fit: medians by selection (linear time), MAD, Theil–Sen.
//!
//! Everything here is linear or works on a bounded number of points, so that `fit` stays in
//! budget (a 4,000-sample history in well under 200 µs).

use super::Sample;

/// Scale factor that turns a median absolute deviation into a standard deviation for normal noise.
pub const MAD_TO_SIGMA: f64 = 1.4826;

/// Median of `values`, reordering them (selection, not a sort). Empty gives 0.
pub fn median_in_place(values: &mut [f64]) -> f64 {
    let n = values.len();
    if n == 0 {
        return 0.0;
    }
    let (lo_part, mid, _) = values.select_nth_unstable_by(n / 2, f64::total_cmp);
    let mid = *mid;
    if n % 2 == 1 {
        mid
    } else {
        // The lower middle is the largest value of the lower part.
        let lower = lo_part.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lower + mid) / 2.0
    }
}

/// Value at rank `k` (0-based) of `values`, reordering them.
pub fn select_in_place(values: &mut [f64], k: usize) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let k = k.min(values.len() - 1);
    *values.select_nth_unstable_by(k, f64::total_cmp).1
}

/// A robust line `y = level + slope * (t - at)`, with a rank-based interval for the slope.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line {
    pub slope: f64,
    pub slope_low: f64,
    pub slope_high: f64,
    /// Value of the line at `at`.
    pub level: f64,
    pub at: i64,
}

impl Line {
    pub fn value_at(&self, t: i64) -> f64 {
        self.level + self.slope * (t - self.at) as f64
    }
}

/// Theil–Sen line through `pts` (at most a few hundred points: pairwise slopes are quadratic),
/// anchored at `at`. The slope interval is Sen's (1968) distribution-free ~95% interval: ranks
/// `(N ∓ z·sqrt(Var S))/2` of the `N` pairwise slopes, `Var S = n(n−1)(2n+5)/18`.
/// The level is the median of `y − slope·(t − at)`.
pub fn theil_sen(pts: &[Sample], at: i64, scratch: &mut Vec<f64>) -> Line {
    scratch.clear();
    for (i, a) in pts.iter().enumerate() {
        for b in &pts[i + 1..] {
            let dt = (b.t - a.t) as f64;
            if dt > 0.0 {
                scratch.push((b.bytes - a.bytes) / dt);
            }
        }
    }
    if scratch.is_empty() {
        let mut ys: Vec<f64> = pts.iter().map(|s| s.bytes).collect();
        let level = median_in_place(&mut ys);
        return Line {
            slope: 0.0,
            slope_low: 0.0,
            slope_high: 0.0,
            level,
            at,
        };
    }
    let m = scratch.len();
    let n = pts.len() as f64;
    let c = 1.96 * (n * (n - 1.0) * (2.0 * n + 5.0) / 18.0).sqrt();
    let lo_rank = ((m as f64 - c) / 2.0).floor().max(0.0) as usize;
    let hi_rank = (((m as f64 + c) / 2.0).ceil() as usize).min(m - 1);
    let slope = median_in_place(scratch);
    let slope_low = select_in_place(scratch, lo_rank);
    let slope_high = select_in_place(scratch, hi_rank);
    scratch.clear();
    scratch.extend(pts.iter().map(|s| s.bytes - slope * (s.t - at) as f64));
    let level = median_in_place(scratch);
    Line {
        slope,
        slope_low,
        slope_high,
        level,
        at,
    }
}

/// Reduces `seg` to at most `max_points` points: the median value of each run of consecutive
/// samples at the median time of the run. Medians keep single spikes from moving the fit.
pub fn bin_medians(seg: &[Sample], max_points: usize, scratch: &mut Vec<f64>) -> Vec<Sample> {
    if seg.len() <= max_points || max_points == 0 {
        return seg.to_vec();
    }
    let size = seg.len().div_ceil(max_points);
    seg.chunks(size)
        .map(|chunk| {
            scratch.clear();
            scratch.extend(chunk.iter().map(|s| s.bytes));
            Sample {
                t: chunk[chunk.len() / 2].t,
                bytes: median_in_place(scratch),
            }
        })
        .collect()
}

/// Robust spread (MAD × 1.4826) of the residuals of `seg` around `line`.
pub fn residual_sigma(seg: &[Sample], line: &Line, scratch: &mut Vec<f64>) -> f64 {
    scratch.clear();
    scratch.extend(seg.iter().map(|s| (s.bytes - line.value_at(s.t)).abs()));
    median_in_place(scratch) * MAD_TO_SIGMA
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_pts(n: usize, slope: f64, base: f64) -> Vec<Sample> {
        (0..n)
            .map(|i| Sample {
                t: i as i64 * 300,
                bytes: base + slope * (i as f64 * 300.0),
            })
            .collect()
    }

    #[test]
    fn medians_by_selection() {
        assert_eq!(median_in_place(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median_in_place(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median_in_place(&mut []), 0.0);
        assert_eq!(select_in_place(&mut [5.0, 1.0, 4.0], 2), 5.0);
    }

    #[test]
    fn theil_sen_ignores_outliers() {
        let mut pts = line_pts(30, 2.0, 100.0);
        pts[5].bytes += 1e6;
        pts[17].bytes -= 1e6;
        let line = theil_sen(&pts, pts[29].t, &mut Vec::new());
        assert!((line.slope - 2.0).abs() < 1e-9, "{line:?}");
        assert!((line.level - (100.0 + 2.0 * 29.0 * 300.0)).abs() < 1e-6);
        assert!(line.slope_low <= line.slope && line.slope <= line.slope_high);
    }

    #[test]
    fn bins_keep_line_and_drop_spikes() {
        let mut pts = line_pts(1000, 1.0, 0.0);
        pts[500].bytes = 1e12;
        let bins = bin_medians(&pts, 50, &mut Vec::new());
        assert_eq!(bins.len(), 50);
        assert!(bins.iter().all(|b| b.bytes < 1e9));
    }
}
