//! Scenario generator shared by the integration tests and the benchmark: workloads with pods and
//! containers, their raw samples as cAdvisor and kube-state-metrics would export them, the
//! OpenMetrics text to backfill, and the expected history computed directly from the raw samples
//! (independently of PromQL).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;

pub const MI: f64 = 1024.0 * 1024.0;
pub const STEP: i64 = 300;

/// Kubernetes' alphabet for generated name suffixes.
const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A small deterministic generator (tests must not depend on a random seed).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407)
            | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545F4914F6CDD1D)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn suffix(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| SAFE[(self.next_u64() % SAFE.len() as u64) as usize] as char)
            .collect()
    }
}

/// Who owns a pod, as kube-state-metrics reports it.
#[derive(Debug, Clone)]
pub enum Owner {
    ReplicaSet {
        rs: String,
        deployment: Option<String>,
    },
    StatefulSet(String),
    DaemonSet(String),
    Job {
        job: String,
        cronjob: Option<String>,
    },
    None,
}

#[derive(Debug, Clone)]
pub struct ContainerRun {
    pub name: String,
    /// Limit in bytes, 0 = none.
    pub limit: f64,
    /// Raw working-set samples (unix seconds, bytes), only while the container runs.
    pub ws: Vec<(i64, f64)>,
    /// Restarts: (unix seconds, was it an OOM kill).
    pub restarts: Vec<(i64, bool)>,
}

#[derive(Debug, Clone)]
pub struct Pod {
    pub name: String,
    pub owner: Owner,
    /// Unix seconds the pod existed (metrics are exported in [start, end]).
    pub start: i64,
    pub end: i64,
    pub containers: Vec<ContainerRun>,
}

#[derive(Debug, Clone)]
pub struct Workload {
    pub namespace: String,
    pub kind: String,
    pub name: String,
    pub pods: Vec<Pod>,
    /// Whether kube-state-metrics series exist for it.
    pub ksm: bool,
    /// Also export a pod-level cgroup series (container="") and a pause container ("POD"),
    /// as cAdvisor does; the source must ignore them.
    pub cadvisor_extras: bool,
    /// Spans [from, to] in which kube-state-metrics was not scraped (its series have no
    /// samples there; cAdvisor's do).
    pub ksm_gaps: Vec<(i64, i64)>,
    /// Pods created before their metrics start: (pod name, unix seconds of creation).
    /// Others are created at their `start`.
    pub created: Vec<(String, i64)>,
}

/// Seconds the source looks back for a counter's previous value (its LOOKBACK_SECS).
pub const COUNTER_LOOKBACK: i64 = 6 * 3600;

/// One series to backfill.
pub struct Series {
    pub metric: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub samples: Vec<(i64, f64)>,
}

/// Scrape times in [from, to]: every `every` seconds, 15 s off the 5-minute boundaries so that
/// no sample sits on an interval edge (Prometheus 2.x ranges are closed on both ends).
pub fn scrape_times(from: i64, to: i64, every: i64) -> impl Iterator<Item = i64> {
    let first = from - from.rem_euclid(every) + 15;
    let first = if first < from { first + every } else { first };
    (0..)
        .map(move |k| first + k * every)
        .take_while(move |&t| t <= to)
}

impl Workload {
    /// All series of this workload. `scrape` is the kube-state-metrics/cAdvisor scrape interval
    /// for the series that only need to be present (limits, owners, counters).
    pub fn series(&self, scrape: i64) -> Vec<Series> {
        let ns = self.namespace.clone();
        let mut out = Vec::new();
        let mut rs_seen: BTreeMap<String, (Option<String>, i64, i64)> = BTreeMap::new();
        let mut job_seen: BTreeMap<String, (Option<String>, i64, i64)> = BTreeMap::new();
        for pod in &self.pods {
            let times: Vec<i64> = scrape_times(pod.start, pod.end, scrape).collect();
            let ksm_times: Vec<i64> = times
                .iter()
                .copied()
                .filter(|&t| !self.in_ksm_gap(t))
                .collect();
            for c in &pod.containers {
                let base = |metric| Series {
                    metric,
                    labels: vec![
                        ("namespace", ns.clone()),
                        ("pod", pod.name.clone()),
                        ("container", c.name.clone()),
                        ("image", format!("registry.example/{}:1", c.name)),
                    ],
                    samples: Vec::new(),
                };
                let mut ws = base("container_memory_working_set_bytes");
                ws.samples = c.ws.clone();
                out.push(ws);
                let mut limit = base("container_spec_memory_limit_bytes");
                limit.samples = times.iter().map(|&t| (t, c.limit)).collect();
                out.push(limit);
                if self.ksm {
                    let mut restarts = Series {
                        metric: "kube_pod_container_status_restarts_total",
                        labels: vec![
                            ("namespace", ns.clone()),
                            ("pod", pod.name.clone()),
                            ("container", c.name.clone()),
                        ],
                        samples: Vec::new(),
                    };
                    let mut reason = Series {
                        metric: "kube_pod_container_status_last_terminated_reason",
                        labels: vec![
                            ("namespace", ns.clone()),
                            ("pod", pod.name.clone()),
                            ("container", c.name.clone()),
                            ("reason", "OOMKilled".to_string()),
                        ],
                        samples: Vec::new(),
                    };
                    for &t in &ksm_times {
                        let seen: Vec<&(i64, bool)> =
                            c.restarts.iter().filter(|(r, _)| *r <= t).collect();
                        restarts.samples.push((t, seen.len() as f64));
                        if seen.last().is_some_and(|(_, oom)| *oom) {
                            reason.samples.push((t, 1.0));
                        }
                    }
                    out.push(restarts);
                    if !reason.samples.is_empty() {
                        out.push(reason);
                    }
                }
            }
            if self.cadvisor_extras {
                // Pod cgroup (sum of the containers + some) and the pause container.
                let mut pod_level = Series {
                    metric: "container_memory_working_set_bytes",
                    labels: vec![
                        ("namespace", ns.clone()),
                        ("pod", pod.name.clone()),
                        ("container", String::new()),
                        ("image", String::new()),
                    ],
                    samples: times.iter().map(|&t| (t, 4096.0 * MI)).collect(),
                };
                pod_level
                    .labels
                    .retain(|(k, v)| !(v.is_empty() && *k != "container"));
                out.push(pod_level);
                out.push(Series {
                    metric: "container_memory_working_set_bytes",
                    labels: vec![
                        ("namespace", ns.clone()),
                        ("pod", pod.name.clone()),
                        ("container", "POD".to_string()),
                        ("image", "registry.k8s.io/pause:3.9".to_string()),
                    ],
                    samples: times.iter().map(|&t| (t, 2048.0 * MI)).collect(),
                });
            }
            if self.ksm {
                let (kind, name) = match &pod.owner {
                    Owner::ReplicaSet { rs, deployment } => {
                        let e = rs_seen.entry(rs.clone()).or_insert((
                            deployment.clone(),
                            pod.start,
                            pod.end,
                        ));
                        e.1 = e.1.min(pod.start);
                        e.2 = e.2.max(pod.end);
                        ("ReplicaSet", rs.clone())
                    }
                    Owner::StatefulSet(n) => ("StatefulSet", n.clone()),
                    Owner::DaemonSet(n) => ("DaemonSet", n.clone()),
                    Owner::Job { job, cronjob } => {
                        let e = job_seen.entry(job.clone()).or_insert((
                            cronjob.clone(),
                            pod.start,
                            pod.end,
                        ));
                        e.1 = e.1.min(pod.start);
                        e.2 = e.2.max(pod.end);
                        ("Job", job.clone())
                    }
                    Owner::None => ("<none>", "<none>".to_string()),
                };
                out.push(Series {
                    metric: "kube_pod_created",
                    labels: vec![
                        ("namespace", ns.clone()),
                        ("pod", pod.name.clone()),
                        ("uid", format!("uid-{}", pod.name)),
                    ],
                    samples: ksm_times
                        .iter()
                        .map(|&t| (t, self.created_at(pod) as f64))
                        .collect(),
                });
                out.push(Series {
                    metric: "kube_pod_owner",
                    labels: vec![
                        ("namespace", ns.clone()),
                        ("pod", pod.name.clone()),
                        ("owner_kind", kind.to_string()),
                        ("owner_name", name),
                        (
                            "owner_is_controller",
                            if kind == "<none>" { "<none>" } else { "true" }.to_string(),
                        ),
                    ],
                    samples: ksm_times.iter().map(|&t| (t, 1.0)).collect(),
                });
            }
        }
        for (metric, label, seen) in [
            ("kube_replicaset_owner", "replicaset", &rs_seen),
            ("kube_job_owner", "job_name", &job_seen),
        ] {
            for (child, (parent, start, end)) in seen {
                let (kind, name) = match parent {
                    Some(p) if metric == "kube_replicaset_owner" => ("Deployment", p.clone()),
                    Some(p) => ("CronJob", p.clone()),
                    None => ("<none>", "<none>".to_string()),
                };
                out.push(Series {
                    metric,
                    labels: vec![
                        ("namespace", ns.clone()),
                        (label, child.clone()),
                        ("owner_kind", kind.to_string()),
                        ("owner_name", name),
                        ("owner_is_controller", "true".to_string()),
                    ],
                    samples: scrape_times(*start, *end, scrape)
                        .filter(|&t| !self.in_ksm_gap(t))
                        .map(|t| (t, 1.0))
                        .collect(),
                });
            }
        }
        out
    }

    fn in_ksm_gap(&self, t: i64) -> bool {
        self.ksm_gaps.iter().any(|&(a, b)| t >= a && t <= b)
    }

    fn created_at(&self, pod: &Pod) -> i64 {
        self.created
            .iter()
            .find(|(p, _)| *p == pod.name)
            .map_or(pod.start, |c| c.1)
    }

    /// Expected history of each container, computed from the raw samples.
    pub fn expected(&self, now: i64, window: i64, recent: i64) -> BTreeMap<String, Expected> {
        let mut by_container: BTreeMap<String, Vec<&ContainerRun>> = BTreeMap::new();
        let mut events: BTreeMap<String, Vec<(i64, Option<f64>)>> = BTreeMap::new();
        for pod in &self.pods {
            for c in &pod.containers {
                by_container.entry(c.name.clone()).or_default().push(c);
                if self.ksm {
                    let ev = events.entry(c.name.clone()).or_default();
                    ev.extend(self.seen_restarts(pod, c, now, window));
                }
            }
        }
        by_container
            .into_iter()
            .map(|(name, runs)| {
                let ev = events.remove(&name).unwrap_or_default();
                (name, Expected::compute(&runs, &ev, now, window, recent))
            })
            .collect()
    }

    /// The restarts of one container as kube-state-metrics' counter shows them (scraped every
    /// 30 s, none in the gaps): each at the end of the interval of the first scrape after it,
    /// with the container's limit when it was an OOM kill. A restart already in the counter's
    /// first sample counts only when the pod was created inside the window and within the
    /// source's lookback of that sample; anything else cannot be placed in the window.
    fn seen_restarts(
        &self,
        pod: &Pod,
        c: &ContainerRun,
        now: i64,
        window: i64,
    ) -> Vec<(i64, Option<f64>)> {
        let times: Vec<i64> = scrape_times(pod.start, pod.end, 30)
            .filter(|&t| !self.in_ksm_gap(t))
            .collect();
        let Some(&first) = times.first() else {
            return vec![];
        };
        let created = self.created_at(pod);
        let mut out = Vec::new();
        for &(r, oom) in &c.restarts {
            let Some(&seen) = times.iter().find(|&&t| t >= r) else {
                continue;
            };
            let e = interval_end(seen);
            if seen == first && !(created > now - window && created > e - 300 - COUNTER_LOOKBACK) {
                continue;
            }
            if e > now - window && e <= now {
                out.push((e, oom.then_some(c.limit)));
            }
        }
        out
    }
}

/// The end of the 5-minute interval a time falls in: intervals are (e - 300, e].
pub fn interval_end(t: i64) -> i64 {
    let r = t.rem_euclid(STEP);
    if r == 0 {
        t
    } else {
        t - r + STEP
    }
}

/// Linear interpolation between closest ranks (Prometheus' quantile_over_time).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = q * (sorted.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let w = rank - rank.floor();
    sorted[lo] * (1.0 - w) + sorted[hi] * w
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expected {
    /// Per-interval peaks over the window (interval end, bytes), oldest first.
    pub peaks: Vec<(i64, f64)>,
    pub max: f64,
    pub p99: f64,
    pub p98: f64,
    pub p95: f64,
    pub covered: i64,
    /// Peaks in the recent span.
    pub recent: Vec<(i64, f64)>,
    /// Restart / OOM times stamped with the end of the interval in which the counter shows them.
    pub restarts: Vec<i64>,
    pub ooms: Vec<i64>,
    /// OOM kills (interval end, the container's limit then), in time order.
    pub kills: Vec<(i64, f64)>,
    pub limit: f64,
}

impl Expected {
    fn compute(
        runs: &[&ContainerRun],
        events: &[(i64, Option<f64>)],
        now: i64,
        window: i64,
        recent: i64,
    ) -> Expected {
        let mut peaks: BTreeMap<i64, f64> = BTreeMap::new();
        for c in runs {
            for &(t, v) in &c.ws {
                let e = interval_end(t);
                let p = peaks.entry(e).or_insert(f64::MIN);
                *p = p.max(v);
            }
        }
        let peaks: Vec<(i64, f64)> = peaks
            .into_iter()
            .filter(|&(e, _)| e > now - window && e <= now)
            .collect();
        let mut sorted: Vec<f64> = peaks.iter().map(|p| p.1).collect();
        sorted.sort_by(f64::total_cmp);
        let mut restarts: Vec<i64> = events.iter().map(|e| e.0).collect();
        let mut kills: Vec<(i64, f64)> =
            events.iter().filter_map(|&(t, l)| Some((t, l?))).collect();
        restarts.sort_unstable();
        kills.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        let ooms = kills.iter().map(|k| k.0).collect();
        Expected {
            max: sorted.last().copied().unwrap_or(0.0),
            p99: quantile(&sorted, 0.99),
            p98: quantile(&sorted, 0.98),
            p95: quantile(&sorted, 0.95),
            covered: match (peaks.first(), peaks.last()) {
                (Some(a), Some(b)) => b.0 - a.0,
                _ => 0,
            },
            recent: peaks
                .iter()
                .copied()
                .filter(|&(e, _)| e > now - recent)
                .collect(),
            peaks,
            restarts,
            ooms,
            kills,
            limit: runs.last().map(|c| c.limit).unwrap_or(0.0),
        }
    }
}

/// Writes series as OpenMetrics text for `promtool tsdb create-blocks-from openmetrics`:
/// grouped by metric family, samples sorted per series, seconds, `# EOF` at the end.
pub fn write_openmetrics(mut series: Vec<Series>, out: &mut impl Write) -> std::io::Result<()> {
    series.sort_by(|a, b| a.metric.cmp(b.metric));
    let mut family = "";
    for s in &mut series {
        if s.samples.is_empty() {
            continue;
        }
        if s.metric != family {
            family = s.metric;
            writeln!(out, "# TYPE {} gauge", s.metric)?;
        }
        s.samples.sort_by_key(|p| p.0);
        s.samples.dedup_by_key(|p| p.0);
        let labels: Vec<String> = s
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect();
        let head = format!("{}{{{}}}", s.metric, labels.join(","));
        for (t, v) in &s.samples {
            writeln!(out, "{head} {v} {t}")?;
        }
    }
    Ok(())
}

pub fn write_eof(out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "# EOF")
}

// ---------------------------------------------------------------------------------------------
// The scenarios.

/// The tutorial's memory-leak-app: Deployment, 2 replicas, container `web`, limit 256Mi;
/// grows 10 MiB every 5 s from ~40 MiB until OOM-killed, then restarts after CrashLoopBackOff
/// delays (10 s doubling to 5 min). cAdvisor and kube-state-metrics scraped every 30 s.
pub fn memory_leak_app(start: i64, end: i64) -> Workload {
    let limit = 256.0 * MI;
    let mut pods = Vec::new();
    let hash = "7d4b9c8f6b";
    for (i, suffix) in ["x2x4z", "q9kfp"].iter().enumerate() {
        let name = format!("memory-leak-app-{hash}-{suffix}");
        let mut ws = Vec::new();
        let mut restarts = Vec::new();
        let mut t0 = start + 40 * i as i64; // replicas out of phase
        let mut backoff = 10;
        let base = 40.0 * MI + 3.0 * MI * i as f64;
        while t0 < end {
            // The allocation that takes it past the limit kills it.
            let steps = ((limit - base) / (10.0 * MI)).floor() as i64 + 1;
            let oom_at = t0 + 5 * steps;
            for t in scrape_times(t0, oom_at.min(end), 30) {
                if t < oom_at {
                    let k = (t - t0) / 5;
                    ws.push((t, base + 10.0 * MI * k as f64));
                }
            }
            if oom_at > end {
                break;
            }
            restarts.push((oom_at, true));
            t0 = oom_at + backoff;
            backoff = (backoff * 2).min(300);
        }
        pods.push(Pod {
            name,
            owner: Owner::ReplicaSet {
                rs: format!("memory-leak-app-{hash}"),
                deployment: Some("memory-leak-app".to_string()),
            },
            start,
            end,
            containers: vec![ContainerRun {
                name: "web".to_string(),
                limit,
                ws,
                restarts,
            }],
        });
    }
    Workload {
        namespace: "self-healing-platform".to_string(),
        kind: "Deployment".to_string(),
        name: "memory-leak-app".to_string(),
        pods,
        ksm: true,
        cadvisor_extras: true,
        ksm_gaps: vec![],
        created: vec![],
    }
}

fn noisy(rng: &mut Rng, level: f64, spread: f64) -> f64 {
    level + (rng.unit() - 0.5) * 2.0 * spread
}

/// A steady Deployment (2 replicas, two containers) with a rollout halfway: new ReplicaSet.
pub fn steady_app(start: i64, end: i64) -> Workload {
    let mut rng = Rng::new(7);
    let mid = interval_end((start + end) / 2) + 100;
    let mut pods = Vec::new();
    for (hash, from, to) in [("5f6d7c8b9x", start, mid), ("6g7h8j9k2l", mid - 60, end)] {
        for _ in 0..2 {
            let name = format!("steady-api-{hash}-{}", rng.suffix(5));
            let containers = [("api", 180.0, 512.0), ("sidecar", 40.0, 64.0)]
                .iter()
                .map(|&(c, level, limit)| ContainerRun {
                    name: c.to_string(),
                    limit: limit * MI,
                    ws: scrape_times(from, to, 30)
                        .map(|t| (t, noisy(&mut rng, level * MI, 5.0 * MI).round()))
                        .collect(),
                    restarts: vec![],
                })
                .collect();
            pods.push(Pod {
                name,
                owner: Owner::ReplicaSet {
                    rs: format!("steady-api-{hash}"),
                    deployment: Some("steady-api".to_string()),
                },
                start: from,
                end: to,
                containers,
            });
        }
    }
    Workload {
        namespace: "apps".to_string(),
        kind: "Deployment".to_string(),
        name: "steady-api".to_string(),
        pods,
        ksm: true,
        cadvisor_extras: false,
        ksm_gaps: vec![],
        created: vec![],
    }
}

/// A young Deployment (one pod, started 20 minutes before `end`) leaking 2 MiB per minute from
/// 100 MiB under a 512Mi limit: too young for the forecast at 5-minute peaks, not at 1-minute.
pub fn young_leak(end: i64) -> Workload {
    let start = end - 20 * 60;
    let mut rng = Rng::new(23);
    let ws = scrape_times(start, end, 30)
        .map(|t| {
            let grown = 100.0 * MI + 2.0 * MI * (t - start) as f64 / 60.0;
            (t, noisy(&mut rng, grown, 0.5 * MI).round())
        })
        .collect();
    Workload {
        namespace: "young".to_string(),
        kind: "Deployment".to_string(),
        name: "young-leak".to_string(),
        pods: vec![Pod {
            name: format!("young-leak-7d9f8c6b5d-{}", rng.suffix(5)),
            owner: Owner::ReplicaSet {
                rs: "young-leak-7d9f8c6b5d".to_string(),
                deployment: Some("young-leak".to_string()),
            },
            start,
            end,
            containers: vec![ContainerRun {
                name: "app".to_string(),
                limit: 512.0 * MI,
                ws,
                restarts: vec![],
            }],
        }],
        ksm: true,
        cadvisor_extras: false,
        ksm_gaps: vec![],
        created: vec![],
    }
}

/// A spiky StatefulSet (2 pods): ~100 MiB with rare short spikes to 300–600 MiB.
pub fn spiky_app(start: i64, end: i64) -> Workload {
    let mut rng = Rng::new(11);
    let pods = (0..2)
        .map(|i| Pod {
            name: format!("spiky-worker-{i}"),
            owner: Owner::StatefulSet("spiky-worker".to_string()),
            start,
            end,
            containers: vec![ContainerRun {
                name: "worker".to_string(),
                limit: 1024.0 * MI,
                ws: scrape_times(start, end, 30)
                    .map(|t| {
                        let v = if rng.unit() < 0.001 {
                            300.0 * MI + rng.unit() * 300.0 * MI
                        } else {
                            noisy(&mut rng, 100.0 * MI, 8.0 * MI)
                        };
                        (t, v.round())
                    })
                    .collect(),
                restarts: vec![],
            }],
        })
        .collect();
    Workload {
        namespace: "apps".to_string(),
        kind: "StatefulSet".to_string(),
        name: "spiky-worker".to_string(),
        pods,
        ksm: true,
        cadvisor_extras: false,
        ksm_gaps: vec![],
        created: vec![],
    }
}

/// A Deployment under steady load near its limit: 2 replicas, container `api`, limit 256 MiB,
/// working set ~215 MiB (84%) with ±4 MiB of noise. Scale-out material for the reconciler.
pub fn busy_api(namespace: &str, name: &str, start: i64, end: i64) -> Workload {
    busy(namespace, "Deployment", name, start, end)
}

/// [`busy_api`] as a Deployment or a StatefulSet (pods `<name>-0`, `<name>-1`).
pub fn busy(namespace: &str, kind: &str, name: &str, start: i64, end: i64) -> Workload {
    let mut rng = Rng::new(23);
    let hash = "84c6d9f5b7";
    let pods = (0..2)
        .map(|i| {
            let (pod, owner) = if kind == "StatefulSet" {
                (format!("{name}-{i}"), Owner::StatefulSet(name.to_string()))
            } else {
                (
                    format!("{name}-{hash}-{}", rng.suffix(5)),
                    Owner::ReplicaSet {
                        rs: format!("{name}-{hash}"),
                        deployment: Some(name.to_string()),
                    },
                )
            };
            Pod {
                name: pod,
                owner,
                start,
                end,
                containers: vec![ContainerRun {
                    name: "api".to_string(),
                    limit: 256.0 * MI,
                    ws: scrape_times(start, end, 30)
                        .map(|t| (t, noisy(&mut rng, 215.0 * MI, 4.0 * MI).round()))
                        .collect(),
                    restarts: vec![],
                }],
            }
        })
        .collect();
    Workload {
        namespace: namespace.to_string(),
        kind: kind.to_string(),
        name: name.to_string(),
        pods,
        ksm: true,
        cadvisor_extras: false,
        ksm_gaps: vec![],
        created: vec![],
    }
}

/// [`busy`] whose memory follows a daily load cycle (150 MiB at night, 215 MiB — 84% of the
/// 256 MiB limit — at `end`, the day's peak): memory that more replicas would spread, the
/// reconciler's scale-out material. A cycle needs two days of history to be seen.
pub fn cycling(namespace: &str, kind: &str, name: &str, start: i64, end: i64) -> Workload {
    let mut w = busy(namespace, kind, name, start, end);
    let mut rng = Rng::new(29);
    for p in &mut w.pods {
        for c in &mut p.containers {
            c.ws = scrape_times(start, end, 30)
                .map(|t| {
                    let phase = 2.0 * std::f64::consts::PI * (t - end) as f64 / 86_400.0;
                    let level = 150.0 * MI + 65.0 * MI * (1.0 + phase.cos()) / 2.0;
                    (t, noisy(&mut rng, level, 2.0 * MI).round())
                })
                .collect();
        }
    }
    w
}

/// Workloads of a namespace without kube-state-metrics: the pod name is all there is.
pub fn no_ksm(start: i64, end: i64) -> Vec<Workload> {
    let mut rng = Rng::new(23);
    let mut run = |name: &str, level: f64, from: i64, to: i64| ContainerRun {
        name: name.to_string(),
        limit: 0.0,
        ws: scrape_times(from, to, 30)
            .map(|t| (t, noisy(&mut rng, level * MI, 10.0 * MI).round()))
            .collect(),
        restarts: vec![],
    };
    let ns = "legacy".to_string();
    let mk = |kind: &str, name: &str, pods: Vec<Pod>| Workload {
        namespace: ns.clone(),
        kind: kind.to_string(),
        name: name.to_string(),
        pods,
        ksm: false,
        cadvisor_extras: false,
        ksm_gaps: vec![],
        created: vec![],
    };
    let pod = |name: String, c: ContainerRun| Pod {
        name,
        owner: Owner::None,
        start,
        end,
        containers: vec![c],
    };
    vec![
        mk(
            "Deployment",
            "web",
            vec![
                pod(
                    format!("web-7c9d5b6f48-{}", "bq2xz"),
                    run("nginx", 120.0, start, end),
                ),
                pod(
                    format!("web-7c9d5b6f48-{}", "h7kml"),
                    run("nginx", 150.0, start, end),
                ),
            ],
        ),
        // A second Deployment whose name extends the first: must not be mixed with `web`.
        mk(
            "Deployment",
            "web-canary",
            vec![pod(
                "web-canary-59f8d7c6b4-zzt5k".to_string(),
                run("nginx", 400.0, start, end),
            )],
        ),
        mk(
            "StatefulSet",
            "db",
            vec![
                pod("db-0".to_string(), run("postgres", 700.0, start, end)),
                pod("db-1".to_string(), run("postgres", 650.0, start, end)),
            ],
        ),
        mk(
            "DaemonSet",
            "node-agent",
            vec![pod(
                "node-agent-x7k2p".to_string(),
                run("agent", 60.0, start, end),
            )],
        ),
        mk(
            "Pod",
            "debug-shell",
            vec![pod(
                "debug-shell".to_string(),
                run("shell", 20.0, start, end),
            )],
        ),
    ]
}

/// A real trace: one Bitbrains VM's memory as the working set of a Deployment's container,
/// shifted in time to end at `end`, `days` long at its 5-minute resolution.
pub fn bitbrains_trace(csv: &str, series: &str, end: i64, days: i64) -> Workload {
    let mut rows: Vec<(i64, f64, f64)> = csv
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split(',');
            if f.next()? != series {
                return None;
            }
            Some((
                f.next()?.parse().ok()?,
                f.next()?.parse().ok()?,
                f.next()?.parse().ok()?,
            ))
        })
        .collect();
    rows.sort_by_key(|r| r.0);
    let first = rows.first().map(|r| r.0).unwrap_or(0);
    let span = days * 86_400;
    // Place each sample in the middle of its 5-minute interval; keep the last `days`.
    let trace_end = rows.last().map(|r| r.0).unwrap_or(0);
    let shift = interval_end(end) - interval_end(trace_end);
    let ws: Vec<(i64, f64)> = rows
        .iter()
        .map(|&(t, u, _)| (interval_end(t + shift) - 150, u))
        .filter(|&(t, _)| t > end - span && t <= end)
        .collect();
    let _ = first;
    let limit = rows.last().map(|r| r.2).unwrap_or(0.0);
    let start = ws.first().map(|p| p.0).unwrap_or(end);
    Workload {
        namespace: "traces".to_string(),
        kind: "Deployment".to_string(),
        name: series.to_string(),
        pods: vec![Pod {
            name: format!("{series}-6b8f9d7c5x-p4q7r"),
            owner: Owner::ReplicaSet {
                rs: format!("{series}-6b8f9d7c5x"),
                deployment: Some(series.to_string()),
            },
            start,
            end,
            containers: vec![ContainerRun {
                name: "vm".to_string(),
                limit,
                ws,
                restarts: vec![],
            }],
        }],
        ksm: true,
        cadvisor_extras: false,
        ksm_gaps: vec![],
        created: vec![],
    }
}

/// Benchmark workloads: `count` Deployments of one pod with `containers` containers each,
/// `days` of samples ending at `end`, every series (working set, limit, kube-state-metrics)
/// scraped every `scrape` seconds, in namespace `ns`.
pub fn bench_namespace(
    ns: &str,
    first: usize,
    count: usize,
    containers: usize,
    end: i64,
    days: i64,
    scrape: i64,
) -> Vec<Workload> {
    bench_slice(
        ns,
        first,
        count,
        containers,
        (end, days, scrape),
        (i64::MIN, i64::MAX),
    )
}

/// The noise of a benchmark sample, uniform in [0, 1): a hash of (workload, container, time),
/// so that any time slice of the benchmark can be generated on its own.
fn bench_noise(i: usize, c: usize, t: i64) -> f64 {
    // splitmix64
    let mut z =
        ((i as u64) << 40 ^ (c as u64) << 32 ^ t as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// [`bench_namespace`]'s workloads with only the samples in `[from, to)` (their pods exported
/// metrics only then; `kube_pod_created` still says when they were created): a benchmark too
/// large for one OpenMetrics file is written, and backfilled, one time slice after the other.
/// `data` is `(end, days, scrape)`. Empty when the slice holds no sample.
pub fn bench_slice(
    ns: &str,
    first: usize,
    count: usize,
    containers: usize,
    data: (i64, i64, i64),
    slice: (i64, i64),
) -> Vec<Workload> {
    let (end, days, scrape) = data;
    let start = end - days * 86_400;
    let (from, to) = (start.max(slice.0), end.min(slice.1.saturating_sub(1)));
    if from > to {
        return vec![];
    }
    (first..first + count)
        .map(|i| {
            let mut rng = Rng::new(1000 + i as u64);
            let name = format!("app-{i:04}");
            let hash = rng.suffix(10);
            let level = 50.0 + rng.unit() * 500.0;
            let slope = if i % 10 == 0 { 20.0 } else { 0.0 }; // MiB per day for a few leaky ones
            let containers = (0..containers)
                .map(|c| ContainerRun {
                    name: format!("c{c}"),
                    limit: 1024.0 * MI,
                    ws: scrape_times(from, to, scrape)
                        .map(|t| {
                            let day = (t - start) as f64 / 86_400.0;
                            let noise = 1.0 + 0.05 * (bench_noise(i, c, t) - 0.5);
                            (t, ((level + slope * day) * MI * noise).round())
                        })
                        .collect(),
                    restarts: vec![],
                })
                .collect();
            let pod = format!("{name}-{hash}-{}", rng.suffix(5));
            Workload {
                namespace: ns.to_string(),
                kind: "Deployment".to_string(),
                name: name.clone(),
                pods: vec![Pod {
                    name: pod.clone(),
                    owner: Owner::ReplicaSet {
                        rs: format!("{name}-{hash}"),
                        deployment: Some(name.clone()),
                    },
                    start: from,
                    end: to,
                    containers,
                }],
                ksm: true,
                cadvisor_extras: false,
                ksm_gaps: vec![],
                created: vec![(pod, start)],
            }
        })
        .collect()
}

/// kube-state-metrics' counters with gaps, in namespace `gaps` (data in [end - 1d, end]):
/// - Deployment `flaky`: one pod, OOM-killed at end-20h and inside a 10-minute scrape gap of
///   kube-state-metrics at end-5h (the kill is seen at the first scrape after the gap);
/// - StatefulSet `old`: a pod created 15 days before `end`, whose counter already reads 5 in its
///   first sample (restarts before the data): none of them is inside the window as far as the
///   data can tell;
/// - StatefulSet `young`: a pod created at end-3h, OOM-killed twice in its first minutes while
///   kube-state-metrics was not scraped: its first sample reads 2, both inside the window;
/// - Deployment `raised`: OOM-killed 3 times at 256Mi, then rolled out at 443Mi (new pod) and
///   never killed since.
pub fn restart_gaps(end: i64) -> Vec<Workload> {
    let start = end - 86_400;
    let mut rng = Rng::new(31);
    let mut run =
        |name: &str, limit: f64, from: i64, to: i64, restarts: Vec<(i64, bool)>| ContainerRun {
            name: name.to_string(),
            limit: limit * MI,
            ws: scrape_times(from, to, 30)
                .map(|t| (t, noisy(&mut rng, 100.0 * MI, 5.0 * MI).round()))
                .collect(),
            restarts,
        };
    let gap = interval_end(end - 5 * 3600) + 20;
    let deployment =
        |name: &str, hash: &str, suffix: &str, from: i64, to: i64, c: ContainerRun| Pod {
            name: format!("{name}-{hash}-{suffix}"),
            owner: Owner::ReplicaSet {
                rs: format!("{name}-{hash}"),
                deployment: Some(name.to_string()),
            },
            start: from,
            end: to,
            containers: vec![c],
        };
    let sts = |name: &str, from: i64, c: ContainerRun| Pod {
        name: format!("{name}-0"),
        owner: Owner::StatefulSet(name.to_string()),
        start: from,
        end,
        containers: vec![c],
    };
    let mk = |kind: &str, name: &str, pods: Vec<Pod>, ksm_gaps, created| Workload {
        namespace: "gaps".to_string(),
        kind: kind.to_string(),
        name: name.to_string(),
        pods,
        ksm: true,
        cadvisor_extras: false,
        ksm_gaps,
        created,
    };
    let young_at = end - 3 * 3600;
    let raise_at = end - 12 * 3600;
    vec![
        mk(
            "Deployment",
            "flaky",
            vec![deployment(
                "flaky",
                "5d8f7c9b6x",
                "k2v7q",
                start,
                end,
                run(
                    "app",
                    256.0,
                    start,
                    end,
                    vec![(end - 20 * 3600 + 7, true), (gap + 240, true)],
                ),
            )],
            vec![(gap, gap + 600)],
            vec![],
        ),
        mk(
            "StatefulSet",
            "old",
            vec![sts(
                "old",
                start,
                run(
                    "db",
                    512.0,
                    start,
                    end,
                    (1..=5)
                        .map(|k| (end - 15 * 86_400 + k * 600, true))
                        .collect(),
                ),
            )],
            vec![],
            vec![("old-0".to_string(), end - 15 * 86_400)],
        ),
        mk(
            "StatefulSet",
            "young",
            vec![sts(
                "young",
                young_at,
                run(
                    "worker",
                    128.0,
                    young_at,
                    end,
                    vec![(young_at + 120, true), (young_at + 400, true)],
                ),
            )],
            vec![(young_at - 60, young_at + 1200)],
            vec![],
        ),
        mk(
            "Deployment",
            "raised",
            vec![
                deployment(
                    "raised",
                    "7b6c9d8f5x",
                    "p2q4r",
                    start,
                    raise_at,
                    run(
                        "web",
                        256.0,
                        start,
                        raise_at,
                        vec![
                            (start + 3 * 3600 + 11, true),
                            (start + 6 * 3600 + 11, true),
                            (start + 9 * 3600 + 11, true),
                        ],
                    ),
                ),
                deployment(
                    "raised",
                    "8c7d2f9g6z",
                    "w5x7z",
                    raise_at - 60,
                    end,
                    run("web", 443.0, raise_at - 60, end, vec![]),
                ),
            ],
            vec![],
            vec![],
        ),
    ]
}
