//! The decision per container — one for every face: the webhook, `check`, `recommend`, the
//! reconciler, the API and the replay hand a [`Workload`] and its history to [`decide`] and read
//! the limit, the request, the severity, the scope and "killed at the current limit" from its
//! answer. Pure: the caller passes `now` and the history.
//!
//! Split by rule: [`scope`] (which workloads and containers are decided), [`sizing`] (the limit
//! from history and when a change is worth it), [`bump`] (OOM kills answered at the limit they
//! happened at), [`request`] (the recommended request), the container's own memory settings
//! ([`crate::memory_settings`]: a floor and day-zero findings), and [`reasons`] (severity, action
//! and the one-line reasons with the numbers).

pub mod bump;
mod reasons;
pub mod request;
pub mod scope;
mod sizing;

use serde::Serialize;

use crate::forecast::{Forecast, Pattern};
use crate::history::{ContainerHistory, WorkloadHistory, WorkloadKey};
use crate::policy::{Mode, PolicySpec};
use crate::quantity::round_up_mi;
use crate::workload::{ContainerRole, ContainerSpec, MemoryField, Workload};

pub use bump::{oom_bump, OomBumpAsk};
pub use scope::{OutOfScope, EXCLUDE_ANNOTATION};
use sizing::Sizing;

/// How bad a container's limit is. Ordered: the worst wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    Ok,
    /// Not checked: no or too little history.
    Unknown,
    /// A cost note: far more memory than it uses.
    Info,
    /// Too little headroom, a missing or invalid limit.
    Warn,
    /// Will OOM: below the observed peak, OOM-killed at this limit, or OOM predicted within the
    /// horizon.
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Unknown => "unknown",
            Severity::Info => "info",
            Severity::Warn => "warn",
            Severity::Critical => "critical",
        }
    }
}

/// What oomguard does about a container under the namespace's mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum Action {
    None,
    /// Raise an existing limit to `to` bytes.
    Raise {
        to: u64,
    },
    /// Add a missing limit of `to` bytes.
    Add {
        to: u64,
    },
    /// Reject the workload.
    Deny,
}

/// Whether history could be had for the workload.
#[derive(Debug, Clone, Copy)]
pub enum HistoryStatus<'a> {
    Found(&'a WorkloadHistory),
    /// The source answered and knows nothing of this workload yet.
    Missing,
    /// The source failed; the string says why (it goes into the warning).
    Unavailable(&'a str),
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerVerdict {
    pub container: String,
    pub role: ContainerRole,
    pub limit: Option<u64>,
    pub request: Option<u64>,
    pub recommended: Option<u64>,
    /// What the container needs before the policy's min/max clamp (a leak's forecast at the
    /// horizon included even past the max): above `recommended` means the policy max binds.
    #[serde(skip)]
    pub wanted: Option<u64>,
    pub severity: Severity,
    pub action: Action,
    /// One line each, starting with `container NAME:`.
    pub reasons: Vec<String>,
    /// The highest the container used: the window's peak, and at least the limit it was
    /// OOM-killed at (a kill at L means usage reached L; scrapes every 15–30 s miss the last
    /// seconds before it).
    pub peak: Option<f64>,
    /// The highest scraped peak, beside `peak` when a kill put `peak` above it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scraped_peak: Option<f64>,
    pub statistic: Option<f64>,
    pub oom_kills: u32,
    pub forecast: Option<Forecast>,
    /// The peaks may stop short of what the container needed (restarts or OOM kills in the
    /// window, or a source that cannot see them): nothing is recommended below what it has.
    #[serde(skip)]
    pub censored: bool,
    /// What the container's own configuration says (heap sizes, memory volumes, ...), when it
    /// says anything: see [`crate::memory_settings`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<crate::memory_settings::Analysis>,
    /// The recommended memory request ([`request`]), with enough history.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recommended_request: Option<u64>,
    /// What the container's own settings need (a JVM's heap and the rest of its process, ...),
    /// rounded up to Mi within the policy's bounds: no recommendation goes below it.
    #[serde(skip)]
    pub floor: Option<u64>,
    /// The shape of the series (with enough history).
    #[serde(skip)]
    pub pattern: Option<Pattern>,
    /// OOM-killed at the current limit (or above it): the limit is proven too small.
    #[serde(skip)]
    pub killed_at_limit: bool,
    /// The current limit is below the window's peak.
    #[serde(skip)]
    pub below_peak: bool,
    /// Unix seconds of the most recent OOM kill in the window.
    #[serde(skip)]
    pub last_oom_at: Option<i64>,
    /// The latest per-interval peak, bytes (what the container uses now).
    #[serde(skip)]
    pub current: Option<f64>,
}

impl ContainerVerdict {
    /// The verdict before anything is decided: the container's own numbers.
    fn of(c: &ContainerSpec) -> ContainerVerdict {
        ContainerVerdict {
            container: c.name.clone(),
            role: c.role,
            // A limit of 0 is no limit (the kubelet sets none).
            limit: c.limit.bytes().filter(|&b| b > 0),
            request: c.request.bytes(),
            recommended: None,
            wanted: None,
            severity: Severity::Ok,
            action: Action::None,
            reasons: Vec::new(),
            peak: None,
            scraped_peak: None,
            statistic: None,
            oom_kills: 0,
            forecast: None,
            censored: false,
            runtime: None,
            recommended_request: None,
            floor: None,
            pattern: None,
            killed_at_limit: false,
            below_peak: false,
            last_oom_at: None,
            current: None,
        }
    }

    /// The container's own settings alone reach its limit (a heap at or above it): critical
    /// however the history looks.
    pub fn setting_reaches_limit(&self) -> bool {
        self.runtime.as_ref().is_some_and(|r| r.certain())
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub workload: WorkloadKey,
    pub mode: Mode,
    pub containers: Vec<ContainerVerdict>,
    /// Set when the limits were not checked at all (history unavailable); one line.
    pub unchecked: Option<String>,
    /// One line about the whole workload: too little history to check it yet, or restarts and
    /// OOM kills the source cannot see. None for a workload the source has never seen (a new
    /// one: nothing to say).
    pub note: Option<String>,
    /// Set when the workload is not decided at all ([`scope`]): why. No containers then.
    #[serde(skip)]
    pub out_of_scope: Option<OutOfScope>,
    /// The workload's own `oomguard.io/exclude` annotation would opt it out here (the denial
    /// says so only then).
    #[serde(skip)]
    pub annotation_opts_out: bool,
    /// The pod-level memory limit, if any: a fix above it starts there.
    #[serde(skip)]
    pub pod_limit: Option<u64>,
}

impl Verdict {
    pub fn severity(&self) -> Severity {
        self.containers
            .iter()
            .map(|c| c.severity)
            .max()
            .unwrap_or(Severity::Ok)
    }

    pub fn denied(&self) -> bool {
        self.containers.iter().any(|c| c.action == Action::Deny)
    }

    /// Drops every action (an UPDATE that leaves memory as it was: warnings only), saying so
    /// when a denial is let through.
    pub fn warn_only(&mut self) {
        let denied = self.denied();
        for c in &mut self.containers {
            c.action = Action::None;
        }
        if denied {
            self.containers
                .iter_mut()
                .filter(|c| c.severity == Severity::Critical)
                .take(1)
                .for_each(|c| {
                    c.reasons.push(
                        "allowed: this update leaves memory requests and limits as they were; \
                         the next change to them is enforced"
                            .to_string(),
                    )
                });
        }
    }

    /// The message a denied user sees: what is wrong and what to set, with the numbers.
    pub fn deny_message(&self) -> String {
        let mut parts = Vec::new();
        for c in self.containers.iter().filter(|c| c.action == Action::Deny) {
            let first = c.reasons.first().cloned().unwrap_or_default();
            let fix = match c.recommended {
                // Above the pod-level limit: that one first.
                Some(r) if self.pod_limit.is_some_and(|p| r > p) => format!(
                    "; raise the pod's spec.resources.limits.memory ({}) and {}'s limit to at least {}",
                    crate::quantity::to_quantity(self.pod_limit.unwrap_or(0)),
                    c.container,
                    crate::quantity::to_quantity(r)
                ),
                // A raise that would not fix it (the policy's max binds) is not offered.
                Some(r) if c.limit.is_none_or(|l| r > l) => format!(
                    "; set resources.limits.memory of {} to at least {}",
                    c.container,
                    crate::quantity::to_quantity(r)
                ),
                _ => String::new(),
            };
            parts.push(format!("{first}{fix}"));
        }
        let exemption = if self.annotation_opts_out {
            format!("To exclude this workload, annotate it {EXCLUDE_ANNOTATION}=\"true\".")
        } else {
            "Only the namespace's oomguard policy can exempt it (exclude.workloads).".to_string()
        };
        format!(
            "oomguard denied {} {}/{} (policy mode enforce for namespace {}): {}. {exemption}",
            self.workload.kind,
            self.workload.namespace,
            self.workload.name,
            self.workload.namespace,
            parts.join(" | "),
        )
    }

    /// Every reason of every container that is not ok, plus the workload's notes.
    pub fn reasons(&self) -> Vec<String> {
        let mut out: Vec<String> = self.unchecked.iter().cloned().collect();
        out.extend(self.note.iter().cloned());
        for c in &self.containers {
            out.extend(c.reasons.iter().cloned());
        }
        out
    }
}

/// Decides every container of a workload: nothing when it is out of scope ([`scope::of`]), and
/// each container the policy does not exclude.
pub fn decide(
    workload: &Workload,
    history: HistoryStatus<'_>,
    policy: &PolicySpec,
    now: i64,
) -> Verdict {
    let mut verdict = Verdict {
        workload: workload.key(),
        mode: policy.mode,
        containers: Vec::new(),
        unchecked: None,
        note: None,
        out_of_scope: None,
        annotation_opts_out: policy.honours_exclude_annotation(),
        pod_limit: None,
    };
    if let Err(why) = scope::of(workload, policy) {
        verdict.out_of_scope = Some(why);
        return verdict;
    }
    let (found, available) = match history {
        HistoryStatus::Unavailable(why) => {
            verdict.unchecked = Some(format!("memory limits not checked (allowed): {why}"));
            (None, false)
        }
        HistoryStatus::Found(w) => (Some(w), true),
        HistoryStatus::Missing => (None, true),
    };
    let events_unseen = found.is_some_and(|w| w.events_unseen.is_some());
    verdict.containers = workload
        .containers
        .iter()
        .filter(|c| !scope::container_excluded(policy, &c.name))
        .map(|c| {
            let h = found.and_then(|w| w.containers.get(&c.name));
            let facts = Facts {
                available,
                events_unseen,
                pod_limit: workload.pod_limit,
                now,
            };
            decide_container(c, h, &facts, policy)
        })
        .collect();
    verdict.pod_limit = workload.pod_limit;
    verdict.note = found.and_then(|w| workload_note(&verdict.containers, w, policy));
    // An operator's object: warned about, never patched or denied (the operator would undo a
    // patch, and a denial would fail its reconcile loop); the line names where memory is set.
    if let Some(line) = scope::operator_line(workload) {
        for c in &mut verdict.containers {
            c.action = Action::None;
        }
        if !verdict.reasons().is_empty() {
            verdict.note = Some(match verdict.note.take() {
                Some(n) => format!("{line}; {n}"),
                None => line,
            });
        }
    }
    if let Some(line) = scope::ignored_annotation(workload, policy) {
        verdict.note = Some(match verdict.note.take() {
            Some(n) => format!("{n}; {line}"),
            None => line,
        });
    }
    verdict
}

/// The one line a workload with history gets when some of it could not be checked: too little
/// history (the shortest container's coverage), and restarts or OOM kills the source cannot see.
fn workload_note(
    containers: &[ContainerVerdict],
    w: &WorkloadHistory,
    policy: &PolicySpec,
) -> Option<String> {
    let mut parts = Vec::new();
    if containers.iter().any(|c| c.severity == Severity::Unknown) {
        let have = containers
            .iter()
            .filter(|c| c.severity == Severity::Unknown)
            .map(|c| w.containers.get(&c.container).map_or(0, |h| h.covered_secs))
            .min()
            .unwrap_or(0);
        parts.push(too_little_history(have, policy));
    }
    if let Some(why) = &w.events_unseen {
        parts.push(format!(
            "OOM kills cannot be seen without kube-state-metrics ({why}); nothing is lowered"
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// "1h of memory history (need 3h): limits not checked yet".
pub fn too_little_history(have_secs: u64, policy: &PolicySpec) -> String {
    format!(
        "{} of memory history (need {}): limits not checked yet",
        crate::policy::Duration(have_secs),
        policy.history.min_history
    )
}

/// One container: its own settings' floor and findings, then the sizing from history when there
/// is enough of it (OOM kills count with any amount: a crash-looping container has sparse peaks
/// and the peak before each kill is rarely scraped), then the reasons.
/// What a container's decision needs beyond the container, its history and the policy.
struct Facts {
    /// The history source answered (false: unavailable).
    available: bool,
    /// The source cannot see restarts and OOM kills.
    events_unseen: bool,
    /// The pod-level memory limit, if any.
    pod_limit: Option<u64>,
    now: i64,
}

fn decide_container(
    c: &ContainerSpec,
    h: Option<&ContainerHistory>,
    f: &Facts,
    policy: &PolicySpec,
) -> ContainerVerdict {
    let mut v = ContainerVerdict::of(c);
    if let MemoryField::Invalid(e) = &c.limit {
        v.severity = Severity::Warn;
        v.reasons.push(format!("container {}: {e}", c.name));
        return v;
    }
    // What the container's own configuration needs (heap sizes, memory volumes): findings with
    // or without history, and a floor under every recommendation.
    let limit_text = match &c.limit {
        MemoryField::Valid { raw, .. } => raw.as_str(),
        _ => "",
    };
    let rt = crate::memory_settings::analyse(&c.name, &c.runtime, v.limit, limit_text, v.request);
    let floor = rt
        .needs
        .map(|n| round_up_mi(n as f64).clamp(policy.limits.min.0, policy.limits.max.0));
    v.floor = floor;
    let enough = h.filter(|h| {
        !h.oom_kills.is_empty()
            || (h.peaks.intervals > 0 && h.covered_secs >= policy.history.min_history.secs())
    });
    match enough {
        None if f.available => reasons::without_history(&mut v, &rt, floor, policy, f.pod_limit),
        None => {}
        Some(h) => {
            let s = Sizing::new(v.limit, v.request, h, f.events_unseen, policy, f.now);
            sized(&mut v, h, &s, floor);
            reasons::with_history(&mut v, &s, h, &rt, s.rec, policy, f.pod_limit, f.now);
            v.forecast = s.forecast.clone();
        }
    }
    reasons::settings(&mut v, rt, floor, policy);
    reasons::within_pod(&mut v, f.pod_limit);
    if let (Some(h), Some(rec)) = (enough, v.recommended) {
        v.recommended_request = Some(request::recommended(h, rec, v.request, v.censored, policy));
    }
    v
}

/// The numbers of a sized container: what it used, the recommendation (never below its own
/// settings' floor), and the facts the faces act on.
fn sized(v: &mut ContainerVerdict, h: &ContainerHistory, s: &Sizing<'_>, floor: Option<u64>) {
    if s.has_peaks {
        v.peak = Some(h.peaks.max);
        v.statistic = Some(s.stat);
    }
    let killed_at = h
        .oom_kills
        .iter()
        .filter_map(|k| h.kill_limit(k))
        .fold(0.0, f64::max);
    if killed_at > v.peak.unwrap_or(0.0) {
        v.scraped_peak = v.peak;
        v.peak = Some(killed_at);
    }
    v.oom_kills = h.oom_count();
    v.censored = s.censored;
    let rec = floor.map_or(s.rec, |f| s.rec.max(f));
    v.recommended = Some(rec);
    v.wanted = Some(round_up_mi(s.raw.max(s.leak_room.unwrap_or(0.0))).max(rec));
    v.pattern = Some(crate::forecast::fit_of(h).pattern);
    if let Some(l) = v.limit.map(|l| l as f64) {
        v.below_peak = s.below_peak(l);
        v.killed_at_limit = s.bump.is_some_and(|b| b.killed_at(l));
    }
    v.last_oom_at = h.last_oom_at();
    v.current = h.latest().map(|s| s.bytes);
}

/// A growth rate in bytes/s as MiB per minute, with a decimal only where it matters.
pub fn mib_per_min(bytes_per_sec: f64) -> String {
    let v = bytes_per_sec * 60.0 / (1024.0 * 1024.0);
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// "90 s", "35 min", "5.5 h", "3 d".
pub fn human_secs(s: f64) -> String {
    if s < 90.0 {
        format!("{} s", s.round())
    } else if s < 90.0 * 60.0 {
        format!("{} min", (s / 60.0).round())
    } else if s < 48.0 * 3600.0 {
        let h = s / 3600.0;
        if h < 10.0 {
            format!("{:.1} h", h)
        } else {
            format!("{} h", h.round())
        }
    } else {
        format!("{} d", (s / 86400.0).round())
    }
}

#[cfg(test)]
mod runtime_tests;
#[cfg(test)]
mod tests;
