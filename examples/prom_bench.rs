//! Benchmark of the Prometheus history source against a real Prometheus (not a test).
//!
//! ```text
//! cargo run --release --example prom_bench -- prepare DIR [namespaces] [workloads] [containers] [days]
//! cargo run --release --example prom_bench -- query DIR
//! ```
//! `prepare` generates the workloads (tests/support/scenario.rs), backfills them with promtool
//! into DIR/tsdb; `query` starts Prometheus on it and measures the source in a fresh process (so
//! that its peak memory is the source's, not the generator's). `bench/prometheus.sh` runs both.

// The allocator of the shipped binary (src/main.rs), so that memory figures are its own.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oomguard::history::prometheus::{PrometheusArgs, PrometheusSource};
use oomguard::history::{HistoryQuery, HistorySource, WorkloadKey};
use support::scenario;

const WINDOW: u64 = 14 * 86_400;
/// Refreshes at a time during the warm-up (as `oomguard serve`'s default).
const WARMUP_CONCURRENCY: usize = 2;

fn usage() -> ! {
    eprintln!(
        "usage: prom_bench prepare DIR [namespaces] [workloads] [containers] [days] | query DIR"
    );
    std::process::exit(2)
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[derive(Debug, Clone, Copy)]
struct Params {
    end: i64,
    namespaces: usize,
    workloads: usize,
    containers: usize,
    days: i64,
}

fn read_params(dir: &Path) -> Params {
    let text = std::fs::read_to_string(dir.join("params")).expect("run prepare first");
    let v: Vec<i64> = text
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    Params {
        end: v[0],
        namespaces: v[1] as usize,
        workloads: v[2] as usize,
        containers: v[3] as usize,
        days: v[4],
    }
}

fn workloads_of(p: &Params, ns: usize) -> Vec<scenario::Workload> {
    let per_ns = p.workloads / p.namespaces;
    scenario::bench_namespace(
        &format!("bench-{ns:02}"),
        ns * per_ns,
        per_ns,
        p.containers,
        p.end,
        p.days,
    )
}

fn prepare(dir: &Path, args: &[String]) {
    let num = |i: usize, d: usize| args.get(i).map(|s| s.parse().unwrap()).unwrap_or(d);
    let p = Params {
        end: support::prom::data_end(),
        namespaces: num(0, 10),
        workloads: num(1, 1000),
        containers: num(2, 3),
        days: num(3, 14) as i64,
    };
    std::fs::create_dir_all(dir).unwrap();
    let t = Instant::now();
    let input = dir.join("bench.om");
    let mut out =
        std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&input).unwrap());
    let series: Vec<scenario::Series> = (0..p.namespaces)
        .flat_map(|ns| workloads_of(&p, ns))
        // kube-state-metrics and limits scraped every 5 minutes (one sample per interval).
        .flat_map(|w| w.series(300))
        .collect();
    let samples: usize = series.iter().map(|s| s.samples.len()).sum();
    scenario::write_openmetrics(series, &mut out).unwrap();
    scenario::write_eof(&mut out).unwrap();
    drop(out);
    let size = std::fs::metadata(&input).map(|m| m.len()).unwrap_or(0);
    println!(
        "generated {samples} samples ({:.1} GB of OpenMetrics) in {:.1?}",
        size as f64 / 1e9,
        t.elapsed()
    );
    let t = Instant::now();
    support::prom::create_blocks(&input, &dir.join("tsdb"));
    println!(
        "promtool create-blocks-from openmetrics: {:.1?}",
        t.elapsed()
    );
    let _ = std::fs::remove_file(&input);
    std::fs::write(
        dir.join("params"),
        format!(
            "{} {} {} {} {}",
            p.end, p.namespaces, p.workloads, p.containers, p.days
        ),
    )
    .unwrap();
}

/// The floor: the two reads any recommender needs, sent with curl (its own `time_total`): the
/// window's max per container (instant) and two days of 5-minute working set (range).
fn floor(url: &str, ns: &str, end: i64) -> Duration {
    let sel = format!(
        r#"container_memory_working_set_bytes{{namespace="{ns}",container!="",container!="POD",image!=""}}"#
    );
    let instant = [
        "--data-urlencode".to_string(),
        format!("query=max_over_time({sel}[14d])"),
        "-d".to_string(),
        format!("time={end}"),
        format!("{url}/api/v1/query"),
    ];
    let range = [
        "--data-urlencode".to_string(),
        format!("query={sel}"),
        "-d".to_string(),
        format!("start={}", end - 2 * 86_400 + 300),
        "-d".to_string(),
        format!("end={end}"),
        "-d".to_string(),
        "step=300".to_string(),
        format!("{url}/api/v1/query_range"),
    ];
    let mut total = Duration::ZERO;
    for args in [&instant[..], &range[..]] {
        let out = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}"])
            .args(args)
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut it = text.split_whitespace();
        assert_eq!(it.next(), Some("200"), "curl: {text}");
        total += Duration::from_secs_f64(it.next().unwrap().parse().unwrap());
    }
    total
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn source(url: &str, end: i64) -> PrometheusSource {
    let args = PrometheusArgs {
        prometheus: Some(url.to_string()),
        prometheus_timeout: Duration::from_secs(120),
        history_ttl: Duration::from_secs(3600),
        ..PrometheusArgs::default()
    };
    // As `oomguard serve` runs it: the forecast fit computed at refresh, a short sample tail.
    PrometheusSource::from_args(&args)
        .unwrap()
        .unwrap()
        .with_eval_time(end)
        .keep_samples(Some(oomguard::history::prometheus::SAMPLE_TAIL))
}

async fn query(dir: &Path) {
    let p = read_params(dir);
    let t = Instant::now();
    let prom = support::prom::Prometheus::start(&dir.join("tsdb"), &[]);
    prom.wait_queryable("container_memory_working_set_bytes", p.end);
    println!("prometheus ready in {:.1?}", t.elapsed());
    let namespaces: Vec<String> = (0..p.namespaces).map(|n| format!("bench-{n:02}")).collect();
    let runs = if p.namespaces == 1 { 5 } else { 1 };
    let hwm_before = vm_hwm_kib();

    // Cold refreshes (a new source each run) and the floor, alternating in the same run.
    let mut floors = Vec::new();
    let mut colds = Vec::new();
    let mut src = source(&prom.url, p.end);
    for run in 0..runs {
        let t = Instant::now();
        let mut f = Duration::ZERO;
        for ns in &namespaces {
            f += floor(&prom.url, ns, p.end);
        }
        floors.push(f);
        let floor_wall = t.elapsed();
        src = source(&prom.url, p.end);
        let t = Instant::now();
        let failed = src
            .warm_all(
                namespaces.iter().map(|n| (n.clone(), WINDOW)).collect(),
                WARMUP_CONCURRENCY,
            )
            .await;
        let cold = t.elapsed();
        assert!(failed.is_empty(), "{failed:?}");
        colds.push(cold);
        println!(
            "run {run}: floor (curl, one namespace after the other) {f:.2?} ({floor_wall:.2?} wall), oomguard cold {cold:.2?}"
        );
    }
    let queries = src.stats().queries;
    // The source's own peak: before the checks below generate the raw samples again.
    let hwm_cold = vm_hwm_kib();

    // Check one workload against the generator (the tests check everything in detail).
    let w = &workloads_of(&p, p.namespaces - 1)[0];
    let key = |w: &scenario::Workload| HistoryQuery {
        key: WorkloadKey {
            namespace: w.namespace.clone(),
            kind: w.kind.clone(),
            name: w.name.clone(),
        },
        window_secs: WINDOW,
    };
    let got = src.fetch(&key(w)).await.unwrap().unwrap();
    let want = w.expected(p.end, WINDOW as i64, 2 * 86_400);
    assert_eq!(got.containers.len(), p.containers);
    assert_eq!(got.containers["c0"].peaks.max, want["c0"].max);
    assert_eq!(got.containers["c0"].peaks.p95, want["c0"].p95);

    // Warm: fetches of every workload from the cache.
    let keys: Vec<HistoryQuery> = (0..p.namespaces)
        .flat_map(|ns| workloads_of(&p, ns))
        .map(|w| key(&w))
        .collect();
    let mut lat = Vec::with_capacity(keys.len() * 20);
    for _ in 0..20 {
        for k in &keys {
            let t = Instant::now();
            let h = src.fetch(k).await.unwrap();
            lat.push(t.elapsed());
            assert!(h.is_some());
        }
    }
    lat.sort();
    let pct = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize];
    let s = src.stats();
    assert_eq!(s.queries, queries, "the warm path sent queries");

    let (f, c) = (median(floors), median(colds));
    println!(
        "workloads: {} in {} namespaces, {} containers each, {} days at 5-minute resolution, 14-day window",
        p.workloads, p.namespaces, p.containers, p.days
    );
    println!(
        "floor (median of {runs}): {f:.2?}; oomguard cold refresh of all namespaces ({WARMUP_CONCURRENCY} at a time, median of {runs}): {c:.2?}; ratio {:.2}",
        c.as_secs_f64() / f.as_secs_f64()
    );
    println!(
        "queries: {queries} for {} namespace refreshes",
        p.namespaces
    );
    println!(
        "warm fetch ({} fetches): p50 {:.2?} p99 {:.2?} max {:.2?}; cache {:?}",
        lat.len(),
        pct(0.5),
        pct(0.99),
        lat[lat.len() - 1],
        s.cache
    );
    println!(
        "peak memory (VmHWM) of this process: {} MiB before the refreshes, {} MiB after them (the source's peak), {} MiB at the end (with the generator's samples for the checks); now (VmRSS) {} MiB",
        hwm_before / 1024,
        hwm_cold / 1024,
        vm_hwm_kib() / 1024,
        vm_rss_kib() / 1024
    );
}

fn vm_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, dir) = match (args.first(), args.get(1)) {
        (Some(c), Some(d)) => (c.as_str(), PathBuf::from(d)),
        _ => usage(),
    };
    match cmd {
        "prepare" => prepare(&dir, &args[2..]),
        "query" => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(query(&dir)),
        _ => usage(),
    }
}
