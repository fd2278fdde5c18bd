//! `oomguard reconcile` against a real kube-apiserver (with kube-controller-manager, so that
//! Deployments have pods) and a real Prometheus with backfilled history.
//!
//! One test runs the scenarios in order on one control plane:
//! 1. dry run: the plan is reported (Event, metric) and the stored object is untouched;
//! 2. the tutorial's memory-leak-app: its limit is raised (in place on the pods, or by a template
//!    patch), with the record in the annotations and an Event;
//! 3. memory that follows a daily load cycle, near the limit: replicas raised through the scale
//!    subresource; out of bounds: nothing
//!    done, an Event says why;
//! 4. verification: each action's outcome is recorded (annotation, Event, metric);
//! 5. two reconcilers, one Lease: only the holder acts; after it is killed the other takes over
//!    within the lease duration and acts; nothing is applied twice;
//! 6. a graceful stop releases the Lease;
//! 7. a leader cut off from the apiserver stops acting before a standby can take the Lease: never
//!    two leaders.

mod common;

use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::controlplane::ControlPlane;
use common::prom::{self, Prometheus};
use common::scenario;
use common::{free_port, BIN};
use serde_json::Value;

const LEASE_SECS: u64 = 6;
const MI: u64 = 1024 * 1024;

struct Reconciler {
    child: Child,
    admin: u16,
    log: PathBuf,
    identity: String,
}

impl Reconciler {
    fn start(
        dir: &Path,
        cp: &ControlPlane,
        policies: &Path,
        prom: &str,
        identity: &str,
    ) -> Reconciler {
        Reconciler::start_via(dir, &cp.kubeconfig, policies, prom, identity)
    }

    /// Started with its own kubeconfig (an apiserver behind a [`Proxy`]).
    fn start_via(
        dir: &Path,
        kubeconfig: &Path,
        policies: &Path,
        prom: &str,
        identity: &str,
    ) -> Reconciler {
        let admin = free_port();
        let log = dir.join(format!("reconcile-{identity}.log"));
        let f = std::fs::File::create(&log).unwrap();
        let child = Command::new(BIN)
            .arg("reconcile")
            .arg("--policies")
            .arg(policies)
            .args(["--prometheus", prom])
            .args(["--interval", "2s"])
            .args(["--lease-namespace", "default"])
            .args(["--lease-duration", &format!("{LEASE_SECS}s")])
            .args(["--identity", identity])
            .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "oomguard=debug,info")
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap();
        Reconciler {
            child,
            admin,
            log,
            identity: identity.to_string(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn metrics(&self) -> Option<String> {
        prom::http_get(self.admin, "/metrics").map(|(_, body)| body)
    }

    /// A sample's value, by the metric line's prefix (name and labels).
    fn metric(&self, prefix: &str) -> Option<f64> {
        self.metrics()?
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.trim().parse().ok())
    }

    fn leader(&self) -> Option<bool> {
        self.metric("oomguard_reconcile_leader ").map(|v| v == 1.0)
    }

    /// SIGTERM, as a rollout sends it; waits for the exit, which must be clean, and returns how
    /// long the process took to stop.
    fn terminate(&mut self) -> Duration {
        let st = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let termed = Instant::now();
        let exit = self.child.wait().unwrap();
        let stopped = termed.elapsed();
        assert!(
            exit.success(),
            "{} exited with {exit}:\n{}",
            self.identity,
            self.log()
        );
        stopped
    }
}

impl Drop for Reconciler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP relay to the apiserver that the test can cut, as a network partition would: open
/// connections are shut down and new ones closed at once.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(to: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (c, o) = (cut.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if c.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(server) = TcpStream::connect(to) else {
                    continue;
                };
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                {
                    let mut o = o.lock().unwrap();
                    o.extend(client.try_clone().ok());
                    o.extend(server.try_clone().ok());
                }
                std::thread::spawn(move || relay(client, s2));
                std::thread::spawn(move || relay(server, c2));
            }
        });
        Proxy { port, cut, open }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn relay(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Both);
}

fn wait_for<T>(what: &str, secs: u64, logs: &[&Reconciler], mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = logs
                .iter()
                .map(|r| format!("--- {} ---\n{}", r.identity, r.log()))
                .collect();
            panic!("{what}: not within {secs}s\n{}", logs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn deployment(ns: &str, name: &str, container: &str, limit: &str, request: &str) -> String {
    workload("Deployment", ns, name, container, limit, request)
}

fn workload(
    kind: &str,
    ns: &str,
    name: &str,
    container: &str,
    limit: &str,
    request: &str,
) -> String {
    let service = if kind == "StatefulSet" {
        format!("  serviceName: {name}\n")
    } else {
        String::new()
    };
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: {ns}}}
---
apiVersion: apps/v1
kind: {kind}
metadata: {{name: {name}, namespace: {ns}}}
spec:
  replicas: 2
{service}  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - name: {container}
        image: registry.example/{name}:1
        resources:
          limits: {{memory: {limit}}}
          requests: {{memory: {request}}}
"#
    )
}

fn reconcile_policy(extra: &str) -> String {
    format!(
        "apiVersion: oomguard.io/v1\nkind: MemoryPolicy\nspec:\n  mode: warn\n  limits: {{min: 64Mi, max: 8Gi}}\n  reconcile: {{enabled: true, verifyWindow: 5s, cooldown: 10m{extra}}}\n"
    )
}

fn records(obj: &Value) -> Vec<Value> {
    obj.pointer("/metadata/annotations/oomguard.io~1remediations")
        .and_then(Value::as_str)
        .map(|s| serde_json::from_str(s).unwrap())
        .unwrap_or_default()
}

fn quantity_bytes(q: &str) -> u64 {
    let q = q.trim();
    if let Some(n) = q.strip_suffix("Mi") {
        return n.parse::<u64>().unwrap() * MI;
    }
    if let Some(n) = q.strip_suffix("Gi") {
        return n.parse::<u64>().unwrap() * 1024 * MI;
    }
    q.parse().unwrap()
}

#[test]
fn reconciler_acts_verifies_and_hands_over() {
    // History: one day ending 4 h ago (out of Prometheus' head block).
    let end = prom::data_end();
    let start = end - 86_400;
    // Memory that follows a daily load cycle (scale-out material) needs two days to be seen.
    let cycles = end - 3 * 86_400;
    let workloads = [
        scenario::memory_leak_app(start, end),
        scenario::cycling("shop", "Deployment", "busy-api", cycles, end),
        scenario::cycling("capped", "Deployment", "busy-api", cycles, end),
        scenario::cycling("late", "Deployment", "late-api", cycles, end),
        scenario::cycling("shop", "StatefulSet", "busy-db", cycles, end),
        scenario::cycling("shop", "Deployment", "excluded-api", cycles, end),
        {
            // The same leak in a namespace whose policy raises limits by a template patch.
            let mut w = scenario::memory_leak_app(start, end);
            w.namespace = "legacy".to_string();
            w
        },
    ];
    let work = tempfile::tempdir().unwrap();
    let om = work.path().join("history.om");
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&om).unwrap());
        let series = workloads.iter().flat_map(|w| w.series(30)).collect();
        scenario::write_openmetrics(series, &mut out).unwrap();
        scenario::write_eof(&mut out).unwrap();
    }
    let data = work.path().join("tsdb");
    prom::create_blocks(&om, &data);
    let prometheus = Prometheus::start(&data, &[]);
    prometheus.wait_queryable("container_memory_working_set_bytes", end - 600);

    let cp = ControlPlane::start(true);
    let leak_ns = "self-healing-platform";
    cp.apply(&deployment(
        leak_ns,
        "memory-leak-app",
        "web",
        "256Mi",
        "128Mi",
    ));
    cp.apply(&deployment("shop", "busy-api", "api", "256Mi", "128Mi"));
    cp.apply(&deployment("capped", "busy-api", "api", "256Mi", "128Mi"));
    cp.apply(&deployment("late", "late-api", "api", "256Mi", "128Mi"));
    cp.apply(&workload(
        "StatefulSet",
        "shop",
        "busy-db",
        "api",
        "256Mi",
        "128Mi",
    ));
    cp.apply(&deployment("shop", "excluded-api", "api", "256Mi", "128Mi"));
    cp.ok(&[
        "-n",
        "shop",
        "annotate",
        "deployment/excluded-api",
        "oomguard.io/exclude=true",
    ]);
    let excluded_before = cp.json("shop", "deployment/excluded-api");
    cp.apply(&deployment(
        "legacy",
        "memory-leak-app",
        "web",
        "256Mi",
        "128Mi",
    ));
    let busy_before = cp.json("shop", "deployment/busy-api");

    let policies = work.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    // default.yaml: reconcile off (the default), so "late" is left alone until enabled.
    std::fs::write(policies.join("default.yaml"), common::policy("warn", "")).unwrap();
    std::fs::write(
        policies.join(format!("{leak_ns}.yaml")),
        reconcile_policy(""),
    )
    .unwrap();
    std::fs::write(
        policies.join("shop.yaml"),
        reconcile_policy(", dryRun: true"),
    )
    .unwrap();
    std::fs::write(
        policies.join("capped.yaml"),
        reconcile_policy(", maxReplicas: 2"),
    )
    .unwrap();
    std::fs::write(
        policies.join("legacy.yaml"),
        reconcile_policy(", resizeMethod: template"),
    )
    .unwrap();

    let a = Reconciler::start(work.path(), &cp, &policies, &prometheus.url, "rec-a");
    wait_for("rec-a leads", 30, &[&a], || a.leader().filter(|l| *l));
    let b = Reconciler::start(work.path(), &cp, &policies, &prometheus.url, "rec-b");
    wait_for("rec-b reports its state", 30, &[&b], || b.leader());
    assert_eq!(b.leader(), Some(false), "two leaders:\n{}", b.log());

    // 1. Dry run: planned, reported, nothing changed.
    wait_for("a dry-run scale-out plan", 60, &[&a], || {
        a.metric("oomguard_reconcile_plan_steps_total{step=\"scale-out\",dry_run=\"true\"} ")
            .filter(|v| *v >= 1.0)
    });
    let events = wait_for("the DryRun event", 20, &[&a], || {
        let ev = cp.events("shop", "busy-api");
        ev.iter().any(|e| e.0 == "DryRun").then_some(ev)
    });
    let dry = events.iter().find(|e| e.0 == "DryRun").unwrap();
    assert!(dry.1.contains("scale out 2 → 3 replicas"), "{dry:?}");
    assert_eq!(dry.2, "rec-a");
    let busy = cp.json("shop", "deployment/busy-api");
    assert_eq!(
        busy["metadata"]["resourceVersion"], busy_before["metadata"]["resourceVersion"],
        "dry run changed the stored object"
    );
    assert_eq!(busy["spec"]["replicas"], 2);
    assert!(records(&busy).is_empty());

    // 2. The tutorial's leak: the limit is raised.
    let leak = wait_for("memory-leak-app's limit raised", 60, &[&a], || {
        let d = cp.json(leak_ns, "deployment/memory-leak-app");
        (!records(&d).is_empty()).then_some(d)
    });
    let rs = records(&leak);
    assert_eq!(rs.len(), 1, "{rs:?}");
    let r = &rs[0];
    assert_eq!(r["action"], "raise-limit", "{r}");
    assert_eq!(r["requestedBy"], "oomguard-reconciler/rec-a");
    assert_eq!(r["change"]["container"], "web");
    assert_eq!(r["change"]["from"], 256 * MI);
    let to = r["change"]["to"].as_u64().unwrap();
    assert!(to > 256 * MI && to <= 8 * 1024 * MI, "{r}");
    let why = r["reason"].as_str().unwrap();
    assert!(
        why.contains("OOM-killed") && why.contains("raise 256Mi →"),
        "{r}"
    );
    match r["change"]["method"].as_str().unwrap() {
        "in-place-resize" => {
            // The apiserver is 1.36: the pods were resized, the template kept.
            let pods = cp.json(leak_ns, "pods");
            let items = pods["items"].as_array().unwrap();
            assert!(!items.is_empty());
            for p in items {
                let lim = p["spec"]["containers"][0]["resources"]["limits"]["memory"]
                    .as_str()
                    .unwrap();
                assert_eq!(quantity_bytes(lim), to, "pod {}", p["metadata"]["name"]);
            }
        }
        "template-patch" => {
            let lim = leak["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
                ["memory"]
                .as_str()
                .unwrap();
            assert_eq!(quantity_bytes(lim), to);
        }
        m => panic!("unknown method {m}"),
    }
    assert!(cp
        .events(leak_ns, "memory-leak-app")
        .iter()
        .any(|e| e.0 == "RaisedMemoryLimit" && e.1.contains(r["id"].as_str().unwrap())));
    assert_eq!(
        leak["metadata"]["labels"]["oomguard.io/remediated"], "true",
        "the label that lists remediated workloads"
    );
    //    resizeMethod: template → the pod template is patched (a rollout), pods untouched.
    let legacy = wait_for("legacy's template patched", 30, &[&a], || {
        let d = cp.json("legacy", "deployment/memory-leak-app");
        (!records(&d).is_empty()).then_some(d)
    });
    let lr = &records(&legacy)[0];
    assert_eq!(lr["change"]["method"], "template-patch", "{lr}");
    assert_eq!(
        lr["change"]["to"].as_u64(),
        Some(to),
        "same history, same limit"
    );
    let lim = legacy["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
        .as_str()
        .unwrap();
    assert_eq!(quantity_bytes(lim), to);
    let req = legacy["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
        ["memory"]
        .as_str()
        .unwrap();
    assert_eq!(req, "128Mi", "a Burstable container keeps its request");

    // 3. Out of bounds: maxReplicas 2 leaves no room; an Event says so, nothing changes.
    let ev = wait_for("the OutOfBounds event", 30, &[&a], || {
        let ev = cp.events("capped", "busy-api");
        ev.into_iter().find(|e| e.0 == "OutOfBounds")
    });
    assert!(ev.1.contains("above maxReplicas 2"), "{ev:?}");
    let capped = cp.json("capped", "deployment/busy-api");
    assert_eq!(capped["spec"]["replicas"], 2);
    assert!(records(&capped).is_empty());
    assert!(a
        .metric("oomguard_reconcile_plan_steps_total{step=\"out-of-bounds\",dry_run=\"false\"} ")
        .is_some_and(|v| v >= 1.0));

    //    Dry run off (a policy reload): scale out through the scale subresource.
    std::fs::write(policies.join("shop.yaml"), reconcile_policy("")).unwrap();
    let busy = wait_for("busy-api scaled out", 30, &[&a], || {
        let d = cp.json("shop", "deployment/busy-api");
        (d["spec"]["replicas"] == 3).then_some(d)
    });
    let rs = records(&busy);
    assert_eq!(rs.len(), 1, "{rs:?}");
    assert_eq!(rs[0]["action"], "scale-out");
    assert_eq!(
        rs[0]["change"],
        serde_json::json!({"type": "replicas", "from": 2, "to": 3})
    );
    assert_eq!(rs[0]["requestedBy"], "oomguard-reconciler/rec-a");
    let u = rs[0]["baseline"]["utilization"].as_f64().unwrap();
    assert!((0.80..0.88).contains(&u), "baseline utilization {u}");
    let scale = cp.json("shop", "deployment/busy-api");
    assert_eq!(scale["spec"]["replicas"], 3);
    assert!(cp
        .events("shop", "busy-api")
        .iter()
        .any(|e| e.0 == "ScaledOut"));
    //    The StatefulSet in the same namespace, through its own scale subresource.
    let db = wait_for("busy-db scaled out", 30, &[&a], || {
        let s = cp.json("shop", "statefulset/busy-db");
        (s["spec"]["replicas"] == 3).then_some(s)
    });
    let rs = records(&db);
    assert_eq!(rs.len(), 1, "{rs:?}");
    assert_eq!(rs[0]["target"]["kind"], "StatefulSet");
    assert_eq!(rs[0]["change"]["to"], 3);
    //    The same load on a workload annotated oomguard.io/exclude: untouched.
    let ex = cp.json("shop", "deployment/excluded-api");
    assert_eq!(
        ex["metadata"]["resourceVersion"],
        excluded_before["metadata"]["resourceVersion"]
    );
    assert_eq!(ex["spec"]["replicas"], 2);
    let ours: Vec<_> = cp
        .events("shop", "excluded-api")
        .into_iter()
        .filter(|e| e.2.starts_with("rec-"))
        .collect();
    assert!(ours.is_empty(), "{ours:?}");

    // 4. Verification after the 5 s window. The limit raise: no OOM since → effective, and it
    //    also lowered utilization. The scale-out is judged by the memory per pod alone: the
    //    backfilled history cannot show the new replicas sharing the load, so it did not fall
    //    (ineffective, which also holds any further scale-out of busy-api).
    let verified = wait_for("both outcomes verified", 40, &[&a], || {
        let b = records(&cp.json("shop", "deployment/busy-api"));
        let l = records(&cp.json(leak_ns, "deployment/memory-leak-app"));
        (b[0]["outcome"] != "pending" && l[0]["outcome"] != "pending").then_some((b, l))
    });
    for (rs, outcome) in [(&verified.0, "ineffective"), (&verified.1, "effective")] {
        assert_eq!(rs.len(), 1);
        assert_eq!(rs[0]["outcome"], outcome, "{}", rs[0]);
        assert!(rs[0]["verifiedAt"].as_i64().unwrap() >= rs[0]["verifyAt"].as_i64().unwrap());
    }
    assert!(
        verified.0[0]["detail"]
            .as_str()
            .unwrap()
            .contains("memory per pod did not follow the replicas"),
        "{}",
        verified.0[0]
    );
    // In place: the pods' new limit counts, so utilization fell by from/to.
    let l = &verified.1[0];
    let base = l["baseline"]["utilization"].as_f64().unwrap();
    let from = l["change"]["from"].as_f64().unwrap();
    let to = l["change"]["to"].as_f64().unwrap();
    let expect = format!(
        "utilization {:.0}% → {:.0}%",
        base * 100.0,
        base * from / to * 100.0
    );
    assert!(
        l["detail"].as_str().unwrap().contains(&expect),
        "{l} (expected {expect})"
    );
    wait_for("the four outcomes in the metrics", 20, &[&a], || {
        let s =
            a.metric("oomguard_remediations_total{action=\"scale-out\",outcome=\"ineffective\"} ")?;
        let r =
            a.metric("oomguard_remediations_total{action=\"raise-limit\",outcome=\"effective\"} ")?;
        (s == 2.0 && r == 2.0).then_some(())
    });
    assert_eq!(a.metric("oomguard_remediation_success_ratio "), Some(0.5));
    assert!(cp
        .events("shop", "busy-api")
        .iter()
        .any(|e| e.0 == "RemediationIneffective"));
    assert_eq!(b.leader(), Some(false));

    // 5. Hand-over: kill the leader without letting it release the lease.
    let mut a = a;
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let killed = Instant::now();
    std::fs::write(policies.join("late.yaml"), reconcile_policy("")).unwrap();
    wait_for("rec-b takes the lease", LEASE_SECS + 10, &[&b], || {
        b.leader().filter(|l| *l)
    });
    let took = killed.elapsed();
    assert!(
        took <= Duration::from_secs(LEASE_SECS + 3),
        "took over after {took:?}, lease duration {LEASE_SECS}s"
    );
    let late = wait_for("rec-b scales late-api", 30, &[&b], || {
        let d = cp.json("late", "deployment/late-api");
        (d["spec"]["replicas"] == 3).then_some(d)
    });
    let acted = killed.elapsed();
    eprintln!("hand-over: rec-b leads {took:?} and acts {acted:?} after rec-a was killed");
    assert_eq!(
        records(&late)[0]["requestedBy"],
        "oomguard-reconciler/rec-b"
    );
    assert!(
        acted <= Duration::from_secs(LEASE_SECS + 8),
        "acted {acted:?} after the leader died"
    );
    // Nothing applied twice: the new leader reads the records and holds (the scale-outs were
    //    judged ineffective: no more of them; the raises' workloads are not critical any more).
    wait_for("rec-b read the records of the others", 20, &[&b], || {
        let log = b.log();
        let held = log
            .lines()
            .filter(|l| l.contains("the last scale-out did not lower its memory per pod"))
            .filter(|l| l.contains("shop/busy-api") || l.contains("shop/busy-db"))
            .count();
        (held >= 2).then_some(())
    });
    let busy = cp.json("shop", "deployment/busy-api");
    assert_eq!(busy["spec"]["replicas"], 3);
    assert_eq!(records(&busy).len(), 1);
    assert_eq!(
        records(&cp.json(leak_ns, "deployment/memory-leak-app")).len(),
        1
    );

    // 6. A graceful stop (SIGTERM, as on a rollout): the leader exits cleanly and releases the
    //    lease; the standby (which re-reads the lease when its copy expires) leads within the
    //    lease duration.
    let c = Reconciler::start(work.path(), &cp, &policies, &prometheus.url, "rec-c");
    wait_for("rec-c reports its state", 30, &[&c], || c.leader());
    assert_eq!(c.leader(), Some(false));
    let mut b = b;
    let termed = Instant::now();
    let stopped = b.terminate();
    assert!(
        stopped < Duration::from_secs(5),
        "rec-b took {stopped:?} to stop"
    );
    assert!(b.log().contains("lease released"), "{}", b.log());
    wait_for(
        "rec-c takes the released lease",
        LEASE_SECS + 5,
        &[&c],
        || c.leader().filter(|l| *l),
    );
    let took = termed.elapsed();
    eprintln!(
        "graceful hand-over: rec-b stopped in {stopped:?}; rec-c leads {took:?} after SIGTERM"
    );
    assert!(
        took <= Duration::from_secs(LEASE_SECS + 2),
        "took {took:?}, lease duration {LEASE_SECS}s"
    );

    // 7. A partition: rec-d reaches the apiserver only through a relay; it takes the Lease when
    //    rec-c stops, then the relay is cut. Its lease manager cannot renew and keeps saying "held"
    //    (it retries with backoff); rec-d must stop acting before rec-e, a standby that reaches
    //    the apiserver, can take the expired Lease — the two never lead at once.
    let api: SocketAddr = cp
        .url
        .trim_start_matches("https://")
        .parse()
        .expect("the control plane's URL is https://IP:port");
    let proxy = Proxy::start(api);
    let via = work.path().join("kubeconfig-via-proxy");
    let kubeconfig = std::fs::read_to_string(&cp.kubeconfig).unwrap();
    assert!(kubeconfig.contains(&cp.url), "{kubeconfig}");
    std::fs::write(
        &via,
        kubeconfig.replace(&cp.url, &format!("https://127.0.0.1:{}", proxy.port)),
    )
    .unwrap();
    let d = Reconciler::start_via(work.path(), &via, &policies, &prometheus.url, "rec-d");
    wait_for("rec-d reports its state", 30, &[&d], || d.leader());
    let mut c = c;
    c.terminate();
    wait_for("rec-d leads", LEASE_SECS + 5, &[&d], || {
        d.leader().filter(|l| *l)
    });
    let e = Reconciler::start(work.path(), &cp, &policies, &prometheus.url, "rec-e");
    wait_for("rec-e reports its state", 30, &[&e], || e.leader());
    assert_eq!(e.leader(), Some(false));
    proxy.cut();
    let cut_at = Instant::now();
    let mut d_stepped_down = None;
    loop {
        let (dl, el) = (d.leader(), e.leader());
        assert!(
            !(dl == Some(true) && el == Some(true)),
            "two leaders {:?} after the partition:\n--- rec-d ---\n{}\n--- rec-e ---\n{}",
            cut_at.elapsed(),
            d.log(),
            e.log()
        );
        if dl == Some(false) && d_stepped_down.is_none() {
            d_stepped_down = Some(cut_at.elapsed());
        }
        if el == Some(true) {
            break;
        }
        assert!(
            cut_at.elapsed() < Duration::from_secs(3 * LEASE_SECS + 10),
            "rec-e never took the Lease (rec-d leader: {dl:?}):\n{}",
            e.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = cut_at.elapsed();
    let stepped = d_stepped_down.expect("rec-d stepped down before rec-e led");
    eprintln!(
        "partition: rec-d stopped acting {stepped:?} after the cut; rec-e leads {took:?} after"
    );
    assert!(
        stepped <= Duration::from_secs(LEASE_SECS),
        "rec-d acted {stepped:?} after the cut, lease duration {LEASE_SECS}s"
    );
    assert!(d.log().contains("not acting"), "{}", d.log());
    drop(prometheus);
}
