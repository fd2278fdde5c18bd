#!/usr/bin/env bash
# Memory of the reconciler's pod watch (the OOM-kill trigger) at many pods, against the test
# control plane (etcd + kube-apiserver, tests/controlplane; no kubelet: the pods' statuses are
# written as a kubelet would).
#
#   1. `oomguard reconcile` (the shipped build, no Prometheus: kills only) starts on the empty
#      cluster: its RSS after 20 s is the floor, measured in the same run;
#   2. N pods (default 10,000) are created in 500-pod batches, each owned by a ReplicaSet
#      (`web-<i>-<hash>`, 20 pods each), one container with resources, probes, env and a volume;
#      their status is then written (running, the applied resources) and one pod in ten has an OOM
#      kill as its last state;
#   3. the reconciler sees them through its watch (the relist of a running watch, then the
#      updates): its RSS is sampled every second until `oomguard_oom_kills_seen_total` counts every
#      kill, then for 30 s more.
# Reports the floor, the peak and the steady RSS with the pods, per pod, and the size of the pod
# objects as the apiserver serves them (what a cache of whole pods would hold).
# Usage: bench/pod-watch.sh [pods, default 10000]
set -euo pipefail
cd "$(dirname "$0")/.."
pods=${1:-10000}
batch=500
cargo build --release --quiet
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
work=$(mktemp -d)
cp "$target/release/oomguard" "$work/oomguard"
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  wait 2>/dev/null || true
  bash tests/controlplane/controlplane.sh stop "$work/cp" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

env_file=$(bash tests/controlplane/controlplane.sh start "$work/cp" | tail -n 1)
# shellcheck disable=SC1090
. "$env_file"
k() { "$KUBECTL" --kubeconfig "$KUBECONFIG" "$@"; }
k create namespace bench >/dev/null
mkdir -p "$work/policies"
printf 'apiVersion: oomguard.io/v1\nkind: MemoryPolicy\nspec:\n  mode: warn\n' >"$work/policies/bench.yaml"

rss() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }
hwm() { awk '/^VmHWM/ {print $2}' "/proc/$pid/status"; }
kills_seen() {
  curl -s --noproxy '*' "http://127.0.0.1:$port/metrics" |
    awk '/^oomguard_oom_kills_seen_total/ {print $2; found=1} END {if (!found) print 0}'
}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
KUBECONFIG="$KUBECONFIG" RUST_LOG=warn "$work/oomguard" reconcile --policies "$work/policies" \
  --lease-namespace default --identity bench --admin-listen "127.0.0.1:$port" \
  >"$work/reconcile.log" 2>&1 &
pid=$!
sleep 20
kill -0 "$pid" || { cat "$work/reconcile.log"; exit 1; }
floor=$(rss)
echo "floor: oomguard reconcile on an empty cluster: RSS $((floor / 1024)) MiB"

python3 - "$pods" "$batch" "$work/batches" <<'EOF'
import json, os, sys
pods, batch, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
os.makedirs(out, exist_ok=True)
def pod(i):
    rs = f"web-{i // 20}"
    name = f"{rs}-7d9c5b8f4-{i:05d}"
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": "bench",
            "labels": {"app": f"web-{i // 20}", "pod-template-hash": "7d9c5b8f4",
                       "app.kubernetes.io/part-of": "shop", "tier": "frontend"},
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9090"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                 "name": f"{rs}-7d9c5b8f4", "uid": f"00000000-0000-0000-0000-{i // 20:012d}",
                                 "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": {
            "containers": [{
                "name": "app", "image": "registry.example.com/shop/web:1.42.0",
                "ports": [{"containerPort": 8080, "name": "http"}],
                "env": [{"name": f"SETTING_{j}", "value": f"value-{j}"} for j in range(8)],
                "resources": {"limits": {"memory": "256Mi", "cpu": "500m"},
                              "requests": {"memory": "128Mi", "cpu": "100m"}},
                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 10},
                "livenessProbe": {"httpGet": {"path": "/live", "port": 8080}, "periodSeconds": 10},
                "volumeMounts": [{"name": "cache", "mountPath": "/cache"}],
            }],
            "volumes": [{"name": "cache", "emptyDir": {"sizeLimit": "64Mi"}}],
            "nodeName": "node-1",
        },
    }
def status(p, i):
    cs = {"name": "app", "image": "registry.example.com/shop/web:1.42.0", "imageID": "",
          "containerID": f"containerd://{i:064x}", "ready": True, "started": True,
          "restartCount": 0, "state": {"running": {"startedAt": "2026-12-06T10:00:00Z"}},
          "resources": {"limits": {"memory": "256Mi", "cpu": "500m"},
                        "requests": {"memory": "128Mi", "cpu": "100m"}}}
    if i % 10 == 0:
        cs["restartCount"] = 1
        cs["lastState"] = {"terminated": {"reason": "OOMKilled", "exitCode": 137,
                                          "startedAt": "2026-12-06T09:00:00Z",
                                          "finishedAt": "2026-12-06T09:59:58Z"}}
    s = dict(p)
    s["status"] = {"phase": "Running", "qosClass": "Burstable", "podIP": f"10.1.{i // 250}.{i % 250}",
                   "conditions": [{"type": t, "status": "True"} for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
                   "containerStatuses": [cs]}
    return s
for b in range(0, pods, batch):
    items = [pod(i) for i in range(b, min(pods, b + batch))]
    with open(f"{out}/pods-{b:06d}.json", "w") as f:
        json.dump({"apiVersion": "v1", "kind": "List", "items": items}, f)
    with open(f"{out}/status-{b:06d}.json", "w") as f:
        json.dump({"apiVersion": "v1", "kind": "List",
                   "items": [status(p, b + n) for n, p in enumerate(items)]}, f)
EOF
start=$(date +%s)
for f in "$work"/batches/pods-*.json; do k create -f "$f" >/dev/null; done
for f in "$work"/batches/status-*.json; do k replace --subresource=status -f "$f" >/dev/null; done
expect=$(( (pods + 9) / 10 ))
echo "created $pods pods and wrote their statuses in $(( $(date +%s) - start )) s; $expect OOM kills among them"
size=$(k get pods -n bench -o json | wc -c)

peak=0
deadline=$(( $(date +%s) + 600 ))
until [ "$(kills_seen)" -ge "$expect" ]; do
  [ "$(date +%s)" -lt "$deadline" ] || { echo "the reconciler saw $(kills_seen) of $expect kills in 10 minutes" >&2; tail -20 "$work/reconcile.log" >&2; exit 1; }
  r=$(rss); [ "$r" -gt "$peak" ] && peak=$r
  sleep 1
done
echo "the reconciler counted all $expect kills $(( $(date +%s) - start )) s after the first create"
for _ in $(seq 30); do r=$(rss); [ "$r" -gt "$peak" ] && peak=$r; sleep 1; done
steady=$(rss)
peak=$(( peak > $(hwm) ? peak : $(hwm) ))
kill -0 "$pid" || { echo "the reconciler died" >&2; exit 1; }
python3 - "$pods" "$floor" "$peak" "$steady" "$size" "$(kills_seen)" <<'EOF'
import sys
pods, floor, peak, steady, size, seen = (int(float(x)) for x in sys.argv[1:])
mib = lambda kib: kib / 1024
print(f"pods {pods}: RSS floor (no pods) {mib(floor):.1f} MiB, peak {mib(peak):.1f} MiB, steady {mib(steady):.1f} MiB "
      f"(+{mib(steady - floor):.1f} MiB, {(steady - floor) * 1024 / pods:.0f} B per pod); kills counted {seen}")
print(f"the pod objects as served (kubectl get -o json): {size / 2**20:.1f} MiB, what a cache of whole pods would hold")
EOF
