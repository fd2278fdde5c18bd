//! Recommenders replayed against traces: the published baselines and oomguard's own rule.
//!
//! Every recommender sees only the past ([`View`]): the observed per-interval peaks (censored at
//! the limit in force, as a real working set is) and the OOM events so far, each with the limit it
//! hit. It returns a memory limit in bytes; the replay rounds it up to a whole MiB.
//! Baselines that size *requests* (VPA, KRR) are replayed as setting request = limit.

use crate::forecast::{self, Pattern};
use crate::history::{quantile_sorted, Sample};

pub const MIB: f64 = 1024.0 * 1024.0;
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

/// An OOM event seen by the replay: when, and the limit the container had.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Oom {
    pub t: i64,
    pub limit: f64,
}

/// What a recommender may look at when it decides at `now`.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub now: i64,
    /// Observed peaks up to `now`, oldest first.
    pub samples: &'a [Sample],
    /// OOM events up to `now`, oldest first.
    pub ooms: &'a [Oom],
    /// The limit in force, if any.
    pub limit: Option<f64>,
}

impl<'a> View<'a> {
    /// The samples of the last `secs` seconds.
    pub fn last(&self, secs: i64) -> &'a [Sample] {
        let from = self.samples.partition_point(|s| s.t <= self.now - secs);
        &self.samples[from..]
    }
}

/// A limit recommender.
pub trait Recommender {
    fn name(&self) -> &str;
    /// The limit to set, bytes; `None` when it has nothing to go on.
    fn recommend(&self, view: &View<'_>) -> Option<f64>;
}

/// Kubernetes VPA recommender (kubernetes/autoscaler, `vertical-pod-autoscaler/pkg/recommender`):
/// - memory is aggregated as the *peak of each 24 h window* (`MemoryAggregationInterval`), kept
///   for 8 windows (`MemoryAggregationIntervalCount`), in a decaying histogram with a 24 h
///   half-life (`MemoryHistogramDecayHalfLife`);
/// - the histogram has exponential buckets (first 1e7 bytes, ratio 1.05) and a percentile
///   returns the *end* of its bucket (`histogram.Percentile`);
/// - target = p90 (`targetMemoryPeaksPercentile`) × 1.15 (`safetyMarginFraction`), at least
///   250 MiB (`podMinMemoryMb`);
/// - an OOM adds a sample of max(used + 100 MiB, used × 1.2) (`OOMMinBumpUp`, `OOMBumpUpRatio`)
///   where used = max(request at the OOM, the window's peak) (`ContainerState.RecordOOM`).
#[derive(Debug, Clone)]
pub struct Vpa;

pub const VPA_FIRST_BUCKET: f64 = 1e7;
pub const VPA_BUCKET_RATIO: f64 = 1.05;

/// Start of VPA histogram bucket `i`.
pub fn vpa_bucket_start(i: usize) -> f64 {
    VPA_FIRST_BUCKET * (VPA_BUCKET_RATIO.powi(i as i32) - 1.0) / (VPA_BUCKET_RATIO - 1.0)
}

/// VPA histogram bucket holding `v`.
pub fn vpa_bucket(v: f64) -> usize {
    if v < VPA_FIRST_BUCKET {
        return 0;
    }
    let b = ((v * (VPA_BUCKET_RATIO - 1.0) / VPA_FIRST_BUCKET + 1.0).ln() / VPA_BUCKET_RATIO.ln())
        .floor() as usize;
    // Guard against rounding at bucket edges.
    if vpa_bucket_start(b + 1) <= v {
        b + 1
    } else if vpa_bucket_start(b) > v {
        b.saturating_sub(1)
    } else {
        b
    }
}

/// Weighted percentile of a VPA histogram given as (value, weight) pairs.
pub fn vpa_percentile(values: &[(f64, f64)], p: f64) -> f64 {
    let mut buckets: Vec<(usize, f64)> = values.iter().map(|&(v, w)| (vpa_bucket(v), w)).collect();
    buckets.sort_by_key(|b| b.0);
    let total: f64 = buckets.iter().map(|b| b.1).sum();
    if buckets.is_empty() || total <= 0.0 {
        return 0.0;
    }
    let mut partial = 0.0;
    for &(b, w) in &buckets {
        partial += w;
        if partial >= p * total {
            return vpa_bucket_start(b + 1);
        }
    }
    vpa_bucket_start(buckets[buckets.len() - 1].0 + 1)
}

impl Recommender for Vpa {
    fn name(&self) -> &str {
        "vpa"
    }

    fn recommend(&self, view: &View<'_>) -> Option<f64> {
        let first = view.samples.first()?.t;
        let window_of = |t: i64| (t - first).div_euclid(DAY);
        let current = window_of(view.now);
        let mut peaks: Vec<f64> = vec![0.0; 8];
        let oldest = current - 7;
        for s in view.last(8 * DAY) {
            let w = window_of(s.t);
            if w >= oldest {
                let slot = (w - oldest) as usize;
                peaks[slot] = peaks[slot].max(s.bytes);
            }
        }
        for oom in view.ooms {
            let w = window_of(oom.t);
            if w >= oldest && w <= current {
                let slot = (w - oldest) as usize;
                let used = oom.limit.max(peaks[slot]);
                peaks[slot] = peaks[slot].max((used + 100.0 * MIB).max(used * 1.2));
            }
        }
        let weighted: Vec<(f64, f64)> = peaks
            .iter()
            .enumerate()
            .filter(|(_, &p)| p > 0.0)
            .map(|(i, &p)| {
                (
                    p,
                    2f64.powf((i as f64 - 7.0) * DAY as f64 / (24.0 * HOUR as f64)),
                )
            })
            .collect();
        if weighted.is_empty() {
            return None;
        }
        Some((vpa_percentile(&weighted, 0.9) * 1.15).max(250.0 * MIB))
    }
}

/// Robusta KRR "simple" strategy (robusta-dev/krr, `strategies/simple.py`): memory = max usage
/// over the history (`history_duration` 336 h = 14 days) × (1 + `memory_buffer_percentage` 15%),
/// at least `memory_min_value` 100 MiB; request = limit. (Its `use_oomkill_data` is off by
/// default, so an OOM shows only through the censored peak.)
#[derive(Debug, Clone)]
pub struct KrrSimple;

impl Recommender for KrrSimple {
    fn name(&self) -> &str {
        "krr-simple"
    }

    fn recommend(&self, view: &View<'_>) -> Option<f64> {
        let max = view
            .last(14 * DAY)
            .iter()
            .map(|s| s.bytes)
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))?;
        Some((max * 1.15).max(100.0 * MIB))
    }
}

/// Google Autopilot moving-window memory recommender (Rzadca et al., "Autopilot: workload
/// autoscaling at Google", EuroSys 2020, §3.2): 5-minute peaks in a histogram decayed with a
/// 48 h half-life; the limit is the weighted p98 plus a 10–15% safety margin, and never below
/// the peak of the last hour. Read here as (1 + margin) × max(p98, last hour's peak), so that
/// after an OOM (whose peak is censored at the old limit) the limit rises by the margin.
/// Replayed with the 14-day window (weights there are below 1%).
#[derive(Debug, Clone)]
pub struct Autopilot {
    pub margin: f64,
    name: String,
}

impl Autopilot {
    pub fn new(margin: f64) -> Autopilot {
        Autopilot {
            margin,
            name: format!("autopilot-p98+{:.0}%", margin * 100.0),
        }
    }
}

/// Quantile `q` of values with weights: the smallest value whose cumulative weight reaches q.
pub fn weighted_quantile(mut pairs: Vec<(f64, f64)>, q: f64) -> Option<f64> {
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = pairs.iter().map(|p| p.1).sum();
    let mut acc = 0.0;
    for &(v, w) in &pairs {
        acc += w;
        if acc >= q * total {
            return Some(v);
        }
    }
    pairs.last().map(|p| p.0)
}

impl Recommender for Autopilot {
    fn name(&self) -> &str {
        &self.name
    }

    fn recommend(&self, view: &View<'_>) -> Option<f64> {
        let half_life = 48.0 * HOUR as f64;
        let pairs: Vec<(f64, f64)> = view
            .last(14 * DAY)
            .iter()
            .map(|s| (s.bytes, 2f64.powf((s.t - view.now) as f64 / half_life)))
            .collect();
        let p98 = weighted_quantile(pairs, 0.98)?;
        let last_hour = view.last(HOUR).iter().map(|s| s.bytes).fold(0.0, f64::max);
        Some(p98.max(last_hour) * (1.0 + self.margin))
    }
}

/// The tutorial's trend (reference/memory-exhaustion-tutorial.md, step 3–4): one ordinary
/// least-squares line over the whole window (here the 14-day history), extrapolated 6 hours
/// ahead (step 4's horizon); the limit keeps that prediction at the tutorial's 85% threshold:
/// limit = prediction / 0.85. No OOM handling, no floor beyond 1 MiB.
#[derive(Debug, Clone)]
pub struct OlsTrend;

/// Ordinary least squares `(slope, intercept)` of bytes over seconds since `t0`.
pub fn ols(samples: &[Sample], t0: i64) -> Option<(f64, f64)> {
    let n = samples.len() as f64;
    if samples.len() < 2 {
        return None;
    }
    let mx = samples.iter().map(|s| (s.t - t0) as f64).sum::<f64>() / n;
    let my = samples.iter().map(|s| s.bytes).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for s in samples {
        let x = (s.t - t0) as f64 - mx;
        sxy += x * (s.bytes - my);
        sxx += x * x;
    }
    if sxx <= 0.0 {
        return Some((0.0, my));
    }
    let slope = sxy / sxx;
    Some((slope, my - slope * mx))
}

impl Recommender for OlsTrend {
    fn name(&self) -> &str {
        "tutorial-ols"
    }

    fn recommend(&self, view: &View<'_>) -> Option<f64> {
        let (slope, intercept) = ols(view.last(14 * DAY), view.now)?;
        let predicted = intercept + slope * (6 * HOUR) as f64;
        Some((predicted / 0.85).max(MIB))
    }
}

/// oomguard's rule (DESIGN.md, "The decision"), as the engine applies it:
/// limit = the largest of
/// - statistic(peaks) × (1 + headroom), over the window, or since the last level shift when the
///   forecast sees one (old levels say nothing about the new one); when the statistic is the max
///   and the forecast calls the window steady, Autopilot's p98 rule for steady jobs with
///   oomguard's floor instead ([`forecast::steady_limit`]);
/// - the forecast's upper band at the horizon, when the pattern is a leak that has not restarted
///   within the window;
/// - the OOM bump: from the *limit* that was hit, × `bump_ratio` or + `bump_min` whichever is
///   larger, escalating (the ratio compounds per OOM within `bump_memory`), capped at
///   `bump_cap` × that limit; it holds for `bump_memory` after the OOM.
///
/// then held unless it changes enough: raised at once, lowered only when it saves at least
/// `lower_hysteresis` (each change is a restart or an in-place resize).
#[derive(Debug, Clone)]
pub struct Oomguard {
    pub params: OomguardParams,
}

/// Parameters of [`Oomguard`]. Defaults: the policy defaults of DESIGN.md (max of the peaks
/// over 14 days, OOM bump ×1.2 / +100 MiB) except two: headroom 10% (the low end of
/// Autopilot's published 10–15% margin; the bump from the limit catches what it misses, so the
/// 15% that VPA and KRR add without such a bump is not needed) and a 6 h forecast horizon (the
/// tutorial's; the replay decides hourly, so the limit need not cover a day of growth).
/// Bumps escalate within a day (VPA's 24 h half-life) and are capped at 2× the limit hit;
/// lowering needs a 10% saving. Steady series are sized by [`forecast::steady_limit`].
#[derive(Debug, Clone, PartialEq)]
pub struct OomguardParams {
    pub window_secs: i64,
    /// Quantile of the peaks (1.0 = max).
    pub quantile: f64,
    pub headroom: f64,
    pub horizon_secs: u64,
    pub bump_ratio: f64,
    pub bump_min: f64,
    pub bump_cap: f64,
    pub bump_memory_secs: i64,
    pub lower_hysteresis: f64,
    /// Size steady series from the p98 ([`forecast::steady_limit`]) when `quantile` is 1.
    pub steady_p98: bool,
}

impl Default for OomguardParams {
    fn default() -> Self {
        OomguardParams {
            window_secs: 14 * DAY,
            quantile: 1.0,
            headroom: 0.10,
            horizon_secs: 6 * HOUR as u64,
            bump_ratio: 1.2,
            bump_min: 100.0 * MIB,
            bump_cap: 2.0,
            bump_memory_secs: 24 * HOUR,
            lower_hysteresis: 0.1,
            steady_p98: true,
        }
    }
}

impl Oomguard {
    /// The rule without the hysteresis (a pure function of the view).
    pub fn target(&self, view: &View<'_>) -> Option<f64> {
        let p = &self.params;
        let window = view.last(p.window_secs);
        let last = window.last()?;
        let restarts: Vec<i64> = view.ooms.iter().map(|o| o.t).collect();
        let fit = forecast::fit(window, &restarts);
        let regime = if fit.pattern == Pattern::LevelShift {
            &window[window.partition_point(|s| s.t < fit.since)..]
        } else {
            window
        };
        let mut peaks: Vec<f64> = regime.iter().map(|s| s.bytes).collect();
        peaks.sort_by(f64::total_cmp);
        let mut limit = quantile_sorted(&peaks, p.quantile) * (1.0 + p.headroom);
        if p.steady_p98 && p.quantile >= 1.0 {
            let (p98, max) = (quantile_sorted(&peaks, 0.98), quantile_sorted(&peaks, 1.0));
            if let Some(steady) = forecast::steady_limit(&fit, p98, max, p.headroom, p.horizon_secs)
            {
                limit = steady;
            }
        }
        // A leak that has restarted before (a saw-tooth) is sized by its peaks like any other
        // series; the forecast term is for growth beyond anything the window has seen.
        if fit.pattern == Pattern::Leak && fit.lifetimes <= 1 {
            let f = forecast::project(&fit, view.now.max(last.t), p.horizon_secs, None);
            limit = limit.max(f.high);
        }
        let recent: Vec<&Oom> = view
            .ooms
            .iter()
            .filter(|o| o.t > view.now - p.bump_memory_secs)
            .collect();
        if let Some(oom) = recent.last() {
            let k = recent.len() as i32;
            let bump = (oom.limit * p.bump_ratio.powi(k)).max(oom.limit + p.bump_min);
            limit = limit.max(bump.min(oom.limit * p.bump_cap));
        }
        Some(limit)
    }
}

impl Recommender for Oomguard {
    fn name(&self) -> &str {
        "oomguard"
    }

    fn recommend(&self, view: &View<'_>) -> Option<f64> {
        let target = self.target(view)?;
        Some(match view.limit {
            Some(current)
                if target <= current && target > current * (1.0 - self.params.lower_hysteresis) =>
            {
                current
            }
            _ => target,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(hours: i64, mib: f64) -> Vec<Sample> {
        (0..hours * 12)
            .map(|i| Sample {
                t: i * 300,
                bytes: mib * MIB,
            })
            .collect()
    }

    fn view<'a>(samples: &'a [Sample], ooms: &'a [Oom]) -> View<'a> {
        View {
            now: samples[samples.len() - 1].t,
            samples,
            ooms,
            limit: None,
        }
    }

    #[test]
    fn vpa_buckets_and_percentile() {
        assert_eq!(vpa_bucket_start(0), 0.0);
        assert_eq!(vpa_bucket_start(1), 1e7);
        assert_eq!(vpa_bucket(5e6), 0);
        assert_eq!(vpa_bucket(1e7), 1);
        assert_eq!(vpa_bucket(1.5e7), 1);
        assert_eq!(vpa_bucket(2.05e7), 2);
        // A single value: the end of its bucket.
        let p = vpa_percentile(&[(1e9, 1.0)], 0.9);
        assert!(p > 1e9 && p < 1e9 * 1.05 + 1e7, "{p}");
        // p90 of weights 1 (small) and 9 (large) lands on the large value's bucket... and of
        // weights 9 and 1 on the small one's.
        assert!(vpa_percentile(&[(1e8, 1.0), (1e9, 9.0)], 0.9) > 1e9);
        assert!(vpa_percentile(&[(1e8, 9.0), (1e9, 1.0)], 0.9) <= 1e8 * 1.05 + 1e7);
    }

    #[test]
    fn vpa_target_floor_and_oom_bump() {
        let s = flat(48, 1000.0);
        let r = Vpa.recommend(&view(&s, &[])).expect("rec");
        assert!(
            (1150.0 * MIB..=1150.0 * 1.06 * MIB).contains(&r),
            "{}",
            r / MIB
        );
        let small = flat(48, 10.0);
        assert_eq!(Vpa.recommend(&view(&small, &[])), Some(250.0 * MIB));
        // OOM at a 1000 MiB request with 500 MiB peaks: sample max(1100, 1200) = 1200 MiB.
        let s = flat(12, 500.0);
        let oom = [Oom {
            t: s[s.len() - 1].t,
            limit: 1000.0 * MIB,
        }];
        let r = Vpa.recommend(&view(&s, &oom)).expect("rec");
        assert!(
            (1200.0 * 1.15 * MIB..=1200.0 * 1.15 * 1.06 * MIB).contains(&r),
            "{}",
            r / MIB
        );
    }

    #[test]
    fn krr_is_max_plus_15_percent_with_a_floor() {
        let mut s = flat(24, 150.0);
        s[10].bytes = 200.0 * MIB;
        let close = |r: Option<f64>, mib: f64| r.is_some_and(|r| (r / MIB - mib).abs() < 1e-6);
        assert!(close(KrrSimple.recommend(&view(&s, &[])), 230.0));
        assert!(close(
            KrrSimple.recommend(&view(&flat(24, 50.0), &[])),
            100.0
        ));
        // Older than 14 days is forgotten.
        let mut old = flat(24 * 16, 100.0);
        old[0].bytes = 900.0 * MIB;
        assert!(close(KrrSimple.recommend(&view(&old, &[])), 115.0));
    }

    #[test]
    fn autopilot_is_p98_with_margin_and_last_hour_peak() {
        let s = flat(48, 100.0);
        let r = Autopilot::new(0.1).recommend(&view(&s, &[])).expect("rec");
        assert!((r - 110.0 * MIB).abs() < 1.0);
        let mut spike = s.clone();
        let n = spike.len();
        spike[n - 3].bytes = 300.0 * MIB;
        let r = Autopilot::new(0.1)
            .recommend(&view(&spike, &[]))
            .expect("rec");
        assert!((r - 330.0 * MIB).abs() < 1.0);
        assert_eq!(
            weighted_quantile(vec![(3.0, 2.0), (1.0, 1.0), (2.0, 1.0)], 0.5),
            Some(2.0)
        );
        assert_eq!(
            weighted_quantile(vec![(3.0, 2.0), (1.0, 1.0), (2.0, 1.0)], 0.75),
            Some(3.0)
        );
    }

    #[test]
    fn ols_extrapolates_six_hours_over_85_percent() {
        let s: Vec<Sample> = (0..288)
            .map(|i| Sample {
                t: i * 300,
                bytes: (100.0 + i as f64 / 12.0) * MIB,
            })
            .collect();
        let r = OlsTrend.recommend(&view(&s, &[])).expect("rec");
        let last = 100.0 + 287.0 / 12.0;
        assert!((r / MIB - (last + 6.0) / 0.85).abs() < 1e-6, "{}", r / MIB);
    }

    #[test]
    fn oomguard_bumps_from_the_limit_escalates_and_caps() {
        let g = Oomguard {
            params: OomguardParams {
                headroom: 0.1,
                ..OomguardParams::default()
            },
        };
        let s = flat(24, 100.0);
        assert!((g.target(&view(&s, &[])).expect("rec") - 110.0 * MIB).abs() < 1.0);
        let t = s[s.len() - 1].t;
        // One OOM at 400 MiB: max(480, 500) = 500 MiB.
        let one = [Oom {
            t,
            limit: 400.0 * MIB,
        }];
        assert!((g.target(&view(&s, &one)).expect("rec") - 500.0 * MIB).abs() < 1.0);
        // Three within the day: 1000 × 1.2³ = 1728 MiB.
        let three = [
            Oom {
                t: t - 20,
                limit: 600.0 * MIB,
            },
            Oom {
                t: t - 10,
                limit: 800.0 * MIB,
            },
            Oom {
                t,
                limit: 1000.0 * MIB,
            },
        ];
        assert!((g.target(&view(&s, &three)).expect("rec") - 1728.0 * MIB).abs() < 1.0);
        // Capped at twice the limit hit.
        let many: Vec<Oom> = (0..6)
            .map(|i| Oom {
                t: t - 6 + i,
                limit: 1000.0 * MIB,
            })
            .collect();
        assert!((g.target(&view(&s, &many)).expect("rec") - 2000.0 * MIB).abs() < 1.0);
        // Hysteresis: a 5% lower target keeps the current limit; a 30% lower one is taken.
        let held = View {
            limit: Some(115.0 * MIB),
            ..view(&s, &[])
        };
        assert_eq!(g.recommend(&held), Some(115.0 * MIB));
        let lowered = View {
            limit: Some(160.0 * MIB),
            ..view(&s, &[])
        };
        assert!((g.recommend(&lowered).expect("rec") - 110.0 * MIB).abs() < 1.0);
    }

    #[test]
    fn oomguard_sizes_a_steady_series_from_the_p98() {
        // Two days at 600 MiB ± 1 MiB with one peak at 630 MiB (5% up, too small to be spiky):
        // the max rule gives 693 MiB, the steady rule ~ the p98 × 1.1.
        let mut s = flat(48, 600.0);
        for (i, x) in s.iter_mut().enumerate() {
            x.bytes += (i % 3) as f64 * MIB;
        }
        s[100].bytes = 630.0 * MIB;
        let g = Oomguard {
            params: OomguardParams::default(),
        };
        let r = g.target(&view(&s, &[])).expect("rec") / MIB;
        assert!((r - 602.0 * 1.1).abs() < 0.5, "{r}");
        let max_only = Oomguard {
            params: OomguardParams {
                steady_p98: false,
                ..OomguardParams::default()
            },
        };
        let r = max_only.target(&view(&s, &[])).expect("rec") / MIB;
        assert!((r - 693.0).abs() < 0.5, "{r}");
        // A peak that stands out keeps the limit above it.
        s[100].bytes = 680.0 * MIB;
        let r = g.target(&view(&s, &[])).expect("rec") / MIB;
        assert!((680.0..=680.0 * 1.1).contains(&r), "{r}");
    }

    #[test]
    fn oomguard_sizes_from_the_new_level_after_a_downward_shift() {
        // A 20% step down (a larger drop would read as a restart, which sizes from the window).
        let mut s = flat(24 * 4, 1000.0);
        for x in s.iter_mut().skip(12 * 24 * 2) {
            x.bytes = 800.0 * MIB;
        }
        let g = Oomguard {
            params: OomguardParams {
                headroom: 0.1,
                ..OomguardParams::default()
            },
        };
        let r = g.target(&view(&s, &[])).expect("rec");
        assert!((r - 880.0 * MIB).abs() < 1.0, "{}", r / MIB);
    }
}
