#!/usr/bin/env bash
# Instructions per request of the real `oomguard serve` (TLS, hyper, axum, the handler), counted
# by callgrind while oha sends the review bench/load.sh posts over one keep-alive connection.
# Two runs per path (N1 and N2 requests) cancel start-up, the handshake and shutdown; the
# difference divided by N2 - N1 is the cost of a warm request on the server side.
# Usage: bench/serve-cost.sh [binary] [paths...]   (default: target/release/oomguard, mutate trivial)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install valgrind" >&2; exit 2; }
command -v oha >/dev/null || { echo "oha is missing: cargo install oha --locked" >&2; exit 2; }
default=${CARGO_TARGET_DIR:-target}/release/oomguard
bin=${1:-$default}
shift || true
[ "$bin" = "$default" ] && cargo build --release --quiet --features bench
n1=200 n2=1200
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT
"$bin" certs --out "$work/certs" --dns localhost --ip 127.0.0.1 >/dev/null
mkdir -p "$work/policies"
printf 'apiVersion: oomguard.io/v1\nkind: MemoryPolicy\nspec: {mode: mutate}\n' \
  >"$work/policies/self-healing-platform.yaml"
body=tests/fixtures/reviews/deployment-create.json
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ir() { # path, n -> total instructions of the server
  local port admin
  port=$(free_port); admin=$(free_port)
  RUST_LOG=warn,rustls=error valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
    "$bin" serve --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" \
    --tls-cert "$work/certs/tls.crt" --tls-key "$work/certs/tls.key" --policies "$work/policies" \
    --history examples/memory-leak-app/history.json --drain 1s 2>"$work/log" &
  pid=$!
  # Few polls: each costs the server instructions of its own.
  for _ in $(seq 120); do sleep 0.5; curl -fs "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && break; done
  oha --no-tui -n "$2" -c 1 -m POST -T application/json -D "$body" --cacert "$work/certs/ca.crt" \
    "https://localhost:$port/$1" >/dev/null
  kill -TERM $pid; wait $pid || true; pid=
  awk '/^summary:|^totals:/ {print $2; exit}' "$work/cg.out"
}
paths=("$@"); [ ${#paths[@]} -eq 0 ] && paths=(mutate trivial)
for p in "${paths[@]}"; do
  a=$(ir "$p" $n1); b=$(ir "$p" $n2)
  echo "/$p: $(( (b - a) / (n2 - n1) )) instructions per request (server side, over TLS)"
done
