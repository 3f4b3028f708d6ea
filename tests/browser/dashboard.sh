#!/usr/bin/env bash
# The dashboard in headless Chromium (see test_dashboard.py).
#   tests/browser/dashboard.sh [BINARY]
# BINARY defaults to $CARGO_TARGET_DIR/debug/switchboard (build it with
# `cargo build --all-features --bin switchboard`). Screenshots go to $CARGO_TARGET_DIR/dashboard/.
# Without a usable Chromium (none installed, or only Ubuntu's snap wrapper) it says so and
# passes, unless SWITCHBOARD_REQUIRE_CHROMIUM=1.
set -euo pipefail
cd "$(dirname "$0")/../.."
TARGET="${CARGO_TARGET_DIR:-target}"
BIN="${1:-$TARGET/debug/switchboard}"

browser=""
for c in chromium chromium-browser google-chrome-stable google-chrome; do
  path="$(command -v "$c" 2>/dev/null || true)"
  [ -n "$path" ] || continue
  # Ubuntu's chromium-browser deb is a wrapper that asks for the snap: it prints no version.
  if timeout 30 "$path" --headless=new --no-sandbox --version 2>/dev/null | grep -Eq 'Chrom(e|ium) [0-9]'; then
    browser="$path"
    break
  fi
done
if [ -z "$browser" ]; then
  if [ "${SWITCHBOARD_REQUIRE_CHROMIUM:-0}" = 1 ]; then
    echo "dashboard browser test: no usable Chromium (apt package chromium)" >&2
    exit 1
  fi
  echo "dashboard browser test: skipped, no usable Chromium found (apt-get install chromium)"
  exit 0
fi
echo "dashboard browser test with $("$browser" --headless=new --no-sandbox --version 2>/dev/null)"
python3 tests/browser/test_dashboard.py "$BIN" "$browser" "$TARGET/dashboard"
