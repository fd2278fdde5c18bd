//! Pod -> workload, resolved once per refresh on the client: the rows kube-state-metrics (or
//! kube-prometheus' `namespace_workload_pod:kube_pod_owner:relabel`) give for the window, and
//! for pods that neither knows, the pod-name pattern of each controller.

use std::collections::HashMap;

/// (workload kind as labelled, workload name).
pub type WorkloadId = (String, String);

/// Pod-name suffix alphabet of Kubernetes' generated names (no vowels, no 0/1/3).
const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The workload-kind label value the name patterns give, for a workload kind; `None` for
/// kinds without a pattern (only kube-state-metrics can map those).
pub fn pattern_class(kind: &str) -> Option<&'static str> {
    match kind {
        "Deployment" => Some("Deployment"),
        "StatefulSet" => Some("StatefulSet"),
        "CronJob" => Some("CronJob"),
        "Pod" => Some("Pod"),
        // `<name>-<5 chars>`: the pattern cannot tell these apart.
        "DaemonSet" | "ReplicaSet" | "Job" => Some("~name-xxxxx"),
        _ => None,
    }
}

fn safe(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len()) && s.bytes().all(|b| SAFE.contains(&b))
}

fn digits(s: &str, min: usize) -> bool {
    s.len() >= min && s.bytes().all(|b| b.is_ascii_digit())
}

/// Pod -> workload from the pod name. One class per pod; later rules win: `<name>-<5>`
/// (DaemonSet, ReplicaSet, Job), StatefulSet `<name>-<ordinal>`, Deployment
/// `<name>-<hash 6..10>-<5>`, CronJob `<name>-<minutes>-<5>`; otherwise the pod is its own
/// workload (kind Pod). The same rules as the former PromQL `label_replace` chain.
pub fn by_pattern(pod: &str) -> WorkloadId {
    let mut out = ("Pod".to_string(), pod.to_string());
    let segs: Vec<&str> = pod.rsplitn(3, '-').collect();
    // segs[0] = last segment, segs[1] = the one before, segs[2] = the rest.
    let name1 = pod
        .rsplit_once('-')
        .map(|(n, _)| n)
        .filter(|n| !n.is_empty());
    if let (Some(name), Some(last)) = (name1, segs.first()) {
        if safe(last, 5, 5) {
            out = ("~name-xxxxx".to_string(), name.to_string());
        }
        if digits(last, 1) {
            out = ("StatefulSet".to_string(), name.to_string());
        }
    }
    if segs.len() == 3 && !segs[2].is_empty() && safe(segs[0], 5, 5) {
        if safe(segs[1], 6, 10) {
            out = ("Deployment".to_string(), segs[2].to_string());
        }
        if digits(segs[1], 8) {
            out = ("CronJob".to_string(), segs[2].to_string());
        }
    }
    out
}

/// kube-prometheus' `workload_type` values as oomguard's kinds.
pub fn kind_of_workload_type(t: &str) -> String {
    match t {
        "deployment" => "Deployment".to_string(),
        "statefulset" => "StatefulSet".to_string(),
        "daemonset" => "DaemonSet".to_string(),
        "replicaset" => "ReplicaSet".to_string(),
        "job" => "Job".to_string(),
        "cronjob" => "CronJob".to_string(),
        "barepod" | "staticpod" => "Pod".to_string(),
        // Newer kubernetes-mixin versions copy other owners' kinds as they are.
        other => other.to_string(),
    }
}

/// The pods of a namespace and their workloads.
#[derive(Debug, Default)]
pub struct Mapping {
    /// From kube-prometheus' relabel rule (preferred), then kube-state-metrics.
    known: HashMap<String, WorkloadId>,
    from_kp: usize,
}

impl Mapping {
    /// Adds a row; `preferred` rows (kube-prometheus') replace others. Between two rows of the
    /// same rank for one pod (its owner changed in the window), a controller wins over `Pod`.
    pub fn add(&mut self, pod: &str, id: WorkloadId, preferred: bool) {
        if pod.is_empty() || id.0.is_empty() || id.1.is_empty() {
            return;
        }
        match self.known.get(pod) {
            None => {
                if preferred {
                    self.from_kp += 1;
                }
                self.known.insert(pod.to_string(), id);
            }
            Some(old) if preferred || (old.0 == "Pod" && id.0 != "Pod") => {
                if preferred {
                    self.from_kp += 1;
                }
                self.known.insert(pod.to_string(), id);
            }
            Some(_) => {}
        }
    }

    /// Whether kube-prometheus' rule mapped any pod.
    pub fn used_kube_prometheus(&self) -> bool {
        self.from_kp > 0
    }

    pub fn knows(&self, pod: &str) -> bool {
        self.known.contains_key(pod)
    }

    /// The workload of a pod: as kube-state-metrics says, else by its name.
    pub fn workload(&self, pod: &str) -> WorkloadId {
        self.known
            .get(pod)
            .cloned()
            .unwrap_or_else(|| by_pattern(pod))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pod: &str) -> (String, String) {
        by_pattern(pod)
    }

    #[test]
    fn name_patterns() {
        let id = |k: &str, n: &str| (k.to_string(), n.to_string());
        assert_eq!(p("web-7c9d5b6f48-bq2xz"), id("Deployment", "web"));
        assert_eq!(
            p("web-canary-59f8d7c6b4-zzt5k"),
            id("Deployment", "web-canary")
        );
        assert_eq!(p("db-0"), id("StatefulSet", "db"));
        assert_eq!(p("db-12"), id("StatefulSet", "db"));
        assert_eq!(p("node-agent-x7k2p"), id("~name-xxxxx", "node-agent"));
        assert_eq!(p("debug-shell"), id("Pod", "debug-shell"));
        assert_eq!(p("shell"), id("Pod", "shell"));
        assert_eq!(p("backup-29012345-x7k2p"), id("CronJob", "backup"));
        // All-safe digits: the CronJob rule is applied after the Deployment one.
        assert_eq!(p("backup-28567428-x7k2p"), id("CronJob", "backup"));
        // A hash with a vowel is no Deployment: the `<name>-<5>` class.
        assert_eq!(p("x-abcdef-x7k2p"), id("~name-xxxxx", "x-abcdef"));
        assert_eq!(p("-x7k2p"), id("Pod", "-x7k2p"));
    }

    #[test]
    fn rows_prefer_kube_prometheus_then_controllers() {
        let mut m = Mapping::default();
        m.add("a", ("Pod".into(), "a".into()), false);
        m.add("a", ("Deployment".into(), "web".into()), false);
        m.add("a", ("Pod".into(), "a".into()), false);
        assert_eq!(m.workload("a"), ("Deployment".into(), "web".into()));
        m.add("a", ("Rollout".into(), "web".into()), true);
        assert_eq!(m.workload("a"), ("Rollout".into(), "web".into()));
        assert!(m.used_kube_prometheus());
        assert_eq!(m.workload("db-1"), ("StatefulSet".into(), "db".into()));
        assert!(!m.knows("db-1"));
    }
}
