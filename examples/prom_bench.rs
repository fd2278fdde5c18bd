//! Benchmark of the Prometheus history source against a real Prometheus (not a test).
//!
//! ```text
//! cargo run --release --example prom_bench -- prepare DIR [namespaces] [workloads] [containers] [days]
//! cargo run --release --example prom_bench -- query DIR
//! ```
//! `prepare` generates the workloads (tests/support/scenario.rs), backfills them with promtool
//! into DIR/tsdb; `query` starts Prometheus on it and measures the source in a fresh process (so
//! that its peak memory is the source's, not the generator's). `bench/prometheus.sh` runs both.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oomguard::history::prometheus::{PrometheusArgs, PrometheusSource};
use oomguard::history::{HistoryQuery, HistorySource, WorkloadKey};
use support::scenario;

const WINDOW: u64 = 14 * 86_400;

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

async fn query(dir: &Path) {
    let p = read_params(dir);
    let t = Instant::now();
    let prom = support::prom::Prometheus::start(&dir.join("tsdb"), &[]);
    prom.wait_queryable("container_memory_working_set_bytes", p.end);
    println!("prometheus ready in {:.1?}", t.elapsed());
    let args = PrometheusArgs {
        prometheus: Some(prom.url.clone()),
        prometheus_timeout: Duration::from_secs(120),
        history_ttl: Duration::from_secs(3600),
        ..PrometheusArgs::default()
    };
    let src = Arc::new(
        PrometheusSource::from_args(&args)
            .unwrap()
            .unwrap()
            .with_eval_time(p.end),
    );
    let hwm_before = vm_hwm_kib();

    // Cold: one refresh per namespace, one after the other.
    let mut per_ns = Vec::new();
    let t = Instant::now();
    let mut seen = 0;
    for ns in 0..p.namespaces {
        let t = Instant::now();
        let h = src
            .namespace(&format!("bench-{ns:02}"), WINDOW)
            .await
            .unwrap();
        per_ns.push(t.elapsed());
        seen += h.len();
    }
    let cold_total = t.elapsed();
    let queries = src.stats().queries;
    per_ns.sort();

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

    println!(
        "workloads: {} in {} namespaces, {} containers each, {} days at 5-minute resolution",
        p.workloads, p.namespaces, p.containers, p.days
    );
    println!("workloads seen by the refreshes: {seen}");
    println!(
        "cold refresh: {:.2?} total for {} namespaces; per namespace min {:.2?} median {:.2?} max {:.2?}",
        cold_total,
        p.namespaces,
        per_ns[0],
        per_ns[per_ns.len() / 2],
        per_ns[per_ns.len() - 1]
    );
    println!(
        "queries: {queries} ({} per namespace refresh)",
        queries / p.namespaces as u64
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
        "peak memory (VmHWM) of this process: {} MiB before the refreshes, {} MiB after",
        hwm_before / 1024,
        vm_hwm_kib() / 1024
    );
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
