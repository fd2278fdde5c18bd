//! The decision per container: recommended limit, severity, and a reason with the numbers.
//!
//! recommended = round up to Mi of the largest of: statistic(peaks) × (1 + headroom), the
//! forecast at the horizon (when it fits under the policy max), and the OOM bump from the
//! limit; clamped to the policy's min/max. Pure: the caller passes `now` and the history.

use serde::Serialize;

use crate::forecast::{self, Forecast, Pattern};
use crate::history::{ContainerHistory, WorkloadHistory, WorkloadKey};
use crate::policy::{MissingLimit, Mode, PolicySpec, Statistic};
use crate::quantity::{format_bytes, round_up_mi, Bytes, MI};
use crate::workload::{ContainerRole, ContainerSpec, MemoryField, Workload};

/// Annotation that opts a workload out of every check.
pub const EXCLUDE_ANNOTATION: &str = "oomguard.io/exclude";

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
    pub peak: Option<f64>,
    pub statistic: Option<f64>,
    pub oom_kills: u32,
    pub forecast: Option<Forecast>,
    /// The peaks may stop short of what the container needed (restarts or OOM kills in the
    /// window, or a source that cannot see them): nothing is recommended below what it has.
    #[serde(skip)]
    pub censored: bool,
    /// What the container's own configuration says (heap sizes, memory volumes, ...), when it
    /// says anything: see [`crate::runtime`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<crate::runtime::Analysis>,
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
        format!(
            "oomguard denied {} {}/{} (policy mode enforce for namespace {}): {}. To exclude this \
             workload, annotate it {}=\"true\".",
            self.workload.kind,
            self.workload.namespace,
            self.workload.name,
            self.workload.namespace,
            parts.join(" | "),
            EXCLUDE_ANNOTATION
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

/// Decides every container of a workload.
pub fn decide(
    workload: &Workload,
    history: HistoryStatus<'_>,
    policy: &PolicySpec,
    now: i64,
) -> Verdict {
    let unchecked = match history {
        HistoryStatus::Unavailable(why) => {
            Some(format!("memory limits not checked (allowed): {why}"))
        }
        _ => None,
    };
    let found = match history {
        HistoryStatus::Found(w) => Some(w),
        _ => None,
    };
    let events_unseen = found.and_then(|w| w.events_unseen.as_deref());
    let containers: Vec<ContainerVerdict> = workload
        .containers
        .iter()
        .filter(|c| !policy.excludes_container(&c.name))
        .map(|c| {
            let h = found.and_then(|w| w.containers.get(&c.name));
            let available = !matches!(history, HistoryStatus::Unavailable(_));
            decide_container(c, h, available, events_unseen, policy, now)
        })
        .collect();
    let note = found.and_then(|w| workload_note(&containers, w, policy));
    Verdict {
        workload: workload.key(),
        mode: policy.mode,
        containers,
        unchecked,
        note,
    }
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

/// Decides one container whose history was found (the reconciler's entry: it sizes limits with
/// the same rule as admission). `h` None means the source knows nothing of the container yet.
pub fn decide_one(
    c: &ContainerSpec,
    h: Option<&ContainerHistory>,
    events_unseen: bool,
    policy: &PolicySpec,
    now: i64,
) -> ContainerVerdict {
    decide_container(c, h, true, events_unseen.then_some(""), policy, now)
}

/// The OOM bump of a container: its OOM kills answered at the limit they happened at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OomBumpAsk {
    /// The limit to ask for (before rounding and the policy's bounds).
    pub to: f64,
    /// The limit the kills behind it happened at, and how many there were at it.
    pub at: f64,
    pub kills: u32,
    /// Whether some kills happened at the current limit or above it: it is still too small.
    pub at_current: bool,
    /// The highest limit a kill happened at.
    pub highest: f64,
}

impl OomBumpAsk {
    /// Whether a kill happened at `limit` or above it (within half a MiB: the rounding of
    /// quantities and of sources), so that `limit` is known to be too small. Measured against
    /// the limit in question: a kill at the spec's limit says nothing of a higher limit the
    /// running pods were raised to in place.
    pub fn killed_at(&self, limit: f64) -> bool {
        self.highest >= limit - (MI as f64) / 2.0
    }
}

/// Kills are grouped by the limit they happened at; each group asks for
/// max(limit × ratio^steps, limit + min) with steps = ceil(log2(kills at it + 1)), at most
/// `maxSteps`. Kills at a limit below the current one ask at most that limit's bump: a raise
/// already answered them, and bumping again from today's limit would ratchet up to the policy
/// max for as long as they stay in the window. Kills at the current limit escalate as they
/// repeat. A kill whose limit is unknown counts at the limit in force at its time, else at
/// `current`. The ask is the largest group's; None without kills or limits.
pub fn oom_bump(
    h: &ContainerHistory,
    current: Option<f64>,
    bump: &crate::policy::OomBump,
) -> Option<OomBumpAsk> {
    // Limits are whole bytes; kills at one limit share its key.
    let mut at: std::collections::BTreeMap<u64, u32> = std::collections::BTreeMap::new();
    for k in &h.oom_kills {
        if let Some(l) = h.kill_limit(k).or(current).filter(|l| *l > 0.0) {
            *at.entry(l.round() as u64).or_insert(0) += 1;
        }
    }
    let max_steps = f64::from(bump.max_steps.max(1));
    let mut best: Option<OomBumpAsk> = None;
    for (&limit, &kills) in &at {
        let l = limit as f64;
        let steps = (f64::from(kills) + 1.0).log2().ceil().clamp(1.0, max_steps);
        let to = (l * bump.ratio.powf(steps)).max(l + bump.min.0 as f64);
        // Within half a MiB counts as the same limit (rounding of quantities and of sources).
        let at_current = current.is_some_and(|c| l >= c - (MI as f64) / 2.0);
        if best.is_none_or(|b| to > b.to) {
            best = Some(OomBumpAsk {
                to,
                at: l,
                kills,
                at_current,
                highest: l,
            });
        }
        if let Some(b) = best.as_mut() {
            b.at_current |= at_current;
            b.highest = b.highest.max(l);
        }
    }
    best
}

fn decide_container(
    c: &ContainerSpec,
    h: Option<&ContainerHistory>,
    history_available: bool,
    events_unseen: Option<&str>,
    policy: &PolicySpec,
    now: i64,
) -> ContainerVerdict {
    let name = &c.name;
    let mut v = ContainerVerdict {
        container: name.clone(),
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
        statistic: None,
        oom_kills: 0,
        forecast: None,
        censored: false,
        runtime: None,
    };
    if let MemoryField::Invalid(e) = &c.limit {
        v.severity = Severity::Warn;
        v.reasons.push(format!("container {name}: {e}"));
        return v;
    }
    // What the container's own configuration needs (heap sizes, memory volumes): findings with
    // or without history, and a floor under every recommendation.
    let limit_text = match &c.limit {
        MemoryField::Valid { raw, .. } => raw.as_str(),
        _ => "",
    };
    let rt = crate::runtime::analyse(name, &c.runtime, v.limit, limit_text, v.request);
    let floor = rt
        .needs
        .map(|n| round_up_mi(n as f64).clamp(policy.limits.min.0, policy.limits.max.0));
    let window = policy.history.window;
    // OOM kills are evidence with any amount of history: a crash-looping container has sparse
    // peaks (it is mostly in back-off) and the peak before each kill is rarely scraped.
    let enough = h.filter(|h| {
        !h.oom_kills.is_empty()
            || (h.peaks.intervals > 0 && h.covered_secs >= policy.history.min_history.secs())
    });
    let Some(h) = enough else {
        if !history_available {
            add_runtime(&mut v, rt, floor, policy);
            return v;
        }
        // The workload's note says it once; a missing limit needs no history to be wrong.
        v.severity = Severity::Unknown;
        // A plain init container runs to completion before the app starts (a wait loop, a
        // copy): its missing limit is not warned about without history, unless its own
        // configuration says what it needs (`missingLimit: add` and `deny` still apply).
        let quiet_init = c.role == ContainerRole::Init
            && policy.missing_limit == MissingLimit::Warn
            && floor.is_none();
        if v.limit.is_none() && !quiet_init {
            if policy.missing_limit != MissingLimit::Ignore {
                v.severity = Severity::Warn;
                v.reasons.push(match (floor, &rt.explain) {
                    (Some(f), Some(why)) => format!(
                        "container {name}: no memory limit; {why}: set resources.limits.memory >= {}",
                        crate::quantity::to_quantity(f)
                    ),
                    _ => format!(
                        "container {name}: no memory limit; set resources.limits.memory (no history yet to size it from)"
                    ),
                });
            }
            v.recommended = floor;
            apply_missing_limit(&mut v, policy, floor);
        }
        add_runtime(&mut v, rt, floor, policy);
        return v;
    };

    let headroom = 1.0 + policy.headroom.0;
    let steady = match policy.statistic {
        Statistic::Auto => forecast::steady_limit(
            h.fit(),
            h.peaks.p98,
            h.peaks.max,
            policy.headroom.0,
            policy.forecast.horizon.secs(),
        ),
        _ => None,
    };
    // `auto` on a steady series: what the statistic amounts to, so that sized = stat × headroom.
    let stat = steady.map_or_else(|| policy.statistic.of(&h.peaks), |l| l / headroom);
    let has_peaks = h.peaks.intervals > 0;
    if has_peaks {
        v.peak = Some(h.peaks.max);
        v.statistic = Some(stat);
    }
    v.oom_kills = h.oom_count();
    let sized = stat * headroom;
    let mut candidates = vec![sized];

    let current = v.limit.map(|l| l as f64);
    let bump = oom_bump(h, current.or(h.runtime_limit), &policy.oom_bump);
    if let Some(b) = &bump {
        candidates.push(b.to);
    }

    let max = policy.limits.max.0 as f64;
    let fc = policy.forecast.enabled.then(|| {
        forecast::project(
            h.fit(),
            now,
            policy.forecast.horizon.secs(),
            v.limit.map(|l| l as f64).or(h.runtime_limit),
        )
    });
    // A leak is sized by where it may be `forecast.leakRoom` ahead (three horizons by default;
    // the forecast's upper band: the first peak past the line comes about two noise sigmas above
    // it, and the slope may be at the top of its interval), so that a raise lasts two horizons
    // before the leak is critical again (sized for the horizon itself it is critical again at
    // once, and a raise every cooldown chases it); only while the container has not restarted
    // in the window: a saw-tooth's earlier lifetimes already show in the peaks how high it goes.
    // When that is past the policy max, the max if it lasts the horizon; else no limit within
    // the policy does (`leak_beyond_max`).
    let mut leak_room = None;
    let mut leak_beyond_max = false;
    if let Some(fc) = &fc {
        if fc.pattern == Pattern::Leak && h.fit().lifetimes <= 1 {
            let ahead = policy.forecast.leak_room_secs();
            let room = forecast::project(h.fit(), now, ahead, None).high;
            leak_room = Some(room);
            if room <= max {
                candidates.push(room);
            } else if fc.high <= max {
                candidates.push(max);
            } else {
                leak_beyond_max = true;
            }
        }
    }
    let raw = candidates.iter().copied().fold(0.0, f64::max);
    let mut rec = round_up_mi(raw).clamp(policy.limits.min.0, policy.limits.max.0);
    // A limit below the request is invalid; never recommend one.
    if let Some(req) = v.request {
        rec = rec.max(req);
    }
    // Never lower from censored data: after restarts or OOM kills the peaks stop at the limit
    // (the kernel killed the container there), and without the restart source a kill may have
    // gone unseen.
    let censored = !h.restarts.is_empty() || !h.oom_kills.is_empty() || events_unseen.is_some();
    v.censored = censored;
    if let (true, Some(l)) = (censored, v.limit) {
        rec = rec.max(l);
    }
    // What makes a limit critical (it will OOM): below the window's peak, below what the kills
    // ask or killed at it, or a leak sized by its forecast reaching it within the horizon (a
    // saw-tooth's lifetimes restart below where the forecast line would go: its kills and
    // peaks speak for it).
    let horizon = policy.forecast.horizon.secs() as f64;
    let leak_due = |fc: &Forecast, l: f64| {
        leak_room.is_some()
            && fc.pattern == Pattern::Leak
            && forecast::project(h.fit(), now, policy.forecast.horizon.secs(), Some(l))
                .time_to_limit
                .is_some_and(|t| t <= horizon)
    };
    let critical_at = |l: f64| {
        (has_peaks && l < h.peaks.max)
            || bump.is_some_and(|b| {
                l < round_up_mi(b.to.min(max)) as f64 - 0.5 || (b.killed_at(l) && l < max)
            })
            || fc.as_ref().is_some_and(|fc| leak_due(fc, l))
    };
    // Where a leak that has not restarted in the forecast's span may be `lowering.growthAhead`
    // from now: the forecast's upper band (a saw-tooth's lifetimes show in the peaks how high
    // it goes).
    let growth_ahead = policy.lowering.growth_ahead.secs();
    let grows_to = fc
        .as_ref()
        .filter(|fc| {
            growth_ahead > 0
                && fc.pattern == Pattern::Leak
                && fc.slope > 0.0
                && h.fit().lifetimes <= 1
        })
        .map(|_| forecast::project(h.fit(), now, growth_ahead, None).high);
    // Change a limit only when it is worth a restart or a resize: lower only when it saves
    // `lowering.minSaving` and a growing series is not forecast to reach the lower limit within
    // `lowering.growthAhead`; raise only when it is critical (it would OOM: below the peak,
    // killed, a leak due). Not to restore headroom over peaks that grew towards it (that is
    // warned, below): each raise is a restart or a resize, and a slowly growing workload would
    // get one every few days with no OOM between them (a ratchet); once it does OOM, the bump
    // answers with more than the headroom would have.
    let enough_at = |l: f64| !critical_at(l);
    if let Some(l) = v.limit.filter(|&l| l <= policy.limits.max.0) {
        let lf = l as f64;
        if rec < l && (rec as f64) > lf * (1.0 - policy.lowering.min_saving.0) {
            rec = l;
        }
        if rec < l && grows_to.is_some_and(|g| g > rec as f64) {
            rec = l;
        }
        if rec > l && enough_at(lf) {
            rec = l;
        }
        // The running pods' limit above the spec's (raised in place by the reconciler): the
        // same rule measured against it. A raise past it that it does not need is not made;
        // the spec gets the running limit (a second, slightly higher raise a few hours after
        // the first would be one more resize for nothing).
        // And no lowering below it either while a growing series is forecast to reach the
        // lower limit (the new pods would start under the room the raise gave).
        if let Some(r) = h.runtime_limit.filter(|&r| r > lf && r <= max) {
            let rf = rec as f64;
            if (rf > r && enough_at(r)) || (rf < r && grows_to.is_some_and(|g| g > rf)) {
                rec = r.ceil() as u64;
            }
        }
    }
    // Never below what the runtime configuration needs.
    let history_rec = rec;
    if let Some(f) = floor {
        rec = rec.max(f);
    }
    v.recommended = Some(rec);
    let beyond = leak_room.unwrap_or(0.0);
    v.wanted = Some(round_up_mi(raw.max(beyond)).max(rec));
    let rec_s = format_bytes(rec as f64);
    let stat_label = if steady.is_some() {
        format!("{window} steady p98")
    } else {
        format!("{} {}", window, policy.statistic.as_str())
    };

    match v.limit {
        None => {
            v.severity = Severity::Warn;
            v.reasons.push(match &rt.explain {
                Some(why) if rec > history_rec => {
                    format!("container {name}: no memory limit; recommended {rec_s} ({why})")
                }
                // Sized by a leak's room, not by the statistic: say so with its numbers.
                _ if leak_room.is_some_and(|r| r > sized && r <= max) => format!(
                    "container {name}: no memory limit; recommended {rec_s} ({stat_label} {} + {} of leak at {} MiB/min)",
                    Bytes(stat),
                    crate::policy::Duration(policy.forecast.leak_room_secs()),
                    fc.as_ref().map_or_else(|| "0".to_string(), |f| mib_per_min(f.slope)),
                ),
                _ => format!(
                    "container {name}: no memory limit; recommended {rec_s} ({stat_label} {} +{}%)",
                    Bytes(stat),
                    (policy.headroom.0 * 100.0).round()
                ),
            });
            apply_missing_limit(&mut v, policy, Some(rec));
        }
        Some(limit) => {
            let l = limit as f64;
            let ls = Bytes(l);
            if has_peaks && l < h.peaks.max {
                v.severity = Severity::Critical;
                v.reasons.push(format!(
                    "container {name}: limit {ls} is below the {window} peak {}; recommended {rec_s}",
                    Bytes(h.peaks.max)
                ));
            }
            if let Some(b) = bump {
                // Below what the kills ask (a raise that did not go far enough, or a limit put
                // back down), or killed at this very limit.
                if l < round_up_mi(b.to.min(max)) as f64 - 0.5 || (b.at_current && l < max) {
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
            }
            if let Some(fc) = &fc {
                if let Some(ttl) = fc.time_to_limit {
                    if leak_due(fc, l) && ttl <= horizon {
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
            // Less than half the headroom over the statistic: warned with the full headroom's
            // figure, not raised before it is critical (see above). (The headroom of the
            // history's own number: a higher runtime floor says why itself.)
            let full = round_up_mi(sized).clamp(policy.limits.min.0, policy.limits.max.0);
            if has_peaks
                && v.severity < Severity::Critical
                && l < stat * (1.0 + policy.headroom.0 / 2.0)
                && full > limit
            {
                v.severity = Severity::Warn;
                v.reasons.push(format!(
                    "container {name}: limit {ls} leaves {}% headroom over the {stat_label} {} (policy {}%); consider {}",
                    ((l / stat - 1.0) * 100.0).max(0.0).floor(),
                    Bytes(stat),
                    (policy.headroom.0 * 100.0).round(),
                    format_bytes(full as f64),
                ));
            }
            if v.severity == Severity::Ok && l > policy.over_provisioned_ratio * rec as f64 {
                v.severity = Severity::Info;
                v.reasons.push(format!(
                    "container {name}: limit {ls} is {:.1}x the recommended {rec_s} ({stat_label} {}); consider lowering it",
                    l / rec as f64,
                    Bytes(stat)
                ));
            }
            if v.severity >= Severity::Warn && rec > limit {
                v.action = match policy.mode {
                    Mode::Mutate => Action::Raise { to: rec },
                    Mode::Enforce if v.severity == Severity::Critical => Action::Deny,
                    _ => Action::None,
                };
            }
        }
    }
    if leak_beyond_max {
        if let Some(fc) = &fc {
            v.reasons.push(format!(
                "container {name}: leaks +{} MiB/min; no limit up to the policy max {} lasts {}: fix the leak or plan restarts",
                mib_per_min(fc.slope),
                Bytes(max),
                policy.forecast.horizon
            ));
        }
    }
    v.forecast = fc;
    add_runtime(&mut v, rt, floor, policy);
    v
}

/// The runtime configuration's findings (crate::runtime) in a verdict: one line each; a floor
/// under the recommendation; a setting that alone reaches the limit is critical (raised in
/// mutate mode, denied in enforce mode), the rest warn.
fn add_runtime(
    v: &mut ContainerVerdict,
    rt: crate::runtime::Analysis,
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
            crate::runtime::Certainty::Certain => Severity::Critical,
            crate::runtime::Certainty::Likely => Severity::Warn,
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

fn apply_missing_limit(v: &mut ContainerVerdict, policy: &PolicySpec, rec: Option<u64>) {
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
