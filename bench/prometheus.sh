#!/bin/sh
# Benchmark of the Prometheus history source against a real Prometheus (see bench/PROMETHEUS.md),
# side by side with curl's floor (the window's max per container and two days of 5-minute working
# set) in the same run.
# Usage: bench/prometheus.sh [namespaces] [workloads] [containers] [days]   (default 1 200 3 14)
# BENCH_DIR=DIR keeps (and reuses, when DIR/params exists) the backfilled data.
set -eu
command -v prometheus >/dev/null && command -v promtool >/dev/null || {
  echo "prometheus/promtool missing: run apt-get install -y prometheus" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl missing: apt-get install -y curl" >&2; exit 1; }
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
dir=${BENCH_DIR:-$(mktemp -d /tmp/oomguard-prom-bench.XXXXXX)}
cargo build --release -j1 --example prom_bench
bin=$target/release/examples/prom_bench
echo "== machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(prometheus --version 2>&1 | head -1); load $(cut -d' ' -f1-3 /proc/loadavg)"
if [ ! -f "$dir/params" ]; then
  /usr/bin/time -f "prepare: %e s wall, max RSS %M KiB" "$bin" prepare "$dir" "${1:-1}" "${2:-200}" "${3:-3}" "${4:-14}"
fi
/usr/bin/time -f "query: %e s wall, max RSS %M KiB (the source's process)" "$bin" query "$dir"
du -sh "$dir/tsdb"
[ -n "${BENCH_KEEP:-${BENCH_DIR:-}}" ] || rm -rf "$dir"
