//! The OOM bump: OOM kills answered at the limit they happened at (one rule for the webhook,
//! `check`, `recommend`, the reconciler, the API and the replay).

use crate::history::ContainerHistory;
use crate::quantity::MI;

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
///
/// A group is *answered* once a raise above its limit has run clean — peaks seen under the
/// raised limit for `answered_after` seconds and no kill since (the limit history tells when the
/// raise came): it then asks at most the limit that answered it, not its own bump. Peaks
/// observed below a raised limit are the answer to the kills below it; bumping on as though the
/// raise never happened asked a raised workload for more at every deploy (256Mi → 443Mi, then
/// 563Mi for the same old kills).
pub fn oom_bump(
    h: &ContainerHistory,
    current: Option<f64>,
    bump: &crate::policy::OomBump,
    answered_after: u64,
) -> Option<OomBumpAsk> {
    // Limits are whole bytes; kills at one limit share its key: (kills, those that escalate,
    // the last one's time). A kill at a limit the workload had already been raised above (a
    // pod the rollout had not replaced yet, per the limit history) counts but does not
    // escalate: the raise was not there to prevent it.
    let half = (MI as f64) / 2.0;
    let mut at: std::collections::BTreeMap<u64, (u32, u32, i64)> =
        std::collections::BTreeMap::new();
    for k in &h.oom_kills {
        if let Some(l) = h.kill_limit(k).or(current).filter(|l| *l > 0.0) {
            let straggler = h
                .limit_history
                .iter()
                .rev()
                .find(|c| c.since <= k.t)
                .is_some_and(|c| c.bytes > l + half);
            let e = at.entry(l.round() as u64).or_insert((0, 0, k.t));
            e.0 += 1;
            e.1 += u32::from(!straggler);
            e.2 = e.2.max(k.t);
        }
    }
    let max_steps = f64::from(bump.max_steps.max(1));
    let mut best: Option<OomBumpAsk> = None;
    for (&limit, &(kills, escalating, last)) in &at {
        let l = limit as f64;
        let steps = (f64::from(escalating) + 1.0)
            .log2()
            .ceil()
            .clamp(1.0, max_steps);
        let mut to = (l * bump.ratio.powf(steps)).max(l + bump.min.0 as f64);
        if let Some(answer) = answered_by(h, l, last, answered_after) {
            to = to.min(answer);
        }
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

/// The limit that answered kills at `limit` (the last at `last_kill`): the lowest limit in force
/// since the first raise above it, when that raise has run clean — no kill since, and peaks
/// under it up to at least `clean_secs` after it. None while it has not (or the limit history
/// cannot tell).
fn answered_by(h: &ContainerHistory, limit: f64, last_kill: i64, clean_secs: u64) -> Option<f64> {
    let same = |b: f64| (b - limit).abs() <= (MI as f64) / 2.0;
    let mut changes = h.limit_history.iter().filter(|c| c.since > last_kill);
    let raise = changes.find(|c| c.bytes > limit && !same(c.bytes))?;
    // The limits in force since: each must be above the killed one.
    let mut lowest = raise.bytes;
    for c in h.limit_history.iter().filter(|c| c.since > raise.since) {
        if c.bytes <= limit || same(c.bytes) {
            return None;
        }
        lowest = lowest.min(c.bytes);
    }
    if h.oom_kills.iter().any(|k| k.t >= raise.since) {
        return None;
    }
    // Peaks seen since the raise, up to the latest (a long-running source keeps only a tail of
    // the samples: the latest one is what is known to be there).
    let latest = h.latest()?.t;
    let clean = latest.saturating_sub(raise.since);
    (clean >= i64::try_from(clean_secs).unwrap_or(i64::MAX)).then_some(lowest)
}
