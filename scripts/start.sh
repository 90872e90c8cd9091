#!/usr/bin/env bash
# npm start: setup, build, migrate, serve on 127.0.0.1:${PORT:-8787} with local
# D1, R2, KV, Queues and Durable Objects (state in .state/), seed the demo org.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
export PATH="$PWD/node_modules/.bin:$PATH" WRANGLER_SEND_METRICS=false
PORT="${PORT:-8787}"
STATE=.state
echo "== migrations"
CI=true wrangler d1 migrations apply DB --local --persist-to "$STATE" | tail -3
echo "== serving on http://127.0.0.1:$PORT"
wrangler dev --ip 127.0.0.1 --port "$PORT" --persist-to "$STATE" --show-interactive-dev-session=false &
server=$!
trap 'kill $server 2>/dev/null || true' INT TERM EXIT
node scripts/seed.mjs "http://127.0.0.1:$PORT"
wait $server
