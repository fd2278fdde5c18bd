//! `oomguard serve`: the HTTPS admission endpoints (`/mutate`, `/validate`, `/admit`) on the
//! shared serving runtime ([`crate::serving`]), with their metrics and the history warm-up.

pub mod metrics;
pub mod warmup;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

use crate::admission::review::{self, Answer};
use crate::admission::{Admitter, Endpoint, Outcome};
use crate::policy::store::PolicyStore;
use crate::serving::{self, tls::TlsFiles, Drain, Readiness, Shutdown};
use metrics::{EndpointLabels, Metrics, ReasonLabels, RequestLabels, ResultLabels, SourceLabels};

/// Larger than any object etcd stores (1.5 MiB) twice (object and oldObject), with room.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

pub struct ServeOptions {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub tls: TlsFiles,
    pub policies: PathBuf,
    pub admitter: Admitter,
    /// How long in-flight requests may finish after SIGTERM.
    pub drain: Duration,
    /// Prometheus history to load before turning ready, and to keep warm.
    pub warmup: Option<warmup::Warmup>,
    /// How long to keep serving, not ready, after SIGTERM before the drain starts.
    pub shutdown_delay: Duration,
}

/// Shared by the handlers.
pub struct App {
    pub admitter: Admitter,
    pub policies: Arc<PolicyStore>,
    pub metrics: Arc<Metrics>,
    /// Listening and not draining, and the history warm-up done (or timed out, or none).
    pub readiness: Arc<Readiness>,
}

impl App {
    async fn handle(&self, endpoint: Endpoint, body: &[u8]) -> Response {
        let start = Instant::now();
        let (status, value, verdict) = match review::parse(body) {
            Err(bad) => {
                self.metrics
                    .errors
                    .get_or_create(&ReasonLabels {
                        reason: bad.metric_label(),
                    })
                    .inc();
                tracing::warn!(endpoint = endpoint.as_str(), error = %bad, "not an AdmissionReview");
                let answer = Answer {
                    allowed: true,
                    status: Some((
                        400,
                        format!("oomguard: {bad}; send an admission.k8s.io/v1 AdmissionReview"),
                    )),
                    ..Answer::default()
                };
                (
                    StatusCode::BAD_REQUEST,
                    review::response_bytes("", &answer),
                    "error",
                )
            }
            Ok(r) => {
                if let Some(m) = r.mismatch {
                    let answer = Answer {
                        allowed: true,
                        warnings: review::fit_warnings([format!("oomguard: {m}")]),
                        ..Answer::default()
                    };
                    (
                        StatusCode::OK,
                        review::response_bytes(&r.request.uid, &answer),
                        "error",
                    )
                } else {
                    let policies = self.policies.current();
                    let mut request = r.request;
                    let d = self
                        .admitter
                        .review(endpoint, &policies, &mut request)
                        .await;
                    if let Some(reason) = d.history_error {
                        self.metrics
                            .history_unavailable
                            .get_or_create(&SourceLabels {
                                source: self.admitter.history.name(),
                                reason,
                            })
                            .inc();
                    }
                    if let Some(v) = &d.verdict {
                        // What changed an object or refused it is worth a line; the rest is debug.
                        let notable = matches!(
                            d.outcome,
                            Outcome::Mutated | Outcome::Denied | Outcome::Unchecked
                        );
                        macro_rules! log_admission {
                            ($level:ident) => {
                                tracing::$level!(
                                    endpoint = endpoint.as_str(),
                                    uid = %request.uid,
                                    workload = %v.workload,
                                    outcome = d.outcome.as_str(),
                                    dry_run = request.dry_run.unwrap_or(false),
                                    severity = v.severity().as_str(),
                                    reasons = ?v.reasons(),
                                    "admission"
                                )
                            };
                        }
                        if notable {
                            log_admission!(info);
                        } else {
                            log_admission!(debug);
                        }
                    }
                    (
                        StatusCode::OK,
                        review::response_bytes(&request.uid, &d.answer),
                        d.outcome.as_str(),
                    )
                }
            }
        };
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                endpoint: endpoint.as_str(),
                verdict,
            })
            .inc();
        self.metrics
            .duration
            .get_or_create(&EndpointLabels {
                endpoint: endpoint.as_str(),
            })
            .observe(start.elapsed().as_secs_f64());
        (status, [(header::CONTENT_TYPE, "application/json")], value).into_response()
    }
}

async fn mutate(State(app): State<Arc<App>>, body: Bytes) -> Response {
    app.handle(Endpoint::Mutate, &body).await
}

async fn validate(State(app): State<Arc<App>>, body: Bytes) -> Response {
    app.handle(Endpoint::Validate, &body).await
}

async fn admit(State(app): State<Arc<App>>, body: Bytes) -> Response {
    app.handle(Endpoint::Admit, &body).await
}

async fn too_large(app: Arc<App>, resp: Response) -> Response {
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE {
        app.metrics
            .errors
            .get_or_create(&ReasonLabels {
                reason: "too_large",
            })
            .inc();
        let answer = Answer {
            allowed: true,
            status: Some((
                413,
                format!("oomguard: the body is larger than {MAX_BODY_BYTES} bytes"),
            )),
            ..Answer::default()
        };
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            axum::Json(review::response("", &answer)),
        )
            .into_response();
    }
    resp
}

/// The webhook routes (exposed for in-process tests and the benchmarks).
pub fn webhook_router(app: Arc<App>) -> Router {
    let a = app.clone();
    let router = Router::new()
        .route("/mutate", post(mutate))
        .route("/validate", post(validate))
        .route("/admit", post(admit));
    // The benchmarks' floor, built only with `--features bench`: never in the shipped server.
    #[cfg(feature = "bench")]
    let router = router.route("/trivial", post(trivial));
    router
        // A handler that panics answers 500 (the apiserver applies the failurePolicy) instead of
        // dropping the connection; logged at ERROR.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send + 'static>| {
                tracing::error!(
                    "a webhook handler panicked; answered 500 (a bug: please report it)"
                );
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "oomguard failed on this review (a bug)",
                )
                    .into_response()
            },
        ))
        // Rejects on Content-Length before reading, and while streaming otherwise. axum's own
        // 2 MB default is below what the apiserver may send, so it is replaced, not stacked.
        .layer(DefaultBodyLimit::disable())
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            MAX_BODY_BYTES,
        ))
        .layer(axum::middleware::map_response(move |r: Response| {
            too_large(a.clone(), r)
        }))
        .with_state(app)
}

/// A handler that answers a fixed allowed review: the baseline of the load benchmark, on the
/// same TLS stack (`--features bench` only).
#[cfg(feature = "bench")]
async fn trivial(_body: Bytes) -> Response {
    axum::Json(serde_json::json!({"apiVersion": review::API_VERSION, "kind": review::KIND, "response": {"uid": "", "allowed": true}})).into_response()
}

/// Runs until SIGTERM/SIGINT, then drains.
pub async fn serve(opts: ServeOptions) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let m = metrics.clone();
    let policies = serving::reloading_policies(&opts.policies, move |report, store| {
        let result = if report.errors.is_empty() {
            "ok"
        } else {
            "error"
        };
        m.policy_reloads
            .get_or_create(&ResultLabels { result })
            .inc();
        m.policy_broken_files.set(store.broken().len() as i64);
    })?;
    if let Some(ns) = serving::own_namespace() {
        policies.reserve(&ns);
    }
    let readiness = Readiness::new(opts.warmup.is_none());
    let app = Arc::new(App {
        admitter: opts.admitter,
        policies,
        metrics: metrics.clone(),
        readiness: readiness.clone(),
    });
    if let Some(w) = opts.warmup {
        let warm_app = app.clone();
        let source = w.source.clone();
        tokio::spawn(async move {
            warmup::run(&w, &warm_app.policies).await;
            warm_app.readiness.set_warm();
        });
        let policy_app = app.clone();
        tokio::spawn(warmup::refresher(
            source,
            Arc::new(move |ns: &str| policy_app.policies.current().has_own(ns)),
        ));
    }
    let m = metrics.clone();
    let tls = serving::tls::reloading_config(&opts.tls, move |result| {
        let result = if result.is_ok() { "ok" } else { "error" };
        m.tls_reloads.get_or_create(&ResultLabels { result }).inc();
    })?;

    let shutdown = Shutdown::on_signal();
    let m = metrics.clone();
    let admin_router = serving::admin_router(readiness.clone(), move || m.encode());
    // The admin listener answers (/readyz 503) until the webhook has drained.
    let (webhook_done_tx, webhook_done) = tokio::sync::oneshot::channel::<()>();
    let admin = tokio::spawn(serving::admin_listener(
        opts.admin_listen,
        admin_router,
        async move {
            let _ = webhook_done.await;
        },
    )?);
    let drain = Drain {
        delay: opts.shutdown_delay,
        drain: opts.drain,
    };
    let served = serving::serve_https(
        "webhook",
        opts.listen,
        tls,
        webhook_router(app),
        &shutdown,
        drain,
        Some(readiness),
    )
    .await;
    let _ = webhook_done_tx.send(());
    let admin = admin
        .await
        .map_err(|e| anyhow::anyhow!("admin listener {}: {e}", opts.admin_listen))?;
    served?;
    admin?;
    tracing::info!("stopped");
    Ok(())
}
