//! The data of a memory series and the shape found in it: what the history holds and the
//! forecast reads ([`crate::forecast`] computes the fit; its result is kept with the history).

use serde::{Deserialize, Serialize};

/// The sampling interval of per-interval peaks unless a source says otherwise (5 minutes).
pub const DEFAULT_INTERVAL_SECS: i64 = 300;

/// One point of a memory series: unix seconds and bytes (working set, or its per-interval peak).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub t: i64,
    pub bytes: f64,
}

/// The shape of a memory series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pattern {
    /// Not enough data to say.
    Unknown,
    /// Flat within noise.
    Steady,
    /// Grows within each lifetime (a leak, or unbounded caching).
    Leak,
    /// Moved to a new level and stayed there.
    LevelShift,
    /// Mostly flat with short excursions.
    Spiky,
    /// Rises and falls with load (e.g. daily cycles).
    LoadFollowing,
}

impl Pattern {
    pub fn as_str(self) -> &'static str {
        match self {
            Pattern::Unknown => "unknown",
            Pattern::Steady => "steady",
            Pattern::Leak => "leak",
            Pattern::LevelShift => "level-shift",
            Pattern::Spiky => "spiky",
            Pattern::LoadFollowing => "load-following",
        }
    }
}

/// A growth fit of one container's series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeakFit {
    pub pattern: Pattern,
    /// Robust growth rate within the current lifetime, bytes per second.
    pub slope: f64,
    /// Lower and upper bounds of the slope (same unit).
    pub slope_low: f64,
    pub slope_high: f64,
    /// Fitted level at `at` (the last sample), bytes.
    pub level: f64,
    /// Unix seconds of the last sample.
    pub at: i64,
    /// Robust spread of residuals around the fit, bytes.
    pub noise: f64,
    /// How many container lifetimes the series was split into.
    pub lifetimes: usize,
    /// Confidence in the pattern and slope, 0..1.
    pub confidence: f64,
    /// Unix seconds of the first sample of the current regime: the last lifetime, after its
    /// last level shift. Statistics of the current level should start here.
    pub since: i64,
}

impl LeakFit {
    pub fn unknown() -> LeakFit {
        LeakFit {
            pattern: Pattern::Unknown,
            slope: 0.0,
            slope_low: 0.0,
            slope_high: 0.0,
            level: 0.0,
            at: 0,
            noise: 0.0,
            lifetimes: 0,
            confidence: 0.0,
            since: 0,
        }
    }
}
