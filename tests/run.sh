#!/usr/bin/env bash
# The whole test suite, installing what it needs (the README's test command).
#
# - Rust (cargo) must be on PATH; the toolchain is not downloaded here.
# - Debian's prometheus (with promtool) for the Prometheus history tests: installed when missing.
# - The test control plane (kube-apiserver, etcd, kubectl 1.35 built from the Go module proxy)
#   for the kubectl end-to-end tests: built once and cached outside the repo
#   (${OOMGUARD_CACHE:-~/.cache/oomguard}); later runs reuse it.
# Then: cargo fmt --check, clippy -D warnings, cargo test (unit, TLS webhook, check CLI,
# Prometheus, kubectl end to end, the replay with `oomguard check` on its decisions), and the
# deploy/ manifests against the real apiserver.
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
step "cargo clippy"
cargo clippy --all-targets --all-features --quiet -- -D warnings
step "cargo test"
# --all-features: the replay benchmark's tests (feature `replay`, not in the shipped binary).
cargo test --all-targets --all-features 2>&1 | tee target/test-output.txt
if [ -f tests/deploy/validate.sh ] && [ -n "${OOMGUARD_CONTROLPLANE_BIN:-}" ]; then
  step "deploy/ against the real apiserver"
  cp_dir=$(mktemp -d)
  trap 'bash tests/controlplane/controlplane.sh stop "$cp_dir" >/dev/null 2>&1 || true' EXIT
  bash tests/controlplane/controlplane.sh start "$cp_dir"
  # shellcheck disable=SC1091
  . "$cp_dir/env"
  bash tests/deploy/validate.sh "$KUBECTL" "$KUBECONFIG"
fi
if [ -f tests/api/schemathesis.sh ] && [ -n "${OOMGUARD_CONTROLPLANE_BIN:-}" ]; then
  step "API: schemathesis against docs/openapi.yaml and oomguard reconcile --api-addr"
  bash tests/api/schemathesis.sh
fi
step "done"
