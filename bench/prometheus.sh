#!/bin/sh
# Benchmark of the Prometheus history source against a real Prometheus (see bench/PROMETHEUS.md),
# side by side with curl's floor (the window's max per container and two days of 5-minute working
# set) in the same run.
# Usage: bench/prometheus.sh [namespaces] [workloads] [containers] [days] [scrape seconds]
#          (default 1 200 3 14 300): cold refreshes of every namespace by the source, 14-day window
#        bench/prometheus.sh warmup [namespaces] [workloads] [containers] [days] [scrape seconds]
#          (default 100 10000 1 7 60): `oomguard serve`'s warm-up (a policy per namespace, the
#          default 7-day window) timed to /readyz = 200, its peak RSS
# BENCH_DIR=DIR keeps (and reuses, when DIR/params exists) the backfilled data.
set -eu
command -v prometheus >/dev/null && command -v promtool >/dev/null || {
  echo "prometheus/promtool missing: run apt-get install -y prometheus" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl missing: apt-get install -y curl" >&2; exit 1; }
cd "$(dirname "$0")/.."
mode=query
if [ "${1:-}" = warmup ]; then
  mode=warmup; shift
  set -- "${1:-100}" "${2:-10000}" "${3:-1}" "${4:-7}" "${5:-60}"
fi
target=${CARGO_TARGET_DIR:-target}
dir=${BENCH_DIR:-$(mktemp -d /tmp/oomguard-prom-bench.XXXXXX)}
cargo build --release -j1 --example prom_bench
[ $mode = warmup ] && cargo build --release -j1 --bin oomguard
bin=$target/release/examples/prom_bench
echo "== machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(prometheus --version 2>&1 | head -1); load $(cut -d' ' -f1-3 /proc/loadavg)"
if [ ! -f "$dir/params" ]; then
  /usr/bin/time -f "prepare: %e s wall, max RSS %M KiB" "$bin" prepare "$dir" "${1:-1}" "${2:-200}" "${3:-3}" "${4:-14}" "${5:-300}"
fi
if [ $mode = warmup ]; then
  "$bin" warmup "$dir" "$target/release/oomguard"
else
  /usr/bin/time -f "query: %e s wall, max RSS %M KiB (the source's process)" "$bin" query "$dir"
fi
du -sh "$dir/tsdb"
[ -n "${BENCH_KEEP:-${BENCH_DIR:-}}" ] || rm -rf "$dir"
