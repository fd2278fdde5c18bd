//! The closed loop: time is played forward per container; the limit in force shapes the history
//! the next decision sees, and the limit changes only where the product (or a baseline's own
//! actuator) would change it.
//!
//! Per 5-minute interval of a series:
//! 1. the interval is scored against the limit in force (`score`);
//! 2. the sources record it ([`Observed`]): its peak censored at the limit; usage above the
//!    limit is an OOM kill at that limit, and the container restarts (same pod, same limit);
//! 3. at a deploy (every `deploy_every` from the first sample) new pods are created from the
//!    manifest; for oomguard the manifest is GitOps' (`recommend --emit-patches` applied before
//!    the deploy) or the provisioned limit, and in `mutate` mode the webhook admits it (it may
//!    raise, it never lowers);
//! 4. in `reconcile` mode the reconciler's plan (`reconcile::plan`: its cooldown, hourly cap and
//!    in-place raises) runs on the same history; baselines run their own actuator (VPA's
//!    updater evicts, Autopilot resizes in place; KRR and the tutorial's notebook have none).
//!
//! A decision at the end of an interval applies from the next one.

use std::sync::Arc;

use serde_json::{json, Value};

use super::baselines::{round_up_mib, Actuation, Recommender, View};
use super::score::{Score, Series, Tally};
use super::source::{Observed, Spans};
use crate::admission::{self, Endpoint, ScopeRule};
use crate::history::{Sample, WorkloadHistory, WorkloadKey};
use crate::policy::{Mode, PolicySpec};
use crate::reconcile::plan::{
    self, HpaInfo, PastAction, Plan, RecentActions, ScalableKind, WorkloadState,
};
use crate::reconcile::record::MAX_RECORDS;
use crate::verdict::{self, ContainerVerdict, HistoryStatus};
use crate::workload::{MemoryField, Workload, WorkloadKind};

/// Which halves of oomguard act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LoopMode {
    /// The webhook in `mutate` mode at each deploy; nothing in between.
    Mutate,
    /// The reconciler between deploys; the webhook only warns.
    Reconcile,
    /// Both.
    Both,
}

impl LoopMode {
    pub fn mutates(self) -> bool {
        matches!(self, LoopMode::Mutate | LoopMode::Both)
    }
    pub fn reconciles(self) -> bool {
        matches!(self, LoopMode::Reconcile | LoopMode::Both)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            LoopMode::Mutate => "mutate",
            LoopMode::Reconcile => "reconcile",
            LoopMode::Both => "both",
        }
    }
}

/// What the repository's manifest says at each deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Manifest {
    /// GitOps with `oomguard recommend --emit-patches` before each deploy: the recommendation
    /// (which lowers only when it saves `lowering.minSaving`); for a baseline, its own
    /// recommendation (KRR's report, VPA's admission controller).
    Recommended,
    /// The provisioned limit, never edited: only the webhook (raises), the reconciler and the
    /// baselines' own actuators change the limit; each deploy starts again from it.
    Provisioned,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoopConfig {
    pub mode: LoopMode,
    pub manifest: Manifest,
    /// Seconds between deploys (a rollout of new pods from the manifest).
    pub deploy_every: i64,
    /// History before scoring starts, seconds.
    pub warmup: i64,
    /// The forecast's span of recent peaks (the Prometheus source's `--history-recent`).
    pub recent: i64,
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig {
            mode: LoopMode::Both,
            manifest: Manifest::Recommended,
            deploy_every: 86_400,
            warmup: 86_400,
            recent: 7 * 86_400,
        }
    }
}

/// The state of one replayed container that every controller may look at.
pub struct Ctx<'a> {
    pub now: i64,
    pub first: i64,
    pub obs: &'a mut Observed,
    /// The trace's provisioned limit now.
    pub provisioned: f64,
    /// The limit the series started with: the manifest the workload was deployed from, before
    /// any recommendation replaced it.
    pub initial: f64,
    pub pod_started: i64,
    pub last_oom_run: Option<i64>,
}

impl Ctx<'_> {
    fn view(&self) -> View<'_> {
        View {
            now: self.now,
            first: self.first,
            peaks: &self.obs.peaks,
            ooms: &self.obs.ooms,
            limit: self.obs.limit(),
            pod_started: self.pod_started,
            last_oom_run: self.last_oom_run,
        }
    }
}

/// Who sets the limit in a replay.
pub trait Controller {
    /// At a deploy: the limit of the new pods.
    fn deploy(&mut self, ctx: &mut Ctx<'_>) -> f64;
    /// After each interval, in modes with runtime actuation: a change to make now.
    fn runtime(&mut self, ctx: &mut Ctx<'_>) -> Option<Actuation>;
}

/// Replays one series with a controller; `series_index` only names dumps.
pub fn replay(series: &Series, ctl: &mut dyn Controller, cfg: &LoopConfig) -> Score {
    let points: Vec<(Sample, f64)> = series
        .samples
        .iter()
        .copied()
        .zip(series.limits.iter().copied())
        .filter(|(s, _)| s.bytes > 0.0)
        .collect();
    let Some(&(first, first_limit)) = points.first() else {
        return Score::default();
    };
    let known = |l: f64| l.is_finite() && l > 0.0;
    let initial = points
        .iter()
        .map(|p| p.1)
        .find(|&l| known(l))
        .unwrap_or(first.bytes * 2.0);
    let initial = if known(first_limit) {
        first_limit
    } else {
        initial
    }
    .ceil();
    let mut obs = Observed::new(first.t, initial);
    let mut tally = Tally::new(first.t + cfg.warmup);
    let mut provisioned = initial;
    let mut pod_started = first.t;
    let mut container_started = first.t;
    let mut last_oom_run = None;
    let mut next_deploy = first.t + cfg.deploy_every;
    // OOMGUARD_REPLAY_TRACE=<series name> prints every limit change of that series to stderr.
    let trace = std::env::var("OOMGUARD_REPLAY_TRACE").is_ok_and(|n| n == series.name);
    for (s, prov) in points {
        if known(prov) {
            provisioned = prov.ceil();
        }
        let limit = obs.limit();
        tally.sample(s.t, s.bytes, limit);
        if obs.record(s.t, s.bytes, limit) {
            last_oom_run = Some(s.t - container_started);
            container_started = s.t;
        }
        let set = |ctx_limit: f64, to: f64, obs: &mut Observed, tally: &mut Tally| {
            if to != ctx_limit {
                if trace {
                    eprintln!(
                        "{} t={} +{:.2}d usage {:.0} MiB: limit {:.0} -> {:.0} MiB (ooms so far {})",
                        series.name,
                        s.t,
                        (s.t - first.t) as f64 / 86_400.0,
                        s.bytes / 1048576.0,
                        ctx_limit / 1048576.0,
                        to / 1048576.0,
                        obs.ooms.len()
                    );
                }
                tally.change(s.t, ctx_limit, to);
                obs.set_limit(s.t, to);
            }
        };
        if s.t >= next_deploy {
            while next_deploy <= s.t {
                next_deploy += cfg.deploy_every;
            }
            let mut ctx = Ctx {
                now: s.t,
                first: first.t,
                obs: &mut obs,
                provisioned,
                initial,
                pod_started,
                last_oom_run,
            };
            let to = ctl.deploy(&mut ctx);
            let from = obs.limit();
            set(from, to, &mut obs, &mut tally);
            pod_started = s.t;
            container_started = s.t;
            last_oom_run = None;
        }
        if cfg.mode.reconciles() {
            let mut ctx = Ctx {
                now: s.t,
                first: first.t,
                obs: &mut obs,
                provisioned,
                initial,
                pod_started,
                last_oom_run,
            };
            if let Some(a) = ctl.runtime(&mut ctx) {
                let from = obs.limit();
                set(from, a.limit, &mut obs, &mut tally);
                if a.restarts {
                    pod_started = s.t;
                    container_started = s.t;
                    last_oom_run = None;
                }
            }
        }
    }
    let score = tally.finish();
    // OOMGUARD_REPLAY_RATCHETS=1 names every series with ratchets (then trace it, above).
    if score.ratchets > 0 && std::env::var_os("OOMGUARD_REPLAY_RATCHETS").is_some() {
        eprintln!("ratchets: {} {}", series.name, score.ratchets);
    }
    score
}

/// The limits as provisioned in the trace (no feedback: the trace already lived with them).
pub struct Provisioned;

impl Controller for Provisioned {
    fn deploy(&mut self, ctx: &mut Ctx<'_>) -> f64 {
        ctx.provisioned
    }
    fn runtime(&mut self, ctx: &mut Ctx<'_>) -> Option<Actuation> {
        (ctx.provisioned != ctx.obs.limit()).then_some(Actuation {
            limit: ctx.provisioned,
            restarts: false,
        })
    }
}

/// A baseline recommender with its actuator: its recommendation at deploys (the manifest is
/// its report, or its admission controller sets it), its own actuator in between.
pub struct Baseline<'a> {
    pub rec: &'a dyn Recommender,
    pub manifest: Manifest,
}

impl Controller for Baseline<'_> {
    fn deploy(&mut self, ctx: &mut Ctx<'_>) -> f64 {
        let own_actuator = self.rec.sets_at_admission();
        if self.manifest == Manifest::Provisioned && !own_actuator {
            return ctx.provisioned;
        }
        let rec = self
            .rec
            .recommend(&ctx.view())
            .filter(|l| l.is_finite() && *l > 0.0)
            .map(round_up_mib);
        match rec {
            Some(r) => r,
            // Nothing to go on: the template's limit (an admission controller leaves it), or
            // the report's last one.
            None if own_actuator => ctx.provisioned,
            None => ctx.obs.limit(),
        }
    }

    fn runtime(&mut self, ctx: &mut Ctx<'_>) -> Option<Actuation> {
        self.rec.actuate(&ctx.view())
    }
}

/// One decision of oomguard's, kept for `--dump-decisions`.
#[derive(Debug, Clone)]
pub struct DecisionPoint {
    pub series: String,
    pub time: i64,
    /// deploy (the GitOps recommendation), admission (the webhook) or reconcile (the plan).
    pub decision: &'static str,
    /// The limit the decision was made on (the manifest's or the running pods').
    pub limit: u64,
    pub recommended: u64,
    /// The history file the decision was made on.
    pub history: Value,
    pub key: WorkloadKey,
}

/// Chooses up to `per_pool` decisions that changed the limit and `per_pool` others, uniformly
/// (reservoir sampling, deterministic for a seed).
pub struct DumpSampler {
    rng: super::synthetic::Rng,
    per_pool: usize,
    seen: [u64; 2],
    pools: [Vec<DecisionPoint>; 2],
}

impl DumpSampler {
    pub fn new(seed: u64, per_pool: usize) -> DumpSampler {
        DumpSampler {
            rng: super::synthetic::Rng::new(seed),
            per_pool,
            seen: [0, 0],
            pools: [Vec::new(), Vec::new()],
        }
    }

    /// Offers one decision; `build` runs only when it is kept.
    pub fn offer(&mut self, changed: bool, build: impl FnOnce() -> Option<DecisionPoint>) {
        let p = usize::from(changed);
        self.seen[p] += 1;
        let n = self.seen[p];
        let slot = if self.pools[p].len() < self.per_pool {
            None
        } else {
            let j = self.rng.next_u64() % n;
            match usize::try_from(j) {
                Ok(j) if j < self.per_pool => Some(j),
                _ => return,
            }
        };
        if let Some(d) = build() {
            match slot {
                None => self.pools[p].push(d),
                Some(j) => self.pools[p][j] = d,
            }
        }
    }

    pub fn into_points(self) -> Vec<DecisionPoint> {
        let [a, b] = self.pools;
        let mut v: Vec<DecisionPoint> = b.into_iter().chain(a).collect();
        v.sort_by(|x, y| x.series.cmp(&y.series).then(x.time.cmp(&y.time)));
        v
    }
}

/// The namespace replayed workloads live in.
pub const NAMESPACE: &str = "replay";
/// The container of a replayed workload.
pub const CONTAINER: &str = "main";

/// A Kubernetes name for a series: lower case, `[a-z0-9-]`, at most 63 characters.
pub fn workload_name(series: &str) -> String {
    let mut s: String = series
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() {
                c
            } else {
                '-'
            }
        })
        .collect();
    s.truncate(63);
    let s = s.trim_matches('-').to_string();
    if s.is_empty() {
        "series".into()
    } else {
        s
    }
}

/// The Deployment a replayed series runs as, with `limit` bytes on its one container.
pub fn deployment(name: &str, limit: u64) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": CONTAINER,
                    "image": "replay",
                    "resources": {"limits": {"memory": limit.to_string()}},
                }]},
            },
        },
    })
}

/// oomguard in the loop: `recommend` (GitOps) and the webhook at deploys, the reconciler in
/// between, all through the product's own functions with one policy.
pub struct Product<'a> {
    pub policy: &'a PolicySpec,
    pub cfg: LoopConfig,
    pub series: String,
    pub key: WorkloadKey,
    workload: Workload,
    manifest: Option<f64>,
    recent: RecentActions,
    pub dump: Option<&'a mut DumpSampler>,
    /// Reconciler plans that acted (raised), for the report.
    pub raises_in_place: u64,
    /// OOMGUARD_REPLAY_TRACE names this series: print why each change was recommended.
    trace: bool,
}

impl<'a> Product<'a> {
    /// `policy` is the one used everywhere (its mode and `reconcile.enabled` as the replay mode
    /// sets them: see [`policy_for`]).
    pub fn new(
        policy: &'a PolicySpec,
        cfg: LoopConfig,
        series: &str,
    ) -> anyhow::Result<Product<'a>> {
        let name = workload_name(series);
        let workload =
            Workload::from_object(WorkloadKind::Deployment, &deployment(&name, 1), NAMESPACE)
                .map_err(|e| anyhow::anyhow!("the replay's Deployment does not read: {e}"))?;
        Ok(Product {
            policy,
            cfg,
            series: series.to_string(),
            key: workload.key(),
            workload,
            manifest: None,
            recent: RecentActions::default(),
            dump: None,
            raises_in_place: 0,
            trace: std::env::var("OOMGUARD_REPLAY_TRACE").is_ok_and(|n| n == series),
        })
    }

    fn history(&self, ctx: &mut Ctx<'_>) -> Arc<WorkloadHistory> {
        let spans = self.spans();
        let h = ctx.obs.history(ctx.now, spans);
        let mut containers = std::collections::BTreeMap::new();
        containers.insert(CONTAINER.to_string(), h);
        Arc::new(WorkloadHistory {
            now: ctx.now,
            window_secs: self.policy.history.window.secs(),
            containers,
            events_unseen: None,
        })
    }

    fn spans(&self) -> Spans {
        Spans {
            window_secs: i64::try_from(self.policy.history.window.secs()).unwrap_or(i64::MAX),
            recent_secs: self.cfg.recent,
        }
    }

    /// The Deployment's container limit, bytes.
    fn set_limit(&mut self, limit: f64) {
        let bytes = limit.round() as u64;
        if let Some(c) = self.workload.containers.first_mut() {
            c.limit = MemoryField::Valid {
                raw: bytes.to_string(),
                bytes,
            };
        }
    }

    /// What the webhook's `/mutate` admits for a Deployment with `limit`: its answer
    /// ([`admission::answer`], a CREATE), the patch applied as the apiserver applies it, and the
    /// limit read back from the patched object.
    fn admit(&mut self, limit: f64, h: &WorkloadHistory, now: i64) -> f64 {
        self.set_limit(limit);
        let d = admission::answer(
            Endpoint::Mutate,
            &self.workload,
            None,
            HistoryStatus::Found(h),
            self.policy,
            ScopeRule::Create,
            now,
        );
        let Some(patch) = d.answer.patch else {
            return limit;
        };
        let mut object = deployment(&self.workload.name, limit.round() as u64);
        if json_patch::patch(&mut object, &patch).is_err() {
            return limit;
        }
        Workload::from_object(WorkloadKind::Deployment, &object, NAMESPACE)
            .ok()
            .and_then(|w| w.containers.first().and_then(|c| c.limit.bytes()))
            .map_or(limit, |b| b as f64)
    }

    /// `verdict::decide` on the Deployment with `limit`, as the webhook, `check` and
    /// `recommend` call it.
    fn decide(&mut self, limit: f64, h: &WorkloadHistory, now: i64) -> Option<ContainerVerdict> {
        self.set_limit(limit);
        let bytes = limit.round() as u64;
        let v = verdict::decide(&self.workload, HistoryStatus::Found(h), self.policy, now)
            .containers
            .pop();
        if let Some(v) = v
            .as_ref()
            .filter(|v| self.trace && v.recommended.is_some_and(|r| r != bytes))
        {
            eprintln!("  {} t={now}: {}", self.series, v.reasons.join(" | "));
        }
        v
    }

    fn offer(
        &mut self,
        decision: &'static str,
        ctx: &Ctx<'_>,
        limit: f64,
        rec: Option<u64>,
        changed: bool,
    ) {
        let Some(dump) = self.dump.as_deref_mut() else {
            return;
        };
        let Some(recommended) = rec else {
            return;
        };
        let spans = Spans {
            window_secs: i64::try_from(self.policy.history.window.secs()).unwrap_or(i64::MAX),
            recent_secs: self.cfg.recent,
        };
        let (series, key, now) = (&self.series, &self.key, ctx.now);
        let obs = &*ctx.obs;
        dump.offer(changed, || {
            Some(DecisionPoint {
                series: series.clone(),
                time: now,
                decision,
                limit: limit.round() as u64,
                recommended,
                history: obs.history_file(key, CONTAINER, now, spans),
                key: key.clone(),
            })
        });
    }
}

impl Controller for Product<'_> {
    fn deploy(&mut self, ctx: &mut Ctx<'_>) -> f64 {
        let h = self.history(ctx);
        let manifest = match self.cfg.manifest {
            Manifest::Provisioned => ctx.provisioned,
            Manifest::Recommended => {
                // The manifest in git: the one the series started with, then what `recommend`
                // gave. (Not the trace's provisioned limit at the first deploy: a change its
                // operator made meanwhile, e.g. vm205's 828 MiB for one sample, then 2544 MiB,
                // is the trace's own reaction, which the closed loop replaces.)
                let current = self.manifest.unwrap_or(ctx.initial);
                let v = self.decide(current, &h, ctx.now);
                let rec = v.as_ref().and_then(|v| v.recommended);
                let next = rec.map_or(current, |r| r as f64);
                self.offer("deploy", ctx, current, rec, next != current);
                next
            }
        };
        self.manifest = Some(manifest);
        if !self.cfg.mode.mutates() {
            return manifest;
        }
        let rec = self
            .decide(manifest, &h, ctx.now)
            .and_then(|v| v.recommended);
        let admitted = self.admit(manifest, &h, ctx.now);
        self.offer("admission", ctx, manifest, rec, admitted != manifest);
        admitted
    }

    fn runtime(&mut self, ctx: &mut Ctx<'_>) -> Option<Actuation> {
        let h = self.history(ctx);
        let limit = ctx.obs.limit();
        self.set_limit(limit);
        let state = WorkloadState {
            kind: ScalableKind::Deployment,
            workload: self.workload.clone(),
            replicas: 1,
            // Replicas are not replayed (a series is one container): the replica count belongs
            // to an HPA, so the reconciler's replica steps are recommendations only.
            hpa: Some(HpaInfo {
                min: 1,
                max: self.policy.reconcile.max_replicas,
            }),
            in_place_resize: true,
            max_unavailable: 1,
            rollout: Default::default(),
            reverted: Default::default(),
        };
        let p = plan::plan(&state, &h, self.policy, &self.recent, ctx.now);
        let mut raised = None;
        for step in p.actions() {
            if let Some(kind) = step.action() {
                self.recent.actions.push(PastAction {
                    at: ctx.now,
                    kind,
                    outcome: crate::reconcile::record::Outcome::Pending,
                });
            }
            if let Plan::RaiseLimit { to, .. } = step {
                raised = Some(*to as f64);
            }
        }
        // Only the last records are kept on the workload (the annotation's cap).
        if self.recent.actions.len() > MAX_RECORDS {
            let cut = self.recent.actions.len() - MAX_RECORDS;
            self.recent.actions.drain(..cut);
        }
        if self.dump.is_some() {
            let rec = self.decide(limit, &h, ctx.now).and_then(|v| v.recommended);
            self.offer("reconcile", ctx, limit, rec, raised.is_some());
        }
        raised.map(|to| {
            self.raises_in_place += 1;
            Actuation {
                limit: to,
                restarts: false,
            }
        })
    }
}

/// The policy a replay uses: the namespace's policy with the webhook's mode and the reconciler
/// switched as the replay's mode says (nothing else changes).
pub fn policy_for(base: &PolicySpec, mode: LoopMode) -> PolicySpec {
    let mut p = base.clone();
    p.mode = if mode.mutates() {
        Mode::Mutate
    } else {
        Mode::Warn
    };
    p.reconcile.enabled = mode.reconciles();
    p.reconcile.dry_run = false;
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{ContainerHistory, PeakStats};

    const MIB: f64 = 1024.0 * 1024.0;

    #[test]
    fn the_replayed_webhook_is_the_product_s_own_answer() {
        let policy = policy_for(&PolicySpec::default(), LoopMode::Mutate);
        let mut product = Product::new(&policy, LoopConfig::default(), "jvm-series").unwrap();
        let now = 1_800_000_000;
        let c = ContainerHistory {
            covered_secs: 7 * 86_400,
            peaks: PeakStats::from_peaks(&[100.0 * MIB; 2000]),
            ..Default::default()
        };
        let h = WorkloadHistory {
            now,
            window_secs: 7 * 86_400,
            containers: [(CONTAINER.to_string(), c)].into_iter().collect(),
            events_unseen: None,
        };
        // A comfortable limit for these peaks: admitted as it is.
        assert_eq!(product.admit(256.0 * MIB, &h, now), 256.0 * MIB);
        // The same series running `java -Xmx512m`: the webhook raises to what the heap and the
        // rest of the process need (its day-zero floor), and the replay keeps the patched value.
        let mut jvm = deployment(&product.workload.name, 256 << 20);
        jvm["spec"]["template"]["spec"]["containers"][0]["command"] =
            serde_json::json!(["java", "-Xmx512m", "-jar", "app.jar"]);
        product.workload =
            Workload::from_object(WorkloadKind::Deployment, &jvm, NAMESPACE).unwrap();
        let floor = product
            .decide(256.0 * MIB, &h, now)
            .and_then(|v| v.floor)
            .expect("a floor from -Xmx512m");
        assert!(floor > 512 << 20);
        assert_eq!(product.admit(256.0 * MIB, &h, now), floor as f64);
    }
}
