//! Keeping the Prometheus history warm for `oomguard serve`: at start, every namespace with a
//! policy of its own is loaded (a few at a time) before `/readyz` says ready (or until
//! `--warmup-timeout`); afterwards a refresher reloads every history past half its TTL that
//! belongs to a namespace with a policy, or that admissions used within the last
//! [`IDLE_SECS`] (the default policy's namespaces, as they are seen). No admission then waits
//! for Prometheus, except the first one of a namespace nobody has deployed to yet.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::history::prometheus::PrometheusSource;
use crate::policy::store::PolicyStore;
use crate::policy::Mode;

/// A history unused for this long (and without a policy of its own) is no longer refreshed.
pub const IDLE_SECS: u64 = 3600;

pub struct Warmup {
    pub source: Arc<PrometheusSource>,
    /// `/readyz` turns ready after this even when the warm-up is not done.
    pub timeout: Duration,
    /// Namespaces loaded at a time.
    pub concurrency: usize,
}

/// The `(namespace, window)` keys of every namespace with a policy of its own (not `off`).
pub fn keys(policies: &PolicyStore) -> Vec<(String, u64)> {
    let set = policies.current();
    let mut keys: Vec<(String, u64)> = set
        .own()
        .filter(|(_, p)| p.mode != Mode::Off)
        .map(|(ns, p)| (ns.to_string(), p.history.window.secs()))
        .collect();
    keys.sort();
    keys
}

/// Runs the warm-up (at most `w.timeout`); logs what it did.
pub async fn run(w: &Warmup, policies: &PolicyStore) {
    let keys = keys(policies);
    let started = Instant::now();
    let n = keys.len();
    let work = w.source.warm_all(keys, w.concurrency);
    match tokio::time::timeout(w.timeout, work).await {
        Ok(failed) => {
            for ((ns, _), e) in &failed {
                tracing::warn!(namespace = %ns, error = %e, "history warm-up failed; admissions there load it on demand");
            }
            tracing::info!(
                namespaces = n,
                failed = failed.len(),
                secs = started.elapsed().as_secs_f64(),
                "history warm-up done"
            );
        }
        Err(_) => tracing::warn!(
            namespaces = n,
            timeout_secs = w.timeout.as_secs(),
            "history warm-up not done within --warmup-timeout: ready anyway, the loads go on"
        ),
    }
}

/// Reloads histories before they expire, for as long as the process runs.
pub async fn refresher(
    source: Arc<PrometheusSource>,
    policies: Arc<dyn Fn(&str) -> bool + Send + Sync>,
) {
    let every = (source.ttl() / 4).max(Duration::from_secs(1));
    let idle = Duration::from_secs(IDLE_SECS);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let started = source.refresh_due(|ns, _, unused| policies(ns) || unused < idle);
        if started > 0 {
            tracing::debug!(started, "history refresh-ahead");
        }
    }
}
