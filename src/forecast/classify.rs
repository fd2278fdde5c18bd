//! Shape features used to name the pattern: level shifts, daily cycles, spikes.

use super::robust::{median_in_place, Line};
use super::Sample;

/// A step must leave at least this many bins on each side.
const SHIFT_MIN_SIDE: usize = 3;
/// A step must explain the series this much better than a line (ratio of absolute deviations).
const SHIFT_SAD_RATIO: f64 = 0.5;
/// A step must be at least this share of the higher level, and this many times the deviation
/// left around the two levels.
const SHIFT_MIN_FRACTION: f64 = 0.1;
const SHIFT_MIN_NOISE_MULT: f64 = 4.0;

/// Best single change point in `bins` (bin medians, time order) if a step fits them much better
/// than the line `line` does. Returns the index of the first bin of the new level.
pub fn level_shift(bins: &[Sample], line: &Line, scratch: &mut Vec<f64>) -> Option<usize> {
    let m = bins.len();
    if m < 2 * SHIFT_MIN_SIDE {
        return None;
    }
    let line_sad: f64 = bins
        .iter()
        .map(|b| (b.bytes - line.value_at(b.t)).abs())
        .sum();
    let mut sad_of = |part: &[Sample]| -> (f64, f64) {
        scratch.clear();
        scratch.extend(part.iter().map(|s| s.bytes));
        let med = median_in_place(scratch);
        (med, part.iter().map(|s| (s.bytes - med).abs()).sum())
    };
    // (split index, total absolute deviation, left level, right level)
    let mut best: Option<(usize, f64, f64, f64)> = None;
    for k in SHIFT_MIN_SIDE..=m - SHIFT_MIN_SIDE {
        let (ml, sl) = sad_of(&bins[..k]);
        let (mr, sr) = sad_of(&bins[k..]);
        if best.is_none_or(|b| sl + sr < b.1) {
            best = Some((k, sl + sr, ml, mr));
        }
    }
    let (k, step_sad, ml, mr) = best?;
    let step = (mr - ml).abs();
    let residual = step_sad / m as f64;
    let is_shift = step >= SHIFT_MIN_FRACTION * ml.max(mr)
        && step > SHIFT_MIN_NOISE_MULT * residual
        && step_sad < SHIFT_SAD_RATIO * line_sad;
    is_shift.then_some(k)
}

/// Amplitude of a daily cycle in the last week of `samples`, if there is one: the hourly means'
/// first differences must correlate at a lag of 24 h (differences remove trends and level
/// shifts, which also correlate at any lag), and the typical daily range must exceed `floor`.
pub fn daily_cycle(samples: &[Sample], floor: f64) -> Option<f64> {
    const HOURS: usize = 24 * 7;
    let last = samples.last()?.t;
    let start = last - (HOURS as i64) * 3600 + 1;
    let mut sum = [0.0f64; HOURS];
    let mut cnt = [0u32; HOURS];
    let from = samples.partition_point(|s| s.t < start);
    for s in &samples[from..] {
        let slot = ((s.t - start) / 3600) as usize;
        if slot < HOURS {
            sum[slot] += s.bytes;
            cnt[slot] += 1;
        }
    }
    let hourly: Vec<Option<f64>> = (0..HOURS)
        .map(|i| (cnt[i] > 0).then(|| sum[i] / f64::from(cnt[i])))
        .collect();
    if hourly.iter().flatten().count() < 48 {
        return None;
    }
    let diff: Vec<Option<f64>> = (0..HOURS)
        .map(
            |i| match (i.checked_sub(1).and_then(|j| hourly[j]), hourly[i]) {
                (Some(a), Some(b)) => Some(b - a),
                _ => None,
            },
        )
        .collect();
    let pairs: Vec<(f64, f64)> = (24..HOURS)
        .filter_map(|i| Some((diff[i]?, diff[i - 24]?)))
        .collect();
    if pairs.len() < 24 || correlation(&pairs) < 0.3 {
        return None;
    }
    let mut ranges: Vec<f64> = hourly
        .chunks(24)
        .filter_map(|day| {
            let v: Vec<f64> = day.iter().flatten().copied().collect();
            (v.len() >= 18).then(|| {
                v.iter().copied().fold(f64::MIN, f64::max)
                    - v.iter().copied().fold(f64::MAX, f64::min)
            })
        })
        .collect();
    let amplitude = median_in_place(&mut ranges);
    (amplitude > floor).then_some(amplitude)
}

fn correlation(pairs: &[(f64, f64)]) -> f64 {
    let n = pairs.len() as f64;
    let (mx, my) = pairs
        .iter()
        .fold((0.0, 0.0), |(a, b), p| (a + p.0 / n, b + p.1 / n));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for &(x, y) in pairs {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
        syy += (y - my) * (y - my);
    }
    if sxx <= 0.0 || syy <= 0.0 {
        return 0.0;
    }
    sxy / (sxx * syy).sqrt()
}

/// Share of samples that stand above the line by more than `threshold`.
pub fn excursion_share(seg: &[Sample], line: &Line, threshold: f64) -> f64 {
    if seg.is_empty() {
        return 0.0;
    }
    let above = seg
        .iter()
        .filter(|s| s.bytes - line.value_at(s.t) > threshold)
        .count();
    above as f64 / seg.len() as f64
}
