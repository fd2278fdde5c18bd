//! Splitting a series into container lifetimes.
//!
//! A leaking container that is OOM-killed and restarted gives a saw-tooth; one line through it
//! is meaningless, so growth is fitted within each lifetime. A lifetime ends at a known restart,
//! or at a sustained drop: a sample below `DROP_RATIO` × the *smallest* of the few samples before
//! it. Taking the smallest means a short spike that falls back does not end a lifetime (it was
//! never sustained), while a restart after growth does.

use super::Sample;

/// A sample this far below the recent floor starts a new lifetime.
pub const DROP_RATIO: f64 = 0.7;
/// How many preceding samples (of the same lifetime) make the "recent floor".
pub const DROP_LOOKBACK: usize = 6;

/// Index ranges `[start, end)` of container lifetimes: split at restarts and at sustained drops.
/// `samples` must be sorted by time; `restarts` are unix seconds in any order.
pub fn split_lifetimes(samples: &[Sample], restarts: &[i64]) -> Vec<(usize, usize)> {
    let mut sorted_restarts: Vec<i64> = restarts.to_vec();
    sorted_restarts.sort_unstable();
    let mut next_restart = 0;
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..samples.len() {
        let (prev, cur) = (samples[i - 1], samples[i]);
        while next_restart < sorted_restarts.len() && sorted_restarts[next_restart] <= prev.t {
            next_restart += 1;
        }
        let restarted = sorted_restarts
            .get(next_restart)
            .is_some_and(|&r| r > prev.t && r <= cur.t);
        let floor = samples[start.max(i.saturating_sub(DROP_LOOKBACK))..i]
            .iter()
            .map(|s| s.bytes)
            .fold(f64::INFINITY, f64::min);
        let dropped = floor > 0.0 && cur.bytes < floor * DROP_RATIO;
        if restarted || dropped {
            out.push((start, i));
            start = i;
        }
    }
    if start < samples.len() {
        out.push((start, samples.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(values: &[f64]) -> Vec<Sample> {
        values
            .iter()
            .enumerate()
            .map(|(i, &b)| Sample {
                t: i as i64 * 300,
                bytes: b,
            })
            .collect()
    }

    #[test]
    fn saw_tooth_splits_at_each_drop() {
        // Lifetimes of 12 samples growing 10 → 21; each drop is far below the recent floor.
        let values: Vec<f64> = (0..30).map(|i| 10.0 + (i % 12) as f64).collect();
        let s = series(&values);
        assert_eq!(split_lifetimes(&s, &[]), vec![(0, 12), (12, 24), (24, 30)]);
    }

    #[test]
    fn short_spike_is_not_a_restart() {
        let s = series(&[10.0, 10.0, 10.0, 40.0, 10.0, 10.0, 10.0]);
        assert_eq!(split_lifetimes(&s, &[]), vec![(0, 7)]);
    }

    #[test]
    fn known_restart_splits_without_drop() {
        let s = series(&[10.0, 10.0, 10.0, 10.0]);
        assert_eq!(split_lifetimes(&s, &[700]), vec![(0, 3), (3, 4)]);
        assert_eq!(split_lifetimes(&[], &[700]), Vec::<(usize, usize)>::new());
    }
}
