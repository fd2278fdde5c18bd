//! Benchmark of the Prometheus history source against a real Prometheus (not a test).
//!
//! ```text
//! cargo run --release --example prom_bench -- prepare DIR [namespaces] [workloads] [containers] [days] [scrape]
//! cargo run --release --example prom_bench -- query DIR
//! cargo run --release --example prom_bench -- warmup DIR OOMGUARD_BINARY
//! ```
//! `prepare` generates the workloads (tests/common/scenario.rs) one 6-hour slice at a time,
//! backfills each slice with promtool into DIR/tsdb while the next one is generated, then lets
//! Prometheus compact the blocks as it would on its own; `query` starts Prometheus on it and
//! measures the source in a fresh process (so that its peak memory is the source's, not the
//! generator's); `warmup` measures `oomguard serve`'s own warm-up (every namespace with a
//! policy, the default 7-day window) to `/readyz` = 200, and its peak RSS.
//! `bench/prometheus.sh` runs them.

// The allocator of the shipped binary (src/main.rs), so that memory figures are its own.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../tests/common/prom.rs"]
mod prom;
#[path = "../tests/common/scenario.rs"]
mod scenario;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oomguard::history::prometheus::{PrometheusArgs, PrometheusSource};
use oomguard::history::{HistoryQuery, HistorySource, WorkloadKey};

const WINDOW: u64 = 14 * 86_400;
/// Refreshes at a time during the warm-up (as `oomguard serve`'s default).
const WARMUP_CONCURRENCY: usize = 2;

fn usage() -> ! {
    eprintln!(
        "usage: prom_bench prepare DIR [namespaces] [workloads] [containers] [days] [scrape secs] | query DIR | warmup DIR OOMGUARD"
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
    /// Seconds between two scrapes of every series.
    scrape: i64,
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
        // Data prepared before the scrape interval was a parameter: one sample per 5 minutes.
        scrape: v.get(5).copied().unwrap_or(300),
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
        p.scrape,
    )
}

/// Time slices written (and backfilled) one at a time: 6 hours, aligned as promtool's blocks
/// (18 hours with `--max-block-duration=24h`) so that promtool reads each file once.
const SLICE: i64 = 6 * 3600;

fn prepare(dir: &Path, args: &[String]) {
    let num = |i: usize, d: usize| args.get(i).map(|s| s.parse().unwrap()).unwrap_or(d);
    let p = Params {
        end: prom::data_end(),
        namespaces: num(0, 10),
        workloads: num(1, 1000),
        containers: num(2, 3),
        days: num(3, 14) as i64,
        scrape: num(4, 300) as i64,
    };
    std::fs::create_dir_all(dir).unwrap();
    let tsdb = dir.join("tsdb");
    let per_ns = p.workloads / p.namespaces;
    let t0 = Instant::now();
    let (mut samples, mut bytes) = (0usize, 0u64);
    let mut gen_time = Duration::ZERO;
    let mut backfill: Option<std::thread::JoinHandle<Duration>> = None;
    let mut backfill_wait = Duration::ZERO;
    let start = p.end - p.days * 86_400;
    let mut from = start - start.rem_euclid(SLICE);
    let mut k = 0;
    while from <= p.end {
        let t = Instant::now();
        let input = dir.join(format!("slice-{k:03}.om"));
        let mut out =
            std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&input).unwrap());
        let series: Vec<scenario::Series> = (0..p.namespaces)
            .flat_map(|ns| {
                scenario::bench_slice(
                    &format!("bench-{ns:02}"),
                    ns * per_ns,
                    per_ns,
                    p.containers,
                    (p.end, p.days, p.scrape),
                    (from, from + SLICE),
                )
            })
            .flat_map(|w| w.series(p.scrape))
            .collect();
        samples += series.iter().map(|s| s.samples.len()).sum::<usize>();
        scenario::write_openmetrics(series, &mut out).unwrap();
        scenario::write_eof(&mut out).unwrap();
        drop(out);
        bytes += std::fs::metadata(&input).map(|m| m.len()).unwrap_or(0);
        gen_time += t.elapsed();
        // One promtool at a time, while the next slice is generated.
        let t = Instant::now();
        if let Some(h) = backfill.take() {
            h.join().unwrap();
        }
        backfill_wait += t.elapsed();
        let out_dir = tsdb.clone();
        backfill = Some(std::thread::spawn(move || {
            let t = Instant::now();
            prom::create_blocks(&input, &out_dir);
            let _ = std::fs::remove_file(&input);
            t.elapsed()
        }));
        from += SLICE;
        k += 1;
    }
    if let Some(h) = backfill.take() {
        h.join().unwrap();
    }
    println!(
        "generated {samples} samples ({:.1} GB of OpenMetrics in {k} slices of {} h, {:.1?} generating) and backfilled them with promtool create-blocks-from openmetrics: {:.1?} in all",
        bytes as f64 / 1e9,
        SLICE / 3600,
        gen_time,
        t0.elapsed()
    );
    let t = Instant::now();
    let blocks = settle(&tsdb);
    println!(
        "prometheus compacted the backfilled blocks into {blocks} in {:.1?}",
        t.elapsed()
    );
    std::fs::write(
        dir.join("params"),
        format!(
            "{} {} {} {} {} {}",
            p.end, p.namespaces, p.workloads, p.containers, p.days, p.scrape
        ),
    )
    .unwrap();
}

/// A value of Prometheus' own metrics.
fn prom_metric(port: u16, name: &str) -> Option<f64> {
    let (_, body) = prom::http_get(port, "/metrics")?;
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

/// Runs Prometheus on the backfilled blocks until its compactor has nothing left to do (as a
/// Prometheus that has been running for days would have them), so that no compaction runs during
/// the measurements. Returns the number of blocks.
fn settle(tsdb: &Path) -> usize {
    let prom = prom::Prometheus::start(tsdb, &[]);
    let mut last = (f64::NAN, f64::NAN);
    let mut stable_since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_secs(5));
        let now = (
            prom_metric(prom.port, "prometheus_tsdb_compactions_total").unwrap_or(-1.0),
            prom_metric(prom.port, "prometheus_tsdb_blocks_loaded").unwrap_or(-1.0),
        );
        if now != last {
            last = now;
            stable_since = Instant::now();
        } else if stable_since.elapsed() > Duration::from_secs(75) {
            // The compactor runs every minute: a whole minute and more without a change.
            return last.1 as usize;
        }
    }
}

/// The floor: the two reads any recommender needs, sent with curl (its own `time_total`): the
/// window's max per container (instant) and two days of 5-minute working set (range).
fn floor(url: &str, ns: &str, end: i64, window: u64) -> Duration {
    let sel = format!(
        r#"container_memory_working_set_bytes{{namespace="{ns}",container!="",container!="POD",image!=""}}"#
    );
    let instant = [
        "--data-urlencode".to_string(),
        format!("query=max_over_time({sel}[{window}s])"),
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
        .keep_samples(
            Some(oomguard::history::prometheus::SAMPLE_TAIL),
            oomguard::forecast::prepare,
        )
}

async fn query(dir: &Path) {
    let p = read_params(dir);
    let t = Instant::now();
    let prom = prom::Prometheus::start(&dir.join("tsdb"), &[]);
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
            f += floor(&prom.url, ns, p.end, WINDOW);
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
        "workloads: {} in {} namespaces, {} containers each, {} days scraped every {} s, 14-day window",
        p.workloads, p.namespaces, p.containers, p.days, p.scrape
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

/// `VmHWM` and `VmRSS` (KiB) of a process.
fn mem_of(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// CPU seconds (user + system) a process has used.
fn cpu_of(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = text.rsplit_once(')').map_or("", |r| r.1);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    let tick = 100.0; // USER_HZ on Linux
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / tick
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The window of a policy that sets none (`PolicySpec::default()`): what the warm-up reads.
const SERVE_WINDOW: u64 = 7 * 86_400;

/// The floor for every namespace, one after the other, evaluated now (as `serve` reads).
fn floor_all(url: &str, namespaces: &[String]) -> (Duration, Duration) {
    let t = Instant::now();
    let now = unix_now();
    let f = namespaces
        .iter()
        .map(|ns| floor(url, ns, now, SERVE_WINDOW))
        .sum();
    (f, t.elapsed())
}

/// `oomguard serve`'s warm-up: a policy file (`mode: warn`, default window 7d) per namespace,
/// serve started on the real Prometheus, timed from its start to `/readyz` = 200 (the warm-up
/// loads every namespace with a policy first), its peak RSS and CPU then; the floor with curl
/// before and after it in the same run.
fn warmup(dir: &Path, bin: PathBuf) {
    let p = read_params(dir);
    let prom = prom::Prometheus::start(&dir.join("tsdb"), &[]);
    prom.wait_queryable("container_memory_working_set_bytes", p.end);
    let prom_pid = prom.pid();
    let work = tempfile::tempdir().unwrap();
    let certs = work.path().join("certs");
    let st = std::process::Command::new(&bin)
        .args(["certs", "--out"])
        .arg(&certs)
        .args(["--dns", "localhost", "--ip", "127.0.0.1", "--force"])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("oomguard certs");
    assert!(st.success());
    let policies = work.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let namespaces: Vec<String> = (0..p.namespaces).map(|n| format!("bench-{n:02}")).collect();
    for ns in &namespaces {
        std::fs::write(
            policies.join(format!("{ns}.yaml")),
            "apiVersion: oomguard.io/v1\nkind: MemoryPolicy\nspec: {mode: warn}\n",
        )
        .unwrap();
    }
    println!(
        "workloads: {} in {} namespaces, {} containers each, {} days ending {} h ago, every series scraped every {} s; window 7d (the default policy's)",
        p.workloads,
        p.namespaces,
        p.containers,
        p.days,
        (unix_now() - p.end) / 3600,
        p.scrape
    );
    let (f1, w1) = floor_all(&prom.url, &namespaces);
    println!(
        "floor before (curl, one namespace after the other): {f1:.2?} ({w1:.2?} wall); load {}",
        loadavg()
    );

    let (port, admin) = (prom::free_port(), prom::free_port());
    let log_path = work.path().join("serve.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let prom_cpu = cpu_of(prom_pid);
    let t = Instant::now();
    let mut child = std::process::Command::new(&bin)
        .arg("serve")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .arg("--tls-cert")
        .arg(certs.join("tls.crt"))
        .arg("--tls-key")
        .arg(certs.join("tls.key"))
        .arg("--policies")
        .arg(&policies)
        .args(["--prometheus", &prom.url])
        // Ready only once the warm-up is done: its time is what is measured.
        .args(["--warmup-timeout", "30m"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("oomguard serve");
    let pid = child.id();
    let mut saw_503 = false;
    let ready = loop {
        match prom::http_get(admin, "/readyz") {
            Some((200, _)) => break t.elapsed(),
            Some((503, _)) => saw_503 = true,
            _ => {}
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "oomguard serve exited ({status}): {}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (hwm, rss) = mem_of(pid);
    let (serve_cpu, prom_cpu) = (cpu_of(pid), cpu_of(prom_pid) - prom_cpu);
    let _ = child.kill();
    let _ = child.wait();
    let log = strip_ansi(&std::fs::read_to_string(&log_path).unwrap_or_default());
    let done = log
        .lines()
        .find(|l| l.contains("history warm-up"))
        .unwrap_or("(no warm-up line in the log)");
    assert!(saw_503, "ready before the warm-up: {log}");
    assert!(done.contains("failed=0"), "{done}");
    println!(
        "oomguard serve: /readyz 200 after {ready:.2?} (from the process' start); its log: {}",
        done.trim()
    );
    println!(
        "oomguard serve: peak RSS (VmHWM) {} MiB, RSS at ready {} MiB; CPU to ready: serve {serve_cpu:.1} s, prometheus {prom_cpu:.1} s",
        hwm / 1024,
        rss / 1024
    );
    let (f2, w2) = floor_all(&prom.url, &namespaces);
    // What was loaded is right: one namespace, read the same way at the data's end, against
    // the generator's own statistics.
    let ns = p.namespaces - 1;
    let workloads = workloads_of(&p, ns);
    let src = PrometheusSource::new(&prom.url)
        .unwrap()
        .with_eval_time(p.end);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for w in [&workloads[0], &workloads[workloads.len() - 1]] {
        let q = HistoryQuery {
            key: WorkloadKey {
                namespace: w.namespace.clone(),
                kind: w.kind.clone(),
                name: w.name.clone(),
            },
            window_secs: SERVE_WINDOW,
        };
        let got = rt.block_on(src.fetch(&q)).unwrap().unwrap();
        let want = w.expected(p.end, SERVE_WINDOW as i64, 2 * 86_400);
        assert_eq!(got.containers["c0"].peaks.max, want["c0"].max, "{}", w.name);
        assert_eq!(got.containers["c0"].peaks.p95, want["c0"].p95, "{}", w.name);
    }
    println!(
        "floor after (curl): {f2:.2?} ({w2:.2?} wall); load {}",
        loadavg()
    );
    println!(
        "warm-up {:.1} s = {:.1}x the floor (mean of before and after: {:.2} s); peak RSS {} MiB",
        ready.as_secs_f64(),
        ready.as_secs_f64() / ((f1 + f2).as_secs_f64() / 2.0),
        (f1 + f2).as_secs_f64() / 2.0,
        hwm / 1024
    );
}

/// The log without its terminal colours.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ ... final byte in @..~
            for d in chars.by_ref() {
                if ('@'..='~').contains(&d) && d != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
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
    // RUST_LOG=oomguard=debug prints each refresh's stages.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, dir) = match (args.first(), args.get(1)) {
        (Some(c), Some(d)) => (c.as_str(), PathBuf::from(d)),
        _ => usage(),
    };
    match cmd {
        "prepare" => prepare(&dir, &args[2..]),
        "warmup" => warmup(
            &dir,
            args.get(2).map(PathBuf::from).unwrap_or_else(|| usage()),
        ),
        "query" => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(query(&dir)),
        _ => usage(),
    }
}
