#!/usr/bin/env bash
# What oomguard's admission webhooks cost every apply, through a real kube-apiserver.
#
# Starts the test control plane (tests/controlplane: kube-apiserver and etcd, cached build) and a
# release `oomguard serve` (TLS, the bundled history, a mutate-mode default policy), then, side
# by side in one run and in turns, creates N Deployments at C concurrent through the apiserver
# (examples/apply_cost.rs: the kube client's pooled keep-alive connections, admin user) with:
#   none  no admission webhook: the floor;
#   two   `oomguard certs --webhooks two` (deploy/'s default): /mutate, then /validate;
#   one   `oomguard certs --webhooks one`: /admit, one mutating webhook that also warns and denies.
# Each run creates into a fresh namespace; every configuration is run ROUNDS times, in turns, and
# the median run is reported with the CPU seconds the apiserver and oomguard spent per create.
# Usage: bench/apply-cost.sh [ROUNDS=3] [N=600] [C=20]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3} n=${2:-600} c=${3:-20}
cargo build --release --quiet --example apply_cost
cargo build --release --quiet
target=${CARGO_TARGET_DIR:-target}
bin=$target/release/oomguard drv=$target/release/examples/apply_cost
command -v go >/dev/null || { echo "go is missing: the test control plane is built with Go" >&2; exit 2; }
cpbin=$(bash tests/controlplane/controlplane.sh build | tail -n 1)
export OOMGUARD_CONTROLPLANE_BIN=$cpbin
work=$(mktemp -d)
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  bash tests/controlplane/controlplane.sh stop "$work/cp" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/cp"
bash tests/controlplane/controlplane.sh start "$work/cp" >/dev/null
# shellcheck disable=SC1091
. "$work/cp/env"
k() { "$KUBECTL" "$@"; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
admin=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
for calls in two one; do
  "$bin" certs --out "$work/certs-$calls" --ip 127.0.0.1 --url "https://127.0.0.1:$port" \
    --webhooks "$calls" >/dev/null
done
# One serving certificate (certs-one's) for both renderings: its CA in both caBundles.
python3 - "$work" <<'PY'
import base64, re, sys
w = sys.argv[1]
ca = base64.b64encode(open(f"{w}/certs-one/ca.crt", "rb").read()).decode()
for calls in ("two", "one"):
    text = open(f"{w}/certs-{calls}/webhook.yaml").read()
    text = re.sub(r"caBundle: \S+", f"caBundle: {ca}", text)
    open(f"{w}/certs-{calls}/webhook.yaml", "w").write(text)
PY
mkdir -p "$work/policies"
cat > "$work/policies/default.yaml" <<'YAML'
apiVersion: oomguard.io/v1
kind: MemoryPolicy
spec: {mode: mutate}
YAML
RUST_LOG=warn "$bin" serve --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" \
  --tls-cert "$work/certs-one/tls.crt" --tls-key "$work/certs-one/tls.key" \
  --policies "$work/policies" --history examples/memory-leak-app/history.json \
  >"$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && break; sleep 0.1; done

# A Deployment with no memory limit: oomguard warns about it whenever it is called.
probe='{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"probe","namespace":"default"},
 "spec":{"selector":{"matchLabels":{"a":"p"}},"template":{"metadata":{"labels":{"a":"p"}},
 "spec":{"containers":[{"name":"c","image":"x"}]}}}}'
register() { # none|two|one: registers it and waits until the apiserver calls (or stops calling)
  k delete mutatingwebhookconfiguration,validatingwebhookconfiguration -l app.kubernetes.io/name=oomguard \
    --ignore-not-found >/dev/null
  [ "$1" = none ] || k apply -f "$work/certs-$1/webhook.yaml" >/dev/null
  local want=1; [ "$1" = none ] && want=0
  for _ in $(seq 100); do
    got=$(echo "$probe" | k apply --dry-run=server -f - 2>&1 | grep -c 'Warning: oomguard' || true)
    [ $(( got > 0 )) -eq $want ] && break
    sleep 0.2
  done
  [ $(( got > 0 )) -eq $want ] || { echo "the apiserver never saw configuration $1" >&2; exit 1; }
  # Both configurations of the switch may be live for a moment: let it settle.
  sleep 2
}
cpu() { # pid -> CPU seconds (user + system) so far
  awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"
}
results=$work/results.jsonl
run=0
for round in $(seq 0 "$rounds"); do
  for cfg in none two one; do
    register "$cfg"
    run=$((run + 1))
    ns="b$run-$cfg"
    k create namespace "$ns" >/dev/null
    # Round 0 warms every path up (connections, caches) and is not reported.
    count=$n; [ "$round" -eq 0 ] && count=100
    a0=$(cpu "$APISERVER_PID") o0=$(cpu "$pid")
    out=$("$drv" "$ns" "$count" "$c" d)
    a1=$(cpu "$APISERVER_PID") o1=$(cpu "$pid")
    [ "$round" -eq 0 ] && continue
    echo "$out" | python3 -c 'import json,sys; r=json.load(sys.stdin); r.update(cfg=sys.argv[1], round=int(sys.argv[2]), api_cpu=float(sys.argv[3]), og_cpu=float(sys.argv[4])); print(json.dumps(r))' \
      "$cfg" "$round" "$(awk -v a="$a1" -v b="$a0" 'BEGIN {print a - b}')" \
      "$(awk -v a="$o1" -v b="$o0" 'BEGIN {print a - b}')" >>"$results"
  done
done
calls=$(curl -fsS "http://127.0.0.1:$admin/metrics" | awk '/^oomguard_admission_requests_total/ {s += $NF} END {print s + 0}')
python3 - "$results" "$n" "$c" "$rounds" "$calls" <<'PY'
import json, statistics, sys
path, n, c, rounds, calls = sys.argv[1:]
rows = [json.loads(l) for l in open(path)]
fails = sum(r["failed"] for r in rows)
print(f"{n} Deployment creates at {c} concurrent through kube-apiserver, {rounds} rounds in turns "
      f"(median run; CPU per create from /proc); {fails} failed; oomguard answered {calls} reviews")
print("| webhooks | creates/s (min–max) | p50 ms | p90 ms | p99 ms | apiserver CPU ms/create | oomguard CPU ms/create | creates/s vs none | p50 vs none |")
print("|---|---|---|---|---|---|---|---|---|")
base = None
for cfg in ("none", "two", "one"):
    rs = sorted((r for r in rows if r["cfg"] == cfg), key=lambda r: r["per_second"])
    m = rs[len(rs) // 2]
    if base is None:
        base = m
    per = lambda k: 1000 * statistics.median(r[k] / r["creates"] for r in rs)
    print(f"| {cfg} | {m['per_second']:.0f} ({rs[0]['per_second']:.0f}–{rs[-1]['per_second']:.0f}) | {m['p50_ms']:.1f} | {m['p90_ms']:.1f} | {m['p99_ms']:.1f} | "
          f"{per('api_cpu'):.2f} | {per('og_cpu'):.2f} | {100 * m['per_second'] / base['per_second']:.0f}% | "
          f"{m['p50_ms'] - base['p50_ms']:+.1f} ms |")
if fails:
    sys.exit(f"{fails} creates failed: " + next(r["first_error"] for r in rows if r["failed"]))
PY
