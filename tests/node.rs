//! oomguard on a real node (tests/cluster/cluster.sh): real containers, kernel OOM kills, the
//! kubelet's cAdvisor and kube-state-metrics scraped by Prometheus, oomguard installed from
//! deploy/ and called by the apiserver through its Service.
//!
//! 1. the tutorial's memory-leak-app is OOM-killed by the kernel; the next `kubectl apply` is
//!    warned with the kill count, refused in enforce mode when it lowers the limit (let through
//!    with its warning when it raises it, not enough), and its limit raised in mutate mode;
//! 2. the reconciler raises a slow leak's limit in place (the kubelet's resize, no restart, the
//!    cgroup's limit changed) before its first OOM, and verifies it; the lead time is printed;
//! 3. a container above the policy's targetUtilization whose memory is steady is not scaled
//!    out (more replicas would each hold as much);
//! 4. kube-state-metrics is down for 10 minutes of scrapes and comes back as a new "pod": no
//!    phantom OOM kills in oomguard's view;
//! 5. `oomguard recommend --prometheus`: the peaks are the working-set maxima cAdvisor reported;
//! 6. an OOM loop from boot (80 MiB at start under 64Mi) is raised on its first kill, from the
//!    pod watch: seconds from the kill's `finishedAt` to the raised limit on a pod, kills before
//!    it, time to 60 s clean; oomguard's count of kills is the kubelet's, exactly;
//! 7. a soak: an OOM loop goes on through two leader changes (one to a replica that watched all
//!    along, one to a new replica that starts from a relist) and the pod watch's restarts; every
//!    kill the kubelet reported is kept on the workload once, none twice, none missed.
//!
//! They are `#[ignore]`d because they need the node: `bash tests/run.sh` starts it, installs
//! oomguard and runs them with `--ignored`, all at once. oomguard runs there with 1-minute peaks
//! (`--history-step=1m`, tests/cluster/overlay), as `recommend` does here: the forecast needs six
//! intervals of a lifetime, 6 minutes instead of 30. Test 4 waits for 1 to be over before it stops
//! kube-state-metrics.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::node::{
    kept_kills, poll, read_u64, rfc3339, sample_value, text, unix_now, Kill, Node, PodWatch, MI,
};
use serde_json::Value;

const MIN: Duration = Duration::from_secs(60);
const EVERY: Duration = Duration::from_secs(5);

/// A Deployment of one container running `script` in TEST_IMAGE.
fn deployment(
    node: &Node,
    ns: &str,
    name: &str,
    replicas: u32,
    limit: &str,
    request: &str,
    script: &str,
) -> String {
    let script: String = script.lines().map(|l| format!("          {l}\n")).collect();
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {ns}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: app
        image: {image}
        imagePullPolicy: Never
        command: ["/bin/sh", "-c"]
        args:
        - |
{script}        resources:
          limits: {{memory: {limit}}}
          requests: {{memory: {request}}}
        volumeMounts: [{{name: state, mountPath: /state}}]
      volumes: [{{name: state, emptyDir: {{}}}}]
"#,
        image = node.test_image
    )
}

/// Shell that keeps `chunk` bytes more every `every` seconds (each chunk its own variable, so
/// nothing is copied twice), up to `count` chunks (0: forever), then sleeps.
fn leak(chunk: u64, every: &str, count: u32) -> String {
    format!(
        "i=0\nwhile [ {count} -eq 0 ] || [ $i -lt {count} ]; do\n  i=$((i+1))\n  eval \"c$i=\\$(head -c {chunk} /dev/zero | tr '\\0' x)\"\n  sleep {every}\ndone\nwhile :; do sleep 3600; done\n"
    )
}

/// A namespace of this run (`base-XXXXX`, so that a rerun on the same node starts from no
/// history) with its policy added to oomguard's policies ConfigMap, as a user adds one, and
/// written to `policies/` for `oomguard recommend`.
fn namespace(node: &Node, base: &str, policy: &str) -> String {
    let ns = format!("{base}-{:05x}", unix_now() % 0xfffff);
    node.ok(&["create", "namespace", &ns]);
    let key = format!("{ns}.yaml");
    let patch = serde_json::json!({"data": {&key: policy}}).to_string();
    node.ok(&[
        "-n",
        "oomguard",
        "patch",
        "configmap",
        "oomguard-policies",
        "--type=merge",
        "-p",
        &patch,
    ]);
    std::fs::create_dir_all(policies_dir()).unwrap();
    std::fs::write(policies_dir().join(&key), policy).unwrap();
    // Pods are refused until the namespace's default ServiceAccount exists.
    poll(
        &format!("the default ServiceAccount of {ns}"),
        2 * MIN,
        EVERY,
        || {
            node.kubectl(&["-n", &ns, "get", "serviceaccount", "default"], None)
                .status
                .success()
                .then_some(())
        },
    );
    ns
}

fn policies_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("node-policies")
}

fn policy(spec: &str) -> String {
    format!("apiVersion: oomguard.io/v1\nkind: MemoryPolicy\nspec:\n{spec}")
}

fn set_policy_mode(node: &Node, ns: &str, mode: &str) {
    let cm = node.json("oomguard", "configmap/oomguard-policies");
    let key = format!("{ns}.yaml");
    let old = cm["data"][&key].as_str().unwrap();
    let new: String = old
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("mode:") {
                format!("  mode: {mode}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let patch = serde_json::json!({"data": {key: new}}).to_string();
    node.ok(&[
        "-n",
        "oomguard",
        "patch",
        "configmap",
        "oomguard-policies",
        "--type=merge",
        "-p",
        &patch,
    ]);
}

fn limit_of(node: &Node, ns: &str, deploy: &str) -> String {
    let d = node.json(ns, &format!("deployment/{deploy}"));
    d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The number in "OOM-killed Nx in ...", and the recommended limit of that line.
fn oom_warning(stderr: &str, container: &str) -> Option<(u64, String)> {
    let line = stderr
        .lines()
        .find(|l| l.contains(&format!("oomguard: container {container}: OOM-killed")))?;
    let n = line
        .split("OOM-killed ")
        .nth(1)?
        .split('x')
        .next()?
        .parse()
        .ok()?;
    let rec = line.rsplit("recommended ").next()?.trim().to_string();
    Some((n, rec))
}

fn bytes_of(q: &str) -> u64 {
    let (n, unit) = q.split_at(q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len()));
    let n: u64 = n.parse().unwrap();
    n * match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        u => panic!("unexpected unit {u} in {q}"),
    }
}

/// `oomguard recommend --prometheus -o json`; None while Prometheus has nothing of a namespace.
fn try_recommend(node: &Node, namespaces: &[&str]) -> Result<Value, String> {
    let mut cmd = std::process::Command::new(common::BIN);
    cmd.args([
        "recommend",
        "--prometheus",
        &node.prometheus,
        "--history-step",
        "1m",
        "-o",
        "json",
        "--policies",
    ])
    .arg(policies_dir());
    for ns in namespaces {
        cmd.args(["--namespace", ns]);
    }
    let out = cmd.output().unwrap();
    if !out.status.success() {
        return Err(text(&out.stderr));
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap())
}

fn recommend(node: &Node, namespaces: &[&str]) -> Value {
    try_recommend(node, namespaces).unwrap_or_else(|e| panic!("oomguard recommend failed: {e}"))
}

fn row<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no row for {name} in {report}"))
}

/// `yaml` with an annotation on the Deployment itself: `kubectl apply` sends nothing when nothing
/// changed, and a user's next apply changes something (an annotation here, so no rollout).
fn step(yaml: &str, n: u32) -> String {
    yaml.replacen(
        "kind: Deployment\nmetadata:\n",
        &format!("kind: Deployment\nmetadata:\n  annotations: {{example.com/step: \"{n}\"}}\n"),
        1,
    )
}

/// Scales a Deployment to 0 and returns the restarts of its pods as they ended.
fn stop(node: &Node, ns: &str, app: &str) -> u64 {
    let mut last = node.restarts(ns, app);
    node.ok(&[
        "-n",
        ns,
        "scale",
        &format!("deployment/{app}"),
        "--replicas=0",
    ]);
    poll(
        &format!("the pods of {app} to end"),
        2 * MIN,
        Duration::from_secs(1),
        || {
            let pods = node.pods(ns, app);
            if pods.is_empty() {
                return Some(());
            }
            last = last.max(node.restarts(ns, app));
            None
        },
    );
    last
}

/// Set when test 1 is over, however it ended: test 4 stops kube-state-metrics, which test 1 needs.
static TEST1_OVER: AtomicBool = AtomicBool::new(false);

struct Over;

impl Drop for Over {
    fn drop(&mut self) {
        TEST1_OVER.store(true, Ordering::SeqCst);
    }
}

#[test]
#[ignore = "needs the real node of tests/cluster (bash tests/run.sh)"]
fn tutorial_leak_is_oom_killed_then_warned_refused_and_raised() {
    let _over = Over;
    let node = Node::from_env();
    let t0 = Instant::now();
    // ---- 1. the tutorial's memory-leak-app (10 MiB every 2 s instead of 5 s), 256Mi, 2 replicas
    let leak_ns = namespace(
        &node,
        "node-leak",
        &policy("  mode: warn\n  history: {window: 1d, minHistory: 1m}\n  limits: {min: 16Mi, max: 8Gi}\n  oomBump: {ratio: 1.2, min: 100Mi, maxSteps: 3}\n"),
    );
    let ns = leak_ns.as_str();
    let app = |limit: &str| {
        deployment(
            &node,
            ns,
            "memory-leak-app",
            2,
            limit,
            "128Mi",
            &leak(10 << 20, "2", 0),
        )
    };
    node.apply_ok(&app("256Mi"));
    // The kubelet's count of kills over time: what oomguard reports must be one of them.
    let mut counts: Vec<(Instant, u64)> = Vec::new();
    let kubelet_count = |counts: &mut Vec<(Instant, u64)>| {
        let pods = node.pods(ns, "memory-leak-app");
        let mut n = 0;
        for c in pods.iter().flat_map(|p| {
            p["status"]["containerStatuses"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        }) {
            n += c["restartCount"].as_u64().unwrap_or(0);
            // The latest instance killed and not started again yet: a kill the restart count
            // does not have yet (the pod watch, and so oomguard, sees it at once). The kubelet
            // counts restarts, not deaths: the count comes with the next instance, so it lacks
            // the kill while the container is terminated and then while it waits in
            // CrashLoopBackOff with the kill as its last state (this test once read 4, then 3).
            let waiting_after_kill = !c["state"]["waiting"].is_null()
                && c["lastState"]["terminated"]["reason"] == "OOMKilled";
            if c["state"]["terminated"]["reason"] == "OOMKilled" || waiting_after_kill {
                n += 1;
            }
            let last = &c["lastState"]["terminated"];
            if !last.is_null() {
                // Every restart is the kernel's OOM kill, nothing else.
                assert_eq!(last["reason"], "OOMKilled", "{c}");
                assert_eq!(last["exitCode"], 137, "{c}");
            }
        }
        counts.push((Instant::now(), n));
        n
    };
    let kills = poll("4 OOM kills of memory-leak-app", 10 * MIN, EVERY, || {
        let n = kubelet_count(&mut counts);
        (n >= 4).then_some(n)
    });
    let killed = Instant::now();
    eprintln!("test 1: {kills} OOM kills after {:?}", t0.elapsed());
    // Server-side dry runs (no side effects) until oomguard's view has kills: Prometheus'
    // scrapes, oomguard's 1-minute steps and its cache are in between.
    // The count must reach the kubelet's at the 4th kill.
    let seen = poll(
        "oomguard to warn about the 4 kills",
        15 * MIN,
        Duration::from_secs(10),
        || {
            kubelet_count(&mut counts);
            let out = node.kubectl(
                &["apply", "--dry-run=server", "-f", "-"],
                Some(&step(&app("256Mi"), 1)),
            );
            let (n, _) = oom_warning(&text(&out.stderr), "app")?;
            (n >= kills).then_some(n)
        },
    );
    eprintln!(
        "test 1: oomguard warned about {seen} kills {:?} after the 4th",
        killed.elapsed()
    );
    let asked = Instant::now();
    let out = node.apply(&step(&app("256Mi"), 2));
    let now_count = kubelet_count(&mut counts);
    let stderr = text(&out.stderr);
    eprintln!("test 1, warn: {stderr}");
    assert!(out.status.success(), "{stderr}");
    let (n, rec) = oom_warning(&stderr, "app")
        .unwrap_or_else(|| panic!("no OOM warning from oomguard in: {stderr}"));
    // oomguard's history lags by a scrape, its 1-minute step and its cache (20 s): the count is
    // at least what the dry run saw (and the kubelet's count 7 minutes ago), never more than the
    // kubelet's now.
    let floor = counts
        .iter()
        .filter(|(t, _)| asked.duration_since(*t) >= 7 * MIN)
        .map(|(_, n)| *n)
        .max()
        .unwrap_or(0)
        .max(seen);
    assert!(
        (floor..=now_count).contains(&n),
        "oomguard counted {n} OOM kills; at least {floor} were known before, the kubelet counts {now_count} now"
    );
    assert!(
        stderr.contains(&format!("OOM-killed {n}x in 1d at limit 256Mi")),
        "{stderr}"
    );
    let rec_bytes = bytes_of(&rec);
    assert!(
        rec_bytes > 256 << 20,
        "recommended {rec} is not above 256Mi"
    );

    // enforce: a change that makes the container worse than the stored object (a lower limit)
    // is refused; one that raises it towards the recommendation, not all the way, is let
    // through with its warning (enforcement stops regressions, it does not hold a workload
    // hostage).
    set_policy_mode(&node, ns, "enforce");
    poll("the webhook to enforce", 3 * MIN, EVERY, || {
        let out = node.kubectl(
            &["apply", "--dry-run=server", "-f", "-"],
            Some(&app("200Mi")),
        );
        (!out.status.success()).then_some(())
    });
    let out = node.apply(&app("200Mi"));
    let stderr = text(&out.stderr);
    eprintln!("test 1, enforce, lower: {stderr}");
    assert!(
        !out.status.success(),
        "enforce mode let a lower limit through: {stderr}"
    );
    assert!(
        stderr.contains("denied the request") && stderr.contains("oomguard"),
        "{stderr}"
    );
    assert!(stderr.contains("OOM-killed"), "{stderr}");
    assert_eq!(limit_of(&node, ns, "memory-leak-app"), "256Mi");
    let out = node.kubectl(
        &["apply", "--dry-run=server", "-f", "-"],
        Some(&app("300Mi")),
    );
    let stderr = text(&out.stderr);
    eprintln!("test 1, enforce, higher: {stderr}");
    assert!(out.status.success(), "enforce refused a raise: {stderr}");
    assert!(
        stderr.contains("OOM-killed") && stderr.contains("no worse than it was"),
        "{stderr}"
    );
    assert_eq!(limit_of(&node, ns, "memory-leak-app"), "256Mi");

    // mutate: the same apply is admitted with the limit raised to the recommendation.
    set_policy_mode(&node, ns, "mutate");
    poll("the webhook to mutate", 3 * MIN, EVERY, || {
        let out = node.kubectl(
            &["apply", "--dry-run=server", "-o", "json", "-f", "-"],
            Some(&app("300Mi")),
        );
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        let l = v["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
            .as_str()?;
        (l != "300Mi").then_some(())
    });
    let stderr = node.apply_ok(&app("300Mi"));
    eprintln!("test 1, mutate: {stderr}");
    let stored = limit_of(&node, ns, "memory-leak-app");
    assert_eq!(
        bytes_of(&stored),
        rec_bytes,
        "stored limit {stored}, recommended {rec}"
    );
    let d = node.json(ns, "deployment/memory-leak-app");
    let changed = d["metadata"]["annotations"]["oomguard.io/limits-changed"]
        .as_str()
        .unwrap_or("");
    assert!(
        changed.contains(&format!("app: 300Mi -> {stored}")),
        "annotation: {changed:?}"
    );
    eprintln!(
        "test 1: {n} kills counted, recommended {rec}, stored after mutate {stored} ({:?})",
        t0.elapsed()
    );
    // Enough of it: the node has other tests to run.
    stop(&node, ns, "memory-leak-app");

    eprintln!("test 1 took {:?}", t0.elapsed());
}

/// Tests 4 and 5 on a namespace of their own. Its workloads start with test 1; kube-state-metrics
/// is stopped once test 1 is over (or 25 minutes on, when test 1 is not running) and crashy's
/// kills are in oomguard's view; test 5 reads the peaks after the gap.
#[test]
#[ignore = "needs the real node of tests/cluster (bash tests/run.sh)"]
fn recommend_peaks_are_cadvisors_and_a_ksm_gap_makes_no_phantom_kills() {
    let node = Node::from_env();
    let t0 = Instant::now();
    // Test 4's workloads start now, so that their kills are long over when the gap begins.
    let ksm_ns = namespace(
        &node,
        "node-ksm",
        &policy("  mode: warn\n  history: {window: 1d, minHistory: 1m}\n"),
    );
    let ksm = ksm_ns.as_str();
    // OOM-killed by the kernel at 64Mi twice (the count survives restarts in an emptyDir), then
    // quiet at ~20 MiB.
    let crashy = format!(
        "n=$(cat /state/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /state/n\nif [ $n -le 2 ]; then\n{}fi\n{}",
        leak(4 << 20, "0.2", 0),
        leak(4 << 20, "1", 5)
    );
    let crashy = deployment(&node, ksm, "crashy", 1, "64Mi", "32Mi", &crashy);
    node.apply_ok(&crashy);
    // Never restarts; its peak (48 MiB for two and a half minutes) is early, then it frees it.
    let quiet = "big=$(head -c 50331648 /dev/zero | tr '\\0' x)\nsleep 150\nunset big\nwhile :; do sleep 3600; done\n";
    node.apply_ok(&deployment(&node, ksm, "quiet", 1, "128Mi", "64Mi", quiet));

    // ---- 4, before the gap: crashy is OOM-killed twice, and the kills are in oomguard's view
    poll("crashy's two OOM kills", 5 * MIN, EVERY, || {
        (node.restarts(ksm, "crashy") >= 2).then_some(())
    });
    let pod = node.pods(ksm, "crashy").remove(0);
    let last = &pod["status"]["containerStatuses"][0]["lastState"]["terminated"];
    assert_eq!(last["reason"], "OOMKilled", "{pod}");
    let seen = poll(
        "oomguard to see crashy's 2 kills",
        10 * MIN,
        Duration::from_secs(10),
        || {
            let r = try_recommend(&node, &[ksm]).ok()?;
            let n = row(&r, "crashy")["oomKills"].as_u64()?;
            (n >= 2).then_some(r)
        },
    );
    assert_eq!(
        row(&seen, "crashy")["oomKills"],
        2,
        "before the gap: {seen}"
    );
    assert_eq!(row(&seen, "quiet")["oomKills"], 0, "before the gap: {seen}");
    // ---- 4. kube-state-metrics down for 10 minutes of scrapes, back as a new instance
    while !TEST1_OVER.load(Ordering::SeqCst) && t0.elapsed() < 25 * MIN {
        std::thread::sleep(EVERY);
    }
    node.cluster_sh("ksm-stop");
    let gap = Instant::now();
    while gap.elapsed() < 10 * MIN {
        std::thread::sleep(Duration::from_secs(30));
    }
    let up = node.scalar(r#"max_over_time(up{job="kube-state-metrics"}[9m])"#);
    assert_eq!(
        up,
        Some(0.0),
        "kube-state-metrics was scraped during the gap"
    );
    node.cluster_sh("ksm-start");
    // Back as a new "pod": a new address, so its series have a new `instance`.
    poll("the new kube-state-metrics' series", 3 * MIN, EVERY, || {
        let r = node.query(&format!(
            r#"count by (instance) (kube_pod_container_status_restarts_total{{namespace="{ksm}"}})"#
        ));
        r.iter()
            .any(|s| {
                s["metric"]["instance"]
                    .as_str()
                    .is_some_and(|i| i.ends_with(":8082"))
            })
            .then_some(())
    });
    // Past the next 1-minute step with the new series in it (and a scrape on each side of
    // it): oomguard's history then covers both sides of the gap.
    std::thread::sleep(Duration::from_secs(90));
    let after = recommend(&node, &[ksm]);
    assert_eq!(node.restarts(ksm, "crashy"), 2);
    assert_eq!(node.restarts(ksm, "quiet"), 0);
    assert_eq!(
        row(&after, "crashy")["oomKills"],
        2,
        "after the gap (phantom kills?): {after}"
    );
    assert_eq!(
        row(&after, "quiet")["oomKills"],
        0,
        "after the gap (phantom kills?): {after}"
    );
    // The webhook's view: the same count at apply time.
    let out = node.apply(&step(&crashy, 1));
    let stderr = text(&out.stderr);
    assert_eq!(
        oom_warning(&stderr, "app").map(|w| w.0),
        Some(2),
        "{stderr}"
    );
    eprintln!(
        "test 4: after the gap: crashy 2 kills, quiet 0 ({:?})",
        t0.elapsed()
    );
    // ---- 5. recommend's peaks are the maxima of what cAdvisor reported (after the gap: by
    // then quiet's peak, its first 150 s, is long behind a whole 1-minute step of oomguard's;
    // waiting for it before the gap held the gap back by two minutes)
    let report = poll(
        "peaks of crashy and quiet",
        5 * MIN,
        Duration::from_secs(10),
        || {
            let r = recommend(&node, &[ksm]);
            let both = ["crashy", "quiet"]
                .iter()
                .all(|n| row(&r, n)["peak"].is_number());
            both.then_some(r)
        },
    );
    for (ns, name) in [(ksm, "crashy"), (ksm, "quiet")] {
        let r = report["recommendations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["namespace"] == ns && r["name"] == name)
            .unwrap_or_else(|| panic!("no row for {ns}/{name}"));
        let peak = r["peak"]
            .as_f64()
            .unwrap_or_else(|| panic!("no peak for {name}: {r}"));
        let cadvisor = node
            .scalar(&format!(
                r#"max(max_over_time(container_memory_working_set_bytes{{namespace="{ns}",pod=~"{name}-.*",container="app"}}[1d]))"#
            ))
            .unwrap_or_else(|| panic!("Prometheus has no working set of {ns}/{name}"));
        eprintln!(
            "test 5: {ns}/{name}: oomguard peak {peak} B, cAdvisor max {cadvisor} B ({:.1} MiB)",
            cadvisor / MI
        );
        // A container OOM-killed at 64Mi reached 64Mi, whatever a scrape saw: its peak is the
        // kill's limit and the scraped maximum is beside it (issue 29); a quiet one's peak is
        // the scraped maximum.
        let scraped = r["scrapedPeak"].as_f64();
        if name == "crashy" {
            assert_eq!(peak, (64u64 << 20) as f64, "{ns}/{name}: {r}");
            assert_eq!(
                scraped,
                Some(cadvisor),
                "{ns}/{name}: recommend's scraped peak is not cAdvisor's maximum: {r}"
            );
        } else {
            assert_eq!(
                peak, cadvisor,
                "{ns}/{name}: recommend's peak is not cAdvisor's maximum"
            );
            assert_eq!(scraped, None, "{r}");
        }
    }

    eprintln!("tests 4 and 5 took {:?}", t0.elapsed());
}

/// The working set of a container's cgroup (usage less inactive file pages, as cAdvisor counts).
fn working_set(cg: &std::path::Path) -> u64 {
    let usage = read_u64(&cg.join("memory.usage_in_bytes"));
    let stat = std::fs::read_to_string(cg.join("memory.stat")).unwrap();
    let inactive = stat
        .lines()
        .find_map(|l| l.strip_prefix("total_inactive_file "))
        .map_or(0, |v| v.trim().parse().unwrap());
    usage.saturating_sub(inactive)
}

/// The reconciler's records on a workload (annotation `oomguard.io/remediations`).
fn records(node: &Node, ns: &str, deploy: &str) -> Vec<Value> {
    let d = node.json(ns, &format!("deployment/{deploy}"));
    d["metadata"]["annotations"]["oomguard.io/remediations"]
        .as_str()
        .map(|s| serde_json::from_str::<Vec<Value>>(s).unwrap())
        .unwrap_or_default()
}

#[test]
#[ignore = "needs the real node of tests/cluster (bash tests/run.sh)"]
fn reconciler_raises_a_slow_leak_in_place_before_its_first_oom() {
    let node = Node::from_env();
    let t0 = Instant::now();
    let ns = namespace(
        &node,
        "node-resize",
        &policy("  mode: warn\n  history: {window: 1d, minHistory: 1m}\n  forecast: {horizon: 2h}\n  limits: {min: 16Mi, max: 2Gi}\n  reconcile: {enabled: true, resizeMethod: inPlace, cooldown: 3m, verifyWindow: 2m}\n"),
    );
    let ns = ns.as_str();
    // 1 MiB every 15 s: 256Mi in about an hour; the forecast needs 6 minutes of it (six 1-minute
    // intervals) to call it a leak.
    node.apply_ok(&deployment(
        &node,
        ns,
        "slow-leak",
        1,
        "256Mi",
        "64Mi",
        &leak(1 << 20, "15", 0),
    ));
    let pod = poll("slow-leak to run", 3 * MIN, EVERY, || {
        let p = node.pods(ns, "slow-leak").into_iter().next()?;
        (p["status"]["containerStatuses"][0]["state"]["running"].is_object()).then_some(p)
    });
    let uid = pod["metadata"]["uid"].clone();
    let cid = pod["status"]["containerStatuses"][0]["containerID"].clone();
    let cg = node.container_cgroup(&pod, "app");
    assert_eq!(read_u64(&cg.join("memory.limit_in_bytes")), 256 << 20);

    // The working set over time, read from the cgroup itself, until the reconciler acts.
    let mut seen: Vec<(i64, u64)> = Vec::new();
    let record = poll(
        "the reconciler to raise slow-leak's limit",
        55 * MIN,
        Duration::from_secs(10),
        || {
            seen.push((unix_now(), working_set(&cg)));
            let p = node.pods(ns, "slow-leak").into_iter().next()?;
            assert_eq!(
                p["status"]["containerStatuses"][0]["restartCount"], 0,
                "OOM-killed before the raise: {p}"
            );
            records(&node, ns, "slow-leak")
                .into_iter()
                .find(|r| r["action"] == "raise-limit")
        },
    );
    eprintln!("test 2: record {record} after {:?}", t0.elapsed());
    let change = &record["change"];
    assert_eq!(change["type"], "limit", "{record}");
    assert_eq!(change["method"], "in-place-resize", "{record}");
    assert_eq!(change["from"].as_u64(), Some(256 << 20), "{record}");
    let to = change["to"].as_u64().unwrap();
    assert!(to > 256 << 20, "{record}");
    let at = record["at"].as_i64().unwrap();

    // The kubelet resized the running container: same pod, same container, no restart, and the
    // kernel's limit is the new one.
    let cgroup_limit = poll("the cgroup's limit to change", 3 * MIN, EVERY, || {
        let l = read_u64(&cg.join("memory.limit_in_bytes"));
        (l != 256 << 20).then_some(l)
    });
    assert_eq!(cgroup_limit, to, "the cgroup's memory.limit_in_bytes");
    let p = node.pods(ns, "slow-leak").into_iter().next().unwrap();
    assert_eq!(p["metadata"]["uid"], uid);
    assert_eq!(p["status"]["containerStatuses"][0]["containerID"], cid);
    assert_eq!(p["status"]["containerStatuses"][0]["restartCount"], 0);
    assert_eq!(
        p["spec"]["containers"][0]["resources"]["limits"]["memory"]
            .as_str()
            .map(bytes_of),
        Some(to)
    );

    // Lead time: from the action to when the leak would have reached the old limit, at the rate
    // measured over the last 10 minutes before it.
    let before: Vec<&(i64, u64)> = seen
        .iter()
        .filter(|(t, _)| *t <= at && *t >= at - 600)
        .collect();
    let (t1, w1) = **before.first().unwrap();
    let (t2, w2) = **before.last().unwrap();
    let rate = (w2 as f64 - w1 as f64) / (t2 - t1).max(1) as f64;
    assert!(rate > 0.0, "no growth measured: {before:?}");
    let lead = ((256 << 20) as f64 - w2 as f64) / rate;
    eprintln!(
        "test 2: raised 256Mi -> {:.0} MiB {} s after the start at {:.1} MiB working set, growing {:.2} MiB/min: \
         lead time {:.1} min before the old limit",
        to as f64 / MI,
        at - (unix_now() - t0.elapsed().as_secs() as i64),
        w2 as f64 / MI,
        rate * 60.0 / MI,
        lead / 60.0
    );
    assert!(lead > 0.0);

    // Verified after the policy's verifyWindow (2m): effective, no OOM kill followed.
    let verified = poll("the raise to be verified", 10 * MIN, EVERY, || {
        let r = records(&node, ns, "slow-leak")
            .into_iter()
            .find(|r| r["id"] == record["id"])?;
        (r["outcome"] != "pending").then_some(r)
    });
    assert_eq!(verified["outcome"], "effective", "{verified}");
    let events = node.events(ns);
    assert!(
        events
            .iter()
            .any(|(reason, name, _)| reason == "RemediationEffective" && name == "slow-leak"),
        "{events:?}"
    );
    assert_eq!(node.restarts(ns, "slow-leak"), 0);

    // No second raise once the cooldown (3m) is over: the template still says 256Mi (an in-place
    // resize leaves it until the next apply), but the reconciler plans with the limit the pod
    // runs with, which lasts the leak past the horizon. A minute of 15-s rounds past it.
    while unix_now() < at + 4 * 60 {
        std::thread::sleep(EVERY);
    }
    let raises: Vec<Value> = records(&node, ns, "slow-leak")
        .into_iter()
        .filter(|r| r["action"] == "raise-limit")
        .collect();
    assert_eq!(
        raises.len(),
        1,
        "raised again after the cooldown: {raises:?}"
    );
    let d = node.json(ns, "deployment/slow-leak");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"], "256Mi",
        "the template is left to the next apply"
    );
    eprintln!("test 2 took {:?}", t0.elapsed());
}

#[test]
#[ignore = "needs the real node of tests/cluster (bash tests/run.sh)"]
fn reconciler_does_not_scale_out_memory_that_does_not_follow_load() {
    // A pod holding a fixed 108 MiB under a 128Mi limit: 85% of it, above the policy's 70%
    // target, with room for 6 replicas and a 1-minute cooldown. Each new replica would hold as
    // much; scaling out went 1 -> 2 -> 3 -> 4 -> 5, one step per cooldown. Its memory is
    // steady, so no replica is added.
    let node = Node::from_env();
    let t0 = Instant::now();
    let ns = namespace(
        &node,
        "node-scale",
        &policy("  mode: warn\n  history: {window: 1d, minHistory: 1m}\n  headroom: 10%\n  forecast: {horizon: 2h}\n  limits: {min: 16Mi, max: 2Gi}\n  reconcile: {enabled: true, minReplicas: 1, maxReplicas: 6, targetUtilization: 70%, cooldown: 1m, verifyWindow: 2m}\n"),
    );
    let ns = ns.as_str();
    node.apply_ok(&deployment(
        &node,
        ns,
        "busy",
        1,
        "128Mi",
        "128Mi",
        &leak(4 << 20, "0", 27),
    ));
    // Until its history says steady (six 1-minute intervals of it), as oomguard's own
    // `recommend` reads the same Prometheus: the reconciler has had what it needed to act.
    let pattern = poll(
        "busy's memory to be seen as steady",
        20 * MIN,
        EVERY,
        || {
            let report = try_recommend(&node, &[ns]).ok()?;
            let r = row(&report, "busy");
            (r["pattern"] == "steady").then(|| r.clone())
        },
    );
    eprintln!("test 3: steady after {:?}: {pattern}", t0.elapsed());
    // Then five cooldowns of reconcile rounds: still one replica, no scale-out recorded.
    let until = Instant::now() + 5 * MIN;
    while Instant::now() < until {
        let d = node.json(ns, "deployment/busy");
        assert_eq!(d["spec"]["replicas"], 1, "scaled out: {d}");
        let scaled: Vec<Value> = records(&node, ns, "busy")
            .into_iter()
            .filter(|r| r["action"] == "scale-out")
            .collect();
        assert!(scaled.is_empty(), "{scaled:?}");
        std::thread::sleep(EVERY);
    }
    eprintln!("test 3: one replica after {:?}", t0.elapsed());
}

/// The cluster's own view of the node (a sanity check that runs in seconds).
#[test]
#[ignore = "needs the real node of tests/cluster (bash tests/run.sh)"]
fn node_is_ready_and_scraped_with_real_labels() {
    let node = Node::from_env();
    let n = node.json("default", &format!("node/{}", node.var("NODE_NAME")));
    let ready = n["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    assert!(ready, "{n}");
    // oomguard's own containers, as cAdvisor names them (once Prometheus has scraped both).
    let r = poll(
        "cAdvisor series of oomguard's containers",
        2 * MIN,
        EVERY,
        || {
            let r = node.query(
            r#"container_memory_working_set_bytes{namespace="oomguard",container=~"webhook|reconciler"}"#,
        );
            let containers: std::collections::BTreeSet<String> = r
                .iter()
                .filter_map(|s| s["metric"]["container"].as_str().map(String::from))
                .collect();
            (containers.len() == 2).then_some(r)
        },
    );
    for s in &r {
        assert!(
            s["metric"]["pod"]
                .as_str()
                .unwrap()
                .starts_with("oomguard-"),
            "{s}"
        );
        assert_eq!(s["metric"]["job"], "kubelet", "{s}");
        assert!(sample_value(&s["value"]) > 0.0);
    }
    // Both pods, owned by their ReplicaSet, in kube-state-metrics' series.
    poll("kube_pod_owner of oomguard's pods", 2 * MIN, EVERY, || {
        let owners = node.query(r#"kube_pod_owner{namespace="oomguard",owner_kind="ReplicaSet"}"#);
        (owners.len() == 2).then_some(())
    });
}

/// A container that needs `mib` MiB the moment it starts (8-MiB chunks), then sleeps.
fn boot_alloc(mib: u64) -> String {
    leak(8 << 20, "0", (mib / 8) as u32)
}

/// Wall-clock seconds of pod `p`'s container `app` running since, when it runs.
fn running_since(p: &Value) -> Option<i64> {
    p["status"]["containerStatuses"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == "app")?["state"]["running"]["startedAt"]
        .as_str()
        .map(rfc3339)
}

fn pod_limit(p: &Value) -> Option<u64> {
    p["spec"]["containers"][0]["resources"]["limits"]["memory"]
        .as_str()
        .map(bytes_of)
}

fn p50(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[(v.len() - 1) / 2]
}

#[test]
#[ignore = "needs the real node of tests/cluster (bash tests/run.sh)"]
fn an_oom_loop_from_boot_is_raised_on_its_first_kill() {
    let node = Node::from_env();
    let t0 = Instant::now();
    let ns = namespace(
        &node,
        "node-boot",
        &policy("  mode: warn\n  history: {window: 1d, minHistory: 1h}\n  limits: {min: 16Mi, max: 1Gi}\n  oomBump: {ratio: 1.5, min: 48Mi, maxSteps: 3}\n  reconcile: {enabled: true, resizeMethod: inPlace, cooldown: 2m, verifyWindow: 2m}\n"),
    );
    let ns = ns.as_str();
    let watch = PodWatch::start(&node, ns);
    let apps = ["boot-a", "boot-b", "boot-c"];
    let manifest = |app: &str| deployment(&node, ns, app, 1, "64Mi", "32Mi", &boot_alloc(80));
    let mut created = Vec::new();
    for app in apps {
        node.apply_ok(&manifest(app));
        created.push(unix_now());
    }
    // Until each has a container that ran 60 s with no kill after it started.
    let clean: Vec<(String, i64)> = apps
        .iter()
        .map(|app| {
            poll(&format!("{app} to run 60 s clean"), 8 * MIN, EVERY, || {
                let pods = node.pods(ns, app);
                let kills = watch.kills(app);
                pods.iter().find_map(|p| {
                    let name = p["metadata"]["name"].as_str()?;
                    let since = running_since(p)?;
                    let killed_after = kills.iter().any(|(pod, _, at)| pod == name && *at >= since);
                    (!killed_after && unix_now() - since >= 60).then(|| (name.to_string(), since))
                })
            })
        })
        .collect();
    let (mut to_raise, mut to_clean, mut before) = (Vec::new(), Vec::new(), Vec::new());
    for (i, app) in apps.iter().enumerate() {
        let kills = watch.kills(app);
        let first = kills
            .iter()
            .map(|k| k.2)
            .min()
            .unwrap_or_else(|| panic!("{app} was never OOM-killed"));
        // The first moment a pod of the workload carried a limit above 64Mi (a resize in
        // place, or a pod of the raised template).
        let raised = watch
            .states(app)
            .iter()
            .find(|(_, p)| pod_limit(p).is_some_and(|l| l > 64 << 20))
            .map(|(t, _)| *t)
            .unwrap_or_else(|| panic!("no pod of {app} ran above 64Mi"));
        let n_before = kills.iter().filter(|k| (k.2 as f64) <= raised).count();
        let (pod, since) = &clean[i];
        eprintln!(
            "test 6: {app}: first kill {first}, raised on a pod {:.1} s after it, {n_before} kills before; \
             {pod} ran 60 s clean {} s after the Deployment was created; {} kills in all",
            raised - first as f64,
            since + 60 - created[i],
            kills.len()
        );
        to_raise.push(raised - first as f64);
        to_clean.push((since + 60 - created[i]) as f64);
        before.push(n_before as f64);
    }
    let max = |v: &[f64]| v.iter().copied().fold(f64::MIN, f64::max);
    eprintln!(
        "test 6: first kill -> raised limit on a pod: p50 {:.1} s, max {:.1} s; kills before the raise: p50 {}, max {}; \
         created -> 60 s clean: p50 {} s, max {} s",
        p50(&mut to_raise.clone()),
        max(&to_raise),
        p50(&mut before.clone()),
        max(&before),
        p50(&mut to_clean.clone()),
        max(&to_clean)
    );
    // The kill is the trigger, not a scrape: Prometheus' 15-s scrapes, oomguard's 1-minute steps
    // and its cache would take longer than this on their own.
    // The issue's targets: a raise within 30 s of the kill, 60 s clean within 3 minutes.
    assert!(
        max(&to_raise) <= 30.0,
        "a raise came {:.1} s after its kill",
        max(&to_raise)
    );
    assert!(max(&to_clean) <= 180.0, "{to_clean:?}");
    // Each raise was one step from the limit of the kill (64Mi -> 112Mi or 144Mi), not a
    // ratchet to the policy's max, and in the template: the container was not running steadily.
    for app in apps {
        let raises: Vec<Value> = records(&node, ns, app)
            .into_iter()
            .filter(|r| r["action"] == "raise-limit")
            .collect();
        assert!(!raises.is_empty(), "{app}: no raise recorded");
        for r in &raises {
            assert_eq!(r["change"]["method"], "template-patch", "{r}");
            let to = r["change"]["to"].as_u64().unwrap();
            assert!(to <= 256 << 20, "{app} raised to {to}: {r}");
        }
        // oomguard's count is the kubelet's: every kill once, none it did not see.
        let truth = watch.kills(app);
        let kept = poll(&format!("{app}'s kills to be kept"), MIN, EVERY, || {
            let kept = kept_kills(&node.json(ns, &format!("deployment/{app}")));
            let extra: Vec<&Kill> = kept.difference(&truth).collect();
            assert!(
                extra.is_empty(),
                "{app}: kept kills the kubelet never reported: {extra:?}"
            );
            (kept == truth).then_some(kept)
        });
        assert_eq!(kept, truth, "{app}");
        // The webhook answers an apply of the original manifest (64Mi) with those kills.
        let out = node.kubectl(
            &["apply", "--dry-run=server", "-f", "-"],
            Some(&step(&manifest(app), 1)),
        );
        let stderr = text(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let (n, rec) =
            oom_warning(&stderr, "app").unwrap_or_else(|| panic!("no OOM warning: {stderr}"));
        assert_eq!(
            n as usize,
            truth.len(),
            "{app}: the webhook counted {n}, the kubelet {}: {stderr}; kept: {}",
            truth.len(),
            node.json(ns, &format!("deployment/{app}"))["metadata"]["annotations"]
                ["oomguard.io/oom-kills"]
        );
        assert!(bytes_of(&rec) > 64 << 20, "{stderr}");
    }
    drop(watch);
    for app in apps {
        stop(&node, ns, app);
    }
    eprintln!("test 6 took {:?}", t0.elapsed());
}

/// The pod holding the reconciler's Lease.
fn leader(node: &Node) -> String {
    node.ok(&[
        "-n",
        "oomguard",
        "get",
        "lease",
        "oomguard-reconciler",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ])
    .trim()
    .to_string()
}

#[test]
#[ignore = "needs the real node of tests/cluster (bash tests/run.sh)"]
fn a_kill_counts_once_through_leader_changes_and_watch_restarts() {
    let node = Node::from_env();
    let t0 = Instant::now();
    // The reconciler does not act here (mode warn): it keeps the kills for the webhook.
    let ns = namespace(
        &node,
        "node-soak",
        &policy("  mode: warn\n  history: {window: 1d, minHistory: 1h}\n"),
    );
    let ns = ns.as_str();
    let watch = PodWatch::start(&node, ns);
    node.apply_ok(&deployment(
        &node,
        ns,
        "looper",
        2,
        "64Mi",
        "32Mi",
        &boot_alloc(80),
    ));
    let kills_now = || watch.kills("looper").len();
    poll("3 kills of looper", 5 * MIN, EVERY, || {
        (kills_now() >= 3).then_some(())
    });
    // Test 1 reads the webhook's warnings: the leader changes wait for it.
    while !TEST1_OVER.load(Ordering::SeqCst) && t0.elapsed() < 25 * MIN {
        std::thread::sleep(EVERY);
    }
    for round in 1..=2 {
        let old = leader(&node);
        assert!(!old.is_empty(), "no reconciler holds the Lease");
        let at = kills_now();
        eprintln!(
            "test 7: round {round}: deleting the leader {old} after {at} kills ({:?})",
            t0.elapsed()
        );
        node.ok(&["-n", "oomguard", "delete", "pod", &old, "--wait=false"]);
        let new = poll(
            "another reconciler to lead",
            3 * MIN,
            Duration::from_secs(2),
            || {
                let l = leader(&node);
                (!l.is_empty() && l != old).then_some(l)
            },
        );
        poll("2 more kills", 10 * MIN, EVERY, || {
            (kills_now() >= at + 2).then_some(())
        });
        eprintln!(
            "test 7: round {round}: {new} leads, {} kills ({:?})",
            kills_now(),
            t0.elapsed()
        );
    }
    // The pod watch's own restarts: the watch requests end every 290 s (kube-rs' default), so
    // each replica's watch restarted at least once by now (the soak lasts over 5 minutes).
    while t0.elapsed() < 6 * MIN {
        std::thread::sleep(EVERY);
    }
    node.ok(&["-n", ns, "scale", "deployment/looper", "--replicas=0"]);
    poll(
        "looper's pods to end",
        2 * MIN,
        Duration::from_secs(1),
        || node.pods(ns, "looper").is_empty().then_some(()),
    );
    let truth = watch.kills("looper");
    assert!(
        truth.len() < 30,
        "more kills than a workload keeps: {}",
        truth.len()
    );
    let kept = poll("every kill to be kept", 2 * MIN, EVERY, || {
        let kept = kept_kills(&node.json(ns, "deployment/looper"));
        let extra: Vec<&Kill> = kept.difference(&truth).collect();
        assert!(
            extra.is_empty(),
            "kept kills the kubelet never reported: {extra:?}"
        );
        if kept != truth {
            let missing: Vec<&Kill> = truth.difference(&kept).collect();
            eprintln!("test 7: not kept yet: {missing:?}");
        }
        (kept == truth).then_some(kept)
    });
    eprintln!(
        "test 7: {} kills reported by the kubelet, {} kept, none twice ({:?})",
        truth.len(),
        kept.len(),
        t0.elapsed()
    );
    assert_eq!(kept, truth);
}
