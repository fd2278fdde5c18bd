//! The test control plane (tests/controlplane: kube-apiserver, etcd, optionally
//! kube-controller-manager, kubectl of the same version), started in a scratch folder and
//! stopped on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/controlplane/controlplane.sh")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub struct ControlPlane {
    pub dir: tempfile::TempDir,
    pub kubectl: PathBuf,
    pub kubeconfig: PathBuf,
    pub url: String,
}

impl ControlPlane {
    /// Starts it; `controllers` adds kube-controller-manager (Deployments get ReplicaSets and
    /// pods; there is no scheduler or kubelet, so pods stay Pending).
    pub fn start(controllers: bool) -> ControlPlane {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("bash");
        cmd.arg(script()).arg("start").arg(dir.path());
        if controllers {
            cmd.arg("--controllers");
        }
        let out = cmd.stderr(Stdio::inherit()).output().unwrap();
        assert!(
            out.status.success(),
            "control plane did not start (see above)"
        );
        let env = std::fs::read_to_string(dir.path().join("env")).unwrap();
        let get = |k: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("export {k}=")))
                .map(|v| v.trim_matches('\'').to_string())
                .unwrap_or_else(|| panic!("{k} not in env"))
        };
        ControlPlane {
            kubectl: get("KUBECTL").into(),
            kubeconfig: get("KUBECONFIG").into(),
            url: get("APISERVER_URL"),
            dir,
        }
    }

    /// kubectl as cluster-admin, with `stdin` piped in.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut child = Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut pipe = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            pipe.write_all(s.as_bytes()).unwrap();
        }
        drop(pipe);
        child.wait_with_output().unwrap()
    }

    /// stdout of a kubectl call that must succeed.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_in(args, None)
    }

    pub fn ok_in(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\n{}",
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    pub fn apply(&self, yaml: &str) {
        self.ok_in(&["apply", "-f", "-"], Some(yaml));
    }

    /// `kubectl -n NS get WHAT -o json`.
    pub fn json(&self, ns: &str, what: &str) -> Value {
        serde_json::from_str(&self.ok(&["-n", ns, "get", what, "-o", "json"])).unwrap()
    }

    /// The Events about `name` in `ns`: (reason, message, reporting instance).
    pub fn events(&self, ns: &str, name: &str) -> Vec<(String, String, String)> {
        let list = self.json(ns, "events");
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["involvedObject"]["name"] == name)
            .map(|e| {
                let s = |k: &str| e[k].as_str().unwrap_or("").to_string();
                (s("reason"), s("message"), s("reportingInstance"))
            })
            .collect()
    }

    /// The apiserver's audit log so far: one event per write (controlplane.sh logs writes only,
    /// at the Metadata level).
    pub fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("audit.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// A ServiceAccount token for NS/NAME (the ServiceAccount is created when missing).
    pub fn token(&self, ns: &str, name: &str) -> String {
        let _ = self.kubectl(&["-n", ns, "create", "serviceaccount", name], None);
        self.ok(&["-n", ns, "create", "token", name, "--duration=1h"])
            .trim()
            .to_string()
    }

    /// A kubeconfig that acts as NS/NAME's ServiceAccount.
    pub fn kubeconfig_for(&self, ns: &str, name: &str, out: &Path) {
        let token = self.token(ns, name);
        let ca = self.dir.path().join("pki/ca.crt");
        std::fs::write(
            out,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: sa\n  user:\n    token: {token}\ncontexts:\n- name: test\n  context: {{cluster: test, user: sa}}\ncurrent-context: test\n",
                self.url,
                ca.display()
            ),
        )
        .unwrap();
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}
