//! The published recommenders oomguard is compared with, each as its current release sizes
//! memory, and each with the actuator it ships with.
//!
//! Every recommender sees only the past ([`View`]): the observed 5-minute peaks (censored at the
//! limit in force, as a real working set is) and the OOM kills so far, each with the limit it
//! hit. It returns a memory limit in bytes; the replay rounds it up to a whole MiB. Baselines that
//! size *requests* (VPA, KRR) are replayed with request = limit (VPA keeps the limit/request
//! ratio of the template, 1 here).
//!
//! `margin` is each recommender's own safety margin (VPA's `recommendation-margin-fraction`,
//! KRR's `memory_buffer_percentage`, Autopilot's 10–15%, the tutorial's 85% threshold as
//! 1/0.85 − 1); the frontier sweeps it.

use crate::history::{OomKill, Sample};

pub const MIB: f64 = 1024.0 * 1024.0;
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

/// What a recommender may look at when it decides at `now`.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub now: i64,
    /// The first sample of the series (VPA anchors its daily windows there).
    pub first: i64,
    /// Observed peaks up to `now`, oldest first.
    pub peaks: &'a [Sample],
    /// OOM kills up to `now`, oldest first.
    pub ooms: &'a [OomKill],
    /// The limit in force.
    pub limit: f64,
    /// When the pod was created (a deploy or an eviction).
    pub pod_started: i64,
    /// How long the container ran before its last termination, when that termination was an
    /// OOM kill of this pod (Kubernetes' `lastState.terminated`).
    pub last_oom_run: Option<i64>,
}

impl<'a> View<'a> {
    /// The peaks of the last `secs` seconds.
    pub fn last(&self, secs: i64) -> &'a [Sample] {
        let from = self.peaks.partition_point(|s| s.t <= self.now - secs);
        &self.peaks[from..]
    }

    /// The OOM kills of the last `secs` seconds.
    pub fn ooms_in(&self, secs: i64) -> &'a [OomKill] {
        let from = self.ooms.partition_point(|k| k.t <= self.now - secs);
        &self.ooms[from..]
    }
}

/// A change of the limit between deploys.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Actuation {
    pub limit: f64,
    /// The change recreates the pod (VPA's updater evicts); otherwise it is made in place.
    pub restarts: bool,
}

/// A limit recommender and its actuator.
pub trait Recommender: Send + Sync {
    fn name(&self) -> String;
    /// The limit to set, bytes; `None` when it has nothing to go on. Applied at deploys.
    fn recommend(&self, view: &View<'_>) -> Option<f64>;
    /// Between deploys (replay modes with runtime actuation): a change to make now, if its
    /// actuator would make one. Default: none (a report, applied at deploys only).
    fn actuate(&self, _view: &View<'_>) -> Option<Actuation> {
        None
    }
    /// Whether the tool sets the limit itself when pods are created (VPA's admission
    /// controller, Autopilot), whatever the manifest says; a report (KRR, the tutorial's
    /// notebook) only reaches the pods through the manifest.
    fn sets_at_admission(&self) -> bool {
        false
    }
    /// The margin the frontier sweeps.
    fn with_margin(&self, margin: f64) -> Box<dyn Recommender>;
}

/// Kubernetes VPA 1.8 (kubernetes/autoscaler, `vertical-pod-autoscaler/`), recommender and
/// updater in `Recreate` mode:
/// - `pkg/recommender/model/aggregations_config.go`: memory is aggregated as the peak of each
///   24 h interval (`MemoryAggregationInterval`), 8 intervals (`MemoryAggregationIntervalCount`),
///   in a decaying histogram with a 24 h half-life, exponential buckets (first 1e7 bytes,
///   +5% each); `util/histogram.go`: a percentile is the *end* of its bucket;
/// - `pkg/recommender/model/container.go` (`RecordOOM`): an OOM adds a sample of
///   max(used + 100 MiB, used × 1.2) with used = max(request at the OOM, the interval's
///   usage peak), which replaces the interval's peak when larger;
/// - `pkg/recommender/logic/recommender.go`: target = p90 × (1 + margin 0.15); lower bound
///   p50 × (1 + margin) × (1 + 0.001/confidence)^-2; upper bound p95 × (1 + margin) ×
///   (1 + 1/confidence); each at least 250 MiB (`pod-recommendation-min-memory-mb`);
///   `estimator.go`: confidence = days between the first and last sample;
/// - `pkg/updater/priority/update_priority_calculator.go`: the updater evicts (and the
///   admission controller recreates the pod with the target) when the request is outside
///   [lower, upper], or the container was OOM-killed less than 10 min after it started
///   (`evict-after-oom-threshold`, only if the target differs), or the pod is 12 h old and the
///   target differs by ≥ 10% (`in-recommendation-bounds-eviction-lifetime-threshold`,
///   `pod-update-threshold`).
#[derive(Debug, Clone)]
pub struct Vpa {
    pub margin: f64,
}

pub const VPA_FIRST_BUCKET: f64 = 1e7;
pub const VPA_BUCKET_RATIO: f64 = 1.05;
const VPA_MIN: f64 = 250.0 * MIB;

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

/// VPA's recommendation for one container.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VpaEstimate {
    pub target: f64,
    pub lower: f64,
    pub upper: f64,
}

impl Vpa {
    pub fn estimate(&self, view: &View<'_>) -> Option<VpaEstimate> {
        let window_of = |t: i64| (t - view.first).div_euclid(DAY);
        let current = window_of(view.now);
        let oldest = current - 7;
        // Per interval: the usage peak, and the peak with the OOM samples.
        let mut usage: Vec<f64> = vec![0.0; 8];
        let mut peaks: Vec<f64> = vec![0.0; 8];
        let slot = |t: i64| {
            let w = window_of(t);
            (w >= oldest && w <= current).then(|| (w - oldest) as usize)
        };
        let samples = view.last(8 * DAY);
        let mut next = 0;
        for k in view.ooms_in(8 * DAY) {
            // Usage samples up to the kill first (its own interval's peak is censored).
            while next < samples.len() && samples[next].t <= k.t {
                if let Some(i) = slot(samples[next].t) {
                    usage[i] = usage[i].max(samples[next].bytes);
                    peaks[i] = peaks[i].max(samples[next].bytes);
                }
                next += 1;
            }
            if let (Some(i), Some(request)) = (slot(k.t), k.limit) {
                // used = max(request at the OOM, the interval's usage peak so far).
                let used = request.max(usage[i]);
                peaks[i] = peaks[i].max((used + 100.0 * MIB).max(used * 1.2));
            }
        }
        for s in &samples[next..] {
            if let Some(i) = slot(s.t) {
                peaks[i] = peaks[i].max(s.bytes);
            }
        }
        let weighted: Vec<(f64, f64)> = peaks
            .iter()
            .enumerate()
            .filter(|(_, &p)| p > 0.0)
            .map(|(i, &p)| (p, 2f64.powf(i as f64 - 7.0)))
            .collect();
        if weighted.is_empty() {
            return None;
        }
        let m = 1.0 + self.margin;
        let confidence = (view.now - view.first) as f64 / DAY as f64;
        let (lower_mult, upper_mult) = if confidence > 0.0 {
            (
                (1.0 + 0.001 / confidence).powf(-2.0),
                1.0 + 1.0 / confidence,
            )
        } else {
            (0.0, f64::INFINITY)
        };
        Some(VpaEstimate {
            target: (vpa_percentile(&weighted, 0.9) * m).max(VPA_MIN),
            lower: (vpa_percentile(&weighted, 0.5) * m * lower_mult).max(VPA_MIN),
            upper: (vpa_percentile(&weighted, 0.95) * m * upper_mult).max(VPA_MIN),
        })
    }
}

impl Recommender for Vpa {
    fn name(&self) -> String {
        "vpa".into()
    }

    fn sets_at_admission(&self) -> bool {
        true
    }

    fn with_margin(&self, margin: f64) -> Box<dyn Recommender> {
        Box::new(Vpa { margin })
    }

    fn recommend(&self, view: &View<'_>) -> Option<f64> {
        self.estimate(view).map(|e| e.target)
    }

    fn actuate(&self, view: &View<'_>) -> Option<Actuation> {
        let e = self.estimate(view)?;
        let request = view.limit;
        let target = round_up_mib(e.target);
        let diff = (target - request).abs() / request;
        let outside = request < e.lower || request > e.upper;
        let quick_oom = view.last_oom_run.is_some_and(|run| run < 600) && diff > 0.0;
        let long_lived = view.now - view.pod_started >= 12 * HOUR;
        (outside || quick_oom || (long_lived && diff >= 0.1)).then_some(Actuation {
            limit: target,
            restarts: true,
        })
    }
}

/// Robusta KRR v1.29 `simple` strategy (robusta-dev/krr, `robusta_krr/strategies/simple.py`):
/// memory request = limit = max of the working set over `history_duration` (336 h) ×
/// (1 + `memory_buffer_percentage` 15%), at least `memory_min_value` 100 MiB
/// (`robusta_krr/core/models/config.py`), given at least `points_required` (100) points.
/// `simple_limit` (`strategies/simple_limit.py`) sizes memory with the same formula (it differs
/// in CPU only), so one replay covers both. `use_oomkill_data` is off by default; with it on
/// (`oom`), the recommendation is at least the largest limit an OOM kill hit in the history
/// × (1 + `oom_memory_buffer_percentage` 25%). KRR is a report: it is applied at deploys (e.g.
/// through GitOps), never in between.
#[derive(Debug, Clone)]
pub struct Krr {
    pub margin: f64,
    pub use_oomkill_data: bool,
}

impl Recommender for Krr {
    fn name(&self) -> String {
        if self.use_oomkill_data {
            "krr-simple-oomkill".into()
        } else {
            "krr-simple".into()
        }
    }

    fn with_margin(&self, margin: f64) -> Box<dyn Recommender> {
        Box::new(Krr {
            margin,
            use_oomkill_data: self.use_oomkill_data,
        })
    }

    fn recommend(&self, view: &View<'_>) -> Option<f64> {
        let window = view.last(14 * DAY);
        if window.len() < 100 {
            return None;
        }
        let max = window.iter().map(|s| s.bytes).fold(0.0, f64::max);
        let mut rec = max * (1.0 + self.margin);
        if self.use_oomkill_data {
            let oom = view
                .ooms_in(14 * DAY)
                .iter()
                .filter_map(|k| k.limit)
                .fold(0.0, f64::max);
            rec = rec.max(oom * 1.25);
        }
        Some(rec.max(100.0 * MIB))
    }
}

/// Google Autopilot's moving-window memory recommender (Rzadca et al., "Autopilot: workload
/// autoscaling at Google", EuroSys 2020, §3.2): the 5-minute peaks in a histogram decayed with
/// a 48 h half-life; the limit is the weighted p98 plus a 10–15% safety margin, and never below
/// the peak of the last hour, so that an OOM (whose peak is the limit it hit) raises the limit
/// by the margin at once. The paper gives no formula for the OOM reaction beyond this; this is
/// the reading of `../shared/DESIGN.md`. Autopilot changes Borg limits continuously and in
/// place: the replay applies every change at the next interval (replay modes with runtime
/// actuation).
#[derive(Debug, Clone)]
pub struct Autopilot {
    pub margin: f64,
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
    fn name(&self) -> String {
        format!("autopilot-p98+{:.0}%", self.margin * 100.0)
    }

    fn sets_at_admission(&self) -> bool {
        true
    }

    fn with_margin(&self, margin: f64) -> Box<dyn Recommender> {
        Box::new(Autopilot { margin })
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

    fn actuate(&self, view: &View<'_>) -> Option<Actuation> {
        let rec = round_up_mib(self.recommend(view)?);
        (rec != view.limit).then_some(Actuation {
            limit: rec,
            restarts: false,
        })
    }
}

/// The tutorial's trend (`../shared/reference/memory-exhaustion-tutorial.md`, steps 2–4): one
/// ordinary least-squares line (`scipy.stats.linregress`) over the last 24 h of memory
/// (`collect_resource_metrics(hours=24)`), extrapolated 6 hours ahead (step 4); the limit keeps
/// that prediction at the 85% threshold (step 3): limit = prediction × (1 + margin), margin
/// 1/0.85 − 1. No OOM handling. The notebook is run by hand: applied at deploys only.
#[derive(Debug, Clone)]
pub struct OlsTrend {
    pub margin: f64,
}

/// The tutorial's margin: the 85% threshold.
pub const OLS_MARGIN: f64 = 1.0 / 0.85 - 1.0;

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
    fn name(&self) -> String {
        "tutorial-ols".into()
    }

    fn with_margin(&self, margin: f64) -> Box<dyn Recommender> {
        Box::new(OlsTrend { margin })
    }

    fn recommend(&self, view: &View<'_>) -> Option<f64> {
        let (slope, intercept) = ols(view.last(DAY), view.now)?;
        let predicted = intercept + slope * (6 * HOUR) as f64;
        Some((predicted * (1.0 + self.margin)).max(MIB))
    }
}

/// Limits are whole MiB, as every recommender's output is applied.
pub fn round_up_mib(bytes: f64) -> f64 {
    (bytes / MIB).ceil().max(1.0) * MIB
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

    fn view<'a>(samples: &'a [Sample], ooms: &'a [OomKill]) -> View<'a> {
        View {
            now: samples[samples.len() - 1].t,
            first: samples[0].t,
            peaks: samples,
            ooms,
            limit: 1000.0 * MIB,
            pod_started: samples[0].t,
            last_oom_run: None,
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
        let p = vpa_percentile(&[(1e9, 1.0)], 0.9);
        assert!(p > 1e9 && p < 1e9 * 1.05 + 1e7, "{p}");
        assert!(vpa_percentile(&[(1e8, 1.0), (1e9, 9.0)], 0.9) > 1e9);
        assert!(vpa_percentile(&[(1e8, 9.0), (1e9, 1.0)], 0.9) <= 1e8 * 1.05 + 1e7);
    }

    #[test]
    fn vpa_target_floor_oom_bump_and_updater() {
        let vpa = Vpa { margin: 0.15 };
        let s = flat(48, 1000.0);
        let r = vpa.recommend(&view(&s, &[])).expect("rec");
        assert!(
            (1150.0 * MIB..=1150.0 * 1.06 * MIB).contains(&r),
            "{}",
            r / MIB
        );
        assert_eq!(
            vpa.recommend(&view(&flat(48, 10.0), &[])),
            Some(250.0 * MIB)
        );
        // OOM at a 1000 MiB request with 500 MiB peaks: a sample of max(1100, 1200) MiB.
        let s = flat(12, 500.0);
        let oom = [OomKill {
            t: s[s.len() - 1].t,
            limit: Some(1000.0 * MIB),
        }];
        let r = vpa.recommend(&view(&s, &oom)).expect("rec");
        assert!(
            (1200.0 * 1.15 * MIB..=1200.0 * 1.15 * 1.06 * MIB).contains(&r),
            "{}",
            r / MIB
        );
        // The updater: a quick OOM evicts at once; a slow one waits (within the bounds, young).
        let mut v = view(&s, &oom);
        v.last_oom_run = Some(300);
        let a = vpa.actuate(&v).expect("quick OOM evicts");
        assert!(a.restarts && a.limit >= 1380.0 * MIB);
        v.last_oom_run = Some(4 * 3600);
        let e = vpa.estimate(&v).expect("estimate");
        let target = round_up_mib(e.target);
        v.limit = round_up_mib(e.lower.max(target * 0.95));
        assert!(
            v.limit <= e.upper && (target - v.limit).abs() / v.limit < 0.1,
            "precondition"
        );
        assert_eq!(vpa.actuate(&v), None);
        // Below the lower bound the updater evicts, however young the pod.
        v.limit = round_up_mib(e.lower * 0.9);
        assert_eq!(
            vpa.actuate(&v),
            Some(Actuation {
                limit: target,
                restarts: true
            })
        );
    }

    #[test]
    fn krr_is_max_plus_buffer_with_a_floor_and_optional_oom_data() {
        let mut s = flat(24, 150.0);
        s[10].bytes = 200.0 * MIB;
        let krr = Krr {
            margin: 0.15,
            use_oomkill_data: false,
        };
        let close = |r: Option<f64>, mib: f64| r.is_some_and(|r| (r / MIB - mib).abs() < 1e-6);
        assert!(close(krr.recommend(&view(&s, &[])), 230.0));
        assert!(close(krr.recommend(&view(&flat(24, 50.0), &[])), 100.0));
        assert_eq!(
            krr.recommend(&view(&flat(8, 500.0), &[])),
            None,
            "< 100 points"
        );
        let mut old = flat(24 * 16, 100.0);
        old[0].bytes = 900.0 * MIB;
        assert!(close(krr.recommend(&view(&old, &[])), 115.0));
        let oom = [OomKill {
            t: 3000,
            limit: Some(400.0 * MIB),
        }];
        let with = Krr {
            use_oomkill_data: true,
            ..krr
        };
        assert!(close(with.recommend(&view(&s, &oom)), 500.0));
    }

    #[test]
    fn autopilot_is_p98_with_margin_and_last_hour_peak() {
        let s = flat(48, 100.0);
        let a = Autopilot { margin: 0.1 };
        let r = a.recommend(&view(&s, &[])).expect("rec");
        assert!((r - 110.0 * MIB).abs() < 1.0);
        let mut spike = s.clone();
        let n = spike.len();
        spike[n - 3].bytes = 300.0 * MIB;
        let r = a.recommend(&view(&spike, &[])).expect("rec");
        assert!((r - 330.0 * MIB).abs() < 1.0);
        assert_eq!(
            weighted_quantile(vec![(3.0, 2.0), (1.0, 1.0), (2.0, 1.0)], 0.5),
            Some(2.0)
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
        let r = OlsTrend { margin: OLS_MARGIN }
            .recommend(&view(&s, &[]))
            .expect("rec");
        let last = 100.0 + 287.0 / 12.0;
        assert!((r / MIB - (last + 6.0) / 0.85).abs() < 1e-6, "{}", r / MIB);
    }
}
