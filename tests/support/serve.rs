//! A real `oomguard serve` for the kubectl end-to-end tests: certificates from `oomguard certs`
//! with the webhook configurations pointing at it, per-namespace policies it reloads, readiness
//! read from its admin listener.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary under test (set for integration tests; examples include this module too).
fn bin() -> &'static str {
    option_env!("CARGO_BIN_EXE_oomguard").unwrap_or("oomguard")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Serve {
    child: Child,
    admin: u16,
    log: PathBuf,
    pub policies: PathBuf,
    /// `webhook.yaml` for the apiserver: both configurations, with the CA.
    pub webhook_yaml: PathBuf,
}

/// A policy of `mode` (and the repo's usual bounds).
pub fn policy(mode: &str) -> String {
    format!(
        "apiVersion: oomguard.io/v1\nkind: MemoryPolicy\nspec:\n  mode: {mode}\n  limits: {{min: 64Mi, max: 8Gi}}\n"
    )
}

impl Serve {
    /// Certificates and webhook configurations in `dir`, a policy of `mode` for `namespace`,
    /// and the server, ready.
    pub fn start(dir: &Path, namespace: &str, mode: &str, history_args: &[&str]) -> Serve {
        let port = free_port();
        let st = Command::new(bin())
            .args(["certs", "--out"])
            .arg(dir.join("certs"))
            .args([
                "--ip",
                "127.0.0.1",
                "--url",
                &format!("https://127.0.0.1:{port}"),
            ])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
        let policies = dir.join("policies");
        std::fs::create_dir_all(&policies).unwrap();
        std::fs::write(policies.join(format!("{namespace}.yaml")), policy(mode)).unwrap();
        let admin = free_port();
        let log = dir.join(format!("serve-{port}.log"));
        let f = std::fs::File::create(&log).unwrap();
        let child = Command::new(bin())
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
            .arg("--tls-cert")
            .arg(dir.join("certs/tls.crt"))
            .arg("--tls-key")
            .arg(dir.join("certs/tls.key"))
            .arg("--policies")
            .arg(&policies)
            .args(history_args)
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap();
        let s = Serve {
            child,
            admin,
            log,
            policies,
            webhook_yaml: dir.join("certs/webhook.yaml"),
        };
        s.wait(|m| m.is_some(), "ready");
        s
    }

    fn metrics(&self) -> Option<String> {
        let out = Command::new("curl")
            .args([
                "-fsS",
                "--noproxy",
                "*",
                &format!("http://127.0.0.1:{}/metrics", self.admin),
            ])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn wait(&self, cond: impl Fn(Option<String>) -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cond(self.metrics()) {
            assert!(
                Instant::now() < deadline,
                "webhook not {what} in 20s:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn reloads(&self) -> u64 {
        self.metrics()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("oomguard_policy_reloads_total{result=\"ok\"} "))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0)
    }

    /// Writes `namespace`'s policy and waits until the server has reloaded it.
    pub fn set_mode(&self, namespace: &str, mode: &str) {
        let before = self.reloads();
        std::fs::write(
            self.policies.join(format!("{namespace}.yaml")),
            policy(mode),
        )
        .unwrap();
        self.wait(|_| self.reloads() > before, &format!("reloaded to {mode}"));
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
