#!/usr/bin/env bash
# How `oomguard check` scales with the stream (issue 27, point 10): time and peak RSS for a
# large file of Deployments, with each output, against one document alone; and how long hostile
# nesting takes to refuse (point 9).
#
#   bash bench/manifests.sh [MB]        # default 54 MB, as the issue measured
#
# Needs a release build (cargo build --release). Writes its files under a temporary folder and
# prints a Markdown table (docs/manifests.md keeps the last one).
set -euo pipefail
cd "$(dirname "$0")/.."
mb=${1:-54}
bin=${OOMGUARD_BIN:-target/release/oomguard}
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# One Deployment of ~1.4 KB (a JVM with JAVA_OPTS, a sidecar, comments, quoted YAML 1.1 words).
doc() {
  cat <<EOF
---
# service $1
apiVersion: apps/v1
kind: Deployment
metadata:
  name: svc-$1
  namespace: team-$(( $1 % 50 ))
  labels: {app: svc-$1, tier: "backend", managed: "yes"}
spec:
  replicas: 2
  selector:
    matchLabels: {app: svc-$1}
  template:
    metadata:
      labels: {app: svc-$1}
    spec:
      containers:
      - name: app
        image: registry.example/svc:1.$(( $1 % 9 ))
        env:
        - {name: JAVA_OPTS, value: "-Xms256m -Xmx512m -XX:+UseG1GC"}
        - {name: FEATURE_FLAG, value: "off"}
        args: [--port, "8080", --verbose, "no"]
        resources:
          requests: {cpu: 100m, memory: 512Mi}
          limits: {memory: $(( 512 + $1 % 1024 ))Mi}
      - name: proxy
        image: registry.example/proxy:2
        resources:
          limits: {memory: 64Mi}
      initContainers:
      - name: wait
        image: busybox
        command: [sh, -c, "until nslookup db; do sleep 1; done"]
EOF
}
# A block of 1000, repeated (names repeat across blocks; check does not care).
for i in $(seq 0 999); do doc "$i"; done > "$tmp/block.yaml"
n=0
target=$(( mb * 1024 * 1024 ))
: > "$tmp/big.yaml"
while [ "$(stat -c %s "$tmp/big.yaml")" -lt "$target" ]; do
  cat "$tmp/block.yaml" >> "$tmp/big.yaml"
  n=$(( n + 1000 ))
done
doc 1 > "$tmp/one.yaml"
size=$(stat -c %s "$tmp/big.yaml")

run() { # label, file, args...
  local label=$1 file=$2; shift 2
  /usr/bin/time -f '%e %M' -o "$tmp/t" "$bin" check -f "$file" "$@" > /dev/null 2>&1 || true
  read -r secs kb < <(tail -n 1 "$tmp/t")
  printf '| %s | %s | %s s | %s MiB |\n' "$label" "$(basename "$file")" "$secs" "$(( kb / 1024 ))"
}

echo "stream: $n Deployments, $(( size / 1024 / 1024 )) MiB ($(nproc) cores)"
echo
echo '| run | input | wall | peak RSS |'
echo '|---|---|---|---|'
run "text" "$tmp/one.yaml"
run "text" "$tmp/big.yaml"
run "-o json" "$tmp/big.yaml" -o json
run "--mode mutate -o yaml" "$tmp/big.yaml" --mode mutate -o yaml

# Hostile nesting: 200 KB of `[` and of `{a: ` between two sound documents.
{ doc 1; echo '---'; head -c 200000 /dev/zero | tr '\0' '['; echo; doc 2; } > "$tmp/nested.yaml"
{ doc 1; echo '---'; for _ in $(seq 50000); do printf '{a: '; done; echo; doc 2; } > "$tmp/nested-map.yaml"
run "200 KB of [" "$tmp/nested.yaml"
run "200 KB of {a:" "$tmp/nested-map.yaml"
