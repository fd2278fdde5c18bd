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
