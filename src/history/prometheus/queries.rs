//! The PromQL oomguard sends. Public so that the documentation (`bench/PROMETHEUS.md`,
//! `cargo run --example prom_queries`) and the tests can show it.
//!
//! Prometheus evaluates every step of a range query (or subquery) separately: an expression
//! with a join or an aggregation costs about a microsecond per series and step, i.e. seconds
//! for a 14-day window of a few hundred containers. So nothing here joins or aggregates per
//! step over the whole namespace: the pod -> workload mapping is read once (an instant query
//! over the window), the per-pod 5-minute peaks are read without any join, and the per-step
//! restart and limit logic only runs for the few pods whose counters or limits moved.

/// Container selector filters: real containers only (not the pause container, not the
/// pod-level cgroup).
pub const CONTAINER_FILTER: &str = r#"container!="",container!="POD",image!="""#;

/// oomguard's recording rules (deploy/components/prometheus-rules).
pub const RULE_PEAK: &str = "oomguard:workload_container_memory_working_set_bytes:max5m";
pub const RULE_MAPPING: &str = "oomguard:pod_workload:owner";
/// kube-prometheus' (kubernetes-mixin's) pod -> workload rule.
pub const KUBE_PROMETHEUS_MAPPING: &str = "namespace_workload_pod:kube_pod_owner:relabel";

/// How far back the value before an interval is looked for (a scrape gap shorter than this
/// never turns a whole counter into new events).
pub const LOOKBACK_SECS: i64 = 6 * 3600;

/// Escapes a value for a PromQL double-quoted string.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A quoted RE2 alternation that matches exactly these values (e.g. pod names).
pub fn any_of<'a>(values: impl IntoIterator<Item = &'a str>) -> String {
    let mut re = String::new();
    for (i, v) in values.into_iter().enumerate() {
        if i > 0 {
            re.push('|');
        }
        for c in v.chars() {
            if !c.is_ascii_alphanumeric() && c != '-' && c != '_' {
                re.push('\\');
            }
            re.push(c);
        }
    }
    quote(&re)
}

/// `label_replace` shorthand.
fn lr(inner: &str, dst: &str, replacement: &str, src: &str, regex: &str) -> String {
    format!(r#"label_replace({inner}, "{dst}", "{replacement}", "{src}", "{regex}")"#)
}

/// Tags an expression's series with `stat="<name>"`.
fn tag(expr: &str, name: &str) -> String {
    lr(expr, "stat", name, "", "")
}

/// A selector over the whole window, as of the query's time: `last_over_time(sel[W])`.
fn over(selector: &str, w: &str) -> String {
    format!("last_over_time({selector}[{w}])")
}

/// Pods owned by a `child` controller (ReplicaSet, Job) mapped to the child's owner
/// (Deployment, CronJob), or to the child itself when it has no owner (`<none>`).
fn via_parent(
    ns: &str,
    w: &str,
    child_kind: &str,
    child_label: &str,
    owner_metric: &str,
) -> String {
    let pods = lr(
        &over(
            &format!(
                r#"kube_pod_owner{{namespace={ns},owner_kind="{child_kind}",owner_is_controller!="false"}}"#
            ),
            w,
        ),
        child_label,
        "$1",
        "owner_name",
        "(.+)",
    );
    let parents = lr(
        &lr(
            &over(&format!("{owner_metric}{{namespace={ns}}}"), w),
            "parent_kind",
            "$1",
            "owner_kind",
            "(.+)",
        ),
        "parent_name",
        "$1",
        "owner_name",
        "(.+)",
    );
    let joined = format!(
        "label_join(group by (pod, {child_label}) ({pods}) * on ({child_label}) group_left (parent_kind, parent_name) \
         topk by ({child_label}) (1, group by ({child_label}, parent_kind, parent_name) ({parents})), \
         \"tmp\", \";\", \"parent_kind\", \"parent_name\", \"{child_label}\")"
    );
    // tmp = "<parent kind>;<parent name>;<child name>"
    let kind = lr(&joined, "workload_kind", "$1", "tmp", "([^;<]+);.*");
    let kind = lr(&kind, "workload_kind", child_kind, "tmp", "<none>;.*");
    let name = lr(&kind, "workload", "$1", "tmp", "[^;<]+;([^;]+);.*");
    lr(&name, "workload", "$1", "tmp", "<none>;[^;]*;(.+)")
}

/// Pod -> workload from kube-state-metrics over the window: one series per pod (more if its
/// owner changed) with labels `pod, workload_kind, workload`.
pub fn mapping_ksm(ns: &str, w: &str) -> String {
    let direct = lr(
        &lr(
            &over(
                &format!(
                    r#"kube_pod_owner{{namespace={ns},owner_kind!~"ReplicaSet|Job|<none>|",owner_is_controller!="false"}}"#
                ),
                w,
            ),
            "workload_kind",
            "$1",
            "owner_kind",
            "(.+)",
        ),
        "workload",
        "$1",
        "owner_name",
        "(.+)",
    );
    let bare = lr(
        &lr(
            &over(
                &format!(r#"kube_pod_owner{{namespace={ns},owner_kind=~"<none>|"}}"#),
                w,
            ),
            "workload_kind",
            "Pod",
            "",
            "",
        ),
        "workload",
        "$1",
        "pod",
        "(.+)",
    );
    let rs = via_parent(ns, w, "ReplicaSet", "replicaset", "kube_replicaset_owner");
    let job = via_parent(ns, w, "Job", "job_name", "kube_job_owner");
    format!("group by (pod, workload_kind, workload) ({direct} or {bare} or {rs} or {job})")
}

/// A step as PromQL writes it: `5m`, `1m`, `30s`.
pub fn prom_duration(secs: i64) -> String {
    if secs > 0 && secs % 60 == 0 {
        format!("{}m", secs / 60)
    } else {
        format!("{}s", secs.max(1))
    }
}

/// Every query of one refresh of a namespace and window.
pub struct Queries {
    /// Instant, at the end of the window: the pod -> workload rows over the window, tagged
    /// `src="kp"` (kube-prometheus' rule), `src="oomguard"` (oomguard's rule) or `src="ksm"`.
    pub mapping: String,
    /// Instant, sent first (it picks the peaks query): how many series of oomguard's peak
    /// rule reach back to the window's first hour (none: the rule has not run for the whole
    /// window, or is not installed).
    pub rules: String,
    /// Range over the window, one step per interval: the interval's peak of every container (per
    /// cgroup series; no join, no aggregation). Merged per workload container on the client.
    pub peaks: String,
    /// The same from oomguard's recording rule (already per workload container).
    pub peaks_recorded: String,
    /// Instant: per pod container, the last memory limit in the window (`stat="limit"`) and
    /// whether it changed (`stat="limit_changes"`, only when it did).
    pub limits: String,
    /// Instant: per pod container, the largest restart counter of kube-state-metrics in the
    /// window (`stat="restarts"`; every pod container it knows, zeros included) and the
    /// largest cAdvisor OOM-event counter when not zero (`stat="oom_events"`).
    pub counters: String,
}

impl Queries {
    /// `window_secs`: the span the statistics cover (the steps' intervals); `step`: seconds per
    /// interval (its peak is one sample).
    pub fn new(namespace: &str, window_secs: i64, window_start: i64, step: i64) -> Queries {
        let ns = quote(namespace);
        let w = format!("{}s", window_secs.max(1));
        let sel = format!("namespace={ns},{CONTAINER_FILTER}");
        let wss = format!("container_memory_working_set_bytes{{{sel}}}");
        let limit = format!("container_spec_memory_limit_bytes{{{sel}}}");
        let kp = lr(
            &format!(
                "max by (pod, workload, workload_type) ({})",
                over(&format!("{KUBE_PROMETHEUS_MAPPING}{{namespace={ns}}}"), &w)
            ),
            "src",
            "kp",
            "",
            "",
        );
        let own = lr(
            &format!(
                "max by (pod, workload_kind, workload) ({})",
                over(&format!("{RULE_MAPPING}{{namespace={ns}}}"), &w)
            ),
            "src",
            "oomguard",
            "",
            "",
        );
        let ksm = lr(&mapping_ksm(&ns, &w), "src", "ksm", "", "");
        // The peak rule is used when its series reach back to the window's first hour: it has
        // run for the whole window.
        let rules = format!(
            "count(last_over_time({RULE_PEAK}{{namespace={ns}}}[1h] @ {}))",
            window_start + 3600
        );
        let mapping = format!("{kp}\nor {own}\nor {ksm}");
        let d = prom_duration(step);
        let peaks = format!("max_over_time({wss}[{d}])");
        let peaks_recorded = format!("{RULE_PEAK}{{namespace={ns}}}");
        let limits = format!(
            "{}\nor {}",
            tag(
                &format!("max by (pod, container) ({})", over(&limit, &w)),
                "limit"
            ),
            tag(
                &format!("max by (pod, container) (changes({limit}[{w}])) > 0"),
                "limit_changes"
            ),
        );
        let counters = format!(
            "{}\nor {}",
            tag(
                &format!(
                    "max by (pod, container) (max_over_time(kube_pod_container_status_restarts_total{{namespace={ns}}}[{w}]))"
                ),
                "restarts"
            ),
            tag(
                &format!(
                    "max by (pod, container) (max_over_time(container_oom_events_total{{{sel}}}[{w}])) > 0"
                ),
                "oom_events"
            ),
        );
        Queries {
            mapping,
            rules,
            peaks,
            peaks_recorded,
            limits,
            counters,
        }
    }
}

/// The per-step increase of a counter, gap- and reset-safe, for the series selected by `sel`
/// (labels kept as the selector gives them, minus the metric name):
/// - an increase from the last value before the interval (looked for up to
///   [`LOOKBACK_SECS`] back, so a scrape gap is bridged, not counted as a new counter);
/// - after a reset (a new container or pod with the same name), the new value;
/// - a series first seen with a non-zero value counts only when its owner started after
///   `max(window start, the lookback)` (`started` has the start time, matched on `on`): an
///   older counter cannot tell what happened inside the window, so it counts nothing.
fn increase(sel: &str, agg: &str, started: &str, on: &str, window_start: i64, step: i64) -> String {
    let lb = LOOKBACK_SECS;
    let d = prom_duration(step);
    let now = format!("{agg}(last_over_time({sel}[{d}]))");
    let before = format!("{agg}(last_over_time({sel}[{lb}s] offset {d}))");
    format!(
        "((({now} - {before}) > 0) or (({now} < {before}) > 0) \
         or ((({now} > 0) unless {before}) and on ({on}) (({started} > (time() - {})) > {window_start})))",
        lb + step
    )
}

/// Range over the window, one step per interval, for a few pods only (`pods_events`: restarts and OOM kills
/// of kube-state-metrics; `pods_oom`: cAdvisor OOM events; `pods_limits`: the limit timeline,
/// a point where it changed or was first seen). Sparse: only non-zero increments and changes.
pub fn events(
    namespace: &str,
    window_start: i64,
    step: i64,
    pods_events: &[&str],
    pods_oom: &[&str],
    pods_limits: &[&str],
) -> Option<String> {
    let ns = quote(namespace);
    let sel = format!("namespace={ns},{CONTAINER_FILTER}");
    let lb = LOOKBACK_SECS;
    let d = prom_duration(step);
    let mut parts = Vec::new();
    if !pods_events.is_empty() {
        let pods = any_of(pods_events.iter().copied());
        let r = format!("kube_pod_container_status_restarts_total{{namespace={ns},pod=~{pods}}}");
        let created = format!(
            "max by (pod) (last_over_time(kube_pod_created{{namespace={ns},pod=~{pods}}}[{lb}s]))"
        );
        let restarts = increase(
            &r,
            "max by (pod, container) ",
            &created,
            "pod",
            window_start,
            step,
        );
        let oom = format!(
            "({restarts} * on (pod, container) group_left () (max by (pod, container) (last_over_time(kube_pod_container_status_last_terminated_reason{{namespace={ns},pod=~{pods},reason=\"OOMKilled\"}}[{d}])) == 1))"
        );
        parts.push(tag(&restarts, "restarts"));
        parts.push(tag(&lr(&oom, "src", "ksm", "", ""), "oom"));
    }
    if !pods_oom.is_empty() {
        let pods = any_of(pods_oom.iter().copied());
        let o = format!("container_oom_events_total{{{sel},pod=~{pods}}}");
        let started =
            format!("last_over_time(container_start_time_seconds{{{sel},pod=~{pods}}}[{lb}s])");
        // Per cgroup series (a restarted container is a new one), then summed per container.
        let inc = increase(&o, "", &started, "pod, container, id", window_start, step);
        parts.push(tag(
            &lr(
                &format!("sum by (pod, container) ({inc})"),
                "src",
                "cadvisor",
                "",
                "",
            ),
            "oom",
        ));
    }
    if !pods_limits.is_empty() {
        let pods = any_of(pods_limits.iter().copied());
        let l = format!("container_spec_memory_limit_bytes{{{sel},pod=~{pods}}}");
        let now = format!("max by (pod, container) (last_over_time({l}[{d}]))");
        let before = format!("max by (pod, container) (last_over_time({l}[{lb}s] offset {d}))");
        parts.push(tag(
            &format!("(({now} != {before}) or ({now} unless {before}))"),
            "limit",
        ));
    }
    (!parts.is_empty()).then(|| parts.join("\nor "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_escapes() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(any_of(["web-0", "a.b"]), r#""web-0|a\\.b""#);
    }

    #[test]
    fn no_join_or_aggregation_per_step_over_the_namespace() {
        let q = Queries::new("ns", 14 * 86_400, 1_000_000, 300);
        // The range query over the window is a plain function of the raw series.
        assert_eq!(
            q.peaks,
            r#"max_over_time(container_memory_working_set_bytes{namespace="ns",container!="",container!="POD",image!=""}[5m])"#
        );
        assert!(!q.peaks.contains(" by "));
        assert!(!q.mapping.contains("container_memory_max_usage_bytes"));
        assert!(q.mapping.contains(KUBE_PROMETHEUS_MAPPING));
        assert!(q.mapping.contains("[1209600s]"));
        let e = events("ns", 1_000_000, 300, &["a"], &[], &[]).unwrap();
        assert!(e.contains(r#"pod=~"a""#), "{e}");
        assert!(e.contains("[5m]") && e.contains("offset 5m"), "{e}");
        assert!(events("ns", 0, 300, &[], &[], &[]).is_none());
        // Another step: the intervals and the counters' increments follow it.
        let q = Queries::new("ns", 86_400, 1_000_000, 60);
        assert!(q.peaks.ends_with("[1m])"), "{}", q.peaks);
        let e = events("ns", 1_000_000, 60, &["a"], &[], &["a"]).unwrap();
        assert!(e.contains("offset 1m") && !e.contains("5m"), "{e}");
    }
}
