//! The recommended memory request.
//!
//! The rule: the **p95 of the 5-minute working-set peaks** over the policy window, rounded up to
//! Mi, at least the policy's `limits.min` and at most the recommended limit. No headroom is added:
//! the limit carries the headroom (it is what the OOM killer enforces), while the request is
//! what the scheduler reserves. A container above its request is the first to be evicted under
//! node memory pressure, so the request covers its usual peak — 95% of the 5-minute intervals
//! stay under it — without reserving the rare bursts on every node. It may be lower than the
//! current request: recommendations that only ever go up turn into permanent over-provisioning;
//! but never from censored peaks (restarts or OOM kills in the window): then at least the
//! current request.

use crate::history::ContainerHistory;
use crate::policy::PolicySpec;
use crate::quantity::round_up_mi;

/// The rule on a p95 and the recommended limit, bytes.
pub fn from_p95(p95: f64, recommended_limit: u64, policy: &PolicySpec) -> u64 {
    round_up_mi(p95)
        .max(policy.limits.min.0)
        .min(recommended_limit)
}

/// The recommended request of a container with history `h`, given its recommended limit, its
/// current request and whether its peaks are censored.
pub fn recommended(
    h: &ContainerHistory,
    recommended_limit: u64,
    current: Option<u64>,
    censored: bool,
    policy: &PolicySpec,
) -> u64 {
    from_p95(h.peaks.p95, recommended_limit, policy)
        .max(current.filter(|_| censored).unwrap_or(0))
        .min(recommended_limit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::PeakStats;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn the_p95_rounded_up_within_min_and_the_limit() {
        let policy = PolicySpec::default();
        assert_eq!(from_p95(300.2 * MIB as f64, 400 * MIB, &policy), 301 * MIB);
        // Never above the recommended limit, never below the policy's minimum.
        assert_eq!(from_p95(500.0 * MIB as f64, 400 * MIB, &policy), 400 * MIB);
        assert_eq!(from_p95(1.0, 400 * MIB, &policy), policy.limits.min.0);
    }

    #[test]
    fn censored_peaks_keep_at_least_the_current_request() {
        let policy = PolicySpec::default();
        let h = ContainerHistory {
            peaks: PeakStats::from_peaks(&[100.0 * MIB as f64]),
            ..Default::default()
        };
        let current = Some(200 * MIB);
        assert_eq!(
            recommended(&h, 400 * MIB, current, false, &policy),
            100 * MIB
        );
        assert_eq!(
            recommended(&h, 400 * MIB, current, true, &policy),
            200 * MIB
        );
        // ... but never above the recommended limit.
        assert_eq!(
            recommended(&h, 150 * MIB, current, true, &policy),
            150 * MIB
        );
    }
}
