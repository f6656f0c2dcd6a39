#!/usr/bin/env bash
# Documented check (not part of `make test`, which must pass without a browser):
# render a report in headless Chromium and save a screenshot to look at.
# Usage: scripts/check_report_render.sh [REPORT.html] [OUT.png]
# Needs Debian's chromium: apt-get install -y chromium
set -euo pipefail
report=$(realpath "${1:-demo-out/report.html}")
out=${2:-report-screenshot.png}
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --window-size=1200,3000 \
    --screenshot="$out" "file://$report" 2>/dev/null
echo "screenshot of $report written to $out ($(stat -c %s "$out") bytes)"
