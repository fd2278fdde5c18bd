//! The serving runtime every listener of oomguard shares (the webhook, the reconciler's admin port,
//! the forecast and remediation API): TLS whose certificate is re-read when its files change, an
//! HTTPS listener with oomguard's timeouts, the plain-HTTP admin listener (`/livez`, `/readyz`,
//! `/metrics`), hot reload of the policies folder, and shutdown: not ready first, then a drain.

pub mod tls;
pub mod watch;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::routing::get;
use axum::Router;
use tokio::sync::watch as channel;

use crate::policy::store::{PolicyStore, ReloadReport};

/// What `/readyz` answers: ready while serving and warm (the webhook's history is loaded).
#[derive(Debug)]
pub struct Readiness {
    serving: AtomicBool,
    warm: AtomicBool,
}

impl Readiness {
    /// Not serving yet; `warm` false holds `/readyz` at 503 until [`Readiness::set_warm`].
    pub fn new(warm: bool) -> Arc<Readiness> {
        Arc::new(Readiness {
            serving: AtomicBool::new(false),
            warm: AtomicBool::new(warm),
        })
    }

    pub fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::SeqCst);
    }

    pub fn set_warm(&self) {
        self.warm.store(true, Ordering::SeqCst);
    }

    pub fn is_warm(&self) -> bool {
        self.warm.load(Ordering::SeqCst)
    }

    pub fn is_ready(&self) -> bool {
        self.is_warm() && self.serving.load(Ordering::SeqCst)
    }

    fn answer(&self) -> (StatusCode, &'static str) {
        if !self.is_warm() {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: loading memory history (--warmup-timeout)",
            )
        } else if self.serving.load(Ordering::SeqCst) {
            (StatusCode::OK, "ok")
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, "not ready")
        }
    }
}

/// The admin routes: `/livez` (the process answers), `/readyz` ([`Readiness`]) and `/metrics`
/// (OpenMetrics text from `metrics`).
pub fn admin_router(
    readiness: Arc<Readiness>,
    metrics: impl Fn() -> String + Clone + Send + Sync + 'static,
) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let r = readiness.clone();
                async move { r.answer() }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m(),
                    )
                }
            }),
        )
}

/// The process's stop signal (SIGTERM or SIGINT), seen by every listener and task that holds a
/// clone. A stop can also be asked for from inside ([`Shutdown::stop`]).
#[derive(Clone)]
pub struct Shutdown {
    tx: Arc<channel::Sender<bool>>,
    rx: channel::Receiver<bool>,
}

impl Shutdown {
    /// Listens for SIGTERM/SIGINT from now on.
    pub fn on_signal() -> Shutdown {
        let s = Shutdown::manual();
        let tx = s.tx.clone();
        tokio::spawn(async move {
            signal().await;
            tracing::info!("shutting down");
            let _ = tx.send(true);
        });
        s
    }

    /// A stop asked for only with [`Shutdown::stop`] (tests, and a server run inside another).
    pub fn manual() -> Shutdown {
        let (tx, rx) = channel::channel(false);
        Shutdown {
            tx: Arc::new(tx),
            rx,
        }
    }

    pub fn stop(&self) {
        let _ = self.tx.send(true);
    }

    /// Completes once the stop is asked for.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        let mut rx = self.rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }
}

async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// How a listener stops: after the stop signal it turns not ready, keeps serving for `delay`
/// (endpoints take a moment to drop it), then gives in-flight requests `drain` to finish.
#[derive(Debug, Clone, Copy)]
pub struct Drain {
    pub delay: Duration,
    pub drain: Duration,
}

/// Serves `router` over HTTPS on `addr` with `tls` until the stop, then drains as `drain` says.
/// `name` goes into the logs; the caller's peer address is available to handlers
/// (`ConnectInfo<SocketAddr>`). `readiness` (when given) is set serving once the listener is
/// bound, and not serving at the stop.
pub async fn serve_https(
    name: &'static str,
    addr: SocketAddr,
    tls: axum_server::tls_rustls::RustlsConfig,
    router: Router,
    shutdown: &Shutdown,
    drain: Drain,
    readiness: Option<Arc<Readiness>>,
) -> anyhow::Result<()> {
    let handle = axum_server::Handle::new();
    let (h, stopped) = (handle.clone(), shutdown.stopped());
    tokio::spawn(async move {
        if let Some(a) = h.listening().await {
            if let Some(r) = &readiness {
                r.set_serving(true);
            }
            tracing::info!(listener = name, address = %format!("https://{a}"), "listening");
        }
        stopped.await;
        // Not ready first: callers that watch /readyz (endpoints) stop sending, while the
        // listener still answers whatever reaches it during the delay.
        if let Some(r) = &readiness {
            r.set_serving(false);
        }
        if !drain.delay.is_zero() {
            tracing::info!(
                listener = name,
                delay_ms = drain.delay.as_millis() as u64,
                "shutting down: not ready, still serving"
            );
            tokio::time::sleep(drain.delay).await;
        }
        tracing::info!(
            listener = name,
            drain_secs = drain.drain.as_secs(),
            "shutting down: draining in-flight requests"
        );
        h.graceful_shutdown(Some(drain.drain));
    });
    tls::bind(addr, tls, handle)
        .serve(router.into_make_service_with_connect_info::<SocketAddr>())
        .await
        .map_err(|e| anyhow::anyhow!("{name} listener {addr}: {e}"))
}

/// Binds the admin listener on `addr` now (a taken port is an error at start, not later) and
/// returns what serves `router` over plain HTTP until `until` completes (the admin listener
/// outlives the drain of the listener it reports on, answering `/readyz` 503 meanwhile).
pub fn admin_listener(
    addr: SocketAddr,
    router: Router,
    until: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<impl Future<Output = anyhow::Result<()>> + Send + 'static> {
    let listener = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| anyhow::anyhow!("admin listener {addr}: {e}"))?;
    tracing::info!(address = %format!("http://{addr}"), "admin listener");
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        until.await;
        h.graceful_shutdown(Some(Duration::from_secs(1)));
    });
    let server = axum_server::from_tcp(listener)
        .map_err(|e| anyhow::anyhow!("admin listener {addr}: {e}"))?
        .handle(handle)
        .serve(router.into_make_service());
    Ok(async move {
        server
            .await
            .map_err(|e| anyhow::anyhow!("admin listener {addr}: {e}"))
    })
}

/// Opens the policies folder and reloads it whenever it changes; each load's report goes to
/// `on_load` (metrics), the first one included. A broken file is logged and leaves the last good
/// version in force.
pub fn reloading_policies(
    dir: &Path,
    on_load: impl Fn(&ReloadReport, &PolicyStore) + Send + Sync + 'static,
) -> anyhow::Result<Arc<PolicyStore>> {
    let (store, report) = PolicyStore::open(dir)?;
    for e in &report.errors {
        tracing::error!(error = %e, "policy file rejected");
    }
    tracing::info!(dir = %dir.display(), loaded = report.loaded, broken = report.errors.len(), "policies loaded");
    on_load(&report, &store);
    let store = Arc::new(store);
    let watch = watch::watch(&[dir.to_path_buf()], Duration::from_millis(300))?;
    let reload = store.clone();
    tokio::spawn(async move {
        // The whole Watch moves here: the watcher stops when it is dropped.
        let mut watch = watch;
        while watch.changes.recv().await.is_some() {
            let report = reload.reload();
            for e in &report.errors {
                tracing::error!(error = %e, "policy file rejected; the last good one stays in force");
            }
            tracing::info!(
                loaded = report.loaded,
                broken = report.errors.len(),
                "policies reloaded"
            );
            on_load(&report, &reload);
        }
    });
    Ok(store)
}

/// The namespace oomguard runs in (left alone like the system namespaces): `POD_NAMESPACE`
/// (the downward API in deploy/), else the ServiceAccount's namespace file.
pub fn own_namespace() -> Option<String> {
    std::env::var("POD_NAMESPACE")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace").ok()
        })
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}
