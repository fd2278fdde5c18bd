//! The Prometheus source when Prometheus misbehaves: errors come back within the configured
//! deadline, nothing panics or hangs, and a later good answer recovers. Plus single-flight and
//! the bearer token.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fake::{FakeServer, Mode};
use oomguard::history::prometheus::{PrometheusArgs, PrometheusSource};
use oomguard::history::{HistoryError, HistoryQuery, HistorySource, WorkloadKey};

const TIMEOUT: Duration = Duration::from_millis(600);
/// Scheduling slack on a loaded 2-core machine; still far below "hangs".
const MARGIN: Duration = Duration::from_millis(900);

fn args(url: &str) -> PrometheusArgs {
    PrometheusArgs {
        prometheus: Some(url.to_string()),
        prometheus_timeout: TIMEOUT,
        ..PrometheusArgs::default()
    }
}

fn source(url: &str) -> PrometheusSource {
    PrometheusSource::from_args(&args(url)).unwrap().unwrap()
}

fn q() -> HistoryQuery {
    HistoryQuery {
        key: WorkloadKey {
            namespace: "self-healing-platform".into(),
            kind: "Deployment".into(),
            name: "memory-leak-app".into(),
        },
        window_secs: 14 * 86_400,
    }
}

/// Fetches and asserts an error came back within the deadline.
async fn fetch_fails_fast(src: &PrometheusSource) -> HistoryError {
    let t = Instant::now();
    let result = src.fetch(&q()).await;
    let elapsed = t.elapsed();
    assert!(elapsed < TIMEOUT + MARGIN, "took {elapsed:?}");
    match result {
        Err(e) => e,
        Ok(h) => panic!("expected an error, got {h:?}"),
    }
}

#[tokio::test]
async fn stopped_prometheus_connection_refused() {
    // A real Prometheus that answers, then is stopped.
    let dir = tempfile::tempdir().unwrap();
    let mut prom = common::prom::Prometheus::start(dir.path(), &[]);
    let src = PrometheusSource::from_args(&PrometheusArgs {
        history_ttl: Duration::from_millis(1),
        // The first answer may be slow on a busy machine; the failure must still be fast.
        prometheus_timeout: Duration::from_secs(10),
        ..args(&prom.url)
    })
    .unwrap()
    .unwrap();
    assert!(
        src.fetch(&q()).await.unwrap().is_none(),
        "empty Prometheus: no history"
    );
    prom.stop();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let err = fetch_fails_fast(&src).await;
    assert!(matches!(err, HistoryError::Prometheus { .. }), "{err}");
    assert!(
        err.to_string().contains(&prom.url),
        "the error names the URL: {err}"
    );
}

#[tokio::test]
async fn listener_that_never_answers_times_out() {
    let fake = FakeServer::start(Mode::Hang).await;
    let src = source(&fake.url);
    let err = fetch_fails_fast(&src).await;
    assert!(matches!(err, HistoryError::Timeout(600)), "{err}");
    assert!(fake.requests() >= 1);
}

#[tokio::test]
async fn http_500_is_an_error() {
    let fake = FakeServer::start(Mode::Status500).await;
    let err = fetch_fails_fast(&source(&fake.url)).await;
    assert!(matches!(err, HistoryError::Prometheus { .. }), "{err}");
}

#[tokio::test]
async fn garbage_json_is_an_error() {
    let fake = FakeServer::start(Mode::Garbage).await;
    let err = fetch_fails_fast(&source(&fake.url)).await;
    assert!(matches!(err, HistoryError::Prometheus { .. }), "{err}");
    assert!(err.to_string().contains("JSON"), "{err}");
}

#[tokio::test]
async fn later_success_recovers_after_failures() {
    let fake = FakeServer::start(Mode::Status500).await;
    let src = source(&fake.url);
    fetch_fails_fast(&src).await;
    fetch_fails_fast(&src).await;
    fake.set_mode(Mode::EmptyOk { delay_ms: 0 });
    assert!(src.fetch(&q()).await.unwrap().is_none());
    let s = src.stats();
    assert_eq!(s.cache.load_errors, 2, "{s:?}");
    assert_eq!(s.cache.loads, 3, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_make_one_refresh() {
    let fake = FakeServer::start(Mode::EmptyOk { delay_ms: 300 }).await;
    let src = Arc::new(source(&fake.url));
    let mut tasks = Vec::new();
    for i in 0..32 {
        let src = src.clone();
        tasks.push(tokio::spawn(async move {
            let mut query = q();
            // Different workloads of the same namespace and window share the refresh too.
            query.key.name = format!("app-{}", i % 4);
            src.fetch(&query).await
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap().unwrap().is_none());
    }
    // One refresh = six HTTP queries for an empty namespace (rules check, mapping, peaks in
    // two parts, counters, limits), counted by the server itself.
    assert_eq!(fake.requests(), 6);
    let s = src.stats();
    assert_eq!((s.cache.loads, s.queries), (1, 6), "{s:?}");
    assert_eq!(s.cache.misses + s.cache.hits, 32, "{s:?}");
}

#[tokio::test]
async fn bearer_token_is_sent_and_reread_when_it_changes() {
    let fake = FakeServer::start(Mode::EmptyOk { delay_ms: 0 }).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "first-token\n").unwrap();
    let src = PrometheusSource::from_args(&PrometheusArgs {
        prometheus_token_file: Some(token.clone()),
        history_ttl: Duration::from_millis(1),
        ..args(&fake.url)
    })
    .unwrap()
    .unwrap();
    src.fetch(&q()).await.unwrap();
    std::fs::write(&token, "rotated-token").unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    src.fetch(&q()).await.unwrap();
    let auth = fake.auth.lock().unwrap().clone();
    // Two refreshes of six queries each.
    assert_eq!(auth.len(), 12, "{auth:?}");
    assert!(
        auth[..6].iter().all(|a| a == "Bearer first-token"),
        "{auth:?}"
    );
    assert!(
        auth[6..].iter().all(|a| a == "Bearer rotated-token"),
        "{auth:?}"
    );
}

#[tokio::test]
async fn https_to_a_plain_http_server_fails_within_the_deadline() {
    // A TLS URL to a plain-HTTP server that waits for a request line: no handshake ever
    // completes; the deadline answers.
    let fake = FakeServer::start(Mode::EmptyOk { delay_ms: 0 }).await;
    let url = fake.url.replace("http://", "https://");
    fetch_fails_fast(&source(&url)).await;
}
