#!/usr/bin/env bash
# Renders the bundled example's HTML report and takes a PNG of it with headless Chromium
# (docs/report.png, shown in docs/recommend.md). Installs Debian's chromium when it is missing.
#
#   bash bench/report-screenshot.sh [OUT.png]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/report.png}

if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

cargo build --quiet --release -j1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
html="$work/report.html"
target/release/oomguard recommend -o html \
  --history examples/memory-leak-app/history.json \
  -f examples/memory-leak-app/manifests.yaml --policies policies >"$html"

mkdir -p "$(dirname "$out")"
chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
  --disable-component-update --disable-sync --no-first-run --user-data-dir="$work/profile" \
  --hide-scrollbars --screenshot="$PWD/$out" --window-size=1200,1600 "file://$html" 2>"$work/chromium.log" \
  || { cat "$work/chromium.log" >&2; exit 1; }
echo "wrote $out ($(stat -c %s "$out") bytes)"
