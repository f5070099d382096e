#!/usr/bin/env bash
# Renders the web view in a real headless browser and saves a screenshot.
#
#   bash crates/kvscope-server/scripts/check-webview.sh [OUT.png]
#
# Installs Debian's chromium if it is missing, starts the demo server
# (synthetic executor under a background load), lets the page poll /kv and
# /api/series for a few seconds, screenshots it, and checks that the page
# drew the block grid (via --dump-dom). Not part of CI: it needs apt.
set -euo pipefail
cd "$(dirname "$0")/../../.."
out="${1:-webview.png}"
port="${PORT:-8011}"

browser="$(command -v chromium || command -v chromium-browser || true)"
if [ -z "$browser" ]; then
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  browser="$(command -v chromium)"
fi

cargo build -q -p kvscope-server --example demo
target/debug/examples/demo "$port" &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
  sleep 0.1
done
sleep 3 # let the load build up some history for the curves

flags=(--headless --no-sandbox --disable-gpu --disable-background-networking --hide-scrollbars
       --window-size=1400,1100 --virtual-time-budget=4000)
"$browser" "${flags[@]}" --screenshot="$out" "http://127.0.0.1:$port/" 2>/dev/null
dom="$("$browser" "${flags[@]}" --dump-dom "http://127.0.0.1:$port/" 2>/dev/null)"
blocks=$(grep -o 'class="blk' <<<"$dom" | wc -l)
held=$(grep -o 'held by' <<<"$dom" | wc -l)
echo "screenshot: $out; grid cells drawn: $blocks; held blocks with holders: $held"
[ "$blocks" -ge 192 ] || { echo "the block grid did not render" >&2; exit 1; }
grep -q 'polyline' <<<"$dom" || { echo "no curve was drawn" >&2; exit 1; }
echo "web view OK"
