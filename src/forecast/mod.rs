//! Where memory is heading: growth fit per container lifetime and time-to-limit.
//!
//! Pure: no I/O, no clock. `fit` is limit-independent (cached with the history); `project`
//! applies a limit and a horizon to a fit and is cheap.
//!
//! How `fit` reads a series of per-interval peaks:
//! 1. Split it into container lifetimes ([`split_lifetimes`]): at restarts and sustained drops.
//! 2. Within the last lifetime, find level shifts (a step that explains the series much better
//!    than a line); the *regime* is what follows the last shift.
//! 3. Fit a Theil–Sen line to the regime (bin medians, at most [`FIT_POINTS`] points) with Sen's
//!    rank interval for the slope; the noise is the MAD of the residuals.
//! 4. Fit the previous lifetimes the same way: a saw-tooth whose lifetimes all grew is a leak
//!    even right after a restart, when the current lifetime is too short to say.
//! 5. Name the pattern: leak (significant growth), level shift, load-following (a daily cycle),
//!    spiky (rare excursions far above the line), steady; unknown without enough data.

mod classify;
mod lifetimes;
mod robust;

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::history::ContainerHistory;
pub use crate::history::{LeakFit, Pattern, Sample, DEFAULT_INTERVAL_SECS};
pub use lifetimes::{split_lifetimes, DROP_RATIO};

use robust::{bin_medians, residual_sigma, theil_sen, Line};

/// A fit projected to a horizon against a limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    pub pattern: Pattern,
    /// Expected usage at the horizon, bytes, and its band.
    pub at_horizon: f64,
    pub low: f64,
    pub high: f64,
    /// Seconds from `now` until the expected usage reaches the limit (None: not within reach).
    pub time_to_limit: Option<f64>,
    /// Earliest and latest plausible time-to-limit, seconds.
    pub time_to_limit_low: Option<f64>,
    pub time_to_limit_high: Option<f64>,
    pub slope: f64,
    pub confidence: f64,
}

/// Fewer clean samples than this (or a span under [`MIN_INTERVALS`] sampling intervals) gives
/// [`Pattern::Unknown`].
pub const MIN_POINTS: usize = 6;
/// A lifetime is fitted once it spans this many sampling intervals: 30 minutes of 5-minute peaks.
pub const MIN_INTERVALS: i64 = 6;
pub const MIN_SPAN_SECS: i64 = MIN_INTERVALS * DEFAULT_INTERVAL_SECS;
/// At most this many points (bin medians) go into Theil–Sen, which is quadratic.
pub const FIT_POINTS: usize = 64;
/// Bins used to look for level shifts.
const SHIFT_BINS: usize = 48;
/// Growth over the regime must exceed this share of its level (and 3 noise sigmas) to be a leak:
/// smaller drifts are not worth an alarm even when statistically significant.
pub const LEAK_MIN_GROWTH: f64 = 0.05;
/// Excursions above the line by more than max(6 sigma, 20% of the level) make a series spiky
/// when they are rare (at most 5% of samples).
const SPIKE_SIGMAS: f64 = 6.0;
const SPIKE_MIN_FRACTION: f64 = 0.2;
const SPIKE_MAX_SHARE: f64 = 0.05;
/// Previous lifetimes looked at for a saw-tooth.
const POOLED_LIFETIMES: usize = 4;
/// Width of the noise band around a fit, in noise sigmas (see [`project`], [`steady_limit`]).
pub const BAND_SIGMAS: f64 = 2.0;
/// A steady regime may be sized by [`steady_limit`] from this confidence on: the regime covers
/// most of a day (shape confidence is the share of a day covered), long enough for a daily cycle
/// or a leak to have shown.
pub const STEADY_MIN_CONFIDENCE: f64 = 0.9;

/// The growth fit of a container's history. Expensive to compute and independent of any limit, so
/// it is computed once per history and kept with it (the cached history every admission shares).
pub fn fit_of(h: &ContainerHistory) -> &LeakFit {
    h.fit
        .get_or_init(|| fit_at(&h.samples, &h.restarts, h.interval_secs()))
}

/// [`fit_of`] for its side effect: a history source that keeps only a tail of the samples calls
/// it before trimming them.
pub fn prepare(h: &ContainerHistory) {
    let _ = fit_of(h);
}

/// Fits growth within the most recent container lifetime and names the pattern.
/// `samples` are per-interval peaks (non-finite and non-positive values are ignored, as gaps);
/// `restarts` are unix seconds.
pub fn fit(samples: &[Sample], restarts: &[i64]) -> LeakFit {
    fit_at(samples, restarts, DEFAULT_INTERVAL_SECS)
}

/// [`fit`] of peaks taken every `interval_secs` (a lifetime must span [`MIN_INTERVALS`] of them).
pub fn fit_at(samples: &[Sample], restarts: &[i64], interval_secs: i64) -> LeakFit {
    let min_span = MIN_INTERVALS * interval_secs.max(1);
    let pts = clean(samples);
    let Some(last) = pts.last().copied() else {
        return LeakFit::unknown();
    };
    let lifetimes = split_lifetimes(&pts, restarts);
    let (mut start, end) = lifetimes.last().copied().unwrap_or((0, pts.len()));
    let lifetime_start = start;
    let mut scratch = Vec::with_capacity(FIT_POINTS * FIT_POINTS / 2);

    // Level shifts within the last lifetime: the regime starts after the last one.
    let mut shifted = false;
    for _ in 0..3 {
        let seg = &pts[start..end];
        if seg.len() < 2 * MIN_POINTS {
            break;
        }
        let bins = bin_medians(seg, SHIFT_BINS, &mut scratch);
        let bin_size = if seg.len() > SHIFT_BINS {
            seg.len().div_ceil(SHIFT_BINS)
        } else {
            1
        };
        let line = theil_sen(&bins, last.t, &mut scratch);
        match classify::level_shift(&bins, &line, &mut scratch) {
            Some(k) => {
                start += k * bin_size;
                shifted = true;
            }
            None => break,
        }
    }

    let seg = &pts[start..end];
    let span = last.t - seg[0].t;
    let own = fit_segment(seg, last.t, &mut scratch);
    let pooled = pooled_leak(&pts, &lifetimes, min_span, &mut scratch);
    let base = LeakFit {
        pattern: Pattern::Unknown,
        slope: own.line.slope,
        slope_low: own.line.slope_low,
        slope_high: own.line.slope_high,
        level: own.line.level,
        at: last.t,
        noise: own.sigma,
        lifetimes: lifetimes.len(),
        confidence: 0.0,
        since: seg.first().map_or(last.t, |s| s.t),
    };
    let pooled_fit = |pooled: &Pooled, scratch: &mut Vec<f64>| {
        // Level of the current lifetime under the pooled slope, from its latest samples.
        let recent = &seg[seg.len().saturating_sub(MIN_POINTS)..];
        scratch.clear();
        scratch.extend(
            recent
                .iter()
                .map(|s| s.bytes - pooled.slope * (s.t - last.t) as f64),
        );
        LeakFit {
            pattern: Pattern::Leak,
            slope: pooled.slope,
            slope_low: pooled.low,
            slope_high: pooled.high,
            level: robust::median_in_place(scratch),
            confidence: pooled.confidence,
            ..base.clone()
        }
    };
    if seg.len() < MIN_POINTS || span < min_span {
        return match &pooled {
            Some(p) if !shifted => pooled_fit(p, &mut scratch),
            _ => LeakFit {
                level: last.bytes,
                ..base
            },
        };
    }

    let level = own.line.level.max(f64::MIN_POSITIVE);
    let growth = own.line.slope * span as f64;
    // Only within the lifetime: a saw-tooth of restarts is periodic too, but it is no cycle.
    let cycle = classify::daily_cycle(&pts[lifetime_start..], 0.1 * level);
    let mut leak =
        own.line.slope_low > 0.0 && growth > (3.0 * own.sigma).max(LEAK_MIN_GROWTH * level);
    if let Some(amplitude) = cycle {
        // Within two days the rising half of a daily cycle looks like growth.
        if span < 2 * 86_400 && growth < amplitude {
            leak = false;
        }
    }
    if leak {
        let width = own.line.slope_high - own.line.slope_low;
        let mut confidence = (1.0 - width / (2.0 * own.line.slope)).clamp(0.0, 1.0);
        if let Some(p) = &pooled {
            if p.slope >= own.line.slope_low && p.slope <= own.line.slope_high {
                confidence = confidence.max(p.confidence);
            }
        }
        return LeakFit {
            pattern: Pattern::Leak,
            confidence,
            ..base
        };
    }
    if let Some(p) = &pooled {
        // A saw-tooth in progress: the current lifetime is young and not (yet) flat.
        if !shifted && own.line.slope_high > 0.0 && span < p.typical_span / 2 {
            return pooled_fit(p, &mut scratch);
        }
    }
    let spike_threshold = (SPIKE_SIGMAS * own.sigma).max(SPIKE_MIN_FRACTION * level);
    let spikes = classify::excursion_share(seg, &own.line, spike_threshold);
    let pattern = if shifted {
        Pattern::LevelShift
    } else if cycle.is_some() {
        Pattern::LoadFollowing
    } else if spikes > 0.0 && spikes <= SPIKE_MAX_SHARE {
        Pattern::Spiky
    } else {
        Pattern::Steady
    };
    // For shapes, confidence grows with the regime's coverage, a full day being enough.
    let confidence = (span as f64 / 86_400.0).clamp(0.0, 1.0);
    LeakFit {
        pattern,
        confidence,
        ..base
    }
}

/// Projects a fit `horizon` seconds past `now` and finds when it meets `limit` (bytes).
///
/// Only a leak is extrapolated; other patterns stay at their level. The band is the slope
/// interval plus two noise sigmas. Time-to-limit is when the line comes within two sigmas of
/// the limit (the first peak over it); `time_to_limit_low` uses the upper slope and three sigmas
/// (earliest), `time_to_limit_high` the lower slope and the line itself (latest; `None` when
/// that slope does not grow).
pub fn project(fit: &LeakFit, now: i64, horizon: u64, limit: Option<f64>) -> Forecast {
    let dt = (now - fit.at).max(0) as f64 + horizon as f64;
    let growing = fit.pattern == Pattern::Leak;
    let (slope, lo_s, hi_s) = if growing {
        (
            fit.slope.max(0.0),
            fit.slope_low.max(0.0),
            fit.slope_high.max(0.0),
        )
    } else {
        (0.0, 0.0, 0.0)
    };
    let at_horizon = fit.level + slope * dt;
    let band = BAND_SIGMAS * fit.noise;
    let low = (fit.level + lo_s * dt - band).max(0.0);
    let high = fit.level + hi_s * dt + band;
    let since_fit = (now - fit.at).max(0) as f64;
    // The samples are per-interval peaks scattered around the line: the first one over the
    // limit comes when the line is about two noise sigmas below it, not when it gets there.
    let ttl = |s: f64, sigmas: f64| -> Option<f64> {
        let limit = limit?;
        let level = fit.level + sigmas * fit.noise;
        if level >= limit {
            return Some(0.0);
        }
        if s <= 0.0 {
            return None;
        }
        Some(((limit - level) / s - since_fit).max(0.0))
    };
    Forecast {
        pattern: fit.pattern,
        at_horizon,
        low,
        high,
        time_to_limit: if growing {
            ttl(slope, 2.0)
        } else {
            limit.filter(|l| fit.level >= *l).map(|_| 0.0)
        },
        time_to_limit_low: if growing { ttl(hi_s, 3.0) } else { None },
        time_to_limit_high: if growing { ttl(lo_s, 0.0) } else { None },
        slope,
        confidence: fit.confidence,
    }
}

/// The limit for a steady regime: Autopilot's rule for steady jobs (the 98th percentile of the
/// per-interval peaks plus the headroom, Rzadca et al., EuroSys 2020, §3.2) instead of the max
/// plus the headroom, with oomguard's floor: never below the regime's highest peak plus what the
/// fit says may come on top of it within the horizon (the noise band, [`BAND_SIGMAS`] sigmas, and
/// growth at the upper bound of the slope interval); never above `max × (1 + headroom)`, the rule
/// for every other series.
///
/// `p98` and `max` are of the peaks the fit was made on. `None` unless the fit calls the regime
/// steady with at least [`STEADY_MIN_CONFIDENCE`]: a leak, a level shift, a daily cycle or rare
/// large spikes are sized from the max.
///
/// Where the tail above the p98 is short (peaks within a few per cent of the usual level), the
/// headroom over the p98 already covers the highest peak and the noise, and the limit follows the
/// p98; where the highest peak stands out, the floor keeps it, plus the band.
pub fn steady_limit(
    fit: &LeakFit,
    p98: f64,
    max: f64,
    headroom: f64,
    horizon_secs: u64,
) -> Option<f64> {
    if fit.pattern != Pattern::Steady || fit.confidence < STEADY_MIN_CONFIDENCE {
        return None;
    }
    let growth = fit.slope_high.max(0.0) * horizon_secs as f64;
    let floor = max + BAND_SIGMAS * fit.noise + growth;
    Some(
        (p98 * (1.0 + headroom))
            .max(floor)
            .min(max * (1.0 + headroom)),
    )
}

/// Finite, positive samples in time order; borrowed when the input already is.
fn clean(samples: &[Sample]) -> Cow<'_, [Sample]> {
    let ok = |s: &Sample| s.bytes.is_finite() && s.bytes > 0.0;
    if samples.iter().all(ok) && samples.windows(2).all(|w| w[0].t <= w[1].t) {
        return Cow::Borrowed(samples);
    }
    let mut v: Vec<Sample> = samples.iter().copied().filter(ok).collect();
    v.sort_by_key(|s| s.t);
    Cow::Owned(v)
}

struct SegmentFit {
    line: Line,
    sigma: f64,
}

fn fit_segment(seg: &[Sample], at: i64, scratch: &mut Vec<f64>) -> SegmentFit {
    let pts = bin_medians(seg, FIT_POINTS, scratch);
    let line = theil_sen(&pts, at, scratch);
    let sigma = residual_sigma(seg, &line, scratch);
    SegmentFit { line, sigma }
}

/// Growth shared by the previous lifetimes: a saw-tooth.
struct Pooled {
    slope: f64,
    low: f64,
    high: f64,
    confidence: f64,
    /// Median length of those lifetimes, seconds.
    typical_span: i64,
}

/// The last few completed lifetimes, if at least two and all of them grew significantly.
fn pooled_leak(
    pts: &[Sample],
    lifetimes: &[(usize, usize)],
    min_span: i64,
    scratch: &mut Vec<f64>,
) -> Option<Pooled> {
    let done = &lifetimes[..lifetimes.len().saturating_sub(1)];
    let mut slopes = Vec::new();
    let mut spans = Vec::new();
    let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
    for &(a, b) in done.iter().rev().take(POOLED_LIFETIMES) {
        let seg = &pts[a..b];
        let span = seg[seg.len() - 1].t - seg[0].t;
        if seg.len() < MIN_POINTS || span < min_span {
            break;
        }
        let f = fit_segment(seg, seg[seg.len() - 1].t, scratch);
        let growth = f.line.slope * span as f64;
        if !(f.line.slope_low > 0.0 && growth > (3.0 * f.sigma).max(LEAK_MIN_GROWTH * f.line.level))
        {
            break;
        }
        slopes.push(f.line.slope);
        spans.push(span as f64);
        low = low.min(f.line.slope_low);
        high = high.max(f.line.slope_high);
    }
    if slopes.len() < 2 {
        return None;
    }
    let n = slopes.len() as f64;
    let slope = robust::median_in_place(&mut slopes);
    let typical_span = robust::median_in_place(&mut spans) as i64;
    let spread = (high - low) / (2.0 * slope);
    let confidence = ((1.0 - spread).clamp(0.0, 1.0) * (0.5 + 0.1 * n)).min(0.95);
    Some(Pooled {
        slope,
        low,
        high,
        confidence,
        typical_span,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::synthetic::{generate, synthetic_set_of, Kind, Rng};

    const MIB: f64 = 1024.0 * 1024.0;

    /// A clean-ish linear leak: `base` + `rate`·t with ±1% noise, every 5 minutes.
    fn leak(n: usize, base: f64, rate: f64, seed: u64) -> Vec<Sample> {
        let mut rng = Rng::new(seed);
        (0..n)
            .map(|i| {
                let t = i as i64 * 300;
                Sample {
                    t,
                    bytes: base + rate * t as f64 + 0.01 * base * rng.normal(),
                }
            })
            .collect()
    }

    #[test]
    fn too_little_data_is_unknown() {
        let s = leak(4, 100.0 * MIB, 1000.0, 1);
        assert_eq!(fit(&s, &[]).pattern, Pattern::Unknown);
        assert_eq!(fit(&[], &[]), LeakFit::unknown());
    }

    #[test]
    fn linear_leak_slope_and_time_to_limit() {
        // 100 MiB growing 20 MiB/h for 6 h; limit 256 MiB: the line gets there at t = 7.8 h.
        let rate = 20.0 * MIB / 3600.0;
        let s = leak(72, 100.0 * MIB, rate, 7);
        let f = fit(&s, &[]);
        assert_eq!(f.pattern, Pattern::Leak);
        assert!(
            (f.slope / rate - 1.0).abs() < 0.05,
            "slope {} vs {rate}",
            f.slope
        );
        assert!(f.slope_low <= f.slope && f.slope <= f.slope_high);
        let now = s[s.len() - 1].t;
        let p = project(&f, now, 6 * 3600, Some(256.0 * MIB));
        let truth = (256.0 * MIB - (100.0 * MIB + rate * now as f64)) / rate;
        let ttl = p.time_to_limit.expect("reaches the limit");
        assert!((ttl / truth - 1.0).abs() < 0.25, "ttl {ttl} vs {truth}");
        let (lo, hi) = (
            p.time_to_limit_low.expect("low"),
            p.time_to_limit_high.expect("high"),
        );
        assert!(lo <= ttl && ttl <= hi);
        assert!(p.low <= p.at_horizon && p.at_horizon <= p.high);
    }

    #[test]
    fn project_is_exact_without_noise() {
        let f = LeakFit {
            pattern: Pattern::Leak,
            slope: 1.0,
            slope_low: 0.5,
            slope_high: 2.0,
            level: 100.0,
            at: 1000,
            noise: 0.0,
            lifetimes: 1,
            confidence: 0.9,
            since: 0,
        };
        let p = project(&f, 1010, 50, Some(200.0));
        assert_eq!(p.at_horizon, 160.0);
        assert_eq!(p.time_to_limit, Some(90.0));
        assert_eq!(p.time_to_limit_low, Some(40.0));
        assert_eq!(p.time_to_limit_high, Some(190.0));
        let steady = LeakFit {
            pattern: Pattern::Steady,
            ..f
        };
        let p = project(&steady, 1010, 50, Some(200.0));
        assert_eq!((p.at_horizon, p.time_to_limit), (100.0, None));
    }

    #[test]
    fn saw_tooth_is_a_leak_right_after_a_restart() {
        // Three lifetimes of 4 h growing 100 → 250 MiB, then 20 minutes of a fourth.
        let mut s = Vec::new();
        let mut restarts = Vec::new();
        let rate = 150.0 * MIB / (4.0 * 3600.0);
        for i in 0..(3 * 48 + 4) {
            let age = (i % 48) as f64 * 300.0;
            if i % 48 == 0 && i > 0 {
                restarts.push(i as i64 * 300);
            }
            s.push(Sample {
                t: i as i64 * 300,
                bytes: 100.0 * MIB + rate * age,
            });
        }
        let f = fit(&s, &restarts);
        assert_eq!(f.lifetimes, 4);
        assert_eq!(f.pattern, Pattern::Leak);
        assert!((f.slope / rate - 1.0).abs() < 0.05);
    }

    #[test]
    fn steady_limit_follows_the_p98_above_the_highest_peak_and_band() {
        let steady = LeakFit {
            pattern: Pattern::Steady,
            slope: 0.0,
            slope_low: -1.0,
            slope_high: 1.0,
            level: 600.0 * MIB,
            at: 0,
            noise: 2.0 * MIB,
            lifetimes: 1,
            confidence: 1.0,
            since: 0,
        };
        let h = 6 * 3600;
        let growth = 6.0 * 3600.0;
        let (p98, headroom) = (602.0 * MIB, 0.1);
        // Short tail: the p98 plus the headroom covers the peak and the band.
        let l = steady_limit(&steady, p98, 630.0 * MIB, headroom, h).expect("steady");
        assert!((l - p98 * 1.1).abs() < 1.0, "{}", l / MIB);
        // A peak that stands out: the floor (peak + 2 sigmas + growth at the upper slope).
        let l = steady_limit(&steady, p98, 670.0 * MIB, headroom, h).expect("steady");
        assert!((l - (674.0 * MIB + growth)).abs() < 1.0, "{}", l / MIB);
        // Never above the max rule.
        let noisy = LeakFit {
            noise: 40.0 * MIB,
            ..steady.clone()
        };
        let l = steady_limit(&noisy, p98, 650.0 * MIB, headroom, h).expect("steady");
        assert!((l - 650.0 * MIB * 1.1).abs() < 1.0, "{}", l / MIB);
        // Only for a steady fit with most of a day behind it.
        for pattern in [Pattern::Spiky, Pattern::Leak, Pattern::LoadFollowing] {
            let f = LeakFit {
                pattern,
                ..steady.clone()
            };
            assert_eq!(steady_limit(&f, p98, 630.0 * MIB, headroom, h), None);
        }
        let young = LeakFit {
            confidence: 0.5,
            ..steady
        };
        assert_eq!(steady_limit(&young, p98, 630.0 * MIB, headroom, h), None);
    }

    #[test]
    fn flat_series_with_outliers_is_not_a_leak() {
        let mut s = leak(2000, 300.0 * MIB, 0.0, 3);
        for i in (100..2000).step_by(400) {
            s[i].bytes *= 2.0;
        }
        let f = fit(&s, &[]);
        assert_eq!(f.pattern, Pattern::Spiky);
        assert!(project(&f, s[1999].t, 86_400, Some(400.0 * MIB))
            .time_to_limit
            .is_none());
    }

    #[test]
    fn each_synthetic_kind_is_named_right_mostly() {
        // Four-day series: the pattern is read at the end of each.
        for kind in Kind::classic() {
            let mut rng = Rng::new(11);
            let mut right = 0;
            for i in 0..6 {
                let syn = generate(kind, 4.0, 0, &mut rng, format!("{i}"));
                let restarts: Vec<i64> = syn.ooms.iter().map(|t| t + 1).collect();
                if fit(&syn.series.samples, &restarts).pattern == kind.expected() {
                    right += 1;
                }
            }
            assert!(
                right >= 4,
                "{}: {right}/6 named {:?}",
                kind.label(),
                kind.expected()
            );
        }
    }

    #[test]
    fn synthetic_leaks_are_detected_early_and_non_leaks_stay_quiet() {
        let set = synthetic_set_of(5, 2, 4.0, &Kind::classic());
        let d = crate::replay::synthetic::score_detection(&set, 3600);
        assert!(d.leak_ooms > 20);
        assert!(d.detected_1h * 10 >= d.leak_ooms * 9, "{d:?}");
        assert!(d.ttl_within_25pct * 10 >= d.ttl_predictions * 8, "{d:?}");
        assert_eq!(d.false_alarm_series, 0, "{d:?}");
    }
}
