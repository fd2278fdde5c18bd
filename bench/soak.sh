#!/usr/bin/env bash
# Soak test of `oomguard serve` (the shipped build, default features) over TLS:
#   - mixed load at a fixed rate: /mutate and /validate, half each (two oha processes, keep-alive,
#     verifying the server against the CA bundle), with the realistic Deployment review that
#     bench/load.sh posts;
#   - a policy reload every 10 s (the namespace policy rewritten, alternating warn and mutate, by
#     an atomic rename as a ConfigMap update does);
#   - a certificate rotation every 2 minutes: a new CA and serving certificate from
#     `oomguard certs`, swapped in by the `..data` symlink rename a Secret update does; after each
#     one a fresh connection that trusts only the new CA must get an answer;
#   - the server's RSS sampled every 2 s.
# Passes when: 0 failed requests (every answer a 200), the rate reached (at least 95% of it),
# every policy and certificate reload succeeded, every rotation was served, RSS growth from the
# warm-up mark (minute 5, or a quarter of a shorter run) to the end under 10%, and the server
# exits 0 on SIGTERM.
# Usage: bench/soak.sh [minutes, default 30] [req/s, default 1000]
set -euo pipefail
cd "$(dirname "$0")/.."
mins=${1:-30}
rate=${2:-1000}
secs=$((mins * 60))
command -v oha >/dev/null || { echo "oha is missing: cargo install oha --locked" >&2; exit 2; }
command -v curl >/dev/null || { echo "curl is missing: apt-get install curl" >&2; exit 2; }
cargo build --release --quiet
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
work=$(mktemp -d)
# A copy: the target dir may be shared, and another build may replace the binary meanwhile.
cp "$target/release/oomguard" "$work/oomguard"
bin="$work/oomguard"
pid=
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Every certificate set the run will rotate through, made up front: the clients trust the bundle
# of their CAs (as a caBundle listing the next CA before the switch does).
# Every 2 minutes (a shorter run rotates once, half way).
rotate_every=120
[ "$secs" -lt 240 ] && rotate_every=$((secs / 2))
rotations=$(((secs - 1) / rotate_every))
for k in $(seq 0 "$rotations"); do
  "$bin" certs --out "$work/certs/$k" --dns localhost --ip 127.0.0.1 >/dev/null
  cat "$work/certs/$k/ca.crt" >>"$work/ca-bundle.crt"
done
mkdir -p "$work/serving"
ln -s "../certs/0" "$work/serving/..data"
ln -s "..data/tls.crt" "$work/serving/tls.crt"
ln -s "..data/tls.key" "$work/serving/tls.key"

mkdir -p "$work/policies"
policy() { # mode
  printf 'apiVersion: oomguard.io/v1\nkind: MemoryPolicy\nspec:\n  mode: %s\n  headroom: 15%%\n  limits: {min: 64Mi, max: 8Gi}\n' "$1"
}
policy mutate >"$work/policies/self-healing-platform.yaml"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
admin=$(free_port)
RUST_LOG=warn,rustls=error "$bin" serve --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" \
  --tls-cert "$work/serving/tls.crt" --tls-key "$work/serving/tls.key" --policies "$work/policies" \
  --history examples/memory-leak-app/history.json --drain 5s 2>"$work/serve.log" &
pid=$!
for _ in $(seq 200); do curl -fs "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "http://127.0.0.1:$admin/readyz" >/dev/null || { cat "$work/serve.log" >&2; exit 1; }
body=tests/fixtures/reviews/deployment-create.json
curl -fs --cacert "$work/certs/0/ca.crt" -X POST -H 'Content-Type: application/json' --data-binary @"$body" \
  "https://localhost:$port/mutate" | grep -q '"patch"' || { echo "/mutate did not return a patch" >&2; exit 1; }

metric() { # name with labels -> value (0 when absent)
  curl -fs "http://127.0.0.1:$admin/metrics" | awk -v m="$1" '$1 == m {v = $2} END {print v + 0}'
}
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }

echo "soak: ${mins} min, ${rate} req/s over TLS (/mutate and /validate), policy reload every 10 s, certificate rotation every 2 min"
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
half=$((rate / 2))
for path in mutate validate; do
  # A count, not -z: oha waits for every answer instead of cutting the last ones at its deadline.
  oha --no-tui --output-format json -c 8 -q "$half" -n $((half * secs)) -m POST -T application/json -D "$body" \
    --cacert "$work/ca-bundle.crt" "https://localhost:$port/$path" >"$work/oha-$path.json" 2>"$work/oha-$path.err" &
  pids+=($!)
done

start=$(date +%s)
rotation_failures=0
policy_writes=0
next_policy=10
k=0
: >"$work/rss.tsv"
while :; do
  now=$(date +%s)
  t=$((now - start))
  [ "$t" -ge "$secs" ] && break
  # oha done early (it failed): stop here, the summary says why.
  alive=0
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
  [ "$alive" -eq 0 ] && break
  echo -e "$t\t$(rss_kb)" >>"$work/rss.tsv"
  if [ "$t" -ge "$next_policy" ]; then
    next_policy=$((next_policy + 10))
    policy_writes=$((policy_writes + 1))
    mode=warn; [ $((policy_writes % 2)) -eq 0 ] && mode=mutate
    policy "$mode" >"$work/policy.tmp"
    mv "$work/policy.tmp" "$work/policies/self-healing-platform.yaml"
  fi
  if [ "$t" -ge $(((k + 1) * rotate_every)) ] && [ "$k" -lt "$rotations" ]; then
    k=$((k + 1))
    ln -s "../certs/$k" "$work/serving/..data.tmp"
    mv -T "$work/serving/..data.tmp" "$work/serving/..data"
    served=
    for _ in $(seq 50); do
      sleep 0.2
      if curl -fs --cacert "$work/certs/$k/ca.crt" -X POST -H 'Content-Type: application/json' \
        --data-binary @"$body" "https://localhost:$port/validate" >/dev/null 2>&1; then served=1; break; fi
    done
    if [ -z "$served" ]; then
      rotation_failures=$((rotation_failures + 1))
      echo "rotation $k: the new certificate was not served within 10 s" >&2
    fi
  fi
  sleep 2
done
for p in "${pids[@]}"; do wait "$p" || true; done
pids=()
echo -e "$secs\t$(rss_kb)" >>"$work/rss.tsv"
policy_ok=$(metric 'oomguard_policy_reloads_total{result="ok"}')
policy_err=$(metric 'oomguard_policy_reloads_total{result="error"}')
tls_ok=$(metric 'oomguard_tls_reloads_total{result="ok"}')
tls_err=$(metric 'oomguard_tls_reloads_total{result="error"}')
peak=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
kill -TERM "$pid"
exit_code=0
wait "$pid" || exit_code=$?
pid=

python3 - "$work" "$secs" "$rate" "$rotations" "$rotation_failures" "$policy_writes" "$policy_ok" \
  "$policy_err" "$tls_ok" "$tls_err" "$peak" "$exit_code" <<'PY'
import json, sys
(work, secs, rate, rotations, rot_fail, policy_writes, policy_ok, policy_err, tls_ok, tls_err,
 peak, exit_code) = sys.argv[1:]
secs, rate, rotations, rot_fail, policy_writes = map(int, (secs, rate, rotations, rot_fail, policy_writes))
policy_ok, policy_err, tls_ok, tls_err = map(float, (policy_ok, policy_err, tls_ok, tls_err))
problems = []
total = ok = 0
achieved = 0.0
for path in ("mutate", "validate"):
    try:
        r = json.load(open(f"{work}/oha-{path}.json"))
    except Exception as e:
        err = open(f"{work}/oha-{path}.err").read()
        sys.exit(f"oha /{path} gave no result ({e}): {err}")
    s, p = r["summary"], r["latencyPercentiles"]
    codes = {str(k): v for k, v in r.get("statusCodeDistribution", {}).items()}
    errors = r.get("errorDistribution", {})
    n = sum(codes.values()) + sum(errors.values())
    good = codes.get("200", 0)
    total += n
    ok += good
    achieved += s["requestsPerSec"]
    print(f"/{path:<9} {n:9d} requests  {s['requestsPerSec']:7.0f} req/s  p50 {p['p50']*1000:6.2f} ms  "
          f"p99 {p['p99']*1000:6.2f} ms  max {s['slowest']*1000:7.1f} ms  status {codes}  errors {errors}")
failed = total - ok
if total < (rate // 2) * 2 * secs:
    problems.append(f"{total} requests answered of {(rate // 2) * 2 * secs}")
print(f"total      {total:9d} requests  {achieved:7.0f} req/s  failed {failed}")
if failed:
    problems.append(f"{failed} failed requests")
if achieved < 0.95 * rate:
    problems.append(f"{achieved:.0f} req/s is below 95% of {rate}")
rss = [tuple(map(int, l.split())) for l in open(f"{work}/rss.tsv") if len(l.split()) == 2]
warm = min(300, secs // 4)
base = next(kb for t, kb in rss if t >= warm)
end = rss[-1][1]
growth = (end - base) / base * 100
print(f"RSS        {base/1024:.1f} MiB at {warm//60}m{warm%60:02d}s -> {end/1024:.1f} MiB at the end "
      f"({growth:+.1f}%), peak {int(peak)/1024:.1f} MiB, min {min(kb for _, kb in rss)/1024:.1f} MiB")
if growth >= 10:
    problems.append(f"RSS grew {growth:.1f}% after warm-up")
print(f"policy     {policy_writes} rewrites, reloads ok {policy_ok:.0f}, error {policy_err:.0f}")
# Each rewrite is one reload (the first load at start counts one more).
if policy_err or policy_ok < policy_writes:
    problems.append("policy reloads failed or were missed")
print(f"certs      {rotations} rotations, reloads ok {tls_ok:.0f}, error {tls_err:.0f}, "
      f"not served {rot_fail}")
if tls_err or rot_fail or tls_ok < rotations:
    problems.append("certificate rotation failed")
print(f"exit       SIGTERM -> {exit_code}")
if exit_code != "0":
    problems.append(f"exit code {exit_code} after SIGTERM")
if problems:
    sys.exit("soak FAILED: " + "; ".join(problems))
print("soak passed")
PY
