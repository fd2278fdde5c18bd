//! A TTL cache with refresh-ahead and single-flight loading, for history sources that do I/O.
//!
//! Semantics, per key:
//! - **fresh** (age < `refresh_after`): served from memory, no I/O.
//! - **aging** (`refresh_after` ≤ age < `ttl`): served from memory at once, and one background
//!   refresh is started (if none is running), so that a steady stream of admissions never waits.
//! - **expired or absent**: the caller waits for a load. Concurrent callers share one load
//!   (single-flight). The load runs in its own task: if the caller gives up (its deadline), the
//!   load still completes and fills the cache for the next caller.
//! - A failed load leaves the previous value in place (it keeps being served until its `ttl`) and
//!   is reported to the callers that waited for it; the next call after the failure tries again.
//! - **Bounded**: at most `capacity` keys; inserting past it drops the least recently used key
//!   that has no load running.
//! - **Refresh-ahead without callers**: [`TtlCache::due`] lists the keys past `refresh_after`
//!   that a refresher (e.g. `oomguard serve`'s) should reload with [`TtlCache::refresh`], so that
//!   a key kept warm never expires and no admission waits for it.
//!
//! Why not moka: its futures cache gives single-flight inserts and a size bound, but neither
//! serving the old value while one background load replaces it, nor a load that outlives the
//! caller that started it; both would still be written here around it.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt, Shared};

/// Counters for metrics. Read them with [`CacheStats::snapshot`].
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Calls served from memory (fresh or aging entries).
    pub hits: AtomicU64,
    /// Calls that had to wait for a load (absent or expired entries).
    pub misses: AtomicU64,
    /// Loads started (foreground and background). Single-flight makes this ≤ misses + aging hits.
    pub loads: AtomicU64,
    /// Loads started in the background by an aging hit.
    pub background_loads: AtomicU64,
    /// Loads that failed.
    pub load_errors: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStatsSnapshot {
    pub hits: u64,
    pub misses: u64,
    pub loads: u64,
    pub background_loads: u64,
    pub load_errors: u64,
}

impl CacheStats {
    pub fn snapshot(&self) -> CacheStatsSnapshot {
        CacheStatsSnapshot {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            loads: self.loads.load(Ordering::Relaxed),
            background_loads: self.background_loads.load(Ordering::Relaxed),
            load_errors: self.load_errors.load(Ordering::Relaxed),
        }
    }
}

type Flight<V, E> = Shared<BoxFuture<'static, Result<Arc<V>, E>>>;

struct Entry<V, E> {
    value: Option<(Arc<V>, Instant)>,
    flight: Option<(u64, Flight<V, E>)>,
    last_access: Instant,
}

/// The cache. Cheap to clone (shared state).
pub struct TtlCache<K, V, E> {
    inner: Arc<Inner<K, V, E>>,
}

impl<K, V, E> Clone for TtlCache<K, V, E> {
    fn clone(&self) -> Self {
        TtlCache {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<K, V, E> {
    ttl: Duration,
    refresh_after: Duration,
    capacity: usize,
    entries: Mutex<HashMap<K, Entry<V, E>>>,
    next_flight: AtomicU64,
    stats: CacheStats,
}

impl<K, V, E> TtlCache<K, V, E>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
    E: Clone + Send + Sync + From<LoadPanicked> + 'static,
{
    /// `ttl`: how long a value may be served. A background refresh starts at half of it.
    pub fn new(ttl: Duration) -> Self {
        Self::with_refresh_after(ttl, ttl / 2)
    }

    pub fn with_refresh_after(ttl: Duration, refresh_after: Duration) -> Self {
        Self::bounded(ttl, refresh_after, usize::MAX)
    }

    /// At most `capacity` keys (the least recently used one without a running load goes).
    pub fn bounded(ttl: Duration, refresh_after: Duration, capacity: usize) -> Self {
        TtlCache {
            inner: Arc::new(Inner {
                ttl,
                refresh_after: refresh_after.min(ttl),
                capacity: capacity.max(1),
                entries: Mutex::new(HashMap::new()),
                next_flight: AtomicU64::new(0),
                stats: CacheStats::default(),
            }),
        }
    }

    pub fn stats(&self) -> &CacheStats {
        &self.inner.stats
    }

    pub fn ttl(&self) -> Duration {
        self.inner.ttl
    }

    /// The value for `key`, loading it with `load` when needed (see the module docs).
    /// Must be called within a Tokio runtime (loads run as tasks).
    pub async fn get_or_load<F, Fut>(&self, key: &K, load: F) -> Result<Arc<V>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
    {
        let flight = {
            // A poisoned lock only means another caller panicked mid-update; the map is still
            // consistent (every update is a single assignment), so keep using it.
            let mut entries = self
                .inner
                .entries
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let now = Instant::now();
            if !entries.contains_key(key) && entries.len() >= self.inner.capacity {
                evict_lru(&mut entries);
            }
            let entry = entries.entry(key.clone()).or_insert(Entry {
                value: None,
                flight: None,
                last_access: now,
            });
            entry.last_access = now;
            if let Some((value, at)) = &entry.value {
                let age = now.saturating_duration_since(*at);
                if age < self.inner.ttl {
                    self.inner.stats.hits.fetch_add(1, Ordering::Relaxed);
                    let value = value.clone();
                    if age >= self.inner.refresh_after && entry.flight.is_none() {
                        self.inner
                            .stats
                            .background_loads
                            .fetch_add(1, Ordering::Relaxed);
                        let flight = self.start_flight(key.clone(), load());
                        // Drive it without a waiter: the spawned task does the work.
                        entry.flight = Some(flight);
                    }
                    return Ok(value);
                }
            }
            self.inner.stats.misses.fetch_add(1, Ordering::Relaxed);
            match &entry.flight {
                Some((_, flight)) => flight.clone(),
                None => {
                    let flight = self.start_flight(key.clone(), load());
                    let shared = flight.1.clone();
                    entry.flight = Some(flight);
                    shared
                }
            }
        };
        flight.await
    }

    /// Spawns the load as a task that stores its result, and returns a shareable handle on it.
    fn start_flight<Fut>(&self, key: K, load: Fut) -> (u64, Flight<V, E>)
    where
        Fut: Future<Output = Result<V, E>> + Send + 'static,
    {
        let id = self.inner.next_flight.fetch_add(1, Ordering::Relaxed);
        self.inner.stats.loads.fetch_add(1, Ordering::Relaxed);
        let inner = self.inner.clone();
        let (tx, rx) = futures::channel::oneshot::channel::<Result<Arc<V>, E>>();
        tokio::spawn(async move {
            let result = match std::panic::AssertUnwindSafe(load).catch_unwind().await {
                Ok(result) => result.map(Arc::new),
                Err(_) => Err(E::from(LoadPanicked)),
            };
            {
                let mut entries = inner
                    .entries
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if let Some(entry) = entries.get_mut(&key) {
                    if let Ok(value) = &result {
                        entry.value = Some((value.clone(), Instant::now()));
                    }
                    if matches!(&entry.flight, Some((fid, _)) if *fid == id) {
                        entry.flight = None;
                    }
                }
            }
            if result.is_err() {
                inner.stats.load_errors.fetch_add(1, Ordering::Relaxed);
            }
            let _ = tx.send(result);
        });
        let fut: BoxFuture<'static, Result<Arc<V>, E>> = Box::pin(async move {
            match rx.await {
                Ok(result) => result,
                // Only when the runtime shuts down under us.
                Err(_) => Err(E::from(LoadPanicked)),
            }
        });
        (id, fut.shared())
    }

    /// Keys whose value is past `refresh_after` (or failed to load) with no load running, and
    /// whose last use passes `keep(key, time since last use)`: what a refresher reloads.
    pub fn due(&self, keep: impl Fn(&K, Duration) -> bool) -> Vec<K> {
        let entries = self
            .inner
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        entries
            .iter()
            .filter(|(_, e)| e.flight.is_none())
            .filter(|(_, e)| {
                e.value.as_ref().is_none_or(|(_, at)| {
                    now.saturating_duration_since(*at) >= self.inner.refresh_after
                })
            })
            .filter(|(k, e)| keep(k, now.saturating_duration_since(e.last_access)))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Starts a background load of `key` unless one is running (the old value keeps being
    /// served meanwhile). Does not count as a use of the key.
    pub fn refresh<F, Fut>(&self, key: &K, load: F)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
    {
        let mut entries = self
            .inner
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !entries.contains_key(key) && entries.len() >= self.inner.capacity {
            evict_lru(&mut entries);
        }
        let now = Instant::now();
        let entry = entries.entry(key.clone()).or_insert(Entry {
            value: None,
            flight: None,
            last_access: now,
        });
        if entry.flight.is_none() {
            self.inner
                .stats
                .background_loads
                .fetch_add(1, Ordering::Relaxed);
            entry.flight = Some(self.start_flight(key.clone(), load()));
        }
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.inner
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value for `key` if it is still within its TTL, without loading anything.
    pub fn peek(&self, key: &K) -> Option<Arc<V>> {
        let entries = self
            .inner
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (value, at) = entries.get(key)?.value.as_ref()?;
        (at.elapsed() < self.inner.ttl).then(|| value.clone())
    }

    /// Drops every value and pending load handle (loads already running still finish).
    pub fn clear(&self) {
        self.inner
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    }
}

/// Drops the least recently used entry that has no load running.
fn evict_lru<K: Eq + Hash + Clone, V, E>(entries: &mut HashMap<K, Entry<V, E>>) {
    let oldest = entries
        .iter()
        .filter(|(_, e)| e.flight.is_none())
        .min_by_key(|(_, e)| e.last_access)
        .map(|(k, _)| k.clone());
    if let Some(k) = oldest {
        entries.remove(&k);
    }
}

/// A load panicked (a bug) or its task was cancelled by a runtime shutdown. Callers get an error
/// built from this, never a panic or a hang.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadPanicked;

impl From<LoadPanicked> for super::HistoryError {
    fn from(_: LoadPanicked) -> super::HistoryError {
        super::HistoryError::Prometheus {
            url: "(history cache)".to_string(),
            message: "the history load panicked or was cancelled".to_string(),
        }
    }
}

impl From<LoadPanicked> for String {
    fn from(_: LoadPanicked) -> String {
        "load panicked".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test]
    async fn concurrent_misses_share_one_load() {
        let cache: TtlCache<u32, u32, String> = TtlCache::new(Duration::from_secs(60));
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let cache = cache.clone();
            let calls = calls.clone();
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_load(&1, || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<_, String>(7)
                    })
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(*t.await.unwrap().unwrap(), 7);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let s = cache.stats().snapshot();
        assert_eq!(s.loads, 1);
        assert_eq!(s.misses + s.hits, 20);
    }

    #[tokio::test]
    async fn fresh_hit_does_not_load_and_expiry_does() {
        let cache: TtlCache<u32, u32, String> =
            TtlCache::with_refresh_after(Duration::from_millis(200), Duration::from_millis(200));
        let v = cache.get_or_load(&1, || async { Ok(1) }).await.unwrap();
        assert_eq!(*v, 1);
        let v = cache
            .get_or_load(&1, || async { Err("must not load".to_string()) })
            .await
            .unwrap();
        assert_eq!(*v, 1);
        tokio::time::sleep(Duration::from_millis(250)).await;
        let e = cache
            .get_or_load(&1, || async { Err("down".to_string()) })
            .await;
        assert_eq!(e.unwrap_err(), "down");
        let v = cache.get_or_load(&1, || async { Ok(2) }).await.unwrap();
        assert_eq!(*v, 2, "a later successful load recovers");
        assert_eq!(cache.stats().snapshot().load_errors, 1);
    }

    #[tokio::test]
    async fn aging_hit_serves_old_value_and_refreshes_in_background() {
        let cache: TtlCache<u32, u32, String> =
            TtlCache::with_refresh_after(Duration::from_secs(10), Duration::from_millis(50));
        cache.get_or_load(&1, || async { Ok(1) }).await.unwrap();
        tokio::time::sleep(Duration::from_millis(80)).await;
        let v = cache
            .get_or_load(&1, || async {
                tokio::time::sleep(Duration::from_millis(30)).await;
                Ok(2)
            })
            .await
            .unwrap();
        assert_eq!(*v, 1, "aging value is served without waiting");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(*cache.peek(&1).unwrap(), 2);
        assert_eq!(cache.stats().snapshot().background_loads, 1);
    }

    #[tokio::test]
    async fn abandoned_caller_still_fills_the_cache() {
        let cache: TtlCache<u32, u32, String> = TtlCache::new(Duration::from_secs(60));
        let r = tokio::time::timeout(
            Duration::from_millis(10),
            cache.get_or_load(&1, || async {
                tokio::time::sleep(Duration::from_millis(60)).await;
                Ok(5)
            }),
        )
        .await;
        assert!(r.is_err());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(*cache.peek(&1).unwrap(), 5);
    }

    #[tokio::test]
    async fn panicking_load_is_an_error_not_a_crash() {
        let cache: TtlCache<u32, u32, String> = TtlCache::new(Duration::from_secs(60));
        let r = cache
            .get_or_load(&1, || async {
                if cache_test_panics() {
                    panic!("bug in a loader");
                }
                Ok(1)
            })
            .await;
        assert_eq!(r.unwrap_err(), "load panicked");
        assert_eq!(*cache.get_or_load(&1, || async { Ok(3) }).await.unwrap(), 3);
    }

    fn cache_test_panics() -> bool {
        true
    }

    #[tokio::test]
    async fn bounded_drops_the_least_recently_used() {
        let cache: TtlCache<u32, u32, String> =
            TtlCache::bounded(Duration::from_secs(60), Duration::from_secs(30), 2);
        for k in [1, 2] {
            cache
                .get_or_load(&k, || async move { Ok(k) })
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        cache.get_or_load(&1, || async { Ok(9) }).await.unwrap();
        cache.get_or_load(&3, || async { Ok(3) }).await.unwrap();
        assert_eq!(cache.len(), 2);
        assert!(cache.peek(&2).is_none(), "2 was the least recently used");
        assert_eq!(*cache.peek(&1).unwrap(), 1);
    }

    #[tokio::test]
    async fn due_keys_are_refreshed_in_the_background_and_served_meanwhile() {
        let cache: TtlCache<u32, u32, String> =
            TtlCache::with_refresh_after(Duration::from_secs(10), Duration::from_millis(50));
        cache.get_or_load(&1, || async { Ok(1) }).await.unwrap();
        assert!(cache.due(|_, _| true).is_empty(), "fresh");
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(cache.due(|_, _| true), vec![1]);
        assert!(cache
            .due(|_, idle| idle < Duration::from_millis(10))
            .is_empty());
        cache.refresh(&1, || async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(2)
        });
        assert!(cache.due(|_, _| true).is_empty(), "a load is running");
        assert_eq!(*cache.peek(&1).unwrap(), 1, "the old value meanwhile");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(*cache.peek(&1).unwrap(), 2);
    }
}
