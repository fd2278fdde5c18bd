#!/usr/bin/env bash
# Instructions per request through the webhook's router (examples/admission_cost.rs), counted by
# callgrind: deterministic, so comparable between runs on a busy machine. Two runs per path
# (N1 and N2 requests) cancel the start-up; the difference divided by N2 - N1 is the cost of a
# warm request. TLS and sockets are not included (bench/load.sh measures those).
# Usage: [REVIEW=review.json] bench/admission-cost.sh [paths...]   (default: mutate trivial, with
# the review bench/load.sh posts; tests/fixtures/reviews/deployment-create-runtime.json is a
# Deployment with the command, args, env and volumes of a real JVM service)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install valgrind" >&2; exit 2; }
cargo build --release --quiet --features bench --example admission_cost
# The shared target folder when one is set (CARGO_TARGET_DIR), else ./target.
bin=${CARGO_TARGET_DIR:-target}/release/examples/admission_cost
n1=200 n2=1200
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A recorded review is stored indented for reading; the apiserver sends it compact.
if [ -n "${REVIEW:-}" ]; then
  python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1])), separators=(",", ":"), ensure_ascii=False), end="")' \
    "$REVIEW" >"$work/review.json"
  REVIEW=$work/review.json
fi
ir() { # path, n -> total instructions
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
    "$bin" "$1" "$2" ${REVIEW:+"$REVIEW"} 2>"$work/log" >/dev/null \
    || { cat "$work/log" >&2; exit 1; }
  awk '/^summary:|^totals:/ {print $2; exit}' "$work/cg.out"
}
for path in "${@:-mutate trivial}"; do
  for p in $path; do
    a=$(ir "$p" $n1); b=$(ir "$p" $n2)
    echo "/$p: $(( (b - a) / (n2 - n1) )) instructions per request"
  done
done
