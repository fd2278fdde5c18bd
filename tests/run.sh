#!/usr/bin/env bash
# The whole test suite, installing what it needs (the README's test command).
#
# - Rust (cargo) must be on PATH; the toolchain is not downloaded here.
# - Debian's prometheus (with promtool) for the Prometheus history tests: installed when missing.
# - The test control plane (kube-apiserver, etcd, kubectl 1.35 built from the Go module proxy)
#   for the kubectl end-to-end tests: built once and cached outside the repo
#   (${OOMGUARD_CACHE:-~/.cache/oomguard}); later runs reuse it.
# - The real node of tests/cluster (kubelet, containerd, kube-state-metrics, Prometheus) for the
#   real-node tests (tests/node.rs): containerd, runc, CNI plugins and busybox-static from apt,
#   kube-state-metrics built once from the Go module proxy (cached beside the control plane).
# Then: cargo fmt --check, clippy -D warnings, cargo test (unit, TLS webhook, check CLI,
# Prometheus, kubectl end to end, faults under load, the replay with `oomguard check` on its
# decisions), the deploy/ manifests against the real apiserver, fuzzing (fuzz/run.sh: the kept
# regression inputs and a fixed-seed run of each target) and a 2-minute soak (bench/soak.sh).
# The real-node tests run in the background meanwhile (about 15 minutes, most of it test 4's 10-minute scrape gap); their output is printed
# at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
step() { printf '\n=== %s (%ss)\n' "$*" "$(( $(date +%s) - start ))"; }

command -v cargo >/dev/null || { echo "cargo is missing: install Rust (rustup) first" >&2; exit 2; }

need_apt=()
command -v promtool >/dev/null && command -v prometheus >/dev/null || need_apt+=(prometheus)
command -v curl >/dev/null || need_apt+=(curl)
command -v openssl >/dev/null || need_apt+=(openssl)
if [ ${#need_apt[@]} -gt 0 ]; then
  step "installing ${need_apt[*]} (apt)"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ -x tests/controlplane/controlplane.sh ] || [ -f tests/controlplane/controlplane.sh ]; then
  command -v go >/dev/null || { echo "go is missing: the test control plane is built with Go 1.26" >&2; exit 2; }
  step "test control plane (cached build)"
  bindir=$(bash tests/controlplane/controlplane.sh build | tail -n 1)
  export OOMGUARD_CONTROLPLANE_BIN="$bindir"
fi

step "cargo fmt --check"
cargo fmt --check

# Whatever is started below is stopped on any exit.
cp_dir="" node_dir="" node_pid=""
cleanup() {
  # The node first (down stops its pods, kubelet and containerd in order), then what is left of
  # the background job (the test binary).
  if [ -n "$node_dir" ]; then bash tests/cluster/cluster.sh down "$node_dir" >&2 || true; fi
  if [ -n "$node_pid" ]; then kill -- "-$node_pid" 2>/dev/null || true; fi
  if [ -n "$cp_dir" ]; then bash tests/controlplane/controlplane.sh stop "$cp_dir" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

if [ -f tests/cluster/cluster.sh ] && [ -n "${OOMGUARD_CONTROLPLANE_BIN:-}" ]; then
  step "real node: release build (oomguard's image), tests/node.rs built; node started in the background"
  cargo build --release --quiet
  node_bin=$(cargo test --test node --no-run 2>&1 | sed -n 's/.*Executable tests\/node.rs (\(.*\))$/\1/p')
  [ -x "$node_bin" ] || { echo "could not find the tests/node.rs binary" >&2; exit 1; }
  node_dir=$(mktemp -d /tmp/oomguard-node.XXXXXX)
  node_log="${CARGO_TARGET_DIR:-target}/node-test-output.txt"
  # Its own process group, so that cleanup ends all of it. The test binary is run directly: the
  # foreground cargo test must not wait for it.
  setsid bash -c 'set -e
    bash tests/cluster/cluster.sh up "$1"
    bash tests/cluster/cluster.sh install-oomguard "$1"
    echo "=== node up and oomguard installed at $(date +%T)"
    OOMGUARD_NODE_ENV="$1/env" "$2" --ignored --nocapture --test-threads=7' _ "$node_dir" "$node_bin" \
    >"$node_log" 2>&1 </dev/null &
  node_pid=$!
fi

# From here on the real node's tests run beside (they mostly wait).
step "cargo clippy"
cargo clippy --all-targets --all-features --quiet -- -D warnings
step "cargo test"
mkdir -p "${CARGO_TARGET_DIR:-target}"
# --features replay: the replay benchmark's tests (not in the shipped binary). Not `bench`: the
# shipped server's lack of /trivial is tested without it.
cargo test --all-targets --features replay 2>&1 | tee "${CARGO_TARGET_DIR:-target}/test-output.txt"
if [ -f tests/deploy/validate.sh ] && [ -n "${OOMGUARD_CONTROLPLANE_BIN:-}" ]; then
  step "deploy/ against the real apiserver"
  cp_dir=$(mktemp -d)
  bash tests/controlplane/controlplane.sh start "$cp_dir"
  # shellcheck disable=SC1091
  . "$cp_dir/env"
  bash tests/deploy/validate.sh "$KUBECTL" "$KUBECONFIG"
fi
if [ -f tests/api/schemathesis.sh ] && [ -n "${OOMGUARD_CONTROLPLANE_BIN:-}" ]; then
  step "API: schemathesis against docs/openapi.yaml and oomguard reconcile --api-addr"
  bash tests/api/schemathesis.sh
fi
step "fuzz: the kept regression inputs, then 500,000 runs of each target from seed 1 (fuzz/run.sh; cargo-fuzz from crates.io when missing)"
bash fuzz/run.sh -s 1 -n 500000
step "soak: 2 minutes at 1,000 req/s over TLS, policy reloads, a certificate rotation (bench/soak.sh 2)"
command -v oha >/dev/null || cargo install oha --locked --quiet
bash bench/soak.sh 2
if [ -n "$node_pid" ]; then
  step "real node: waiting for tests/node.rs (log: $node_log)"
  node_rc=0
  wait "$node_pid" || node_rc=$?
  node_pid=""
  cat "$node_log"
  bash tests/cluster/cluster.sh down "$node_dir"
  node_dir=""
  [ "$node_rc" -eq 0 ] || { echo "real-node tests failed (exit $node_rc)" >&2; exit 1; }
fi
step "done"
