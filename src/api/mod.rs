//! The forecast and remediation API: a versioned JSON API over TLS on its own listener, for
//! notebooks and automation (the tutorial's `predict_resource_usage` and `trigger_remediation`).
//! Documented in `docs/openapi.yaml`.
//!
//! Every request carries the caller's Kubernetes bearer token: authenticated with a TokenReview,
//! authorised with a SubjectAccessReview for the verb on the target ([`auth`]). Remediation
//! requests are validated against the namespace policy ([`validate`]) before the
//! [`Remediator`] — the reconciler's machinery — is called.
//!
//! | endpoint | needs |
//! |---|---|
//! | `GET /api/v1/namespaces/{ns}/workloads/{kind}/{name}/forecast` | `get` on the workload |
//! | `POST /api/v1/remediations` (`scale_deployment`) | `patch` on `deployments/scale` (or `statefulsets/scale`) |
//! | `POST /api/v1/remediations` (`raise_limit`) | `patch` on the workload |
//! | `GET /api/v1/remediations/{id}` | `get` on the record's workload |
//! | `GET /api/v1/remediations[?namespace=]` | `list deployments` in the namespace (all namespaces without one); StatefulSet records need `list statefulsets` too |

pub mod auth;
pub mod cluster;
pub mod error;
pub mod predict;
pub mod validate;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Serialize;

use crate::history::{HistoryQuery, HistorySource, WorkloadKey};
use crate::policy::store::PolicyStore;
use crate::reconcile::plan::ScalableKind;
use crate::reconcile::record::{Outcome, Remediation};
use crate::reconcile::remediator::{Caller, Remediator, Validated};
use crate::serving::tls::TlsFiles;
use crate::serving::Shutdown;
use auth::{Access, Authenticator};
use cluster::Workloads;
use error::ApiError;

/// Command-line flags of the API (shared by `oomguard api` and `oomguard reconcile`).
#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// HTTPS address of the forecast and remediation API, served with the same certificate as
    /// the webhook (--tls-cert, --tls-key). Without it the API is off.
    #[arg(long, value_name = "ADDR")]
    pub api_addr: Option<SocketAddr>,
    /// Requests per second each authenticated caller may make (per user name); each client
    /// address gets four times as many before authentication.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub api_rate_limit: u32,
    /// Requests a caller may make at once above the rate.
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub api_burst: u32,
    /// Largest request body in bytes (larger ones get 413).
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024)]
    pub api_max_body: usize,
    /// Deadline of a forecast's history fetch (a cold Prometheus refresh of a namespace may take
    /// longer than an admission waits).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = crate::duration::parse)]
    pub api_history_timeout: Duration,
}

impl Default for ApiArgs {
    fn default() -> Self {
        ApiArgs {
            api_addr: None,
            api_rate_limit: 10,
            api_burst: 20,
            api_max_body: 64 * 1024,
            api_history_timeout: Duration::from_secs(30),
        }
    }
}

/// What the API needs from its process: the reconciler shares its own.
pub struct ApiDeps {
    pub policies: Arc<PolicyStore>,
    pub history: Arc<dyn HistorySource>,
    pub client: kube::Client,
    pub remediator: Arc<dyn Remediator>,
}

/// Rate limits per caller and, before authentication, per client address.
pub struct RateLimits {
    callers: DefaultKeyedRateLimiter<String>,
    peers: DefaultKeyedRateLimiter<IpAddr>,
}

impl RateLimits {
    pub fn new(per_second: u32, burst: u32) -> RateLimits {
        let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let four = |n: NonZeroU32| n.saturating_mul(NonZeroU32::MIN.saturating_add(3));
        RateLimits {
            callers: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            peers: RateLimiter::keyed(Quota::per_second(four(rate)).allow_burst(four(burst))),
        }
    }

    fn check<K: std::hash::Hash + Eq + Clone>(
        limiter: &DefaultKeyedRateLimiter<K>,
        key: &K,
        who: &str,
    ) -> Result<(), ApiError> {
        limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            ApiError::too_many(
                "rate_limited",
                format!("too many requests from {who}; retry in {secs} s"),
                Some(secs.max(1)),
                None,
            )
        })
    }

    /// Drops the state of keys that are back to a full bucket (called periodically).
    pub fn shrink(&self) {
        self.callers.retain_recent();
        self.peers.retain_recent();
    }
}

/// Shared by the handlers.
pub struct ApiState {
    pub policies: Arc<PolicyStore>,
    pub history: Arc<dyn HistorySource>,
    pub workloads: Arc<dyn Workloads>,
    pub auth: Arc<dyn Authenticator>,
    pub remediator: Arc<dyn Remediator>,
    pub history_timeout: Duration,
    pub limits: RateLimits,
    pub max_body: usize,
}

/// The client's address, when the listener recorded it.
pub struct Peer(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

impl ApiState {
    /// Rate limit by address, bearer token, TokenReview, rate limit by caller.
    async fn caller(&self, peer: &Peer, headers: &HeaderMap) -> Result<Caller, ApiError> {
        if let Some(ip) = peer.0 {
            RateLimits::check(&self.limits.peers, &ip, &ip.to_string())?;
        }
        let value = headers
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or(""));
        let Some(token) = auth::bearer(value) else {
            return Err(ApiError::unauthenticated(if value.is_some() {
                "the Authorization header is not \"Bearer <token>\""
            } else {
                "no credentials: send Authorization: Bearer <token> with a Kubernetes token (e.g. `kubectl create token NAME` or the ServiceAccount's)"
            }));
        };
        let caller = self.auth.authenticate(token).await?;
        RateLimits::check(
            &self.limits.callers,
            &caller.username,
            &format!("user {:?}", caller.username),
        )?;
        Ok(caller)
    }

    /// A SubjectAccessReview; 403 naming who and what when it says no.
    async fn require(&self, caller: &Caller, access: &Access) -> Result<(), ApiError> {
        let d = self.auth.authorize(caller, access).await?;
        if d.allowed {
            return Ok(());
        }
        let why = if d.reason.is_empty() {
            String::new()
        } else {
            format!(" ({})", d.reason)
        };
        Err(ApiError::forbidden(format!(
            "user {:?} cannot {access}{why}",
            caller.username
        )))
    }
}

fn access(
    verb: &'static str,
    kind: ScalableKind,
    subresource: Option<&'static str>,
    namespace: &str,
    name: Option<&str>,
) -> Access {
    Access {
        verb,
        resource: validate::resource(kind),
        subresource,
        namespace: Some(namespace.to_string()),
        name: name.map(str::to_string),
    }
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    (status, axum::Json(value)).into_response()
}

type ApiResult = Result<Response, ApiError>;

/// Answers what it returns, or the error as JSON.
fn answer(r: ApiResult) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}

#[derive(serde::Deserialize)]
struct ForecastPath {
    ns: String,
    kind: String,
    name: String,
}

async fn forecast(
    State(app): State<Arc<ApiState>>,
    peer: Peer,
    headers: HeaderMap,
    path: Result<Path<ForecastPath>, PathRejection>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Response {
    answer(forecast_inner(&app, &peer, &headers, path, query).await)
}

async fn forecast_inner(
    app: &ApiState,
    peer: &Peer,
    headers: &HeaderMap,
    path: Result<Path<ForecastPath>, PathRejection>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> ApiResult {
    let caller = app.caller(peer, headers).await?;
    let Path(p) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    validate::check_namespace(&p.ns)?;
    validate::check_name(&p.name)?;
    let kind = validate::parse_kind(&p.kind).ok_or_else(|| {
        ApiError::not_found(format!(
            "no workload kind {:?}: use deployments or statefulsets",
            p.kind
        ))
    })?;
    let policy = app.policies.current().for_namespace(&p.ns);
    let horizon = match q.get("horizon") {
        Some(h) => predict::parse_horizon(h).map_err(ApiError::bad_request)?,
        None => policy.forecast.horizon.secs(),
    };
    app.require(&caller, &access("get", kind, None, &p.ns, Some(&p.name)))
        .await?;
    let read = app
        .workloads
        .get(kind, &p.ns, &p.name)
        .await
        .map_err(ApiError::upstream)?
        .ok_or_else(|| {
            ApiError::not_found(format!("{} {}/{} not found", kind.as_str(), p.ns, p.name))
        })?;
    let w = &read.workload;
    let query = HistoryQuery {
        key: WorkloadKey {
            namespace: p.ns.clone(),
            kind: kind.as_str().to_string(),
            name: p.name.clone(),
        },
        window_secs: policy.history.window.secs(),
    };
    let history = match tokio::time::timeout(app.history_timeout, app.history.fetch(&query)).await
    {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            return Err(ApiError::unavailable(format!(
                "history of {} is unavailable: {e}",
                query.key
            )))
        }
        Err(_) => {
            return Err(ApiError::unavailable(format!(
                "the {} history source did not answer within {} s; the fetch goes on in the background, retry shortly",
                app.history.name(),
                app.history_timeout.as_secs()
            )))
        }
    };
    let f = predict::forecast(
        w,
        &policy,
        history.as_deref(),
        crate::history::unix_now(),
        horizon,
        app.history.name(),
    );
    tracing::debug!(user = %caller.username, workload = %query.key, "forecast");
    Ok(json(StatusCode::OK, &f))
}

/// POST's answer.
#[derive(Serialize)]
struct Accepted<'a> {
    action_id: &'a str,
    status: Outcome,
    remediation: &'a Remediation,
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

async fn create_remediation(
    State(app): State<Arc<ApiState>>,
    peer: Peer,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let mut who = None;
    let mut what = None;
    let r = create_inner(&app, &peer, &headers, body, &mut who, &mut what).await;
    // Every remediation request is logged with who asked, whatever became of it.
    let (status, detail) = match &r {
        Ok((resp, id)) => (resp.status().as_u16(), id.clone()),
        Err(e) => (e.status, e.message.clone()),
    };
    if let Some(caller) = &who {
        tracing::info!(
            user = %caller.username,
            groups = ?caller.groups,
            request = what.as_deref().unwrap_or("unparsed"),
            status,
            result = %detail,
            "remediation request"
        );
    } else {
        tracing::info!(status, result = %detail, "remediation request, unauthenticated");
    }
    answer(r.map(|(resp, _)| resp))
}

async fn create_inner(
    app: &ApiState,
    peer: &Peer,
    headers: &HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
    who: &mut Option<Caller>,
    what: &mut Option<String>,
) -> Result<(Response, String), ApiError> {
    let caller = app.caller(peer, headers).await?;
    *who = Some(caller.clone());
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large_error(app.max_body)
        } else {
            ApiError::bad_request(e.body_text())
        }
    })?;
    if !is_json(headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the request as Content-Type: application/json",
        ));
    }
    let checked = validate::parse(&body)?;
    let t = &checked.target;
    *what = Some(format!(
        "{:?} {} {}/{} (incident {})",
        checked.intent,
        t.kind.as_str(),
        t.namespace,
        t.name,
        checked.incident_id.as_deref().unwrap_or("-")
    ));
    let needed = match checked.intent {
        validate::Intent::Scale { .. } => {
            access("patch", t.kind, Some("scale"), &t.namespace, Some(&t.name))
        }
        validate::Intent::RaiseLimit { .. } => {
            access("patch", t.kind, None, &t.namespace, Some(&t.name))
        }
    };
    app.require(&caller, &needed).await?;
    let policy = app.policies.current().for_namespace(&t.namespace);
    validate::check_policy(&policy, &checked)?;
    let read = app
        .workloads
        .get(t.kind, &t.namespace, &t.name)
        .await
        .map_err(ApiError::upstream)?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "{} {}/{} not found",
                t.kind.as_str(),
                t.namespace,
                t.name
            ))
        })?;
    let action = validate::resolve(&policy, &checked, &read)?;
    let validated = Validated {
        target: checked.target.clone(),
        action,
        incident_id: checked.incident_id.clone(),
        reason: checked
            .reason
            .clone()
            .unwrap_or_else(|| format!("requested through the API by {}", caller.username)),
        predicted_usage: checked.predicted_usage,
    };
    let record = app
        .remediator
        .trigger(&validated, &caller)
        .await
        .map_err(|e| ApiError::from_remediate(e, crate::history::unix_now()))?;
    let mut resp = json(
        StatusCode::ACCEPTED,
        &Accepted {
            action_id: &record.id,
            status: record.outcome,
            remediation: &record,
        },
    );
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/remediations/{}", record.id)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok((resp, format!("{} ({})", record.id, record.outcome.as_str())))
}

/// GET by id's answer.
#[derive(Serialize)]
struct One<'a> {
    action_id: &'a str,
    status: Outcome,
    remediation: &'a Remediation,
}

/// An id as the API accepts it: what a record id may look like (letters, digits, '-', '_', '.').
fn check_id(id: &str) -> Result<(), ApiError> {
    if !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{id:?} is not a remediation id (letters, digits, '-', '_' and '.', at most 128)"
        )))
    }
}

async fn get_remediation(
    State(app): State<Arc<ApiState>>,
    peer: Peer,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    answer(get_inner(&app, &peer, &headers, path).await)
}

async fn get_inner(
    app: &ApiState,
    peer: &Peer,
    headers: &HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let caller = app.caller(peer, headers).await?;
    let Path(id) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    check_id(&id)?;
    // One answer for "no such record" and "not yours to see": a 403 would tell a caller that
    // an id exists in a namespace they cannot read.
    let hidden = || ApiError::not_found(format!("no remediation {id:?} that you may see"));
    let record = app
        .remediator
        .get(&id)
        .await
        .map_err(|e| ApiError::from_remediate(e, crate::history::unix_now()))?
        .ok_or_else(hidden)?;
    let t = &record.target;
    let allowed = app
        .auth
        .authorize(
            &caller,
            &access("get", t.kind, None, &t.namespace, Some(&t.name)),
        )
        .await?;
    if !allowed.allowed {
        tracing::info!(user = %caller.username, id = %id, "remediation read refused (answered 404)");
        return Err(hidden());
    }
    Ok(json(
        StatusCode::OK,
        &One {
            action_id: &record.id,
            status: record.outcome,
            remediation: &record,
        },
    ))
}

/// Counts of one namespace (or of all).
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub total: u32,
    pub pending: u32,
    pub effective: u32,
    pub ineffective: u32,
    pub failed: u32,
    /// effective / (effective + ineffective); None before any was verified.
    pub success_rate: Option<f64>,
}

impl Summary {
    fn add(&mut self, o: Outcome) {
        self.total += 1;
        match o {
            Outcome::Pending => self.pending += 1,
            Outcome::Effective => self.effective += 1,
            Outcome::Ineffective => self.ineffective += 1,
            Outcome::Failed => self.failed += 1,
        }
        let decided = self.effective + self.ineffective;
        self.success_rate = (decided > 0).then(|| f64::from(self.effective) / f64::from(decided));
    }
}

/// The success rate per namespace and overall.
pub fn summarise(records: &[Remediation]) -> (BTreeMap<String, Summary>, Summary) {
    let mut per = BTreeMap::<String, Summary>::new();
    let mut all = Summary::default();
    for r in records {
        per.entry(r.target.namespace.clone())
            .or_default()
            .add(r.outcome);
        all.add(r.outcome);
    }
    (per, all)
}

#[derive(Serialize)]
struct List<'a> {
    namespace: Option<&'a str>,
    summary: Summary,
    namespaces: BTreeMap<String, Summary>,
    remediations: Vec<Remediation>,
}

async fn list_remediations(
    State(app): State<Arc<ApiState>>,
    peer: Peer,
    headers: HeaderMap,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Response {
    answer(list_inner(&app, &peer, &headers, query).await)
}

async fn list_inner(
    app: &ApiState,
    peer: &Peer,
    headers: &HeaderMap,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> ApiResult {
    let caller = app.caller(peer, headers).await?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let ns = q.get("namespace").map(String::as_str);
    if let Some(ns) = ns {
        validate::check_namespace(ns)?;
    }
    let list = |kind| Access {
        verb: "list",
        resource: validate::resource(kind),
        subresource: None,
        namespace: ns.map(str::to_string),
        name: None,
    };
    app.require(&caller, &list(ScalableKind::Deployment))
        .await?;
    let statefulsets = app
        .auth
        .authorize(&caller, &list(ScalableKind::StatefulSet))
        .await?
        .allowed;
    let mut records = app
        .remediator
        .list(ns)
        .await
        .map_err(|e| ApiError::from_remediate(e, crate::history::unix_now()))?;
    records.retain(|r| {
        ns.is_none_or(|n| r.target.namespace == n)
            && (statefulsets || r.target.kind != ScalableKind::StatefulSet)
    });
    let (namespaces, summary) = summarise(&records);
    Ok(json(
        StatusCode::OK,
        &List {
            namespace: ns,
            summary,
            namespaces,
            remediations: records,
        },
    ))
}

fn too_large_error(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("the body is larger than {max} bytes"),
    )
}

/// Errors that axum or tower answer themselves (405, 413) get the API's JSON body.
async fn json_errors(max: usize, resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let e = match status {
        StatusCode::PAYLOAD_TOO_LARGE => too_large_error(max),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::new(
            status,
            "method_not_allowed",
            "this method is not allowed here (see the Allow header)",
        ),
        s => ApiError::new(
            s,
            "error",
            s.canonical_reason().unwrap_or("error").to_string(),
        ),
    };
    let (mut parts, _) = resp.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = serde_json::to_vec(&e).unwrap_or_default();
    Response::from_parts(parts, Body::from(body))
}

async fn not_found() -> Response {
    ApiError::not_found("no such endpoint; see docs/openapi.yaml (/api/v1/...)").into_response()
}

/// A handler that panicked: a well-formed 500 (and an ERROR line) instead of a connection
/// dropped without an answer.
fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("an API handler panicked; answered 500 (a bug: please report it)");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "error",
        "oomguard failed on this request (a bug); nothing was changed by it",
    )
    .into_response()
}

/// The API's routes.
pub fn router(state: Arc<ApiState>) -> Router {
    let max = state.max_body;
    Router::new()
        .route(
            "/api/v1/namespaces/{ns}/workloads/{kind}/{name}/forecast",
            get(forecast),
        )
        .route(
            "/api/v1/remediations",
            get(list_remediations).post(create_remediation),
        )
        .route("/api/v1/remediations/{id}", get(get_remediation))
        .fallback(not_found)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .layer(DefaultBodyLimit::disable())
        .layer(tower_http::limit::RequestBodyLimitLayer::new(max))
        .layer(axum::middleware::map_response(move |r: Response| {
            json_errors(max, r)
        }))
        .with_state(state)
}

/// Serves the API over TLS on `args.api_addr` (nothing when it is None) until `shutdown`, then
/// drains for up to `drain`. The certificate is reloaded when its files change.
pub async fn serve(
    args: &ApiArgs,
    tls: &TlsFiles,
    deps: ApiDeps,
    shutdown: &Shutdown,
    drain: Duration,
) -> anyhow::Result<()> {
    let Some(addr) = args.api_addr else {
        return Ok(());
    };
    let state = Arc::new(ApiState {
        policies: deps.policies,
        history: deps.history,
        workloads: Arc::new(cluster::KubeWorkloads {
            client: deps.client.clone(),
        }),
        auth: Arc::new(auth::KubeAuth::new(deps.client)),
        remediator: deps.remediator,
        history_timeout: args.api_history_timeout,
        limits: RateLimits::new(args.api_rate_limit, args.api_burst),
        max_body: args.api_max_body,
    });
    let rustls = crate::serving::tls::reloading_config(tls, |_| {})?;
    let shrink = state.clone();
    let shrinker = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            shrink.limits.shrink();
        }
    });
    let drain = crate::serving::Drain {
        delay: Duration::ZERO,
        drain,
    };
    let served =
        crate::serving::serve_https("api", addr, rustls, router(state), shutdown, drain, None)
            .await;
    shrinker.abort();
    served
}

#[cfg(test)]
mod tests;
