//! The Prometheus history source against a real Prometheus with backfilled scenarios.
//!
//! One Prometheus serves every test of this file (started on first use, stopped when the test
//! process exits). Expected values are computed from the generated raw samples, not from
//! Prometheus.

mod common;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::prom::{self, Prometheus};
use common::scenario::{self, Expected, Workload};
use oomguard::history::prometheus::{PrometheusArgs, PrometheusSource};
use oomguard::history::{ContainerHistory, HistoryQuery, HistorySource, WorkloadKey};

const WINDOW: u64 = 14 * 86_400;
const RECENT: u64 = 7 * 86_400;

struct Fixture {
    prom: Prometheus,
    /// Evaluation time: the end of the backfilled data.
    end: i64,
    workloads: Vec<Workload>,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let started = Instant::now();
        let end = prom::data_end();
        let day = 86_400;
        let csv = std::fs::read_to_string("/work/shared/data/traces/bitbrains-rnd-2013-07.csv")
            .or_else(|_| std::fs::read_to_string("../shared/data/traces/bitbrains-rnd-2013-07.csv"))
            .expect("the Bitbrains trace (shared/data/traces/bitbrains-rnd-2013-07.csv)");
        let mut workloads = vec![
            scenario::memory_leak_app(end - day, end),
            scenario::steady_app(end - day, end),
            scenario::spiky_app(end - day, end),
            scenario::bitbrains_trace(&csv, "bitbrains-vm1", end, 14),
        ];
        workloads.extend(scenario::no_ksm(end - 6 * 3600, end));
        workloads.extend(scenario::restart_gaps(end));
        workloads.push(scenario::young_leak(end));
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("scenarios.om");
        let mut out = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
        let series = workloads.iter().flat_map(|w| w.series(30)).collect();
        scenario::write_openmetrics(series, &mut out).unwrap();
        scenario::write_eof(&mut out).unwrap();
        drop(out);
        let data = dir.path().join("tsdb");
        prom::create_blocks(&input, &data);
        let prom = Prometheus::start(&data, &[]);
        prom.wait_queryable("container_memory_working_set_bytes", end);
        eprintln!("fixture ready in {:?}", started.elapsed());
        Fixture {
            prom,
            end,
            workloads,
            _dir: dir,
        }
    })
}

fn source(url: &str, end: i64) -> PrometheusSource {
    let args = PrometheusArgs {
        prometheus: Some(url.to_string()),
        prometheus_timeout: Duration::from_secs(20),
        ..PrometheusArgs::default()
    };
    PrometheusSource::from_args(&args)
        .unwrap()
        .unwrap()
        .with_eval_time(end)
}

fn query(ns: &str, kind: &str, name: &str) -> HistoryQuery {
    HistoryQuery {
        key: WorkloadKey {
            namespace: ns.into(),
            kind: kind.into(),
            name: name.into(),
        },
        window_secs: WINDOW,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn assert_container(what: &str, got: &ContainerHistory, want: &Expected) {
    assert!(!want.peaks.is_empty(), "{what}: scenario without samples");
    let p = &got.peaks;
    assert!(
        close(p.max, want.max),
        "{what}: max {} != {}",
        p.max,
        want.max
    );
    assert!(
        close(p.p99, want.p99),
        "{what}: p99 {} != {}",
        p.p99,
        want.p99
    );
    assert!(
        close(p.p98, want.p98),
        "{what}: p98 {} != {}",
        p.p98,
        want.p98
    );
    assert!(
        close(p.p95, want.p95),
        "{what}: p95 {} != {}",
        p.p95,
        want.p95
    );
    assert_eq!(p.intervals as usize, want.peaks.len(), "{what}: intervals");
    assert_eq!(
        got.covered_secs as i64, want.covered,
        "{what}: covered_secs"
    );
    let samples: Vec<(i64, f64)> = got.samples.iter().map(|s| (s.t, s.bytes)).collect();
    assert_eq!(
        samples.len(),
        want.recent.len(),
        "{what}: number of recent samples"
    );
    for (g, w) in samples.iter().zip(&want.recent) {
        assert!(
            g.0 == w.0 && close(g.1, w.1),
            "{what}: sample {g:?} != {w:?}"
        );
    }
    assert_eq!(got.restarts, want.restarts, "{what}: restarts");
    assert_eq!(
        got.oom_count() as usize,
        want.ooms.len(),
        "{what}: oom_kills"
    );
    assert_eq!(
        got.last_oom_at(),
        want.ooms.last().copied(),
        "{what}: last_oom_at"
    );
    let limit = (want.limit > 0.0).then_some(want.limit);
    assert_eq!(got.runtime_limit, limit, "{what}: runtime_limit");
    // Each kill with the limit its pod had then.
    let kills: Vec<(i64, Option<f64>)> = got.oom_kills.iter().map(|k| (k.t, k.limit)).collect();
    let want_kills: Vec<(i64, Option<f64>)> =
        want.kills.iter().map(|&(t, l)| (t, Some(l))).collect();
    assert_eq!(kills, want_kills, "{what}: OOM kills and their limits");
}

/// The limits a workload container ran with, in the order its pods started (consecutive
/// repeats merged): what the limit history must say.
fn limit_sequence(w: &Workload, container: &str) -> Vec<f64> {
    let mut pods: Vec<&scenario::Pod> = w.pods.iter().collect();
    pods.sort_by_key(|p| p.start);
    let mut out: Vec<f64> = Vec::new();
    for p in pods {
        for c in p.containers.iter().filter(|c| c.name == container) {
            if out.last() != Some(&c.limit) {
                out.push(c.limit);
            }
        }
    }
    out
}

async fn check_workload(src: &PrometheusSource, f: &Fixture, w: &Workload) {
    let h = src
        .fetch(&query(&w.namespace, &w.kind, &w.name))
        .await
        .unwrap_or_else(|e| panic!("{}/{}: {e}", w.kind, w.name))
        .unwrap_or_else(|| panic!("{}/{}: no history", w.kind, w.name));
    assert_eq!(h.now, f.end);
    let want = w.expected(f.end, WINDOW as i64, RECENT as i64);
    let got: Vec<&String> = h.containers.keys().collect();
    let names: Vec<&String> = want.keys().collect();
    assert_eq!(
        got, names,
        "{}/{}: containers (POD and pod cgroup must be left out)",
        w.kind, w.name
    );
    for (name, e) in &want {
        let what = format!("{}/{} {name}", w.kind, w.name);
        let got = &h.containers[name];
        assert_container(&what, got, e);
        let history: Vec<f64> = got.limit_history.iter().map(|c| c.bytes).collect();
        assert_eq!(history, limit_sequence(w, name), "{what}: limit history");
    }
    // Restarts and OOM kills are seen exactly when kube-state-metrics is there.
    assert_eq!(
        h.events_unseen.is_none(),
        w.ksm,
        "{}/{}: events_unseen {:?}",
        w.kind,
        w.name,
        h.events_unseen
    );
}

fn workload<'a>(f: &'a Fixture, name: &str) -> &'a Workload {
    f.workloads.iter().find(|w| w.name == name).unwrap()
}

#[tokio::test]
async fn memory_leak_app_saw_tooth_with_oom_kills() {
    let f = fixture();
    let src = source(&f.prom.url, f.end);
    let w = workload(f, "memory-leak-app");
    check_workload(&src, f, w).await;
    // The scenario is what the tutorial describes: it does OOM, many times, at 256Mi.
    let want = &w.expected(f.end, WINDOW as i64, RECENT as i64)["web"];
    assert!(want.ooms.len() > 100, "{} OOM kills", want.ooms.len());
    assert!(want.max < 256.0 * scenario::MI && want.max > 240.0 * scenario::MI);
}

#[tokio::test]
async fn steady_and_spiky_apps_in_one_namespace_refresh() {
    let f = fixture();
    let src = source(&f.prom.url, f.end);
    check_workload(&src, f, workload(f, "steady-api")).await;
    check_workload(&src, f, workload(f, "spiky-worker")).await;
    // Both came from one refresh of the namespace: the six queries of a namespace without
    // restarts or limit changes (rules check, mapping, peaks in two parts, counters, limits),
    // then cache hits.
    let s = src.stats();
    assert_eq!(s.queries, 6, "{s:?}");
    assert_eq!((s.cache.misses, s.cache.hits), (1, 1), "{s:?}");
    // The spiky app's p95 is far below its max; the steady app's are close.
    let h = src
        .fetch(&query("apps", "StatefulSet", "spiky-worker"))
        .await
        .unwrap()
        .unwrap();
    let p = h.containers["worker"].peaks;
    assert!(p.max > 2.0 * p.p95, "{p:?}");
}

#[tokio::test]
async fn without_kube_state_metrics_pods_map_by_name_pattern() {
    let f = fixture();
    let src = source(&f.prom.url, f.end);
    for name in ["web", "web-canary", "db", "node-agent", "debug-shell"] {
        check_workload(&src, f, workload(f, name)).await;
    }
    assert_eq!(src.stats().queries, 6);
    // A DaemonSet's pattern cannot be told from a Job's or a ReplicaSet's: same answer.
    let ds = src
        .fetch(&query("legacy", "DaemonSet", "node-agent"))
        .await
        .unwrap();
    let job = src
        .fetch(&query("legacy", "Job", "node-agent"))
        .await
        .unwrap();
    assert!(Arc::ptr_eq(&ds.unwrap(), &job.unwrap()));
    // A kind whose pattern does not fit the pods finds nothing.
    assert!(src
        .fetch(&query("legacy", "StatefulSet", "web"))
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn counters_survive_scrape_gaps_and_first_sightings() {
    let f = fixture();
    let src = source(&f.prom.url, f.end);
    for name in ["flaky", "old", "young", "raised"] {
        check_workload(&src, f, workload(f, name)).await;
    }
    let fetch = |kind: &'static str, name: &'static str| {
        let src = &src;
        async move {
            src.fetch(&query("gaps", kind, name))
                .await
                .unwrap()
                .unwrap()
        }
    };
    // A kill inside a 10-minute gap of kube-state-metrics is one kill, not the whole counter.
    let flaky = fetch("Deployment", "flaky").await;
    let app = &flaky.containers["app"];
    assert_eq!(app.oom_count(), 2, "{:?}", app.oom_kills);
    assert_eq!(app.restarts.len(), 2);
    // A counter that reads 5 from its first sample, of a pod created before the window: nothing
    // that can be placed inside the window.
    let old = fetch("StatefulSet", "old").await;
    assert!(old.containers["db"].restarts.is_empty());
    assert_eq!(old.containers["db"].oom_count(), 0);
    // A pod created inside the window, first scraped with a counter of 2: both count.
    let young = fetch("StatefulSet", "young").await;
    assert_eq!(young.containers["worker"].oom_count(), 2);
    // Kills at 256Mi, then a rollout at 443Mi: the kills keep their limit, the history shows
    // the raise, and the limit now is the new one.
    let raised = fetch("Deployment", "raised").await;
    let web = &raised.containers["web"];
    let mi = scenario::MI;
    assert_eq!(web.oom_count(), 3);
    assert!(web.oom_kills.iter().all(|k| k.limit == Some(256.0 * mi)));
    assert_eq!(web.runtime_limit, Some(443.0 * mi));
    let raise = web.limit_history.last().unwrap();
    assert_eq!(raise.bytes, 443.0 * mi);
    let new_pod = &workload(f, "raised").pods[1];
    assert!(
        (raise.since - new_pod.start).abs() <= 600,
        "raise at {} vs new pod at {}",
        raise.since,
        new_pod.start
    );
    assert_eq!(web.limit_at(web.oom_kills[0].t), Some(256.0 * mi));
}

#[tokio::test]
async fn without_kube_state_metrics_kills_are_unseen_and_said_so() {
    let f = fixture();
    let src = source(&f.prom.url, f.end);
    let h = src
        .fetch(&query("legacy", "StatefulSet", "db"))
        .await
        .unwrap()
        .unwrap();
    let why = h.events_unseen.as_deref().unwrap_or_default();
    assert!(
        why.contains("kube_pod_container_status_restarts_total") && why.contains("legacy"),
        "{why}"
    );
}

#[tokio::test]
async fn two_weeks_of_a_real_trace() {
    let f = fixture();
    let src = source(&f.prom.url, f.end);
    let w = workload(f, "bitbrains-vm1");
    check_workload(&src, f, w).await;
    let want = &w.expected(f.end, WINDOW as i64, RECENT as i64)["vm"];
    assert!(want.peaks.len() > 3500, "{} intervals", want.peaks.len());
}

#[tokio::test]
async fn a_shorter_step_fits_a_young_leak_sooner() {
    use oomguard::forecast::Pattern;
    let f = fixture();
    let w = workload(f, "young-leak");
    let raw_max = w.pods[0].containers[0]
        .ws
        .iter()
        .map(|s| s.1)
        .fold(0.0, f64::max);
    let q = query("young", "Deployment", "young-leak");
    // 5-minute peaks: 20 minutes are four intervals, too few to fit (30 minutes needed).
    let five = source(&f.prom.url, f.end).fetch(&q).await.unwrap().unwrap();
    let c = &five.containers["app"];
    assert_eq!(c.peaks.max, raw_max);
    assert_ne!(
        oomguard::forecast::fit_of(c).pattern,
        Pattern::Leak,
        "{:?}",
        oomguard::forecast::fit_of(c)
    );
    // 1-minute peaks: six minutes are enough, and the growth is the scenario's 2 MiB/min.
    let args = PrometheusArgs {
        prometheus: Some(f.prom.url.clone()),
        prometheus_timeout: Duration::from_secs(20),
        history_step: Duration::from_secs(60),
        ..PrometheusArgs::default()
    };
    let one = PrometheusSource::from_args(&args)
        .unwrap()
        .unwrap()
        .with_eval_time(f.end);
    let h = one.fetch(&q).await.unwrap().unwrap();
    let c = &h.containers["app"];
    assert_eq!(c.peaks.max, raw_max, "the max does not depend on the step");
    assert!(
        (19..=21).contains(&c.peaks.intervals),
        "{}",
        c.peaks.intervals
    );
    assert_eq!(c.interval_secs, 60);
    let fit = oomguard::forecast::fit_of(c);
    assert_eq!(fit.pattern, Pattern::Leak, "{fit:?}");
    let per_min = fit.slope * 60.0 / scenario::MI;
    assert!((per_min - 2.0).abs() < 0.2, "{per_min} MiB/min");
    // A step outside 15s..1h is refused with the flag's name.
    for bad in [10, 7200] {
        let args = PrometheusArgs {
            prometheus: Some(f.prom.url.clone()),
            history_step: Duration::from_secs(bad),
            ..PrometheusArgs::default()
        };
        let e = PrometheusSource::from_args(&args)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("--history-step"), "{e}");
    }
}

#[tokio::test]
async fn unknown_workload_is_none_not_an_error() {
    let f = fixture();
    let src = source(&f.prom.url, f.end);
    assert!(src
        .fetch(&query("self-healing-platform", "Deployment", "nope"))
        .await
        .unwrap()
        .is_none());
    assert!(src
        .fetch(&query("no-such-namespace", "Deployment", "x"))
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn warm_cache_serves_without_prometheus_until_ttl() {
    let f = fixture();
    let proxy = common::fake::Proxy::start(f.prom.port).await;
    let args = PrometheusArgs {
        prometheus: Some(proxy.url.clone()),
        prometheus_timeout: Duration::from_secs(20),
        history_ttl: Duration::from_secs(3),
        ..PrometheusArgs::default()
    };
    let src = PrometheusSource::from_args(&args)
        .unwrap()
        .unwrap()
        .with_eval_time(f.end);
    let q = query("self-healing-platform", "Deployment", "memory-leak-app");
    let first = src.fetch(&q).await.unwrap().unwrap();
    let queries = src.stats().queries;
    proxy.stop().await;
    // Prometheus is unreachable now; within the TTL the warm path does no I/O at all.
    let t = Instant::now();
    for _ in 0..100 {
        let again = src.fetch(&q).await.unwrap().unwrap();
        assert!(Arc::ptr_eq(&first, &again));
    }
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(src.stats().queries, queries, "no query on the warm path");
    // After the TTL the source asks Prometheus again, and fails fast (connection refused).
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let t = Instant::now();
    let err = src.fetch(&q).await.unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(err.metric_label(), "prometheus", "{err}");
}
