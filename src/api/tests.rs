//! Routing, authentication, authorisation and validation with fakes for the cluster, the
//! authenticator and the remediator. The real kube-apiserver is in tests/api.rs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures::future::BoxFuture;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::auth::{Access, AuthError, Authenticator, Decision};
use super::cluster::{ReadWorkload, Workloads};
use super::*;
use crate::history::{ContainerHistory, HistoryError, PeakStats, Sample, WorkloadHistory};
use crate::reconcile::record::{Baseline, Change, Target};
use crate::reconcile::remediator::{
    Caller, RemediateError, Remediator, RequestedAction, Validated,
};
use crate::workload::WorkloadKind;

const MI: u64 = 1024 * 1024;
const NOW: i64 = 1_800_000_000;

struct FakeAuth {
    /// token → user name
    users: BTreeMap<&'static str, &'static str>,
    /// (user, access as text) allowed
    allowed: Vec<(&'static str, String)>,
    asked: Mutex<Vec<String>>,
}

impl Authenticator for FakeAuth {
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Caller, AuthError>> {
        Box::pin(async move {
            match self.users.get(token) {
                Some(u) => Ok(Caller {
                    username: u.to_string(),
                    uid: None,
                    groups: vec!["system:authenticated".into()],
                    extra: BTreeMap::new(),
                }),
                None => Err(AuthError::Unauthenticated(
                    "the bearer token is not valid: invalid bearer token".into(),
                )),
            }
        })
    }

    fn authorize<'a>(
        &'a self,
        caller: &'a Caller,
        access: &'a Access,
    ) -> BoxFuture<'a, Result<Decision, AuthError>> {
        Box::pin(async move {
            let what = access.to_string();
            self.asked
                .lock()
                .unwrap()
                .push(format!("{} {what}", caller.username));
            let allowed = self
                .allowed
                .iter()
                .any(|(u, a)| *u == caller.username && *a == what);
            Ok(Decision {
                allowed,
                reason: if allowed {
                    String::new()
                } else {
                    "no RBAC policy matched".into()
                },
            })
        })
    }
}

struct FakeWorkloads;

fn workload(name: &str, containers: Value, replicas: u32) -> ReadWorkload {
    let obj = json!({
        "metadata": {"name": name, "namespace": "shop",
                     "annotations": if name == "pinned" { json!({"oomguard.io/exclude": "true"}) } else { json!({}) }},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": containers}}}
    });
    ReadWorkload {
        workload: crate::workload::Workload::from_object(WorkloadKind::Deployment, &obj, "shop")
            .unwrap(),
        replicas,
    }
}

impl Workloads for FakeWorkloads {
    fn get<'a>(
        &'a self,
        _kind: ScalableKind,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ReadWorkload>, String>> {
        Box::pin(async move {
            if namespace == "broken" {
                return Err("reading Deployment broken/x: connection refused".into());
            }
            let one = json!([{"name": "web", "resources": {"limits": {"memory": "256Mi"}}}]);
            Ok(match name {
                "web" | "pinned" | "slow" | "legacy" => Some(workload(name, one, 2)),
                "duo" => Some(workload(
                    name,
                    json!([{"name": "app", "resources": {"limits": {"memory": "256Mi"}}},
                           {"name": "istio-proxy", "resources": {"limits": {"memory": "128Mi"}}}]),
                    2,
                )),
                "nolimit" => Some(workload(name, json!([{"name": "web"}]), 1)),
                "jvm" => Some(workload(
                    name,
                    json!([{"name": "web", "command": ["java", "-Xmx512m", "-jar", "app.jar"],
                            "resources": {"limits": {"memory": "256Mi"}}}]),
                    1,
                )),
                _ => None,
            })
        })
    }
}

#[derive(Default)]
struct FakeRemediator {
    triggered: Mutex<Vec<(Validated, String)>>,
    records: Mutex<Vec<Remediation>>,
    fail_with: Mutex<Option<RemediateError>>,
}

fn record(id: &str, ns: &str, kind: ScalableKind, outcome: Outcome) -> Remediation {
    Remediation {
        id: id.to_string(),
        action: crate::reconcile::plan::ActionKind::ScaleOut,
        target: Target {
            kind,
            namespace: ns.to_string(),
            name: "web".to_string(),
        },
        at: NOW,
        requested_by: "alice".into(),
        incident_id: Some("inc-1".into()),
        reason: "test".into(),
        change: Change::Replicas { from: 2, to: 4 },
        baseline: Baseline::default(),
        verify_at: NOW + 600,
        outcome,
        verified_at: None,
        detail: None,
    }
}

impl Remediator for FakeRemediator {
    fn trigger<'a>(
        &'a self,
        req: &'a Validated,
        caller: &'a Caller,
    ) -> BoxFuture<'a, Result<Remediation, RemediateError>> {
        Box::pin(async move {
            if let Some(e) = self.fail_with.lock().unwrap().clone() {
                return Err(e);
            }
            self.triggered
                .lock()
                .unwrap()
                .push((req.clone(), caller.username.clone()));
            let mut r = record(
                "rem-1",
                &req.target.namespace,
                req.target.kind,
                Outcome::Pending,
            );
            r.requested_by = caller.username.clone();
            Ok(r)
        })
    }

    fn get<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Remediation>, RemediateError>> {
        Box::pin(async move {
            Ok(self
                .records
                .lock()
                .unwrap()
                .iter()
                .find(|r| r.id == id)
                .cloned())
        })
    }

    fn list<'a>(
        &'a self,
        namespace: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Remediation>, RemediateError>> {
        Box::pin(async move {
            Ok(self
                .records
                .lock()
                .unwrap()
                .iter()
                .filter(|r| namespace.is_none_or(|n| r.target.namespace == n))
                .cloned()
                .collect())
        })
    }
}

struct FakeHistory(Option<Arc<WorkloadHistory>>);

impl HistorySource for FakeHistory {
    fn fetch<'a>(
        &'a self,
        q: &'a HistoryQuery,
    ) -> BoxFuture<'a, Result<Option<Arc<WorkloadHistory>>, HistoryError>> {
        Box::pin(async move {
            if q.key.name == "slow" {
                return Err(HistoryError::Timeout(5));
            }
            Ok(self.0.clone().filter(|_| q.key.name == "web"))
        })
    }
    fn name(&self) -> &'static str {
        "fake"
    }
}

/// 12 hours of 5-minute peaks growing 4 MiB/h from 100 MiB, no restarts.
fn leak_history() -> WorkloadHistory {
    let samples: Vec<Sample> = (0..=144)
        .map(|i| Sample {
            t: NOW - 12 * 3600 + i * 300,
            bytes: (100 * MI) as f64 + 4.0 * MI as f64 * (i as f64 / 12.0),
        })
        .collect();
    let peaks: Vec<f64> = samples.iter().map(|s| s.bytes).collect();
    let mut containers = BTreeMap::new();
    containers.insert(
        "web".to_string(),
        ContainerHistory {
            covered_secs: 12 * 3600,
            peaks: PeakStats::from_peaks(&peaks),
            samples,
            ..Default::default()
        },
    );
    WorkloadHistory {
        now: NOW,
        window_secs: 14 * 86_400,
        containers,
        events_unseen: None,
    }
}

struct Harness {
    router: Router,
    auth: Arc<FakeAuth>,
    remediator: Arc<FakeRemediator>,
    _dir: tempfile::TempDir,
}

const POLICY: &str = "apiVersion: oomguard.io/v1
kind: MemoryPolicy
spec:
  limits: {min: 64Mi, max: 2Gi}
  reconcile: {enabled: true, minReplicas: 2, maxReplicas: 10}
  exclude: {workloads: [legacy], containers: [istio-proxy]}
";

fn harness(burst: u32) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("shop.yaml"), POLICY).unwrap();
    std::fs::write(dir.path().join("broken.yaml"), POLICY).unwrap();
    let (store, report) = PolicyStore::open(dir.path()).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let ops = |verb: &str, res: &str, name: &str| {
        format!("{verb} {res} \"{name}\" in namespace \"shop\"")
    };
    let mut allowed = vec![
        (
            "alice",
            "list deployments.apps in namespace \"shop\"".to_string(),
        ),
        (
            "alice",
            "list deployments.apps in all namespaces".to_string(),
        ),
        ("bob", "list deployments.apps in all namespaces".to_string()),
        (
            "bob",
            "list statefulsets.apps in all namespaces".to_string(),
        ),
    ];
    for name in [
        "web", "duo", "nolimit", "pinned", "legacy", "ghost", "slow", "jvm",
    ] {
        allowed.push(("alice", ops("patch", "deployments.apps/scale", name)));
        allowed.push(("alice", ops("patch", "deployments.apps", name)));
        allowed.push(("alice", ops("get", "deployments.apps", name)));
    }
    allowed.push((
        "alice",
        "patch deployments.apps/scale \"x\" in namespace \"broken\"".to_string(),
    ));
    let auth = Arc::new(FakeAuth {
        users: [("t-alice", "alice"), ("t-eve", "eve"), ("t-bob", "bob")]
            .into_iter()
            .collect(),
        allowed,
        asked: Mutex::new(Vec::new()),
    });
    let remediator = Arc::new(FakeRemediator::default());
    let state = Arc::new(ApiState {
        policies: Arc::new(store),
        history: Arc::new(FakeHistory(Some(Arc::new(leak_history())))),
        workloads: Arc::new(FakeWorkloads),
        auth: auth.clone(),
        remediator: remediator.clone(),
        history_timeout: Duration::from_secs(5),
        limits: RateLimits::new(1, burst),
        max_body: 4096,
    });
    Harness {
        router: router(state),
        auth,
        remediator,
        _dir: dir,
    }
}

impl Harness {
    async fn call(&self, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
        assert_eq!(
            headers.get("content-type").map(|v| v.to_str().unwrap()),
            Some("application/json"),
            "{v}"
        );
        if !status.is_success() {
            assert_eq!(v["status"], status.as_u16(), "{v}");
            assert!(v["error"].is_string() && v["message"].is_string(), "{v}");
        }
        (status, headers, v)
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut b = Request::get(path);
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        let (s, _, v) = self.call(b.body(Body::empty()).unwrap()).await;
        (s, v)
    }

    async fn post(&self, body: Value, token: &str) -> (StatusCode, axum::http::HeaderMap, Value) {
        self.call(
            Request::post("/api/v1/remediations")
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }

    fn triggered(&self) -> Vec<(Validated, String)> {
        self.remediator.triggered.lock().unwrap().clone()
    }
}

fn scale(name: &str, replicas: u32) -> Value {
    json!({
        "incident_id": "memory-exhaustion-2026-11-24T08:00:00",
        "action": "scale_deployment",
        "target": name,
        "namespace": "shop",
        "parameters": {"replicas": replicas, "reason": "Proactive scaling", "predicted_usage": 92.3}
    })
}

fn raise(name: &str, container: Option<&str>, limit: &str) -> Value {
    let mut p = json!({"memory_limit": limit, "reason": "leak"});
    if let Some(c) = container {
        p["container"] = json!(c);
    }
    json!({"action": "raise_limit", "target": name, "namespace": "shop", "parameters": p})
}

#[tokio::test]
async fn no_token_and_bad_tokens_are_401() {
    let h = harness(100);
    let (s, _, v) = h
        .call(
            Request::get("/api/v1/remediations")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v["error"], "unauthenticated");
    assert!(v["message"].as_str().unwrap().contains("Bearer"), "{v}");
    let (s, v) = h.get("/api/v1/remediations", Some("nope")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    let resp = h
        .router
        .clone()
        .oneshot(
            Request::get("/api/v1/remediations")
                .header("authorization", "Basic YTpi")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().contains_key("www-authenticate"));
    // Authentication comes before anything else, even a bad body.
    let (s, _, _) = h
        .call(
            Request::post("/api/v1/remediations")
                .header("content-type", "application/json")
                .body(Body::from("{"))
                .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn without_rbac_it_is_403_naming_who_and_what() {
    let h = harness(100);
    let (s, _, v) = h.post(scale("web", 4), "t-eve").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let m = v["message"].as_str().unwrap();
    assert!(
        m.contains(
            "user \"eve\" cannot patch deployments.apps/scale \"web\" in namespace \"shop\""
        ),
        "{m}"
    );
    assert!(h.triggered().is_empty());
    let (s, v) = h
        .get(
            "/api/v1/namespaces/shop/workloads/deployments/web/forecast",
            Some("t-eve"),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("cannot get deployments.apps \"web\""));
    let (s, v) = h
        .get("/api/v1/remediations?namespace=shop", Some("t-eve"))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("cannot list deployments.apps in namespace \"shop\""));
}

#[tokio::test]
async fn beyond_max_replicas_is_422_with_the_bound_and_the_backend_is_not_called() {
    let h = harness(100);
    let (s, _, v) = h.post(scale("web", 11), "t-alice").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"], "out_of_bounds");
    assert_eq!(v["bound"], "reconcile.maxReplicas");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("replicas 11 is above the policy's reconcile.maxReplicas 10"),
        "{v}"
    );
    let (s, _, v) = h.post(scale("web", 1), "t-alice").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["bound"], "reconcile.minReplicas");
    assert!(h.triggered().is_empty());
}

#[tokio::test]
async fn a_valid_scale_goes_to_the_remediator_and_is_202() {
    let h = harness(100);
    let (s, headers, v) = h.post(scale("web", 4), "t-alice").await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["action_id"], "rem-1");
    assert_eq!(v["status"], "pending");
    assert_eq!(v["remediation"]["requestedBy"], "alice");
    assert_eq!(v["remediation"]["target"]["kind"], "Deployment");
    assert_eq!(headers["location"], "/api/v1/remediations/rem-1");
    let t = h.triggered();
    assert_eq!(t.len(), 1);
    let (req, who) = &t[0];
    assert_eq!(who, "alice");
    assert_eq!(
        req.action,
        RequestedAction::Scale {
            replicas: 4,
            current: 2
        }
    );
    assert_eq!(
        req.incident_id.as_deref(),
        Some("memory-exhaustion-2026-11-24T08:00:00")
    );
    assert_eq!(req.reason, "Proactive scaling");
    assert_eq!(req.predicted_usage, Some(92.3));
    // Authorised with the scale subresource.
    assert!(h
        .auth
        .asked
        .lock()
        .unwrap()
        .contains(&"alice patch deployments.apps/scale \"web\" in namespace \"shop\"".to_string()));
}

#[tokio::test]
async fn refusals_and_no_ops_are_409() {
    let h = harness(100);
    for (body, what) in [
        (scale("legacy", 4), "exclude.workloads"),
        (scale("pinned", 4), "oomguard.io/exclude"),
        (scale("web", 2), "already has 2 replicas"),
        (
            raise("web", None, "128Mi"),
            "already has a memory limit of 256Mi",
        ),
        (
            raise("duo", Some("istio-proxy"), "1Gi"),
            "exclude.containers",
        ),
    ] {
        let (s, _, v) = h.post(body, "t-alice").await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        assert!(v["message"].as_str().unwrap().contains(what), "{v}");
    }
    // A namespace whose policy leaves the reconciler off (the built-in default).
    let mut b = scale("web", 4);
    b["namespace"] = json!("other");
    let (s, _, v) = h.post(b, "t-alice").await;
    // alice has no RBAC there: 403 first.
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(h.triggered().is_empty());
}

#[tokio::test]
async fn raise_limit_is_checked_against_limits_and_containers() {
    let h = harness(100);
    let (s, _, v) = h.post(raise("web", None, "4Gi"), "t-alice").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["bound"], "limits.max");
    assert!(
        v["message"].as_str().unwrap().contains("limits.max 2Gi"),
        "{v}"
    );
    let (s, _, v) = h.post(raise("web", None, "32Mi"), "t-alice").await;
    assert_eq!(v["bound"], "limits.min", "{v}");
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _, v) = h.post(raise("duo", None, "512Mi"), "t-alice").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("containers app, istio-proxy"),
        "{v}"
    );
    let (s, _, v) = h.post(raise("duo", Some("db"), "512Mi"), "t-alice").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (s, _, v) = h.post(raise("web", None, "lots"), "t-alice").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("parameters.memory_limit"),
        "{v}"
    );
    assert!(h.triggered().is_empty());
    // The one container of the pod, found without naming it.
    let (s, _, v) = h.post(raise("web", None, "512Mi"), "t-alice").await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let (s, _, v) = h.post(raise("nolimit", None, "512Mi"), "t-alice").await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let t = h.triggered();
    assert_eq!(
        t[0].0.action,
        RequestedAction::RaiseLimit {
            container: "web".into(),
            to: Some(512 * MI),
            current: Some(256 * MI)
        }
    );
    assert_eq!(
        t[1].0.action,
        RequestedAction::RaiseLimit {
            container: "web".into(),
            to: Some(512 * MI),
            current: None
        }
    );
    // raise_limit is authorised as a patch of the workload itself.
    assert!(h
        .auth
        .asked
        .lock()
        .unwrap()
        .contains(&"alice patch deployments.apps \"web\" in namespace \"shop\"".to_string()));
}

#[tokio::test]
async fn malformed_bodies_are_400_415_or_422() {
    let h = harness(100);
    let (s, _, v) = h
        .call(
            Request::post("/api/v1/remediations")
                .header("authorization", "Bearer t-alice")
                .header("content-type", "application/json")
                .body(Body::from("{not json"))
                .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let mut b = scale("web", 4);
    b["parameters"]["replica"] = json!(3);
    let (s, _, v) = h.post(b, "t-alice").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["message"].as_str().unwrap().contains("parameters"), "{v}");
    let mut b = scale("web", 4);
    b["action"] = json!("delete_everything");
    let (s, _, v) = h.post(b, "t-alice").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let mut b = scale("web", 4);
    b["parameters"]["replicas"] = json!(-1);
    let (s, _, _) = h.post(b, "t-alice").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let mut b = scale("web", 4);
    b["target"] = json!("Web/../x");
    let (s, _, _) = h.post(b, "t-alice").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let mut b = scale("web", 4);
    b["parameters"].as_object_mut().unwrap().remove("replicas");
    let (s, _, v) = h.post(b, "t-alice").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("parameters.replicas is required"));
    let (s, _, v) = h
        .call(
            Request::post("/api/v1/remediations")
                .header("authorization", "Bearer t-alice")
                .header("content-type", "text/plain")
                .body(Body::from(scale("web", 4).to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{v}");
    let big = json!({"action": "scale_deployment", "target": "web", "namespace": "shop",
                     "parameters": {"replicas": 4, "reason": "x".repeat(5000)}});
    let (s, _, v) = h.post(big, "t-alice").await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert!(h.triggered().is_empty());
}

#[tokio::test]
async fn remediator_errors_map_to_their_statuses() {
    let h = harness(100);
    for (e, status, code) in [
        (
            RemediateError::HeldBack {
                until: Some(NOW + 10_000_000_000),
                reason: "cooldown".into(),
            },
            StatusCode::TOO_MANY_REQUESTS,
            "held_back",
        ),
        (
            RemediateError::Upstream("apiserver said no".into()),
            StatusCode::BAD_GATEWAY,
            "upstream",
        ),
        (
            RemediateError::Unavailable("not the leader".into()),
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
        ),
        (
            RemediateError::Refused("an HPA owns the replicas".into()),
            StatusCode::CONFLICT,
            "refused",
        ),
    ] {
        *h.remediator.fail_with.lock().unwrap() = Some(e);
        let (s, headers, v) = h.post(scale("web", 4), "t-alice").await;
        assert_eq!(s, status, "{v}");
        assert_eq!(v["error"], code);
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert!(headers.contains_key("retry-after"));
            assert!(v["until"].is_i64(), "{v}");
        }
    }
    // The workload read failing is the upstream's fault.
    *h.remediator.fail_with.lock().unwrap() = None;
    let mut b = scale("x", 4);
    b["namespace"] = json!("broken");
    let (s, _, v) = h.post(b, "t-alice").await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{v}");
    let (s, _, v) = h.post(scale("ghost", 4), "t-alice").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
}

#[tokio::test]
async fn forecast_reports_per_container_numbers() {
    let h = harness(100);
    let (s, v) = h
        .get(
            "/api/v1/namespaces/shop/workloads/deployments/web/forecast?horizon=6h",
            Some("t-alice"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["horizon"], "6h");
    assert_eq!(v["horizon_seconds"], 21600);
    assert_eq!(v["now"], NOW);
    assert_eq!(v["history_source"], "fake");
    let c = &v["containers"][0];
    assert_eq!(c["name"], "web");
    assert_eq!(c["status"], "ok");
    assert_eq!(c["pattern"], "leak");
    assert_eq!(c["limit"], "256Mi");
    // 100 MiB + 48 MiB over 12 h: 148 MiB now = 57.81% of 256 MiB; +24 MiB in 6 h.
    assert_eq!(c["current_percent"], 57.81);
    let predicted = c["predicted_percent"].as_f64().unwrap();
    assert!((predicted - 67.19).abs() < 0.5, "{c}");
    let growth = c["growth_bytes_per_hour"].as_f64().unwrap();
    assert!((growth - 4.0 * MI as f64).abs() < 0.05 * MI as f64, "{c}");
    // (256 - 148) MiB at 4 MiB/h: about 27 h (the first peak over it a little sooner).
    let ttl = c["time_to_limit_seconds"].as_f64().unwrap() / 3600.0;
    assert!((25.0..=27.1).contains(&ttl), "{ttl}");
    assert!(
        c["time_to_limit_low_seconds"].as_f64().unwrap()
            <= c["time_to_limit_seconds"].as_f64().unwrap()
    );
    assert!(c["confidence"].as_f64().unwrap() > 0.5, "{c}");
    assert_eq!(v["predicted_memory_percent"], c["predicted_percent"]);
    assert_eq!(v["container"], "web");
    // oomguard's decision on the same workload and history, as the webhook makes it.
    let read = FakeWorkloads
        .get(ScalableKind::Deployment, "shop", "web")
        .await
        .unwrap()
        .unwrap();
    let policy = crate::policy::MemoryPolicy::parse("shop.yaml", POLICY)
        .unwrap()
        .spec;
    let decided = crate::verdict::decide(
        &read.workload,
        crate::verdict::HistoryStatus::Found(&leak_history()),
        &policy,
        NOW,
    );
    let want = &decided.containers[0];
    assert_eq!(c["decision"]["severity"], want.severity.as_str(), "{c}");
    assert_eq!(
        c["decision"]["recommended_limit_bytes"].as_u64(),
        want.recommended,
        "{c}"
    );
    assert_eq!(
        c["decision"]["recommended_request_bytes"].as_u64(),
        want.recommended_request
    );
    assert!(v["out_of_scope"].is_null());

    // The policy's horizon by default (24h).
    let (_, v) = h
        .get(
            "/api/v1/namespaces/shop/workloads/Deployment/web/forecast",
            Some("t-alice"),
        )
        .await;
    assert_eq!(v["horizon"], "1d");

    // No history: said so, no numbers.
    let (s, v) = h
        .get(
            "/api/v1/namespaces/shop/workloads/deployment/duo/forecast",
            Some("t-alice"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["containers"][0]["status"], "no-history");
    assert!(v["containers"][0]["predicted_percent"].is_null());
    assert!(v["predicted_memory_percent"].is_null());
    assert_eq!(v["containers"][1]["excluded"], true);
    assert!(
        v["containers"][1]["decision"].is_null(),
        "excluded: not decided"
    );

    // A JVM whose heap is twice its limit: the decision's day-zero floor, without any history.
    let (s, v) = h
        .get(
            "/api/v1/namespaces/shop/workloads/deployments/jvm/forecast",
            Some("t-alice"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let d = &v["containers"][0]["decision"];
    assert_eq!(d["severity"], "critical", "{v}");
    let floor = d["floor_bytes"].as_u64().expect("a floor");
    assert!(floor > 512 * MI, "{d}");
    assert_eq!(d["recommended_limit_bytes"].as_u64(), Some(floor));
    assert!(
        d["reasons"][0].as_str().unwrap().contains("-Xmx512m"),
        "{d}"
    );

    // Out of scope (annotated oomguard.io/exclude): numbers, and why nothing is decided.
    let (_, v) = h
        .get(
            "/api/v1/namespaces/shop/workloads/deployments/pinned/forecast",
            Some("t-alice"),
        )
        .await;
    assert_eq!(
        v["out_of_scope"],
        "excluded by its annotation oomguard.io/exclude: \"true\""
    );
    assert!(v["containers"][0]["decision"].is_null());
}

#[tokio::test]
async fn forecast_errors() {
    let h = harness(100);
    for (path, status) in [
        (
            "/api/v1/namespaces/shop/workloads/deployments/ghost/forecast",
            StatusCode::NOT_FOUND,
        ),
        (
            "/api/v1/namespaces/shop/workloads/daemonsets/web/forecast",
            StatusCode::NOT_FOUND,
        ),
        (
            "/api/v1/namespaces/shop/workloads/deployments/web/forecast?horizon=6",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/namespaces/shop/workloads/deployments/web/forecast?horizon=%206h",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/namespaces/shop/workloads/deployments/web/forecast?horizon=91d",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/namespaces/Shop/workloads/deployments/web/forecast",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/namespaces/shop/workloads/deployments/slow/forecast",
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        ("/api/v1/nothing", StatusCode::NOT_FOUND),
    ] {
        let (s, v) = h.get(path, Some("t-alice")).await;
        assert_eq!(s, status, "{path}: {v}");
    }
    let (s, headers, v) = h
        .call(
            Request::delete("/api/v1/remediations")
                .header("authorization", "Bearer t-alice")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{v}");
    assert!(headers.contains_key("allow"));
}

#[tokio::test]
async fn list_gives_the_success_rate_per_namespace_and_get_checks_the_target() {
    let h = harness(100);
    {
        let mut rs = h.remediator.records.lock().unwrap();
        rs.push(record(
            "a",
            "shop",
            ScalableKind::Deployment,
            Outcome::Effective,
        ));
        rs.push(record(
            "b",
            "shop",
            ScalableKind::Deployment,
            Outcome::Effective,
        ));
        rs.push(record(
            "c",
            "shop",
            ScalableKind::Deployment,
            Outcome::Ineffective,
        ));
        rs.push(record(
            "d",
            "shop",
            ScalableKind::Deployment,
            Outcome::Pending,
        ));
        rs.push(record(
            "e",
            "lab",
            ScalableKind::StatefulSet,
            Outcome::Failed,
        ));
    }
    let (s, v) = h
        .get("/api/v1/remediations?namespace=shop", Some("t-alice"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let shop = &v["namespaces"]["shop"];
    assert_eq!(shop["total"], 4);
    assert_eq!(shop["effective"], 2);
    assert_eq!(shop["ineffective"], 1);
    assert_eq!(shop["pending"], 1);
    let rate = shop["success_rate"].as_f64().unwrap();
    assert!((rate - 2.0 / 3.0).abs() < 1e-9);
    assert_eq!(v["remediations"].as_array().unwrap().len(), 4);
    // alice may not list StatefulSets: their records are left out.
    let (_, v) = h.get("/api/v1/remediations", Some("t-alice")).await;
    assert_eq!(v["summary"]["total"], 4, "{v}");
    let (_, v) = h.get("/api/v1/remediations", Some("t-bob")).await;
    assert_eq!(v["summary"]["total"], 5, "{v}");
    assert!(v["namespaces"]["lab"]["success_rate"].is_null());

    let (s, v) = h.get("/api/v1/remediations/a", Some("t-alice")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["action_id"], "a");
    assert_eq!(v["status"], "effective");
    // bob may not get that Deployment: the same answer as for an id that does not exist, so
    // that ids in namespaces he cannot read stay unknown to him.
    let (s, hidden) = h.get("/api/v1/remediations/a", Some("t-bob")).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{hidden}");
    let (s, v) = h.get("/api/v1/remediations/zzz", Some("t-bob")).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(
        hidden["message"]
            .as_str()
            .unwrap()
            .replace("\"a\"", "\"zzz\""),
        v["message"].as_str().unwrap(),
        "the two answers differ only by the id"
    );
    let (s, v) = h.get("/api/v1/remediations/zzz", Some("t-alice")).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, v) = h.get("/api/v1/remediations/a%20b", Some("t-alice")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
}

#[tokio::test]
async fn each_caller_is_rate_limited() {
    let h = harness(3);
    for _ in 0..3 {
        let (s, v) = h.get("/api/v1/remediations", Some("t-alice")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let (s, headers, v) = h
        .call(
            Request::get("/api/v1/remediations")
                .header("authorization", "Bearer t-alice")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["error"], "rate_limited");
    assert!(headers.contains_key("retry-after"));
    // Another caller has a bucket of its own.
    let (s, _) = h.get("/api/v1/remediations", Some("t-bob")).await;
    assert_eq!(s, StatusCode::OK);
}

#[test]
fn names_and_horizons_follow_kubernetes_and_the_schema() {
    use super::predict::parse_horizon;
    use super::validate::{is_dns_label, is_dns_subdomain, parse_kind};
    assert!(is_dns_label("self-healing-platform"));
    assert!(
        !is_dns_label("Shop") && !is_dns_label("-a") && !is_dns_label("a-") && !is_dns_label("")
    );
    assert!(!is_dns_label(&"a".repeat(64)));
    assert!(is_dns_subdomain("web.v2") && is_dns_subdomain(&"a".repeat(253)));
    assert!(!is_dns_subdomain("a..b") && !is_dns_subdomain(&"a".repeat(254)));
    assert!(!is_dns_subdomain("a/b"));
    assert_eq!(parse_kind("statefulsets"), Some(ScalableKind::StatefulSet));
    assert_eq!(parse_kind("daemonsets"), None);
    assert_eq!(parse_horizon("6h"), Ok(21_600));
    assert_eq!(parse_horizon("0s"), Ok(0));
    assert_eq!(parse_horizon("90d"), Ok(90 * 86_400));
    for bad in [
        "",
        "h",
        "6",
        " 6h",
        "6h ",
        "6H",
        "-1h",
        "91d",
        "99999999999999999999s",
        "6é",
    ] {
        assert!(parse_horizon(bad).is_err(), "{bad:?}");
    }
}

#[tokio::test]
async fn a_panicking_handler_answers_a_documented_500() {
    let app = axum::Router::new()
        .route(
            "/p",
            axum::routing::get(|| async {
                let v: Vec<String> = Vec::new();
                v[1].clone()
            }),
        )
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked));
    let resp = app
        .oneshot(Request::get("/p").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["status"], 500, "{v}");
    assert_eq!(v["error"], "error", "one of docs/openapi.yaml's codes: {v}");
}
