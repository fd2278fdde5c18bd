#!/usr/bin/env bash
# Runs the coverage-guided fuzz targets (cargo-fuzz, libFuzzer) on the stable toolchain.
#
#   fuzz/run.sh [-t SECONDS | -n RUNS] [-s SEED] [target...]   (default: -t 60, every target)
#   FUZZ_SKIP_BUILD=1 fuzz/run.sh ...                  (run the binaries as last built)
#
# The suite (tests/run.sh) runs `-s 1 -n RUNS`: a fixed seed and a fixed number of runs, so that
# one tree gives one result and CI does not turn red on a fuzz finding the change under test did
# not make. Finding new inputs is a campaign run by hand with a random seed (no -s) and a time
# or run budget (docs/benchmarks.md#fuzzing-fuzzrunsh).
#
# Before fuzzing, each input under fuzz/regressions/<target>-*.bin (a crash found once and
# fixed) is run again against its target.
#
# cargo-fuzz passes a few nightly-only flags; RUSTC_BOOTSTRAP=1 lets the stable compiler take
# them. No sanitizer (the crate forbids unsafe code); debug assertions and overflow checks on.
# Each target starts from its committed corpus (fuzz/corpus/<target>, read only) and a scratch
# copy that grows; new inputs are not written back to the repository. A crash stops the run
# with libFuzzer's report and the input saved under fuzz/artifacts/<target>/ (ignored by git).
# Prints one line per target: executions, exec/s, coverage (edges), features, corpus size.
set -euo pipefail
cd "$(dirname "$0")/.."
limit=(-max_total_time=60)
seed=()
while getopts "t:n:s:" o; do
  case $o in
    t) limit=(-max_total_time="$OPTARG") ;;
    n) limit=(-runs="$OPTARG") ;;
    s) seed=(-seed="$OPTARG") ;;
    *) echo "usage: fuzz/run.sh [-t seconds | -n runs] [-s seed] [target...]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(admission_scan quantity policy history_file api_request manifest)

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
triple=$(rustc -vV | sed -n 's/^host: //p')
# Built once; the binaries are then run directly (`cargo fuzz run` would take the shared target
# dir's lock again for each target).
[ -n "${FUZZ_SKIP_BUILD:-}" ] || RUSTC_BOOTSTRAP=1 cargo fuzz build -O -a -s none --target-dir "$target_dir"
bin_dir="$target_dir/$triple/release"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for t in "${targets[@]}"; do
  mkdir -p "$work/$t" "fuzz/artifacts/$t"
  dict=()
  [ -f "fuzz/dict/$t.dict" ] && dict=(-dict="fuzz/dict/$t.dict")
  log="$work/$t.log"
  regressions=(fuzz/regressions/"$t"-*.bin)
  if [ -e "${regressions[0]}" ]; then
    if ! "$bin_dir/$t" "${regressions[@]}" >"$log" 2>&1; then
      tail -n 60 "$log" >&2
      echo "fuzz target $t FAILED on a kept regression input (fuzz/regressions/$t-*.bin)" >&2
      exit 1
    fi
    echo "$t: ${#regressions[@]} kept regression input(s) pass"
  fi
  if ! "$bin_dir/$t" "$work/$t" "fuzz/corpus/$t" "${limit[@]}" "${seed[@]}" "${dict[@]}" -timeout=10 \
    -artifact_prefix="fuzz/artifacts/$t/" -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "fuzz target $t FAILED (input saved under fuzz/artifacts/$t/)" >&2
    exit 1
  fi
  python3 - "$t" "$log" <<'PY'
import re, sys
t, log = sys.argv[1:]
text = open(log, errors="replace").read()
stat = dict(re.findall(r"^stat::(\w+):\s+(\d+)", text, re.M))
last = re.findall(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/(\S+)", text, re.M)[-1]
print(f"{t:<15} {int(stat['number_of_executed_units']):>11,} execs  {int(stat['average_exec_per_sec']):>7,} exec/s  "
      f"cov {last[1]:>5}  ft {last[2]:>6}  corpus {last[3]} ({last[4]})  peak RSS {stat['peak_rss_mb']} MB  crashes 0")
PY
done
