//! `GET .../forecast`: per container, where memory is now and where it is heading, as a share of
//! the limit (the tutorial's `predict_resource_usage`), and what oomguard's decision
//! ([`verdict::decide`], the webhook's and the reconciler's) says of it: severity, recommended
//! limit and request, reasons. Pure: the handler reads the workload and its history and hands
//! them here.

use serde::Serialize;

use crate::forecast::{self, Pattern};
use crate::history::{ContainerHistory, WorkloadHistory};
use crate::policy::PolicySpec;
use crate::verdict::{self, human_secs, scope, ContainerVerdict, HistoryStatus, Severity};
use crate::workload::{ContainerRole, ContainerSpec, MemoryField, Workload};

/// Longest horizon asked for (the history window does not support projecting further).
pub const MAX_HORIZON_SECS: u64 = 90 * 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Limit and history known: every number is there.
    Ok,
    /// No memory limit (or an invalid one): usage and growth without percentages.
    NoLimit,
    /// The history source knows nothing of this container yet.
    NoHistory,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContainerForecast {
    pub name: String,
    pub role: ContainerRole,
    pub status: Status,
    /// Excluded by the namespace policy (`exclude.containers`): reported, never acted on.
    pub excluded: bool,
    /// One line: what the numbers say, or why they are missing.
    pub note: String,
    /// The pod template's memory limit.
    pub limit: Option<String>,
    pub limit_bytes: Option<u64>,
    /// The latest 5-minute peak of the working set, and its time (unix seconds).
    pub current_bytes: Option<f64>,
    pub current_at: Option<i64>,
    pub current_percent: Option<f64>,
    /// Expected usage at the horizon, and its band.
    pub predicted_bytes: Option<f64>,
    pub predicted_low_bytes: Option<f64>,
    pub predicted_high_bytes: Option<f64>,
    pub predicted_percent: Option<f64>,
    pub pattern: Pattern,
    /// 0..1, in the pattern and the growth rate.
    pub confidence: f64,
    /// Growth within the current container lifetime (0 unless the pattern is a leak).
    pub growth_bytes_per_hour: f64,
    /// Seconds from `now` until the limit is reached (0: already there; None: not within reach),
    /// the earliest and the latest plausible.
    pub time_to_limit_seconds: Option<f64>,
    pub time_to_limit_low_seconds: Option<f64>,
    pub time_to_limit_high_seconds: Option<f64>,
    /// Highest 5-minute peak over the policy window.
    pub peak_bytes: Option<f64>,
    pub oom_kills: u32,
    pub last_oom_at: Option<i64>,
    /// Seconds of history the source has.
    pub history_seconds: u64,
    /// oomguard's decision on this container (None: excluded, or the workload is out of scope).
    pub decision: Option<Decision>,
}

/// What oomguard's decision says of a container: the numbers the webhook warns with, raises to
/// or denies below, and the reconciler raises to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub severity: Severity,
    pub recommended_limit_bytes: Option<u64>,
    pub recommended_request_bytes: Option<u64>,
    /// What the container's own settings need (`-Xmx` and the rest of its process, ...).
    pub floor_bytes: Option<u64>,
    /// One line each, with the numbers.
    pub reasons: Vec<String>,
}

impl From<&ContainerVerdict> for Decision {
    fn from(v: &ContainerVerdict) -> Decision {
        Decision {
            severity: v.severity,
            recommended_limit_bytes: v.recommended,
            recommended_request_bytes: v.recommended_request,
            floor_bytes: v.floor,
            reasons: v.reasons.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkloadForecast {
    pub namespace: String,
    pub kind: &'static str,
    pub name: String,
    /// The time the history is as of (unix seconds): "now" of the projection.
    pub now: i64,
    pub horizon: String,
    pub horizon_seconds: u64,
    /// Where the history came from ("prometheus", "file").
    pub history_source: &'static str,
    /// The container closest to its limit at the horizon: its numbers (the tutorial's
    /// `predicted_memory_percent` and `confidence`). None without any limit and history.
    pub current_memory_percent: Option<f64>,
    pub predicted_memory_percent: Option<f64>,
    pub confidence: Option<f64>,
    pub container: Option<String>,
    /// Why oomguard does not decide this workload at all (excluded, controlled, mode off).
    pub out_of_scope: Option<String>,
    pub containers: Vec<ContainerForecast>,
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// Rounded to 0.01: percentages are read by people.
fn percent(bytes: f64, limit: Option<u64>) -> Option<f64> {
    let l = limit.filter(|l| *l > 0)? as f64;
    finite((bytes / l * 10_000.0).round() / 100.0)
}

/// The forecast of every running container (init containers that run to completion are left
/// out). `history` is None when the source knows nothing of the workload.
pub fn forecast(
    w: &Workload,
    policy: &PolicySpec,
    history: Option<&WorkloadHistory>,
    now: i64,
    horizon_secs: u64,
    history_source: &'static str,
) -> WorkloadForecast {
    let now = history.map_or(now, |h| h.now);
    let status = history.map_or(HistoryStatus::Missing, HistoryStatus::Found);
    let decided = verdict::decide(w, status, policy, now);
    let containers: Vec<ContainerForecast> = w
        .containers
        .iter()
        .filter(|c| c.role != ContainerRole::Init)
        .map(|c| {
            let h = history
                .and_then(|h| h.containers.get(&c.name))
                .filter(|h| !h.samples.is_empty() || h.peaks.intervals > 0);
            let mut f = container(c, h, now, horizon_secs);
            f.excluded = scope::container_excluded(policy, &c.name);
            f.decision = decided
                .containers
                .iter()
                .find(|v| v.container == c.name)
                .map(Decision::from);
            f
        })
        .collect();
    // The headline: the container with the highest predicted share of its limit.
    let top = containers
        .iter()
        .filter(|c| !c.excluded)
        .filter_map(|c| c.predicted_percent.map(|p| (p, c)))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c);
    WorkloadForecast {
        namespace: w.namespace.clone(),
        kind: w.kind.as_str(),
        name: w.name.clone(),
        now,
        horizon: crate::policy::Duration(horizon_secs).to_string(),
        horizon_seconds: horizon_secs,
        history_source,
        current_memory_percent: top.and_then(|c| c.current_percent),
        predicted_memory_percent: top.and_then(|c| c.predicted_percent),
        confidence: top.map(|c| c.confidence),
        container: top.map(|c| c.name.clone()),
        out_of_scope: decided.out_of_scope.map(|why| why.to_string()),
        containers,
    }
}

/// One container's numbers: its limit, where its history is and where the fit heads.
fn container(
    c: &ContainerSpec,
    h: Option<&ContainerHistory>,
    now: i64,
    horizon_secs: u64,
) -> ContainerForecast {
    let (limit, limit_bytes, limit_note) = match &c.limit {
        MemoryField::Valid { raw, bytes } => (Some(raw.clone()), Some(*bytes), None),
        MemoryField::Missing => (None, None, Some("no memory limit".to_string())),
        MemoryField::Invalid(e) => (
            None,
            None,
            Some(format!("the memory limit is not a valid quantity: {e}")),
        ),
    };
    let mut out = ContainerForecast {
        name: c.name.clone(),
        role: c.role,
        status: Status::NoHistory,
        excluded: false,
        note: String::new(),
        limit,
        limit_bytes,
        current_bytes: None,
        current_at: None,
        current_percent: None,
        predicted_bytes: None,
        predicted_low_bytes: None,
        predicted_high_bytes: None,
        predicted_percent: None,
        pattern: Pattern::Unknown,
        confidence: 0.0,
        growth_bytes_per_hour: 0.0,
        time_to_limit_seconds: None,
        time_to_limit_low_seconds: None,
        time_to_limit_high_seconds: None,
        peak_bytes: None,
        oom_kills: 0,
        last_oom_at: None,
        history_seconds: 0,
        decision: None,
    };
    let Some(h) = h else {
        out.note = format!("no history for container {} yet", c.name);
        if let Some(n) = &limit_note {
            out.note = format!("{}; {n}", out.note);
        }
        return out;
    };
    let fit = forecast::fit_of(h);
    let f = forecast::project(fit, now, horizon_secs, limit_bytes.map(|l| l as f64));
    // The latest real sample (a zero is a gap in the scrape, not usage).
    let last = h.latest();
    let current_bytes = last.and_then(|s| finite(s.bytes));
    let predicted = finite(f.at_horizon).filter(|_| fit.pattern != Pattern::Unknown);
    out.status = if limit_bytes.is_some() {
        Status::Ok
    } else {
        Status::NoLimit
    };
    out.note = note(
        limit_note.as_deref(),
        f.time_to_limit,
        fit.pattern,
        horizon_secs,
    );
    out.current_bytes = current_bytes;
    out.current_at = last.map(|s| s.t);
    out.current_percent = current_bytes.and_then(|b| percent(b, limit_bytes));
    out.predicted_bytes = predicted;
    out.predicted_low_bytes = predicted.and_then(|_| finite(f.low));
    out.predicted_high_bytes = predicted.and_then(|_| finite(f.high));
    out.predicted_percent = predicted.and_then(|b| percent(b, limit_bytes));
    out.pattern = fit.pattern;
    out.confidence = finite(f.confidence).unwrap_or(0.0);
    out.growth_bytes_per_hour = finite(f.slope * 3600.0).unwrap_or(0.0);
    out.time_to_limit_seconds = f.time_to_limit.and_then(finite);
    out.time_to_limit_low_seconds = f.time_to_limit_low.and_then(finite);
    out.time_to_limit_high_seconds = f.time_to_limit_high.and_then(finite);
    out.peak_bytes = finite(h.peaks.max).filter(|_| h.peaks.intervals > 0);
    out.oom_kills = h.oom_count();
    out.last_oom_at = h.last_oom_at();
    out.history_seconds = h.covered_secs;
    out
}

/// The one line of a container with history: what the numbers say.
fn note(
    limit_note: Option<&str>,
    time_to_limit: Option<f64>,
    pattern: Pattern,
    horizon_secs: u64,
) -> String {
    let horizon_text = human_secs(horizon_secs as f64);
    match (limit_note, time_to_limit, pattern) {
        (Some(n), _, p) => format!("{n}: {} pattern, no time-to-limit", p.as_str()),
        (None, _, Pattern::Unknown) => {
            "not enough history for a forecast (less than 30 minutes or 6 samples in the current lifetime)".to_string()
        }
        (None, Some(t), _) if t <= 0.0 => "at the limit now".to_string(),
        (None, Some(t), p) => format!(
            "{} pattern: reaches the limit in about {}",
            p.as_str(),
            human_secs(t)
        ),
        (None, None, Pattern::Leak) => format!(
            "leak pattern, but its growth does not reach the limit (projected {horizon_text} ahead)"
        ),
        (None, None, p) => format!(
            "{} pattern: holds its level, not heading for the limit (projected {horizon_text} ahead)",
            p.as_str()
        ),
    }
}

/// `?horizon=`: a whole number with s, m, h, d or w, at most [`MAX_HORIZON_SECS`].
pub fn parse_horizon(s: &str) -> Result<u64, String> {
    let digits = s.len().saturating_sub(1);
    if digits == 0
        || !s.as_bytes()[..digits].iter().all(u8::is_ascii_digit)
        || !matches!(s.as_bytes()[digits], b's' | b'm' | b'h' | b'd' | b'w')
    {
        return Err(format!(
            "horizon {s:?} is not a duration; expected a whole number with s, m, h, d or w (e.g. 6h)"
        ));
    }
    let d = crate::policy::Duration::parse(s)?;
    if d.secs() > MAX_HORIZON_SECS {
        return Err(format!(
            "horizon {s:?} is longer than the longest supported, 90d"
        ));
    }
    Ok(d.secs())
}
