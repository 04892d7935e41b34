#!/usr/bin/env bash
# Screenshots a benchflow report in headless Chromium, as a person would see it.
#   scripts/report-screenshot.sh RUN_DIR [OUT.png]
# Installs Debian's chromium package if it is missing (needs root and the Debian mirror).
set -euo pipefail
dir=${1:?usage: $0 RUN_DIR [OUT.png]}
out=${2:-$dir/analysis/latest/report.png}
report=$(realpath "$dir/analysis/latest/report.html")
if ! command -v chromium >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
# The networking flags keep Chromium from reaching out (the machine has no internet).
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --window-size=1200,4000 --screenshot="$(realpath -m "$out")" \
  "file://$report" 2>/dev/null
echo "$out"
