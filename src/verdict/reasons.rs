//! Severity, action and the one-line reasons of a container verdict: what a user reads in a
//! Warning line, a denial, a report row or an Event. One line per finding, each starting with
//! `container NAME:` and carrying the numbers and the fix.

use crate::history::ContainerHistory;
use crate::memory_settings::{Analysis, Certainty};
use crate::policy::{MissingLimit, Mode, PolicySpec};
use crate::quantity::{format_bytes, round_up_mi, to_quantity, Bytes};

use super::sizing::Sizing;
use super::{human_secs, mib_per_min, Action, ContainerVerdict, Severity};

/// A container with too little history (or none): only a missing limit is worth saying, sized
/// by what its own runtime settings need when they say — and never below its request (the
/// apiserver refuses a limit under it). Memory volumes alone are no size: a limit equal to its
/// tmpfs leaves the process no room, so none is added from them.
pub(super) fn without_history(
    v: &mut ContainerVerdict,
    rt: &Analysis,
    floor: Option<u64>,
    policy: &PolicySpec,
    pod_limit: Option<u64>,
) {
    // The workload's note says it once; a missing limit needs no history to be wrong (but a
    // container under a pod-level limit is bounded by it: not a missing limit). A plain init
    // container runs to completion before the app starts (a wait loop, a copy): its missing
    // limit is not warned about without history, unless its own configuration says what it
    // needs (`missingLimit: add` and `deny` still apply).
    v.severity = Severity::Unknown;
    let quiet_init = v.role == crate::workload::ContainerRole::Init
        && policy.missing_limit == MissingLimit::Warn
        && floor.is_none();
    if v.limit.is_some() || pod_limit.is_some() || quiet_init {
        return;
    }
    let name = &v.container;
    // A floor with `explain` is a runtime's whole need (its setting and the rest of its
    // process, and its memory volumes); without, it is the memory volumes alone.
    let sized = floor
        .filter(|_| rt.explain.is_some())
        .map(|f| f.max(v.request.unwrap_or(0)));
    if policy.missing_limit != MissingLimit::Ignore {
        v.severity = Severity::Warn;
        v.reasons.push(match (sized, &rt.explain, floor) {
            (Some(f), Some(why), _) => format!(
                "container {name}: no memory limit; {why}: set resources.limits.memory >= {}",
                to_quantity(f)
            ),
            (_, _, Some(volumes)) => format!(
                "container {name}: no memory limit; its memory emptyDirs alone hold {}: set a limit above that",
                to_quantity(volumes)
            ),
            _ => format!(
                "container {name}: no memory limit; set resources.limits.memory (no history yet to size it from)"
            ),
        });
    }
    v.recommended = sized;
    missing_limit(v, policy, sized);
}

/// A container with enough history: its severity, reasons and action from the sizing.
/// `history_rec` is the history's recommendation before a runtime floor raised it.
#[allow(clippy::too_many_arguments)]
pub(super) fn with_history(
    v: &mut ContainerVerdict,
    s: &Sizing<'_>,
    h: &ContainerHistory,
    rt: &Analysis,
    history_rec: u64,
    policy: &PolicySpec,
    pod_limit: Option<u64>,
    now: i64,
) {
    let Some(rec) = v.recommended else {
        return;
    };
    let stat_label = if s.steady {
        format!("{} steady p98", policy.history.window)
    } else {
        format!("{} {}", policy.history.window, policy.statistic.as_str())
    };
    match v.limit {
        // Bounded by the pod's limit (pod-level resources): nothing missing.
        None if pod_limit.is_some() => {}
        None => {
            v.severity = Severity::Warn;
            let line = missing_limit_line(v, s, rt, rec, history_rec, &stat_label, policy);
            v.reasons.push(line);
            missing_limit(v, policy, Some(rec));
        }
        Some(limit) => {
            critical(v, s, h, rec, policy, now);
            headroom_and_cost(v, s, limit, rec, &stat_label, policy);
            if v.severity >= Severity::Warn && rec > limit {
                v.action = match policy.mode {
                    Mode::Mutate => Action::Raise { to: rec },
                    Mode::Enforce if v.severity == Severity::Critical => Action::Deny,
                    _ => Action::None,
                };
            }
        }
    }
    if s.leak_beyond_max {
        if let Some(fc) = &s.forecast {
            v.reasons.push(format!(
                "container {}: leaks +{} MiB/min; no limit up to the policy max {} lasts {}: fix the leak or plan restarts",
                v.container,
                mib_per_min(fc.slope),
                Bytes(policy.limits.max.0 as f64),
                policy.forecast.horizon
            ));
        }
    }
}

/// "no memory limit; recommended ..." with what sized it: the runtime floor, a leak's room, or
/// the statistic and its headroom.
fn missing_limit_line(
    v: &ContainerVerdict,
    s: &Sizing<'_>,
    rt: &Analysis,
    rec: u64,
    history_rec: u64,
    stat_label: &str,
    policy: &PolicySpec,
) -> String {
    let name = &v.container;
    let rec_s = format_bytes(rec as f64);
    let max = policy.limits.max.0 as f64;
    match &rt.explain {
        Some(why) if rec > history_rec => {
            format!("container {name}: no memory limit; recommended {rec_s} ({why})")
        }
        // Sized by a leak's room, not by the statistic: say so with its numbers.
        _ if s.leak_room.is_some_and(|r| r > s.sized && r <= max) => format!(
            "container {name}: no memory limit; recommended {rec_s} ({stat_label} {} + {} of leak at {} MiB/min)",
            Bytes(s.stat),
            crate::policy::Duration(policy.forecast.leak_room_secs()),
            s.forecast
                .as_ref()
                .map_or_else(|| "0".to_string(), |f| mib_per_min(f.slope)),
        ),
        _ => format!(
            "container {name}: no memory limit; recommended {rec_s} ({stat_label} {} +{}%)",
            Bytes(s.stat),
            (policy.headroom.0 * 100.0).round()
        ),
    }
}

/// What makes the current limit critical (it will OOM), one line per cause.
fn critical(
    v: &mut ContainerVerdict,
    s: &Sizing<'_>,
    h: &ContainerHistory,
    rec: u64,
    policy: &PolicySpec,
    now: i64,
) {
    let Some(limit) = v.limit else {
        return;
    };
    let name = v.container.clone();
    let (l, ls, rec_s) = (limit as f64, Bytes(limit as f64), format_bytes(rec as f64));
    let window = &policy.history.window;
    if s.below_peak(l) {
        v.severity = Severity::Critical;
        v.reasons.push(format!(
            "container {name}: limit {ls} is below the {window} peak {}; recommended {rec_s}",
            Bytes(h.peaks.max)
        ));
    }
    if let Some(b) = s.bump.filter(|_| s.under_bump(l)) {
        v.severity = Severity::Critical;
        let ago = h
            .last_oom_at()
            .map(|t| format!(", last {} ago", human_secs((now - t).max(0) as f64)))
            .unwrap_or_default();
        let others = h.oom_count().saturating_sub(b.kills);
        let others = if others > 0 {
            format!(" (+{others} at other limits)")
        } else {
            String::new()
        };
        v.reasons.push(format!(
            "container {name}: OOM-killed {}x in {window} at limit {}{others}{ago}; recommended {rec_s}",
            b.kills,
            Bytes(b.at)
        ));
    }
    let horizon = policy.forecast.horizon.secs() as f64;
    if let Some(fc) = &s.forecast {
        if let Some(ttl) = fc.time_to_limit.filter(|&t| t <= horizon && s.leak_due(l)) {
            v.severity = Severity::Critical;
            let when = if ttl < 60.0 {
                "hit within 1 min".to_string()
            } else {
                format!("hit in about {}", human_secs(ttl))
            };
            v.reasons.push(format!(
                "container {name}: limit {ls} {when} at +{} MiB/min ({}, {} restarts/24h); recommended {rec_s}",
                mib_per_min(fc.slope),
                fc.pattern.as_str(),
                h.restarts_since(now, 86400)
            ));
        }
    }
}

/// Less than half the headroom over the statistic: warned with the full headroom's figure, not
/// raised before it is critical (each raise is a restart or a resize). Far more than needed: a
/// cost note. (The headroom of the history's own number: a higher runtime floor says why
/// itself.)
fn headroom_and_cost(
    v: &mut ContainerVerdict,
    s: &Sizing<'_>,
    limit: u64,
    rec: u64,
    stat_label: &str,
    policy: &PolicySpec,
) {
    let (name, l) = (v.container.clone(), limit as f64);
    let full = round_up_mi(s.sized).clamp(policy.limits.min.0, policy.limits.max.0);
    if s.has_peaks
        && v.severity < Severity::Critical
        && l < s.stat * (1.0 + policy.headroom.0 / 2.0)
        && full > limit
    {
        v.severity = Severity::Warn;
        v.reasons.push(format!(
            "container {name}: limit {} leaves {}% headroom over the {stat_label} {} (policy {}%); consider {}",
            Bytes(l),
            ((l / s.stat - 1.0) * 100.0).max(0.0).floor(),
            Bytes(s.stat),
            (policy.headroom.0 * 100.0).round(),
            format_bytes(full as f64),
        ));
    }
    if v.severity == Severity::Ok && l > policy.over_provisioned_ratio * rec as f64 {
        v.severity = Severity::Info;
        v.reasons.push(format!(
            "container {name}: limit {} is {:.1}x the recommended {} ({stat_label} {}); consider lowering it",
            Bytes(l),
            l / rec as f64,
            format_bytes(rec as f64),
            Bytes(s.stat)
        ));
    }
}

/// The runtime configuration's findings ([`crate::memory_settings`]) in a verdict: one line
/// each; a floor under the recommendation; a setting that alone reaches the limit is critical
/// (raised in mutate mode, denied in enforce mode), the rest warn.
pub(super) fn settings(
    v: &mut ContainerVerdict,
    rt: Analysis,
    floor: Option<u64>,
    policy: &PolicySpec,
) {
    if rt.is_empty() {
        return;
    }
    if let (Some(f), Some(l)) = (floor, v.limit) {
        if f > l && v.recommended.is_none_or(|r| r < f) {
            v.recommended = Some(f);
            v.wanted = Some(v.wanted.map_or(f, |w| w.max(f)));
        }
    }
    for f in &rt.findings {
        v.severity = v.severity.max(match f.certainty {
            Certainty::Certain => Severity::Critical,
            Certainty::Likely => Severity::Warn,
        });
        v.reasons.push(f.line.clone());
    }
    if let (true, Some(limit), Action::None) = (rt.certain(), v.limit, v.action) {
        v.action = match policy.mode {
            Mode::Mutate => match v.recommended {
                Some(to) if to > limit => Action::Raise { to },
                _ => Action::None,
            },
            Mode::Enforce => Action::Deny,
            _ => Action::None,
        };
    }
    v.runtime = Some(rt);
}

/// A container limit may not exceed the pod-level limit (the apiserver refuses it): a raise or
/// an added limit past it is not made, and the line says where the fix goes.
pub(super) fn within_pod(v: &mut ContainerVerdict, pod_limit: Option<u64>) {
    let Some(pod) = pod_limit else {
        return;
    };
    if let Action::Raise { to } | Action::Add { to } = v.action {
        if to > pod {
            v.action = Action::None;
            v.reasons.push(format!(
                "container {}: needs {}, above the pod's memory limit {} (spec.resources.limits.memory): raise that first",
                v.container,
                to_quantity(to),
                to_quantity(pod)
            ));
        }
    }
}

/// The policy's `missingLimit` on a container without a limit.
pub(super) fn missing_limit(v: &mut ContainerVerdict, policy: &PolicySpec, rec: Option<u64>) {
    match policy.missing_limit {
        MissingLimit::Ignore => {
            v.reasons.retain(|r| !r.contains("no memory limit"));
            if v.severity == Severity::Warn {
                v.severity = Severity::Ok;
            }
        }
        MissingLimit::Warn => {}
        MissingLimit::Add => {
            if let (Some(to), Mode::Mutate | Mode::Enforce) = (rec, policy.mode) {
                v.action = Action::Add { to };
            }
        }
        MissingLimit::Deny => {
            if policy.mode == Mode::Enforce {
                v.severity = v.severity.max(Severity::Warn);
                v.action = Action::Deny;
                if rec.is_none() {
                    v.reasons.push(format!(
                        "container {}: no memory limit; every container needs one in this namespace",
                        v.container
                    ));
                }
            }
        }
    }
}
