//! `MemoryPolicy`: what oomguard does in a namespace. One file per namespace
//! (`policies/<namespace>.yaml`), `policies/default.yaml` for the rest.

pub mod store;

use std::fmt;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use crate::quantity;

pub const API_VERSION: &str = "oomguard.io/v1";
pub const KIND: &str = "MemoryPolicy";

/// What oomguard does with what it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Nothing: every request passes untouched.
    Off,
    /// Warning lines only.
    #[default]
    Warn,
    /// Raise limits that are too low (and add missing ones if `missingLimit: add`).
    Mutate,
    /// Reject workloads that will or are predicted to OOM.
    Enforce,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Warn => "warn",
            Mode::Mutate => "mutate",
            Mode::Enforce => "enforce",
        }
    }
}

/// Which statistic of the per-interval peaks sizes the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Statistic {
    Max,
    P99,
    P98,
    P95,
    /// The default: the max, except for a series the forecast calls steady (confidence ≥ 0.9):
    /// its p98, floored at the max plus the noise band and the growth at the upper slope bound
    /// over the horizon (Autopilot's rule for steady jobs; `forecast::steady_limit`).
    #[default]
    Auto,
}

impl Statistic {
    pub fn as_str(self) -> &'static str {
        match self {
            Statistic::Max => "max",
            Statistic::P99 => "p99",
            Statistic::P98 => "p98",
            Statistic::P95 => "p95",
            Statistic::Auto => "auto",
        }
    }

    pub fn of(self, p: &crate::history::PeakStats) -> f64 {
        match self {
            Statistic::Max => p.max,
            Statistic::P99 => p.p99,
            Statistic::P98 => p.p98,
            Statistic::P95 => p.p95,
            // Without a fit to tell a steady series: the max.
            Statistic::Auto => p.max,
        }
    }
}

/// What to do with a container that has no memory limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MissingLimit {
    /// Say nothing.
    Ignore,
    #[default]
    Warn,
    /// Add the recommended limit (in mutate and enforce modes).
    Add,
    /// Reject (in enforce mode; warn otherwise).
    Deny,
}

/// A duration written as `90s`, `10m`, `3h`, `14d` or `2w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub u64);

impl Duration {
    pub fn secs(self) -> u64 {
        self.0
    }
    /// [`crate::duration::parse`], in whole seconds.
    pub fn parse(s: &str) -> Result<Duration, String> {
        let d = crate::duration::parse(s)?;
        if d.subsec_nanos() != 0 {
            return Err(format!(
                "{:?} is not whole seconds; expected e.g. 90s, 10m, 3h, 14d",
                s.trim()
            ));
        }
        Ok(Duration(d.as_secs()))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        for (unit, size) in [("d", 86400), ("h", 3600), ("m", 60)] {
            if s >= size && s % size == 0 {
                return write!(f, "{}{unit}", s / size);
            }
        }
        write!(f, "{s}s")
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Duration::parse(&s).map_err(de::Error::custom)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A percentage written as `15%`; held as a fraction (0.15).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Percent(pub f64);

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let num = s.trim().strip_suffix('%').ok_or_else(|| {
            de::Error::custom(format!("{s:?} is not a percentage; expected e.g. \"15%\""))
        })?;
        let v: f64 = num.trim().parse().map_err(|_| {
            de::Error::custom(format!("{s:?} is not a percentage; expected e.g. \"15%\""))
        })?;
        if !(0.0..=1000.0).contains(&v) {
            return Err(de::Error::custom(format!(
                "{s:?} must be between 0% and 1000%"
            )));
        }
        Ok(Percent(v / 100.0))
    }
}

impl Serialize for Percent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!(
            "{}%",
            (self.0 * 100.0 * 1000.0).round() / 1000.0
        ))
    }
}

/// A memory quantity in a policy (`64Mi`, `8Gi`), held in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Memory(pub u64);

impl<'de> Deserialize<'de> for Memory {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        quantity::parse_bytes(&s)
            .map(Memory)
            .map_err(de::Error::custom)
    }
}

impl Serialize for Memory {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&quantity::to_quantity(self.0))
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HistorySpec {
    /// How far back peaks are taken.
    #[serde(default = "default_window")]
    pub window: Duration,
    /// Less history than this: the verdict is "unknown".
    #[serde(default = "default_min_history")]
    pub min_history: Duration,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ForecastSpec {
    /// How far ahead a predicted OOM counts.
    #[serde(default = "default_horizon")]
    pub horizon: Duration,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// How far ahead a leak (growth with no restart in the window) is given room: its limit
    /// covers the forecast's upper band this far ahead. Default: five times the horizon, so
    /// that a raise lasts four horizons before the leak is critical again (with twice the
    /// horizon the replay's slow synthetic leaks were raised every day of their lifetime; with
    /// three or four times, a 7-day leak still twice before its restart; docs/replay-results.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leak_room: Option<Duration>,
}

impl ForecastSpec {
    /// `leakRoom`, or five times the horizon.
    pub fn leak_room_secs(&self) -> u64 {
        self.leak_room
            .map_or(self.horizon.secs().saturating_mul(5), Duration::secs)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LimitBounds {
    #[serde(default = "default_min")]
    pub min: Memory,
    #[serde(default = "default_max")]
    pub max: Memory,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OomBump {
    /// Multiply the limit by this after an OOM kill (each repeat multiplies again).
    #[serde(default = "default_bump_ratio")]
    pub ratio: f64,
    /// Raise by at least this much.
    #[serde(default = "default_bump_min")]
    pub min: Memory,
    /// At most this many escalation steps.
    #[serde(default = "default_bump_steps")]
    pub max_steps: u32,
}

/// When a recommendation may go below the current limit (`recommend`, the reconciler's plans;
/// admission never lowers).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Lowering {
    /// A lower recommendation must save at least this share of the current limit; otherwise the
    /// current limit is recommended (each change is a restart or a resize). Default 3%: on the
    /// replay's dev traces 5% and 10% leave limits that Autopilot's p98 + 10% undercuts at no
    /// more OOMs (docs/replay-results.md).
    #[serde(default = "default_min_saving")]
    pub min_saving: Percent,
    /// No lowering to a limit that a growing series (the forecast calls it a leak) is forecast
    /// to reach within this span (the upper band): a saw-tooth's next lifetime, a slow leak,
    /// would need the room back, and each lower-then-raise is two restarts or resizes for
    /// nothing. `0s` turns it off. Default 7d (the default window): on the replay's synthetic
    /// leaks the limit was lowered at each deploy after a lifetime ended and raised again as
    /// the next one grew (docs/replay-results.md).
    #[serde(default = "default_growth_ahead")]
    pub growth_ahead: Duration,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReconcileSpec {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "default_max_replicas")]
    pub max_replicas: u32,
    #[serde(default = "default_min_replicas")]
    pub min_replicas: u32,
    #[serde(default = "default_target_utilization")]
    pub target_utilization: Percent,
    #[serde(default = "default_cooldown")]
    pub cooldown: Duration,
    #[serde(default = "default_max_actions")]
    pub max_actions_per_hour: u32,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub restart_before_oom: bool,
    /// How long after an action its outcome is judged.
    #[serde(default = "default_verify_window")]
    pub verify_window: Duration,
    /// How a limit is raised: in place where the cluster can (auto), always in place, or always
    /// by a template patch (a rollout).
    #[serde(default)]
    pub resize_method: ResizeMethodSetting,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ResizeMethodSetting {
    /// In place (`pods/resize`) on Kubernetes 1.33 and later, else a template patch.
    #[default]
    Auto,
    InPlace,
    Template,
}

impl ResizeMethodSetting {
    /// Whether limits are raised in place, given whether the apiserver has `pods/resize`.
    pub fn in_place(self, supported: bool) -> bool {
        match self {
            ResizeMethodSetting::Auto => supported,
            ResizeMethodSetting::InPlace => true,
            ResizeMethodSetting::Template => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Exclusions {
    /// Container names never checked (e.g. `istio-proxy`).
    #[serde(default)]
    pub containers: Vec<String>,
    /// Workload names never checked.
    #[serde(default)]
    pub workloads: Vec<String>,
    /// Whether a workload's own `oomguard.io/exclude: "true"` annotation opts it out. Unset:
    /// honoured in `off`, `warn` and `mutate`, not in `enforce` (there opting out is the
    /// policy owner's decision, made here, not the workload author's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotation: Option<bool>,
}

/// The policy body.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicySpec {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default = "default_history")]
    pub history: HistorySpec,
    #[serde(default)]
    pub statistic: Statistic,
    #[serde(default = "default_headroom")]
    pub headroom: Percent,
    #[serde(default = "default_forecast")]
    pub forecast: ForecastSpec,
    #[serde(default = "default_limits")]
    pub limits: LimitBounds,
    #[serde(default)]
    pub missing_limit: MissingLimit,
    #[serde(default = "default_oom_bump")]
    pub oom_bump: OomBump,
    #[serde(default = "default_lowering")]
    pub lowering: Lowering,
    /// A limit more than this many times the recommendation gets a cost note.
    #[serde(default = "default_over_ratio")]
    pub over_provisioned_ratio: f64,
    #[serde(default = "default_reconcile")]
    pub reconcile: ReconcileSpec,
    #[serde(default)]
    pub exclude: Exclusions,
    /// Set (never by a file) for a namespace oomguard always leaves alone: the cluster's own
    /// (`kube-system`, `kube-public`, `kube-node-lease`) and oomguard's ([`store::SYSTEM_NAMESPACES`]).
    #[serde(skip)]
    pub reserved: bool,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A whole policy file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MemoryPolicy {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: PolicyMeta,
    pub spec: PolicySpec,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("policy file {file}: {message}")]
pub struct PolicyError {
    pub file: String,
    pub message: String,
}

impl MemoryPolicy {
    /// Parses and validates a policy. `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<MemoryPolicy, PolicyError> {
        let err = |message: String| PolicyError {
            file: file.to_string(),
            message,
        };
        let p: MemoryPolicy = parse_yaml(text).map_err(err)?;
        if p.api_version != API_VERSION {
            return Err(err(format!(
                "apiVersion: {:?}, expected {API_VERSION:?}",
                p.api_version
            )));
        }
        if p.kind != KIND {
            return Err(err(format!("kind: {:?}, expected {KIND:?}", p.kind)));
        }
        p.spec.validate().map_err(err)?;
        Ok(p)
    }
}

/// Parses YAML strictly; the error names the exact field (`spec.headroom`) and the position.
pub fn parse_yaml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    let de = serde_norway::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde_norway already names the field for some errors (unknown variants): once is enough.
        if path.is_empty() || path == "." || inner.starts_with(&format!("{path}: ")) {
            inner
        } else {
            format!("{path}: {inner}")
        }
    })
}

impl PolicySpec {
    fn validate(&self) -> Result<(), String> {
        if self.limits.min > self.limits.max {
            return Err(format!(
                "spec.limits: min {} is above max {}",
                quantity::to_quantity(self.limits.min.0),
                quantity::to_quantity(self.limits.max.0)
            ));
        }
        if self.history.window.0 == 0 {
            return Err("spec.history.window: must be longer than 0s".into());
        }
        if self.history.min_history > self.history.window {
            return Err(format!(
                "spec.history.minHistory: {} is longer than the window {}",
                self.history.min_history, self.history.window
            ));
        }
        if !(1.0..=10.0).contains(&self.oom_bump.ratio) {
            return Err(format!(
                "spec.oomBump.ratio: {} must be between 1.0 and 10.0",
                self.oom_bump.ratio
            ));
        }
        if let Some(room) = self.forecast.leak_room {
            if room < self.forecast.horizon {
                return Err(format!(
                    "spec.forecast.leakRoom: {room} is shorter than the horizon {}; a leak's limit must last at least the horizon",
                    self.forecast.horizon
                ));
            }
        }
        if self.lowering.min_saving.0 > 1.0 {
            return Err(format!(
                "spec.lowering.minSaving: {}% must be between 0% and 100%",
                self.lowering.min_saving.0 * 100.0
            ));
        }
        if self.over_provisioned_ratio < 1.0 {
            return Err(format!(
                "spec.overProvisionedRatio: {} must be at least 1.0",
                self.over_provisioned_ratio
            ));
        }
        let r = &self.reconcile;
        if r.min_replicas > r.max_replicas {
            return Err(format!(
                "spec.reconcile: minReplicas {} is above maxReplicas {}",
                r.min_replicas, r.max_replicas
            ));
        }
        if r.target_utilization.0 <= 0.0 || r.target_utilization.0 > 1.0 {
            return Err("spec.reconcile.targetUtilization: must be between 1% and 100%".into());
        }
        Ok(())
    }

    pub fn excludes_container(&self, name: &str) -> bool {
        self.exclude.containers.iter().any(|c| c == name)
    }

    pub fn excludes_workload(&self, name: &str) -> bool {
        self.exclude.workloads.iter().any(|c| c == name)
    }

    /// Whether the `oomguard.io/exclude` annotation opts a workload out in this namespace.
    pub fn honours_exclude_annotation(&self) -> bool {
        self.exclude
            .annotation
            .unwrap_or(self.mode != Mode::Enforce)
    }
}

impl PolicySpec {
    /// The defaults before the replay benchmark chose today's (window 14d, statistic max,
    /// headroom 15%, OOM bump × 1.2 or + 100Mi): the unit tests of the verdict and the reconciler's plan
    /// keep their hand-computed numbers with these.
    #[cfg(test)]
    pub(crate) fn classic() -> PolicySpec {
        let mut p = PolicySpec {
            statistic: Statistic::Max,
            headroom: Percent(0.15),
            ..PolicySpec::default()
        };
        p.history.window = Duration(14 * 86400);
        p.oom_bump.ratio = 1.2;
        p.oom_bump.min = Memory(100 * quantity::MI);
        p
    }
}

impl Default for PolicySpec {
    fn default() -> Self {
        PolicySpec {
            mode: Mode::default(),
            history: default_history(),
            statistic: Statistic::default(),
            headroom: default_headroom(),
            forecast: default_forecast(),
            limits: default_limits(),
            missing_limit: MissingLimit::default(),
            oom_bump: default_oom_bump(),
            lowering: default_lowering(),
            over_provisioned_ratio: default_over_ratio(),
            reconcile: default_reconcile(),
            exclude: Exclusions::default(),
            reserved: false,
        }
    }
}

fn yes() -> bool {
    true
}
fn default_window() -> Duration {
    Duration(7 * 86400)
}
fn default_min_history() -> Duration {
    Duration(3 * 3600)
}
fn default_history() -> HistorySpec {
    HistorySpec {
        window: default_window(),
        min_history: default_min_history(),
    }
}
fn default_horizon() -> Duration {
    Duration(24 * 3600)
}
fn default_forecast() -> ForecastSpec {
    ForecastSpec {
        horizon: default_horizon(),
        enabled: true,
        leak_room: None,
    }
}
fn default_headroom() -> Percent {
    Percent(0.10)
}
fn default_min() -> Memory {
    Memory(16 * quantity::MI)
}
fn default_max() -> Memory {
    Memory(64 * quantity::GI)
}
fn default_limits() -> LimitBounds {
    LimitBounds {
        min: default_min(),
        max: default_max(),
    }
}
fn default_bump_ratio() -> f64 {
    1.3
}
fn default_bump_min() -> Memory {
    Memory(32 * quantity::MI)
}
fn default_bump_steps() -> u32 {
    3
}
fn default_oom_bump() -> OomBump {
    OomBump {
        ratio: default_bump_ratio(),
        min: default_bump_min(),
        max_steps: default_bump_steps(),
    }
}
fn default_min_saving() -> Percent {
    Percent(0.03)
}
fn default_growth_ahead() -> Duration {
    Duration(7 * 86_400)
}
fn default_lowering() -> Lowering {
    Lowering {
        min_saving: default_min_saving(),
        growth_ahead: default_growth_ahead(),
    }
}
fn default_over_ratio() -> f64 {
    4.0
}
fn default_max_replicas() -> u32 {
    10
}
fn default_min_replicas() -> u32 {
    1
}
fn default_target_utilization() -> Percent {
    Percent(0.7)
}
fn default_cooldown() -> Duration {
    Duration(600)
}
fn default_verify_window() -> Duration {
    Duration(900)
}
fn default_max_actions() -> u32 {
    6
}
fn default_reconcile() -> ReconcileSpec {
    ReconcileSpec {
        enabled: false,
        max_replicas: default_max_replicas(),
        min_replicas: default_min_replicas(),
        target_utilization: default_target_utilization(),
        cooldown: default_cooldown(),
        max_actions_per_hour: default_max_actions(),
        dry_run: false,
        restart_before_oom: false,
        verify_window: default_verify_window(),
        resize_method: ResizeMethodSetting::Auto,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
apiVersion: oomguard.io/v1
kind: MemoryPolicy
metadata: {namespace: self-healing-platform}
spec:
  mode: enforce
  history: {window: 14d, minHistory: 3h}
  statistic: p99
  headroom: 15%
  forecast: {horizon: 24h}
  limits: {min: 64Mi, max: 8Gi}
  missingLimit: add
  oomBump: {ratio: 1.2, min: 100Mi}
  reconcile: {enabled: true, maxReplicas: 10, targetUtilization: 70%, cooldown: 10m, dryRun: false}
  exclude: {containers: [istio-proxy]}
"#;

    #[test]
    fn parses_the_documented_example() {
        let p = MemoryPolicy::parse("ns.yaml", FULL).unwrap();
        assert_eq!(p.spec.mode, Mode::Enforce);
        assert_eq!(p.spec.history.window, Duration(14 * 86400));
        assert_eq!(p.spec.history.min_history, Duration(3 * 3600));
        assert_eq!(p.spec.statistic, Statistic::P99);
        assert!((p.spec.headroom.0 - 0.15).abs() < 1e-12);
        assert_eq!(p.spec.limits.min, Memory(64 << 20));
        assert_eq!(p.spec.limits.max, Memory(8 << 30));
        assert_eq!(p.spec.missing_limit, MissingLimit::Add);
        assert_eq!(p.spec.reconcile.cooldown, Duration(600));
        assert!(p.spec.excludes_container("istio-proxy"));
    }

    #[test]
    fn the_shipped_default_policy_is_the_built_in_default() {
        let text = include_str!("../../policies/default.yaml");
        let p = MemoryPolicy::parse("policies/default.yaml", text).unwrap();
        assert_eq!(p.spec, PolicySpec::default());
    }

    #[test]
    fn new_settings_parse_and_are_checked() {
        let p = MemoryPolicy::parse(
            "n.yaml",
            "apiVersion: oomguard.io/v1\nkind: MemoryPolicy\nspec:\n  lowering: {minSaving: 25%}\n  forecast: {horizon: 6h, leakRoom: 12h}\n",
        )
        .unwrap();
        assert_eq!(p.spec.lowering.min_saving, Percent(0.25));
        assert_eq!(p.spec.forecast.leak_room_secs(), 12 * 3600);
        assert_eq!(PolicySpec::default().forecast.leak_room_secs(), 120 * 3600);
        for (text, field) in [
            (
                "  forecast: {horizon: 24h, leakRoom: 12h}",
                "spec.forecast.leakRoom",
            ),
            ("  lowering: {minSaving: 120%}", "spec.lowering.minSaving"),
            ("  lowering: {minSavings: 10%}", "minSavings"),
        ] {
            let e = MemoryPolicy::parse(
                "n.yaml",
                &format!("apiVersion: oomguard.io/v1\nkind: MemoryPolicy\nspec:\n{text}\n"),
            )
            .unwrap_err()
            .to_string();
            assert!(e.contains(field), "{field} not in {e}");
        }
    }

    #[test]
    fn minimal_policy_gets_defaults() {
        let p = MemoryPolicy::parse(
            "d.yaml",
            "apiVersion: oomguard.io/v1\nkind: MemoryPolicy\nspec: {}\n",
        )
        .unwrap();
        assert_eq!(p.spec, PolicySpec::default());
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let cases = [
            (FULL.replace("headroom: 15%", "headroom: 15"), "headroom"),
            (
                FULL.replace("statistic: p99", "statistic: p42"),
                "statistic",
            ),
            (FULL.replace("window: 14d", "window: 14 days"), "window"),
            (FULL.replace("min: 64Mi", "min: 64MB"), "min"),
            (
                FULL.replace("mode: enforce", "mode: enforce\n  modee: warn"),
                "modee",
            ),
            (FULL.replace("max: 8Gi", "max: 8Mi"), "spec.limits"),
            (
                FULL.replace("oomguard.io/v1", "oomguard.io/v2"),
                "apiVersion",
            ),
            ("spec: [".to_string(), ""),
        ];
        for (text, field) in cases {
            let e = MemoryPolicy::parse("policies/team-a.yaml", &text).unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.starts_with("policy file policies/team-a.yaml: "),
                "{msg}"
            );
            assert!(msg.contains(field), "{field} not in {msg}");
            if !field.is_empty() {
                assert_eq!(
                    msg.matches(&format!("{field}:")).count(),
                    1,
                    "the field named once: {msg}"
                );
            }
        }
    }
}
