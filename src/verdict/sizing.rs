//! Sizing from history: the limit a container needs, and when a change to it is worth making.
//!
//! recommended = round up to Mi of the largest of: the statistic of the per-interval peaks
//! × (1 + headroom) (`auto`: a steady series' p98, never below max + noise + growth); for a leak
//! that has not restarted in the window, the forecast's upper band `forecast.leakRoom` ahead
//! (the policy max when that is past it but the horizon still fits); and the OOM bump. Then
//! clamped to `limits`, never below the request, never below the current limit when the peaks
//! are censored; lowered only when it saves `lowering.minSaving` and a leak is not forecast to
//! reach the lower value within `lowering.growthAhead`; raised only when the current limit is
//! critical (it would OOM).

use crate::forecast::{self, Forecast, Pattern};
use crate::history::ContainerHistory;
use crate::policy::{PolicySpec, Statistic};
use crate::quantity::round_up_mi;

use super::bump::{oom_bump, OomBumpAsk};

/// What the history says a container needs, with the facts behind it.
pub(super) struct Sizing<'a> {
    h: &'a ContainerHistory,
    policy: &'a PolicySpec,
    now: i64,
    /// `auto` found the series steady: the statistic is its p98 rule.
    pub steady: bool,
    /// The statistic of the peaks (what `sized` is the headroom over).
    pub stat: f64,
    /// The statistic × (1 + headroom).
    pub sized: f64,
    pub has_peaks: bool,
    pub bump: Option<OomBumpAsk>,
    /// The forecast at the horizon against the limit in force (None: forecasts disabled).
    pub forecast: Option<Forecast>,
    /// For a leak that has not restarted in the window: where it may be `leakRoom` ahead.
    pub leak_room: Option<f64>,
    /// No limit up to the policy max carries the leak through the horizon.
    pub leak_beyond_max: bool,
    /// The largest of the candidates, before rounding and bounds.
    pub raw: f64,
    /// Restarts or OOM kills in the window (or a source that cannot see them): the peaks may
    /// stop short of what the container needed, so nothing is recommended below what it has.
    pub censored: bool,
    /// The recommendation from history, after the change rules (before a runtime floor).
    pub rec: u64,
}

impl<'a> Sizing<'a> {
    pub fn new(
        limit: Option<u64>,
        request: Option<u64>,
        h: &'a ContainerHistory,
        events_unseen: bool,
        policy: &'a PolicySpec,
        now: i64,
    ) -> Sizing<'a> {
        let fit = forecast::fit_of(h);
        let headroom = 1.0 + policy.headroom.0;
        let steady_limit = match policy.statistic {
            Statistic::Auto => forecast::steady_limit(
                fit,
                h.peaks.p98,
                h.peaks.max,
                policy.headroom.0,
                policy.forecast.horizon.secs(),
            ),
            _ => None,
        };
        // `auto` on a steady series: what the statistic amounts to, so that sized = stat ×
        // headroom.
        let stat = steady_limit.map_or_else(|| policy.statistic.of(&h.peaks), |l| l / headroom);
        let sized = stat * headroom;
        let mut candidates = vec![sized];
        let current = limit.map(|l| l as f64);
        let bump = oom_bump(
            h,
            current.or(h.runtime_limit),
            &policy.oom_bump,
            policy.history.min_history.secs(),
        );
        if let Some(b) = &bump {
            candidates.push(b.to);
        }
        let max = policy.limits.max.0 as f64;
        let fc = policy.forecast.enabled.then(|| {
            forecast::project(
                fit,
                now,
                policy.forecast.horizon.secs(),
                current.or(h.runtime_limit),
            )
        });
        // A leak is sized by where it may be `forecast.leakRoom` ahead (the forecast's upper
        // band: the first peak past the line comes about two noise sigmas above it, and the
        // slope may be at the top of its interval), so that a raise lasts several horizons
        // before the leak is critical again (sized for the horizon itself it is critical again
        // at once, and a raise every cooldown chases it); only while the container has not
        // restarted in the window: a saw-tooth's earlier lifetimes already show in the peaks
        // how high it goes. When that is past the policy max, the max if it lasts the horizon;
        // else no limit within the policy does (`leak_beyond_max`).
        let mut leak_room = None;
        let mut leak_beyond_max = false;
        if let Some(fc) = &fc {
            if fc.pattern == Pattern::Leak && fit.lifetimes <= 1 {
                let room = forecast::project(fit, now, policy.forecast.leak_room_secs(), None).high;
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
        let censored = !h.restarts.is_empty() || !h.oom_kills.is_empty() || events_unseen;
        let mut s = Sizing {
            h,
            policy,
            now,
            steady: steady_limit.is_some(),
            stat,
            sized,
            has_peaks: h.peaks.intervals > 0,
            bump,
            forecast: fc,
            leak_room,
            leak_beyond_max,
            raw,
            censored,
            rec: 0,
        };
        s.rec = s.worth_changing(s.bounded(limit, request), limit);
        s
    }

    /// The candidates' largest, rounded up to Mi and within the policy's bounds, never below the
    /// request (a limit below it is invalid) nor, from censored peaks, below the current limit.
    fn bounded(&self, limit: Option<u64>, request: Option<u64>) -> u64 {
        let p = self.policy;
        let mut rec = round_up_mi(self.raw).clamp(p.limits.min.0, p.limits.max.0);
        if let Some(req) = request {
            rec = rec.max(req);
        }
        // Never lower from censored data: after restarts or OOM kills the peaks stop at the
        // limit (the kernel killed the container there), and without the restart source a kill
        // may have gone unseen.
        if let (true, Some(l)) = (self.censored, limit) {
            rec = rec.max(l);
        }
        rec
    }

    /// Change a limit only when it is worth a restart or a resize: lower only when it saves
    /// `lowering.minSaving` and a growing series is not forecast to reach the lower limit within
    /// `lowering.growthAhead`; raise only when it is critical (it would OOM: below the peak,
    /// killed, a leak due). Not to restore headroom over peaks that grew towards it (that is
    /// warned): each raise is a restart or a resize, and a slowly growing workload would get one
    /// every few days with no OOM between them (a ratchet); once it does OOM, the bump answers
    /// with more than the headroom would have.
    fn worth_changing(&self, mut rec: u64, limit: Option<u64>) -> u64 {
        let p = self.policy;
        let Some(l) = limit.filter(|&l| l <= p.limits.max.0) else {
            return rec;
        };
        let lf = l as f64;
        let grows_to = self.grows_to();
        if rec < l && (rec as f64) > lf * (1.0 - p.lowering.min_saving.0) {
            rec = l;
        }
        if rec < l && grows_to.is_some_and(|g| g > rec as f64) {
            rec = l;
        }
        if rec > l && !self.critical_at(lf) {
            rec = l;
        }
        // The running pods' limit above the spec's (raised in place by the reconciler): the same
        // rule measured against it. A raise past it that it does not need is not made; the spec
        // gets the running limit (a second, slightly higher raise a few hours after the first
        // would be one more resize for nothing). And no lowering below it either while a growing
        // series is forecast to reach the lower limit (the new pods would start under the room
        // the raise gave).
        let max = p.limits.max.0 as f64;
        if let Some(r) = self.h.runtime_limit.filter(|&r| r > lf && r <= max) {
            let rf = rec as f64;
            if (rf > r && !self.critical_at(r)) || (rf < r && grows_to.is_some_and(|g| g > rf)) {
                rec = r.ceil() as u64;
            }
        }
        rec
    }

    /// Where a leak that has not restarted in the forecast's span may be `lowering.growthAhead`
    /// from now: the forecast's upper band (a saw-tooth's lifetimes show in the peaks how high
    /// it goes).
    fn grows_to(&self) -> Option<f64> {
        let ahead = self.policy.lowering.growth_ahead.secs();
        let fit = forecast::fit_of(self.h);
        self.forecast
            .as_ref()
            .filter(|fc| {
                ahead > 0 && fc.pattern == Pattern::Leak && fc.slope > 0.0 && fit.lifetimes <= 1
            })
            .map(|_| forecast::project(fit, self.now, ahead, None).high)
    }

    /// Below the window's peak.
    pub fn below_peak(&self, l: f64) -> bool {
        self.has_peaks && l < self.h.peaks.max
    }

    /// Below what the kills ask (a raise that did not go far enough, or a limit put back down),
    /// or killed at this very limit (and the policy max still leaves room).
    pub fn under_bump(&self, l: f64) -> bool {
        let max = self.policy.limits.max.0 as f64;
        self.bump.is_some_and(|b| {
            l < round_up_mi(b.to.min(max)) as f64 - 0.5 || (b.killed_at(l) && l < max)
        })
    }

    /// A leak sized by its forecast reaching `l` within the horizon (a saw-tooth's lifetimes
    /// restart below where the forecast line would go: its kills and peaks speak for it).
    pub fn leak_due(&self, l: f64) -> bool {
        let horizon = self.policy.forecast.horizon.secs();
        self.leak_room.is_some()
            && self
                .forecast
                .as_ref()
                .is_some_and(|fc| fc.pattern == Pattern::Leak)
            && forecast::project(forecast::fit_of(self.h), self.now, horizon, Some(l))
                .time_to_limit
                .is_some_and(|t| t <= horizon as f64)
    }

    /// Whether a limit of `l` would OOM: below the peak, under the kills' bump, a leak due.
    pub fn critical_at(&self, l: f64) -> bool {
        self.below_peak(l) || self.under_bump(l) || self.leak_due(l)
    }
}
