#!/usr/bin/env bash
# Load benchmark of the admission webhook over TLS keep-alive (issue: the core).
#
# Starts a release build of `oomguard serve` with the bundled demo history and a mutate-mode
# policy, then, in one run and on the same TLS stack, drives with oha:
#   1. /mutate with a realistic Deployment AdmissionReview (tests/fixtures/reviews/deployment-create.json),
#   2. /trivial, a handler that answers a fixed review without parsing anything;
# first flat out (32 connections for N s: throughput), then at a fixed 1,000 req/s (latency).
# The load generator is oha (`cargo install oha`), verifying the server with the CA.
# (Debian's hey 0.1.4 sends "host:port" as the TLS server name, which rustls rightly refuses.)
# Usage: [REVIEW=review.json] [OOMGUARD_BIN=binary] bench/load.sh [seconds per run, default 10]
# (REVIEW=tests/fixtures/reviews/deployment-create-runtime.json: a 15 KB review of a real JVM
# Deployment as the apiserver sent it, whose configuration makes /mutate raise its limit.)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
command -v oha >/dev/null || { echo "oha is missing: cargo install oha --locked" >&2; exit 2; }
# OOMGUARD_BIN=path measures another build (an older commit's, side by side); else this tree's,
# from the shared target folder when one is set (CARGO_TARGET_DIR), else ./target.
if [ -n "${OOMGUARD_BIN:-}" ]; then
  bin=$OOMGUARD_BIN
else
  cargo build --release --quiet --features bench
  bin=${CARGO_TARGET_DIR:-target}/release/oomguard
fi
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$work"' EXIT
"$bin" certs --out "$work/certs" --dns localhost --ip 127.0.0.1 >/dev/null
mkdir -p "$work/policies"
cat > "$work/policies/self-healing-platform.yaml" <<'YAML'
apiVersion: oomguard.io/v1
kind: MemoryPolicy
spec: {mode: mutate}
YAML
# The recorded review of a JVM Deployment is in namespace shop: the same mutate policy.
cp "$work/policies/self-healing-platform.yaml" "$work/policies/shop.yaml"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
admin=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
RUST_LOG=warn,rustls=error "$bin" serve --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" \
  --tls-cert "$work/certs/tls.crt" --tls-key "$work/certs/tls.key" --policies "$work/policies" \
  --history examples/memory-leak-app/history.json &
pid=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
body=tests/fixtures/reviews/deployment-create.json
if [ -n "${REVIEW:-}" ]; then
  # A recorded review is stored indented for reading; the apiserver sends it compact.
  python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1])), separators=(",", ":"), ensure_ascii=False), end="")' \
    "$REVIEW" >"$work/review.json"
  body=$work/review.json
fi
# The answer must be a real mutation, or the benchmark measures the wrong thing.
curl -fsk -X POST -H 'Content-Type: application/json' --data-binary @"$body" "https://127.0.0.1:$port/mutate" | grep -q '"patch"' \
  || { echo "/mutate did not return a patch" >&2; exit 1; }

run() { # label, path, oha args...
  local label=$1 path=$2; shift 2
  oha --no-tui --output-format json "$@" -m POST -T application/json -D "$body" \
    --cacert "$work/certs/ca.crt" "https://localhost:$port$path" >"$work/out.json"
  python3 - "$label" "$path" "$work/out.json" <<'PY'
import json, sys
label, path, f = sys.argv[1:]
r = json.load(open(f))
s, p = r["summary"], r["latencyPercentiles"]
codes = r.get("statusCodeDistribution", {})
errors = r.get("errorDistribution", {})
print(f"{path:<9} {label:<26} {s['requestsPerSec']:8.0f} req/s   p50 {p['p50']*1000:6.2f} ms   "
      f"p99 {p['p99']*1000:6.2f} ms   status {codes}  errors {sum(errors.values())} {sorted(errors)}")
PY
}
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "throughput: oha -c 32 -z ${secs}s (HTTP/1.1 keep-alive over TLS)"
run "flat out, 32 connections" /trivial -c 32 -z "${secs}s"
run "flat out, 32 connections" /mutate -c 32 -z "${secs}s"
echo "latency at a fixed rate: oha -c 10 -q 1000 -z ${secs}s"
run "1000 req/s, 10 connections" /trivial -c 10 -q 1000 -z "${secs}s"
run "1000 req/s, 10 connections" /mutate -c 10 -q 1000 -z "${secs}s"
echo "server peak RSS: $(awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' /proc/$pid/status)"
