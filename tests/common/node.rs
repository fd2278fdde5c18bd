//! The real node of tests/cluster/cluster.sh: kubectl against it, its Prometheus, its cgroups.
//! The cluster is started (and always torn down) by tests/run.sh, which passes its env file in
//! `OOMGUARD_NODE_ENV`; the tests never start one themselves, so that four of them share one node.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const MI: f64 = 1024.0 * 1024.0;

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Calls `f` every `every` until it returns `Some`, or panics with `what` after `timeout`.
/// Deadlines are generous: they only bound a test that would otherwise hang.
pub fn poll<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(every);
    }
}

pub struct Node {
    pub dir: PathBuf,
    pub kubectl: PathBuf,
    pub kubeconfig: PathBuf,
    pub prometheus: String,
    pub test_image: String,
    /// The memory cgroup the kubelet puts pods under (…/memory/oomguard-node).
    pub cgroup_root: PathBuf,
    env: HashMap<String, String>,
}

impl Node {
    /// The node that tests/run.sh started (`OOMGUARD_NODE_ENV`: its `DIR/env`).
    pub fn from_env() -> Node {
        let path = std::env::var("OOMGUARD_NODE_ENV").unwrap_or_else(|_| {
            panic!(
                "OOMGUARD_NODE_ENV is not set: these tests need the real node of \
                 tests/cluster/cluster.sh; run them with `bash tests/run.sh`, or \
                 `cluster.sh up DIR` and OOMGUARD_NODE_ENV=DIR/env"
            )
        });
        let env: HashMap<String, String> = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
            .collect();
        let get = |k: &str| {
            env.get(k)
                .cloned()
                .unwrap_or_else(|| panic!("{k} is not in {path}"))
        };
        Node {
            dir: get("CLUSTER_DIR").into(),
            kubectl: get("KUBECTL").into(),
            kubeconfig: get("KUBECONFIG").into(),
            prometheus: get("PROMETHEUS_URL"),
            test_image: get("TEST_IMAGE"),
            cgroup_root: get("CGROUP_ROOT").into(),
            env,
        }
    }

    pub fn var(&self, k: &str) -> &str {
        self.env.get(k).map(String::as_str).unwrap_or("")
    }

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
        let out = self.kubectl(args, None);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\n{}",
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// `kubectl apply -f -`: the whole output (the caller looks at warnings and denials).
    pub fn apply(&self, yaml: &str) -> Output {
        self.kubectl(&["apply", "-f", "-"], Some(yaml))
    }

    pub fn apply_ok(&self, yaml: &str) -> String {
        let out = self.apply(yaml);
        assert!(
            out.status.success(),
            "kubectl apply failed:\n{}",
            text(&out.stderr)
        );
        text(&out.stderr)
    }

    pub fn json(&self, ns: &str, what: &str) -> Value {
        serde_json::from_str(&self.ok(&["-n", ns, "get", what, "-o", "json"])).unwrap()
    }

    /// The pods of `ns` whose label `app` is `app`.
    pub fn pods(&self, ns: &str, app: &str) -> Vec<Value> {
        let list: Value = serde_json::from_str(&self.ok(&[
            "-n",
            ns,
            "get",
            "pods",
            "-l",
            &format!("app={app}"),
            "-o",
            "json",
        ]))
        .unwrap();
        list["items"].as_array().cloned().unwrap_or_default()
    }

    /// Restarts of every container of the pods of `app` (the kubelet's count), and how many of
    /// the last terminations were OOM kills.
    pub fn restarts(&self, ns: &str, app: &str) -> u64 {
        self.pods(ns, app)
            .iter()
            .flat_map(|p| {
                p["status"]["containerStatuses"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .map(|c| c["restartCount"].as_u64().unwrap_or(0))
            .sum()
    }

    /// Events in `ns` as (reason, involved object's name, message).
    pub fn events(&self, ns: &str) -> Vec<(String, String, String)> {
        let list = self.json(ns, "events");
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let s = |v: &Value| v.as_str().unwrap_or("").to_string();
                (
                    s(&e["reason"]),
                    s(&e["involvedObject"]["name"]),
                    s(&e["message"]),
                )
            })
            .collect()
    }

    /// A PromQL instant query's `data.result`.
    pub fn query(&self, promql: &str) -> Vec<Value> {
        let out = Command::new("curl")
            .args(["-sS", "-m", "30", "--noproxy", "*", "-G"])
            .arg(format!("{}/api/v1/query", self.prometheus))
            .arg("--data-urlencode")
            .arg(format!("query={promql}"))
            .output()
            .expect("curl is needed");
        assert!(out.status.success(), "curl failed: {}", text(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("Prometheus answered {}: {e}", text(&out.stdout)));
        assert_eq!(v["status"], "success", "query {promql}: {v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The single value of an instant query (None: empty result).
    pub fn scalar(&self, promql: &str) -> Option<f64> {
        let r = self.query(promql);
        assert!(r.len() <= 1, "{promql} returned {} series", r.len());
        r.first().map(|s| sample_value(&s["value"]))
    }

    /// tests/cluster/cluster.sh with this node's DIR.
    pub fn cluster_sh(&self, cmd: &str) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/cluster.sh");
        let st = Command::new("bash")
            .arg(script)
            .arg(cmd)
            .arg(&self.dir)
            .status()
            .unwrap();
        assert!(st.success(), "cluster.sh {cmd} failed");
    }

    /// The memory cgroup of a running container, from its pod's uid and container id.
    pub fn container_cgroup(&self, pod: &Value, container: &str) -> PathBuf {
        let uid = pod["metadata"]["uid"].as_str().unwrap();
        let qos = match pod["status"]["qosClass"].as_str().unwrap() {
            "Guaranteed" => "",
            "Burstable" => "burstable/",
            _ => "besteffort/",
        };
        let id = pod["status"]["containerStatuses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == container)
            .and_then(|c| c["containerID"].as_str())
            .unwrap_or_else(|| panic!("no container {container} in {pod}"));
        let id = id.strip_prefix("containerd://").unwrap_or(id);
        self.cgroup_root
            .join(format!("kubepods/{qos}pod{uid}"))
            .join(id)
    }
}

/// `[timestamp, "value"]` of Prometheus' JSON.
pub fn sample_value(v: &Value) -> f64 {
    v[1].as_str().unwrap().parse().unwrap()
}

pub fn read_u64(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .trim()
        .parse()
        .unwrap()
}

/// Every state of the pods of a namespace that the apiserver sent (`kubectl get pods -w`), with
/// the wall-clock time each arrived: the kubelet's own account, where a poll would miss the last
/// kill of a pod deleted between two polls. The stream is restarted if kubectl ends.
pub struct PodWatch {
    seen: std::sync::Arc<std::sync::Mutex<Vec<(f64, Value)>>>,
    child: std::sync::Arc<std::sync::Mutex<Option<std::process::Child>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// One OOM kill as the kubelet reported it: (pod, container, finishedAt in unix seconds).
pub type Kill = (String, String, i64);

impl PodWatch {
    pub fn start(node: &Node, ns: &str) -> PodWatch {
        use std::io::BufReader;
        use std::sync::atomic::Ordering;
        let w = PodWatch {
            seen: Default::default(),
            child: Default::default(),
            stop: Default::default(),
        };
        let (seen, child, stop) = (w.seen.clone(), w.child.clone(), w.stop.clone());
        let (kubectl, kubeconfig, ns) = (
            node.kubectl.clone(),
            node.kubeconfig.clone(),
            ns.to_string(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let mut c = Command::new(&kubectl)
                    .arg("--kubeconfig")
                    .arg(&kubeconfig)
                    .args(["-n", &ns, "get", "pods", "-w", "-o", "json"])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                let out = c.stdout.take().unwrap();
                *child.lock().unwrap() = Some(c);
                let stream = serde_json::Deserializer::from_reader(BufReader::new(out));
                for v in stream.into_iter::<Value>() {
                    let Ok(v) = v else { break };
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs_f64();
                    // `-w -o json` prints the list's items first, then each change.
                    if v["kind"] == "List" {
                        for p in v["items"].as_array().into_iter().flatten() {
                            seen.lock().unwrap().push((now, p.clone()));
                        }
                    } else {
                        seen.lock().unwrap().push((now, v));
                    }
                }
                if let Some(mut c) = child.lock().unwrap().take() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        w
    }

    /// Every pod state seen so far of the pods labelled `app=<app>`, oldest first.
    pub fn states(&self, app: &str) -> Vec<(f64, Value)> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, p)| p["metadata"]["labels"]["app"] == app)
            .cloned()
            .collect()
    }

    /// Every OOM kill the kubelet reported for the pods of `app`, once each: the OOMKilled
    /// terminations in any container's state or last state.
    pub fn kills(&self, app: &str) -> std::collections::BTreeSet<Kill> {
        let mut out = std::collections::BTreeSet::new();
        for (_, p) in self.states(app) {
            for c in p["status"]["containerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
            {
                for s in [&c["state"], &c["lastState"]] {
                    let t = &s["terminated"];
                    if t["reason"] == "OOMKilled" {
                        out.insert((
                            p["metadata"]["name"].as_str().unwrap().to_string(),
                            c["name"].as_str().unwrap().to_string(),
                            rfc3339(t["finishedAt"].as_str().unwrap()),
                        ));
                    }
                }
            }
        }
        out
    }
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(c) = self
            .child
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            let _ = c.kill();
        }
    }
}

/// Unix seconds of an RFC 3339 time.
pub fn rfc3339(s: &str) -> i64 {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .unix_timestamp()
}

/// The OOM kills a workload keeps (`oomguard.io/oom-kills`), as the kubelet's [`Kill`]s.
pub fn kept_kills(workload: &Value) -> std::collections::BTreeSet<Kill> {
    workload["metadata"]["annotations"]["oomguard.io/oom-kills"]
        .as_str()
        .map(|v| serde_json::from_str::<Vec<Value>>(v).unwrap())
        .unwrap_or_default()
        .iter()
        .map(|k| {
            (
                k["pod"].as_str().unwrap().to_string(),
                k["container"].as_str().unwrap().to_string(),
                k["at"].as_i64().unwrap(),
            )
        })
        .collect()
}
