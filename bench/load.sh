#!/usr/bin/env bash
# Load benchmark of the admission webhook over TLS keep-alive (issue: the core).
#
# Starts a release build of `oomguard serve` with the bundled demo history and a mutate-mode
# policy, then, in one run and on the same TLS stack, drives with `hey`:
#   1. /mutate with a realistic Deployment AdmissionReview (tests/fixtures/reviews/deployment-create.json),
#   2. /trivial, a handler that answers a fixed review without parsing anything;
# first flat out (-c 32 for 10 s: throughput), then at a fixed 1,000 req/s (10 workers × 100 q/s:
# latency). Prints req/s, p50 and p99 of each. Needs `hey` (Debian package) and cargo.
# Usage: bench/load.sh [seconds per run, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
command -v hey >/dev/null || { echo "hey is missing: apt-get install -y hey" >&2; exit 2; }
cargo build --release --quiet
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$work"' EXIT
./target/release/oomguard certs --out "$work/certs" --dns localhost --ip 127.0.0.1 >/dev/null
mkdir -p "$work/policies"
cat > "$work/policies/self-healing-platform.yaml" <<'YAML'
apiVersion: oomguard.io/v1
kind: MemoryPolicy
spec: {mode: mutate}
YAML
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
admin=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# (hey sends "host:port" as TLS SNI, which rustls warns about once per connection.)
RUST_LOG=warn,rustls=error ./target/release/oomguard serve --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" \
  --tls-cert "$work/certs/tls.crt" --tls-key "$work/certs/tls.key" --policies "$work/policies" \
  --history examples/memory-leak-app/history.json &
pid=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
body=tests/fixtures/reviews/deployment-create.json
# The answer must be a real mutation, or the benchmark measures the wrong thing.
curl -fsk -X POST -H 'Content-Type: application/json' --data-binary @"$body" "https://127.0.0.1:$port/mutate" | grep -q '"patch"' \
  || { echo "/mutate did not return a patch" >&2; exit 1; }

run() { # path, hey args...
  local path=$1; shift
  local out; out=$(hey "$@" -m POST -T application/json -D "$body" "https://127.0.0.1:$port$path")
  local rps p50 p99 errs
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  # (hey 0.1.4 prints "50%% in 0.0012 secs".)
  p50=$(awk '/ 50%+ in / {print $3*1000}' <<<"$out")
  p99=$(awk '/ 99%+ in / {print $3*1000}' <<<"$out")
  local codes errors
  codes=$(sed -n '/Status code distribution/,/^$/p' <<<"$out" | awk '/\[[0-9]+\]/ {printf "%s %s ", $1, $2}')
  errors=$(sed -n '/Error distribution/,$p' <<<"$out" | awk '/\[[0-9]+\]/ {n += substr($1, 2)} END {print n + 0}')
  printf '%-9s %-20s %8.0f req/s   p50 %6.2f ms   p99 %6.2f ms   status %s  errors %s\n' "$path" "$*" "$rps" "$p50" "$p99" "$codes" "$errors"
}
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "throughput (hey -c 32 -z ${secs}s, keep-alive, TLS):"
run /trivial -c 32 -z "${secs}s"
run /mutate  -c 32 -z "${secs}s"
echo "latency at 1000 req/s (hey -c 10 -q 100 -z ${secs}s):"
run /trivial -c 10 -q 100 -z "${secs}s"
run /mutate  -c 10 -q 100 -z "${secs}s"
echo "server peak RSS: $(awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' /proc/$pid/status)"
