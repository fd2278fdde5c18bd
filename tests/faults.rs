//! Faults while the webhook is under load from a real client (reqwest over TLS, keep-alive,
//! /mutate and /validate mixed): SIGTERM, Prometheus hung, killed and restarted, and a serving
//! certificate replaced by broken files. Every check counts answers (none may fail); the only
//! clock is each client's deadline, set far above the webhook's own budget.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{fixture, repo, spawn_serve, Spawned};

/// Requests in flight at once (two per endpoint).
const CLIENTS: usize = 4;
/// What a warning says when the history could not be had in time.
const UNCHECKED: &str = "not checked";

/// An `oomguard serve` process with its own certificates and policies.
struct Server {
    dir: tempfile::TempDir,
    port: u16,
    admin: u16,
    child: Child,
}

impl Server {
    fn start(history: &[&str], extra: &[&str]) -> Server {
        let args: Vec<&str> = history.iter().chain(extra).copied().collect();
        let Spawned {
            dir,
            port,
            admin,
            child,
        } = spawn_serve("warn", "", &args, &[("RUST_LOG", "info")]);
        let s = Server {
            dir,
            port,
            admin,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while s.readyz() != Some(200) {
            assert!(Instant::now() < deadline, "not ready in 30 s:\n{}", s.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    fn with_file_history(extra: &[&str]) -> Server {
        let history = repo().join("examples/memory-leak-app/history.json");
        Server::start(&["--history", history.to_str().unwrap()], extra)
    }

    fn certs(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    fn readyz(&self) -> Option<u16> {
        common::prom::http_get(self.admin, "/readyz").map(|(code, _)| code)
    }

    fn metric(&self, name: &str) -> f64 {
        let (_, text) = common::prom::http_get(self.admin, "/metrics").unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    fn signal(&self, sig: &str) {
        signal(self.child.id(), sig);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "kill -{sig} {pid}");
}

/// What the clients saw in one phase of a test.
#[derive(Debug, Default, Clone)]
struct Tally {
    /// Well-formed 200 answers that echo the uid and allow.
    ok: u64,
    /// Of those, the ones saying that memory was not checked (history unavailable).
    unchecked: u64,
    /// Anything else: transport errors, other statuses, bad answers.
    failed: Vec<String>,
}

/// Clients sending reviews in a loop until stopped; results are counted per phase.
struct Load {
    stop: Arc<AtomicBool>,
    phase: Arc<AtomicUsize>,
    tallies: Arc<Mutex<Vec<Tally>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(port: u16, ca: &Path, timeout: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let phase = Arc::new(AtomicUsize::new(0));
        let tallies = Arc::new(Mutex::new(vec![Tally::default(); 8]));
        let review = fixture("deployment-create.json");
        let uid = review["request"]["uid"].as_str().unwrap().to_string();
        let body = serde_json::to_vec(&review).unwrap();
        let pem = std::fs::read(ca).unwrap();
        let mut tasks = Vec::new();
        for i in 0..CLIENTS {
            let client = reqwest::Client::builder()
                .tls_built_in_root_certs(false)
                .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
                .timeout(timeout)
                .build()
                .unwrap();
            let path = if i % 2 == 0 { "/mutate" } else { "/validate" };
            let url = format!("https://localhost:{port}{path}");
            let (stop, phase, tallies, body, uid) = (
                stop.clone(),
                phase.clone(),
                tallies.clone(),
                body.clone(),
                uid.clone(),
            );
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let p = phase.load(Ordering::SeqCst);
                    let result = send(&client, &url, body.clone(), &uid).await;
                    let mut t = tallies.lock().unwrap();
                    match result {
                        Ok(unchecked) => {
                            t[p].ok += 1;
                            t[p].unchecked += u64::from(unchecked);
                        }
                        Err(e) => t[p].failed.push(format!("{path}: {e}")),
                    }
                }
            }));
        }
        Load {
            stop,
            phase,
            tallies,
            tasks,
        }
    }

    fn set_phase(&self, p: usize) {
        self.phase.store(p, Ordering::SeqCst);
    }

    fn tally(&self, p: usize) -> Tally {
        self.tallies.lock().unwrap()[p].clone()
    }

    /// Waits until `cond` holds for phase `p` (bounded: a fault not seen in 60 s fails).
    async fn wait(&self, p: usize, what: &str, cond: impl Fn(&Tally) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let t = self.tally(p);
            if cond(&t) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "phase {p}: {what} not seen in 60 s: {t:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn finish(self) -> Vec<Tally> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            t.await.unwrap();
        }
        let t = self.tallies.lock().unwrap().clone();
        t
    }
}

/// One review; Ok(whether it says memory was not checked).
async fn send(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    uid: &str,
) -> Result<bool, String> {
    let r = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = r.status().as_u16();
    let text = r.text().await.map_err(|e| format!("{e:?}"))?;
    if status != 200 {
        return Err(format!("status {status}: {text}"));
    }
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    let resp = &v["response"];
    if resp["uid"] != uid || resp["allowed"] != true {
        return Err(format!("not an allowed answer for {uid}: {text}"));
    }
    Ok(resp["warnings"].as_array().is_some_and(|w| {
        w.iter()
            .any(|w| w.as_str().is_some_and(|w| w.contains(UNCHECKED)))
    }))
}

fn assert_no_failures(tallies: &[Tally], log: impl Fn() -> String) {
    let failed: Vec<&String> = tallies.iter().flat_map(|t| &t.failed).collect();
    assert!(
        failed.is_empty(),
        "{} failed requests, first: {:?}\nserver log:\n{}",
        failed.len(),
        failed.iter().take(5).collect::<Vec<_>>(),
        log()
    );
}

/// SIGTERM under load: /readyz turns 503 while the webhook still answers; the clients stop
/// sending when they see it (as the endpoints controller takes the pod out of the Service);
/// every request sent is answered, and the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_readyz_503_first_and_no_failed_request() {
    let mut s = Server::with_file_history(&["--shutdown-delay", "3s", "--drain", "5s"]);
    let load = Load::start(s.port, &s.certs().join("ca.crt"), Duration::from_secs(20));
    load.wait(0, "200 answers", |t| t.ok >= 200).await;

    // The endpoints controller: watches /readyz and takes the pod out at the first non-200.
    let (admin, stop) = (s.admin, load.stop.clone());
    let watcher = tokio::task::spawn_blocking(move || loop {
        match common::prom::http_get(admin, "/readyz") {
            Some((200, _)) => std::thread::sleep(Duration::from_millis(10)),
            other => {
                stop.store(true, Ordering::SeqCst);
                return other.map(|(code, _)| code);
            }
        }
    });
    load.set_phase(1);
    s.signal("TERM");
    let seen = watcher.await.unwrap();
    let tallies = load.finish().await;
    assert_eq!(
        seen,
        Some(503),
        "after SIGTERM /readyz must answer 503 before anything stops:\n{}",
        s.log()
    );
    assert_no_failures(&tallies, || s.log());
    assert!(tallies[0].ok >= 200);
    assert!(
        tallies[1].ok > 0,
        "no request was answered after SIGTERM: {tallies:?}"
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "still running 30 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status}:\n{}", s.log());
    let log = s.log();
    let not_ready = log.find("not ready, still serving").expect("delay logged");
    let draining = log.find("draining in-flight").expect("drain logged");
    assert!(not_ready < draining, "{log}");
}

/// Prometheus hung (SIGSTOP), then killed, then restarted on its port, while reviews flow:
/// every review is answered (allowed, saying memory was not checked, within the client's
/// deadline of --history-timeout + 5 s) during the outage, and once Prometheus is back the
/// answers check memory again with no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_hung_killed_and_restarted_under_load() {
    let data = tempfile::tempdir().unwrap();
    let mut prom = common::prom::Prometheus::start(data.path(), &[]);
    let timeout = Duration::from_secs(1);
    let s = Server::start(
        &["--prometheus", &prom.url],
        &[
            "--history-timeout",
            "1s",
            "--history-ttl",
            "1s",
            "--prometheus-timeout",
            "3s",
        ],
    );
    let load = Load::start(
        s.port,
        &s.certs().join("ca.crt"),
        timeout + Duration::from_secs(5),
    );
    load.wait(0, "answers checked against Prometheus", |t| {
        t.ok - t.unchecked >= 50
    })
    .await;

    // Hung: connections are accepted by the kernel, nothing answers.
    let pid = prom.pid();
    load.set_phase(1);
    signal(pid, "STOP");
    load.wait(1, "answers while Prometheus hangs", |t| t.unchecked >= 5)
        .await;

    // Killed: connections refused.
    signal(pid, "KILL");
    prom.stop();
    load.set_phase(2);
    load.wait(2, "answers while Prometheus is down", |t| t.unchecked >= 5)
        .await;

    // Restarted on the same port and data.
    let port = prom.port;
    drop(prom);
    load.set_phase(3);
    let _prom = common::prom::Prometheus::start_on(data.path(), port, &[]);
    load.wait(3, "a checked answer after the restart", |t| {
        t.ok > t.unchecked
    })
    .await;

    // Back: no error from here on.
    let unavailable = s.metric("oomguard_history_unavailable_total");
    load.set_phase(4);
    load.wait(4, "answers after recovery", |t| t.ok >= 300)
        .await;
    let tallies = load.finish().await;
    assert_no_failures(&tallies, || s.log());
    assert_eq!(
        tallies[4].unchecked,
        0,
        "answers after Prometheus came back still say not checked: {tallies:?}\n{}",
        s.log()
    );
    assert_eq!(
        s.metric("oomguard_history_unavailable_total"),
        unavailable,
        "history errors counted after Prometheus came back"
    );
    assert!(unavailable >= 10.0, "the outage was counted: {unavailable}");
}

/// The serving certificate replaced by broken files (not PEM, a cut PEM, an empty key) under
/// load: each reload fails and is counted, the previous certificate keeps serving old and new
/// connections, and no request fails. Putting the good files back reloads them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_certificate_files_keep_the_old_one_serving() {
    let s = Server::with_file_history(&[]);
    let certs = s.certs();
    let ca = certs.join("ca.crt");
    let load = Load::start(s.port, &ca, Duration::from_secs(20));
    load.wait(0, "answers", |t| t.ok >= 100).await;

    // New connections (a fresh TLS handshake each) next to the keep-alive load.
    let fresh = |ca: &Path| {
        let pem = std::fs::read(ca).unwrap();
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap()
    };
    let review = fixture("deployment-create.json");
    let uid = review["request"]["uid"].as_str().unwrap().to_string();
    let body = serde_json::to_vec(&review).unwrap();
    let url = format!("https://localhost:{}/validate", s.port);

    let good_cert = std::fs::read(certs.join("tls.crt")).unwrap();
    let good_key = std::fs::read(certs.join("tls.key")).unwrap();
    let cut = good_cert[..good_cert.len() / 2].to_vec();
    let cases: [(&str, &str, Vec<u8>); 3] = [
        (
            "a certificate that is not PEM",
            "tls.crt",
            b"not a certificate\n".to_vec(),
        ),
        ("a certificate cut in half", "tls.crt", cut),
        ("an empty key", "tls.key", Vec::new()),
    ];
    for (i, (what, file, bytes)) in cases.into_iter().enumerate() {
        let phase = i + 1;
        let errors = s.metric("oomguard_tls_reloads_total{result=\"error\"}");
        load.set_phase(phase);
        std::fs::write(certs.join(file), &bytes).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while s.metric("oomguard_tls_reloads_total{result=\"error\"}") <= errors {
            assert!(
                Instant::now() < deadline,
                "{what}: no failed reload counted:\n{}",
                s.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for n in 0..10 {
            send(&fresh(&ca), &url, body.clone(), &uid)
                .await
                .unwrap_or_else(|e| panic!("{what}: new connection {n} failed: {e}\n{}", s.log()));
        }
        load.wait(phase, "answers", |t| t.ok >= 100).await;
        // Put the good files back: they are reloaded.
        let oks = s.metric("oomguard_tls_reloads_total{result=\"ok\"}");
        std::fs::write(certs.join("tls.crt"), &good_cert).unwrap();
        std::fs::write(certs.join("tls.key"), &good_key).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while s.metric("oomguard_tls_reloads_total{result=\"ok\"}") <= oks {
            assert!(
                Instant::now() < deadline,
                "{what}: the good files were not reloaded:\n{}",
                s.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        send(&fresh(&ca), &url, body.clone(), &uid).await.unwrap();
    }
    let tallies = load.finish().await;
    assert_no_failures(&tallies, || s.log());
    assert!(s.log().contains("the previous one stays in use"));
}
