//! `oomguard serve --prometheus`: `/readyz` stays 503 until the history of every namespace with
//! a policy is loaded (or `--warmup-timeout` has passed), and admissions are then answered from
//! memory without a query.

mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use common::fake::{FakeServer, Mode};
use common::{client_for, fixture, spawn_serve, Spawned};

struct Serve {
    child: Child,
    admin: u16,
    port: u16,
    dir: tempfile::TempDir,
    client: reqwest::Client,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(prometheus: &str, warmup_timeout: &str) -> Serve {
    let Spawned {
        dir,
        port,
        admin,
        child,
    } = spawn_serve(
        "warn",
        "",
        &[
            "--prometheus",
            prometheus,
            "--warmup-timeout",
            warmup_timeout,
        ],
        &[],
    );
    let client = client_for(&dir.path().join("certs/ca.crt"));
    Serve {
        child,
        admin,
        port,
        dir,
        client,
    }
}

impl Serve {
    async fn readyz(&self) -> Option<u16> {
        reqwest::get(format!("http://127.0.0.1:{}/readyz", self.admin))
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }

    /// Seconds from now until `/readyz` is 200, having seen it answer 503 first.
    async fn ready_after_503(&self) -> Duration {
        let t = Instant::now();
        let mut saw_503 = false;
        loop {
            match self.readyz().await {
                Some(200) => {
                    assert!(saw_503, "ready before the warm-up");
                    return t.elapsed();
                }
                Some(503) => saw_503 = true,
                _ => {}
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "not ready in 30 s: {}",
                std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_once_the_policies_namespaces_are_loaded_then_served_from_memory() {
    // Every answer takes 700 ms: the warm-up (three rounds of queries) takes over 2 s.
    let fake = FakeServer::start(Mode::EmptyOk { delay_ms: 700 }).await;
    let s = serve(&fake.url, "60s");
    let waited = s.ready_after_503().await;
    assert!(waited >= Duration::from_millis(1500), "{waited:?}");
    let loaded = fake.requests();
    assert!(loaded >= 4, "the warm-up queried Prometheus: {loaded}");
    // An admission in that namespace: no query, no wait.
    let review = fixture("deployment-create.json");
    let t = Instant::now();
    let r = s
        .client
        .post(format!("https://localhost:{}/validate", s.port))
        .json(&review)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(fake.requests(), loaded, "the warm admission sent a query");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_after_the_warmup_timeout_when_prometheus_hangs() {
    let fake = FakeServer::start(Mode::Hang).await;
    let s = serve(&fake.url, "2s");
    let waited = s.ready_after_503().await;
    assert!(
        waited >= Duration::from_millis(1000) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
}
