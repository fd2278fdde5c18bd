//! Shared helpers of the integration tests: a real `oomguard serve` over real TLS (this file and
//! [`serve`]), the test control plane ([`controlplane`]), the real node ([`node`]), a real
//! Prometheus ([`prom`]) with generated cluster histories ([`scenario`]), and fakes for fault
//! injection ([`fake`]). The Prometheus benchmark (examples/prom_bench.rs) includes `prom` and
//! `scenario` by path.
#![allow(dead_code)]

pub mod controlplane;
pub mod corpus;
pub mod fake;
pub mod node;
pub mod prom;
pub mod scenario;
pub mod serve;

pub use prom::free_port;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_oomguard");

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> serde_json::Value {
    let p = repo().join("tests/fixtures/reviews").join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

/// The namespace policy of the webhook tests: the decision's settings spelled out (the classic
/// 14d max + 15%, bump × 1.2, which the recorded reviews' expected limits were computed with),
/// so that a change of the built-in defaults does not move them.
pub fn policy(mode: &str, extra: &str) -> String {
    format!(
        "apiVersion: oomguard.io/v1\nkind: MemoryPolicy\nspec:\n  mode: {mode}\n  limits: {{min: 64Mi, max: 8Gi}}\n  history: {{window: 14d, minHistory: 3h}}\n  statistic: max\n  headroom: 15%\n  oomBump: {{ratio: 1.2, min: 100Mi, maxSteps: 3}}\n{extra}"
    )
}

pub fn make_certs(dir: &Path) {
    let st = Command::new(BIN)
        .args(["certs", "--out"])
        .arg(dir)
        .args(["--dns", "localhost", "--ip", "127.0.0.1", "--force"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
}

/// `oomguard serve` started in a new temporary folder: certificates from `oomguard certs` in
/// `certs/`, the `self-healing-platform` namespace's policy of `mode` (plus `extra_policy`) in
/// `policies/`, the log in `serve.log`, and `args` after the listeners, TLS files and policies.
/// Not waited for: each caller has its own idea of ready.
pub struct Spawned {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub admin: u16,
    pub child: Child,
}

pub fn spawn_serve(mode: &str, extra_policy: &str, args: &[&str], env: &[(&str, &str)]) -> Spawned {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    make_certs(&certs);
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("self-healing-platform.yaml"),
        policy(mode, extra_policy),
    )
    .unwrap();
    let (port, admin) = (free_port(), free_port());
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let child = Command::new(BIN)
        .arg("serve")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .arg("--tls-cert")
        .arg(certs.join("tls.crt"))
        .arg("--tls-key")
        .arg(certs.join("tls.key"))
        .arg("--policies")
        .arg(&policies)
        .args(args)
        .envs(env.iter().copied())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    Spawned {
        dir,
        port,
        admin,
        child,
    }
}

pub struct Webhook {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub admin_port: u16,
    pub child: Child,
    pub client: reqwest::Client,
}

impl Webhook {
    /// Starts a webhook whose `self-healing-platform` namespace has `mode`, with the bundled
    /// demo history.
    pub async fn start(mode: &str, extra_policy: &str) -> Webhook {
        let history = repo().join("examples/memory-leak-app/history.json");
        let Spawned {
            dir,
            port,
            admin,
            child,
        } = spawn_serve(
            mode,
            extra_policy,
            &["--history", history.to_str().unwrap(), "--drain", "3s"],
            &[],
        );
        let client = client_for(&dir.path().join("certs/ca.crt"));
        let w = Webhook {
            dir,
            port,
            admin_port: admin,
            child,
            client,
        };
        w.wait_ready().await;
        w
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) =
                reqwest::get(format!("http://127.0.0.1:{}/readyz", self.admin_port)).await
            {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "webhook not ready in 20s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    pub async fn post(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, serde_json::Value) {
        let r = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        (status, v)
    }

    pub async fn review(&self, path: &str, review: &serde_json::Value) -> serde_json::Value {
        let (status, v) = self.post(path, serde_json::to_vec(review).unwrap()).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(v["kind"], "AdmissionReview");
        assert_eq!(
            v["response"]["uid"], review["request"]["uid"],
            "uid must be echoed"
        );
        v["response"].clone()
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://127.0.0.1:{}/metrics", self.admin_port))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn policies_dir(&self) -> PathBuf {
        self.dir.path().join("policies")
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client that trusts only the given CA.
pub fn client_for(ca: &Path) -> reqwest::Client {
    let pem = std::fs::read(ca).unwrap();
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Decodes and applies a response's patch to the reviewed object.
pub fn apply_patch(response: &serde_json::Value, object: &serde_json::Value) -> serde_json::Value {
    use base64::Engine as _;
    assert_eq!(response["patchType"], "JSONPatch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(response["patch"].as_str().unwrap())
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
    let mut obj = object.clone();
    json_patch::patch(&mut obj, &patch).unwrap_or_else(|e| panic!("patch does not apply: {e}"));
    obj
}

pub fn warnings(response: &serde_json::Value) -> Vec<String> {
    response["warnings"]
        .as_array()
        .map(|a| a.iter().map(|w| w.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}
