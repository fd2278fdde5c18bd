#!/bin/sh
# Benchmark of the Prometheus history source against a real Prometheus (see bench/PROMETHEUS.md).
# Usage: bench/prometheus.sh [namespaces] [workloads] [containers] [days]   (default 10 1000 3 14)
set -eu
command -v prometheus >/dev/null && command -v promtool >/dev/null || {
  echo "prometheus/promtool missing: run apt-get install -y prometheus" >&2; exit 1; }
cd "$(dirname "$0")/.."
dir=${BENCH_DIR:-$(mktemp -d /tmp/oomguard-prom-bench.XXXXXX)}
cargo build --release -j1 --example prom_bench
echo "== machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(prometheus --version 2>&1 | head -1)"
/usr/bin/time -f "prepare: %e s wall, max RSS %M KiB" target/release/examples/prom_bench prepare "$dir" "$@"
/usr/bin/time -f "query: %e s wall, max RSS %M KiB (the source's process)" target/release/examples/prom_bench query "$dir"
du -sh "$dir/tsdb"
[ -n "${BENCH_KEEP:-}" ] || rm -rf "$dir"
