//! The forecast and remediation API against the real kube-apiserver (TokenReview and
//! SubjectAccessReview are real there: ServiceAccount tokens from `kubectl create token`, RBAC
//! from Roles) and a real Prometheus with a backfilled leak.
//!
//! `oomguard api` runs as oomguard's ServiceAccount with exactly the RBAC of
//! deploy/base/rbac.yaml, so the test also proves that those rules are enough for the API.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::controlplane::ControlPlane;
use common::prom::{self, Prometheus};
use common::scenario::{self, scrape_times, ContainerRun, Owner, Pod, Workload as Scenario, MI};
use common::{client_for, free_port, repo, BIN};
use serde_json::{json, Value};

const NS: &str = "shop";
const APP: &str = "leaky-api";
const LIMIT_MI: f64 = 512.0;
const BASE_MI: f64 = 200.0;
/// Growth of the working set, MiB per hour.
const RATE_MI_H: f64 = 2.0;

/// One container leaking 2 MiB/h from 200 MiB for a day, under a 512Mi limit, no restarts.
fn leaky(start: i64, end: i64) -> Scenario {
    let ws = scrape_times(start, end, 30)
        .map(|t| (t, ws_at(start, t)))
        .collect();
    Scenario {
        namespace: NS.to_string(),
        kind: "Deployment".to_string(),
        name: APP.to_string(),
        pods: vec![Pod {
            name: format!("{APP}-5d8f7b6c9d-x2x4z"),
            owner: Owner::ReplicaSet {
                rs: format!("{APP}-5d8f7b6c9d"),
                deployment: Some(APP.to_string()),
            },
            start,
            end,
            containers: vec![ContainerRun {
                name: "api".to_string(),
                limit: LIMIT_MI * MI,
                ws,
                restarts: vec![],
            }],
        }],
        ksm: true,
        cadvisor_extras: false,
        ksm_gaps: vec![],
        created: vec![],
    }
}

fn ws_at(start: i64, t: i64) -> f64 {
    ((BASE_MI + RATE_MI_H * (t - start) as f64 / 3600.0) * MI).round()
}

struct ApiProcess {
    child: Child,
    log: PathBuf,
    port: u16,
    client: reqwest::Client,
}

impl Drop for ApiProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ApiProcess {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut r = self.client.request(method, self.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let t = resp.text().await.unwrap();
        assert_eq!(ct.as_deref(), Some("application/json"), "{status} {t}");
        let v = serde_json::from_str(&t).unwrap_or_else(|e| panic!("not JSON ({e}): {t}"));
        (status, v)
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, token, None).await
    }

    async fn post(&self, body: &Value, token: Option<&str>) -> (u16, Value) {
        self.call(
            reqwest::Method::POST,
            "/api/v1/remediations",
            token,
            Some(body),
        )
        .await
    }

    /// Polls `path` until its status is `want` (RBAC bindings reach the authorizer through an
    /// informer, a moment after they are created).
    async fn wait_for(&self, path: &str, token: &str, want: u16) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (s, v) = self.get(path, Some(token)).await;
            if s == want {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{path}: still {s} after 30 s, want {want}: {v}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

struct Env {
    cp: ControlPlane,
    _prom: Prometheus,
    api: ApiProcess,
    /// The scenario's span (unix seconds).
    start: i64,
    end: i64,
    _work: tempfile::TempDir,
}

const POLICY: &str = "apiVersion: oomguard.io/v1
kind: MemoryPolicy
spec:
  mode: warn
  limits: {min: 64Mi, max: 1Gi}
  reconcile: {enabled: true, minReplicas: 1, maxReplicas: 5, verifyWindow: 5s}
";

/// Which process serves the API.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Serve {
    /// `oomguard api`: read-only records, 503 to a trigger.
    ApiOnly,
    /// `oomguard reconcile --api-addr`: the reconciler's Remediator behind the API.
    Reconciler,
}

fn deployment(replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: {APP}, namespace: {NS}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {APP}}}}}
  template:
    metadata: {{labels: {{app: {APP}}}}}
    spec:
      containers:
        - name: api
          image: registry.example/leaky-api:1
          resources: {{limits: {{memory: 512Mi}}, requests: {{memory: 256Mi}}}}
"
    )
}

impl Env {
    async fn start(serve: Serve) -> Env {
        // Prometheus with a day of the leak, ending 4 h before now (the backfill limit).
        let end = prom::data_end();
        let start = end - 86_400;
        let work = tempfile::tempdir().unwrap();
        let input = work.path().join("scenario.om");
        let mut out = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
        scenario::write_openmetrics(leaky(start, end).series(30), &mut out).unwrap();
        scenario::write_eof(&mut out).unwrap();
        drop(out);
        let data = work.path().join("tsdb");
        prom::create_blocks(&input, &data);
        let prom = Prometheus::start(&data, &[]);
        prom.wait_queryable("container_memory_working_set_bytes", end);

        let cp = ControlPlane::start(false);
        cp.ok(&["create", "namespace", NS]);
        cp.apply(&deployment(2));
        // oomguard's own identity with deploy/'s RBAC only.
        cp.ok(&["create", "namespace", "oomguard"]);
        let rbac = std::fs::read_to_string(repo().join("deploy/base/rbac.yaml")).unwrap();
        cp.ok(&["-n", "oomguard", "create", "serviceaccount", "oomguard"]);
        cp.apply(&rbac);
        let sa_kubeconfig = work.path().join("oomguard.kubeconfig");
        cp.kubeconfig_for("oomguard", "oomguard", &sa_kubeconfig);

        let certs = work.path().join("certs");
        common::make_certs(&certs);
        let policies = work.path().join("policies");
        std::fs::create_dir_all(&policies).unwrap();
        std::fs::write(policies.join(format!("{NS}.yaml")), POLICY).unwrap();
        let port = free_port();
        let log = work.path().join("api.log");
        let f = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(BIN);
        match serve {
            Serve::ApiOnly => {
                cmd.args(["--log-format", "json", "api"]);
            }
            Serve::Reconciler => {
                cmd.args(["--log-format", "json", "reconcile"])
                    .args(["--interval", "2s"])
                    .args(["--lease-namespace", "oomguard", "--lease-duration", "6s"])
                    .args(["--identity", "api-test"])
                    .args(["--admin-listen", &format!("127.0.0.1:{}", free_port())]);
            }
        }
        let child = cmd
            .args(["--api-addr", &format!("127.0.0.1:{port}")])
            .arg("--tls-cert")
            .arg(certs.join("tls.crt"))
            .arg("--tls-key")
            .arg(certs.join("tls.key"))
            .arg("--policies")
            .arg(&policies)
            .args(["--prometheus", &prom.url])
            .env("KUBECONFIG", &sa_kubeconfig)
            .env("RUST_LOG", "info")
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap();
        let api = ApiProcess {
            child,
            log,
            port,
            client: client_for(&certs.join("ca.crt")),
        };
        // Up when it answers (401 without a token).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = api.client.get(api.url("/api/v1/remediations")).send().await;
            if r.is_ok_and(|r| r.status() == 401) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "oomguard api not up in 30 s:\n{}",
                api.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Env {
            cp,
            _prom: prom,
            api,
            start,
            end,
            _work: work,
        }
    }

    /// A ServiceAccount in NS bound to a Role with these rules (YAML list items).
    fn account(&self, name: &str, rules: &str) -> String {
        let token = self.cp.token(NS, name);
        if !rules.is_empty() {
            self.cp.apply(&format!(
                "apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: {name}, namespace: {NS}}}
rules:
{rules}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: {name}, namespace: {NS}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: {name}}}
subjects: [{{kind: ServiceAccount, name: {name}, namespace: {NS}}}]
"
            ));
        }
        token
    }
}

fn forecast_path() -> String {
    format!("/api/v1/namespaces/{NS}/workloads/deployments/{APP}/forecast?horizon=6h")
}

fn scale(replicas: u32) -> Value {
    json!({
        "incident_id": "memory-exhaustion-2026-11-24T08:00:00",
        "action": "scale_deployment",
        "target": APP,
        "namespace": NS,
        "parameters": {
            "replicas": replicas,
            "reason": "Proactive scaling to prevent memory exhaustion",
            "predicted_usage": 92.3
        }
    })
}

#[tokio::test]
async fn authentication_authorisation_validation_and_forecast_against_the_real_apiserver() {
    let env = Env::start(Serve::ApiOnly).await;
    let api = &env.api;

    // No token: 401 everywhere, before anything else.
    let (s, v) = api.get(&forecast_path(), None).await;
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["error"], "unauthenticated");
    let (s, v) = api.post(&scale(3), None).await;
    assert_eq!(s, 401, "{v}");
    // A token the apiserver does not know: 401 from the TokenReview.
    let (s, v) = api.get(&forecast_path(), Some("not-a-real-token")).await;
    assert_eq!(s, 401, "{v}");
    assert!(v["message"].as_str().unwrap().contains("not valid"), "{v}");

    // A ServiceAccount without RBAC: 403 naming who and what.
    let nobody = env.account("nobody", "");
    let (s, v) = api.get(&forecast_path(), Some(&nobody)).await;
    assert_eq!(s, 403, "{v}");
    let m = v["message"].as_str().unwrap();
    assert!(
        m.contains(&format!(
            "user \"system:serviceaccount:{NS}:nobody\" cannot get deployments.apps \"{APP}\" in namespace \"{NS}\""
        )),
        "{m}"
    );
    let (s, v) = api.post(&scale(3), Some(&nobody)).await;
    assert_eq!(s, 403, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("cannot patch deployments.apps/scale"),
        "{v}"
    );

    // Allowed to get Deployments: the forecast, with the scenario's numbers.
    let reader = env.account(
        "reader",
        "- {apiGroups: [apps], resources: [deployments], verbs: [get]}",
    );
    let v = api.wait_for(&forecast_path(), &reader, 200).await;
    assert_eq!(v["kind"], "Deployment");
    assert_eq!(v["history_source"], "prometheus");
    assert_eq!(v["horizon_seconds"], 21600);
    let c = &v["containers"][0];
    assert_eq!(c["name"], "api", "{v}");
    assert_eq!(c["status"], "ok", "{c}");
    assert_eq!(c["pattern"], "leak", "{c}");
    assert_eq!(c["limit"], "512Mi");
    assert_eq!(c["limit_bytes"], 512 * 1024 * 1024);
    let now = v["now"].as_i64().unwrap();
    let last_at = c["current_at"].as_i64().unwrap();
    assert!(
        last_at > env.end - 600 && last_at <= env.end + 300,
        "{last_at} vs {}",
        env.end
    );
    // The latest 5-minute peak: the working set at the interval's last scrape.
    let last = ws_at(env.start, env.end) / MI;
    let current = c["current_bytes"].as_f64().unwrap() / MI;
    assert!((current - last).abs() < 0.5, "{current} MiB vs {last} MiB");
    let pct = c["current_percent"].as_f64().unwrap();
    assert!((pct - last / LIMIT_MI * 100.0).abs() < 0.1, "{pct}");
    // 6 h past now (4 h after the data ends) at 2 MiB/h.
    let ahead_h = (now - last_at + 6 * 3600) as f64 / 3600.0;
    let want = last + RATE_MI_H * ahead_h;
    let predicted = c["predicted_bytes"].as_f64().unwrap() / MI;
    assert!(
        (predicted - want).abs() < 0.02 * want,
        "{predicted} MiB vs {want} MiB"
    );
    let ppct = c["predicted_percent"].as_f64().unwrap();
    assert!((ppct - want / LIMIT_MI * 100.0).abs() < 1.0, "{ppct}");
    let growth = c["growth_bytes_per_hour"].as_f64().unwrap() / MI;
    assert!(
        (growth - RATE_MI_H).abs() < 0.05 * RATE_MI_H,
        "{growth} MiB/h"
    );
    // (512 - last) MiB at 2 MiB/h from the last sample, counted from now.
    let ttl_h = c["time_to_limit_seconds"].as_f64().unwrap() / 3600.0;
    let want_ttl = (LIMIT_MI - last) / RATE_MI_H - (now - last_at) as f64 / 3600.0;
    assert!(
        (ttl_h - want_ttl).abs() < 0.05 * want_ttl,
        "{ttl_h} h vs {want_ttl} h"
    );
    let low = c["time_to_limit_low_seconds"].as_f64().unwrap() / 3600.0;
    let high = c["time_to_limit_high_seconds"].as_f64().unwrap() / 3600.0;
    assert!(low <= ttl_h && ttl_h <= high, "{low} {ttl_h} {high}");
    assert!(c["confidence"].as_f64().unwrap() > 0.5, "{c}");
    assert_eq!(v["predicted_memory_percent"], c["predicted_percent"]);
    // `get` is not `patch`: the reader cannot trigger.
    let (s, v) = api.post(&scale(3), Some(&reader)).await;
    assert_eq!(s, 403, "{v}");
    // Nor list the records.
    let (s, v) = api
        .get(
            &format!("/api/v1/remediations?namespace={NS}"),
            Some(&reader),
        )
        .await;
    assert_eq!(s, 403, "{v}");

    // Allowed to scale: beyond the policy's maxReplicas is 422 with the bound, decided before
    // the backend (which in `oomguard api` alone would answer 503).
    let scaler = env.account(
        "scaler",
        "- {apiGroups: [apps], resources: [deployments/scale], verbs: [patch]}
- {apiGroups: [apps], resources: [deployments], verbs: [patch, get, list]}",
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let (s, v) = loop {
        let (s, v) = api.post(&scale(50), Some(&scaler)).await;
        if s != 403 || Instant::now() > deadline {
            break (s, v);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["error"], "out_of_bounds");
    assert_eq!(v["bound"], "reconcile.maxReplicas");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("replicas 50 is above the policy's reconcile.maxReplicas 5"),
        "{v}"
    );
    let raise = json!({"action": "raise_limit", "target": APP, "namespace": NS,
                       "parameters": {"memory_limit": "2Gi", "reason": "leak"}});
    let (s, v) = api.post(&raise, Some(&scaler)).await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["bound"], "limits.max");
    // Already at 2 replicas: nothing to do.
    let (s, v) = api.post(&scale(2), Some(&scaler)).await;
    assert_eq!(s, 409, "{v}");
    // A workload that does not exist: 404.
    let mut ghost = scale(3);
    ghost["target"] = json!("ghost");
    let (s, v) = api.post(&ghost, Some(&scaler)).await;
    assert_eq!(s, 404, "{v}");
    // The stored object is untouched by all of it.
    let replicas = env.cp.ok(&[
        "-n",
        NS,
        "get",
        "deployment",
        APP,
        "-o",
        "jsonpath={.spec.replicas}",
    ]);
    assert_eq!(replicas.trim(), "2");

    // Records as the reconciler keeps them (annotation + label) are listed with the success rate.
    let record = |id: &str, outcome: &str| {
        json!({"id": id, "action": "scale-out",
               "target": {"kind": "Deployment", "namespace": NS, "name": APP},
               "at": env.end, "requestedBy": "system:serviceaccount:shop:scaler",
               "incidentId": "inc-1", "reason": "test",
               "change": {"type": "replicas", "from": 2, "to": 3},
               "baseline": {"utilization": 0.9, "oomKills": 0, "lastOomAt": null},
               "verifyAt": env.end + 900, "outcome": outcome})
    };
    let records = json!([
        record("r-1", "effective"),
        record("r-2", "ineffective"),
        record("r-3", "pending")
    ]);
    env.cp.ok(&[
        "-n",
        NS,
        "annotate",
        "deployment",
        APP,
        &format!("oomguard.io/remediations={records}"),
    ]);
    env.cp.ok(&[
        "-n",
        NS,
        "label",
        "deployment",
        APP,
        "oomguard.io/remediated=true",
    ]);
    let (s, v) = api
        .get(
            &format!("/api/v1/remediations?namespace={NS}"),
            Some(&scaler),
        )
        .await;
    assert_eq!(s, 200, "{v}\n{}", api.log());
    let shop = &v["namespaces"][NS];
    assert_eq!(shop["total"], 3, "{v}");
    assert_eq!(shop["effective"], 1);
    assert_eq!(shop["ineffective"], 1);
    assert_eq!(shop["pending"], 1);
    assert_eq!(shop["success_rate"], 0.5);
    let (s, v) = api.get("/api/v1/remediations/r-1", Some(&scaler)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "effective");
    assert_eq!(v["remediation"]["change"]["to"], 3);
    // Someone who may not get the workload: the same 404 as for an id that does not exist, so
    // that ids in namespaces they cannot read stay unknown.
    let (s, hidden) = api.get("/api/v1/remediations/r-1", Some(&nobody)).await;
    assert_eq!(s, 404, "{hidden}");
    let (s, v) = api.get("/api/v1/remediations/r-404", Some(&nobody)).await;
    assert_eq!(s, 404, "{v}");
    assert_eq!(
        hidden["message"].as_str().unwrap().replace("r-1", "r-404"),
        v["message"].as_str().unwrap()
    );
    let (s, v) = api.get("/api/v1/remediations/r-404", Some(&scaler)).await;
    assert_eq!(s, 404, "{v}");

    // Every remediation request is logged with who asked.
    let log = api.log();
    let logged = log.lines().any(|l| {
        l.contains("\"message\":\"remediation request\"")
            && l.contains("\"user\":\"system:serviceaccount:shop:scaler\"")
            && l.contains("\"status\":422")
            && l.contains("reconcile.maxReplicas 5")
    });
    assert!(logged, "{log}");
}

/// Trigger a scale-out through `oomguard reconcile --api-addr` (the reconciler's Remediator,
/// running as the oomguard ServiceAccount with deploy/'s RBAC) and read its verified outcome.
#[tokio::test]
async fn a_caller_allowed_to_scale_triggers_and_reads_the_outcome() {
    let env = Env::start(Serve::Reconciler).await;
    let api = &env.api;
    let scaler = env.account(
        "scaler",
        "- {apiGroups: [apps], resources: [deployments/scale], verbs: [patch]}
- {apiGroups: [apps], resources: [deployments], verbs: [get, list]}",
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let (s, v) = loop {
        let (s, v) = api.post(&scale(3), Some(&scaler)).await;
        if s != 403 || Instant::now() > deadline {
            break (s, v);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(s, 202, "{v}\n{}", api.log());
    let id = v["action_id"].as_str().unwrap().to_string();
    assert_eq!(
        v["remediation"]["requestedBy"],
        "system:serviceaccount:shop:scaler"
    );
    assert_eq!(
        v["remediation"]["incidentId"],
        "memory-exhaustion-2026-11-24T08:00:00"
    );
    let replicas = env.cp.ok(&[
        "-n",
        NS,
        "get",
        "deployment",
        APP,
        "-o",
        "jsonpath={.spec.replicas}",
    ]);
    assert_eq!(replicas.trim(), "3");
    assert_eq!(v["remediation"]["change"]["from"], 2);
    assert_eq!(v["remediation"]["outcome"], "pending");
    // A second request inside the policy's cooldown (10m by default) is held back, not applied.
    let (s, again) = api.post(&scale(4), Some(&scaler)).await;
    assert_eq!(s, 429, "{again}");
    assert_eq!(again["error"], "held_back", "{again}");
    assert!(
        again["message"].as_str().unwrap().contains("cooldown"),
        "{again}"
    );
    let replicas = env.cp.ok(&[
        "-n",
        NS,
        "get",
        "deployment",
        APP,
        "-o",
        "jsonpath={.spec.replicas}",
    ]);
    assert_eq!(
        replicas.trim(),
        "3",
        "the held-back request changed nothing"
    );
    // The outcome appears after verification (by the reconciler loop, 5 s window).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, v) = api
            .get(&format!("/api/v1/remediations/{id}"), Some(&scaler))
            .await;
        assert_eq!(s, 200, "{v}");
        if v["status"] != "pending" {
            // A scale-out is judged by the memory per pod: the history (a file) cannot show the
            // new replica sharing the load, so it did not fall: ineffective.
            assert_eq!(v["status"], "ineffective", "{v}");
            assert!(
                v["remediation"]["detail"]
                    .as_str()
                    .unwrap()
                    .contains("memory per pod did not follow the replicas"),
                "{v}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "still pending after 60 s: {v}");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let (s, v) = api
        .get(
            &format!("/api/v1/remediations?namespace={NS}"),
            Some(&scaler),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["namespaces"][NS]["total"], 1, "{v}");
    assert_eq!(v["namespaces"][NS]["ineffective"], 1, "{v}");
    assert_eq!(v["namespaces"][NS]["success_rate"], 0.0, "{v}");
}
