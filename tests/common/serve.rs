//! `oomguard serve` as a process for the kubectl end-to-end tests: the apiserver calls it at
//! `https://127.0.0.1:PORT` with the certificates `oomguard certs` made in `DIR/certs`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, policy, BIN};

/// Certificates in `dir/certs` for the apiserver to call the webhook at
/// `https://127.0.0.1:PORT`, and `dir/certs/webhook.yaml` registering it; returns PORT.
pub fn certs_for_apiserver(dir: &Path) -> u16 {
    let port = free_port();
    let st = Command::new(BIN)
        .args(["certs", "--out"])
        .arg(dir.join("certs"))
        .args(["--ip", "127.0.0.1"])
        .args(["--url", &format!("https://127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    port
}

pub struct Serve {
    pub child: std::process::Child,
    pub admin: u16,
    pub log: PathBuf,
}

impl Serve {
    pub fn start(dir: &Path, port: u16, policies: &Path, history_args: &[&str]) -> Serve {
        let admin = free_port();
        let log = dir.join(format!("serve-{port}-{admin}.log"));
        let f = std::fs::File::create(&log).unwrap();
        let child = Command::new(BIN)
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
            .arg("--tls-cert")
            .arg(dir.join("certs/tls.crt"))
            .arg("--tls-key")
            .arg(dir.join("certs/tls.key"))
            .arg("--policies")
            .arg(policies)
            .args(history_args)
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap();
        let s = Serve { child, admin, log };
        s.wait(|m| m.is_some(), "ready");
        s
    }

    pub fn metrics(&self) -> Option<String> {
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

    pub fn wait(&self, cond: impl Fn(Option<String>) -> bool, what: &str) {
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

    pub fn reloads(&self) -> u64 {
        self.metrics()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("oomguard_policy_reloads_total{result=\"ok\"} "))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0)
    }

    /// Writes the namespace policy and waits until the webhook has reloaded it.
    pub fn set_mode(&self, policies: &Path, ns: &str, mode: &str) {
        let before = self.reloads();
        std::fs::write(policies.join(format!("{ns}.yaml")), policy(mode, "")).unwrap();
        self.wait(|_| self.reloads() > before, &format!("reloaded to {mode}"));
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
